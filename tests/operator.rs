//! The operator service end to end against the sandbox simulators: the journal listing with
//! filters and pages, a recheck, and resolutions with evidence (idempotent, audited, never over
//! a state the provider confirmed), including a payment the reconciler handed to an operator.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb::{self, operator_service_client::OperatorServiceClient},
    sandbox::{self, Simulators},
    store::memory::MemoryStore,
};
use common::*;
use tonic::{transport::Channel, Code};

async fn sandbox_gateway(payments: PaymentSettings) -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        Arc::new(MemoryStore::default()),
        payments,
    )
    .await;
    (sims, gw)
}

fn operator(gw: &TestGateway) -> OperatorServiceClient<Channel> {
    OperatorServiceClient::new(gw.channel.clone())
}

async fn list(gw: &TestGateway, request: pb::ListJournalPaymentsRequest) -> Vec<pb::Payment> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = operator(gw)
            .list_journal_payments(request.clone())
            .await
            .unwrap()
            .into_inner();
        all.extend(page.payments);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

fn resolution(
    request_id: &str,
    payment_id: &str,
    state: pb::PaymentState,
) -> pb::ResolvePaymentRequest {
    pb::ResolvePaymentRequest {
        request_id: request_id.into(),
        payment_id: payment_id.into(),
        state: state as i32,
        provider_transaction_id: "ISW-TXN-42".into(),
        provider_code: "90000".into(),
        note: "provider statement of 2026-11-23 shows the debit".into(),
        operator: "ada".into(),
    }
}

#[tokio::test]
async fn list_recheck_and_resolve_a_pending_payment() {
    let (_sims, gw) = sandbox_gateway(PaymentSettings::default()).await;
    let pending = gw
        .pay(payment_request("op-pending", "90101", "1111111112", 50_000))
        .await;
    // Creation times order the journal: keep them apart.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let paid = gw
        .pay(payment_request("op-paid", "90101", "0000000000", 50_000))
        .await;
    // Creation times order the journal: keep them apart.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let declined = gw
        .pay(payment_request(
            "op-declined",
            "90101",
            "2222222222",
            50_000,
        ))
        .await;
    assert_eq!(pending.state, pb::PaymentState::Pending as i32);
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    assert_eq!(declined.state, pb::PaymentState::Failed as i32);

    // Every payment, oldest first, one per page.
    let ids = |payments: Vec<pb::Payment>| -> Vec<String> {
        payments.into_iter().map(|p| p.payment_id).collect()
    };
    let all = list(
        &gw,
        pb::ListJournalPaymentsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        ids(all),
        [
            pending.payment_id.as_str(),
            &paid.payment_id,
            &declined.payment_id
        ]
    );
    let only_pending = list(
        &gw,
        pb::ListJournalPaymentsRequest {
            state: pb::PaymentState::Pending as i32,
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(only_pending), [pending.payment_id.as_str()]);
    let other_provider = list(
        &gw,
        pb::ListJournalPaymentsRequest {
            provider: pb::Provider::Onepipe as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(other_provider.is_empty());

    // A recheck asks the provider, which still does not know.
    let rechecked = operator(&gw)
        .recheck_payment(pb::RecheckPaymentRequest {
            payment_id: pending.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(rechecked.state, pb::PaymentState::Pending as i32);
    assert!(rechecked.status_checks > pending.status_checks);

    // Resolved with evidence, audited, replayable.
    let request = resolution("res-1", &pending.payment_id, pb::PaymentState::Succeeded);
    let resolved = operator(&gw)
        .resolve_payment(request.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(resolved.state, pb::PaymentState::Succeeded as i32);
    assert_eq!(resolved.provider_transaction_id, "ISW-TXN-42");
    let audit = &resolved.audit[..];
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].operator, "ada");
    assert_eq!(audit[0].request_id, "res-1");
    assert_eq!(audit[0].from_state, pb::PaymentState::Pending as i32);
    assert_eq!(audit[0].to_state, pb::PaymentState::Succeeded as i32);
    let replay = operator(&gw)
        .resolve_payment(request.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(replay.audit.len(), 1);
    assert_eq!(gw.get(&pending.payment_id).await.audit.len(), 1);

    // Another resolution under the same request_id is refused.
    let mut changed = request.clone();
    changed.state = pb::PaymentState::Failed as i32;
    let reused = operator(&gw).resolve_payment(changed).await.unwrap_err();
    assert_error(&reused, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    // A provider-confirmed state is never overwritten.
    for confirmed in [&paid.payment_id, &declined.payment_id] {
        let refused = operator(&gw)
            .resolve_payment(resolution("res-2", confirmed, pb::PaymentState::Failed))
            .await
            .unwrap_err();
        assert_error(&refused, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");
    }
    let bad = operator(&gw)
        .resolve_payment(resolution(
            "res-3",
            &paid.payment_id,
            pb::PaymentState::Pending,
        ))
        .await
        .unwrap_err();
    let fields = assert_error(&bad, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["state"]);
}

#[tokio::test]
async fn a_payment_handed_to_an_operator_is_listed_and_resolved() {
    let payments = PaymentSettings {
        reconcile_backoff_ms: vec![10, 10],
        reconcile_poll_ms: 20,
        ..PaymentSettings::default()
    };
    let (_sims, gw) = sandbox_gateway(payments).await;
    let pending = gw
        .pay(payment_request("op-na", "90101", "1111111112", 50_000))
        .await;
    let needs_attention = pb::PaymentState::NeedsAttention as i32;
    let mut state = pending.state;
    for _ in 0..200 {
        state = gw.get(&pending.payment_id).await.state;
        if state == needs_attention {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, needs_attention, "the reconciler hands it over");
    let listed = list(
        &gw,
        pb::ListJournalPaymentsRequest {
            state: needs_attention,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    let resolved = operator(&gw)
        .resolve_payment(resolution(
            "res-na",
            &pending.payment_id,
            pb::PaymentState::Failed,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(resolved.state, pb::PaymentState::Failed as i32);
    assert_eq!(resolved.audit[0].from_state, needs_attention);
    // Final now: nothing left for the operator.
    let left = list(
        &gw,
        pb::ListJournalPaymentsRequest {
            state: needs_attention,
            ..Default::default()
        },
    )
    .await;
    assert!(left.is_empty());
}
