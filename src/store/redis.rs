//! The Redis store: shared by every replica, on a single Redis (`store.redis_url`) or a Redis
//! Cluster (`store.redis_cluster_urls`, the `redis` crate's cluster client). One multiplexed,
//! auto-reconnecting connection (`ConnectionManager`, or the cluster connection, which keeps one
//! per node and follows the slot map), opened lazily so that a gateway started while Redis is
//! down comes up (not ready) and recovers by itself. Every command has a timeout; any failure
//! is a [`StoreError`]. One implementation serves both: commands go through one connection
//! type, and only what must differ on a cluster does (the guard's per-slot copies, SCAN and
//! durability read on every primary, pipelines that would span slots); see the [`super`]
//! module docs for which keys share a slot.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use redis::{
    aio::ConnectionManager,
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo},
    AsyncCommands, Value,
};
use tokio::sync::OnceCell;

use super::{
    keys, slots, Durability, EventRead, EventWrite, Guard, GuardCopies, GuardedWrite, Increment,
    NewEvent, RecordWrite, Store, StoreError, StoredEvent,
};

/// Guard copies read or written per command (or at once) on a cluster, so that each step
/// stays well inside the command timeout.
const GUARD_CHUNK: usize = 512;
/// Guard-copy steps in flight at once.
const GUARD_CONCURRENCY: usize = 8;

/// One range of a cluster's slot map and the primary that owns it.
struct SlotRange {
    first: u16,
    last: u16,
    host: String,
    port: u16,
}

/// The guarded increment: KEYS[1] the guard (store identity), KEYS[2] the counter; ARGV[1]
/// the expected guard value, ARGV[2] the floor, ARGV[3] the ceiling. `{-1, 0}` when the guard
/// does not hold, `{-2, current}` when `max(current + 1, floor)` would pass the ceiling (nothing
/// changed either way), else `{new, previous}`. One script, so atomic. Lua numbers are doubles:
/// exact up to 2^53, far above any reference counter (see `identity::ReferenceClock`).
const GUARDED_INCREMENT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1, 0}
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local next = math.max(current + 1, tonumber(ARGV[2]))
if next > tonumber(ARGV[3]) then
  return {-2, current}
end
redis.call('SET', KEYS[2], string.format('%.0f', next))
return {next, current}
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

/// A record write and its payment event, in one script: KEYS[1] the record, KEYS[2] the guard
/// (a claim's store identity; else unused), KEYS[3] the events stream. ARGV[1] the kind
/// (`swap`, `claim`, `absent`), ARGV[2] the expected value (swap) or guard value (claim),
/// ARGV[3] the new value, ARGV[4] its TTL ms (0 = none), ARGV[5..7] the event's payment id,
/// caller and body. Answers `{1, event id}` when written, `{0}` when the swap found another
/// value or the key exists, `{-1}` when the guard does not hold. The event is appended
/// before the record is written: `XADD` is the one command here that could be refused (an
/// out-of-memory refusal comes at a script's first write and never after it), so a refusal
/// leaves both unwritten, and once it is in, the `SET` cannot fail. Redis runs the script
/// alone: no reader sees the record without its event or the event without its record.
const WRITE_WITH_EVENT: &str = r"
if ARGV[1] == 'claim' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return {-1}
end
if ARGV[1] == 'swap' then
  if redis.call('GET', KEYS[1]) ~= ARGV[2] then
    return {0}
  end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local id = redis.call('XADD', KEYS[3], '*', 'payment_id', ARGV[5], 'caller', ARGV[6],
  'event', ARGV[7])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return {1, id}
";

/// Reads up to ARGV[2] events after the id ARGV[1] ('' = from the oldest kept) of the stream
/// KEYS[1], after checking none was lost: `{'events', entries}`, `{'expired'}` when an entry
/// after ARGV[1] was deleted (trimmed: the trim mark KEYS[2], see [`TRIM_EVENTS`]; removed by
/// `XDEL`: `max-deleted-entry-id`, Redis >= 7.0) or the stream is missing or younger than
/// ARGV[1] (it was lost), `{'malformed'}` for an id of another form. One script, so no trim
/// can land between the check and the read.
const READ_EVENTS: &str = r"
local function before(a, b)
  local am, as = string.match(a, '^(%d+)%-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local after = ARGV[1]
if after == '' then
  return {'events', redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])}
