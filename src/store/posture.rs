//! The store's durability posture: what the Redis servers allow about keeping a write they
//! acknowledged, and whether the gateway may move money on it. A payment's claim and in-flight
//! mark must survive a crash of the Redis host, or a retry of the same `request_id` pays twice
//! and a reference counter hands out a reference the provider already saw.
//!
//! Accepted without asking: `appendfsync always` (every write is on disk before Redis answers),
//! replicas acknowledging every claim and in-flight mark (`[store] min_replica_acks` >= 1 with
//! that many replicas connected: Redis `WAIT`), and `appendfsync everysec` on Redis >= 7.2 on a
//! single server, where the gateway waits with `WAITAOF` until the claim and in-flight mark are
//! on disk before calling the provider. Everything else has a loss window (a host crash loses
//! the last second with `everysec`, more with `appendfsync no`, everything since the last
//! snapshot with RDB only, everything with no persistence; unreadable settings cannot be
//! verified) and is refused for payments with real providers unless `[store]
//! accept_loss_window` names that very window. The sandbox (simulated providers) accepts any
//! window with a warning. An evicting `maxmemory-policy` and a replica (`ROLE slave`) are
//! always refused. On a Redis Cluster every primary is judged and the worst decides.
//!
//! PostgreSQL (`store.postgres_url`): a commit is on disk before the server answers unless
//! `fsync` is off (a host crash can lose committed transactions, or corrupt the database) or
//! `synchronous_commit` is off for the gateway's sessions (a host crash loses the last few
//! hundred milliseconds of commits). Both are loss windows (`fsync-off`,
//! `synchronous-commit-off`), refused for real providers unless named by `[store]
//! accept_loss_window`, accepted with a warning in the sandbox. A standby (in recovery) is
//! refused. Any other setting is accepted: `sync-commit` (the primary's disk), or
//! `sync-standby` when `synchronous_standby_names` is set and a synchronous standby is
//! connected (a commit is also on a standby, so a failover to it loses nothing). The start log
//! shows the settings, `synchronous_standby_names` among them.

use std::time::Duration;

/// A Redis server's durability settings; `None` fields could not be read (a managed Redis may
/// disable or rename `CONFIG`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    /// `appendonly`: `yes` or `no`.
    pub appendonly: Option<String>,
    /// `appendfsync`: `always`, `everysec` or `no`.
    pub appendfsync: Option<String>,
    /// `save`: RDB snapshot rules; empty means none.
    pub save: Option<String>,
    /// `maxmemory-policy`: only `noeviction` never drops keys.
    pub maxmemory_policy: Option<String>,
    /// `ROLE`: `master` or `slave`.
    pub role: Option<String>,
    /// The node (`host:port`) on a cluster, named in messages; `None` for a single Redis.
    pub node: Option<String>,
    /// `INFO server` `redis_version` (`7.0.15`).
    pub redis_version: Option<String>,
    /// `INFO replication` `connected_slaves`.
    pub connected_replicas: Option<u32>,
    /// `min-replicas-to-write`: the server refuses writes with fewer replicas connected.
    pub min_replicas_to_write: Option<u32>,
    /// PostgreSQL's settings instead (every Redis field is then `None`).
    pub postgres: Option<PostgresDurability>,
}

/// A PostgreSQL server's durability settings, as the gateway's own sessions see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresDurability {
    /// `fsync`: `on` or `off`.
    pub fsync: String,
    /// `synchronous_commit`: `on`, `remote_apply`, `remote_write`, `local` or `off`.
    pub synchronous_commit: String,
    /// `synchronous_standby_names`: empty when no standby acknowledges commits.
    pub synchronous_standby_names: String,
    /// `server_version` (`15.20 (Debian ...)`).
    pub server_version: String,
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// Standbys connected as synchronous (`pg_stat_replication.sync_state` `sync` or
    /// `quorum`).
    pub sync_standbys: u32,
}

impl PostgresDurability {
    /// One line for the start log.
    pub fn summary(&self) -> String {
        format!(
            "PostgreSQL {}: fsync {}, synchronous_commit {}, synchronous_standby_names '{}' \
             ({} synchronous standby(s) connected)",
            self.server_version,
            self.fsync,
            self.synchronous_commit,
            self.synchronous_standby_names,
            self.sync_standbys
        )
    }
}

