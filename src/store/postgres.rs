//! The PostgreSQL store (`store.postgres_url`, env `DATABASE_URL`): the payment journal in an
//! ACID database with synchronous commit, shared by every replica. Every [`Store`] operation is
//! one SQL statement (so one transaction) over two tables: `billpay_kv` (key, value, optional
//! expiry, a version bumped by every write) and `billpay_schedule` (sorted sets: set, member,
//! due time in unix ms, with a due index). Expired rows are invisible to every statement, are
//! overwritten by the next write of their key, and are deleted in batches every
//! [`SWEEP_EVERY`] writes. The schema is in versioned migrations shipped in the repository
//! (`migrations/postgres/*.sql`, embedded here) and applied by `billpay-gateway store init` or
//! `store migrate`; a database whose schema is behind answers every operation with a
//! [`StoreError`] that says to run `store migrate`.
//!
//! Connections come from a small pool (`deadpool-postgres` over `tokio-postgres`); a pooled
//! connection is opened on first use, so a gateway started while PostgreSQL is down comes up
//! (not ready) and recovers by itself. Each operation has the command timeout, enforced both
//! here and by the server (`statement_timeout`). Connections are plaintext (`NoTls`): keep
//! PostgreSQL on loopback or a private network.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::{types::ToSql, NoTls, Row};

use super::{
    Durability, EventRead, EventWrite, GuardedWrite, Increment, NewEvent, PostgresDurability,
    RecordWrite, Store, StoreError, StoredEvent,
};

/// How often the event reader asks for new events when none came ([`Store::wait_for_events`]).
pub const EVENT_POLL: Duration = Duration::from_millis(100);

/// One schema step: applied once, in order, in its own transaction.
pub struct Migration {
    /// Increasing from 1; recorded in `billpay_schema_migrations`.
    pub version: i32,
    /// What it does, as recorded.
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. Never edit a shipped one: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: include_str!("../../migrations/postgres/0001_store.sql"),
    },
    Migration {
        version: 3,
        name: "events",
        sql: include_str!("../../migrations/postgres/0003_events.sql"),
    },
];

/// The schema version this binary needs.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Expired rows are deleted (at most [`SWEEP_BATCH`] of them) once every this many writes.
pub const SWEEP_EVERY: usize = 1024;
const SWEEP_BATCH: i64 = 1000;

/// Key of the advisory lock that serialises concurrent `store migrate` runs.
const MIGRATION_LOCK: i64 = 0x0062_696c_6c70_6179; // "billpay" in ASCII

/// Retries of a guarded increment that lost a race to create its counter (the next try sees
/// the counter and locks it, so one retry is enough; more only under pathological churn).
const INCREMENT_ATTEMPTS: usize = 5;

/// A row is live while it has no expiry or its expiry is ahead.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

/// `$n` milliseconds from now, or NULL (no expiry) when the parameter is NULL.
fn expiry(param: usize) -> String {
    format!("now() + ${param}::float8 * interval '1 millisecond'")
}

/// How many times the pool may grow to (connections per gateway process).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// A [`Store`] in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    command_timeout: Duration,
    /// Set once the schema was found current; until then every operation checks it.
    schema_current: OnceCell<()>,
    writes: AtomicUsize,
}