end
if not string.match(after, '^%d+%-%d+$') or string.len(after) > 41 then
  return {'malformed'}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'expired'}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local deleted, last = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local trimmed = redis.call('GET', KEYS[2]) or '0-0'
if before(after, deleted) or before(after, trimmed) or before(last, after) then
  return {'expired'}
end
return {'events', redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', ARGV[2])}
";

/// Retention: deletes the entries of the stream KEYS[1] older than the id ARGV[1] and keeps
/// the newest deleted id in KEYS[2] (the trim mark; `XTRIM` does not move
/// `max-deleted-entry-id`), so a reader resuming before it is told its events are gone.
const TRIM_EVENTS: &str = r"
local newest = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)[1]
if not newest then
  return 0
end
redis.call('SET', KEYS[2], newest[1])
return redis.call('XTRIM', KEYS[1], 'MINID', '=', ARGV[1])
";

/// The id of the newest entry ever added to the stream KEYS[1] (kept or trimmed), or false.
const LAST_EVENT_ID: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return false
";

/// The longest one `XREAD BLOCK` waits, whatever the caller asks: its connection's response
/// timeout is this plus the command timeout.
const BLOCK_MAX: Duration = Duration::from_secs(5);

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

/// Where the store connects.
enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A connection to either: both speak the same commands; the cluster one routes each to the
/// node that owns its key's slot.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A [`Store`] in Redis.
pub struct RedisStore {
    target: Target,
    connection: OnceCell<Connection>,
    command_timeout: Duration,
    connect_timeout: Duration,
    cas: redis::Script,
    cas_ttl: redis::Script,
    guarded_claim: redis::Script,
    raise: redis::Script,
    increment: redis::Script,
    claim: redis::Script,
    write_with_event: redis::Script,
    read_events: redis::Script,
    last_event: redis::Script,
    trim_events: redis::Script,
    /// The connection `XREAD BLOCK` waits on: its own, so a wait holds up no other command.
    blocking: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisStore {
    /// A single Redis (or a Sentinel-managed primary): parses the URL; connects on first use.
    pub fn new(
        url: &str,
        command_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(redacted(&e)))?;
        Ok(Self::with_target(
            Target::Single(client),
            command_timeout,
            connect_timeout,
        ))
    }

    /// A Redis Cluster, found through `seeds` (some of its nodes' URLs, comma-separated; the
    /// rest is discovered): parses them; connects on first use.
    pub fn cluster(
        seeds: &str,
        command_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let seeds: Vec<&str> = seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if seeds.is_empty() {
            return Err(StoreError("store.redis_cluster_urls names no node".into()));
        }
        let client = ClusterClient::builder(seeds)
            .connection_timeout(connect_timeout)
            .response_timeout(command_timeout)
            // Redirections (MOVED/ASK while slots move) and reconnections, within the
            // command timeout `run` applies anyway.
            .retries(3)
            .build()
            .map_err(|e| StoreError(redacted(&e)))?;
        Ok(Self::with_target(
            Target::Cluster(Box::new(client)),
            command_timeout,
            connect_timeout,
        ))
    }

