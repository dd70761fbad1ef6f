//! The cross-replica idempotency race, shared by the single-Redis and the Redis Cluster
//! tests: 500 concurrent CreatePayment calls with one request_id spread over two gateway
//! processes sharing one store and one standalone simulator. Every caller must end with the
//! same payment, and the provider must see exactly one payment call and one customer
//! validation. Callers that arrive while the validation or the call is in flight get ABORTED
//! (REQUEST_IN_FLIGHT) and retry with the same request_id.
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
    let before = sim_calls(sim).await;
    let pays_before = before["interswitch"]["pay"].as_u64().unwrap_or(0);
    let validations_before = before["interswitch"]["validate_customer"]
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
                    Ok(r) => {
                        let payment = r.into_inner().payment.unwrap();
                        let request = request(&request_id, "3333333333", 250_000);
                        return (settled(&mut c, request, payment).await, aborted);
                    }
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
    let pays = calls["interswitch"]["pay"].as_u64().unwrap_or(0) - pays_before;
    // The customer is validated before the claim: once for every duplicate, not once each.
    let validations = calls["interswitch"]["validate_customer"]
        .as_u64()
        .unwrap_or(0)
        - validations_before;
    assert_eq!(validations, 1, "one customer validation for all duplicates");
    // On a quiet machine the one call is made and succeeds. On an overloaded one the store can
    // time out between the claim and the send: then nothing is sent and the status query
    // finds no such payment, so FAILED (not sent) is the true answer. Either way, one answer
    // for every caller and never a second call.
    match pb::PaymentState::try_from(state) {
        Ok(pb::PaymentState::Succeeded) => assert_eq!(pays, 1, "exactly one provider payment call"),
        Ok(pb::PaymentState::Failed) => {
            assert_eq!(pays, 0, "FAILED only when the payment was never sent");
            println!("the store timed out before the send: FAILED, not sent");
        }
        other => panic!("unexpected final state {other:?}"),
    }
    let pays_after_race = pays;

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
        pays_after_race
    );
}

/// Follows a PENDING `payment` to its end the way a careful client does: it sends the same
/// request again until the answer is final. A PENDING answer is rare here: on an overloaded
/// machine the store can time out around the in-flight mark, and the payment then waits for
/// the in-flight expiry (the gateway's default, 180 s) before reconciliation
/// asks the provider, so the wait is bounded by that expiry, not by a guess.
async fn settled(
    c: &mut PaymentServiceClient<Channel>,
    request: pb::CreatePaymentRequest,
    mut payment: pb::Payment,
) -> pb::Payment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while payment.state == pb::PaymentState::Pending as i32
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(r) = c.create_payment(request.clone()).await {
            payment = r.into_inner().payment.unwrap();
        }
    }
    payment
}
