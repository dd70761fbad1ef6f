//! Gateways over the PostgreSQL journal, as shipped (`billpay-gateway` processes with
//! `DATABASE_URL`, one database of their own per test, see `common/postgres.rs`): 500
//! concurrent duplicates of one CreatePayment over two replicas make one provider call, and a
//! payment survives a restart of the gateway: GetPayment still answers it, its replay answers
//! the first attempt, its row is there for SQL, and `store recover` runs on it.

#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/process.rs"]
mod process;
#[path = "common/race.rs"]
mod race;

use billpay_gateway::pb;
use postgres::TestDatabase;
use process::Spawned;

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
    assert!(init.contains("migration 1 applied"), "{init}");
    assert!(init.contains("store identity:"), "{init}");
    let again = store_command(&db, "init");
    assert!(again.contains("already initialised"), "{again}");
    let migrate = store_command(&db, "migrate");
    assert!(!migrate.contains("applied\n"), "{migrate}");
    let current = billpay_gateway::store::postgres::latest_version();
    assert!(
        migrate.contains(&format!("schema version: {current}")),
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
