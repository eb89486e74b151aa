//! Waiting for jobs (`Prefer: wait`) and following them (the event streams), without a polling
//! loop per waiter.
//!
//! One [`listen`] task per process LISTENs on the store's channels (payload: a job id): the job
//! channel (terminal states) wakes the [`Waiters`] of `Prefer: wait`, the event channel (every
//! new job event) wakes those of the event streams. Notifications are lost while the listener is
//! disconnected, so after every (re)connect it wakes everyone to re-check, and one [`sweep`]
//! task checks all waited-on ids in a single query every second and wakes the finished ones.
//!
//! The protocol for a waiter (see `Service::wait_for`): register, then read the row, then wait
//! for a wake-up (or its deadline); on wake-up, register again and re-read. A read that fails
//! because Postgres is unavailable (a restart) is followed by a wait too: the listener's
//! reconnection wakes everyone once Postgres is back.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use darkroom_shared::store::{Store, EVENT_CHANNEL, JOB_CHANNEL};
use sqlx::postgres::PgListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Who waits for which job.
#[derive(Clone, Default)]
pub struct Waiters {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    next_key: u64,
    by_job: HashMap<Uuid, Vec<(u64, oneshot::Sender<()>)>>,
}

/// One waiter's registration; dropping it unregisters.
pub struct Registration {
    job: Uuid,
    key: u64,
    rx: oneshot::Receiver<()>,
    waiters: Waiters,
}

impl Registration {
    /// Resolves when the job is announced (or everyone is told to re-check).
    pub async fn woken(&mut self) {
        // A dropped sender also means "re-check".
        let _ = (&mut self.rx).await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.waiters.lock();
        if let Some(list) = inner.by_job.get_mut(&self.job) {
            list.retain(|(k, _)| *k != self.key);
            if list.is_empty() {
                inner.by_job.remove(&self.job);
            }
        }
    }
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock; if one ever did, the map is still consistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register interest in `job`; do this before reading the job's row.
    pub fn register(&self, job: Uuid) -> Registration {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next_key += 1;
        let key = inner.next_key;
        inner.by_job.entry(job).or_default().push((key, tx));
        Registration { job, key, rx, waiters: self.clone() }
    }

    /// Wake every waiter of `job`.
    pub fn wake(&self, job: Uuid) {
        let senders = self.lock().by_job.remove(&job).unwrap_or_default();
        for (_, tx) in senders {
            let _ = tx.send(());
        }
    }

    /// Wake every waiter (after notifications may have been lost).
    pub fn wake_all(&self) {
        let all = std::mem::take(&mut self.lock().by_job);
        for (_, tx) in all.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// The jobs someone is waiting for.
    pub fn waited_on(&self) -> Vec<Uuid> {
        self.lock().by_job.keys().copied().collect()
    }
}

/// Who is woken by which channel: the job channel's waiters (`Prefer: wait`) and the event
/// channel's (event streams).
#[derive(Clone, Default)]
pub struct Listeners {
    pub finished: Waiters,
    pub events: Waiters,
}

impl Listeners {
    fn for_channel(&self, channel: &str) -> Option<&Waiters> {
        match channel {
            JOB_CHANNEL => Some(&self.finished),
            EVENT_CHANNEL => Some(&self.events),
            _ => None,
        }
    }

    fn wake_all(&self) {
        self.finished.wake_all();
        self.events.wake_all();
    }
}

/// LISTEN for job announcements until `shutdown`, reconnecting as needed.
///
/// The session has a pool of its own ([`Store::dedicated_pool`]): after a Postgres restart it
/// reconnects within a fraction of a second of Postgres accepting connections again, whatever
/// the main pool is doing, and then wakes every waiter, since what was announced meanwhile is lost.
pub async fn listen(store: Store, waiters: Listeners, shutdown: CancellationToken) {
    let pool = store.dedicated_pool();
    // Attempts wait for the pool's acquire timeout while Postgres is down: the pause between
    // them only spaces out errors that come at once (a refused login, say).
    let mut backoff = RECONNECT_MIN;
    // Whether the connection was lost (or never made): then one warning, until it is back.
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([JOB_CHANNEL, EVENT_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    if !failing {
                        tracing::warn!("job listener cannot connect: {e}; retrying");
                    }
                    tracing::debug!("job listener cannot connect: {e}; retrying in {backoff:?}");
                    failing = true;
                    tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        if failing {
            tracing::info!("job listener reconnected; waiters re-check");
        }
        backoff = RECONNECT_MIN;
        // Anything announced before this point may have been missed.
        waiters.wake_all();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => match (waiters.for_channel(n.channel()), n.payload().parse()) {
                    (Some(w), Ok(job)) => w.wake(job),
                    _ => tracing::debug!(channel = n.channel(), payload = n.payload(), "ignoring a malformed job notification"),
                },
                // The connection dropped and was re-established (LISTEN included).
                Ok(None) => {
                    tracing::warn!("job listener reconnected; waiters re-check");
                    waiters.wake_all();
                }
                // Postgres shutting down (57P01) or gone: connect anew.
                Err(e) => {
                    tracing::warn!("job listener lost its connection: {e}; reconnecting");
                    failing = true;
                    break;
                }
            }
        }
    }
}

/// Pauses between the listener's attempts to reconnect.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(500);

/// Every `every`, check all waited-on jobs in one query and wake the finished ones: a lost
/// notification delays a waiter by at most this much.
pub async fn sweep(store: Store, waiters: Waiters, every: Duration, shutdown: CancellationToken) {
    darkroom_shared::shutdown::every(every, &shutdown, || async {
        let ids = waiters.waited_on();
        if ids.is_empty() {
            return;
        }
        match store.finished_among(&ids).await {
            Ok(done) => done.into_iter().for_each(|id| waiters.wake(id)),
            Err(e) => tracing::warn!("waiter sweep failed: {e}"),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_reaches_registered_waiters_and_drop_unregisters() {
        let w = Waiters::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut r1 = w.register(a);
        let mut r2 = w.register(a);
        let r3 = w.register(b);
        assert_eq!(w.waited_on().len(), 2);
        w.wake(a);
        tokio::time::timeout(Duration::from_secs(1), r1.woken()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), r2.woken()).await.unwrap();
        assert_eq!(w.waited_on(), vec![b]);
        drop(r3);
        assert!(w.waited_on().is_empty());
        let mut r4 = w.register(b);
        w.wake_all();
        tokio::time::timeout(Duration::from_secs(1), r4.woken()).await.unwrap();
        drop((r1, r2, r4));
        assert!(w.waited_on().is_empty());
    }
}
