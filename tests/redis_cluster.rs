//! The Redis store on a real 3-master Redis Cluster (started here by pid, or the one at
//! `REDIS_CLUSTER_URLS`): the store contract, the cluster-only behaviour (durability and
//! `WAIT` read on every primary, the identity's per-slot copies), the 500-duplicate race over
//! two gateway processes (one provider call), and one shard losing its data (its claims
//! refused with STORE_DATA_LOST, never a second payment, until `store recover`; a lost
//! reference counter refuses payments instead of reusing references; a lost reconciliation
//! schedule and journal index are rebuilt by `store recover` from the surviving records).

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    domain::{
        payment::PaymentKind, Currency, Money, PaymentOrder, PaymentRecord, PaymentSecrets,
        PaymentState, ProviderId,
    },
    error::GatewayError,
    gateway::{registry, CatalogSettings, Gateway, PaymentSettings},
    pb,
    sandbox::{self, Simulators},
    store::{
        contract, identity, keys, redis::RedisStore, slots, Guard, GuardCopies, GuardedWrite, Store,
    },
};
use common::{process::Spawned, redis::RedisCluster, *};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

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
    let seeded = identity::init(store.as_ref(), now, &Default::default())
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
    let e = identity::init(store.as_ref(), now, &Default::default())
        .await
        .unwrap_err();
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
        .env_remove("DATABASE_URL")
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

/// `billpay-gateway store recover` on `cluster`, as shipped; its standard output.
fn store_recover(cluster: &RedisCluster, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", "recover"])
        .args(args)
        .env_remove("REDIS_URL")
        .env("REDIS_CLUSTER_URLS", cluster.urls())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store recover");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout} {output:?}");
    stdout
}

/// A request id whose payment record lives on a master other than those in `avoid`.
fn request_id_off(cluster: &RedisCluster, prefix: &str, avoid: &[u16]) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| {
            let key = keys::payment(&PaymentRecord::id_for_request(id));
            !avoid.contains(&cluster.owner_of(&key))
        })
        .unwrap()
}