impl PostgresStore {
    /// Parses the connection URL (`postgres://user@host:port/db`, or key=value form) and
    /// builds the pool; connects on first use.
    pub fn new(
        url: &str,
        command_timeout: Duration,
        connect_timeout: Duration,
        max_connections: usize,
    ) -> Result<Self, StoreError> {
        // The parse error can quote the offending text, which may be the password.
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError(
                "store.postgres_url (DATABASE_URL) is not a valid PostgreSQL connection URL".into(),
            )
        })?;
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("billpay-gateway");
        }
        // The server gives up on a statement as this side does, so an abandoned statement
        // holds no lock past the command timeout.
        let statement_timeout = format!(
            "-c statement_timeout={}",
            command_timeout.as_millis().max(1)
        );
        let options = match config.get_options() {
            Some(options) if !options.is_empty() => format!("{options} {statement_timeout}"),
            _ => statement_timeout,
        };
        config.options(&options);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(connect_timeout + command_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| StoreError(format!("postgres pool: {e}")))?;
        Ok(Self {
            pool,
            command_timeout,
            schema_current: OnceCell::new(),
            writes: AtomicUsize::new(0),
        })
    }

    async fn connection(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError(format!("postgres connection: {}", pool_error(&e))))
    }

    /// The highest migration applied, 0 for an empty database.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let client = self.connection().await?;
        let fut = async {
            let exists: bool = client
                .query_one(
                    "SELECT to_regclass('billpay_schema_migrations') IS NOT NULL",
                    &[],
                )
                .await?
                .get(0);
            if !exists {
                return Ok(0);
            }
            client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM billpay_schema_migrations",
                    &[],
                )
                .await
                .map(|row| row.get::<_, i32>(0))
        };
        self.timed(fut).await
    }

    /// Applies every migration not applied yet, in order, each in its own transaction, under
    /// an advisory lock (racing runs wait for each other; the second finds nothing to do).
    /// Returns the versions applied by this call.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut client = self.connection().await?;
        let mut applied = Vec::new();
        for migration in MIGRATIONS {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(db_error)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS billpay_schema_migrations (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(db_error)?;
            let done = tx
                .query_opt(
                    "SELECT 1 FROM billpay_schema_migrations WHERE version = $1",
                    &[&migration.version],
                )
                .await
                .map_err(db_error)?
                .is_some();
            if done {
                tx.rollback().await.map_err(db_error)?;
                continue;
            }
            tx.batch_execute(migration.sql).await.map_err(|e| {
                StoreError(format!(
                    "migration {} ({}): {}",
                    migration.version,
                    migration.name,
                    describe(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO billpay_schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            applied.push(migration.version);
        }
        Ok(applied)
    }

    /// A pooled connection to a database whose schema is current.
    async fn client(&self) -> Result<Object, StoreError> {
        self.schema_current
            .get_or_try_init(|| async {
                let version = self.schema_version().await?;
                if version < latest_version() {
                    return Err(StoreError(format!(
                        "the PostgreSQL schema is at version {version}, this gateway needs \
                         {}: run `billpay-gateway store migrate` (or `store init` for a new \
                         database)",
                        latest_version()
                    )));
                }
                Ok(())
            })
            .await?;
        self.connection().await
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.command_timeout, fut)
            .await
            .map_err(|_| StoreError("postgres statement timed out".into()))?
            .map_err(db_error)
    }

    /// Runs one statement (prepared once per connection) and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.timed(async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
        .await
    }

    /// Runs one statement and returns how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.timed(async {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        })
        .await
    }

    /// Counts a write; every [`SWEEP_EVERY`] writes deletes a batch of expired rows.
    async fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Err(e) = self.sweep_expired().await {
                tracing::debug!(error = %e, "postgres sweep of expired rows failed");
            }
        }
    }

    /// Deletes up to a batch of expired rows; how many.
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM billpay_kv WHERE key IN (
                 SELECT key FROM billpay_kv
                 WHERE expires_at <= now()
                 LIMIT $1 FOR UPDATE SKIP LOCKED)
               AND expires_at <= now()",
            &[&SWEEP_BATCH],
        )
        .await
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Option<f64> {
    ttl.map(|t| t.as_millis().max(1) as f64)
}

