//! Redis delivers job ids to workers, and decides whose job runs next: tenants share GPU time
//! by the estimated cost of their jobs (`crate::cost`), scaled by their weights, and a tenant
//! never has more jobs running than its cap. It holds no state that Postgres does not: the
//! queues and running sets are rebuilt from the store (recovery), the fair-share clock and the
//! limits copy are harmless to lose (every tenant then starts level; the API writes the limits
//! again within seconds).
//!
//! Keys (under a configurable prefix `P`):
//! - `P:tenants:{model}`: the tenants that have jobs queued for the model;
//! - `P:q:{model}:{tenant}`: that tenant's queued job ids, oldest first;
//! - `P:cost`: each queued or delivered job's estimated cost;
//! - `P:running:{tenant}`: the tenant's jobs handed to a worker and not yet ended; `P:runners`:
//!   the tenants that have such a set;
//! - `P:weight`, `P:maxrun`: each tenant's weight and running cap (a copy of Postgres');
//! - `P:vtime`, `P:finish`: the fair-share clock (below);
//! - `P:wake:{model}`: tokens that wake workers blocked waiting for the model's work;
//! - `P:inflight`: deliveries handed to a worker but not yet claimed in Postgres, scored by
//!   the time after which they are handed out again;
//! - `P:pending`: every job id enqueued and not yet acknowledged by a worker, so recovery can
//!   find queued jobs whose delivery was lost and enqueue them again;
//! - `P:epoch`: a marker whose absence means Redis lost its data (restart, FLUSHALL).
//!
//! Fairness lives in one place, [`DEQUEUE`]: start-time fair queuing across tenants, over all
//! the models the asking worker serves. Each tenant has a finish tag `F`; the head job of a
//! tenant with work may start at `S = max(V, F)` (`V` the virtual time: the start tag of the
//! latest job to start). The job with the smallest `S` runs (the older job on a tie), then
//! `F = S + cost / weight` and `V = max(V, S)`. Over any busy period each tenant with work gets
//! GPU time in proportion to its weight, whatever its jobs' sizes; a tenant that was idle comes
//! back at `V`, with no credit banked; the tag is per tenant, not per model, so work spread over
//! several models earns no extra turns. A tenant at its running cap is skipped.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::{self, AsyncCommands, Script};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis configuration: {0}")]
    Config(String),
}

/// What DEQUEUE applies of a tenant's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SchedulingLimits {
    /// Share of GPU time relative to other tenants (`None`: 1).
    pub weight: Option<f64>,
    /// Jobs running at once at most (`None` or 0: no cap).
    pub max_running: Option<i32>,
}

/// One job id handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub model: String,
    pub tenant: Uuid,
    pub job: Uuid,
}

impl Delivery {
    fn member(&self) -> String {
        format!("{}|{}|{}", self.model, self.tenant, self.job)
    }

    fn parse(member: &str) -> Option<Delivery> {
        let mut parts = member.rsplitn(3, '|');
        let job = parts.next()?.parse().ok()?;
        let tenant = parts.next()?.parse().ok()?;
        let model = parts.next()?.to_string();
        Some(Delivery { model, tenant, job })
    }
}

/// Push a job id for a tenant, note its cost and the tenant's work on the model, wake a worker.
/// A push at the back of a job already pending is skipped (the submission and a recovery pass
/// may both enqueue a new job); a push at the front (a delivery that never started) always goes.
/// KEYS: tenants set, tenant queue, wake, pending, cost. ARGV: tenant, job, "1" to push at the
/// front, cost.
const ENQUEUE: &str = r#"
local new = redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[4])
if ARGV[3] == '1' then redis.call('LPUSH', KEYS[2], ARGV[2])
elseif new == 1 then redis.call('RPUSH', KEYS[2], ARGV[2])
else return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 63)
return 1
"#;

