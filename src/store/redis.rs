//! The Redis store: shared by every replica. One multiplexed, auto-reconnecting connection
//! (`ConnectionManager`), opened lazily so that a gateway started while Redis is down comes up
//! (not ready) and recovers by itself. Every command has a timeout; any failure is a
//! [`StoreError`].

use std::time::Duration;

use async_trait::async_trait;
use redis::{aio::ConnectionManager, AsyncCommands};
use tokio::sync::OnceCell;

use super::{Durability, GuardedWrite, Store, StoreError};

/// Increments a counter that starts at a seed when missing.
const INCREMENT_FROM_SEED: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])
";

/// Moves a due schedule entry to its lease time; 1 when this caller claimed it.
const CLAIM_DUE: &str = r"
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
";

/// Replaces a value only if it is unchanged, keeping its TTL (needs Redis >= 6).
const COMPARE_AND_SWAP: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
";

/// Replaces a value only if it is unchanged, setting a new TTL (ARGV[3] ms; 0 = none: a plain
/// `SET` drops any TTL the key had).
const COMPARE_AND_SWAP_WITH_TTL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
";

/// The guarded claim: KEYS[1] the guard (store identity), KEYS[2] the key to claim; ARGV[1]
/// the expected guard value, ARGV[2] the value, ARGV[3] TTL ms (0 = none). -1 when the guard
/// does not hold, 1 when written, 0 when the key exists. One script, so atomic.
const GUARDED_SET_IF_ABSENT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local written
if tonumber(ARGV[3]) > 0 then
  written = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
else
  written = redis.call('SET', KEYS[2], ARGV[2], 'NX')
end
if written then
  return 1
end
return 0
";

/// Raises a counter to at least ARGV[1]; returns its value.
const RAISE_COUNTER: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return current
";

/// A [`Store`] in Redis.
pub struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    command_timeout: Duration,
    connect_timeout: Duration,
    cas: redis::Script,
    cas_ttl: redis::Script,
    guarded_claim: redis::Script,
    raise: redis::Script,
    increment: redis::Script,
    claim: redis::Script,
}

impl RedisStore {
    /// Parses the URL; connects on first use.
    pub fn new(
        url: &str,
        command_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(redacted(&e)))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            command_timeout,
            connect_timeout,
            cas: redis::Script::new(COMPARE_AND_SWAP),
            cas_ttl: redis::Script::new(COMPARE_AND_SWAP_WITH_TTL),
            guarded_claim: redis::Script::new(GUARDED_SET_IF_ABSENT),
            raise: redis::Script::new(RAISE_COUNTER),
            increment: redis::Script::new(INCREMENT_FROM_SEED),
            claim: redis::Script::new(CLAIM_DUE),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                tokio::time::timeout(
                    self.connect_timeout * 2,
                    ConnectionManager::new_with_config(self.client.clone(), config),
                )
                .await
                .map_err(|_| StoreError("redis connect timed out".into()))?
                .map_err(|e| StoreError(redacted(&e)))
            })
            .await
            .cloned()
    }

    /// Runs one command with the command timeout.
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        tokio::time::timeout(self.command_timeout, command(connection))
            .await
            .map_err(|_| StoreError("redis command timed out".into()))?
            .map_err(|e| StoreError(redacted(&e)))
    }
}

/// Redis errors can quote the URL; keep only the kind and detail.
fn redacted(e: &redis::RedisError) -> String {
    format!("redis {:?}: {}", e.kind(), e.detail().unwrap_or(""))
}