#[tokio::test]
async fn a_shard_that_lost_a_reference_counter_refuses_payments_until_store_recover() {
    let cluster = RedisCluster::start();
    let store: Arc<dyn Store> = Arc::new(cluster_store(&cluster.urls()));
    let clock = billpay_gateway::gateway::Clock::default();
    identity::init(store.as_ref(), clock.now_ms(), &Default::default())
        .await
        .unwrap()
        .expect("a new store is initialised");
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    // The gateway alone, without the server's once-a-second health check: what refuses the
    // payment below is the claim's own guarded increment, not an earlier periodic check.
    let registry = registry::build(sandbox::providers_config(&sims.base_url()), &store).unwrap();
    let gateway = Gateway::new(
        registry,
        store.clone(),
        PaymentSettings::default(),
        CatalogSettings::default(),
        false,
    );
    let pay = |request_id: String| {
        let gateway = gateway.clone();
        async move {
            let order = PaymentOrder {
                biller_id: "901".into(),
                ..PaymentOrder::new(
                    ProviderId::Interswitch,
                    PaymentKind::Bill,
                    "90101",
                    "0000000000",
                    Money::new(Currency::Ngn, 1_000),
                )
            };
            gateway
                .create_payment(request_id, order, PaymentSecrets::default(), None, None)
                .await
        }
    };
    // The master holding Interswitch's reference counter will lose its data; the payments'
    // records live on other masters, whose identity copies survive.
    let counter = keys::reference_sequence(ProviderId::Interswitch.name());
    let lost = cluster.owner_of(&counter);
    let first = pay(request_id_off(&cluster, "counter-1", &[lost]))
        .await
        .unwrap();
    assert_eq!(first.state, PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    let used: u64 = String::from_utf8(store.get(&counter).await.unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let request_id = request_id_off(&cluster, "counter-2", &[lost]);
    cluster.flush_node(lost);

    // Unguarded, the counter would restart at its clock seed, far below the references used,
    // and the payment would be sent with one of them.
    let refused = pay(request_id.clone()).await.unwrap_err();
    assert!(
        matches!(refused, GatewayError::StoreDataLost),
        "{refused:?}"
    );
    assert_eq!(store.get(&counter).await.unwrap(), None, "not restarted");
    assert_eq!(
        store
            .get(&keys::payment(&PaymentRecord::id_for_request(&request_id)))
            .await
            .unwrap(),
        None,
        "not claimed"
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 1, "nothing sent");

    // The operator recovers with no floor of their own. Within a second of `init` the clock
    // floor alone would hand out `used` again; the surviving record's sequence number puts the
    // counter above it. The refused request, retried, pays once with a reference never used.
    let stdout = store_recover(&cluster, &[]);
    let raised: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("reference counter interswitch: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no interswitch counter in {stdout}"));
    assert!(raised > used, "counter {raised} above the used {used}");
    let after = pay(request_id).await.unwrap();
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    let number = |reference: &str| reference.parse::<u64>().unwrap();
    assert!(
        number(&after.provider_reference) > number(&first.provider_reference),
        "new reference {} above the earlier {}",
        after.provider_reference,
        first.provider_reference
    );
}

/// Every member of the sorted set `set`, whatever its score.
async fn members(store: &dyn Store, set: &str) -> Vec<String> {
    let mut all = store
        .range(set, i64::MIN, i64::MAX, 0, 1_000)
        .await
        .unwrap();
    all.sort();
    all
}

#[tokio::test]
async fn store_recover_puts_unfinished_payments_back_on_a_lost_schedule_and_index() {
    let cluster = RedisCluster::start();
    let store: Arc<dyn Store> = Arc::new(cluster_store(&cluster.urls()));
    identity::init(
        store.as_ref(),
        billpay_gateway::gateway::Clock::default().now_ms(),
        &Default::default(),
    )
    .await
    .unwrap()
    .expect("a new store is initialised");
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    // A short lease: on a loaded machine (this binary starts four clusters at once) a store
    // command can time out after the reconciler leased an entry; the entry then comes due
    // again when the lease ends, and the wait below covers a few leases.
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store.clone(),
        PaymentSettings {
            in_flight_expiry_ms: 2_000,
            ..PaymentSettings::default()
        },
    )
    .await;
    gw.gateway.set_operator_enabled(true);

    // Two payments the provider never settles and one that succeeded, with their records on a
    // master that holds neither the schedule nor the journal index.
    let schedule = keys::reconcile_schedule();
    let index = keys::journal_index();
    let lost = [cluster.owner_of(&schedule), cluster.owner_of(&index)];
    let mut open = Vec::new();
    for n in 0..2 {
        let request_id = request_id_off(&cluster, &format!("orphan-{n}"), &lost);
        let p = gw
            .pay(payment_request(&request_id, "90101", "1111111112", 1_000))
            .await;
        assert_eq!(state(&p), pb::PaymentState::Pending);
        open.push(p.payment_id);
    }
    open.sort();
    let request_id = request_id_off(&cluster, "settled", &lost);
    let settled = gw
        .pay(payment_request(&request_id, "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    let mut all = open.clone();
    all.push(settled.payment_id.clone());
    all.sort();
    assert_eq!(members(store.as_ref(), &schedule).await, open);
    assert_eq!(members(store.as_ref(), &index).await, all);

    // The master(s) holding the schedule and the index lose their data; the records survive.
    for port in lost {
        cluster.flush_node(port);
    }
    for id in &all {
        assert!(store.get(&keys::payment(id)).await.unwrap().is_some());
    }
    assert!(members(store.as_ref(), &schedule).await.is_empty());
    let listed = |gw: &TestGateway| {
        let mut operator =
            pb::operator_service_client::OperatorServiceClient::new(gw.channel.clone());
        async move {
            let mut ids: Vec<String> = operator
                .list_journal_payments(pb::ListJournalPaymentsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .payments
                .into_iter()
                .filter_map(|p| p.payment.map(|p| p.payment_id))
                .collect();
            ids.sort();
            ids
        }
    };
    assert!(
        listed(&gw).await.is_empty(),
        "orphaned: operators cannot see them"
    );

    // Recovery scans every primary for payment records and puts them back.
    let stdout = store_recover(&cluster, &[]);
    assert!(
        stdout.contains("payment records: 3 found, re-indexed 3, rescheduled 2"),
        "{stdout}"
    );
    assert_eq!(members(store.as_ref(), &schedule).await, open);
    assert_eq!(members(store.as_ref(), &index).await, all);
    assert_eq!(listed(&gw).await, all);
    // Each at its creation time: a listing by creation time finds them as before.
    for id in &all {
        let record: PaymentRecord =
            serde_json::from_slice(&store.get(&keys::payment(id)).await.unwrap().unwrap()).unwrap();
        let at = record.created_at_ms;
        assert_eq!(
            store.range(&index, at, at + 1, 0, 10).await.unwrap(),
            vec![id.clone()]
        );
    }

    // And the reconciler takes them up again: each gets a status check (they were due at once).
    let queried = sims.calls.get("interswitch", "query_payment");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    for _ in 0..300 {
        if sims.calls.get("interswitch", "query_payment") >= queried + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sims.calls.get("interswitch", "query_payment") >= queried + 2,
        "both orphans checked"
    );
    gw.stop().await;
}