/// The one place that chooses whose job runs next (see the module docs): the tenant whose head
/// job has the smallest start tag, over every model the worker serves, skipping tenants at their
/// running cap; records the delivery as in flight and the job as running for its tenant.
/// KEYS: vtime, finish, weight, maxrun, inflight, cost, runners. ARGV: key prefix, redelivery
/// deadline (ms), then the worker's models.
const DEQUEUE: &str = r#"
local prefix = ARGV[1]
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local best_s, best_job, best_t, best_m, best_q
for i = 3, #ARGV do
  local m = ARGV[i]
  local tenants_key = prefix .. ':tenants:' .. m
  for _, t in ipairs(redis.call('SMEMBERS', tenants_key)) do
    local q = prefix .. ':q:' .. m .. ':' .. t
    local head = redis.call('LINDEX', q, 0)
    if not head then
      redis.call('SREM', tenants_key, t)
    else
      local cap = tonumber(redis.call('HGET', KEYS[4], t) or '0')
      if cap <= 0 or redis.call('SCARD', prefix .. ':running:' .. t) < cap then
        local s = math.max(v, tonumber(redis.call('HGET', KEYS[2], t) or '0'))
        if best_s == nil or s < best_s or (s == best_s and head < best_job) then
          best_s, best_job, best_t, best_m, best_q = s, head, t, m, q
        end
      end
    end
  end
end
if best_s == nil then return false end
redis.call('LPOP', best_q)
if redis.call('LLEN', best_q) == 0 then redis.call('SREM', prefix .. ':tenants:' .. best_m, best_t) end
local cost = tonumber(redis.call('HGET', KEYS[6], best_job) or '1')
local w = tonumber(redis.call('HGET', KEYS[3], best_t) or '1')
if w <= 0 then w = 1 end
redis.call('HSET', KEYS[2], best_t, tostring(best_s + cost / w))
if best_s > v then redis.call('SET', KEYS[1], tostring(best_s)) end
redis.call('SADD', prefix .. ':running:' .. best_t, best_job)
redis.call('SADD', KEYS[7], best_t)
redis.call('ZADD', KEYS[5], ARGV[2], best_m .. '|' .. best_t .. '|' .. best_job)
return {best_m, best_t, best_job}
"#;

/// Remove and return deliveries whose deadline passed. KEYS: inflight. ARGV: now (ms).
const TAKE_EXPIRED: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"#;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The Redis side of delivery.
#[derive(Clone)]
pub struct Queue {
    pool: deadpool_redis::Pool,
    /// For blocking waits, which must not share the pool's response timeout.
    client: redis::Client,
    prefix: String,
    enqueue: Script,
    dequeue: Script,
    take_expired: Script,
}

