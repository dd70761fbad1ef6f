//! The store's durability posture with a real redis-server: a store that can lose acknowledged
//! writes (`appendfsync everysec` on Redis 7.0, no persistence, `CONFIG` renamed) is refused
//! for payments with STORE_POSTURE_REFUSED and nothing is sent; an operator's opt-in
//! (`accept_loss_window`) accepts exactly the window it names and is exported as a metric; a
//! posture changed while running (`CONFIG SET appendfsync everysec`) is refused within the
//! recheck; replicas acknowledging every claim (`min_replica_acks`) are accepted; and a host
//! crash simulated by cutting the append-only file's tail shows what the
//! default posture protects: nothing it acknowledged can be in the cut.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::{PaymentSettings, StorePolicy},
    pb,
    sandbox::{self, Simulators},
    store::{identity, posture::LossWindow, redis::RedisStore, Store},
};
use common::{redis::RedisServer, *};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::new(
            &redis.url(),
            Duration::from_millis(2_000),
            Duration::from_millis(1_000),
        )
        .unwrap(),
    )
}

/// A gateway over an initialised Redis store with `policy`.
async fn gateway(sims: &Simulators, redis: &RedisServer, policy: StorePolicy) -> TestGateway {
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(redis_store(redis).as_ref(), now, &Default::default())
        .await
        .expect("store initialised");
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        redis_store(redis),
        PaymentSettings::default(),
    )
    .await;
    gw.gateway.set_store_policy(policy);
    gw
}

