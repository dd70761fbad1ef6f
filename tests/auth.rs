//! Who may call, through a real client: API keys (stored hashed), a forwarded mesh identity
//! trusted only in `forwarded` mode, PERMISSION_DENIED for a method or provider the caller may
//! not use (before any provider call), operator RPCs only for operators, health always open.

mod common;

use std::sync::Arc;

use billpay_gateway::{
    auth::{AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::ServerConfig,
    gateway::PaymentSettings,
    pb::{self, operator_service_client::OperatorServiceClient},
    sandbox::{self, Simulators},
    store::memory::MemoryStore,
};
use common::*;
use sha2::{Digest, Sha256};
use tonic::{Code, Request};

const SHOP_KEY: &str = "shop-key-3f9a1c";
const OPS_KEY: &str = "ops-key-77d0e2";
const CATALOG_KEY: &str = "catalog-only-key-19bb";

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn callers() -> Vec<CallerConfig> {
    vec![
        CallerConfig {
            name: "shop".into(),
            api_key_sha256: sha256_hex(SHOP_KEY),
            identity: "spiffe://example.org/ns/shop/sa/checkout".into(),
            providers: vec!["interswitch".into()],
            ..Default::default()
        },
        CallerConfig {
            name: "ops".into(),
            api_key_sha256: sha256_hex(OPS_KEY),
            identity: "CN=ops,O=Example".into(),
            operator: true,
            ..Default::default()
        },
        CallerConfig {
            name: "catalog-reader".into(),
            api_key_sha256: sha256_hex(CATALOG_KEY),
            identity: "spiffe://example.org/ns/web/sa/catalog".into(),
            methods: vec!["billpay.v1.CatalogService/*".into()],
            ..Default::default()
        },
    ]
}

async fn gateway(mode: AuthMode) -> (Simulators, TestGateway) {
    let config = AuthConfig {
        mode,
        callers: callers(),
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        ..Default::default()
    };
    let server = ServerConfig {
        auth: Some(Arc::new(Authenticator::new(&config).expect("valid auth"))),
        ..ServerConfig::default()
    };
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = TestGateway::start_serving(
        sandbox::providers_config(&sims.base_url()),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        server,
    )
    .await;
    (sims, gw)
}

fn with_header<T>(message: T, name: &'static str, value: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(name, value.parse().expect("ascii"));
    request
}

fn bearer<T>(message: T, key: &str) -> Request<T> {
    with_header(message, "authorization", &format!("Bearer {key}"))
}

fn list_billers(provider: pb::Provider) -> pb::ListBillersRequest {
    pb::ListBillersRequest {
        provider: provider as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn api_keys_identify_callers_and_anything_else_is_unauthenticated() {
    let (_sims, gw) = gateway(AuthMode::ApiKey).await;
    let isw = pb::Provider::Interswitch;
    for request in [
        Request::new(list_billers(isw)),
        bearer(list_billers(isw), "not-a-key"),
        // The hash itself is not a key.
        bearer(list_billers(isw), &sha256_hex(SHOP_KEY)),
        // A forwarded identity is not trusted in api_key mode.
        with_header(
            list_billers(isw),
            "x-forwarded-client-cert",
            "URI=spiffe://example.org/ns/shop/sa/checkout",
        ),
    ] {
        let status = gw.catalog().list_billers(request).await.unwrap_err();
        assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    }
    gw.catalog()
        .list_billers(bearer(list_billers(isw), SHOP_KEY))
        .await
        .expect("a known key in authorization: Bearer");
    gw.catalog()
        .list_billers(with_header(list_billers(isw), "x-api-key", SHOP_KEY))
        .await
        .expect("a known key in x-api-key");
    // Health stays open for the mesh.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gw.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no key");
}

#[tokio::test]
async fn a_caller_not_allowed_a_provider_or_method_is_denied_before_any_call() {
    let (sims, gw) = gateway(AuthMode::ApiKey).await;
    // shop may use Interswitch only.
    let status = gw
        .catalog()
        .list_billers(bearer(list_billers(pb::Provider::Onepipe), SHOP_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    let mut onepipe_payment = payment_request("denied-1", "90101", "0000000001", 100_000);
    onepipe_payment.provider = pb::Provider::Onepipe as i32;
    let status = gw
        .payments()
        .create_payment(bearer(onepipe_payment, SHOP_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
    // The same caller pays through Interswitch.
    let payment = gw
        .payments()
        .create_payment(bearer(
            payment_request("allowed-1", "90101", "0000000001", 100_000),
            SHOP_KEY,
        ))
        .await
        .expect("allowed provider")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.state, pb::PaymentState::Succeeded as i32);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    // catalog-reader may only call CatalogService: a payment is denied before validation.
    let status = gw
        .payments()
        .create_payment(bearer(
            payment_request("reader-1", "90101", "0000000001", 100_000),
            CATALOG_KEY,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    gw.catalog()
        .list_billers(bearer(list_billers(pb::Provider::Onepipe), CATALOG_KEY))
        .await
        .expect("every provider for catalog-reader");
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
}

#[tokio::test]
async fn operator_rpcs_are_refused_to_a_non_operator() {
    let (_sims, gw) = gateway(AuthMode::ApiKey).await;
    gw.gateway.set_operator_enabled(true);
    let mut operator = OperatorServiceClient::new(gw.channel.clone());
    let list = pb::ListJournalPaymentsRequest::default();
    for key in [SHOP_KEY, CATALOG_KEY] {
        let status = operator
            .list_journal_payments(bearer(list.clone(), key))
            .await
            .unwrap_err();
        assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    }
    operator
        .list_journal_payments(bearer(list, OPS_KEY))
        .await
        .expect("an operator lists the journal");
}

#[tokio::test]
async fn a_forwarded_identity_is_trusted_only_in_forwarded_mode() {
    let (_sims, gw) = gateway(AuthMode::Forwarded).await;
    let isw = pb::Provider::Interswitch;
    let xfcc = r#"By=spiffe://example.org/ns/pay/sa/gateway;Hash=0a1b;Subject="CN=checkout,O=Example";URI=spiffe://example.org/ns/shop/sa/checkout"#;
    gw.catalog()
        .list_billers(with_header(
            list_billers(isw),
            "x-forwarded-client-cert",
            xfcc,
        ))
        .await
        .expect("the sidecar's forwarded identity");
    // Its permissions follow: shop may not use OnePipe.
    let status = gw
        .catalog()
        .list_billers(with_header(
            list_billers(pb::Provider::Onepipe),
            "x-forwarded-client-cert",
            xfcc,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    // A subject-only certificate identifies by subject.
    OperatorServiceClient::new(gw.channel.clone())
        .list_journal_payments(with_header(
            pb::ListJournalPaymentsRequest::default(),
            "x-forwarded-client-cert",
            r#"Hash=77;Subject="CN=ops,O=Example""#,
        ))
        .await
        .map(|_| ())
        .or_else(|s| {
            // Allowed through auth; the service itself is off in this gateway.
            assert_error(&s, Code::Unimplemented, "SERVICE_DISABLED");
            Ok::<(), tonic::Status>(())
        })
        .unwrap();
    for request in [
        Request::new(list_billers(isw)),
        with_header(
            list_billers(isw),
            "x-forwarded-client-cert",
            "URI=spiffe://example.org/ns/evil/sa/x",
        ),
        // An API key means nothing in forwarded mode.
        bearer(list_billers(isw), SHOP_KEY),
    ] {
        let status = gw.catalog().list_billers(request).await.unwrap_err();
        assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn request_ids_and_payments_are_per_caller() {
    let (sims, gw) = gateway(AuthMode::ApiKey).await;
    // catalog-reader may not pay; give two payers: shop and ops (ops may call everything).
    let request = payment_request("same-request-id", "90101", "0000000001", 100_000);
    let pay = |key: &'static str| {
        let mut client = gw.payments();
        let request = request.clone();
        async move {
            client
                .create_payment(bearer(request, key))
                .await
                .expect("paid")
                .into_inner()
                .payment
                .unwrap()
        }
    };
    let shops = pay(SHOP_KEY).await;
    let ops = pay(OPS_KEY).await;
    assert_ne!(
        shops.payment_id, ops.payment_id,
        "two callers, two payments"
    );
    assert_eq!(
        sims.calls.get("interswitch", "pay"),
        2,
        "two provider calls"
    );
    // A replay by the same caller is the same payment, no new call.
    assert_eq!(pay(SHOP_KEY).await.payment_id, shops.payment_id);
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    // The id is not the unkeyed derivation of the request_id.
    assert_ne!(
        shops.payment_id,
        billpay_gateway::domain::PaymentRecord::id_for_request("same-request-id")
    );
    // Another caller's payment is NOT_FOUND; the operator sees every payment.
    let get = |id: &str| pb::GetPaymentRequest {
        payment_id: id.to_owned(),
    };
    let status = gw
        .payments()
        .get_payment(bearer(get(&ops.payment_id), SHOP_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    gw.payments()
        .get_payment(bearer(get(&shops.payment_id), SHOP_KEY))
        .await
        .expect("its own payment");
    gw.payments()
        .get_payment(bearer(get(&shops.payment_id), OPS_KEY))
        .await
        .expect("an operator sees another caller's payment");
}
