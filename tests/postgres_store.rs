//! The PostgreSQL store against a real PostgreSQL (see `common/postgres.rs`: each test makes its
//! own database): the store contract unchanged, the schema steps, and what concurrency must
//! not break: two reconciler replicas never claim one due payment at once, one claim of a key
//! among many racing, counters that never hand out a value twice, and strings that look like
//! SQL stored verbatim.

#[path = "common/postgres.rs"]
mod postgres;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use billpay_gateway::store::{
    contract,
    postgres::{latest_version, MIGRATIONS},
    GuardedWrite, Increment, Store,
};
use postgres::TestDatabase;

#[test]
fn the_test_database_name_replaces_the_one_in_the_url() {
    use postgres::with_database;
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5/db?sslmode=disable", "t1"),
        "postgres://u:p@h:5/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
}

#[tokio::test]
async fn postgres_store_passes_the_store_contract() {
    let db = TestDatabase::create().await;
    let store = db.migrated_store().await;
    contract::run(&store).await;
}

#[tokio::test]
async fn the_schema_is_applied_once_and_a_store_without_it_says_to_migrate() {
    let db = TestDatabase::create().await;
    let store = db.store();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    let e = store.get("k").await.unwrap_err();
    assert!(e.0.contains("store migrate"), "{e}");
    // Two racing runs: one applies every migration, the other finds nothing left to do.
    let other = db.store();
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    let mut applied = a.unwrap();
    applied.extend(b.unwrap());
    let every: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, every);
    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    store.set("k", b"v", None).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reconciler_replicas_never_claim_one_due_payment_at_once() {
    let db = TestDatabase::create().await;
    // Two stores, two pools: two gateway replicas on one database.
    let replicas = [Arc::new(db.migrated_store().await), Arc::new(db.store())];
    let set = "billpay:v1:reconcile";
    let members: Vec<String> = (0..200).map(|i| format!("pay-{i:03}")).collect();
    for (i, m) in members.iter().enumerate() {
        replicas[0].schedule(set, m, i as i64).await.unwrap();
    }
    // Each replica runs 4 reconcilers' worth of claims over every due member, all at once.
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for worker in 0..4 {
            let store = store.clone();
            let members = members.clone();
            tasks.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                for m in members.iter().cycle().skip(worker * 50).take(members.len()) {
                    if store.claim_due(set, m, 1_000, 60_000).await.unwrap() {
                        claimed.push((m.clone(), r));
                    }
                }
                claimed
            }));
        }
    }
    let mut claims = Vec::new();
    for task in tasks {
        claims.extend(task.await.unwrap());
    }
    let distinct: BTreeSet<&String> = claims.iter().map(|(m, _)| m).collect();
    assert_eq!(claims.len(), members.len(), "each due payment claimed once");
    assert_eq!(distinct.len(), members.len());
    println!(
        "claims by replica: {} / {}",
        claims.iter().filter(|(_, r)| *r == 0).count(),
        claims.iter().filter(|(_, r)| *r == 1).count()
    );
    // Every claim moved its entry to the lease: nothing is due before it ends.
    assert!(replicas[1].due(set, 59_999, 10).await.unwrap().is_empty());
    assert_eq!(replicas[1].due(set, 60_000, 1000).await.unwrap().len(), 200);
    // Once the lease is over, one of them claims it again.
    let (a, b) = tokio::join!(
        replicas[0].claim_due(set, "pay-007", 60_000, 120_000),
        replicas[1].claim_due(set, "pay-007", 60_000, 120_000)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one of the two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_write_once_and_racing_increments_never_repeat_a_value() {
    let db = TestDatabase::create().await;
    let stores = [Arc::new(db.migrated_store().await), Arc::new(db.store())];
    let guard = "billpay:v1:store:identity";
    assert!(stores[0].init_guard(guard, b"epoch-1").await.unwrap());

    let mut claims = Vec::new();
    for i in 0..100 {
        let store = stores[i % 2].clone();
        claims.push(tokio::spawn(async move {
            store
                .set_if_absent_guarded(
                    guard,
                    b"epoch-1",
                    "billpay:v1:payment:p1",
                    format!("claim-{i}").as_bytes(),
                    None,
                )
                .await
                .unwrap()
        }));
    }
    let mut written = 0;
    for claim in claims {
        match claim.await.unwrap() {
            GuardedWrite::Written => written += 1,
            GuardedWrite::Exists => {}
            GuardedWrite::GuardFailed => panic!("the guard holds"),
        }
    }
    assert_eq!(written, 1, "one claim among 100 racing ones");

    // A counter created by racing increments: every value handed out once, each with the
    // value before it.
    let mut increments = Vec::new();
    for i in 0..100 {
        let store = stores[i % 2].clone();
        increments.push(tokio::spawn(async move {
            store
                .increment_guarded(guard, b"epoch-1", "billpay:v1:seq:reference:x", 0, 1_000)
                .await
                .unwrap()
        }));
    }
    let mut values = BTreeSet::new();
    for increment in increments {
        match increment.await.unwrap() {
            Increment::Issued { value, previous } => {
                assert_eq!(previous + 1, value);
                assert!(values.insert(value), "{value} handed out twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(values, (1..=100).collect());
    // A replaced guard stops both at once.
    stores[1].replace_guard(guard, b"epoch-2").await.unwrap();
    assert_eq!(
        stores[0]
            .increment_guarded(guard, b"epoch-1", "billpay:v1:seq:reference:x", 0, 1_000)
            .await
            .unwrap(),
        Increment::GuardFailed
    );
    assert_eq!(
        stores[0]
            .set_if_absent_guarded(guard, b"epoch-1", "billpay:v1:payment:p2", b"v", None)
            .await
            .unwrap(),
        GuardedWrite::GuardFailed
    );
}

/// Strings an attacker would send, in every place a string goes: keys, values, members, set
/// names and prefixes.
const HOSTILE: &[&str] = &[
    "'; DROP TABLE billpay_kv; --",
    "\" OR 1=1 --",
    "x' OR 'a'='a",
    "%",
    "_",
    "\\",
    "billpay:v1:%",
    "$1",
    "'); DELETE FROM billpay_schedule; --",
    "ünïcødé ✓",
];

#[tokio::test]
async fn strings_that_look_like_sql_are_stored_verbatim_and_harmless() {
    let db = TestDatabase::create().await;
    let store = db.migrated_store().await;
    store
        .set("billpay:v1:bystander", b"safe", None)
        .await
        .unwrap();
    for (i, text) in HOSTILE.iter().enumerate() {
        let key = format!("billpay:v1:payment:{text}");
        assert!(store
            .set_if_absent(&key, text.as_bytes(), None)
            .await
            .unwrap());
        assert_eq!(
            store.get(&key).await.unwrap().as_deref(),
            Some(text.as_bytes())
        );
        assert!(store
            .compare_and_swap(&key, text.as_bytes(), format!("{text}{text}").as_bytes())
            .await
            .unwrap());
        store.schedule(text, text, i as i64).await.unwrap();
        assert_eq!(
            store.due(text, 100, 10).await.unwrap(),
            vec![text.to_string()]
        );
        assert!(store.claim_due(text, text, 100, 1_000).await.unwrap());
    }
    // LIKE's wildcards in a prefix match only themselves.
    assert_eq!(
        store
            .keys_with_prefix("billpay:v1:payment:%")
            .await
            .unwrap(),
        vec!["billpay:v1:payment:%".to_owned()]
    );
    assert_eq!(
        store
            .keys_with_prefix("billpay:v1:payment:_")
            .await
            .unwrap(),
        vec!["billpay:v1:payment:_".to_owned()]
    );
    assert_eq!(
        store
            .keys_with_prefix("billpay:v1:payment:")
            .await
            .unwrap()
            .len(),
        HOSTILE.len()
    );
    // Bytes that are not text at all, as values.
    let binary: Vec<u8> = (0..=255).collect();
    store.set("billpay:v1:binary", &binary, None).await.unwrap();
    assert_eq!(store.get("billpay:v1:binary").await.unwrap(), Some(binary));
    // Nothing else was touched: the tables and the bystander are there.
    assert_eq!(
        store.get("billpay:v1:bystander").await.unwrap().as_deref(),
        Some(&b"safe"[..])
    );
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*) FROM billpay_kv WHERE key LIKE 'billpay:v1:payment:%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), HOSTILE.len() as i64);
    let row = client
        .query_one("SELECT count(*) FROM billpay_schedule", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), HOSTILE.len() as i64);
}

#[tokio::test]
async fn expired_rows_are_invisible_then_swept() {
    let db = TestDatabase::create().await;
    let store = db.migrated_store().await;
    store
        .set("billpay:v1:catalog:a", b"x", Some(Duration::from_millis(1)))
        .await
        .unwrap();
    store.set("billpay:v1:catalog:b", b"y", None).await.unwrap();
    let client = db.client().await;
    // Wait until the server's clock is past the expiry (its own clock decides).
    client.batch_execute("SELECT pg_sleep(0.05)").await.unwrap();
    assert_eq!(store.get("billpay:v1:catalog:a").await.unwrap(), None);
    assert_eq!(
        store.keys_with_prefix("billpay:v1:catalog:").await.unwrap(),
        vec!["billpay:v1:catalog:b".to_owned()]
    );
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    let rows = client
        .query_one("SELECT count(*) FROM billpay_kv", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn the_durability_settings_are_read_from_the_server() {
    let db = TestDatabase::create().await;
    let store = db.migrated_store().await;
    let nodes = store.durability().await.unwrap();
    let pg = nodes[0].postgres.clone().expect("postgres settings");
    println!("{}", pg.summary());
    assert_eq!(pg.fsync, "on");
    assert!(pg.server_version.starts_with(char::is_numeric));
    assert!(!pg.in_recovery);
    // The gateway's sessions: a role or database default is what it would write with.
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let fresh = db.store();
    let pg = fresh.durability().await.unwrap()[0]
        .postgres
        .clone()
        .unwrap();
    assert_eq!(pg.synchronous_commit, "off");
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_store_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = billpay_gateway::store::postgres::PostgresStore::new(
        &format!("postgres://postgres:s3cret@127.0.0.1:{port}/x"),
        Duration::from_millis(300),
        Duration::from_millis(300),
        2,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = store.ping().await.unwrap_err();
    assert!(!e.0.contains("s3cret"), "{e}");
    assert!(store.set_if_absent("k", b"v", None).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
