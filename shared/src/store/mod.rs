//! Postgres, the source of truth: tenants and tokens, the model catalog, jobs and images.
//! Every state change of a job happens here, fenced by the job's lease where a worker acts.
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

mod cache;
mod catalog;
mod events;
mod gauges;
mod idempotency;
mod jobs;
mod loads;
mod retention;
mod settings;
mod tenants;
mod webhooks;

pub use cache::cache_key;
pub use catalog::{HashConflict, ModelEntry, ModelInfo};
pub use events::{JobEvent, Preview, EVENT_BATCH, EVENT_CHANNEL};
pub use idempotency::{request_hash, KeyUse, IDEMPOTENCY_TTL_HOURS};
pub use loads::{LoadHistory, ModelLoad, WorkerStart, MODEL_LOADS_KEPT};
pub use retention::{Purged, PURGE_BATCH};
pub use tenants::{LimitsUpdate, Tenant, TenantLimits, TenantSummary, VISIBLE_PREFIX_LEN};
pub use webhooks::{AttemptResult, Delivery, NewSecret, PREVIOUS_SECRET_HOURS, WEBHOOK_CHANNEL};

/// The channel on which job state changes are announced (payload: the job id).
pub const JOB_CHANNEL: &str = "darkroom_jobs";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// What a tenant stores would pass a bound.
    #[error("{0}")]
    TooLarge(String),
    /// The tenant has `max_queued` queued or running jobs already.
    #[error("the tenant has {max_queued} queued or running jobs, its quota (max_queued)")]
    QuotaExceeded { max_queued: i64 },
}

impl StoreError {
    /// Whether Postgres could not be reached or dropped the connection under the query (a
    /// restart, a failover, a full pool): worth retrying, unlike a fault in the query itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
                // A connection cut mid-message surfaces as a protocol error.
                sqlx::Error::Protocol(_) => true,
                // Class 08: connection exceptions; 57P01-57P03: administrator, crash, or
                // cannot-connect-now shutdowns; 53300: too many connections.
                sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")),
                _ => false,
            },
            _ => false,
        }
    }
}

/// The migrations in `migrations/`, embedded in both binaries.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a query waits for a pool connection by default (`--db-acquire-timeout-secs`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The size of a process's pool and how long a query waits for one of its connections.
///
/// While Postgres is down (a restart), a query's wait is spent reconnecting, with sqlx backing
/// off up to a fifth of the acquire timeout between attempts: the acquire timeout also bounds
/// how late after Postgres is back the pool notices (1 s at the default of 5 s), and how long a
/// request waits before its 503.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl From<u32> for PoolSettings {
    /// `max_connections` connections, with the default acquire timeout.
    fn from(max_connections: u32) -> Self {
        PoolSettings { max_connections, acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT }
    }
}

/// A pool of Postgres connections and the queries on them.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connect to `url`, creating the database when it does not exist yet.
    pub async fn connect(url: &str, pool: impl Into<PoolSettings>) -> Result<Store, StoreError> {
        Store::open(url, pool.into(), false).await
    }

    /// Like [`Store::connect`], for workers: commits do not wait for the WAL flush
    /// (`synchronous_commit = off`). A Postgres crash can then forget a worker's last writes
    /// (progress, a claim, a completion) but never corrupts anything: a forgotten claim leaves
    /// the job queued (recovery enqueues it again), a forgotten completion leaves its lease to
    /// expire (the job runs again). Submissions go through [`Store::connect`] and stay durable.
    pub async fn connect_relaxed(url: &str, pool: impl Into<PoolSettings>) -> Result<Store, StoreError> {
        Store::open(url, pool.into(), true).await
    }

    async fn open(url: &str, pool: PoolSettings, relaxed: bool) -> Result<Store, StoreError> {
        if !Postgres::database_exists(url).await? {
            match Postgres::create_database(url).await {
                Ok(()) => tracing::info!("created database"),
                // another process may have created it between the two calls
                Err(e) if Postgres::database_exists(url).await.unwrap_or(false) => tracing::debug!("database appeared meanwhile: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let mut options: PgConnectOptions = url.parse()?;
        if relaxed {
            options = options.options([("synchronous_commit", "off")]);
        }
        // An idle connection is pinged before use (sqlx's default, kept explicit): one that a
        // Postgres restart closed is replaced instead of failing the query.
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// Apply the migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pool of one connection of its own, to the same database, for a long-lived session (a
    /// LISTEN). It takes no connection from the main pool and, after a restart, reconnects
    /// whatever the main pool is busy with: while Postgres is down an acquire retries connecting
    /// at least every 200 ms (a fifth of its 1 s acquire timeout).
    pub fn dedicated_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(1))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*self.pool.connect_options()).clone())
    }

    /// Whether Postgres answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
