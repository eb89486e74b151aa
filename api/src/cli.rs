//! The command line of `darkroom-api`: one clap struct. Every flag falls back to an environment
//! variable; the backend flags (`--database-url`, `--redis-url`, ...) may come before or after
//! the subcommand.
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use darkroom_shared::config::{Backends, DeliveryPolicy};
use darkroom_shared::logging::LogFormat;

/// Darkroom API server and administration.
#[derive(Parser, Debug)]
#[command(name = "darkroom-api", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub backends: Backends,
    /// Log lines as `text` (for people) or `json` (one object a line; README, "Observability").
    #[arg(long, env = "DARKROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Apply the database migrations that have not run yet.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DARKROOM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Largest request body in bytes (also the most a decoded init image may take).
    #[arg(long, env = "DARKROOM_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest `Prefer: wait` in seconds (plain `Prefer: wait` waits this long).
    #[arg(long, env = "DARKROOM_MAX_WAIT_SECS", default_value_t = 300)]
    pub max_wait_secs: u64,
    /// The model the Hugging Face endpoint dialect (`POST /`) runs; when unset and the catalog
    /// holds exactly one model, that one.
    #[arg(long, env = "DARKROOM_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// A name the dialects accept for a catalog model, ALIAS=MODEL (repeatable; the variable is
    /// comma-separated), e.g. `--model-alias SD1.5=sd15`.
    #[arg(long = "model-alias", env = "DARKROOM_MODEL_ALIASES", value_delimiter = ',', value_parser = parse_alias)]
    pub model_aliases: Vec<(String, String)>,
    /// The largest job accepted, in the cost unit of fair sharing (one UNet evaluation of a
    /// 512×512 SD 1.x image; README, "Sharing the service"). The default is the largest SD 1.x
    /// job the bounds allow (1024×1024, 8 images, 150 steps); an SDXL job costs three times as
    /// much per pixel, so its largest requests (2048×2048 × 8 × 150 = 57,600) are refused.
    #[arg(long, env = "DARKROOM_MAX_JOB_COST", default_value_t = 4800.0, value_parser = above_zero)]
    pub max_job_cost: f64,
    /// How long a finished job's images (and init image) are kept: `7d`, `12h`, `30m`, `45s`, or
    /// 0 to keep them forever. A purged image answers 410 Gone.
    #[arg(long, env = "DARKROOM_RETENTION", default_value = "7d", value_parser = duration)]
    pub retention: Duration,
    /// How long a finished job's row is kept (0: forever); its images go with it.
    #[arg(long, env = "DARKROOM_JOB_RETENTION", default_value = "30d", value_parser = duration)]
    pub job_retention: Duration,
    /// How long the rows of stopped workers are kept.
    #[arg(long, env = "DARKROOM_WORKER_RETENTION", default_value = "1d", value_parser = duration)]
    pub worker_retention: Duration,
    /// Seconds between purge passes (any number of replicas may run them).
    #[arg(long, env = "DARKROOM_PURGE_EVERY_SECS", default_value_t = 60.0, value_parser = above_zero)]
    pub purge_every_secs: f64,
    /// Requests of one tenant that may wait for their jobs at once (`Prefer: wait` and the
    /// blocking dialects), per API process; over it, 429 (0: no cap).
    #[arg(long, env = "DARKROOM_MAX_WAITING", default_value_t = 64)]
    pub max_waiting: u32,
    /// Event streams (`GET /v1/jobs/{id}/events`) one tenant may have open at once, per API
    /// process; over it, 429 (0: no cap).
    #[arg(long, env = "DARKROOM_MAX_EVENT_STREAMS", default_value_t = 64)]
    pub max_event_streams: u32,
    /// Seconds between the keep-alive comments of an idle event stream, so that proxies and load
    /// balancers do not close it.
    #[arg(long, env = "DARKROOM_EVENT_KEEPALIVE_SECS", default_value_t = 15.0, value_parser = above_zero)]
    pub event_keepalive_secs: f64,
    /// Seconds a client may take to send a request body; a slower one is answered 408.
    #[arg(long, env = "DARKROOM_BODY_READ_TIMEOUT_SECS", default_value_t = 60.0, value_parser = above_zero)]
    pub body_read_timeout_secs: f64,
    /// Seconds a client may take to send a request's line and headers, counted from the
    /// connection's opening or the end of its previous response (an idle keep-alive connection
    /// is closed after this too); a slower one is cut off.
    #[arg(long, env = "DARKROOM_HEADER_READ_TIMEOUT_SECS", default_value_t = 30.0, value_parser = above_zero)]
    pub header_read_timeout_secs: f64,
    /// The most AUTOMATIC1111 options (`POST /sdapi/v1/options`) a tenant keeps.
    #[arg(long, env = "DARKROOM_MAX_OPTIONS_KEYS", default_value_t = 64)]
    pub max_options_keys: u32,
    /// The most bytes (keys and JSON values) of AUTOMATIC1111 options a tenant keeps.
    #[arg(long, env = "DARKROOM_MAX_OPTIONS_BYTES", default_value_t = 64 * 1024)]
    pub max_options_bytes: u32,
    /// Also serve `GET /metrics` on this address (it is always served on --listen, without a
    /// token), e.g. to keep scrapes on a port that is not exposed publicly.
    #[arg(long, env = "DARKROOM_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The queue, running and worker gauges of `/metrics` are read from Postgres at most once
    /// per this many seconds (concurrent scrapes share one read).
    #[arg(long, env = "DARKROOM_METRICS_REFRESH_SECS", default_value_t = 1.0, value_parser = above_zero)]
    pub metrics_refresh_secs: f64,
    #[command(flatten)]
    pub delivery: DeliveryPolicy,
    #[command(flatten)]
    pub tenant_defaults: TenantDefaults,
    #[command(flatten)]
    pub load_estimate: LoadEstimate,
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookArgs,
}