/// How much a crash of the Redis host can take back of what it acknowledged. The names are
/// what `[store] accept_loss_window` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossWindow {
    /// `appendfsync everysec`: about the last second of writes.
    Everysec,
    /// `appendfsync no`: whatever the OS had not flushed yet (often 30 s).
    FsyncNo,
    /// RDB snapshots only (`appendonly no` with `save` rules): everything since the last one.
    Snapshot,
    /// No persistence at all: everything.
    None,
    /// The settings could not be read (`CONFIG` disabled or renamed): unknown.
    Unverified,
    /// PostgreSQL `synchronous_commit = off`: the last few hundred milliseconds of commits.
    SynchronousCommitOff,
    /// PostgreSQL `fsync = off`: anything not flushed by the OS, and possibly the database.
    FsyncOff,
}

impl LossWindow {
    /// Every window, in the order the README lists them.
    pub const ALL: [LossWindow; 7] = [
        Self::Everysec,
        Self::FsyncNo,
        Self::Snapshot,
        Self::None,
        Self::Unverified,
        Self::SynchronousCommitOff,
        Self::FsyncOff,
    ];

    /// The name `[store] accept_loss_window` takes and metrics and errors show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Everysec => "everysec",
            Self::FsyncNo => "appendfsync-no",
            Self::Snapshot => "snapshot",
            Self::None => "none",
            Self::Unverified => "unverified",
            Self::SynchronousCommitOff => "synchronous-commit-off",
            Self::FsyncOff => "fsync-off",
        }
    }

    /// The window named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name.trim())
    }

    /// What a host crash (or restart) loses with this window.
    pub fn risk(self) -> &'static str {
        match self {
            Self::Everysec => {
                "appendfsync everysec: a crash of the Redis host loses up to the last second of \
                 acknowledged writes (claims, in-flight marks, reference counters): a retry \
                 of a forgotten request_id pays twice and a counter may reissue references"
            }
            Self::FsyncNo => {
                "appendfsync no: a crash of the Redis host loses whatever the OS had not \
                 flushed (typically up to 30 s of acknowledged writes)"
            }
            Self::Snapshot => {
                "RDB snapshots only (appendonly no): a restart loses every write since the last \
                 snapshot"
            }
            Self::None => {
                "no persistence (appendonly no, save \"\"): a restart loses every payment in \
                 flight"
            }
            Self::Unverified => {
                "the persistence settings could not be read (CONFIG disabled or renamed?): \
                 nothing shows acknowledged writes survive a crash"
            }
            Self::SynchronousCommitOff => {
                "PostgreSQL synchronous_commit off: a crash of the PostgreSQL host loses the \
                 last commits (up to three times wal_writer_delay, 600 ms by default): a retry \
                 of a forgotten request_id pays twice"
            }
            Self::FsyncOff => {
                "PostgreSQL fsync off: a crash of the PostgreSQL host loses whatever the OS had \
                 not flushed and can leave the database corrupt"
            }
        }
    }
}

/// What the gateway asks of the store's posture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosturePolicy {
    /// `[store] min_replica_acks`: replicas that acknowledge every claim and in-flight mark.
    pub min_replica_acks: u32,
    /// `[store] accept_loss_window`: the one loss window the operator accepted.
    pub accept_loss_window: Option<LossWindow>,
    /// Simulated providers (the sandbox): any window is accepted with a warning.
    pub simulated: bool,
}

/// Whether payments may go on, and on what grounds (the `accepted` label of
/// `billpay_store_posture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No acknowledged write can be lost (by the posture's own guarantee).
    Accepted,
    /// A loss window the operator accepted by name (`[store] accept_loss_window`).
    OptIn,
    /// A loss window, accepted because the providers are simulated.
    Sandbox,
    /// Payments are refused.
    Refused,
}

impl Verdict {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "yes",
            Self::OptIn => "opt_in",
            Self::Sandbox => "sandbox",
            Self::Refused => "no",
        }
    }
}

/// The gateway's judgement of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posture {
    /// Short name: `always`, `replicas`, `waitaof`, a [`LossWindow`] name, `evicting`,
    /// `replica`, or `memory` (the in-process store).
    pub name: String,
    pub verdict: Verdict,
    /// Before a provider is called, wait (`WAITAOF`) until the claim and in-flight mark are on
    /// the server's disk.
    pub wait_aof: bool,
    /// Why: the refusal, or what an accepted window risks; empty when nothing is at risk.
    pub why: String,
    /// Other things to log (an unreadable `maxmemory-policy`).
    pub warnings: Vec<String>,
    /// The settings judged, for the start log (PostgreSQL's; empty for Redis and memory).
    pub summary: String,
}

