//! SQL injection attempts end to end: a real tonic client, a gateway over the sandbox
//! simulators, and the payment journal in a real PostgreSQL (a database of its own). The
//! string fields are found in the contract itself (the gateway's `FILE_DESCRIPTOR_SET`), so a
//! field added later is covered without touching this file: every string field of
//! CreatePaymentRequest and its nested messages (map keys and values included), each sent
//! with a payment that is otherwise valid for the provider its options belong to, and every
//! string field of every other PaymentService and OperatorService request.
//!
//! Each attempt must be harmless (the tables and the view are there, no payment row written
//! before it changed or vanished) and a payment it created must hold the text verbatim: in
//! its row as SQL sees it, and in GetPayment's and ListJournalPayments' answers, which equal
//! CreatePayment's. A field
//! the contract marks `debug_redact` (PINs, card data, OTPs) must never reach the row.

mod common;

use std::{collections::BTreeMap, sync::Arc};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{identity, Store},
};
use common::{postgres::TestDatabase, *};
use prost::{
    bytes::{Buf, BufMut},
    encoding::{encode_key, encode_varint, WireType},
    Message,
};
use prost_types::{field_descriptor_proto::Type, DescriptorProto, FileDescriptorSet};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
    Code, Status,
};
use tonic_types::StatusExt;

/// Text that breaks out of a quoted literal, an identifier, a dollar-quoted body, a LIKE
/// pattern or a JSON path if anything splices it into SQL. No leading or trailing space (the
/// gateway trims some fields), no control characters (it refuses them).
const PAYLOADS: &[&str] = &[
    "x'); DROP TABLE billpay_kv; --",
    "' OR '1'='1' --",
    "\"; DELETE FROM billpay_schedule; --",
    "$$; TRUNCATE billpay_kv; $$",
    "\\'; UPDATE billpay_kv SET value = ''; --",
    "billpay:v1:payment:%' OR key LIKE '%",
    "1; SELECT pg_sleep(30)/*",
];

