//! The mixed deployment: the payment journal in PostgreSQL, provider tokens, catalog copies
//! and validation leases in Redis (both real, each test with its own database and its own
//! `redis-server`). A gateway pays, replays, and each key is where it belongs, checked in
//! each store directly. The posture that decides payments is PostgreSQL's: a Redis that keeps
//! nothing on disk, refused as the whole store, holds payments back in no way here.

mod common;

use std::sync::Arc;

use billpay_gateway::{
    gateway::{PaymentSettings, StoreHealth, StorePolicy},
    pb,
    sandbox::{self, Simulators},
    store::{identity, redis::RedisStore, routed::RoutedStore, Store},
};
use common::{postgres::TestDatabase, process::Spawned, redis::RedisServer, *};

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    let timeout = std::time::Duration::from_secs(5);
    Arc::new(RedisStore::new(&redis.url(), timeout, timeout).unwrap())
}

fn kes(cents: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "KES".into(),
        minor_units: cents,
    })
}

/// A payment through InterIntel (the sandbox's success account), which takes an OAuth token.
fn interintel_request(request_id: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interintel as i32,
        biller_id: "kplc".into(),
        product_id: "101".into(),
        customer_id: "1000000001".into(),
        amount: kes(150_000),
        ..pb::CreatePaymentRequest::default()
    }
}

/// Every `billpay:v1:*` key in the Redis, sorted.
fn redis_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cli(&["--scan", "--pattern", "billpay:v1:*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// Every key of `billpay_kv` (as `psql` shows it), sorted.
async fn postgres_keys(db: &TestDatabase) -> Vec<String> {
    db.client()
        .await
        .query("SELECT key FROM billpay_kv ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether some key starts with `billpay:v1:<kind>:`.
fn has_kind(keys: &[String], kind: &str) -> bool {
    let prefix = format!("billpay:v1:{kind}:");
    keys.iter().any(|k| k.starts_with(&prefix))
}

/// The payment journal's rows for `request_id` (payment id, state).
async fn payment_rows(db: &TestDatabase, request_id: &str) -> Vec<(String, String)> {
    db.client()
        .await
        .query(
            "SELECT payment_id, state FROM billpay_payments WHERE request_id = $1",
            &[&request_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_providers_pay_over_postgres_while_a_forgetful_redis_holds_tokens_and_catalogs() {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let db = TestDatabase::create().await;
    // No persistence at all: as the whole store, refused for real providers.
    let redis = RedisServer::start_forgetful();
    let now = billpay_gateway::gateway::Clock::default().now_ms();

    let alone = redis_store(&redis);
    identity::init(alone.as_ref(), now, &Default::default())
        .await
        .unwrap();
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        alone.clone(),
        PaymentSettings::default(),
    )
    .await;
    gw.gateway.set_store_policy(StorePolicy::default());
    assert_eq!(gw.gateway.store_health().await, StoreHealth::Refused);
    gw.stop().await;
    redis.cli(&["FLUSHALL"]);

    let journal: Arc<dyn Store> = Arc::new(db.migrated_store().await);
    let store: Arc<dyn Store> = Arc::new(RoutedStore::new(journal, redis_store(&redis)));
    identity::init(store.as_ref(), now, &Default::default())
        .await
        .unwrap();
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store,
        PaymentSettings::default(),
    )
    .await;
    gw.gateway.set_store_policy(StorePolicy::default());
    assert_eq!(gw.gateway.store_health().await, StoreHealth::Up);
    assert_eq!(
        gw.gateway.last_store_posture().expect("read").name,
        "sync-commit"
    );

    let paid = gw.pay(interintel_request("mixed-1")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    let replay = gw.pay(interintel_request("mixed-1")).await;
    assert_eq!(
        (&replay.payment_id, &replay.provider_reference, replay.state),
        (&paid.payment_id, &paid.provider_reference, paid.state)
    );
    // Interswitch validates the customer first: under a lease.
    let validated = gw
        .pay(race::request("mixed-validated", "3333333333", 150_000))
        .await;
    assert_eq!(state(&validated), pb::PaymentState::Succeeded);
    let products = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: pb::Provider::Interswitch as i32,
            biller_id: "901".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert!(!products.is_empty());

    assert_eq!(
        payment_rows(&db, "mixed-1").await,
        [(paid.payment_id.clone(), "Succeeded".to_owned())]
    );
    let in_postgres = postgres_keys(&db).await;
    let in_redis = redis_keys(&redis);
    for kind in ["token", "catalog", "lease"] {
        assert!(
            has_kind(&in_redis, kind),
            "{kind} not in Redis: {in_redis:?}"
        );
        assert!(
            !has_kind(&in_postgres, kind),
            "{kind} in PostgreSQL: {in_postgres:?}"
        );
    }
    for kind in ["payment", "seq", "store"] {
        assert!(
            has_kind(&in_postgres, kind),
            "{kind} not in PostgreSQL: {in_postgres:?}"
        );
        assert!(!has_kind(&in_redis, kind), "{kind} in Redis: {in_redis:?}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_and_redis_url_together_make_a_mixed_gateway() {
    let db = TestDatabase::create().await;
    let redis = RedisServer::start();
    let sim = Spawned::simulator();
    let redis_url = redis.url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let first = Spawned::gateway_with(&sim, &env);
    let request = race::request("mixed-2", "3333333333", 150_000);
    let paid = race::client(&first.addr)
        .await
        .create_payment(request.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    let token_paid = race::client(&first.addr)
        .await
        .create_payment(interintel_request("mixed-3"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(token_paid.state, pb::PaymentState::Succeeded as i32);
    drop(first);

    // A new process over the same two stores answers the replay from PostgreSQL.
    let second = Spawned::gateway_with(&sim, &env);
    let replay = race::client(&second.addr)
        .await
        .create_payment(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        (&replay.payment_id, &replay.provider_reference, replay.state),
        (&paid.payment_id, &paid.provider_reference, paid.state)
    );
    let calls = race::sim_calls(&sim).await;
    assert_eq!(calls["interswitch"]["pay"].as_u64(), Some(1), "{calls}");

    assert_eq!(
        payment_rows(&db, "mixed-2").await,
        [(paid.payment_id.clone(), "Succeeded".to_owned())]
    );
    assert_eq!(payment_rows(&db, "mixed-3").await.len(), 1);
    let in_postgres = postgres_keys(&db).await;
    let in_redis = redis_keys(&redis);
    assert!(has_kind(&in_redis, "token"), "{in_redis:?}");
    assert!(!has_kind(&in_postgres, "token"), "{in_postgres:?}");
    assert!(!has_kind(&in_postgres, "lease"), "{in_postgres:?}");
    for kind in ["payment", "store"] {
        assert!(has_kind(&in_postgres, kind), "{in_postgres:?}");
        assert!(!has_kind(&in_redis, kind), "{in_redis:?}");
    }
}
