//! Recovery: what makes delivery at-least-once and Redis disposable. Run periodically by every
//! worker and API process; each step is idempotent, so any number may run at once.
use std::time::Duration;

use crate::job::JobStatus;
use crate::queue::{Queue, QueueError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Redis had lost its data and this many queued jobs were re-enqueued from Postgres.
    pub rebuilt: Option<usize>,
    /// Deliveries a worker took from Redis but never claimed, handed out again.
    pub redelivered: usize,
    /// Running jobs whose lease expired, back in the queue.
    pub requeued: usize,
    /// Running jobs whose lease expired on their last allowed delivery (or that were canceled).
    pub ended: usize,
    /// Queued jobs Redis did not know (a push that failed, a claim lost in a Postgres crash).
    pub reconciled: usize,
    /// Running slots of jobs that had ended without their worker freeing them.
    pub freed: usize,
}

/// One recovery pass.
pub async fn recover(store: &Store, queue: &Queue, max_attempts: i32) -> Result<Report, RecoveryError> {
    let mut report = Report::default();
    let queued = store.queued_jobs().await?;
    if queue.claim_epoch().await? {
        for job in &queued {
            queue.enqueue(&job.model, job.tenant_id, job.id, job.cost).await?;
        }
        queue.mark_running(&store.running_jobs().await?).await?;
        report.rebuilt = Some(queued.len());
    } else {
        let ids: Vec<_> = queued.iter().map(|j| j.id).collect();
        let unknown: std::collections::HashSet<_> = queue.unknown(&ids).await?.into_iter().collect();
        for job in queued.iter().filter(|j| unknown.contains(&j.id)) {
            queue.enqueue(&job.model, job.tenant_id, job.id, job.cost).await?;
            report.reconciled += 1;
        }
    }
    for d in queue.take_expired_deliveries().await? {
        match store.queued_cost(d.job).await? {
            Some(cost) => {
                queue.requeue_front(&d.model, d.tenant, d.job, cost).await?;
                report.redelivered += 1;
            }
            // Claimed meanwhile (its running slot stays) or ended (freed below).
            None => queue.ack(&d, true).await?,
        }
    }
    for job in store.expire_leases(max_attempts).await? {
        if job.status == JobStatus::Queued {
            // Its worker died: back at the front of its tenant's queue, where it was.
            queue.requeue_front(&job.model, job.tenant_id, job.id, job.cost).await?;
            report.requeued += 1;
        } else {
            queue.forget_running(&[(job.tenant_id, job.id)]).await?;
            report.ended += 1;
        }
    }
    // Running slots of jobs that ended without their worker freeing them (it died in between).
    let running = queue.running().await?;
    if !running.is_empty() {
        let ids: Vec<_> = running.iter().map(|(_, job)| *job).collect();
        let finished: std::collections::HashSet<_> = store.finished_among(&ids).await?.into_iter().collect();
        let stale: Vec<_> = running.into_iter().filter(|(_, job)| finished.contains(job)).collect();
        report.freed = stale.len();
        queue.forget_running(&stale).await?;
    }
    Ok(report)
}

/// Run [`recover`] every `every` until `shutdown` resolves, logging what it did.
pub async fn run(store: Store, queue: Queue, max_attempts: i32, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        match recover(&store, &queue, max_attempts).await {
            Ok(r) if r == Report::default() => {}
            Ok(r) => tracing::info!(?r.rebuilt, r.redelivered, r.requeued, r.ended, r.reconciled, r.freed, "recovery"),
            Err(e) => tracing::warn!("recovery pass failed: {e}"),
        }
    }
}
