//! Distributed tracing end to end: a gateway built from configuration (`[telemetry]
//! otlp_endpoint` naming a real OTLP receiver on loopback) serves one sandbox payment whose
//! gRPC metadata carries a W3C `traceparent`; the spans the exporter delivers must continue
//! that trace (server span -> store and provider spans), carry the RPC, store and provider
//! attributes, and hold no secret, URL or body.

mod common;

use std::{str::FromStr, time::Duration};

use billpay_gateway::{
    config::{Config, TelemetryConfig},
    pb::{self, payment_service_client::PaymentServiceClient},
    sandbox::{self, Simulators},
    server, telemetry,
};
use common::otlp::{self, Receiver};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::{metadata::MetadataValue, transport::Channel};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

// Multi-threaded: flushing the exporter blocks a thread while the runtime carries its gRPC
// channel and the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_continues_the_callers_trace_with_no_secret_in_any_span() {
    let receiver = Receiver::start().await;
    let span_exporter = telemetry::init(
        false,
        &TelemetryConfig {
            otlp_endpoint: receiver.endpoint.clone(),
            ..Default::default()
        },
    )
    .expect("telemetry starts")
    .expect("an exporter: the endpoint is set");
    assert!(telemetry::exporting());

    let sims = Simulators::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let providers = sandbox::providers_config(&sims.base_url());
    // The secrets of every configured provider: none may reach a span.
    let mut secrets: Vec<String> = Vec::new();
    if let Some(c) = &providers.interswitch {
        secrets.push(c.client_secret.expose_secret().to_owned());
    }
    if let Some(c) = &providers.onepipe {
        secrets.push(c.api_key.expose_secret().to_owned());
        secrets.push(c.client_secret.expose_secret().to_owned());
    }
    if let Some(c) = &providers.intelworld_ip2 {
        secrets.push(c.api_key.expose_secret().to_owned());
        secrets.push(c.api_password.expose_secret().to_owned());
    }
    if let Some(c) = &providers.interintel {
        secrets.push(c.password.expose_secret().to_owned());
        secrets.extend(c.client_secret.iter().map(|s| s.expose_secret().to_owned()));
    }
    if let Some(c) = &providers.switch {
        secrets.extend(c.checksum_key.iter().map(|s| s.expose_secret().to_owned()));
        secrets.extend(
            c.login
                .iter()
                .map(|l| l.password.expose_secret().to_owned()),
        );
    }
    assert!(secrets.len() >= 6, "{} secrets", secrets.len());

    let config = Config {
        providers,
        ..Default::default()
    };
    let (gateway, mut server_config) = server::build_gateway(config, true).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    server_config.listen = addr.to_string();
    server_config.shutdown_grace_ms = 0;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::run(
        listener,
        gateway,
        server_config,
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

    let mut request = tonic::Request::new(common::payment_request(
        "otlp-trace-1",
        "90101",
        "0000000005",
        100_000,
    ));
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::from_str(&format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")).unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("otlp-req-1"));
    let payment = PaymentServiceClient::new(channel)
        .create_payment(request)
        .await
        .expect("the sandbox pays")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.state, pb::PaymentState::Succeeded as i32);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    // Ends every span still open and exports everything buffered (blocking).
    tokio::task::spawn_blocking(move || {
        span_exporter.flush().expect("export");
        drop(span_exporter);
    })
    .await
    .unwrap();

    let spans = receiver.spans();
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == hex(TRACE_ID))
        .cloned()
        .collect();
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();

    // The server span continues the caller's trace, as the caller's span's child.
    let rpc = trace
        .iter()
        .find(|s| s.name == "billpay.v1.PaymentService/CreatePayment")
        .unwrap_or_else(|| panic!("no server span in the caller's trace: {names:?}"));
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(rpc.parent_span_id, hex(CALLER_SPAN_ID));
    assert_eq!(otlp::attr(rpc, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        otlp::attr(rpc, "rpc.service").as_deref(),
        Some("billpay.v1.PaymentService")
    );
    assert_eq!(
        otlp::attr(rpc, "rpc.method").as_deref(),
        Some("CreatePayment")
    );
    assert_eq!(
        otlp::attr(rpc, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(otlp::attr(rpc, "request_id").as_deref(), Some("otlp-req-1"));

    // The store round trips, under the RPC: the payment's guarded claim among them (written
    // with its CREATED event where the store keeps events, as the memory store does).
    let store: Vec<_> = trace
        .iter()
        .filter(|s| otlp::attr(s, "db.operation.name").is_some())
        .collect();
    assert!(
        store.iter().any(
            |s| (s.name == "set_if_absent_guarded" || s.name == "write_with_event")
                && otlp::attr(s, "billpay.key_kind").as_deref() == Some("payment")
        ),
        "no payment claim span: {names:?}"
    );
    for span in &store {
        assert_eq!(span.kind, SpanKind::Client as i32, "{}", span.name);
        assert_eq!(
            otlp::attr(span, "db.system.name").as_deref(),
            Some("memory")
        );
        assert!(
            otlp::descends_from(span, &rpc.span_id, &trace),
            "{} is not under the RPC",
            span.name
        );
    }

    // The provider call, under the RPC, with provider, operation and HTTP status.
    let provider = trace
        .iter()
        .find(|s| s.name == "interswitch pay")
        .unwrap_or_else(|| panic!("no provider span: {names:?}"));
    assert_eq!(provider.kind, SpanKind::Client as i32);
    assert_eq!(
        otlp::attr(provider, "billpay.provider").as_deref(),
        Some("interswitch")
    );
    assert_eq!(
        otlp::attr(provider, "billpay.operation").as_deref(),
        Some("pay")
    );
    assert_eq!(
        otlp::attr(provider, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(otlp::descends_from(provider, &rpc.span_id, &trace));

    // The audit line rides along as an event of the server span.
    assert!(
        rpc.events
            .iter()
            .any(|e| e.attributes.iter().any(|kv| kv.key == "outcome")),
        "no audit event on the server span: {:?}",
        rpc.events
    );

    // Nothing secret anywhere in what the collector got; no URL (queries may hold keys).
    let text = otlp::all_text(&receiver.exports());
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a provider secret in a span"
        );
    }
    assert!(!text.contains(&sims.base_url()), "a provider URL in a span");
}
