//! The operator service end to end: real tonic client -> real gateway -> the Interswitch
//! simulator over HTTP. Off unless enabled; lists journal payments by state and provider, pages,
//! resolves a NEEDS_ATTENTION payment with evidence (an audit entry on the payment, idempotent by
//! request_id), and never overwrites a provider-confirmed final state.

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

fn operator(gw: &TestGateway) -> OperatorServiceClient<Channel> {
    OperatorServiceClient::new(gw.channel.clone())
}

fn list(state: pb::PaymentState) -> pb::ListJournalPaymentsRequest {
    pb::ListJournalPaymentsRequest {
        state: state as i32,
        ..Default::default()
    }
}

fn resolve(
    request_id: &str,
    payment_id: &str,
    state: pb::PaymentState,
) -> pb::ResolvePaymentRequest {
    pb::ResolvePaymentRequest {
        request_id: request_id.into(),
        payment_id: payment_id.into(),
        state: state as i32,
        provider_transaction_id: "ISW|settled-by-phone".into(),
        provider_code: "90000".into(),
        note: "Interswitch support confirmed the payment on ticket 4711".into(),
        operator: "ada@ops".into(),
    }
}

#[tokio::test]
async fn operators_list_and_resolve_payments_needing_attention() {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let settings = PaymentSettings {
        reconcile_backoff_ms: vec![50, 50],
        reconcile_poll_ms: 25,
        ..PaymentSettings::default()
    };
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        Arc::new(MemoryStore::default()),
        settings,
    )
    .await;

    // Off by default.
    let off = operator(&gw)
        .list_journal_payments(list(pb::PaymentState::Unspecified))
        .await
        .unwrap_err();
    assert_error(&off, Code::Unimplemented, "SERVICE_DISABLED");
    gw.gateway.set_operator_enabled(true);

    let done = gw
        .pay(payment_request("op-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&done), pb::PaymentState::Succeeded);
    let stuck = gw
        .pay(payment_request("op-2", "90101", "1111111112", 2_000))
        .await;
    assert_eq!(state(&stuck), pb::PaymentState::Pending);
    // The schedule (two answered checks) runs out: NEEDS_ATTENTION.
    let mut attention = Vec::new();
    for _ in 0..100 {
        attention = operator(&gw)
            .list_journal_payments(list(pb::PaymentState::NeedsAttention))
            .await
            .unwrap()
            .into_inner()
            .payments;
        if !attention.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(attention.len(), 1);
    assert_eq!(
        attention[0].payment.as_ref().unwrap().payment_id,
        stuck.payment_id
    );

    // Filters and pages.
    let all = operator(&gw)
        .list_journal_payments(list(pb::PaymentState::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.payments.len(), 2);
    // Without [auth] callers every payment is the anonymous caller's.
    assert!(all.payments.iter().all(|p| p.caller == "anonymous"));
    let first_page = operator(&gw)
        .list_journal_payments(pb::ListJournalPaymentsRequest {
            page_size: 1,
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.payments.len(), 1);
    assert_eq!(
        first_page.payments[0].payment.as_ref().unwrap().payment_id,
        done.payment_id,
        "oldest first"
    );
    let second_page = operator(&gw)
        .list_journal_payments(pb::ListJournalPaymentsRequest {
            page_size: 1,
            provider: pb::Provider::Interswitch as i32,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second_page.payments[0].payment.as_ref().unwrap().payment_id,
        stuck.payment_id
    );
    let none = operator(&gw)
        .list_journal_payments(pb::ListJournalPaymentsRequest {
            provider: pb::Provider::Onepipe as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.payments.is_empty() && none.next_page_token.is_empty());

    // Resolve with evidence: the audit entry is on the payment.
    let resolved = operator(&gw)
        .resolve_payment(resolve(
            "fix-1",
            &stuck.payment_id,
            pb::PaymentState::Succeeded,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let payment = resolved.payment.unwrap();
    assert_eq!(state(&payment), pb::PaymentState::Succeeded);
    assert_eq!(payment.provider_transaction_id, "ISW|settled-by-phone");
    assert_eq!(resolved.audit.len(), 1);
    let audit = &resolved.audit[0];
    assert_eq!(audit.operator, "ada@ops");
    assert_eq!(
        audit.caller, "anonymous",
        "who sent it, beside who it claims"
    );
    assert_eq!(audit.from_state, pb::PaymentState::NeedsAttention as i32);
    assert_eq!(audit.to_state, pb::PaymentState::Succeeded as i32);
    assert!(audit.note.contains("ticket 4711"));
    assert_eq!(
        state(&gw.get(&stuck.payment_id).await),
        pb::PaymentState::Succeeded
    );
    // The same resolution again replays; another one under its request_id is refused.
    let replay = operator(&gw)
        .resolve_payment(resolve(
            "fix-1",
            &stuck.payment_id,
            pb::PaymentState::Succeeded,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(replay.audit.len(), 1);
    let reused = operator(&gw)
        .resolve_payment(resolve(
            "fix-1",
            &stuck.payment_id,
            pb::PaymentState::Failed,
        ))
        .await
        .unwrap_err();
    assert_error(&reused, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    // A provider-confirmed final state is never overwritten.
    let refused = operator(&gw)
        .resolve_payment(resolve("fix-2", &done.payment_id, pb::PaymentState::Failed))
        .await
        .unwrap_err();
    assert_error(&refused, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");
    assert_eq!(
        state(&gw.get(&done.payment_id).await),
        pb::PaymentState::Succeeded
    );
    // Nor is an operator's own resolution, under a new request_id.
    let again = operator(&gw)
        .resolve_payment(resolve(
            "fix-3",
            &stuck.payment_id,
            pb::PaymentState::Failed,
        ))
        .await
        .unwrap_err();
    assert_error(&again, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");

    // Recheck of a final payment answers from the journal.
    let rechecked = operator(&gw)
        .recheck_payment(pb::RecheckPaymentRequest {
            payment_id: done.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        state(rechecked.payment.as_ref().unwrap()),
        pb::PaymentState::Succeeded
    );
    // Bad input is refused field by field.
    let bad = operator(&gw)
        .resolve_payment(pb::ResolvePaymentRequest {
            state: pb::PaymentState::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields = assert_error(&bad, Code::InvalidArgument, "INVALID_REQUEST");
    for field in ["request_id", "payment_id", "state", "note", "operator"] {
        assert!(fields.iter().any(|f| f == field), "{field}: {fields:?}");
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    gw.stop().await;
}

/// A payment whose call may still be running is not resolved: an OTP validation or reversal
/// at the provider (a live follow-up mark) could still settle it otherwise. Once the mark is
/// gone it resolves as usual.
#[tokio::test]
async fn a_payment_with_a_follow_up_at_the_provider_is_not_resolved() {
    use billpay_gateway::{
        domain::{
            payment::{CallPhase, FollowUpKind, FollowUpMark, PaymentKind},
            Currency, Money, PaymentOrder, PaymentRecord, PaymentState, ProviderId,
        },
        gateway::Clock,
        store::keys,
    };
    let gw = TestGateway::start(Default::default()).await;
    gw.gateway.set_operator_enabled(true);
    let now = Clock::default().now_ms();
    let order = PaymentOrder::new(
        ProviderId::OnePipe,
        PaymentKind::Bill,
        "IKEDCPR-TOKEN",
        "45000000001",
        Money::new(Currency::Ngn, 250_000),
    );
    let mut record = PaymentRecord {
        // A status query answered "pending" while the OTP is being checked.
        state: PaymentState::Pending,
        call: CallPhase::Returned,
        follow_up: Some(FollowUpMark {
            kind: FollowUpKind::OtpValidation,
            request_id: "otp-at-provider".into(),
            expires_at_ms: now + 600_000,
        }),
        ..PaymentRecord::claimed("op-fu".into(), order, "bp-op-fu".into(), now)
    };
    let key = keys::payment(&record.payment_id);
    let store = gw.gateway.store().clone();
    store
        .set(&key, &serde_json::to_vec(&record).unwrap(), None)
        .await
        .unwrap();
    let refused = operator(&gw)
        .resolve_payment(resolve(
            "fix-fu",
            &record.payment_id,
            pb::PaymentState::Failed,
        ))
        .await
        .unwrap_err();
    assert_error(&refused, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");
    let stored: PaymentRecord =
        serde_json::from_slice(&store.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.state, PaymentState::Pending);
    assert!(stored.audit.is_empty());

    // The follow-up ended (its outcome cleared the mark): now an operator may settle it.
    record.follow_up = None;
    store
        .set(&key, &serde_json::to_vec(&record).unwrap(), None)
        .await
        .unwrap();
    let resolved = operator(&gw)
        .resolve_payment(resolve(
            "fix-fu",
            &record.payment_id,
            pb::PaymentState::Failed,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&resolved.payment.unwrap()), pb::PaymentState::Failed);
    gw.stop().await;
}

/// The service names reflection v1alpha (what grpcurl 1.8.6 speaks) lists, and whether it
/// describes the symbol `billpay.v1.OperatorService`.
async fn reflected(channel: Channel) -> (Vec<String>, bool) {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("billpay.v1.OperatorService".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    // tonic's reflection ends the stream with NOT_FOUND for an unknown symbol.
    let described = match responses.message().await {
        Ok(Some(answer)) => match answer.message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                !files.file_descriptor_proto.is_empty()
            }
            Some(MessageResponse::ErrorResponse(_)) => false,
            other => panic!("unexpected answer: {other:?}"),
        },
        Err(status) if status.code() == Code::NotFound => false,
        other => panic!("unexpected answer: {other:?}"),
    };
    (
        list.service.into_iter().map(|s| s.name).collect(),
        described,
    )
}

#[tokio::test]
async fn reflection_describes_the_operator_service_only_while_it_is_enabled() {
    // Off (the default): neither listed nor described, though the path still answers.
    let off = TestGateway::start(Default::default()).await;
    let (names, described) = reflected(off.channel.clone()).await;
    assert!(
        names.iter().any(|n| n == "billpay.v1.PaymentService"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "billpay.v1.OperatorService"),
        "{names:?}"
    );
    assert!(!described, "a disabled OperatorService is described");
    off.stop().await;

    // On at start: listed and described.
    let gateway = billpay_gateway::gateway::Gateway::new(
        Default::default(),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        Default::default(),
        false,
    );
    gateway.set_operator_enabled(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(billpay_gateway::server::run(
        listener,
        gateway,
        billpay_gateway::config::ServerConfig {
            shutdown_grace_ms: 0,
            metrics_listen: String::new(),
            ..Default::default()
        },
        Duration::from_millis(250),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (names, described) = reflected(channel.clone()).await;
    assert!(
        names.iter().any(|n| n == "billpay.v1.OperatorService"),
        "{names:?}"
    );
    assert!(described, "an enabled OperatorService is not described");
    drop(channel);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