impl Queue {
    /// Connect to `url`; every key is under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Queue, QueueError> {
        let pool = deadpool_redis::Config::from_url(url).create_pool(Some(deadpool_redis::Runtime::Tokio1)).map_err(|e| QueueError::Config(e.to_string()))?;
        let client = redis::Client::open(url)?;
        let queue = Queue {
            pool,
            client,
            prefix: prefix.to_string(),
            enqueue: Script::new(ENQUEUE),
            dequeue: Script::new(DEQUEUE),
            take_expired: Script::new(TAKE_EXPIRED),
        };
        queue.ping().await?;
        Ok(queue)
    }

    /// The Redis pool, for the rate limiter (`crate::ratelimit`), which shares the prefix.
    pub fn pool(&self) -> &deadpool_redis::Pool {
        &self.pool
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Queue a job id of estimated `cost` at the back of its tenant's queue.
    pub async fn enqueue(&self, model: &str, tenant: Uuid, job: Uuid, cost: f64) -> Result<(), QueueError> {
        self.push(model, tenant, job, cost, false).await
    }

    /// Put a job id back at the front of its tenant's queue (a delivery that never started, a
    /// job whose worker died): it is no longer running.
    pub async fn requeue_front(&self, model: &str, tenant: Uuid, job: Uuid, cost: f64) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.srem(self.key(&["running", &tenant.to_string()]), job.to_string()).await?;
        drop(conn);
        self.push(model, tenant, job, cost, true).await
    }

    async fn push(&self, model: &str, tenant: Uuid, job: Uuid, cost: f64, front: bool) -> Result<(), QueueError> {
        let tenant_s = tenant.to_string();
        let mut conn = self.pool.get().await?;
        let _: i64 = self
            .enqueue
            .key(self.key(&["tenants", model]))
            .key(self.key(&["q", model, &tenant_s]))
            .key(self.key(&["wake", model]))
            .key(self.key(&["pending"]))
            .key(self.key(&["cost"]))
            .arg(&tenant_s)
            .arg(job.to_string())
            .arg(if front { "1" } else { "0" })
            .arg(cost.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The next job for any of `models`, chosen by [`DEQUEUE`]. The delivery is handed out
    /// again after `redeliver_after` unless acknowledged.
    pub async fn dequeue(&self, models: &[String], redeliver_after: Duration) -> Result<Option<Delivery>, QueueError> {
        if models.is_empty() {
            return Ok(None);
        }
        let mut conn = self.pool.get().await?;
        let deadline = now_ms() + redeliver_after.as_millis() as u64;
        let mut call = self.dequeue.prepare_invoke();
        call.key(self.key(&["vtime"]))
            .key(self.key(&["finish"]))
            .key(self.key(&["weight"]))
            .key(self.key(&["maxrun"]))
            .key(self.key(&["inflight"]))
            .key(self.key(&["cost"]))
            .key(self.key(&["runners"]))
            .arg(&self.prefix)
            .arg(deadline);
        for m in models {
            call.arg(m);
        }
        let got: Option<(String, String, String)> = call.invoke_async(&mut conn).await?;
        let Some((model, tenant, job)) = got else { return Ok(None) };
        match (tenant.parse(), job.parse()) {
            (Ok(tenant), Ok(job)) => Ok(Some(Delivery { model, tenant, job })),
            _ => {
                tracing::warn!(%tenant, %job, "dropping a malformed queue entry");
                Ok(None)
            }
        }
    }

    /// The worker claimed (or discarded) the delivery in Postgres: it is no longer in flight.
    /// A delivery that was not `claimed` (the job was canceled meanwhile) frees its running slot.
    pub async fn ack(&self, delivery: &Delivery, claimed: bool) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        pipe.atomic().zrem(self.key(&["inflight"]), delivery.member()).srem(self.key(&["pending"]), delivery.job.to_string());
        if !claimed {
            pipe.srem(self.key(&["running", &delivery.tenant.to_string()]), delivery.job.to_string());
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// A tenant's job ended, was handed back or went back to the queue: its running slot is
    /// free, and a worker of `model` is woken in case the tenant was at its cap.
    pub async fn release(&self, tenant: Uuid, job: Uuid, model: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: () = redis::pipe()
            .atomic()
            .srem(self.key(&["running", &tenant.to_string()]), job.to_string())
            .hdel(self.key(&["cost"]), job.to_string())
            .lpush(self.key(&["wake", model]), "1")
            .ltrim(self.key(&["wake", model]), 0, 63)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Mark jobs as running for their tenants (rebuilding after Redis lost its data).
    pub async fn mark_running(&self, jobs: &[(Uuid, Uuid)]) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        for (tenant, job) in jobs {
            let _: () = redis::pipe()
                .sadd(self.key(&["running", &tenant.to_string()]), job.to_string())
                .sadd(self.key(&["runners"]), tenant.to_string())
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Every job Redis counts as running, by tenant.
    pub async fn running(&self) -> Result<Vec<(Uuid, Uuid)>, QueueError> {
        let mut conn = self.pool.get().await?;
        let tenants: Vec<String> = conn.smembers(self.key(&["runners"])).await?;
        let mut out = Vec::new();
        for t in tenants {
            let jobs: Vec<String> = conn.smembers(self.key(&["running", &t])).await?;
            if jobs.is_empty() {
                let _: () = conn.srem(self.key(&["runners"]), &t).await?;
            }
            let Ok(tenant) = t.parse::<Uuid>() else { continue };
            out.extend(jobs.iter().filter_map(|j| j.parse().ok()).map(|job| (tenant, job)));
        }
        Ok(out)
    }

    /// Forget running jobs that have ended (a worker that died between its result and
    /// [`Queue::release`]): recovery passes the ones Postgres says are finished.
    pub async fn forget_running(&self, jobs: &[(Uuid, Uuid)]) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        for (tenant, job) in jobs {
            let _: () = redis::pipe()
                .srem(self.key(&["running", &tenant.to_string()]), job.to_string())
                .hdel(self.key(&["cost"]), job.to_string())
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// How many of the tenant's jobs Redis counts as running.
    pub async fn running_count(&self, tenant: Uuid) -> Result<usize, QueueError> {
        let mut conn = self.pool.get().await?;
        Ok(conn.scard(self.key(&["running", &tenant.to_string()])).await?)
    }

    /// The weights and running caps DEQUEUE applies (`None`: the default, weight 1 and no cap).
    pub async fn set_limits(&self, limits: &[(Uuid, SchedulingLimits)]) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        for (tenant, l) in limits {
            let t = tenant.to_string();
            match l.weight {
                Some(w) if w > 0.0 && w != 1.0 => pipe.hset(self.key(&["weight"]), &t, w.to_string()),
                _ => pipe.hdel(self.key(&["weight"]), &t),
            };
            match l.max_running {
                Some(n) if n > 0 => pipe.hset(self.key(&["maxrun"]), &t, n),
                _ => pipe.hdel(self.key(&["maxrun"]), &t),
            };
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Of `jobs`, those Redis knows nothing about (neither queued nor handed out unacknowledged).
    pub async fn unknown(&self, jobs: &[Uuid]) -> Result<Vec<Uuid>, QueueError> {
        let mut unknown = Vec::new();
        let mut conn = self.pool.get().await?;
        for chunk in jobs.chunks(1000) {
            let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            let known: Vec<bool> = redis::cmd("SMISMEMBER").arg(self.key(&["pending"])).arg(&ids).query_async(&mut conn).await?;
            unknown.extend(chunk.iter().zip(known).filter(|(_, k)| !k).map(|(id, _)| *id));
        }
        Ok(unknown)
    }

    /// Deliveries never acknowledged in time (their worker died between Redis and Postgres).
    pub async fn take_expired_deliveries(&self) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.pool.get().await?;
        let due: Vec<String> = self.take_expired.key(self.key(&["inflight"])).arg(now_ms()).invoke_async(&mut conn).await?;
        Ok(due.iter().filter_map(|m| Delivery::parse(m)).collect())
    }

    /// A connection for [`Queue::wait`], without the pool's response timeout.
    pub async fn blocking_connection(&self) -> Result<redis::aio::MultiplexedConnection, QueueError> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// Block until work may be there for one of `models`, or `timeout` passes.
    pub async fn wait(&self, conn: &mut redis::aio::MultiplexedConnection, models: &[String], timeout: Duration) -> Result<(), QueueError> {
        let keys: Vec<String> = models.iter().map(|m| self.key(&["wake", m])).collect();
        let _: Option<(String, String)> = conn.blpop(keys, timeout.as_secs_f64()).await?;
        Ok(())
    }

    /// Mark this Redis as holding our queues. Returns true when the marker was missing: Redis
    /// is new or lost its data, and the queued jobs must be re-enqueued from Postgres.
    pub async fn claim_epoch(&self) -> Result<bool, QueueError> {
        let mut conn = self.pool.get().await?;
        let set: Option<String> = redis::cmd("SET").arg(self.key(&["epoch"])).arg(Uuid::new_v4().to_string()).arg("NX").query_async(&mut conn).await?;
        Ok(set.is_some())
    }

    /// How many job ids wait in Redis for `model` (all tenants).
    pub async fn depth(&self, model: &str) -> Result<usize, QueueError> {
        let mut conn = self.pool.get().await?;
        let tenants: Vec<String> = conn.smembers(self.key(&["tenants", model])).await?;
        let mut total = 0;
        for t in tenants {
            let n: usize = conn.llen(self.key(&["q", model, &t])).await?;
            total += n;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_members_round_trip_even_with_bars_in_model_names() {
        let d = Delivery { model: "my|model".into(), tenant: Uuid::now_v7(), job: Uuid::now_v7() };
        assert_eq!(Delivery::parse(&d.member()), Some(d));
        assert_eq!(Delivery::parse("garbage"), None);
    }
}
