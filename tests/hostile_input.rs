//! Hostile input through a real client: bytes that are not protobuf, truncated messages,
//! random bodies on every billpay RPC, oversized messages, unknown methods, and random field
//! values in well-formed requests. Nothing panics, the server stays up, and every error
//! carries ErrorInfo. Bounded in count and deterministic (a seeded xorshift generator).

mod common;

use std::sync::Arc;

use billpay_gateway::{
    config::ServerConfig,
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::memory::MemoryStore,
};
use common::*;
use prost::bytes::{Buf, BufMut};
use prost::Message;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
    Code, Status,
};
use tonic_types::StatusExt;

/// A codec that sends the given bytes as the request message, unchanged, and returns the
/// answer's bytes: the way to put garbage on the wire through a real gRPC client.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Sends `body` as the request of `path` (`/package.Service/Method`).
async fn call_raw(channel: &Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    grpc.unary(
        tonic::Request::new(body),
        path.parse().expect("a method path"),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// Every billpay.v1 method path, read from the compiled descriptors.
fn billpay_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = Vec::new();
    for file in set.file {
        if file.package() != "billpay.v1" {
            continue;
        }
        for service in &file.service {
            // Server streams (WatchPayment, WatchPaymentEvents) stay open by design: called
            // as unary here they would never answer. tests/events.rs covers their bad input.
            for method in service.method.iter().filter(|m| !m.server_streaming()) {
                paths.push(format!("/billpay.v1.{}/{}", service.name(), method.name()));
            }
        }
    }
    assert!(paths.len() > 15, "the descriptors list the services");
    paths
}

/// xorshift64*: enough randomness for bounded, reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A string from a palette that hits validation's edges: empty, long, unicode, controls.
    fn string(&mut self) -> String {
        match self.below(7) {
            0 => String::new(),
            1 => "x".repeat(self.below(5_000) as usize),
            2 => "ünïcødé-💸-\u{202e}".into(),
            3 => "\0\n\r\t'\"; DROP TABLE".into(),
            4 => format!("req-{}", self.next()),
            5 => "901".into(),
            _ => String::from_utf8_lossy(&self.bytes(40)).into_owned(),
        }
    }

    fn amount(&mut self) -> i64 {
        match self.below(6) {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => 0,
            3 => -1,
            4 => 1,
            _ => self.next() as i64,
        }
    }
}

/// Asserts that an error carries ErrorInfo in our domain and is not blamed on the gateway.
fn assert_detailed(status: &Status, what: &str) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("{what}: no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "billpay.gateway", "{what}: {status:?}");
    assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "{what}: caller's input answered as the gateway's fault: {status:?}"
    );
}

/// Bodies no protobuf decoder accepts, whatever the message type.
fn undecodable_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Field 1, varint, ten continuation bytes: the varint never ends.
        (
            "overlong varint",
            vec![
                0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ],
        ),
        // Wire type 7 does not exist.
        ("invalid wire type", vec![0x0F, 0x01]),
        // Field number 0 is invalid.
        ("field zero", vec![0x00, 0x01]),
        // Length-delimited field announcing 5 bytes, carrying 1.
        ("truncated length-delimited", vec![0x0A, 0x05, b'a']),
        // A varint cut off mid-way.
        ("truncated varint", vec![0x08, 0x80]),
        // An end-group tag without a start.
        ("stray end group", vec![0x0C]),
    ]
}

async fn sandbox_gateway(server: ServerConfig) -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start_serving(
        sandbox::providers_config(&sims.base_url()),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        server,
    )
    .await;
    (sims, gw)
}

async fn assert_still_serving(gw: &TestGateway) {
    gw.catalog()
        .list_providers(pb::ListProvidersRequest::default())
        .await
        .expect("the server still answers");
}

#[tokio::test]
async fn undecodable_bodies_on_every_rpc_answer_invalid_argument_with_error_info() {
    let (_sims, gw) = sandbox_gateway(ServerConfig::default()).await;
    for path in billpay_methods() {
        for (what, body) in undecodable_bodies() {
            let status = call_raw(&gw.channel, &path, body)
                .await
                .expect_err("an undecodable body is refused");
            assert_error(&status, Code::InvalidArgument, "MALFORMED_REQUEST");
            assert!(
                status.message().contains("not a valid protobuf"),
                "{path} {what}: {status:?}"
            );
        }
    }
    assert_still_serving(&gw).await;
}