/// A statement or connection error, without anything that could quote the URL.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    StoreError(format!("postgres: {}", describe(&e)))
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// A decimal counter as PostgreSQL `numeric` text.
fn number(text: &str) -> Result<u64, StoreError> {
    text.parse()
        .map_err(|_| StoreError(format!("postgres answered {text:?} for a counter")))
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT value FROM billpay_kv WHERE key = $1 AND {LIVE}"),
                &[&key],
            )
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "INSERT INTO billpay_kv AS kv (key, value, expires_at) VALUES ($1, $2, {})
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                     expires_at = EXCLUDED.expires_at, version = kv.version + 1,
                     updated_at = now()",
                expiry(3)
            ),
            &[&key, &value, &ttl_ms(ttl)],
        )
        .await?;
        self.wrote().await;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        // The claim: a live row wins; an expired one is taken over in the same statement.
        let written = self
            .execute(
                &format!(
                    "INSERT INTO billpay_kv AS kv (key, value, expires_at) VALUES ($1, $2, {})
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                         expires_at = EXCLUDED.expires_at, version = kv.version + 1,
                         updated_at = now()
                     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()",
                    expiry(3)
                ),
                &[&key, &value, &ttl_ms(ttl)],
            )
            .await?;
        self.wrote().await;
        Ok(written == 1)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        // A concurrent swap of the same row makes this one wait, then re-check `value`
        // against the row it left: exactly one of two racing swaps from one value wins.
        let replaced = self
            .execute(
                &format!(
                    "UPDATE billpay_kv SET value = $3, version = version + 1, updated_at = now()
                     WHERE key = $1 AND value = $2 AND {LIVE}"
                ),
                &[&key, &expected, &new],
            )
            .await?;
        self.wrote().await;
        Ok(replaced == 1)
    }

    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let replaced = self
            .execute(
                &format!(
                    "UPDATE billpay_kv SET value = $3, expires_at = {}, version = version + 1,
                         updated_at = now()
                     WHERE key = $1 AND value = $2 AND {LIVE}",
                    expiry(4)
                ),
                &[&key, &expected, &new, &ttl_ms(ttl)],
            )
            .await?;
        self.wrote().await;
        Ok(replaced == 1)
    }

    async fn set_if_absent_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<GuardedWrite, StoreError> {
        // The guard row is share-locked for the statement: a `store recover` replacing it (or
        // anything deleting it) waits, and a claim that starts after the replacement sees the
        // new value and fails. The insert happens only under a held guard.
        let rows = self
            .query(
                &format!(
                    "WITH guard AS MATERIALIZED (
                         SELECT 1 FROM billpay_kv
                         WHERE key = $1 AND value = $2 AND {LIVE}
                         FOR SHARE
                     ), written AS (
                         INSERT INTO billpay_kv AS kv (key, value, expires_at)
                         SELECT $3::text, $4::bytea, {} WHERE EXISTS (SELECT 1 FROM guard)
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                             expires_at = EXCLUDED.expires_at, version = kv.version + 1,
                             updated_at = now()
                         WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
                         RETURNING 1
                     )
                     SELECT EXISTS (SELECT 1 FROM guard), EXISTS (SELECT 1 FROM written)",
                    expiry(5)
                ),
                &[&guard_key, &guard_value, &key, &value, &ttl_ms(ttl)],
            )
            .await?;
        self.wrote().await;
        let row = rows
            .first()
            .ok_or_else(|| StoreError("postgres: the claim answered no row".into()))?;
        Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (false, _) => GuardedWrite::GuardFailed,
            (true, true) => GuardedWrite::Written,
            (true, false) => GuardedWrite::Exists,
        })
    }

    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        // ON CONFLICT DO UPDATE works on the row's latest version, under its lock: atomic.
        let rows = self
            .query(
                "INSERT INTO billpay_kv AS kv (key, value) VALUES ($1, convert_to($2, 'UTF8'))
                     ON CONFLICT (key) DO UPDATE SET
                         value = convert_to(greatest(
                             CASE WHEN kv.expires_at IS NULL OR kv.expires_at > now()
                                  THEN convert_from(kv.value, 'UTF8')::numeric ELSE 0 END,
                             $2::text::numeric)::text, 'UTF8'),
                         expires_at = NULL, version = kv.version + 1, updated_at = now()
                     RETURNING convert_from(value, 'UTF8')",
                &[&key, &floor.to_string()],
            )
            .await?;
        self.wrote().await;
        let row = rows
            .first()
            .ok_or_else(|| StoreError("postgres: raise answered no row".into()))?;
        number(row.get::<_, &str>(0))
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // LIKE's own characters in the prefix match themselves.
        let mut pattern = String::new();
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let rows = self
            .query(
                &format!(
                    "SELECT key FROM billpay_kv WHERE key LIKE $1 ESCAPE '\\' AND {LIVE}
                     ORDER BY key"
                ),
                &[&pattern],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM billpay_kv WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }

    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        // The guard is share-locked and the counter row (when it exists) locked for update, so
        // the value read is the latest and nobody moves it before this statement ends. When
        // the counter does not exist yet, two callers may both try to create it: the loser's
        // insert meets the winner's row and updates it only if it still has the version this
        // caller read (none), which it has not, so nothing changes and the statement runs
        // again, this time finding and locking the row.
        let sql = format!(
            "WITH guard AS MATERIALIZED (
                 SELECT 1 FROM billpay_kv
                 WHERE key = $1 AND value = $2 AND {LIVE}
                 FOR SHARE
             ), counter AS MATERIALIZED (
                 SELECT version,
                        CASE WHEN {LIVE} THEN convert_from(value, 'UTF8')::numeric ELSE 0 END
                            AS current
                 FROM billpay_kv WHERE key = $3 AND EXISTS (SELECT 1 FROM guard)
                 FOR UPDATE
             ), step AS MATERIALIZED (
                 SELECT (SELECT version FROM counter) AS seen_version,
                        coalesce((SELECT current FROM counter), 0) AS previous,
                        greatest(coalesce((SELECT current FROM counter), 0) + 1,
                                 $4::text::numeric) AS next
             ), written AS (
                 INSERT INTO billpay_kv AS kv (key, value)
                 SELECT $3::text, convert_to(next::text, 'UTF8') FROM step
                 WHERE EXISTS (SELECT 1 FROM guard) AND next <= $5::text::numeric
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = NULL,
                     version = kv.version + 1, updated_at = now()
                 WHERE kv.version = (SELECT seen_version FROM step)
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM guard), previous::text, next::text,
                    next <= $5::text::numeric, EXISTS (SELECT 1 FROM written)
             FROM step"
        );
        let (floor, ceiling) = (floor.to_string(), ceiling.to_string());
        for _ in 0..INCREMENT_ATTEMPTS {
            let rows = self
                .query(&sql, &[&guard_key, &guard_value, &key, &floor, &ceiling])
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError("postgres: increment answered no row".into()))?;
            let (guarded, previous, next, below, written): (bool, &str, &str, bool, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            if !guarded {
                return Ok(Increment::GuardFailed);
            }
            if !below {
                return Ok(Increment::AboveCeiling(number(previous)?));
            }
            if written {
                self.wrote().await;
                return Ok(Increment::Issued {
                    value: number(next)?,
                    previous: number(previous)?,
                });
            }
        }
        Err(StoreError(format!(
            "postgres: counter {key} kept changing under {INCREMENT_ATTEMPTS} increments"
        )))
    }

    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO billpay_schedule (set_name, member, due_ms) VALUES ($1, $2, $3)
             ON CONFLICT (set_name, member) DO UPDATE SET due_ms = EXCLUDED.due_ms",
            &[&set, &member, &due_ms],
        )
        .await?;
        Ok(())
    }

    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        let added = self
            .execute(
                "INSERT INTO billpay_schedule (set_name, member, due_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (set_name, member) DO NOTHING",
                &[&set, &member, &due_ms],
            )
            .await?;
        Ok(added == 1)
    }

    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        // One statement: all of them or none.
        let sets: Vec<&str> = entries.iter().map(|(set, _)| *set).collect();
        let dues: Vec<i64> = entries.iter().map(|(_, due)| *due).collect();
        self.execute(
            "INSERT INTO billpay_schedule (set_name, member, due_ms)
             SELECT s, $2::text, d FROM unnest($1::text[], $3::int8[]) AS entries (s, d)
             ON CONFLICT (set_name, member) DO NOTHING",
            &[&sets, &member, &dues],
        )
        .await?;
        Ok(())
    }

    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT member FROM billpay_schedule WHERE set_name = $1 AND due_ms <= $2
                 ORDER BY due_ms, member LIMIT $3",
                &[&set, &now_ms, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT member FROM billpay_schedule
                 WHERE set_name = $1 AND due_ms >= $2 AND due_ms < $3
                 ORDER BY due_ms, member OFFSET $4 LIMIT $5",
                &[&set, &min_ms, &max_ms, &(offset as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        // Members of equal due time in byte order (COLLATE "C"), greatest first, as Redis
        // orders them: a listing resumes after its last (due, member) by that order.
        let rows = self
            .query(
                "SELECT member, due_ms FROM billpay_schedule
                 WHERE set_name = $1 AND due_ms <= $2 AND due_ms >= $3
                 ORDER BY due_ms DESC, member COLLATE \"C\" DESC LIMIT $4",
                &[&set, &max_ms, &min_ms, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        // SKIP LOCKED: a replica claiming the same entry right now holds its lock, so this
        // one passes at once instead of waiting; an entry leased a moment ago is re-checked
        // against its new due time and is no longer due.
        let claimed = self
            .execute(
                "WITH picked AS (
                     SELECT set_name, member FROM billpay_schedule
                     WHERE set_name = $1 AND member = $2 AND due_ms <= $3
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE billpay_schedule s SET due_ms = $4 FROM picked
                 WHERE s.set_name = picked.set_name AND s.member = picked.member",
                &[&set, &member, &now_ms, &lease_until_ms],
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM billpay_schedule WHERE set_name = $1 AND member = $2",
            &[&set, &member],
        )
        .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query("SELECT 1", &[]).await.map(|_| ())
    }

    fn keeps_events(&self) -> Result<(), String> {
        Ok(())
    }

    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        let mut client = self.client().await?;
        let written = self
            .timed(async {
                // One transaction: the record's write, then the position (under the counter
                // row's lock, held to commit: see migrations/postgres/0003_events.sql), then
                // the event. Nothing is committed unless all three are.
                let tx = client.transaction().await?;
                let outcome = match write {
                    RecordWrite::Swap {
                        key,
                        expected,
                        new,
                        ttl,
                    } => {
                        let sql = format!(
                            "UPDATE billpay_kv SET value = $3, expires_at = {}, \
                             version = version + 1, updated_at = now() \
                             WHERE key = $1 AND value = $2 AND {LIVE}",
                            expiry(4)
                        );
                        let statement = tx.prepare_cached(&sql).await?;
                        match tx
                            .execute(&statement, &[&key, &expected, &new, &ttl_ms(ttl)])
                            .await?
                        {
                            1 => None,
                            _ => Some(EventWrite::Refused),
                        }
                    }
                    RecordWrite::GuardedClaim {
                        guard_key,
                        guard_value,
                        key,
                        value,
                        ttl,
                    } => {
                        let sql = format!(
                            "WITH guard AS MATERIALIZED (
                                 SELECT 1 FROM billpay_kv
                                 WHERE key = $1 AND value = $2 AND {LIVE}
                                 FOR SHARE
                             ), written AS (
                                 INSERT INTO billpay_kv AS kv (key, value, expires_at)
                                 SELECT $3::text, $4::bytea, {} WHERE EXISTS (SELECT 1 FROM guard)
                                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                                     expires_at = EXCLUDED.expires_at, version = kv.version + 1,
                                     updated_at = now()
                                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
                                 RETURNING 1
                             )
                             SELECT EXISTS (SELECT 1 FROM guard), EXISTS (SELECT 1 FROM written)",
                            expiry(5)
                        );
                        let statement = tx.prepare_cached(&sql).await?;
                        let row = tx
                            .query_one(
                                &statement,
                                &[&guard_key, &guard_value, &key, &value, &ttl_ms(ttl)],
                            )
                            .await?;
                        match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
                            (false, _) => Some(EventWrite::GuardFailed),
                            (true, true) => None,
                            (true, false) => Some(EventWrite::Refused),
                        }
                    }
                    RecordWrite::IfAbsent { key, value, ttl } => {
                        let sql = format!(
                            "INSERT INTO billpay_kv AS kv (key, value, expires_at) \
                             VALUES ($1, $2, {}) \
                             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                                 expires_at = EXCLUDED.expires_at, version = kv.version + 1, \
                                 updated_at = now() \
                             WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()",
                            expiry(3)
                        );
                        let statement = tx.prepare_cached(&sql).await?;
                        match tx
                            .execute(&statement, &[&key, &value, &ttl_ms(ttl)])
                            .await?
                        {
                            1 => None,
                            _ => Some(EventWrite::Refused),
                        }
                    }
                };
                if let Some(refused) = outcome {
                    tx.rollback().await?;
                    return Ok(refused);
                }
                let statement = tx
                    .prepare_cached(
                        "UPDATE billpay_event_position SET last_position = last_position + 1 \
                         WHERE id = 1 RETURNING last_position",
                    )
                    .await?;
                let position: i64 = tx.query_one(&statement, &[]).await?.get(0);
                let statement = tx
                    .prepare_cached(
                        "INSERT INTO billpay_events (position, payment_id, caller, event, at_ms) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .await?;
                tx.execute(
                    &statement,
                    &[
                        &position,
                        &event.payment_id,
                        &event.caller,
                        &event.body,
                        &event.at_ms,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(EventWrite::Written(position.to_string()))
            })
            .await?;
        self.wrote().await;
        Ok(written)
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        let resume: Option<i64> = match after {
            None => None,
            Some(id) => match id.parse() {
                Ok(p) if p >= 0 => Some(p),
                _ => return Ok(EventRead::Malformed),
            },
        };
        // From the oldest kept: every trimmed row is gone, so "after 0" is that.
        let after = resume.unwrap_or(0);
        // One statement, one snapshot: the trim mark and the rows agree.
        let rows = self
            .query(
                "SELECT p.trimmed_through, p.last_position,
                        e.position, e.payment_id, e.caller, e.event
                 FROM billpay_event_position p
                 LEFT JOIN LATERAL (
                     SELECT position, payment_id, caller, event FROM billpay_events
                     WHERE position > $1 ORDER BY position LIMIT $2
                 ) e ON true
                 WHERE p.id = 1",
                &[&after, &(limit.max(1) as i64)],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError(
                "postgres: billpay_event_position has no row".into(),
            ));
        };
        let (trimmed_through, last): (i64, i64) = (first.get(0), first.get(1));
        if resume.is_some() && (after < trimmed_through || after > last) {
            return Ok(EventRead::Expired);
        }
        Ok(EventRead::Events(
            rows.iter()
                .filter_map(|row| {
                    Some(StoredEvent {
                        id: row.get::<_, Option<i64>>(2)?.to_string(),
                        payment_id: row.get(3),
                        caller: row.get(4),
                        body: row.get(5),
                    })
                })
                .collect(),
        ))
    }

    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT last_position FROM billpay_event_position WHERE id = 1",
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| row.get::<_, i64>(0))
            .filter(|p| *p > 0)
            .map(|p| p.to_string()))
    }

    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        // Polled: the caller reads again after this pause (a LISTEN would need a connection
        // of its own outside the pool).
        let _ = after;
        tokio::time::sleep(timeout.min(EVENT_POLL)).await;
        Ok(())
    }

    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        // Deletes a prefix (by position, so retention never leaves a hole a reader could
        // pass over) up to the newest event older than the cut-off, and records it.
        self.execute(
            "WITH cut AS (
                 SELECT max(position) AS position FROM billpay_events WHERE at_ms < $1
             ), gone AS (
                 DELETE FROM billpay_events
                 WHERE position <= (SELECT position FROM cut)
                 RETURNING position
             )
             UPDATE billpay_event_position
             SET trimmed_through = GREATEST(trimmed_through, (SELECT position FROM cut))
             WHERE id = 1 AND (SELECT position FROM cut) IS NOT NULL",
            &[&before_ms],
        )
        .await
        .map(|_| ())
    }

    async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
        // Read on a pooled connection, so `synchronous_commit` is the one this gateway's own
        // writes run with (server, database and role defaults included).
        let rows = self
            .query(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit'),
                        current_setting('synchronous_standby_names'),
                        current_setting('server_version'), pg_is_in_recovery(),
                        (SELECT count(*) FROM pg_stat_replication
                         WHERE sync_state IN ('sync', 'quorum'))::int4",
                &[],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError("postgres: settings answered no row".into()))?;
        Ok(vec![Durability {
            postgres: Some(PostgresDurability {
                fsync: row.get(0),
                synchronous_commit: row.get(1),
                synchronous_standby_names: row.get(2),
                server_version: row.get(3),
                in_recovery: row.get(4),
                sync_standbys: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
            }),
            ..Durability::default()
        }])
    }
}
