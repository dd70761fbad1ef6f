//! Error details through a real client: every reason the gateway answers over gRPC carries
//! exactly the ErrorInfo metadata keys its `ErrorReason` comment in proto/billpay/v1/common.proto
//! documents (read from the proto, not restated here), values in the contract's names
//! (`PROVIDER_SWITCH`, `CAPABILITY_GET_BALANCE`, `PAYMENT_STATE_SUCCEEDED`), a message that says
//! what is wrong in words (INVALID_ARGUMENT: every violation, in BadRequest's order), and on
//! NOT_FOUND a `ResourceInfo` naming what was asked for. The reasons that need a failing store
//! or a race (`STORE_*`, `REFERENCE_RATE_EXCEEDED`, `REQUEST_PREDATES_RECOVERY`,
//! `REQUEST_IN_FLIGHT`, `INTERNAL`) are checked against the same proto text by the unit tests of
//! `api::status`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use billpay_gateway::{
    auth::{AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::{ProvidersConfig, ServerConfig},
    gateway::PaymentSettings,
    pb::{self, operator_service_client::OperatorServiceClient},
    providers::interswitch::auth::SignatureMethod,
    sandbox::{self, Simulators},
    store::memory::MemoryStore,
};
use common::error_doc::{self, DocumentedKeys};
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::{transport::Channel, Code, Request, Status};
use tonic_types::StatusExt;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

const SHOP_KEY: &str = "errors-shop-key-8d1e";
const OPS_KEY: &str = "errors-ops-key-2b7c";
const READER_KEY: &str = "errors-reader-key-a40f";
const TINY_KEY: &str = "errors-tiny-key-61c3";

/// Reasons only the unit tests of `api::status` produce (they need a failing store or a race),
/// or another test file does through gRPC (SERVER_BUSY: tests/listener.rs; NO_ROUTE_AVAILABLE:
/// tests/directory.rs). WATCHER_TOO_SLOW: its hub is unit-tested (`gateway::events`), its
/// status in `api::status`; EVENTS_NOT_KEPT needs a Redis Cluster (`api::status`).
const UNIT_TESTED_ONLY: [&str; 11] = [
    "WATCHER_TOO_SLOW",
    "EVENTS_NOT_KEPT",
    "REQUEST_IN_FLIGHT",
    "STORE_UNAVAILABLE",
    "INTERNAL",
    "STORE_DATA_LOST",
    "STORE_POSTURE_REFUSED",
    "REFERENCE_RATE_EXCEEDED",
    "REQUEST_PREDATES_RECOVERY",
    "SERVER_BUSY",
    "NO_ROUTE_AVAILABLE",
];

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn caller(name: &str, key: &str) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        api_key_sha256: sha256_hex(key),
        identity: format!("spiffe://example.org/ns/test/sa/{name}"),
        ..Default::default()
    }
}

/// The sandbox simulators behind a gateway with API keys: `shop` may use Interswitch only,
/// `reader` only CatalogService, `tiny` one call a minute, `ops` everything. `shop` and `ops`
/// have `merchant_reads`, so balance reads and saved-bill deletions reach the provider. OnePipe is not
/// configured; requests are limited to 4096 bytes.
async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let auth = AuthConfig {
        mode: AuthMode::ApiKey,
        callers: vec![
            CallerConfig {
                providers: vec!["interswitch".into()],
                merchant_reads: true,
                ..caller("shop", SHOP_KEY)
            },
            CallerConfig {
                operator: true,
                merchant_reads: true,
                ..caller("ops", OPS_KEY)
            },
            CallerConfig {
                methods: vec!["billpay.v1.CatalogService/*".into()],
                ..caller("reader", READER_KEY)
            },
            CallerConfig {
                rate_per_second: Some(1.0 / 60.0),
                burst: Some(1),
                ..caller("tiny", TINY_KEY)
            },
        ],
        payment_id_key: Some("errors-payment-id-key-0c9d".to_owned().into()),
        ..Default::default()
    };
    let server = ServerConfig {
        auth: Some(Arc::new(Authenticator::new(&auth).expect("valid auth"))),
        max_request_bytes: 4096,
        ..ServerConfig::default()
    };
    let providers = ProvidersConfig {
        onepipe: None,
        ..sandbox::providers_config(&sims.base_url())
    };
    let gw = TestGateway::start_serving(
        providers,
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        server,
    )
    .await;
    (sims, gw)
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