#[tokio::test]
async fn truncated_payment_requests_are_malformed_or_invalid_never_internal() {
    let (sims, gw) = sandbox_gateway(ServerConfig::default()).await;
    let mut request = payment_request("truncated-1", "90101", "0000000001", 100_000);
    request.description = "a description long enough to be cut".into();
    let full = request.encode_to_vec();
    let mut malformed = 0;
    for len in 1..full.len() {
        let result = call_raw(
            &gw.channel,
            "/billpay.v1.PaymentService/CreatePayment",
            full[..len].to_vec(),
        )
        .await;
        // A cut on a field boundary is a valid (shorter) message: validation refuses it, or
        // it is a complete payment (then its request_id pays once, and the other cuts with
        // the same request_id are refused as a reused key).
        let Err(status) = result else { continue };
        assert_detailed(&status, &format!("truncated at {len}"));
        if status.code() == Code::InvalidArgument
            && status.get_error_details().error_info().unwrap().reason == "MALFORMED_REQUEST"
        {
            malformed += 1;
        }
    }
    assert!(malformed > full.len() / 2, "most cuts are mid-field");
    assert!(
        sims.calls.get("interswitch", "pay") <= 1,
        "one request_id, at most one payment"
    );
    assert_still_serving(&gw).await;
}

#[tokio::test]
async fn random_bodies_on_every_rpc_never_crash_and_every_error_has_error_info() {
    let (_sims, gw) = sandbox_gateway(ServerConfig::default()).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let methods = billpay_methods();
    let mut calls = 0;
    for path in &methods {
        for i in 0..40 {
            let body = rng.bytes(if i % 4 == 0 { 2_000 } else { 64 });
            // Random bytes may happen to decode (unknown fields are skipped): then the handler
            // answers, OK or a detailed error.
            if let Err(status) = call_raw(&gw.channel, path, body).await {
                assert_detailed(&status, &format!("{path} body #{i}"));
            }
            calls += 1;
        }
    }
    assert!(calls >= 800);
    assert_still_serving(&gw).await;
}

#[tokio::test]
async fn random_field_values_in_well_formed_requests_answer_with_error_info() {
    let (sims, gw) = sandbox_gateway(ServerConfig::default()).await;
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let providers = [0, 1, 2, 3, 4, 5, 6, 99, -1];
    for i in 0..300 {
        let provider = providers[rng.below(providers.len() as u64) as usize];
        let request = pb::CreatePaymentRequest {
            request_id: rng.string(),
            provider,
            biller_id: rng.string(),
            product_id: rng.string(),
            customer_id: rng.string(),
            amount: (rng.below(4) > 0).then(|| pb::Money {
                currency_code: rng.string().chars().take(5).collect(),
                minor_units: rng.amount(),
            }),
            description: rng.string(),
            ..Default::default()
        };
        if let Err(status) = gw.payments().create_payment(request).await {
            assert_detailed(&status, &format!("CreatePayment #{i}"));
        }
        if let Err(status) = gw
            .payments()
            .get_payment(pb::GetPaymentRequest {
                payment_id: rng.string(),
            })
            .await
        {
            assert_detailed(&status, &format!("GetPayment #{i}"));
        }
        if let Err(status) = gw
            .customers()
            .validate_customer(pb::ValidateCustomerRequest {
                provider,
                product_id: rng.string(),
                customer_id: rng.string(),
                biller_id: rng.string(),
                ..Default::default()
            })
            .await
        {
            assert_detailed(&status, &format!("ValidateCustomer #{i}"));
        }
    }
    // No random request was a valid Interswitch payment.
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    assert_still_serving(&gw).await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted_with_error_info() {
    let server = ServerConfig {
        max_request_bytes: 4 * 1024,
        ..ServerConfig::default()
    };
    let (sims, gw) = sandbox_gateway(server).await;
    let mut request = payment_request("too-large-1", "90101", "0000000001", 100_000);
    request.description = "d".repeat(8 * 1024);
    let status = gw
        .payments()
        .create_payment(request)
        .await
        .expect_err("over the limit");
    assert_error(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["limit_bytes"], "4096");
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    // Under the limit it is served (and validated as usual).
    let small = payment_request("too-large-2", "90101", "0000000001", 100_000);
    gw.pay(small).await;
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_with_error_info() {
    let (_sims, gw) = sandbox_gateway(ServerConfig::default()).await;
    for path in [
        "/billpay.v1.PaymentService/NoSuchMethod",
        "/billpay.v1.NoSuchService/GetPayment",
    ] {
        let status = call_raw(&gw.channel, path, Vec::new())
            .await
            .expect_err("no such method");
        assert_error(&status, Code::Unimplemented, "UNKNOWN_METHOD");
    }
}
