//! Graceful shutdown, the same for both binaries: SIGTERM or SIGINT cancels one token that
//! everything watches. In the API: the server (stop accepting, finish in-flight requests), the
//! waiters (answer with the job as it stands) and the background tasks. In the worker: the job
//! loop (pull no more; the job in hand finishes or is handed back after the grace period), the
//! heartbeats and the recovery pass.
use tokio_util::sync::CancellationToken;

/// Cancel `token` on the first SIGTERM or SIGINT; return early if it is cancelled otherwise.
pub async fn on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = sigterm() => tracing::info!("SIGTERM: shutting down"),
        _ = token.cancelled() => return,
    }
    token.cancel();
}

/// The first SIGTERM (never, where it cannot be listened for).
#[cfg(unix)]
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending::<()>().await;
}

/// Run `pass` every `every` (the first right away; a late pass delays the next rather than
/// bunching them) until `shutdown` is cancelled: the loop of every periodic background task.
pub async fn every<F, Fut>(every: std::time::Duration, shutdown: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => pass().await,
        }
    }
}