/// Every status checked so far, by reason, with the keys each one sent.
#[derive(Default)]
struct Seen {
    documented: BTreeMap<String, DocumentedKeys>,
    keys: BTreeMap<String, BTreeSet<String>>,
}

impl Seen {
    fn new() -> Self {
        Self {
            documented: error_doc::documented_metadata(error_doc::COMMON_PROTO),
            keys: BTreeMap::new(),
        }
    }

    /// Asserts `status` is `code` with `reason`, carries exactly the keys the proto documents
    /// for it, and reads as one clean line; answers its metadata.
    fn check(&mut self, status: &Status, code: Code, reason: &str) -> BTreeMap<String, String> {
        assert_error(status, code, reason);
        let metadata: BTreeMap<String, String> = status
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .clone()
            .into_iter()
            .collect();
        let sent: BTreeSet<String> = metadata.keys().cloned().collect();
        let doc = self
            .documented
            .get(reason)
            .unwrap_or_else(|| panic!("{reason} is not documented in common.proto"));
        if let Err(why) = doc.check(&sent) {
            panic!("{reason}: {why}; {status:?}");
        }
        let m = status.message();
        assert!(
            !m.is_empty() && m == m.trim() && !m.contains("  "),
            "{reason}: message {m:?}"
        );
        assert!(!m.chars().any(char::is_control), "{reason}: message {m:?}");
        self.keys.entry(reason.to_owned()).or_default().extend(sent);
        metadata
    }
}

fn resource_info(status: &Status) -> (String, String, String, String) {
    let info = status
        .get_error_details()
        .resource_info()
        .cloned()
        .expect("NOT_FOUND carries a ResourceInfo");
    (
        info.resource_type,
        info.resource_name,
        info.owner,
        info.description,
    )
}

fn switch_plan_28(request_id: &str, pin: &str, expected_total: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Switch as i32,
        biller_id: "104".into(),
        product_id: "28".into(),
        customer_id: "7012345678".into(),
        amount: ngn(180_000),
        expected_total: ngn(expected_total),
        provider_options: (!pin.is_empty()).then(|| {
            pb::create_payment_request::ProviderOptions::Switch(pb::SwitchPaymentOptions {
                pin: pin.into(),
                save_information: true,
                ..Default::default()
            })
        }),
        ..Default::default()
    }
}

fn interswitch_payment(request_id: &str, customer: &str, kobo: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        biller_id: "901".into(),
        ..payment_request(request_id, "90101", customer, kobo)
    }
}

