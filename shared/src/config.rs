//! Settings both binaries take: where Postgres and Redis are. Each binary flattens this into
//! its own clap struct; every flag falls back to an environment variable.
use std::time::Duration;

/// Connections to the store and the queue.
#[derive(clap::Args, Clone, Debug)]
pub struct Backends {
    /// Postgres URL; the database is created when missing.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "postgres://postgres@127.0.0.1:5432/darkroom")]
    pub database_url: String,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "DARKROOM_REDIS_PREFIX", default_value = "darkroom")]
    pub redis_prefix: String,
    /// Postgres connections in this process's pool.
    #[arg(long, env = "DARKROOM_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    /// Seconds a query waits for a pool connection (then: unavailable, a 503 in the API). While
    /// Postgres restarts, the pool retries connecting at least every fifth of this, so it also
    /// bounds how late after Postgres is back the process notices.
    #[arg(long, env = "DARKROOM_DB_ACQUIRE_TIMEOUT_SECS", default_value_t = crate::store::DEFAULT_ACQUIRE_TIMEOUT.as_secs_f64(), value_parser = positive_secs)]
    pub db_acquire_timeout_secs: f64,
}

impl Backends {
    /// The Postgres pool these flags describe.
    pub fn pool(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings { max_connections: self.db_connections, acquire_timeout: Duration::from_secs_f64(self.db_acquire_timeout_secs) }
    }
}

/// A number of seconds above zero.
fn positive_secs(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9).ok_or_else(|| format!("expected a number of seconds above 0, got {raw:?}"))
}

/// How jobs are delivered and recovered; API and workers must agree.
#[derive(clap::Args, Clone, Debug)]
pub struct DeliveryPolicy {
    /// A job that failed on this many deliveries ends `failed`.
    #[arg(long, env = "DARKROOM_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,
    /// Seconds between recovery passes (expired leases, lost deliveries, Redis data loss).
    #[arg(long, env = "DARKROOM_RECOVERY_SECS", default_value_t = 2.0)]
    pub recovery_secs: f64,
    /// A worker is live while its last heartbeat is at most this many seconds old.
    #[arg(long, env = "DARKROOM_WORKER_LIVE_SECS", default_value_t = 15.0)]
    pub worker_live_secs: f64,
}

impl DeliveryPolicy {
    pub fn recovery_every(&self) -> Duration {
        Duration::from_secs_f64(self.recovery_secs.max(0.05))
    }

    pub fn worker_live(&self) -> Duration {
        Duration::from_secs_f64(self.worker_live_secs.max(0.1))
    }
}
