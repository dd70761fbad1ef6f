//! Gateways over the PostgreSQL journal, as shipped (`billpay-gateway` processes with
//! `DATABASE_URL`, one database of their own per test, see `common/postgres.rs`): 500
//! concurrent duplicates of one CreatePayment over two replicas make one provider call; a
//! payment survives a restart of the gateway: GetPayment still answers it, its replay answers
//! the first attempt, its row is there for SQL, and `store recover` runs on it; and two
//! gateways reconciling one database never ask the provider about one payment twice at once.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use billpay_gateway::{
    config::ProvidersConfig,
    domain::{
        payment::{CallPhase, PaymentKind},
        Currency, Money, PaymentOrder, PaymentRecord, PaymentState, ProviderId,
    },
    gateway::PaymentSettings,
    pb,
    providers::interswitch::auth::SignatureMethod,
    store::{keys, postgres::latest_version, Store},
};
use common::{interswitch_config, postgres::TestDatabase, process::Spawned, race, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_one_provider_call_across_two_replicas_on_postgres() {
    let db = TestDatabase::create().await;
    let sim = Spawned::simulator();
    // Sandbox gateways apply the schema and write the identity themselves, both at once here.
    let a = Spawned::gateway_with(&sim, &[("DATABASE_URL", &db.url)]);
    let b = Spawned::gateway_with(&sim, &[("DATABASE_URL", &db.url)]);
    race::one_request_id_one_provider_call(&sim, &a, &b, "pg-race-1").await;
}

/// `billpay-gateway store ACTION` with `DATABASE_URL`; its stdout.
fn store_command(db: &TestDatabase, action: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .args(["store", action])
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_outlives_a_gateway_restart_and_its_row_is_in_postgres() {
    let db = TestDatabase::create().await;
    let init = store_command(&db, "init");
    for version in 1..=latest_version() {
        assert!(
            init.contains(&format!("migration {version} applied")),
            "{init}"
        );
    }
    assert!(init.contains("store identity:"), "{init}");
    let again = store_command(&db, "init");
    assert!(again.contains("already initialised"), "{again}");
    let migrate = store_command(&db, "migrate");
    assert!(!migrate.contains("applied\n"), "{migrate}");
    assert!(
        migrate.contains(&format!("schema version: {}", latest_version())),
        "{migrate}"
    );

    let sim = Spawned::simulator();
    let first = Spawned::gateway_with(&sim, &[("DATABASE_URL", &db.url)]);
    // Free text that looks like SQL travels in the record verbatim.
    let description = "'; DROP TABLE billpay_kv; -- \" OR 1=1";
    let request = pb::CreatePaymentRequest {
        description: description.into(),
        ..race::request("pg-restart-1", "3333333333", 150_000)
    };
    let paid = race::client(&first.addr)
        .await
        .create_payment(request.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    drop(first);

    let second = Spawned::gateway_with(&sim, &[("DATABASE_URL", &db.url)]);
    let mut client = race::client(&second.addr).await;
    let got = client
        .get_payment(pb::GetPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        (&got.payment_id, &got.provider_reference, got.state),
        (&paid.payment_id, &paid.provider_reference, paid.state)
    );
    let replay = client
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

    // The row, as psql shows it.
    let row = db
        .client()
        .await
        .query_one(
            "SELECT request_id, state, provider, record -> 'order' ->> 'description'
             FROM billpay_payments WHERE payment_id = $1",
            &[&paid.payment_id],
        )
        .await
        .unwrap();
    let (request_id, state, provider, stored): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    println!("row: {request_id} {state} {provider} {stored:?}");
    assert_eq!(request_id, "pg-restart-1");
    assert_eq!(state, "Succeeded");
    assert_eq!(provider, "Interswitch");
    assert_eq!(stored, description);

    // `store recover` on PostgreSQL: finds the record and writes a new identity, which the
    // running gateway adopts; the payment still answers.
    let recovered = store_command(&db, "recover");
    assert!(
        recovered.contains("payment records: 1 found"),
        "{recovered}"
    );
    let got = client
        .get_payment(pb::GetPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(got.state, paid.state);
}

/// What the status-query simulator saw: queries per provider reference and per replica, and
/// every query that arrived while another one for the same reference was still open.
#[derive(Default)]
struct QueryLog {
    open: HashSet<String>,
    queries: HashMap<String, u32>,
    by_replica: [u32; 2],
    overlaps: Vec<String>,
}

/// How many status queries of one payment answer "no transaction status yet" before one
/// answers SUCCESSFUL.
const UNANSWERED_QUERIES: u32 = 2;

/// An Interswitch transaction-status endpoint for replica `replica` (each replica has its own
/// address; all share one log) that holds every query open for a while, so a second query of
/// the same payment from the other replica would meet it. It answers the first
/// [`UNANSWERED_QUERIES`] queries of each reference without a transaction status and the next
/// one SUCCESSFUL. Its base URL.
async fn status_simulator(log: Arc<Mutex<QueryLog>>, replica: usize) -> String {
    use axum::{extract::Query, routing::get, Json, Router};
    let handler = move |Query(params): Query<HashMap<String, String>>| {
        let log = log.clone();
        async move {
            let reference = params.get("requestreference").cloned().unwrap_or_default();
            let asked = {
                let mut log = log.lock().unwrap();
                if !log.open.insert(reference.clone()) {
                    log.overlaps.push(reference.clone());
                }
                log.by_replica[replica] += 1;
                let asked = log.queries.entry(reference.clone()).or_default();
                *asked += 1;
                *asked
            };
            // Real time on purpose: the query stays open while the other replica works.
            tokio::time::sleep(Duration::from_millis(15)).await;
            log.lock().unwrap().open.remove(&reference);
            Json(if asked <= UNANSWERED_QUERIES {
                serde_json::json!({"ResponseCode": "90000"})
            } else {
                serde_json::json!({"ResponseCode": "90000",
                    "TransactionResponseCode": "90000",
                    "ResponseCodeGrouping": "SUCCESSFUL"})
            })
        }
    };
    let app = Router::new().route("/api/v2/quickteller/transactions", get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Leaves `count` PENDING Interswitch payments whose call returned without an outcome, all due
/// for reconciliation now; their ids and references.
async fn pending_payments(store: &dyn Store, count: usize) -> Vec<(String, String)> {
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let mut made = Vec::new();
    for i in 0..count {
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "90101",
            "0000000000",
            Money::new(Currency::Ngn, 10_000 + i as i64),
        );
        let reference = format!("1456{i:08}");
        let record = PaymentRecord {
            call: CallPhase::Returned,
            ..PaymentRecord::claimed(format!("pg-reconcile-{i}"), order, reference.clone(), now)
        };
        let id = record.payment_id.clone();
        store
            .set(
                &keys::payment(&id),
                &serde_json::to_vec(&record).unwrap(),
                None,
            )
            .await
            .unwrap();
        store
            .schedule(&keys::reconcile_schedule(), &id, now)
            .await
            .unwrap();
        made.push((id, reference));
    }
    made
}

/// Two gateways (each with its own connection pool, as two replicas have, and the reconciler
/// every server runs) reconcile 300 PENDING payments in one database at once, each polling
/// every 10 ms, 16 checks at a time. Every payment takes three status checks (two without
/// news, then SUCCESSFUL): the provider must see exactly three queries per payment, never two
/// of one payment open at once, and queries from both replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reconciling_replicas_never_check_one_payment_twice_at_once() {
    const PAYMENTS: usize = 300;
    let db = TestDatabase::create().await;
    let payments = pending_payments(&db.migrated_store().await, PAYMENTS).await;
    let log = Arc::new(Mutex::new(QueryLog::default()));
    let settings = PaymentSettings {
        reconcile_backoff_ms: vec![5; 10],
        reconcile_poll_ms: 10,
        ..PaymentSettings::default()
    };
    let mut replicas = Vec::new();
    for replica in 0..2 {
        let provider_url = status_simulator(log.clone(), replica).await;
        let store: Arc<dyn Store> = Arc::new(db.migrated_store().await);
        let gateway = TestGateway::start_with(
            ProvidersConfig {
                interswitch: Some(interswitch_config(
                    &provider_url,
                    SignatureMethod::Sha1,
                    5_000,
                )),
                ..Default::default()
            },
            store,
            settings.clone(),
        )
        .await;
        replicas.push(gateway);
    }

    // Until every payment is settled (the reconcilers' own pace; bounded so a hang fails).
    let mut settled = 0;
    for _ in 0..600 {
        settled = 0;
        for (id, _) in &payments {
            let record = replicas[0].gateway.load_payment(id).await.unwrap().unwrap();
            if record.state == PaymentState::Succeeded {
                settled += 1;
            }
        }
        if settled == PAYMENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled, PAYMENTS, "payments settled");
    // Read back through gRPC too, from the other replica: what callers see.
    let got = replicas[1].get(&payments[0].0).await;
    assert_eq!(got.state, pb::PaymentState::Succeeded as i32);
    for replica in replicas {
        replica.stop().await;
    }

    let log = log.lock().unwrap();
    println!("status queries per replica: {:?}", log.by_replica);
    assert!(
        log.overlaps.is_empty(),
        "queries that met an open query of their payment: {:?}",
        log.overlaps
    );
    let expected = UNANSWERED_QUERIES + 1;
    let wrong: Vec<_> = payments
        .iter()
        .filter(|(_, reference)| log.queries.get(reference) != Some(&expected))
        .map(|(_, reference)| (reference, log.queries.get(reference)))
        .collect();
    assert!(
        wrong.is_empty(),
        "payments not queried exactly {expected} times: {wrong:?}"
    );
    assert!(
        log.by_replica.iter().all(|n| *n > 0),
        "both replicas reconciled: {:?}",
        log.by_replica
    );
}