impl Posture {
    /// Payments may go on.
    pub fn accepted(&self) -> bool {
        self.verdict != Verdict::Refused
    }

    fn refused(name: &str, why: String) -> Self {
        Self {
            name: name.to_owned(),
            verdict: Verdict::Refused,
            wait_aof: false,
            why,
            warnings: Vec::new(),
            summary: String::new(),
        }
    }

    fn with_node(mut self, node: &Option<String>) -> Self {
        if let Some(node) = node {
            if !self.why.is_empty() {
                self.why = format!("Redis node {node}: {}", self.why);
            }
            for w in &mut self.warnings {
                *w = format!("Redis node {node}: {w}");
            }
        }
        self
    }
}

/// The first Redis version with `WAITAOF`.
const WAITAOF_SINCE: (u32, u32) = (7, 2);

fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Judges every server that takes writes (one for a single Redis, each primary of a cluster;
/// none for the memory store): the first refusal decides, else the weakest ground.
pub fn assess(nodes: &[Durability], policy: &PosturePolicy) -> Posture {
    if nodes.is_empty() {
        return Posture {
            name: "memory".into(),
            verdict: Verdict::Accepted,
            wait_aof: false,
            why: String::new(),
            warnings: Vec::new(),
            summary: String::new(),
        };
    }
    let cluster = nodes.len() > 1 || nodes.iter().any(|n| n.node.is_some());
    let judged: Vec<Posture> = nodes
        .iter()
        .map(|n| judge(n, policy, cluster).with_node(&n.node))
        .collect();
    let mut warnings: Vec<String> = Vec::new();
    for w in judged.iter().flat_map(|p| p.warnings.iter()) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    let rank = |v: Verdict| match v {
        Verdict::Refused => 3,
        Verdict::OptIn => 2,
        Verdict::Sandbox => 1,
        Verdict::Accepted => 0,
    };
    let worst = judged
        .iter()
        .max_by_key(|p| (rank(p.verdict), p.wait_aof))
        .cloned()
        .expect("at least one node");
    Posture {
        warnings,
        // Every node must be waited for when one is; only a single server gets `waitaof`.
        wait_aof: judged.iter().any(|p| p.wait_aof),
        ..worst
    }
}

/// One server's posture.
fn judge(d: &Durability, policy: &PosturePolicy, cluster: bool) -> Posture {
    if let Some(pg) = &d.postgres {
        return Posture {
            summary: pg.summary(),
            ..judge_postgres(pg, policy)
        };
    }
    let mut warnings = Vec::new();
    match d.maxmemory_policy.as_deref() {
        Some("noeviction") => {}
        Some(evicting) => {
            return Posture::refused(
                "evicting",
                format!(
                    "Redis maxmemory-policy is {evicting}: it evicts keys under memory \
                     pressure, payment records and their request_ids with them (a retry would \
                     pay twice). Set maxmemory-policy noeviction"
                ),
            )
        }
        None => warnings.push(
            "could not read Redis maxmemory-policy (CONFIG disabled?): make sure it is \
             noeviction"
                .to_owned(),
        ),
    }
    if d.role.as_deref() == Some("slave") {
        return Posture::refused(
            "replica",
            "Redis is a replica (ROLE slave): point store.redis_url at the primary".into(),
        );
    }
    let save = d.save.as_deref().map(str::trim);
    let window = match (d.appendonly.as_deref(), d.appendfsync.as_deref(), save) {
        (Some("yes"), Some("always"), _) => None,
        (Some("yes"), Some("everysec"), _) => Some(LossWindow::Everysec),
        (Some("yes"), Some("no"), _) => Some(LossWindow::FsyncNo),
        (Some("no"), _, Some("")) => Some(LossWindow::None),
        (Some("no"), _, Some(_)) => Some(LossWindow::Snapshot),
        _ => Some(LossWindow::Unverified),
    };
    let accepted = |name: &str, wait_aof: bool| Posture {
        name: name.to_owned(),
        verdict: Verdict::Accepted,
        wait_aof,
        why: String::new(),
        warnings: warnings.clone(),
        summary: String::new(),
    };
    let Some(window) = window else {
        return accepted("always", false);
    };
    let replicas = d.connected_replicas.unwrap_or(0);
    if policy.min_replica_acks >= 1 && replicas >= policy.min_replica_acks {
        return accepted("replicas", false);
    }
    let waitaof = d
        .redis_version
        .as_deref()
        .and_then(version)
        .is_some_and(|v| v >= WAITAOF_SINCE);
    if window == LossWindow::Everysec && waitaof && !cluster {
        return accepted("waitaof", true);
    }
    if policy.accept_loss_window == Some(window) {
        return Posture {
            name: window.name().to_owned(),
            verdict: Verdict::OptIn,
            wait_aof: false,
            why: format!(
                "accepted by [store] accept_loss_window = \"{}\": {}",
                window.name(),
                window.risk()
            ),
            warnings,
            summary: String::new(),
        };
    }
    if policy.simulated {
        return Posture {
            name: window.name().to_owned(),
            verdict: Verdict::Sandbox,
            wait_aof: false,
            why: format!("accepted for simulated providers only: {}", window.risk()),
            warnings,
            summary: String::new(),
        };
    }
    let replicas_note = if policy.min_replica_acks >= 1 {
        format!(
            "; min_replica_acks = {} but {replicas} replica(s) connected",
            policy.min_replica_acks
        )
    } else {
        String::new()
    };
    Posture::refused(
        window.name(),
        format!(
            "{}{replicas_note}. Use appendonly yes with appendfsync always, replicas with \
             [store] min_replica_acks, or Redis >= 7.2 with appendfsync everysec (WAITAOF); or \
             accept this window by name: [store] accept_loss_window = \"{}\"",
            window.risk(),
            window.name()
        ),
    )
}

/// A PostgreSQL server's posture (see the module docs).
fn judge_postgres(d: &PostgresDurability, policy: &PosturePolicy) -> Posture {
    if d.in_recovery {
        return Posture::refused(
            "standby",
            "PostgreSQL is a standby (pg_is_in_recovery): point store.postgres_url at the \
             primary"
                .into(),
        );
    }
    let mut warnings = Vec::new();
    let standby_names = d.synchronous_standby_names.trim();
    let waits_for_standbys = matches!(
        d.synchronous_commit.as_str(),
        "on" | "remote_write" | "remote_apply"
    );
    if !standby_names.is_empty() {
        if d.synchronous_commit == "local" {
            warnings.push(format!(
                "PostgreSQL synchronous_commit is local: commits do not wait for the \
                 synchronous standbys ({standby_names}), so a failover can lose the last ones"
            ));
        } else if waits_for_standbys && d.sync_standbys == 0 {
            warnings.push(format!(
                "PostgreSQL synchronous_standby_names is '{standby_names}' but no synchronous \
                 standby is connected: every commit waits for one (store statements time out)"
            ));
        }
    }
    let window = if d.fsync != "on" {
        Some(LossWindow::FsyncOff)
    } else if d.synchronous_commit == "off" {
        Some(LossWindow::SynchronousCommitOff)
    } else {
        None
    };
    let Some(window) = window else {
        let on_standby = waits_for_standbys && !standby_names.is_empty() && d.sync_standbys > 0;
        return Posture {
            name: if on_standby {
                "sync-standby"
            } else {
                "sync-commit"
            }
            .into(),
            verdict: Verdict::Accepted,
            wait_aof: false,
            why: String::new(),
            warnings,
            summary: String::new(),
        };
    };
    let (verdict, why) = if policy.accept_loss_window == Some(window) {
        (
            Verdict::OptIn,
            format!(
                "accepted by [store] accept_loss_window = \"{}\": {}",
                window.name(),
                window.risk()
            ),
        )
    } else if policy.simulated {
        (
            Verdict::Sandbox,
            format!("accepted for simulated providers only: {}", window.risk()),
        )
    } else {
        (
            Verdict::Refused,
            format!(
                "{}. Turn it on (ALTER SYSTEM SET {} = on; SELECT pg_reload_conf()), or accept \
                 this window by name: [store] accept_loss_window = \"{}\"",
                window.risk(),
                if window == LossWindow::FsyncOff {
                    "fsync"
                } else {
                    "synchronous_commit"
                },
                window.name()
            ),
        )
    };
    Posture {
        name: window.name().to_owned(),
        verdict,
        wait_aof: false,
        why,
        warnings,
        summary: String::new(),
    }
}

/// What the gateway last read of the store's posture.
#[derive(Debug, Default)]
pub struct PostureCache {
    /// The last verdict and when it was read (`tokio` time, so tests can pause it).
    pub last: Option<(Posture, tokio::time::Instant)>,
    /// Read again before the next use (the store was unreachable: a reconnect may reach
    /// another server).
    pub reread: bool,
}

impl PostureCache {
    /// The last verdict, when it was read less than `recheck` ago and no reread is due.
    pub fn fresh(&self, recheck: Duration) -> Option<Posture> {
        match &self.last {
            Some((posture, at)) if !self.reread && at.elapsed() < recheck => Some(posture.clone()),
            _ => None,
        }
    }

    /// How long ago the last successful read was, in milliseconds.
    pub fn last_read_ago_ms(&self) -> Option<u64> {
        self.last
            .as_ref()
            .map(|(_, at)| at.elapsed().as_millis() as u64)
    }
}

/// Sets `billpay_store_posture{posture, accepted}` to 1 for `now` and 0 for `before`.
pub fn export(before: Option<&Posture>, now: &Posture) {
    let gauge = &crate::metrics::global().store_posture;
    if let Some(before) = before {
        gauge.get_or_create(&labels(before)).set(0);
    }
    gauge.get_or_create(&labels(now)).set(1);
}

fn labels(p: &Posture) -> crate::metrics::PostureLabels {
    crate::metrics::PostureLabels {
        posture: p.name.clone(),
        accepted: p.verdict.label().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(appendonly: &str, fsync: &str, save: &str) -> Durability {
        Durability {
            appendonly: Some(appendonly.into()),
            appendfsync: Some(fsync.into()),
            save: Some(save.into()),
            maxmemory_policy: Some("noeviction".into()),
            role: Some("master".into()),
            node: None,
            redis_version: Some("7.0.15".into()),
            connected_replicas: Some(0),
            min_replicas_to_write: Some(0),
            postgres: None,
        }
    }

    fn policy() -> PosturePolicy {
        PosturePolicy {
            min_replica_acks: 0,
            accept_loss_window: None,
            simulated: false,
        }
    }

    fn one(d: Durability, p: PosturePolicy) -> Posture {
        assess(&[d], &p)
    }

    #[test]
    fn always_is_accepted_every_window_is_refused_by_default() {
        let p = one(redis("yes", "always", ""), policy());
        assert_eq!((p.name.as_str(), p.verdict), ("always", Verdict::Accepted));
        assert!(!p.wait_aof);
        for (d, window) in [
            (redis("yes", "everysec", ""), "everysec"),
            (redis("yes", "no", ""), "appendfsync-no"),
            (redis("no", "always", "3600 1"), "snapshot"),
            (redis("no", "everysec", ""), "none"),
            (
                Durability {
                    appendonly: None,
                    ..redis("yes", "always", "")
                },
                "unverified",
            ),
        ] {
            let p = one(d, policy());
            assert_eq!((p.name.as_str(), p.verdict), (window, Verdict::Refused));
            assert!(
                p.why
                    .contains(&format!("accept_loss_window = \"{window}\"")),
                "{}",
                p.why
            );
        }
    }

    #[test]
    fn an_opt_in_accepts_only_the_window_it_names() {
        let everysec = PosturePolicy {
            accept_loss_window: Some(LossWindow::Everysec),
            ..policy()
        };
        let p = one(redis("yes", "everysec", ""), everysec);
        assert_eq!((p.name.as_str(), p.verdict), ("everysec", Verdict::OptIn));
        assert!(p.why.contains("loses up to the last second"), "{}", p.why);
        // A larger window is not accepted by naming a smaller one.
        let p = one(redis("no", "always", ""), everysec);
        assert_eq!((p.name.as_str(), p.verdict), ("none", Verdict::Refused));
        for window in LossWindow::ALL {
            assert_eq!(LossWindow::parse(window.name()), Some(window));
        }
        assert_eq!(LossWindow::parse("1s"), None);
    }

    #[test]
    fn waitaof_needs_redis_7_2_and_a_single_server() {
        // Redis 7.0 (this machine's): no WAITAOF, so everysec is a loss window.
        assert_eq!(
            one(redis("yes", "everysec", ""), policy()).verdict,
            Verdict::Refused
        );
        for v in ["7.2.0", "7.4.1", "8.0.2"] {
            let p = one(
                Durability {
                    redis_version: Some(v.into()),
                    ..redis("yes", "everysec", "")
                },
                policy(),
            );
            assert_eq!((p.name.as_str(), p.verdict), ("waitaof", Verdict::Accepted));
            assert!(p.wait_aof, "{v}");
        }
        // appendfsync no is not made safe by WAITAOF here (the gateway only waits for everysec).
        let p = one(
            Durability {
                redis_version: Some("7.2.4".into()),
                ..redis("yes", "no", "")
            },
            policy(),
        );
        assert_eq!(p.verdict, Verdict::Refused);
        // On a cluster WAITAOF would ask another connection than the one that wrote: refused.
        let nodes: Vec<Durability> = ["10.0.0.1:7000", "10.0.0.2:7000"]
            .into_iter()
            .map(|n| Durability {
                node: Some(n.into()),
                redis_version: Some("7.2.4".into()),
                ..redis("yes", "everysec", "")
            })
            .collect();
        let p = assess(&nodes, &policy());
        assert_eq!((p.name.as_str(), p.verdict), ("everysec", Verdict::Refused));
        assert!(p.why.starts_with("Redis node 10.0.0."), "{}", p.why);
    }

    #[test]
    fn replicas_are_accepted_when_enough_are_connected() {
        let wait = PosturePolicy {
            min_replica_acks: 1,
            ..policy()
        };
        let with = Durability {
            connected_replicas: Some(1),
            ..redis("yes", "everysec", "")
        };
        let p = one(with.clone(), wait);
        assert_eq!(
            (p.name.as_str(), p.verdict),
            ("replicas", Verdict::Accepted)
        );
        // Replicas without min_replica_acks: nobody waits for them.
        assert_eq!(one(with, policy()).verdict, Verdict::Refused);
        let p = one(redis("yes", "everysec", ""), wait);
        assert_eq!(p.verdict, Verdict::Refused);
        assert!(p.why.contains("0 replica(s) connected"), "{}", p.why);
    }

    #[test]
    fn evicting_and_replica_roles_are_refused_even_with_an_opt_in() {
        let any = PosturePolicy {
            accept_loss_window: Some(LossWindow::Everysec),
            simulated: true,
            ..policy()
        };
        let p = one(
            Durability {
                maxmemory_policy: Some("allkeys-lru".into()),
                ..redis("yes", "everysec", "")
            },
            any,
        );
        assert_eq!((p.name.as_str(), p.verdict), ("evicting", Verdict::Refused));
        assert!(p.why.contains("maxmemory-policy is allkeys-lru"));
        let p = one(
            Durability {
                role: Some("slave".into()),
                ..redis("yes", "always", "")
            },
            any,
        );
        assert_eq!((p.name.as_str(), p.verdict), ("replica", Verdict::Refused));
    }

    #[test]
    fn the_sandbox_accepts_a_window_with_a_warning_and_memory_is_unaffected() {
        let sandbox = PosturePolicy {
            simulated: true,
            ..policy()
        };
        let p = one(redis("no", "always", ""), sandbox);
        assert_eq!((p.name.as_str(), p.verdict), ("none", Verdict::Sandbox));
        let p = assess(&[], &policy());
        assert_eq!((p.name.as_str(), p.verdict), ("memory", Verdict::Accepted));
    }

    #[test]
    fn on_a_cluster_the_worst_primary_decides() {
        let nodes = [
            Durability {
                node: Some("10.0.0.1:7000".into()),
                ..redis("yes", "always", "")
            },
            Durability {
                node: Some("10.0.0.2:7000".into()),
                maxmemory_policy: None,
                ..redis("yes", "everysec", "")
            },
        ];
        let p = assess(&nodes, &policy());
        assert_eq!((p.name.as_str(), p.verdict), ("everysec", Verdict::Refused));
        assert!(p.why.starts_with("Redis node 10.0.0.2:7000: "), "{}", p.why);
        let opt_in = PosturePolicy {
            accept_loss_window: Some(LossWindow::Everysec),
            ..policy()
        };
        let p = assess(&nodes, &opt_in);
        assert_eq!((p.name.as_str(), p.verdict), ("everysec", Verdict::OptIn));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("Redis node 10.0.0.2:7000: "));
        let always = assess(&nodes[..1], &policy());
        assert_eq!(always.verdict, Verdict::Accepted);
    }

    fn postgres(
        fsync: &str,
        synchronous_commit: &str,
        standbys: &str,
        connected: u32,
    ) -> Durability {
        Durability {
            postgres: Some(PostgresDurability {
                fsync: fsync.into(),
                synchronous_commit: synchronous_commit.into(),
                synchronous_standby_names: standbys.into(),
                server_version: "15.20".into(),
                in_recovery: false,
                sync_standbys: connected,
            }),
            ..Durability::default()
        }
    }

    #[test]
    fn postgres_with_fsync_and_synchronous_commit_is_accepted_and_shows_its_standbys() {
        for commit in ["on", "local", "remote_write", "remote_apply"] {
            let p = one(postgres("on", commit, "", 0), policy());
            assert_eq!(
                (p.name.as_str(), p.verdict),
                ("sync-commit", Verdict::Accepted)
            );
            assert!(p.warnings.is_empty(), "{:?}", p.warnings);
            assert!(p.summary.contains("synchronous_standby_names ''"));
        }
        let p = one(postgres("on", "on", "FIRST 1 (s1, s2)", 1), policy());
        assert_eq!(
            (p.name.as_str(), p.verdict),
            ("sync-standby", Verdict::Accepted)
        );
        assert!(
            p.summary
                .contains("synchronous_standby_names 'FIRST 1 (s1, s2)' (1 synchronous"),
            "{}",
            p.summary
        );
        // Named standbys that are not there, or commits that do not wait for them: warned.
        let p = one(postgres("on", "on", "s1", 0), policy());
        assert_eq!(p.name, "sync-commit");
        assert!(p.warnings[0].contains("no synchronous standby is connected"));
        let p = one(postgres("on", "local", "s1", 1), policy());
        assert_eq!(p.name, "sync-commit");
        assert!(p.warnings[0].contains("synchronous_commit is local"));
    }

    #[test]
    fn postgres_with_fsync_or_synchronous_commit_off_is_refused_unless_opted_in() {
        for (d, window) in [
            (postgres("on", "off", "", 0), "synchronous-commit-off"),
            (postgres("off", "on", "", 0), "fsync-off"),
            (postgres("off", "off", "", 0), "fsync-off"),
        ] {
            let p = one(d.clone(), policy());
            assert_eq!((p.name.as_str(), p.verdict), (window, Verdict::Refused));
            assert!(
                p.why
                    .contains(&format!("accept_loss_window = \"{window}\"")),
                "{}",
                p.why
            );
            let opt_in = PosturePolicy {
                accept_loss_window: LossWindow::parse(window),
                ..policy()
            };
            assert_eq!(one(d.clone(), opt_in).verdict, Verdict::OptIn);
            // A Redis window's name does not accept a PostgreSQL one.
            let other = PosturePolicy {
                accept_loss_window: Some(LossWindow::Everysec),
                ..policy()
            };
            assert_eq!(one(d.clone(), other).verdict, Verdict::Refused);
            let sandbox = PosturePolicy {
                simulated: true,
                ..policy()
            };
            assert_eq!(one(d, sandbox).verdict, Verdict::Sandbox);
        }
        // fsync off is not accepted by naming the smaller window.
        let p = one(
            postgres("off", "off", "", 0),
            PosturePolicy {
                accept_loss_window: Some(LossWindow::SynchronousCommitOff),
                ..policy()
            },
        );
        assert_eq!(p.verdict, Verdict::Refused);
        let standby = Durability {
            postgres: Some(PostgresDurability {
                in_recovery: true,
                ..PostgresDurability::default()
            }),
            ..Durability::default()
        };
        let p = one(standby, policy());
        assert_eq!((p.name.as_str(), p.verdict), ("standby", Verdict::Refused));
    }

    #[test]
    fn a_cached_posture_is_fresh_only_within_the_recheck() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let recheck = Duration::from_secs(10);
            let posture = one(redis("yes", "always", ""), policy());
            let mut cache = PostureCache {
                last: Some((posture.clone(), tokio::time::Instant::now())),
                reread: false,
            };
            assert_eq!(cache.fresh(recheck), Some(posture));
            tokio::time::advance(Duration::from_millis(9_999)).await;
            assert!(cache.fresh(recheck).is_some());
            assert_eq!(cache.last_read_ago_ms(), Some(9_999));
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(cache.fresh(recheck), None);
            cache.last.as_mut().unwrap().1 = tokio::time::Instant::now();
            cache.reread = true;
            assert_eq!(cache.fresh(recheck), None, "a reconnect forces a read");
        });
    }
}
