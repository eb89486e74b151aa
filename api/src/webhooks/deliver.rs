//! The delivery task of `darkroom-api serve`: every replica runs one. It claims due outbox rows
//! (`Store::claim_webhooks`: `FOR UPDATE SKIP LOCKED`, a lease per claim), delivers them, and
//! records each attempt on its row, fenced by the claim. At least once: a replica that dies
//! mid-delivery leaves the row to be claimed again after its lease. Every attempt of a delivery
//! sends the same body (rendered once, at the first attempt, and kept) under the same
//! `webhook-id`; `webhook-timestamp` is the attempt's, and the signature covers it.
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use darkroom_shared::job::JobStatus;
use darkroom_shared::store::{AttemptResult, Delivery, Store, StoreError, WEBHOOK_CHANNEL};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backoff::{parse_retry_after, Backoff};
use super::guard::{self, Guard, GuardError};
use super::sign::signature_header;
use super::WebhookArgs;
use crate::routes::view::JobView;
use crate::service::JobDetails;

/// How long shutdown waits for the attempts in flight (their rows are retried after their lease
/// otherwise).
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// What one attempt came to, as the metric's `outcome` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// 410 Gone: the receiver asked us to stop.
    Gone,
    /// Another status.
    HttpError,
    /// The attempt took longer than `--webhook-timeout-secs`.
    Timeout,
    /// No connection, or it broke.
    NetworkError,
    /// The host resolved to an address the guard refuses (or not at all).
    Refused,
    /// Ours: no secret, the body could not be rendered, the database failed.
    Internal,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::HttpError => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::NetworkError => "network_error",
            Outcome::Refused => "refused",
            Outcome::Internal => "internal",
        }
    }
}

/// One replica's deliverer.
pub struct Deliverer {
    store: Store,
    client: reqwest::Client,
    guard: Guard,
    backoff: Backoff,
    timeout: Duration,
}