/// How long a model with no live worker is said to take to come up (Hugging Face's 503
/// `estimated_time`): the median of the start-up times workers recorded for it.
#[derive(Args, Clone, Copy, Debug)]
pub struct LoadEstimate {
    /// How many of a model's newest recorded worker start-ups the median is taken over (1-100).
    #[arg(long, env = "DARKROOM_LOAD_ESTIMATE_WINDOW", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub load_estimate_window: u32,
    /// The estimate, in seconds, for a model no worker ever recorded a start-up for.
    #[arg(long, env = "DARKROOM_DEFAULT_LOAD_SECS", default_value_t = 20.0, value_parser = above_zero)]
    pub default_load_secs: f64,
}

/// The limits of tenants that have none of their own (`darkroom-api tenant set`).
#[derive(Args, Clone, Copy, Debug)]
pub struct TenantDefaults {
    /// Jobs a minute a tenant may submit, sustained, on every route that creates work (0: no limit).
    #[arg(long, env = "DARKROOM_DEFAULT_RATE", default_value_t = 600.0, value_parser = at_least_zero)]
    pub default_rate: f64,
    /// Jobs a tenant may submit at once above the sustained rate.
    #[arg(long, env = "DARKROOM_DEFAULT_BURST", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub default_burst: u32,
    /// Queued plus running jobs a tenant may have (0: no quota).
    #[arg(long, env = "DARKROOM_DEFAULT_MAX_QUEUED", default_value_t = 1000)]
    pub default_max_queued: u32,
    /// Jobs of a tenant running at once across all workers (0: no cap).
    #[arg(long, env = "DARKROOM_DEFAULT_MAX_RUNNING", default_value_t = 0)]
    pub default_max_running: u32,
    /// A tenant's share of GPU time relative to others.
    #[arg(long, env = "DARKROOM_DEFAULT_WEIGHT", default_value_t = 1.0, value_parser = above_zero)]
    pub default_weight: f64,
}