fn px(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| t.as_millis().max(1) as u64)
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|mut c| async move { c.get(key).await }).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.run(|mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ms) = px(ttl) {
                cmd.arg("PX").arg(ms);
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.run(|mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("NX");
            if let Some(ms) = px(ttl) {
                cmd.arg("PX").arg(ms);
            }
            let written: Option<String> = cmd.query_async(&mut c).await?;
            Ok(written.is_some())
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.run(|mut c| async move {
            let replaced: i64 = self
                .cas
                .key(key)
                .arg(expected)
                .arg(new)
                .invoke_async(&mut c)
                .await?;
            Ok(replaced == 1)
        })
        .await
    }

    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.run(|mut c| async move {
            let replaced: i64 = self
                .cas_ttl
                .key(key)
                .arg(expected)
                .arg(new)
                .arg(px(ttl).unwrap_or(0))
                .invoke_async(&mut c)
                .await?;
            Ok(replaced == 1)
        })
        .await
    }

    async fn set_if_absent_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<GuardedWrite, StoreError> {
        self.run(|mut c| async move {
            let result: i64 = self
                .guarded_claim
                .key(guard_key)
                .key(key)
                .arg(guard_value)
                .arg(value)
                .arg(px(ttl).unwrap_or(0))
                .invoke_async(&mut c)
                .await?;
            Ok(match result {
                1 => GuardedWrite::Written,
                0 => GuardedWrite::Exists,
                _ => GuardedWrite::GuardFailed,
            })
        })
        .await
    }

    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        self.run(|mut c| async move { self.raise.key(key).arg(floor).invoke_async(&mut c).await })
            .await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Glob characters in the prefix match themselves.
        let mut pattern = String::new();
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let pattern = pattern.as_str();
            let (next, batch): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(|mut c| async move { c.del::<_, ()>(key).await })
            .await
    }

    async fn increment(&self, key: &str, seed: u64) -> Result<u64, StoreError> {
        self.run(
            |mut c| async move { self.increment.key(key).arg(seed).invoke_async(&mut c).await },
        )
        .await
    }

    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        self.run(|mut c| async move { c.zadd::<_, _, _, ()>(set, member, due_ms).await })
            .await
    }

    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        self.run(|mut c| async move {
            redis::cmd("ZADD")
                .arg(set)
                .arg("NX")
                .arg(due_ms)
                .arg(member)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            for (set, due_ms) in entries {
                pipe.cmd("ZADD")
                    .arg(*set)
                    .arg("NX")
                    .arg(*due_ms)
                    .arg(member)
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.run(|mut c| async move {
            c.zrangebyscore_limit(set, "-inf", now_ms, 0, limit as isize)
                .await
        })
        .await
    }

    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.run(|mut c| async move {
            c.zrangebyscore_limit(
                set,
                min_ms,
                format!("({max_ms}"),
                offset as isize,
                limit as isize,
            )
            .await
        })
        .await
    }

    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.run(|mut c| async move {
            let claimed: i64 = self
                .claim
                .key(set)
                .arg(member)
                .arg(now_ms)
                .arg(lease_until_ms)
                .invoke_async(&mut c)
                .await?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.run(|mut c| async move { c.zrem::<_, _, ()>(set, member).await })
            .await
    }

    async fn durability(&self) -> Result<Option<Durability>, StoreError> {
        // Each read on its own: a managed Redis may refuse CONFIG (then `None`), but a store
        // that does not answer at all is an error.
        self.ping().await?;
        let config = |name: &'static str| async move {
            self.run(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await
            .ok()
            .and_then(|pair| pair.into_iter().nth(1))
        };
        let role = self
            .run(|mut c| async move {
                redis::cmd("ROLE")
                    .query_async::<Vec<redis::Value>>(&mut c)
                    .await
            })
            .await
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|v| redis::from_redis_value::<String>(v).ok());
        Ok(Some(Durability {
            appendonly: config("appendonly").await,
            appendfsync: config("appendfsync").await,
            save: config("save").await,
            maxmemory_policy: config("maxmemory-policy").await,
            role,
        }))
    }

    async fn wait_for_replicas(&self, replicas: u32, timeout: Duration) -> Result<u32, StoreError> {
        self.run(|mut c| async move {
            redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis() as u64)
                .query_async::<u32>(&mut c)
                .await
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }
}