/// A unary call of `path` with any message type, for methods the typed clients cannot reach.
async fn call_as<T, U>(channel: &Channel, path: &str, message: T, key: &str) -> Status
where
    T: prost::Message + Send + Sync + 'static,
    U: prost::Message + Default + std::fmt::Debug + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    grpc.unary::<T, U, _>(
        with_key(message, key),
        path.parse().expect("a method path"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect_err("the call fails")
}

#[tokio::test]
async fn every_reason_answered_over_grpc_carries_exactly_its_documented_metadata() {
    let mut seen = Seen::new();
    let (_sims, gw) = sandbox_gateway().await;
    let mut payments = gw.payments();

    // INVALID_REQUEST: the gateway's own validation.
    let mut bad = interswitch_payment("", "0000000000", 0);
    bad.request_id.clear();
    let status = payments
        .create_payment(with_key(bad, SHOP_KEY))
        .await
        .unwrap_err();
    seen.check(&status, Code::InvalidArgument, "INVALID_REQUEST");
    // EVENTS_EXPIRED: a resume point this (memory) store never reached, as after a restart.
    let gone = pb::WatchPaymentEventsRequest {
        after_event_id: "999".into(),
        from_now: false,
    };
    let Err(status) = payments
        .watch_payment_events(with_key(gone, SHOP_KEY))
        .await
    else {
        panic!("a resume point past the last event is refused");
    };
    let meta = seen.check(&status, Code::OutOfRange, "EVENTS_EXPIRED");
    assert_eq!(meta["after_event_id"], "999");
    // INVALID_REQUEST from the provider's own rules: names the provider.
    let status = payments
        .create_payment(with_key(switch_plan_28("no-pin", "", 188_400), OPS_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(meta["provider"], "PROVIDER_SWITCH");
    assert!(
        status.message().starts_with("switch.pin: required"),
        "{status:?}"
    );

    // AMOUNT_RULE_VIOLATED: customer 0000000001 must pay at least NGN 1,000.00.
    let status = payments
        .create_payment(with_key(
            interswitch_payment("rule-1", "0000000001", 50_000),
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::InvalidArgument, "AMOUNT_RULE_VIOLATED");
    assert_eq!(meta["provider"], "PROVIDER_INTERSWITCH");
    assert_eq!(
        status.message(),
        "amount.minor_units: must be at least 100000 minor units of NGN (the customer's amount \
         rule)"
    );

    // CAPABILITY_NOT_SUPPORTED.
    let status = gw
        .accounts()
        .get_balance(with_key(
            pb::GetBalanceRequest {
                provider: pb::Provider::Interswitch as i32,
                ..Default::default()
            },
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED");
    assert_eq!(meta["provider"], "PROVIDER_INTERSWITCH");
    assert_eq!(meta["capability"], "CAPABILITY_GET_BALANCE");

    // PROVIDER_NOT_CONFIGURED.
    let status = gw
        .catalog()
        .list_billers(with_key(
            pb::ListBillersRequest {
                provider: pb::Provider::Onepipe as i32,
                ..Default::default()
            },
            OPS_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED");
    assert_eq!(meta["provider"], "PROVIDER_ONEPIPE");

    // NOT_FOUND in the journal, and at the provider (a Switch vendor with no plans list).
    let status = payments
        .get_payment(with_key(
            pb::GetPaymentRequest {
                payment_id: "pay_00000000000000000000000000000000".into(),
            },
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    seen.check(&status, Code::NotFound, "NOT_FOUND");
    let status = gw
        .catalog()
        .list_products(with_key(
            pb::ListProductsRequest {
                provider: pb::Provider::Switch as i32,
                biller_id: "999".into(),
                ..Default::default()
            },
            OPS_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::NotFound, "NOT_FOUND");
    assert_eq!(meta["provider"], "PROVIDER_SWITCH");
    let (kind, name, owner, _) = resource_info(&status);
    assert_eq!(
        (kind.as_str(), name.as_str(), owner.as_str()),
        ("billpay.v1.Biller", "999", "PROVIDER_SWITCH")
    );

    // PRODUCT_NOT_FOUND.
    let mut unlisted = interswitch_payment("unlisted-1", "0000000000", 150_000);
    unlisted.product_id = "90199".into();
    let status = payments
        .create_payment(with_key(unlisted, SHOP_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert_eq!(meta["provider"], "PROVIDER_INTERSWITCH");
    assert_eq!(meta["resource_name"], "billers/901/products/90199");

    // IDEMPOTENCY_KEY_REUSED.
    let paid = payments
        .create_payment(with_key(
            interswitch_payment("reused-1", "0000000000", 150_000),
            SHOP_KEY,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let status = payments
        .create_payment(with_key(
            interswitch_payment("reused-1", "0000000000", 160_000),
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(meta["request_id"], "reused-1");

    // PRICE_CHANGED: Switch plan 28 costs NGN 1,884.00 with its charges.
    let status = payments
        .create_payment(with_key(
            switch_plan_28("repriced", "1234", 188_000),
            OPS_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::FailedPrecondition, "PRICE_CHANGED");
    assert_eq!(meta["provider"], "PROVIDER_SWITCH");
    assert_eq!(meta["actual_minor_units"], "188400");

    // PAYMENT_STATE_CONFLICT: an operator cannot overwrite a confirmed payment.
    gw.gateway.set_operator_enabled(true);
    let mut operator = OperatorServiceClient::new(gw.channel.clone());
    let resolve = || pb::ResolvePaymentRequest {
        request_id: "resolve-1".into(),
        payment_id: paid.payment_id.clone(),
        state: pb::PaymentState::Failed as i32,
        note: "wrong".into(),
        operator: "ada@ops".into(),
        ..Default::default()
    };
    let status = operator
        .resolve_payment(with_key(resolve(), OPS_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");
    assert_eq!(meta["state"], "PAYMENT_STATE_SUCCEEDED");
    assert_eq!(meta["payment_id"], paid.payment_id);
    // SERVICE_DISABLED.
    gw.gateway.set_operator_enabled(false);
    let status = operator
        .resolve_payment(with_key(resolve(), OPS_KEY))
        .await
        .unwrap_err();
    seen.check(&status, Code::Unimplemented, "SERVICE_DISABLED");

    // CALLER_UNAUTHENTICATED, CALLER_NOT_ALLOWED (a method; a provider), RATE_LIMITED.
    let list_billers = |provider: pb::Provider| pb::ListBillersRequest {
        provider: provider as i32,
        ..Default::default()
    };
    let status = gw
        .catalog()
        .list_billers(Request::new(list_billers(pb::Provider::Interswitch)))
        .await
        .unwrap_err();
    seen.check(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    let status = payments
        .get_payment(with_key(
            pb::GetPaymentRequest {
                payment_id: paid.payment_id.clone(),
            },
            READER_KEY,
        ))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    assert_eq!(meta["caller"], "reader");
    assert_eq!(meta["method"], "billpay.v1.PaymentService/GetPayment");
    let status = gw
        .catalog()
        .list_billers(with_key(list_billers(pb::Provider::Switch), SHOP_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    assert_eq!(meta["caller"], "shop");
    assert_eq!(meta["method"], "billpay.v1.CatalogService/ListBillers");
    assert_eq!(meta["provider"], "PROVIDER_SWITCH");
    gw.catalog()
        .list_providers(with_key(pb::ListProvidersRequest::default(), TINY_KEY))
        .await
        .expect("tiny's one call");
    let status = gw
        .catalog()
        .list_providers(with_key(pb::ListProvidersRequest::default(), TINY_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::ResourceExhausted, "RATE_LIMITED");
    assert_eq!(meta["caller"], "tiny");

    // What tonic answers before any handler: an unknown method, an undecodable body (a
    // ListBillersRequest's varint where CreatePayment has its request_id string), a message
    // over the 4096-byte limit.
    let status = call_as::<_, pb::ListProvidersResponse>(
        &gw.channel,
        "/billpay.v1.CatalogService/NoSuchMethod",
        pb::ListProvidersRequest::default(),
        OPS_KEY,
    )
    .await;
    seen.check(&status, Code::Unimplemented, "UNKNOWN_METHOD");
    let status = call_as::<_, pb::CreatePaymentResponse>(
        &gw.channel,
        "/billpay.v1.PaymentService/CreatePayment",
        list_billers(pb::Provider::Interswitch),
        OPS_KEY,
    )
    .await;
    seen.check(&status, Code::InvalidArgument, "MALFORMED_REQUEST");
    let mut huge = interswitch_payment("huge-1", "0000000000", 150_000);
    huge.description = "x".repeat(5_000);
    let status = payments
        .create_payment(with_key(huge, OPS_KEY))
        .await
        .unwrap_err();
    let meta = seen.check(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");
    assert_eq!(meta["limit_bytes"], "4096");
    gw.stop().await;

    // PROVIDER_UNAVAILABLE (with and without an HTTP status), PROVIDER_AUTH_FAILED and
    // PROVIDER_REJECTED, from an Interswitch mock.
    let server = MockServer::start().await;
    let categories = format!("{}/categorys", "/api/v2/quickteller");
    for (template, code, reason) in [
        (
            ResponseTemplate::new(503),
            Code::Unavailable,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            ResponseTemplate::new(200).set_body_string("not json"),
            Code::Unavailable,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            ResponseTemplate::new(401),
            Code::FailedPrecondition,
            "PROVIDER_AUTH_FAILED",
        ),
        (
            ResponseTemplate::new(400).set_body_json(
                json!({"ResponseCode": "20021", "ResponseDescription": "Category  list\nclosed"}),
            ),
            Code::FailedPrecondition,
            "PROVIDER_REJECTED",
        ),
    ] {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(categories.as_str()))
            .respond_with(template)
            .mount(&server)
            .await;
        let gw = TestGateway::start(ProvidersConfig {
            interswitch: Some(interswitch_config(
                &server.uri(),
                SignatureMethod::Sha1,
                5_000,
            )),
            ..Default::default()
        })
        .await;
        let status = gw
            .catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: pb::Provider::Interswitch as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        let meta = seen.check(&status, code, reason);
        assert_eq!(meta["provider"], "PROVIDER_INTERSWITCH");
        assert!(!status.message().contains("list_categories"), "{status:?}");
        if reason == "PROVIDER_REJECTED" {
            assert_eq!(meta["provider_code"], "20021");
            assert_eq!(meta["provider_message"], "Category list closed");
            assert_eq!(
                status.message(),
                "PROVIDER_INTERSWITCH refused the request: Category list closed (code 20021)"
            );
        }
        gw.stop().await;
    }

    // Every reason of the contract was answered here (each optional key at least once), or is
    // one the unit tests cover.
    for (reason, doc) in &seen.documented {
        if UNIT_TESTED_ONLY.contains(&reason.as_str()) {
            assert!(
                !seen.keys.contains_key(reason),
                "{reason} is tested here now"
            );
            continue;
        }
        let sent = seen
            .keys
            .get(reason)
            .unwrap_or_else(|| panic!("{reason} was not answered over gRPC"));
        assert!(
            doc.optional.is_subset(sent),
            "{reason}: optional keys {:?} never sent ({sent:?})",
            doc.optional
        );
    }
}

#[tokio::test]
async fn a_payment_with_no_request_id_and_amount_zero_names_both_in_its_message() {
    let (_sims, gw) = sandbox_gateway().await;
    let mut request = interswitch_payment("", "0000000000", 0);
    request.request_id.clear();
    let status = gw
        .payments()
        .create_payment(with_key(request, SHOP_KEY))
        .await
        .unwrap_err();
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["request_id", "amount.minor_units"]);
    assert_eq!(
        status.message(),
        "request_id: required (the idempotency key of this call); amount.minor_units: must be \
         greater than zero"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_saved_bill_gone_at_switch_is_not_found_with_resource_info_also_on_replay() {
    let (sims, gw) = sandbox_gateway().await;
    let mut payments = gw.payments();
    let delete = |request_id: &str| pb::DeleteSavedBillRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Switch as i32,
        saved_bill_id: "41".into(),
    };
    let mut seen = Seen::new();
    for attempt in 0..2 {
        let status = payments
            .delete_saved_bill(with_key(delete("delete-41"), OPS_KEY))
            .await
            .unwrap_err();
        let meta = seen.check(&status, Code::NotFound, "NOT_FOUND");
        assert_eq!(meta["provider"], "PROVIDER_SWITCH", "attempt {attempt}");
        assert_eq!(
            status.message(),
            "saved bill \"41\" not found at PROVIDER_SWITCH"
        );
        let (kind, name, owner, description) = resource_info(&status);
        assert_eq!(kind, "billpay.v1.SavedBill");
        assert_eq!(name, "41");
        assert_eq!(owner, "PROVIDER_SWITCH");
        assert_eq!(description, status.message());
    }
    // The replay answered from the operation record: Switch was asked once.
    assert_eq!(sims.calls.get("switch", "delete_saved_bill"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_payment_not_in_the_journal_is_not_found_with_resource_info() {
    let (_sims, gw) = sandbox_gateway().await;
    let id = "pay_0123456789abcdef0123456789abcdef";
    let status = gw
        .payments()
        .get_payment(with_key(
            pb::GetPaymentRequest {
                payment_id: id.into(),
            },
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    let meta = Seen::new().check(&status, Code::NotFound, "NOT_FOUND");
    assert_eq!(meta["resource_type"], "billpay.v1.Payment");
    assert_eq!(meta["resource_name"], id);
    assert_eq!(status.message(), format!("payment {id:?} not found"));
    let (kind, name, owner, description) = resource_info(&status);
    assert_eq!(
        (kind.as_str(), name.as_str(), owner.as_str()),
        ("billpay.v1.Payment", id, "")
    );
    assert_eq!(description, status.message());
    gw.stop().await;
}