/// `ALIAS=MODEL`, both non-empty.
fn parse_alias(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((alias, model)) if !alias.trim().is_empty() && !model.trim().is_empty() => Ok((alias.trim().to_string(), model.trim().to_string())),
        _ => Err(format!("expected ALIAS=MODEL, got {raw:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant's unique name.
        name: String,
    },
    /// List tenants with their limits (`*`: the serve-wide default) and active tokens.
    List,
    /// Set a tenant's limits; each takes effect within seconds, without a restart. `default`
    /// returns a limit to the serve-wide default (`darkroom-api serve --help`); 0 means no limit
    /// for the rate, the quota and the running cap.
    Set {
        /// The tenant's name.
        name: String,
        /// Jobs a minute, sustained (every route that creates work counts).
        #[arg(long, value_name = "PER_MINUTE|default", value_parser = limit::<f64>)]
        rate: Option<Limit<f64>>,
        /// Jobs that may arrive at once above the sustained rate (at least 1).
        #[arg(long, value_name = "N|default", value_parser = limit::<i32>)]
        burst: Option<Limit<i32>>,
        /// Queued plus running jobs at most; over it, submissions are refused with 429.
        #[arg(long, value_name = "N|default", value_parser = limit::<i32>)]
        max_queued: Option<Limit<i32>>,
        /// Running jobs at most, across all workers; the others wait while other tenants run.
        #[arg(long, value_name = "N|default", value_parser = limit::<i32>)]
        max_running: Option<Limit<i32>>,
        /// Share of GPU time relative to other tenants (1 = equal; 3 = three times as much).
        #[arg(long, value_name = "W|default", value_parser = limit::<f64>)]
        weight: Option<Limit<f64>>,
    },
    /// Create or rotate the tenant's webhook signing secret and print it (`whsec_...`, alone on
    /// the last line). Deliveries are signed with it (Standard Webhooks); after a rotation the
    /// previous secret signs them too for a day, so receivers can switch without losing any.
    WebhookSecret {
        /// The tenant's name.
        name: String,
    },
}

/// A duration: a number with a unit (`d`, `h`, `m`, `s`; seconds without one).
fn duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw.find(|c: char| c.is_ascii_alphabetic()).map(|i| raw.split_at(i)).unwrap_or((raw, "s"));
    let scale = match unit {
        "d" => 86_400.0,
        "h" => 3_600.0,
        "m" => 60.0,
        "s" => 1.0,
        _ => return Err(format!("expected a duration such as 7d, 12h, 30m or 45s, got {raw:?}")),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("expected a duration such as 7d, 12h, 30m or 45s, got {raw:?}"))
}

fn at_least_zero(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| format!("expected a number of at least 0, got {raw:?}"))
}

pub fn above_zero(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| format!("expected a number above 0, got {raw:?}"))
}

/// A limit given to `tenant set`: a value, or `default` (the serve-wide default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit<T> {
    Default,
    Value(T),
}

impl<T> Limit<T> {
    /// `None`: the default; `Some(v)`: the value.
    pub fn value(self) -> Option<T> {
        match self {
            Limit::Default => None,
            Limit::Value(v) => Some(v),
        }
    }
}

/// A limit's value: `default`, or a non-negative number.
fn limit<T: std::str::FromStr + PartialOrd + Default>(raw: &str) -> Result<Limit<T>, String> {
    if raw.eq_ignore_ascii_case("default") {
        return Ok(Limit::Default);
    }
    match raw.parse::<T>() {
        Ok(v) if v >= T::default() => Ok(Limit::Value(v)),
        _ => Err(format!("expected a non-negative number or `default`, got {raw:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a new API token for a tenant; it is printed once, alone on the last line.
    Issue {
        /// The tenant's name.
        tenant: String,
    },
    /// Revoke the token whose visible prefix starts with PREFIX (at least 6 characters).
    Revoke {
        /// The start of the token (e.g. `drk_AbCd1234`).
        prefix: String,
    },
}

impl Cli {
    /// Parse the process arguments (exits with clap's message on a usage error).
    pub fn parse_args() -> Cli {
        // The top-level flags are the backends: make them global so they work after the
        // subcommand too, and keep their values (URLs may hold passwords) out of `--help`.
        let matches: ArgMatches = Cli::command().mut_args(|a| a.global(true).hide_env_values(true)).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
