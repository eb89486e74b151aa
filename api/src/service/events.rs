//! Following a job: what `GET /v1/jobs/{id}/events` streams.
//!
//! The events come from the job's log in Postgres (`job_events`: state changes and progress
//! recorded by a trigger, previews by the worker), so a stream can be opened on any replica,
//! whichever took the submission and whichever worker runs the job. A follower registers with
//! the event channel's waiters, reads what is new after its cursor, and sleeps until the channel
//! announces the job again (or [`POLL`] passes: a lost notification only delays it). While the
//! job is queued, its queue position is read on every pass and sent when it changed: it moves
//! when older jobs leave the queue, which are not this job's events.
use std::sync::Arc;
use std::time::Duration;

use darkroom_shared::job::JobStatus;
use darkroom_shared::store::{JobEvent, EVENT_BATCH};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{JobDetails, Service, WaitingPlace};
use crate::error::ApiError;

/// The longest a follower sleeps between two reads when no notification comes.
const POLL: Duration = Duration::from_secs(1);

/// Items buffered between a follower and its connection (a slow client holds the follower up).
const BUFFER: usize = 16;

/// One item of a job's stream, with its event id (the cursor a client resumes after).
#[derive(Debug)]
pub struct Followed {
    pub id: i64,
    pub item: FollowItem,
}

#[derive(Debug)]
pub enum FollowItem {
    /// The job as it stands, first on a new stream.
    Snapshot(JobDetails),
    /// The job is queued at this position (sent when it changes).
    Queued { position: i64 },
    /// A recorded event that does not end the job (`queued`, `started`, `progress`, `preview`).
    Event(JobEvent),
    /// The job ended (`succeeded`, `failed`, `canceled`): the last item.
    Ended { kind: String, job: JobDetails },
}

/// Where a new stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// From the job as it stands.
    Start,
    /// After the event with this id (`Last-Event-ID`).
    After(i64),
}

/// A stream about to be followed: nothing is sent when the client resumes after the end.
pub enum Follow {
    Stream(mpsc::Receiver<Followed>),
    /// The client already had the job's last event.
    AlreadyEnded,
}

impl Service {
    /// Follow one of the tenant's jobs: the items arrive on the receiver until the job ends, the
    /// client goes away (the receiver is dropped) or the server shuts down. Refused when the
    /// tenant has `--max-event-streams` streams open in this process.
    pub async fn follow(self: &Arc<Self>, tenant: Uuid, id: Uuid, resume: Resume) -> Result<Follow, ApiError> {
        let place = self.streams.enter(tenant, self.settings.max_event_streams)?;
        // The cursor is read before the job: events recorded in between come after it, at
        // worst repeating what the snapshot shows, never missing.
        let cursor = match resume {
            Resume::After(after) => after,
            Resume::Start => self.store.last_event_id(id).await?,
        };
        let job = self.job(tenant, id).await?;
        if resume != Resume::Start && job.job.status.is_terminal() && self.store.last_event_id(id).await? <= cursor {
            return Ok(Follow::AlreadyEnded);
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.feed(tenant, job, cursor, resume, &tx, place).await {
                tracing::warn!(job = %id, "an event stream ended early: {e}");
            }
        });
        Ok(Follow::Stream(rx))
    }

    /// Send the job's items until its end. Returns when it ended, the client left or the server
    /// is shutting down. The place is held until then.
    async fn feed(
        &self,
        tenant: Uuid,
        job: JobDetails,
        mut cursor: i64,
        resume: Resume,
        tx: &mpsc::Sender<Followed>,
        _place: WaitingPlace,
    ) -> Result<(), ApiError> {
        let id = job.job.id;
        let send = |followed: Followed| async move { tx.send(followed).await.is_ok() };
        let mut position = job.queue_position;
        let mut status = job.job.status;
        if resume == Resume::Start {
            let ended = job.job.status.is_terminal();
            if !send(Followed { id: cursor, item: FollowItem::Snapshot(job.clone()) }).await {
                return Ok(());
            }
            if ended {
                let kind = job.job.status.as_str().to_string();
                let last = self.store.last_event_id(id).await?.max(cursor);
                send(Followed { id: last, item: FollowItem::Ended { kind, job } }).await;
                return Ok(());
            }
        }
        loop {
            let mut woken = self.waiters.events.register(id);
            let events = self.store.events_after(id, cursor, EVENT_BATCH).await?;
            let full = events.len() as i64 == EVENT_BATCH;
            for event in events {
                cursor = event.id;
                if event.terminal_status().is_some() {
                    let job = self.job(tenant, id).await?;
                    send(Followed { id: cursor, item: FollowItem::Ended { kind: event.kind.clone(), job } }).await;
                    return Ok(());
                }
                match event.kind.as_str() {
                    // A job back in the queue (its worker died): its position is sent below.
                    "queued" => {
                        status = JobStatus::Queued;
                        position = None;
                        continue;
                    }
                    "started" => status = JobStatus::Running,
                    _ => {}
                }
                if !send(Followed { id: cursor, item: FollowItem::Event(event) }).await {
                    return Ok(());
                }
            }
            if full {
                continue;
            }
            if status == JobStatus::Queued {
                let now = self.job(tenant, id).await?;
                if now.job.status == JobStatus::Queued && now.queue_position != position {
                    position = now.queue_position;
                    let item = FollowItem::Queued { position: position.unwrap_or(0) };
                    if !send(Followed { id: cursor, item }).await {
                        return Ok(());
                    }
                }
            }
            tokio::select! {
                _ = woken.woken() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return Ok(()),
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }
}
