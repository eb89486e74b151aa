//! `GET /v1/jobs/{id}/events`: a job's progress as Server-Sent Events, on any replica.
//!
//! First the job as it stands (`job`), then `queued` (its position, when it changes), `started`,
//! `progress`, `preview`, and one terminal event (`succeeded`, `failed`, `canceled`) carrying the
//! whole job, after which the stream ends. Every event has an id: a client that reconnects with
//! `Last-Event-ID` gets what came after it (204 when it already had the end). Comment lines keep
//! an idle stream open (`--event-keepalive-secs`). See `service::events` for where events come from.
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::JobRef;
use super::view::JobView;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::openapi::tags;
use crate::service::events::{Follow, Resume};
use crate::service::{FollowItem, Followed, Service};

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Follow a job live (Server-Sent Events).
///
/// Events: `job` (the job, first), `queued` (`{position}`), `started` (`{attempt}`), `progress`
/// (`{step, total, eta}`, eta in seconds), `preview` (`{step, total, width, height, image}`, a
/// base64 PNG, when the job asked for `preview_every`), then `succeeded`, `failed` or `canceled`
/// with the job, and the stream ends. Reconnect with `Last-Event-ID` to get what was missed.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", operation_id = "jobEvents", tag = tags::NATIVE,
    params(
        ("id" = String, Path, description = "The job's id", example = "0190e0a4-0000-7000-8000-000000000000"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream resumes after it", example = "42"),
    ),
    responses(
        (status = 200, description = "The job's events until it ends (each as a client's SSE parser reads it)", content_type = "text/event-stream", body = StreamEvent),
        (status = 204, description = "Resumed after the job's last event: nothing more will come"),
        (status = 404, description = "No such job for this tenant"),
        (status = 422, description = "`Last-Event-ID` is not an event id"),
        (status = 429, description = "The tenant has `--max-event-streams` streams open"),
    ))]
async fn events(State(service): State<Arc<Service>>, caller: Caller, job: JobRef, headers: HeaderMap) -> Result<Response, ApiError> {
    let resume = last_event_id(&headers)?;
    let mut items = match service.follow(caller.tenant.id, job.id, resume).await? {
        Follow::AlreadyEnded => return Ok(StatusCode::NO_CONTENT.into_response()),
        Follow::Stream(rx) => rx,
    };
    let stream = stream::poll_fn(move |cx| items.poll_recv(cx)).map(to_event);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(service.settings().event_keepalive));
    let mut response = sse.into_response();
    // Tell buffering proxies (nginx) to pass events on as they come.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `Last-Event-ID`: absent or empty, a new stream; else an event id of this API.
fn last_event_id(headers: &HeaderMap) -> Result<Resume, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(Resume::Start) };
    let raw = value.to_str().unwrap_or("\u{fffd}").trim();
    if raw.is_empty() {
        return Ok(Resume::Start);
    }
    raw.parse::<i64>().ok().filter(|id| *id >= 0).map(Resume::After).ok_or_else(|| ApiError::Parameter {
        field: "Last-Event-ID".into(),
        message: format!("Last-Event-ID must be the id of an event of this stream (a whole number); got {raw:?}"),
    })
}

/// One event of a job's stream, as a client's SSE parser reads it (documents the stream's items).
#[derive(Debug, utoipa::ToSchema)]
pub struct StreamEvent {
    /// Resume after it with `Last-Event-ID`.
    #[schema(example = "42")]
    pub id: String,
    pub event: EventName,
    /// JSON: the job (`job` and the terminal events), or the event's fields (see the operation).
    #[schema(example = r#"{"step":3,"total":25,"eta":4.1}"#)]
    pub data: String,
}

/// The events of a job's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventName {
    Job,
    Queued,
    Started,
    Progress,
    Preview,
    Succeeded,
    Failed,
    Canceled,
}

impl EventName {
    fn of_kind(kind: &str) -> Option<EventName> {
        Some(match kind {
            "queued" => EventName::Queued,
            "started" => EventName::Started,
            "progress" => EventName::Progress,
            "preview" => EventName::Preview,
            "succeeded" => EventName::Succeeded,
            "failed" => EventName::Failed,
            "canceled" => EventName::Canceled,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            EventName::Job => "job",
            EventName::Queued => "queued",
            EventName::Started => "started",
            EventName::Progress => "progress",
            EventName::Preview => "preview",
            EventName::Succeeded => "succeeded",
            EventName::Failed => "failed",
            EventName::Canceled => "canceled",
        }
    }
}

impl StreamEvent {
    /// What a followed item is on the wire; `None` for a recorded kind this API does not know
    /// (the table's CHECK allows none).
    fn of(followed: Followed) -> Option<StreamEvent> {
        let (event, data) = match followed.item {
            FollowItem::Snapshot(job) => (EventName::Job, json!(JobView::from(job))),
            FollowItem::Queued { position } => (EventName::Queued, json!({ "position": position })),
            FollowItem::Event(event) => (EventName::of_kind(&event.kind)?, event.data),
            FollowItem::Ended { kind, job } => (EventName::of_kind(&kind)?, json!(JobView::from(job))),
        };
        Some(StreamEvent { id: followed.id.to_string(), event, data: data.to_string() })
    }
}

fn to_event(followed: Followed) -> Result<Event, Infallible> {
    Ok(match StreamEvent::of(followed) {
        Some(e) => Event::default().id(e.id).event(e.event.as_str()).data(e.data),
        // Skipped as a comment, never an event a client cannot read.
        None => Event::default().comment("an event of an unknown kind was skipped"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(value: Option<&str>) -> Result<Resume, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert("last-event-id", HeaderValue::from_str(v).unwrap());
        }
        last_event_id(&headers)
    }

    #[test]
    fn last_event_id_is_a_whole_number() {
        assert_eq!(resume(None).unwrap(), Resume::Start);
        assert_eq!(resume(Some("")).unwrap(), Resume::Start);
        assert_eq!(resume(Some(" 42 ")).unwrap(), Resume::After(42));
        assert_eq!(resume(Some("0")).unwrap(), Resume::After(0));
        for bad in ["-1", "x", "1.5", "99999999999999999999"] {
            assert!(matches!(resume(Some(bad)), Err(ApiError::Parameter { .. })), "{bad}");
        }
    }
}
