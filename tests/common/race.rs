//! The cross-replica idempotency race, shared by the single-Redis and the Redis Cluster
//! tests: 500 concurrent CreatePayment calls with one request_id spread over two gateway
//! processes sharing one store and one standalone simulator. Every caller must end with the
//! same payment, and the provider must see exactly one payment call. Callers that arrive while
//! the call is in flight get ABORTED (REQUEST_IN_FLIGHT) and retry with the same request_id.
#![allow(dead_code)]

use std::{collections::BTreeMap, time::Duration};

use billpay_gateway::pb::{self, payment_service_client::PaymentServiceClient};
use tonic::{transport::Channel, Code};

use super::process::Spawned;

pub const CALLERS: usize = 500;

pub async fn client(addr: &str) -> PaymentServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    PaymentServiceClient::new(channel)
}

pub fn request(request_id: &str, customer: &str, kobo: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interswitch as i32,
        biller_id: "901".into(),
        product_id: "90101".into(),
        customer_id: customer.into(),
        amount: Some(pb::Money {
            currency_code: "NGN".into(),
            minor_units: kobo,
        }),
        ..pb::CreatePaymentRequest::default()
    }
}

pub async fn sim_calls(sim: &Spawned) -> serde_json::Value {
    reqwest::get(format!("http://{}/_sandbox/calls", sim.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs the race with `request_id` against gateways `a` and `b` and asserts its outcome: one
/// payment for every caller, one provider call, and a changed amount refused on both.
pub async fn one_request_id_one_provider_call(
    sim: &Spawned,
    a: &Spawned,
    b: &Spawned,
    request_id: &str,
) {
    let clients = [client(&a.addr).await, client(&b.addr).await];
    let pays_before = sim_calls(sim).await["interswitch"]["pay"]
        .as_u64()
        .unwrap_or(0);

    // The slow customer keeps the one call in flight for 3 s, so most callers meet it there.
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let mut c = clients[i % 2].clone();
        let request_id = request_id.to_owned();
        callers.push(tokio::spawn(async move {
            let mut aborted = 0u32;
            loop {
                match c
                    .create_payment(request(&request_id, "3333333333", 250_000))
                    .await
                {
                    Ok(r) => return (r.into_inner().payment.unwrap(), aborted),
                    // In flight, or the store slow to answer under this load (a command
                    // timeout): both are safe to retry with the same request_id.
                    Err(s) if matches!(s.code(), Code::Aborted | Code::Unavailable) => {
                        aborted += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(s) => panic!("unexpected status {s:?}"),
                }
            }
        }));
    }
    let mut payments = BTreeMap::new();
    let mut aborted_total = 0;
    for caller in callers {
        let (payment, aborted) = caller.await.unwrap();
        aborted_total += aborted;
        *payments
            .entry((
                payment.payment_id.clone(),
                payment.provider_reference.clone(),
                payment.state,
            ))
            .or_insert(0) += 1;
    }
    let calls = sim_calls(sim).await;
    println!("callers: {CALLERS} over 2 gateway replicas, one request_id");
    println!("distinct payments seen by callers: {}", payments.len());
    println!("ABORTED (in flight) answers retried: {aborted_total}");
    println!("simulator calls: {calls}");
    assert_eq!(
        payments.len(),
        1,
        "every caller gets the same payment: {payments:?}"
    );
    let ((_, _, state), count) = payments.into_iter().next().unwrap();
    assert_eq!(count, CALLERS);
    assert_eq!(state, pb::PaymentState::Succeeded as i32);
    assert_eq!(
        calls["interswitch"]["pay"].as_u64().unwrap_or(0) - pays_before,
        1,
        "exactly one provider payment call"
    );

    // Same key, different amount, on either replica: rejected, and no provider call.
    for c in &clients {
        let status = c
            .clone()
            .create_payment(request(request_id, "3333333333", 250_001))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
    }
    assert_eq!(
        sim_calls(sim).await["interswitch"]["pay"]
            .as_u64()
            .unwrap_or(0)
            - pays_before,
        1
    );
}