// --- the raw gRPC codec: a request's bytes as built here, the answer's bytes back --------------

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
        let bytes = src.copy_to_bytes(src.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

async fn call_raw(channel: &Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(tonic::Request::new(body), path.parse().unwrap(), RawCodec)
        .await
        .map(|r| r.into_inner())
}

// --- the contract's string fields ---------------------------------------------------------------

/// Only what is needed of a descriptor to read `debug_redact` (FieldOptions field 16, which
/// prost-types does not model): file -> message -> field -> options, nested messages too.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<RawFile>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawFile {
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<RawMessage>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawMessage {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    field: Vec<RawField>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<RawMessage>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawField {
    #[prost(int32, optional, tag = "3")]
    number: Option<i32>,
    #[prost(message, optional, tag = "8")]
    options: Option<RawFieldOptions>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawFieldOptions {
    #[prost(bool, optional, tag = "16")]
    debug_redact: Option<bool>,
}

/// The contract's messages by full name (`.billpay.v1.X`), and which fields are redacted.
struct Contract {
    messages: BTreeMap<String, DescriptorProto>,
    redacted: std::collections::BTreeSet<(String, i32)>,
    set: FileDescriptorSet,
}

impl Contract {
    fn load() -> Self {
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut messages = BTreeMap::new();
        fn walk(scope: &str, m: &DescriptorProto, out: &mut BTreeMap<String, DescriptorProto>) {
            let name = format!("{scope}.{}", m.name());
            for nested in &m.nested_type {
                walk(&name, nested, out);
            }
            out.insert(name, m.clone());
        }
        for file in &set.file {
            for m in &file.message_type {
                walk(&format!(".{}", file.package()), m, &mut messages);
            }
        }
        let raw = RawSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut redacted = std::collections::BTreeSet::new();
        fn walk_raw(
            scope: &str,
            m: &RawMessage,
            out: &mut std::collections::BTreeSet<(String, i32)>,
        ) {
            let name = format!("{scope}.{}", m.name.as_deref().unwrap_or(""));
            for f in &m.field {
                if f.options.as_ref().and_then(|o| o.debug_redact) == Some(true) {
                    out.insert((name.clone(), f.number.unwrap_or(0)));
                }
            }
            for nested in &m.nested_type {
                walk_raw(&name, nested, out);
            }
        }
        for file in &raw.file {
            for m in &file.message_type {
                walk_raw(
                    &format!(".{}", file.package.as_deref().unwrap_or("")),
                    m,
                    &mut redacted,
                );
            }
        }
        Self {
            messages,
            redacted,
            set,
        }
    }

    /// Every string field reachable from message `full_name` (through message fields, map
    /// entries and oneofs; well-known types have none worth sending), as paths.
    fn string_paths(&self, full_name: &str) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect(full_name, &mut Vec::new(), false, &mut out);
        out
    }

    fn collect(
        &self,
        full_name: &str,
        prefix: &mut Vec<Step>,
        redacted: bool,
        out: &mut Vec<FieldPath>,
    ) {
        let Some(message) = self.messages.get(full_name) else {
            return;
        };
        if prefix.len() > 5 {
            return;
        }
        for field in &message.field {
            let step = Step {
                number: field.number() as u32,
                name: field.name().to_owned(),
            };
            let secret = redacted
                || self
                    .redacted
                    .contains(&(full_name.to_owned(), field.number()));
            match field.r#type() {
                Type::String => {
                    let mut steps = prefix.clone();
                    steps.push(step);
                    out.push(FieldPath {
                        steps,
                        redacted: secret,
                        map_value: message.options.as_ref().is_some_and(|o| o.map_entry())
                            && field.number() == 2,
                    });
                }
                Type::Message if field.type_name().starts_with(".billpay.") => {
                    prefix.push(step);
                    self.collect(field.type_name(), prefix, secret, out);
                    prefix.pop();
                }
                _ => {}
            }
        }
    }

    /// The unary methods of `service` (`billpay.v1.X`): gRPC path and input type.
    fn methods(&self, service: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for file in &self.set.file {
            for s in &file.service {
                if format!("{}.{}", file.package(), s.name()) != service {
                    continue;
                }
                for m in &s.method {
                    if m.server_streaming() || m.client_streaming() {
                        continue;
                    }
                    out.push((
                        format!("/{service}/{}", m.name()),
                        m.input_type().to_owned(),
                    ));
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
struct Step {
    number: u32,
    name: String,
}

/// A string field, by the fields that lead to it from the request.
#[derive(Clone, Debug)]
struct FieldPath {
    steps: Vec<Step>,
    redacted: bool,
    /// The value of a map entry: sent with a key (`k`), as a map entry needs one.
    map_value: bool,
}

impl FieldPath {
    fn name(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The protobuf encoding of a message that sets only this field to `text`. Appended to an
    /// encoded message, it sets the field there (the last value of a field wins, nested
    /// messages merge, a map gets one more entry, a oneof switches to this member).
    fn encode(&self, text: &str) -> Vec<u8> {
        let mut inner = Vec::new();
        if self.map_value {
            encode_key(1, WireType::LengthDelimited, &mut inner);
            encode_varint(1, &mut inner);
            inner.push(b'k');
        }
        let last = self.steps.last().unwrap();
        encode_key(last.number, WireType::LengthDelimited, &mut inner);
        encode_varint(text.len() as u64, &mut inner);
        inner.extend_from_slice(text.as_bytes());
        for step in self.steps.iter().rev().skip(1) {
            let mut outer = Vec::new();
            encode_key(step.number, WireType::LengthDelimited, &mut outer);
            encode_varint(inner.len() as u64, &mut outer);
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    }
}

// --- the database as SQL sees it ---------------------------------------------------------------

/// Every payment row: key -> (version, value).
async fn payment_rows(db: &TestDatabase) -> BTreeMap<String, (i64, Vec<u8>)> {
    db.client()
        .await
        .query(
            "SELECT key, version, value FROM billpay_kv
             WHERE key LIKE 'billpay:v1:payment:%' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// The schema is whole: both tables, the migrations table and the view answer.
async fn assert_schema_intact(db: &TestDatabase, what: &str) {
    let client = db.client().await;
    for relation in [
        "billpay_kv",
        "billpay_schedule",
        "billpay_schema_migrations",
        "billpay_payments",
    ] {
        client
            .query_one(&format!("SELECT count(*) FROM {relation}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: {relation} no longer answers: {e}"));
    }
}

/// Whether the payment's row holds `text` exactly, as one of its JSON string values or keys
/// (a map's keys are object keys).
async fn row_holds(db: &TestDatabase, payment_id: &str, text: &str) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM billpay_payments p, jsonb_path_query(p.record, 'strict $.**') v
                 WHERE p.payment_id = $1
                   AND (v = to_jsonb($2::text) OR (jsonb_typeof(v) = 'object' AND v ? $2)))",
            &[&payment_id, &text],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether the payment's stored bytes contain `text` anywhere (as written, or JSON-escaped).
async fn row_contains(db: &TestDatabase, payment_id: &str, text: &str) -> bool {
    let escaped = serde_json::to_string(text).unwrap();
    let escaped = &escaped[1..escaped.len() - 1];
    db.client()
        .await
        .query_one(
            "SELECT position(convert_to($2, 'UTF8') in value) > 0
                    OR position(convert_to($3, 'UTF8') in value) > 0
             FROM billpay_kv WHERE key = 'billpay:v1:payment:' || $1",
            &[&payment_id, &text, &escaped],
        )
        .await
        .unwrap()
        .get(0)
}

/// A payment's own fields (what a status check cannot change).
#[allow(clippy::type_complexity)]
fn own(
    p: &pb::Payment,
) -> (
    String,
    String,
    i32,
    String,
    String,
    String,
    Option<pb::Money>,
    String,
    String,
    Option<prost_types::Timestamp>,
) {
    (
        p.payment_id.clone(),
        p.request_id.clone(),
        p.provider,
        p.biller_id.clone(),
        p.product_id.clone(),
        p.customer_id.clone(),
        p.amount.clone(),
        p.provider_reference.clone(),
        p.description.clone(),
        p.create_time,
    )
}

// --- the gateway -----------------------------------------------------------------------------

async fn gateway(db: &TestDatabase, sims: &Simulators) -> TestGateway {
    let store = db.migrated_store().await;
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(&store, now, &Default::default())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store,
        PaymentSettings {
            // Nothing is reconciled while the test runs: rows change only by its requests.
            reconcile_poll_ms: 3_600_000,
            reconcile_backoff_ms: vec![3_600_000],
            ..PaymentSettings::default()
        },
    )
    .await;
    // The operators' service too: its requests are sent and its listing reads payments back.
    gw.gateway.set_operator_enabled(true);
    gw
}

/// A payment the sandbox accepts, for the provider whose options `options_field` names (a
/// member of CreatePaymentRequest's `provider_options`; `None`: Interswitch, no options).
async fn baseline(
    gw: &TestGateway,
    options_field: Option<&str>,
    n: usize,
) -> pb::CreatePaymentRequest {
    let request_id = format!("inject-{n}");
    match options_field {
        None => payment_request(&request_id, "90101", "0000000001", 100_000),
        Some("switch") => pb::CreatePaymentRequest {
            request_id,
            provider: pb::Provider::Switch as i32,
            biller_id: "104".into(),
            product_id: "28".into(),
            customer_id: "7012345678".into(),
            amount: ngn(180_000),
            expected_total: ngn(188_400),
            provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
                pb::SwitchPaymentOptions {
                    pin: sandbox::switch::PIN.into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        },
        Some("onepipe") => {
            let option = gw
                .customers()
                .get_payment_options(pb::GetPaymentOptionsRequest {
                    provider: pb::Provider::Onepipe as i32,
                    biller_id: "IKEDCPR".into(),
                    customer_id: "10000000001".into(),
                    amount: ngn(10_000),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .options
                .remove(0);
            pb::CreatePaymentRequest {
                request_id,
                provider: pb::Provider::Onepipe as i32,
                biller_id: "IKEDCPR".into(),
                product_id: option.product_id,
                customer_id: "10000000001".into(),
                amount: ngn(10_000),
                provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
                    pb::OnePipePaymentOptions {
                        order_reference: option.order_reference,
                        funding: Some(pb::one_pipe_payment_options::Funding::BankAccount(
                            pb::OnePipeBankAccount {
                                account_number: "0123456789".into(),
                                bank_cbn_code: "058".into(),
                            },
                        )),
                    },
                )),
                ..Default::default()
            }
        }
        Some("ip2") => pb::CreatePaymentRequest {
            request_id,
            provider: pb::Provider::IntelworldIp2 as i32,
            customer_id: "256700000001".into(),
            amount: ugx(25_000),
            provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
                pb::Ip2PaymentOptions {
                    payment_method_id: "MTNMM".into(),
                    payment_method_reference: [("MSISDN".to_owned(), "256700000001".to_owned())]
                        .into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        },
        Some(other) => panic!("no baseline payment for provider options {other:?}: add one"),
    }
}

/// The member of `provider_options` a CreatePaymentRequest path goes through, if any.
fn options_member(contract: &Contract, path: &FieldPath) -> Option<String> {
    let request = &contract.messages[".billpay.v1.CreatePaymentRequest"];
    let first = &path.steps[0];
    let field = request
        .field
        .iter()
        .find(|f| f.number() as u32 == first.number)
        .unwrap();
    let oneof = request.oneof_decl.get(field.oneof_index? as usize)?;
    (oneof.name() == "provider_options").then(|| first.name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_every_string_field_of_every_payment_request_is_stored_verbatim_and_harmless() {
    let contract = Contract::load();
    let db = TestDatabase::create().await;
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = gateway(&db, &sims).await;

    let create_paths = contract.string_paths(".billpay.v1.CreatePaymentRequest");
    let names: Vec<String> = create_paths.iter().map(FieldPath::name).collect();
    // The walk found the contract's fields, nested and mapped ones too.
    for expected in [
        "request_id",
        "description",
        "amount.currency_code",
        "contact.email",
        "metadata.key",
        "metadata.value",
        "onepipe.card.pan",
        "ip2.payment_method_reference.value",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} in {names:?}"
        );
    }

    let mut n = 0;
    let mut stored = BTreeMap::<String, usize>::new();
    let mut refused = BTreeMap::<String, Vec<String>>::new();
    let mut not_journaled = std::collections::BTreeSet::<String>::new();
    let mut accepted = Vec::<(String, pb::Payment)>::new();
    for path in &create_paths {
        let member = options_member(&contract, path);
        for payload in PAYLOADS {
            n += 1;
            let before = payment_rows(&db).await;
            let mut request = baseline(&gw, member.as_deref(), n).await;
            // A request_id must be new for each attempt: the payload then ends with the count.
            let text = if path.name() == "request_id" {
                format!("{payload}{n}")
            } else {
                payload.to_string()
            };
            let mut body = request.encode_to_vec();
            body.extend(path.encode(&text));
            // The request as the server decodes it: the field under test holds the text.
            request = pb::CreatePaymentRequest::decode(body.as_slice()).unwrap();
            let what = format!("CreatePayment {} = {text:?}", path.name());
            let answer = call_raw(
                &gw.channel,
                "/billpay.v1.PaymentService/CreatePayment",
                request.encode_to_vec(),
            )
            .await;
            assert_schema_intact(&db, &what).await;
            let after = payment_rows(&db).await;
            for (key, row) in &before {
                assert_eq!(
                    after.get(key),
                    Some(row),
                    "{what}: an earlier payment row changed"
                );
            }
            match answer {
                Ok(bytes) => {
                    let created = pb::CreatePaymentResponse::decode(bytes.as_slice())
                        .unwrap()
                        .payment
                        .unwrap();
                    assert_eq!(after.len(), before.len() + 1, "{what}: one new row");
                    let got = gw.get(&created.payment_id).await;
                    // GetPayment may check the status with the provider (an OTP payment):
                    // the payment's own fields must read back as they were answered.
                    assert_eq!(own(&got), own(&created), "{what}: GetPayment reads it back");
                    accepted.push((what.clone(), created.clone()));
                    let verbatim = row_holds(&db, &created.payment_id, &text).await;
                    let anywhere = row_contains(&db, &created.payment_id, &text).await;
                    if path.redacted || !verbatim {
                        // Not kept (secrets, funding details): then not partly or altered either.
                        assert!(!anywhere, "{what}: in the row, but not as sent");
                        not_journaled.insert(path.name());
                    }
                    assert!(
                        !(path.redacted && verbatim),
                        "{what}: a redacted field reached the journal"
                    );
                    *stored.entry(path.name()).or_default() += 1;
                }
                Err(status) => {
                    // Refused: with details, and nothing written.
                    assert!(
                        status.get_error_details().error_info().is_some(),
                        "{what}: {status:?}"
                    );
                    assert_ne!(status.code(), Code::Internal, "{what}: {status:?}");
                    assert_eq!(
                        after.len(),
                        before.len(),
                        "{what}: refused, yet a row was written"
                    );
                    refused
                        .entry(path.name())
                        .or_default()
                        .push(format!("{:?}", status.code()));
                }
            }
        }
    }
    println!("stored (field: attempts): {stored:?}");
    println!("refused (field: codes): {refused:?}");
    println!("accepted but not journaled: {not_journaled:?}");
    // Free-text fields take any text: these must be stored, not refused.
    for free_text in [
        "description",
        "metadata.key",
        "metadata.value",
        "contact.first_name",
    ] {
        assert_eq!(
            stored.get(free_text),
            Some(&PAYLOADS.len()),
            "{free_text} is free text"
        );
    }
    // Accepted but kept out of the journal: only OnePipe's funding details (card, account,
    // wallet, airtime, voucher), which go to the provider and nowhere else.
    for field in &not_journaled {
        assert!(
            field.starts_with("onepipe.") && field != "onepipe.order_reference",
            "{field} was accepted but is not in the journal"
        );
    }

    // The operators' listing reads every accepted payment back the same.
    let mut listed = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = pb::operator_service_client::OperatorServiceClient::new(gw.channel.clone())
            .list_journal_payments(pb::ListJournalPaymentsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for entry in page.payments {
            let payment = entry.payment.unwrap();
            listed.insert(payment.payment_id.clone(), payment);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for (what, created) in &accepted {
        let payment = listed
            .get(&created.payment_id)
            .unwrap_or_else(|| panic!("{what}: not in ListJournalPayments"));
        assert_eq!(own(payment), own(created), "{what}: ListJournalPayments");
    }

    // Every other request of the services that read or change the journal, each string
    // field in turn, the payment id fields aimed at a real payment too.
    let rows = payment_rows(&db).await;
    let real_id = rows
        .keys()
        .next()
        .unwrap()
        .trim_start_matches("billpay:v1:payment:")
        .to_owned();
    let mut calls = 0;
    for service in ["billpay.v1.PaymentService", "billpay.v1.OperatorService"] {
        for (method, input) in contract.methods(service) {
            if method.ends_with("/CreatePayment") {
                continue;
            }
            for path in contract.string_paths(&input) {
                for payload in PAYLOADS {
                    for aim in [payload.to_string(), format!("{real_id}{payload}")] {
                        let what = format!("{method} {} = {aim:?}", path.name());
                        let before = payment_rows(&db).await;
                        let answer = call_raw(&gw.channel, &method, path.encode(&aim)).await;
                        calls += 1;
                        assert_schema_intact(&db, &what).await;
                        if let Err(status) = answer {
                            assert!(
                                status.get_error_details().error_info().is_some(),
                                "{what}: {status:?}"
                            );
                            assert_ne!(status.code(), Code::Internal, "{what}: {status:?}");
                            // Handled, not turned away before reading the request.
                            assert_ne!(status.code(), Code::Unimplemented, "{what}: {status:?}");
                        }
                        assert_eq!(
                            payment_rows(&db).await,
                            before,
                            "{what}: payment rows changed"
                        );
                    }
                }
            }
        }
    }
    println!("other requests sent: {calls}");
    assert!(calls > 0);
}