/// Build the deliverer: its HTTP client resolves through the guard, follows no redirects and
/// uses no proxy (a proxy would resolve the host itself, unchecked).
pub fn deliverer(store: Store, args: &WebhookArgs) -> Result<Arc<Deliverer>, ClientError> {
    let guard = args.guard();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(guard::resolver(guard))
        .connect_timeout(args.timeout())
        .user_agent(concat!("darkroom-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(Arc::new(Deliverer { store, client, guard, backoff: args.backoff(), timeout: args.timeout() }))
}

/// Deliver due webhooks until `shutdown`: claim what is due (at most `concurrency` in flight),
/// then wait for an announcement of a new delivery, an attempt's end, or `poll`.
pub async fn run(deliverer: Arc<Deliverer>, args: WebhookArgs, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(deliverer.store.clone(), wake.clone(), shutdown.clone()));
    let poll = Duration::from_secs_f64(args.webhook_poll_secs);
    let concurrency = args.webhook_concurrency as usize;
    let mut in_flight = JoinSet::new();
    while !shutdown.is_cancelled() {
        let free = concurrency.saturating_sub(in_flight.len());
        let mut full = false;
        if free > 0 {
            match deliverer.store.claim_webhooks(args.lease(), free as i64).await {
                Ok(claimed) => {
                    full = claimed.len() == free;
                    for d in claimed {
                        let deliverer = deliverer.clone();
                        in_flight.spawn(async move { deliverer.deliver(d).await });
                    }
                }
                Err(e) => tracing::warn!("cannot claim webhook deliveries: {e}"),
            }
        }
        if full {
            // More may be due: claim again once an attempt ends.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = in_flight.join_next() => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    listener.abort();
    // Attempts in flight finish (each within --webhook-timeout-secs) or are dropped: their rows
    // stay claimed until the lease passes, then any replica retries them.
    if tokio::time::timeout(DRAIN, async { while in_flight.join_next().await.is_some() {} }).await.is_err() {
        tracing::info!(left = in_flight.len(), "webhook deliveries still in flight at shutdown are retried after their lease");
        in_flight.abort_all();
    }
}

/// LISTEN for new deliveries (a wake-up per announcement; the poll catches what is missed while
/// disconnected).
async fn listen(store: Store, wake: Arc<Notify>, shutdown: CancellationToken) {
    let pool = store.dedicated_pool();
    while !shutdown.is_cancelled() {
        let connect = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(WEBHOOK_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = match connect.await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("webhook listener cannot connect: {e}; retrying");
                tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::debug!("webhook listener lost its connection: {e}; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

impl Deliverer {
    /// One attempt at `d`, recorded on its row and counted.
    async fn deliver(&self, d: Delivery) {
        let (result, outcome) = self.attempt(&d).await;
        metrics::counter!(darkroom_shared::metrics::WEBHOOK_ATTEMPTS, "outcome" => outcome.as_str()).increment(1);
        match &result {
            AttemptResult::Delivered { status } => {
                tracing::info!(job = %d.job_id, event = %d.event, webhook_id = %d.webhook_id, attempt = d.attempts, status, "webhook delivered")
            }
            AttemptResult::Retry { error, retry_in, .. } => {
                tracing::info!(job = %d.job_id, event = %d.event, webhook_id = %d.webhook_id, attempt = d.attempts, retry_in = ?retry_in, "webhook not delivered: {error}")
            }
            AttemptResult::Dead { error, .. } => {
                tracing::warn!(job = %d.job_id, event = %d.event, webhook_id = %d.webhook_id, attempt = d.attempts, "webhook given up: {error}")
            }
        }
        match self.store.finish_webhook_attempt(d.id, d.claim, &result).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(webhook_id = %d.webhook_id, "the delivery's lease passed during the attempt; another replica has it"),
            Err(e) => tracing::warn!(webhook_id = %d.webhook_id, "cannot record a webhook attempt ({e}); it is retried after its lease"),
        }
    }

    async fn attempt(&self, d: &Delivery) -> (AttemptResult, Outcome) {
        let internal = |e: String| (self.failed(d, None, e, None), Outcome::Internal);
        let body = match &d.payload {
            Some(p) => p.clone(),
            None => match self.render(d).await {
                Ok(body) => body,
                Err(e) => return internal(format!("cannot render the payload: {e}")),
            },
        };
        let secrets = match self.store.webhook_secrets(d.tenant_id).await {
            Ok(s) if s.is_empty() => return internal("the tenant has no webhook secret".into()),
            Ok(s) => s,
            Err(e) => return internal(format!("cannot read the tenant's webhook secret: {e}")),
        };
        let url = match url::Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => return (AttemptResult::Dead { status: None, error: format!("the webhook URL does not parse: {e}") }, Outcome::Internal),
        };
        // A name is checked by the client's resolver as it connects; an IP literal never
        // reaches a resolver, so it is checked here.
        if !matches!(url.host(), Some(url::Host::Domain(_))) {
            if let Err(e) = self.guard.check_url(&url).await {
                return (self.failed(d, None, e.to_string(), None), Outcome::Refused);
            }
        }
        let timestamp = Utc::now().timestamp();
        let signature = match signature_header(&secrets, &d.webhook_id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => return internal(e.to_string()),
        };
        let sent = self
            .client
            .post(url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &d.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => (AttemptResult::Delivered { status: r.status().as_u16() }, Outcome::Delivered),
            Ok(r) if r.status() == reqwest::StatusCode::GONE => {
                (AttemptResult::Dead { status: Some(410), error: "410 Gone: the receiver asked for no more deliveries".into() }, Outcome::Gone)
            }
            Ok(r) => {
                let retry_after = r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, Utc::now()));
                let status = r.status().as_u16();
                (self.failed(d, Some(status), format!("HTTP {}", r.status()), retry_after), Outcome::HttpError)
            }
            Err(e) => {
                let outcome = if e.is_timeout() {
                    Outcome::Timeout
                } else if source_is::<GuardError>(&e) {
                    Outcome::Refused
                } else {
                    Outcome::NetworkError
                };
                (self.failed(d, None, error_chain(&e), None), outcome)
            }
        }
    }

    /// A failed attempt: retried after the backoff (or the receiver's `Retry-After`), unless it
    /// was the last one.
    fn failed(&self, d: &Delivery, status: Option<u16>, error: String, retry_after: Option<Duration>) -> AttemptResult {
        let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        if attempts >= self.backoff.max_attempts {
            return AttemptResult::Dead { status, error: format!("{error} (given up after {attempts} attempts)") };
        }
        AttemptResult::Retry { status, error, retry_in: self.backoff.next(attempts, retry_after) }
    }

    /// The body, rendered from the job as it was when the event happened (with its images'
    /// metadata), then kept: a later attempt sends what the first kept.
    async fn render(&self, d: &Delivery) -> Result<String, StoreError> {
        let images = match d.job.status {
            JobStatus::Succeeded => self.store.images(d.job_id).await?,
            _ => Vec::new(),
        };
        let view = JobView::from(JobDetails { job: d.job.clone(), images, queue_position: None });
        let payload = serde_json::json!({
            "type": format!("job.{}", d.event),
            "timestamp": d.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": view,
        });
        self.store.keep_webhook_payload(d.id, &payload.to_string()).await
    }
}

/// Whether `e`'s chain of sources holds a `T`.
fn source_is<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error with its sources (reqwest's own message rarely says what went wrong).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