    fn with_target(target: Target, command_timeout: Duration, connect_timeout: Duration) -> Self {
        Self {
            target,
            connection: OnceCell::new(),
            command_timeout,
            connect_timeout,
            cas: redis::Script::new(COMPARE_AND_SWAP),
            cas_ttl: redis::Script::new(COMPARE_AND_SWAP_WITH_TTL),
            guarded_claim: redis::Script::new(GUARDED_SET_IF_ABSENT),
            raise: redis::Script::new(RAISE_COUNTER),
            increment: redis::Script::new(GUARDED_INCREMENT),
            claim: redis::Script::new(CLAIM_DUE),
            write_with_event: redis::Script::new(WRITE_WITH_EVENT),
            read_events: redis::Script::new(READ_EVENTS),
            last_event: redis::Script::new(LAST_EVENT_ID),
            trim_events: redis::Script::new(TRIM_EVENTS),
            blocking: tokio::sync::Mutex::new(None),
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The guard key a script that writes `key` checks: on a cluster the guard's copy in
    /// `key`'s slot (so the script's two keys share a slot), else the guard itself.
    fn guard_beside(&self, guard_key: &str, key: &str) -> String {
        match self.is_cluster() {
            true => slots::guard_copy(guard_key, slots::slot(key.as_bytes())),
            false => guard_key.to_owned(),
        }
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        self.connection
            .get_or_try_init(|| async {
                let connect = async {
                    match &self.target {
                        Target::Single(client) => {
                            let config = redis::aio::ConnectionManagerConfig::new()
                                .set_connection_timeout(Some(self.connect_timeout))
                                .set_response_timeout(Some(self.command_timeout))
                                .set_number_of_retries(1)
                                .set_max_delay(Duration::from_millis(500));
                            ConnectionManager::new_with_config(client.clone(), config)
                                .await
                                .map(Connection::Single)
                        }
                        Target::Cluster(client) => {
                            client.get_async_connection().await.map(Connection::Cluster)
                        }
                    }
                };
                tokio::time::timeout(self.connect_timeout * 2, connect)
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
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        tokio::time::timeout(self.command_timeout, command(connection))
            .await
            .map_err(|_| StoreError("redis command timed out".into()))?
            .map_err(|e| StoreError(redacted(&e)))
    }

    /// On a cluster, runs `cmd` on every primary and returns each one's answer by node
    /// (`host:port`); a node's error is its answer. On a single Redis, that server's answer.
    async fn on_every_primary(&self, cmd: redis::Cmd) -> Result<Vec<(String, Value)>, StoreError> {
        self.run(|c| async move {
            match c {
                Connection::Single(mut c) => {
                    let answer = match cmd.query_async::<Value>(&mut c).await {
                        Ok(v) => v,
                        Err(e) => match e.try_into() {
                            Ok(server_error) => Value::ServerError(server_error),
                            Err(e) => return Err(e),
                        },
                    };
                    Ok(vec![(String::new(), answer)])
                }
                Connection::Cluster(mut c) => {
                    let routing =
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                    let Value::Map(by_node) = c.route_command(cmd, routing).await? else {
                        return Err(
                            (redis::ErrorKind::Client, "expected one answer per node").into()
                        );
                    };
                    Ok(by_node
                        .into_iter()
                        .map(|(node, answer)| {
                            let node = redis::from_redis_value::<String>(node).unwrap_or_default();
                            (node, answer)
                        })
                        .collect())
                }
            }
        })
        .await
    }

    /// SCAN on one node (`host:port`; empty: the single Redis).
    async fn scan_node(&self, node: &str, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = self
                .run(|c| async move {
                    match c {
                        Connection::Single(mut c) => cmd.query_async(&mut c).await,
                        Connection::Cluster(mut c) => {
                            let (host, port) = node.rsplit_once(':').ok_or_else(|| {
                                redis::RedisError::from((
                                    redis::ErrorKind::Client,
                                    "cluster node without a port",
                                ))
                            })?;
                            let routing =
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host: host.to_owned(),
                                    port: port.parse().unwrap_or_default(),
                                });
                            redis::from_redis_value(c.route_command(cmd, routing).await?)
                                .map_err(Into::into)
                        }
                    }
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The cluster's slot map (`CLUSTER SLOTS`): each range's first and last slot and the
    /// address of the primary that owns it.
    async fn slot_ranges(&self) -> Result<Vec<SlotRange>, StoreError> {
        let ranges: Vec<Value> = self
            .run(
                |mut c| async move { redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await },
            )
            .await?;
        let ranges: Vec<SlotRange> = ranges
            .into_iter()
            .filter_map(|range| {
                let (first, last, primary): (u16, u16, Vec<Value>) =
                    redis::from_redis_value(range).ok()?;
                let mut primary = primary.into_iter();
                let host: String = redis::from_redis_value(primary.next()?).ok()?;
                let port: u16 = redis::from_redis_value(primary.next()?).ok()?;
                Some(SlotRange {
                    first,
                    last,
                    host,
                    port,
                })
            })
            .collect();
        if ranges.is_empty() {
            return Err(StoreError("redis cluster has no slot map".into()));
        }
        Ok(ranges)
    }

    /// The first slot of each range in the cluster's slot map: one per primary at least.
    async fn range_starts(&self) -> Result<Vec<u16>, StoreError> {
        Ok(self
            .slot_ranges()
            .await?
            .into_iter()
            .map(|range| range.first)
            .collect())
    }

    /// Runs `command` on guard `key`'s copy in each of `slots` and answers in the order of
    /// `slots`. The commands go to each copy's primary in pipelines of [`GUARD_CHUNK`]: one
    /// round trip per chunk rather than one command per slot (16,384 single commands queued on
    /// a loaded machine outlived the command timeout). A copy whose slot moved meanwhile
    /// answers MOVED, which fails the whole run: the caller's retry reads the new map.
    async fn on_guard_copies(
        &self,
        key: &str,
        slots: &[u16],
        command: impl Fn(String) -> redis::Cmd,
    ) -> Result<Vec<Value>, StoreError> {
        let ranges = self.slot_ranges().await?;
        let mut by_primary: BTreeMap<(&str, u16), Vec<usize>> = BTreeMap::new();
        for (index, &slot) in slots.iter().enumerate() {
            let owner = ranges
                .iter()
                .find(|range| (range.first..=range.last).contains(&slot))
                .ok_or_else(|| StoreError(format!("redis cluster slot {slot} has no primary")))?;
            by_primary
                .entry((owner.host.as_str(), owner.port))
                .or_default()
                .push(index);
        }
        let mut batches = Vec::new();
        for ((host, port), indexes) in by_primary {
            for chunk in indexes.chunks(GUARD_CHUNK) {
                let mut pipeline = redis::pipe();
                for &index in chunk {
                    pipeline.add_command(command(slots::guard_copy(key, slots[index])));
                }
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                };
                let count = chunk.len();
                let chunk = chunk.to_vec();
                batches.push(async move {
                    let values = self
                        .run(|c| async move {
                            match c {
                                Connection::Cluster(mut c) => {
                                    c.route_pipeline(pipeline, 0, count, route).await
                                }
                                Connection::Single(mut c) => {
                                    pipeline.query_async::<Vec<Value>>(&mut c).await
                                }
                            }
                        })
                        .await?;
                    Ok::<_, StoreError>((chunk, values))
                });
            }
        }
        let answered: Vec<_> = futures_util::stream::iter(batches)
            .buffer_unordered(GUARD_CONCURRENCY)
            .try_collect()
            .await?;
        let mut answers = vec![Value::Nil; slots.len()];
        for (chunk, values) in answered {
            if values.len() != chunk.len() {
                return Err(StoreError(format!(
                    "redis pipeline answered {} of {} commands",
                    values.len(),
                    chunk.len()
                )));
            }
            for (index, value) in chunk.into_iter().zip(values) {
                if let Value::ServerError(error) = value {
                    return Err(StoreError(redacted(&error.into())));
                }
                answers[index] = value;
            }
        }
        Ok(answers)
    }
}

/// Redis errors can quote the URL; keep only the kind and detail.
fn redacted(e: &redis::RedisError) -> String {
    match e.kind() {
        // An I/O error has no detail; its own text (for example "Connection refused") names
        // no URL and is what an operator needs.
        redis::ErrorKind::Io => format!("redis I/O error: {e}"),
        kind => format!("redis {kind:?}: {}", e.detail().unwrap_or("")),
    }
}

/// Text of a bulk or simple string answer.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The events of an `XRANGE` / `XREAD` entry list: `[[id, [field, value, ...]], ...]`.
fn stream_entries(value: &Value) -> Result<Vec<StoredEvent>, StoreError> {
    let unreadable = || StoreError("redis: unreadable events stream entry".into());
    let Value::Array(entries) = value else {
        return Err(unreadable());
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return Err(unreadable());
            };
            let [id, Value::Array(fields)] = parts.as_slice() else {
                return Err(unreadable());
            };
            let mut event = StoredEvent {
                id: text(id).ok_or_else(unreadable)?,
                payment_id: String::new(),
                caller: String::new(),
                body: Vec::new(),
            };
            for pair in fields.chunks(2) {
                let [name, value] = pair else {
                    return Err(unreadable());
                };
                match (text(name).as_deref(), value) {
                    (Some("payment_id"), v) => event.payment_id = text(v).unwrap_or_default(),
                    (Some("caller"), v) => event.caller = text(v).unwrap_or_default(),
                    (Some("event"), Value::BulkString(bytes)) => event.body = bytes.clone(),
                    _ => {}
                }
            }
            Ok(event)
        })
        .collect()
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
        let guard_key = self.guard_beside(guard_key, key);
        let guard_key = guard_key.as_str();
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
        // A cluster's keys are spread over its primaries: SCAN each of them.
        let mut keys = Vec::new();
        for (node, _) in self.on_every_primary(redis::cmd("PING")).await? {
            keys.extend(self.scan_node(&node, &pattern).await?);
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(|mut c| async move { c.del::<_, ()>(key).await })
            .await
    }

    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        let guard_key = self.guard_beside(guard_key, key);
        let guard_key = guard_key.as_str();
        self.run(|mut c| async move {
            let (value, other): (i64, i64) = self
                .increment
                .key(guard_key)
                .key(key)
                .arg(guard_value)
                .arg(floor)
                .arg(ceiling)
                .invoke_async(&mut c)
                .await?;
            let other = u64::try_from(other).unwrap_or(0);
            Ok(match value {
                -1 => Increment::GuardFailed,
                -2 => Increment::AboveCeiling(other),
                value => Increment::Issued {
                    value: u64::try_from(value).unwrap_or(0),
                    previous: other,
                },
            })
        })
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
    ) -> Result<bool, StoreError> {
        self.run(|mut c| async move {
            let added: u64 = redis::cmd("ZADD")
                .arg(set)
                .arg("NX")
                .arg(due_ms)
                .arg(member)
                .query_async(&mut c)
                .await?;
            Ok(added == 1)
        })
        .await
    }

    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        if self.is_cluster() {
            // The sets live in different slots, which one pipeline cannot span: one command
            // each, all at once.
            let adds = entries
                .iter()
                .map(|(set, due_ms)| self.schedule_if_absent(set, member, *due_ms));
            futures_util::future::try_join_all(adds).await?;
            return Ok(());
        }
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

    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let scored: Vec<(String, f64)> = self
            .run(|mut c| async move {
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(set)
                    .arg(max_ms)
                    .arg(min_ms)
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        // Scores are unix milliseconds, exact in a double (below 2^53).
        Ok(scored
            .into_iter()
            .map(|(member, due)| (member, due as i64))
            .collect())
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

    async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
        // Every primary takes writes, so each is judged (the caller takes the worst). Each
        // setting on its own: a managed Redis may refuse CONFIG (then `None`), but a store
        // that does not answer at all is an error.
        self.ping().await?;
        let mut nodes: BTreeMap<String, Durability> = BTreeMap::new();
        let cluster = self.is_cluster();
        let mut read = BTreeMap::new();
        for name in [
            "appendonly",
            "appendfsync",
            "save",
            "maxmemory-policy",
            "min-replicas-to-write",
        ] {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg(name);
            for (at, answer) in self.on_every_primary(cmd).await.unwrap_or_default() {
                let value = redis::from_redis_value::<Vec<String>>(answer)
                    .ok()
                    .and_then(|pair| pair.into_iter().nth(1));
                read.insert((at, name), value);
            }
        }
        let roles = self
            .on_every_primary(redis::cmd("ROLE"))
            .await
            .unwrap_or_default();
        for (at, answer) in roles {
            let role = redis::from_redis_value::<Vec<Value>>(answer)
                .ok()
                .and_then(|v| v.into_iter().next())
                .and_then(|v| redis::from_redis_value::<String>(v).ok());
            nodes
                .entry(at.clone())
                .or_insert_with(|| Durability {
                    node: cluster.then(|| at.clone()),
                    ..Durability::default()
                })
                .role = role;
        }
        for ((at, name), value) in read {
            let d = nodes.entry(at.clone()).or_insert_with(|| Durability {
                node: cluster.then(|| at.clone()),
                ..Durability::default()
            });
            match name {
                "appendonly" => d.appendonly = value,
                "appendfsync" => d.appendfsync = value,
                "save" => d.save = value,
                "min-replicas-to-write" => {
                    d.min_replicas_to_write = value.and_then(|v| v.parse().ok())
                }
                _ => d.maxmemory_policy = value,
            }
        }
        // The version (WAITAOF needs 7.2) and the replicas connected, from INFO.
        for section in ["server", "replication"] {
            let mut cmd = redis::cmd("INFO");
            cmd.arg(section);
            for (at, answer) in self.on_every_primary(cmd).await.unwrap_or_default() {
                let Ok(text) = redis::from_redis_value::<String>(answer) else {
                    continue;
                };
                let d = nodes.entry(at.clone()).or_insert_with(|| Durability {
                    node: cluster.then(|| at.clone()),
                    ..Durability::default()
                });
                for line in text.lines() {
                    match line.trim().split_once(':') {
                        Some(("redis_version", v)) => d.redis_version = Some(v.to_owned()),
                        Some(("connected_slaves", n)) => d.connected_replicas = n.parse().ok(),
                        _ => {}
                    }
                }
            }
        }
        if nodes.is_empty() {
            // Nothing readable at all: judged as unreadable settings (warnings).
            nodes.insert(String::new(), Durability::default());
        }
        Ok(nodes.into_values().collect())
    }

    async fn read_guard(&self, key: &str, copies: GuardCopies) -> Result<Guard, StoreError> {
        if !self.is_cluster() {
            let value: Option<Vec<u8>> = self.run(|mut c| async move { c.get(key).await }).await?;
            return Ok(value.map_or(Guard::Absent, Guard::Held));
        }
        let slots: Vec<u16> = match copies {
            GuardCopies::Every => (0..slots::SLOTS).collect(),
            GuardCopies::OnePerRange => self.range_starts().await?,
        };
        let get = |copy: String| {
            let mut cmd = redis::cmd("GET");
            cmd.arg(copy);
            cmd
        };
        let values = self
            .on_guard_copies(key, &slots, get)
            .await?
            .into_iter()
            .map(redis::from_redis_value::<Option<Vec<u8>>>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError(redacted(&e.into())))?;
        let mut values = values.into_iter();
        let first = values.next().flatten();
        let mut present = first.is_some();
        let mut all = true;
        for value in values {
            present |= value.is_some();
            all &= value.is_some() && value == first;
        }
        Ok(match (&first, present, all) {
            (Some(_), _, true) => Guard::Held(first.unwrap_or_default()),
            (_, false, _) => Guard::Absent,
            _ => Guard::Broken,
        })
    }

    async fn init_guard(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let won = self.set_if_absent(key, value, None).await?;
        if !self.is_cluster() {
            return Ok(won);
        }
        // `key` itself decides between racing callers; each then fills the per-slot copies
        // still missing with the decided value, so an interrupted run is completed by the next.
        let decided = self
            .get(key)
            .await?
            .ok_or_else(|| StoreError("store identity vanished while being written".into()))?;
        let decided = decided.as_slice();
        let set_if_absent = |copy: String| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(copy).arg(decided).arg("NX");
            cmd
        };
        let every: Vec<u16> = (0..slots::SLOTS).collect();
        self.on_guard_copies(key, &every, set_if_absent).await?;
        Ok(won)
    }

    async fn replace_guard(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if self.is_cluster() {
            let set = |copy: String| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(copy).arg(value);
                cmd
            };
            let every: Vec<u16> = (0..slots::SLOTS).collect();
            self.on_guard_copies(key, &every, set).await?;
        }
        self.set(key, value, None).await
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

    async fn wait_for_fsync(&self, timeout: Duration) -> Result<bool, StoreError> {
        // Same multiplexed connection as the writes, so its offset covers them.
        let (local, _replicas): (u32, u32) = self
            .run(|mut c| async move {
                redis::cmd("WAITAOF")
                    .arg(1)
                    .arg(0)
                    .arg(timeout.as_millis() as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(local >= 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    fn keeps_events(&self) -> Result<(), String> {
        match self.is_cluster() {
            true => Err(
                "a Redis Cluster keeps no payment events: one stream cannot be \
                         written atomically with payment records in every slot (WatchPayment \
                         and WatchPaymentEvents answer FAILED_PRECONDITION, EVENTS_NOT_KEPT)"
                    .into(),
            ),
            false => Ok(()),
        }
    }

    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        self.keeps_events().map_err(StoreError)?;
        let stream = keys::events();
        let (kind, key, guard_key, check, value, ttl): (&str, &str, &str, &[u8], &[u8], _) =
            match write {
                RecordWrite::Swap {
                    key,
                    expected,
                    new,
                    ttl,
                } => ("swap", key, key, expected, new, ttl),
                RecordWrite::GuardedClaim {
                    guard_key,
                    guard_value,
                    key,
                    value,
                    ttl,
                } => ("claim", key, guard_key, guard_value, value, ttl),
                RecordWrite::IfAbsent { key, value, ttl } => ("absent", key, key, b"", value, ttl),
            };
        let stream = stream.as_str();
        self.run(|mut c| async move {
            let answer: Vec<Value> = self
                .write_with_event
                .key(key)
                .key(guard_key)
                .key(stream)
                .arg(kind)
                .arg(check)
                .arg(value)
                .arg(px(ttl).unwrap_or(0))
                .arg(event.payment_id)
                .arg(event.caller)
                .arg(event.body)
                .invoke_async(&mut c)
                .await?;
            Ok(match answer.as_slice() {
                [Value::Int(1), id] => EventWrite::Written(text(id).unwrap_or_default()),
                [Value::Int(-1)] => EventWrite::GuardFailed,
                _ => EventWrite::Refused,
            })
        })
        .await
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        self.keeps_events().map_err(StoreError)?;
        let (stream, trimmed) = (keys::events(), keys::events_trimmed());
        let (stream, trimmed) = (stream.as_str(), trimmed.as_str());
        let answer: Vec<Value> = self
            .run(|mut c| async move {
                self.read_events
                    .key(stream)
                    .key(trimmed)
                    .arg(after.unwrap_or(""))
                    .arg(limit.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match answer.as_slice() {
            [status, entries] if text(status).as_deref() == Some("events") => {
                Ok(EventRead::Events(stream_entries(entries)?))
            }
            [status] if text(status).as_deref() == Some("expired") => Ok(EventRead::Expired),
            [status] if text(status).as_deref() == Some("malformed") => Ok(EventRead::Malformed),
            _ => Err(StoreError(
                "redis: unreadable answer to the events read".into(),
            )),
        }
    }

    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        self.keeps_events().map_err(StoreError)?;
        let stream = keys::events();
        let stream = stream.as_str();
        self.run(|mut c| async move {
            self.last_event
                .key(stream)
                .invoke_async::<Option<String>>(&mut c)
                .await
        })
        .await
    }

    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let Target::Single(client) = &self.target else {
            tokio::time::sleep(timeout).await;
            return Ok(());
        };
        let block = timeout.min(BLOCK_MAX);
        // One waiter at a time per process: the gateway has one reader (its event hub).
        let mut blocking = self.blocking.lock().await;
        let connection = match blocking.as_mut() {
            Some(c) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(BLOCK_MAX + self.command_timeout));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| StoreError(redacted(&e)))?;
                blocking.insert(c)
            }
        };
        // `$` would miss an event added between the caller's read and this wait.
        let from = after.unwrap_or("0-0");
        let answer = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(keys::events())
            .arg(from)
            .query_async::<Value>(connection)
            .await;
        if let Err(e) = answer {
            // Opened again on the next wait.
            *blocking = None;
            return Err(StoreError(redacted(&e)));
        }
        Ok(())
    }

    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        self.keeps_events().map_err(StoreError)?;
        // Exact (`=`) rather than `~`: whole entries by their id's time, so what is kept is
        // what the retention says.
        let (stream, trimmed) = (keys::events(), keys::events_trimmed());
        let (stream, trimmed) = (stream.as_str(), trimmed.as_str());
        self.run(|mut c| async move {
            self.trim_events
                .key(stream)
                .key(trimmed)
                .arg(format!("{}-0", before_ms.max(0)))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }
}
