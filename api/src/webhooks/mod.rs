//! Signed webhooks (README, "Webhooks"): where they may point ([`guard`]), how they are signed
//! ([`sign`]), when a failed one is retried ([`backoff`]) and the background task of every API
//! replica that delivers them from the Postgres outbox ([`deliver`]).
pub mod backoff;
pub mod deliver;
pub mod guard;
pub mod sign;

use std::time::Duration;

use clap::Args;

/// `darkroom-api serve`'s webhook settings.
#[derive(Args, Clone, Copy, Debug)]
pub struct WebhookArgs {
    /// Allow webhooks to private, loopback, link-local and other internal addresses (refused by
    /// default, at submission and at every delivery): for tests and private networks. The
    /// variable takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "DARKROOM_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,
    /// Attempts per delivery, the first included; then it is given up (with the other defaults
    /// the retries span 4.4 to 8.8 hours).
    #[arg(long, env = "DARKROOM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,
    /// Seconds before the first retry; the delay doubles after each failed attempt (with jitter:
    /// half of it plus a random part of the other half).
    #[arg(long, env = "DARKROOM_WEBHOOK_BACKOFF_BASE_SECS", default_value_t = 5.0, value_parser = crate::cli::above_zero)]
    pub webhook_backoff_base_secs: f64,
    /// The longest delay between attempts, in seconds; it also caps a receiver's `Retry-After`.
    #[arg(long, env = "DARKROOM_WEBHOOK_BACKOFF_CAP_SECS", default_value_t = 7200.0, value_parser = crate::cli::above_zero)]
    pub webhook_backoff_cap_secs: f64,
    /// Seconds one attempt may take (connecting, sending, and the receiver's answer).
    #[arg(long, env = "DARKROOM_WEBHOOK_TIMEOUT_SECS", default_value_t = 10.0, value_parser = crate::cli::above_zero)]
    pub webhook_timeout_secs: f64,
    /// Seconds a replica holds a delivery it claimed: when it dies mid-delivery, another replica
    /// retries after this. Must exceed --webhook-timeout-secs.
    #[arg(long, env = "DARKROOM_WEBHOOK_LEASE_SECS", default_value_t = 60.0, value_parser = crate::cli::above_zero)]
    pub webhook_lease_secs: f64,
    /// Seconds between looks for due deliveries (new ones are also announced at once).
    #[arg(long, env = "DARKROOM_WEBHOOK_POLL_SECS", default_value_t = 1.0, value_parser = crate::cli::above_zero)]
    pub webhook_poll_secs: f64,
    /// Deliveries in flight at once, per replica.
    #[arg(long, env = "DARKROOM_WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_concurrency: u32,
    /// Seconds a webhook host's DNS lookup may take (at submission and at delivery).
    #[arg(long, env = "DARKROOM_WEBHOOK_DNS_TIMEOUT_SECS", default_value_t = 5.0, value_parser = crate::cli::above_zero)]
    pub webhook_dns_timeout_secs: f64,
}

impl WebhookArgs {
    pub fn guard(&self) -> guard::Guard {
        guard::Guard { allow_private: self.webhook_allow_private, dns_timeout: Duration::from_secs_f64(self.webhook_dns_timeout_secs) }
    }

    pub fn backoff(&self) -> backoff::Backoff {
        backoff::Backoff {
            base: Duration::from_secs_f64(self.webhook_backoff_base_secs),
            cap: Duration::from_secs_f64(self.webhook_backoff_cap_secs),
            max_attempts: self.webhook_max_attempts,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.webhook_timeout_secs)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.webhook_lease_secs)
    }
}