async fn simulators() -> Simulators {
    Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

fn request(id: &str) -> pb::CreatePaymentRequest {
    payment_request(id, "90101", "0000000000", 1_000)
}

/// Asserts `status` is a posture refusal naming `posture`.
fn assert_refused(status: &tonic::Status, posture: &str) {
    assert_error(status, Code::Unavailable, "STORE_POSTURE_REFUSED");
    assert_eq!(
        error_meta(status, "posture").as_deref(),
        Some(posture),
        "{status:?}"
    );
    let ago = error_meta(status, "posture_last_read_ago_ms").expect("last read age");
    assert!(ago.parse::<u64>().is_ok(), "{ago}");
}

/// CreatePayment as a client does after a store outage: retried (50 times at most) while the
/// store is unavailable (a connection broken by the restart).
async fn create_retrying(gw: &TestGateway, id: &str) -> Result<pb::Payment, tonic::Status> {
    for _ in 0..50 {
        match gw.payments().create_payment(request(id)).await {
            Err(s) if error_meta(&s, "posture").is_none() && s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other.map(|r| r.into_inner().payment.expect("a payment")),
        }
    }
    panic!("{id}: the store stayed unavailable");
}

fn refusals() -> f64 {
    metric_value("billpay_store_posture_refusals_total")
}

/// The value of the first metric line that starts with `prefix` (0 when absent).
fn metric_value(prefix: &str) -> f64 {
    billpay_gateway::metrics::global()
        .render()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_default_posture_refuses_stores_that_can_lose_acknowledged_writes() {
    let sims = simulators().await;
    let everysec = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let forgetful = RedisServer::start_forgetful();
    let snapshots = RedisServer::start_with_args(&["--appendonly", "no", "--save", "3600 1"]);
    let no_config = RedisServer::start_with_args(&["--rename-command", "CONFIG", ""]);
    for (redis, posture) in [
        (&everysec, "everysec"),
        (&forgetful, "none"),
        (&snapshots, "snapshot"),
        (&no_config, "unverified"),
    ] {
        let before = refusals();
        let gw = gateway(&sims, redis, StorePolicy::default()).await;
        assert_eq!(
            payment_health(&gw).await,
            ServingStatus::NotServing as i32,
            "{posture}"
        );
        let status = gw
            .payments()
            .create_payment(request(&format!("refused-{posture}")))
            .await
            .unwrap_err();
        assert_refused(&status, posture);
        assert!(
            status
                .message()
                .contains(&format!("accept_loss_window = \"{posture}\"")),
            "{}",
            status.message()
        );
        assert!(refusals() >= before + 1.0, "refusal counted ({posture})");
        gw.stop().await;
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 0, "nothing sent");
    // The default test server (appendfsync always) is accepted.
    let always = RedisServer::start();
    let gw = gateway(&sims, &always, StorePolicy::default()).await;
    let paid = gw.pay(request("accepted-always")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    gw.stop().await;
}

#[tokio::test]
async fn an_opt_in_accepts_only_the_window_it_names_and_is_exported() {
    let sims = simulators().await;
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    // Naming another window accepts nothing.
    let wrong = StorePolicy {
        accept_loss_window: Some(LossWindow::Snapshot),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &redis, wrong).await;
    let status = gw
        .payments()
        .create_payment(request("opt-in-wrong"))
        .await
        .unwrap_err();
    assert_refused(&status, "everysec");
    gw.stop().await;

    let everysec = StorePolicy {
        accept_loss_window: Some(LossWindow::Everysec),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &redis, everysec).await;
    let paid = gw.pay(request("opt-in-1")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    assert_eq!(
        metric_value(r#"billpay_store_posture{posture="everysec",accepted="opt_in"}"#),
        1.0,
        "{}",
        billpay_gateway::metrics::global().render()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_posture_changed_while_running_is_refused_within_the_recheck() {
    let sims = simulators().await;
    let redis = RedisServer::start();
    let policy = StorePolicy {
        posture_recheck: Duration::from_millis(200),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &redis, policy).await;
    let paid = gw.pay(request("change-0")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);

    assert!(redis
        .cli(&["CONFIG", "SET", "appendfsync", "everysec"])
        .contains("OK"));
    // Noticed at the next read (every 200 ms here): polled, no timing asserted beyond 20 s.
    let mut paid_meanwhile = 0;
    let mut refused = None;
    for i in 0..200 {
        match gw
            .payments()
            .create_payment(request(&format!("change-{}", i + 1)))
            .await
        {
            Ok(answer) => {
                let payment = answer.into_inner().payment.expect("a payment");
                if state(&payment) == pb::PaymentState::Failed {
                    // Refused between its claim and its call (the re-read came in between):
                    // recorded as never sent.
                    assert!(
                        payment.provider_message.starts_with("not sent"),
                        "{payment:?}"
                    );
                } else {
                    paid_meanwhile += 1;
                }
            }
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = refused.expect("the changed posture was refused");
    assert_refused(&status, "everysec");
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    // Every payment made before the refusal was sent once; the refused one was not.
    assert_eq!(sims.calls.get("interswitch", "pay"), 1 + paid_meanwhile);

    // Set back: accepted again at the next read.
    assert!(redis
        .cli(&["CONFIG", "SET", "appendfsync", "always"])
        .contains("OK"));
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let again = gw.pay(request("change-back")).await;
    assert_eq!(state(&again), pb::PaymentState::Succeeded);
    gw.stop().await;
}

#[tokio::test]
async fn a_host_crash_cutting_the_aof_tail_loses_nothing_the_default_posture_acknowledged() {
    let sims = simulators().await;

    // appendfsync always (accepted): Redis killed -9 and restarted keeps every payment, and
    // retries replay them.
    let redis = RedisServer::start();
    let gw = gateway(&sims, &redis, StorePolicy::default()).await;
    let mut paid = Vec::new();
    for i in 0..5 {
        paid.push(gw.pay(request(&format!("always-{i}"))).await);
    }
    redis.kill();
    redis.restart();
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    for (i, p) in paid.iter().enumerate() {
        let replay = create_retrying(&gw, &format!("always-{i}")).await.unwrap();
        assert_eq!(&replay, p, "replayed, not paid again");
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 5);
    gw.stop().await;

    // appendfsync everysec (refused by default): nothing is acknowledged, so a crash that cuts
    // the AOF's tail can take nothing a client was told.
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let gw = gateway(&sims, &redis, StorePolicy::default()).await;
    let ids: Vec<String> = (0..10).map(|i| format!("everysec-{i}")).collect();
    for id in &ids {
        let status = gw.payments().create_payment(request(id)).await.unwrap_err();
        assert_refused(&status, "everysec");
    }
    redis.kill();
    let len = redis.aof_len();
    redis.cut_aof_to(len / 2);
    redis.restart();
    for id in &ids {
        let status = create_retrying(&gw, id).await.unwrap_err();
        assert_refused(&status, "everysec");
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 5, "nothing more sent");
    gw.stop().await;
}

#[tokio::test]
async fn with_the_everysec_opt_in_a_host_crash_takes_back_acknowledged_writes_and_raises_the_alarm()
{
    // What `accept_loss_window = "everysec"` risks, shown: a payment acknowledged and sent,
    // then the AOF's tail (its writes) lost in a host crash. The store forgets the payment the
    // provider was paid for; the default posture refuses this store for that reason.
    let sims = simulators().await;
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let policy = StorePolicy {
        accept_loss_window: Some(LossWindow::Everysec),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &redis, policy).await;
    let kept = gw.pay(request("tail-kept")).await;
    assert_eq!(state(&kept), pb::PaymentState::Succeeded);
    let before_tail = redis.aof_len();
    let lost = gw.pay(request("tail-lost")).await;
    assert_eq!(state(&lost), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    // The provider's own log (what scripts/chaos.sh counts): both advices, one reference each.
    let log: serde_json::Value = reqwest::get(format!(
        "{}/interswitch/_sandbox/advices",
        sims.base_url().trim_end_matches('/')
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let references: Vec<&str> = log["advices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["requestReference"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        [
            kept.provider_reference.as_str(),
            lost.provider_reference.as_str()
        ]
    );
    redis.kill();
    redis.cut_aof_to(before_tail);
    redis.restart();
    let store = redis_store(&redis);
    let key = |p: &pb::Payment| billpay_gateway::store::keys::payment(&p.payment_id);
    assert!(store.get(&key(&kept)).await.unwrap().is_some(), "kept");
    assert!(
        store.get(&key(&lost)).await.unwrap().is_none(),
        "the acknowledged payment is gone with the tail"
    );
    // The gateway noticed: its next reference would be one the provider already saw (the
    // counter went back with the tail), so it raises the store-loss alarm instead of sending.
    let next = loop {
        match gw.payments().create_payment(request("tail-next")).await {
            Err(s) if s.message().contains("store unavailable") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => break other,
        }
    };
    assert_error(&next.unwrap_err(), Code::Unavailable, "STORE_DATA_LOST");
    // The lost payment's retry is not paid again either.
    let retry = gw.payments().create_payment(request("tail-lost")).await;
    assert_error(&retry.unwrap_err(), Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(
        sims.calls.get("interswitch", "pay"),
        2,
        "no reference reused"
    );
    gw.stop().await;
}

#[tokio::test]
async fn everysec_with_a_replica_acknowledging_every_claim_is_accepted() {
    let sims = simulators().await;
    let primary = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let port = primary.port.to_string();
    let _replica = RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &port]);
    for _ in 0..200 {
        if primary
            .cli(&["INFO", "replication"])
            .contains("state=online")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replicas = StorePolicy {
        min_replica_acks: 1,
        // Generous: the replica shares two busy cores with every other test.
        replica_ack_timeout: Duration::from_secs(5),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &primary, replicas).await;
    let paid = gw.pay(request("replicated-1")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    assert_eq!(
        gw.gateway.last_store_posture().map(|p| p.name).as_deref(),
        Some("replicas")
    );
    gw.stop().await;
}
