//! The Redis store on a real 3-master Redis Cluster (started here by pid, or the one at
//! `REDIS_CLUSTER_URLS`): the store contract, the cluster-only behaviour (durability and
//! `WAIT` read on every primary, the identity's per-slot copies), the 500-duplicate race over
//! two gateway processes (one provider call), and one shard losing its data (its claims
//! refused with STORE_DATA_LOST, never a second payment, until `store recover`).

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{
        contract, identity, keys, redis::RedisStore, slots, Guard, GuardCopies, GuardedWrite, Store,
    },
};
use common::{process::Spawned, redis::RedisCluster, *};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

fn cluster_store(urls: &str) -> RedisStore {
    RedisStore::cluster(urls, Duration::from_secs(2), Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn redis_cluster_store_passes_the_store_contract() {
    let own = std::env::var("REDIS_CLUSTER_URLS")
        .is_err()
        .then(RedisCluster::start);
    let urls = own
        .as_ref()
        .map(RedisCluster::urls)
        .unwrap_or_else(|| std::env::var("REDIS_CLUSTER_URLS").unwrap());
    let store = cluster_store(&urls);
    contract::run(&store).await;

    // Settings are read on every primary, each named.
    let nodes = store.durability().await.unwrap();
    if let Some(cluster) = &own {
        assert_eq!(nodes.len(), cluster.ports.len(), "{nodes:?}");
        for d in &nodes {
            assert_eq!(d.appendonly.as_deref(), Some("yes"), "{d:?}");
            assert_eq!(d.role.as_deref(), Some("master"), "{d:?}");
            assert!(d
                .node
                .as_deref()
                .is_some_and(|n| n.starts_with("127.0.0.1:")));
        }
    }
    // What the claim relies on, asked of Redis itself: each identity copy is in its slot.
    if let Some(cluster) = &own {
        for slot in [0, 1, 5_460, 5_461, 10_922, 16_383] {
            let copy = slots::guard_copy(&keys::identity(), slot);
            let answer = cluster.cli(cluster.ports[0], &["CLUSTER", "KEYSLOT", &copy]);
            assert_eq!(answer.trim(), slot.to_string(), "{copy}");
        }
    }
    // WAIT goes to every primary; these have no replica, so nothing is acknowledged.
    store.set("wait-probe", b"x", None).await.unwrap();
    if own.is_some() {
        assert_eq!(
            store
                .wait_for_replicas(1, Duration::from_millis(100))
                .await
                .unwrap(),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_one_provider_call_across_two_replicas_on_a_cluster() {
    let own = std::env::var("REDIS_CLUSTER_URLS")
        .is_err()
        .then(RedisCluster::start);
    let urls = own
        .as_ref()
        .map(RedisCluster::urls)
        .unwrap_or_else(|| std::env::var("REDIS_CLUSTER_URLS").unwrap());
    let sim = Spawned::simulator();
    // Each sandbox gateway initialises the store at start (a no-op for the second).
    let a = Spawned::gateway_with(&sim, &[("REDIS_CLUSTER_URLS", &urls)]);
    let b = Spawned::gateway_with(&sim, &[("REDIS_CLUSTER_URLS", &urls)]);
    let request_id = format!("cluster-race-{}", uuid::Uuid::new_v4().simple());
    common::race::one_request_id_one_provider_call(&sim, &a, &b, &request_id).await;
}

async fn payment_health(gw: &TestGateway) -> i32 {
    HealthClient::new(gw.channel.clone())
        .check(HealthCheckRequest {
            service: "billpay.v1.PaymentService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn wait_for_payment_health(gw: &TestGateway, want: ServingStatus) {
    for _ in 0..100 {
        if payment_health(gw).await == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("payment service health never became {want:?}");
}

/// A key (of the contract's kind, `billpay:v1:payment:...`) owned by the master at `port`,
/// or by another one.
fn payment_key_on(cluster: &RedisCluster, port: u16, on: bool) -> String {
    (0..)
        .map(|i| keys::payment(&format!("probe-{i}")))
        .find(|key| (cluster.owner_of(key) == port) == on)
        .unwrap()
}

#[tokio::test]
async fn a_shard_that_lost_its_data_refuses_claims_until_store_recover() {
    // Always its own cluster: one master is flushed.
    let cluster = RedisCluster::start();
    let store: Arc<dyn Store> = Arc::new(cluster_store(&cluster.urls()));
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let seeded = identity::init(store.as_ref(), now)
        .await
        .unwrap()
        .expect("a new store is initialised");
    assert_eq!(
        store
            .read_guard(&keys::identity(), GuardCopies::Every)
            .await
            .unwrap(),
        Guard::Held(seeded.identity.clone().into_bytes()),
        "every slot has its copy"
    );
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store.clone(),
        PaymentSettings::default(),
    )
    .await;
    let first = gw
        .pay(payment_request("shard-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&first), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);

    // The shard holding the first payment's record loses every key (its identity copies with
    // it), as a restart without persistence would; the other two keep theirs.
    let lost = cluster.owner_of(&keys::payment(&first.payment_id));
    cluster.flush_node(lost);

    // The claim's own slot decides, atomically: a claim on the lost shard is refused, one on
    // a surviving shard is written (the gateway refuses both, below, from its health check).
    let identity = seeded.identity.as_bytes();
    let on_lost = payment_key_on(&cluster, lost, true);
    let elsewhere = payment_key_on(&cluster, lost, false);
    assert_eq!(
        store
            .set_if_absent_guarded(&keys::identity(), identity, &on_lost, b"x", None)
            .await
            .unwrap(),
        GuardedWrite::GuardFailed
    );
    assert_eq!(
        store
            .set_if_absent_guarded(&keys::identity(), identity, &elsewhere, b"x", None)
            .await
            .unwrap(),
        GuardedWrite::Written
    );
    store.delete(&elsewhere).await.unwrap();
    assert_eq!(
        store
            .read_guard(&keys::identity(), GuardCopies::OnePerRange)
            .await
            .unwrap(),
        Guard::Broken,
        "the check reads every primary's copies"
    );
    let e = identity::init(store.as_ref(), now).await.unwrap_err();
    assert!(e.0.contains("store recover"), "{e}");

    // The client retries its request: the lost shard no longer knows it, and it must not pay
    // again. Any other payment is refused as well until an operator recovers.
    let retried = gw
        .payments()
        .create_payment(payment_request("shard-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&retried, Code::Unavailable, "STORE_DATA_LOST");
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    let fresh = gw
        .payments()
        .create_payment(payment_request("shard-2", "90101", "0000000000", 2_000))
        .await
        .unwrap_err();
    assert_error(&fresh, Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(sims.calls.get("interswitch", "pay"), 1, "no second payment");

    // The operator's recovery command, as shipped, on the cluster.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .args(["store", "recover"])
        .env_remove("REDIS_URL")
        .env("REDIS_CLUSTER_URLS", cluster.urls())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store recover");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {output:?}");
    let recovered = stdout
        .lines()
        .find_map(|l| l.strip_prefix("store identity: "))
        .expect("the new identity is printed")
        .to_owned();
    assert_eq!(
        store
            .read_guard(&keys::identity(), GuardCopies::Every)
            .await
            .unwrap(),
        Guard::Held(recovered.into_bytes()),
        "every copy replaced, the lost shard's too"
    );

    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let after = gw
        .pay(payment_request("shard-3", "90101", "0000000000", 3_000))
        .await;
    assert_eq!(state(&after), pb::PaymentState::Succeeded);
    let number = |p: &pb::Payment| p.provider_reference.parse::<u64>().unwrap();
    assert!(
        number(&after) > number(&first),
        "new reference {} above the earlier {}",
        after.provider_reference,
        first.provider_reference
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    gw.stop().await;
}
