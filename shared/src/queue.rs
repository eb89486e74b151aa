//! Redis delivers job ids to workers, per model and fairly between tenants. It holds no state
//! that Postgres does not: everything here can be rebuilt from the queued jobs in the store.
//!
//! Keys (under a configurable prefix `P`):
//! - `P:ring:{model}`: the tenants that have jobs queued for the model, in serving order;
//! - `P:q:{model}:{tenant}`: that tenant's queued job ids, oldest first;
//! - `P:wake:{model}`: tokens that wake workers blocked waiting for the model's work;
//! - `P:inflight`: deliveries handed to a worker but not yet claimed in Postgres, scored by
//!   the time after which they are handed out again;
//! - `P:pending`: every job id enqueued and not yet acknowledged by a worker, so recovery can
//!   find queued jobs whose delivery was lost and enqueue them again;
//! - `P:epoch`: a marker whose absence means Redis lost its data (restart, FLUSHALL).
//!
//! Fairness lives in one place, [`DEQUEUE`]: the tenant at the head of the ring is served
//! and moves to the tail, so tenants with work take turns (round-robin).
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

/// Push a job id for a tenant, add the tenant to the ring if absent, wake a worker.
/// KEYS: ring, tenant queue, wake, pending. ARGV: tenant, job, "1" to push at the front.
const ENQUEUE: &str = r#"
redis.call('SADD', KEYS[4], ARGV[2])
if ARGV[3] == '1' then redis.call('LPUSH', KEYS[2], ARGV[2]) else redis.call('RPUSH', KEYS[2], ARGV[2]) end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 63)
return 1
"#;

/// The one place that chooses whose job runs next: rotate the ring, pop the head tenant's
/// oldest job, drop tenants whose queue ran dry, and record the delivery as in flight.
/// KEYS: ring, inflight. ARGV: key prefix, model, redelivery deadline (ms).
const DEQUEUE: &str = r#"
local n = redis.call('LLEN', KEYS[1])
for i = 1, n do
  local tenant = redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT')
  if not tenant then return false end
  local q = ARGV[1] .. ':q:' .. ARGV[2] .. ':' .. tenant
  local job = redis.call('LPOP', q)
  if redis.call('LLEN', q) == 0 then redis.call('LREM', KEYS[1], 0, tenant) end
  if job then
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2] .. '|' .. tenant .. '|' .. job)
    return {tenant, job}
  end
end
return false
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

    /// Queue a job id at the back of its tenant's queue.
    pub async fn enqueue(&self, model: &str, tenant: Uuid, job: Uuid) -> Result<(), QueueError> {
        self.push(model, tenant, job, false).await
    }

    /// Put a job id back at the front of its tenant's queue (a delivery that never started).
    pub async fn requeue_front(&self, model: &str, tenant: Uuid, job: Uuid) -> Result<(), QueueError> {
        self.push(model, tenant, job, true).await
    }

    async fn push(&self, model: &str, tenant: Uuid, job: Uuid, front: bool) -> Result<(), QueueError> {
        let tenant_s = tenant.to_string();
        let mut conn = self.pool.get().await?;
        let _: i64 = self
            .enqueue
            .key(self.key(&["ring", model]))
            .key(self.key(&["q", model, &tenant_s]))
            .key(self.key(&["wake", model]))
            .key(self.key(&["pending"]))
            .arg(&tenant_s)
            .arg(job.to_string())
            .arg(if front { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The next job for any of `models` (tried in turn, starting at `start`), fairly across
    /// tenants. The delivery is handed out again after `redeliver_after` unless acknowledged.
    pub async fn dequeue(&self, models: &[String], start: usize, redeliver_after: Duration) -> Result<Option<Delivery>, QueueError> {
        let mut conn = self.pool.get().await?;
        let deadline = now_ms() + redeliver_after.as_millis() as u64;
        for i in 0..models.len() {
            let model = &models[(start + i) % models.len()];
            let got: Option<(String, String)> = self
                .dequeue
                .key(self.key(&["ring", model]))
                .key(self.key(&["inflight"]))
                .arg(&self.prefix)
                .arg(model)
                .arg(deadline)
                .invoke_async(&mut conn)
                .await?;
            if let Some((tenant, job)) = got {
                match (tenant.parse(), job.parse()) {
                    (Ok(tenant), Ok(job)) => return Ok(Some(Delivery { model: model.clone(), tenant, job })),
                    _ => tracing::warn!(%tenant, %job, "dropping a malformed queue entry"),
                }
            }
        }
        Ok(None)
    }

    /// The worker claimed (or discarded) the delivery in Postgres: it is no longer in flight.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .zrem(self.key(&["inflight"]), delivery.member())
            .srem(self.key(&["pending"]), delivery.job.to_string())
            .query_async(&mut conn)
            .await?;
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
        let tenants: Vec<String> = conn.lrange(self.key(&["ring", model]), 0, -1).await?;
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
