//! The durability posture of a real PostgreSQL: the default (fsync on, synchronous_commit on)
//! is accepted for payments with real providers; `synchronous_commit = off` for the gateway's
//! sessions is refused with STORE_POSTURE_REFUSED and nothing is sent, unless `[store]
//! accept_loss_window` names that window.

mod common;

use std::sync::Arc;

use billpay_gateway::{
    gateway::{PaymentSettings, StorePolicy},
    pb,
    sandbox::{self, Simulators},
    store::{identity, posture::LossWindow, Store},
};
use common::{postgres::TestDatabase, *};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A gateway with real (not sandbox) provider clients pointed at the simulators, over a fresh
/// store on `db` (new connections: they read the database's current defaults).
async fn gateway(sims: &Simulators, db: &TestDatabase, policy: StorePolicy) -> TestGateway {
    let store: Arc<dyn Store> = Arc::new(db.migrated_store().await);
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(store.as_ref(), now, &Default::default())
        .await
        .expect("store initialised");
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store,
        PaymentSettings::default(),
    )
    .await;
    gw.gateway.set_store_policy(policy);
    gw
}

#[tokio::test]
async fn synchronous_commit_off_is_refused_for_payments_unless_opted_in() {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let db = TestDatabase::create().await;

    let gw = gateway(&sims, &db, StorePolicy::default()).await;
    let paid = gw
        .pay(payment_request(
            "pg-posture-0",
            "90101",
            "0000000000",
            1_000,
        ))
        .await;
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    let posture = gw.gateway.last_store_posture().expect("read");
    assert_eq!(posture.name, "sync-commit");
    assert!(
        posture.summary.contains("synchronous_standby_names ''"),
        "{}",
        posture.summary
    );
    gw.stop().await;

    db.client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let gw = gateway(&sims, &db, StorePolicy::default()).await;
    assert_eq!(payment_health(&gw).await, ServingStatus::NotServing as i32);
    let status = gw
        .payments()
        .create_payment(payment_request(
            "pg-posture-1",
            "90101",
            "0000000000",
            1_000,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_POSTURE_REFUSED");
    assert_eq!(
        error_meta(&status, "posture").as_deref(),
        Some("synchronous-commit-off")
    );
    assert!(
        status
            .message()
            .contains("accept_loss_window = \"synchronous-commit-off\""),
        "{}",
        status.message()
    );
    gw.stop().await;
    assert_eq!(sims.calls.get("interswitch", "pay"), 1, "nothing more sent");

    let opted_in = StorePolicy {
        accept_loss_window: Some(LossWindow::SynchronousCommitOff),
        ..StorePolicy::default()
    };
    let gw = gateway(&sims, &db, opted_in).await;
    let paid = gw
        .pay(payment_request(
            "pg-posture-2",
            "90101",
            "0000000000",
            1_000,
        ))
        .await;
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    gw.stop().await;
}
