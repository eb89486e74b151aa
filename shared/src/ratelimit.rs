//! Per-tenant rate limits shared by every API replica: GCRA (the generic cell rate algorithm,
//! a token bucket kept as one timestamp) in one Redis script that reads Redis' own clock, so
//! replicas with skewed clocks still enforce one budget per tenant.
//!
//! Key (under the queue's prefix `P`): `P:rate:{tenant}`, the tenant's theoretical arrival time
//! in microseconds, expiring once the bucket is full again. Losing it refills the bucket.
use std::time::Duration;

use deadpool_redis::redis::Script;
use uuid::Uuid;

use crate::queue::QueueError;

/// Take one request from the tenant's bucket. KEYS: the tenant's key. ARGV: emission interval
/// (µs), burst. Returns {allowed (1/0), µs until the next request is allowed, requests left}.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if now < tat - tolerance then
  return {0, tat - tolerance - now, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local left = math.floor((now + tolerance - new_tat) / interval) + 1
local wait = 0
if left <= 0 then wait = new_tat - tolerance - now end
return {1, wait, left}
"#;

/// A tenant's rate: `per_minute` requests a minute, sustained, and `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_minute: f64,
    pub burst: u32,
}

/// The answer of [`RateLimiter::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// How long until the next request would be allowed (zero while some are left).
    pub retry_after: Duration,
    /// Requests still allowed at once after this one.
    pub remaining: u64,
}

/// The rate limiter: a Redis pool (the queue's) and the script.
#[derive(Clone)]
pub struct RateLimiter {
    pool: deadpool_redis::Pool,
    prefix: String,
    take: Script,
}

impl RateLimiter {
    pub fn new(pool: deadpool_redis::Pool, prefix: &str) -> RateLimiter {
        RateLimiter { pool, prefix: prefix.to_string(), take: Script::new(TAKE) }
    }

    /// Count one request of `tenant` against `rate` (a rate of 0 per minute is no limit).
    pub async fn take(&self, tenant: Uuid, rate: Rate) -> Result<Decision, QueueError> {
        if rate.per_minute <= 0.0 {
            return Ok(Decision { allowed: true, retry_after: Duration::ZERO, remaining: u64::MAX });
        }
        let interval_us = (60_000_000.0 / rate.per_minute).round().max(1.0) as u64;
        let mut conn = self.pool.get().await?;
        let (allowed, wait_us, left): (i64, i64, i64) =
            self.take.key(format!("{}:rate:{tenant}", self.prefix)).arg(interval_us).arg(rate.burst.max(1)).invoke_async(&mut conn).await?;
        Ok(Decision { allowed: allowed == 1, retry_after: Duration::from_micros(wait_us.max(0) as u64), remaining: left.max(0) as u64 })
    }
}
