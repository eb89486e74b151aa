//! Tenants' limits as the API applies them: each tenant's own (Postgres, `darkroom-api tenant
//! set`) over the serve-wide defaults. The rate limit and the quota are checked at submission
//! (`Service::submit`, the one place every route that creates work goes through); the running
//! cap and the weight are applied where jobs are handed out (the queue's DEQUEUE), from a copy
//! this module keeps in Redis, refreshed every few seconds and at each submission.
use std::time::Duration;

use darkroom_shared::queue::{Queue, SchedulingLimits};
use darkroom_shared::ratelimit::Rate;
use darkroom_shared::store::{Store, TenantLimits};
use tokio_util::sync::CancellationToken;

use crate::cli::TenantDefaults;

/// A tenant's limits in force. Zero means no limit for `rate.per_minute`, `max_queued` and
/// `max_running`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Effective {
    pub rate: Rate,
    pub max_queued: u32,
    pub max_running: u32,
    pub weight: f64,
}

impl Effective {
    pub fn of(own: &TenantLimits, defaults: &TenantDefaults) -> Effective {
        let count = |v: Option<i32>, default: u32| v.map(|n| u32::try_from(n).unwrap_or(0)).unwrap_or(default);
        Effective {
            rate: Rate { per_minute: own.rate_per_minute.unwrap_or(defaults.default_rate), burst: count(own.burst, defaults.default_burst).max(1) },
            max_queued: count(own.max_queued, defaults.default_max_queued),
            max_running: count(own.max_running, defaults.default_max_running),
            weight: own.weight.filter(|w| *w > 0.0).unwrap_or(defaults.default_weight),
        }
    }

    /// What the queue's DEQUEUE applies.
    pub fn scheduling(&self) -> SchedulingLimits {
        SchedulingLimits { weight: Some(self.weight), max_running: i32::try_from(self.max_running).ok() }
    }
}

/// Copy every tenant's weight and running cap into Redis every `every` until `shutdown`, so a
/// changed limit (or a Redis that lost its data) is in force within that time.
pub async fn sync(store: Store, queue: Queue, defaults: TenantDefaults, every: Duration, shutdown: CancellationToken) {
    darkroom_shared::shutdown::every(every, &shutdown, || async {
        let limits = match store.all_tenant_limits().await {
            Ok(l) => l,
            Err(e) => return tracing::warn!("reading tenants' limits failed: {e}"),
        };
        let limits: Vec<_> = limits.iter().map(|(id, own)| (*id, Effective::of(own, &defaults).scheduling())).collect();
        if let Err(e) = queue.set_limits(&limits).await {
            tracing::warn!("copying tenants' limits to Redis failed: {e}");
        }
    })
    .await
}
