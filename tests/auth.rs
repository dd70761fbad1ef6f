//! Who may call, through a real client: API keys (stored hashed), a forwarded mesh identity
//! trusted only in `forwarded` mode, PERMISSION_DENIED for a method or provider the caller may
//! not use (before any provider call), operator RPCs only for operators, health always open;
//! per-caller rate limits (RESOURCE_EXHAUSTED with RetryInfo); payment and follow-up
//! request_ids scoped per caller; the operator's view of each payment's caller.

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
use tonic_types::StatusExt;

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
    gateway_with(AuthConfig {
        mode,
        callers: callers(),
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        ..Default::default()
    })
    .await
}

async fn gateway_with(config: AuthConfig) -> (Simulators, TestGateway) {
    gateway_over(config, Arc::new(MemoryStore::default())).await
}

async fn gateway_over(config: AuthConfig, store: Arc<MemoryStore>) -> (Simulators, TestGateway) {
    let server = ServerConfig {
        auth: Some(Arc::new(Authenticator::new(&config).expect("valid auth"))),
        ..ServerConfig::default()
    };
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = TestGateway::start_serving(
        sandbox::providers_config(&sims.base_url()),
        store,
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

/// One call per minute: a burst is all a test gets, so its outcome does not depend on timing.
const PER_MINUTE: f64 = 1.0 / 60.0;

fn list_providers() -> pb::ListProvidersRequest {
    pb::ListProvidersRequest::default()
}

#[tokio::test]
async fn a_caller_over_its_rate_limit_is_refused_with_retry_info_and_others_are_not() {
    let mut callers = callers();
    // shop: its own burst of 2; catalog-reader: the default (burst 3); ops: unlimited.
    callers[0].rate_per_second = Some(PER_MINUTE);
    callers[0].burst = Some(2);
    callers[1].rate_per_second = Some(0.0);
    let (sims, gw) = gateway_with(AuthConfig {
        mode: AuthMode::ApiKey,
        callers,
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        rate_per_second: PER_MINUTE,
        burst: Some(3),
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        gw.catalog()
            .list_providers(bearer(list_providers(), SHOP_KEY))
            .await
            .expect("within shop's burst");
    }
    let status = gw
        .catalog()
        .list_providers(bearer(list_providers(), SHOP_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(
        pb::ErrorReason::from_str_name("ERROR_REASON_RATE_LIMITED").is_some(),
        "the reason is in the contract"
    );
    let delay = retry_delay(&status).expect("RetryInfo says when to retry");
    assert!(delay > std::time::Duration::ZERO, "{delay:?}");
    assert!(delay <= std::time::Duration::from_secs(60), "{delay:?}");
    let info = status.get_error_details().error_info().unwrap().clone();
    assert_eq!(
        info.metadata.get("caller").map(String::as_str),
        Some("shop")
    );
    // Every RPC counts, and a limited payment is refused before any work.
    let status = gw
        .payments()
        .create_payment(bearer(
            payment_request("limited-1", "90101", "0000000001", 100_000),
            SHOP_KEY,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::ResourceExhausted, "RATE_LIMITED");
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    // Health stays open to the limited caller.
    tonic_health::pb::health_client::HealthClient::new(gw.channel.clone())
        .check(with_header(
            tonic_health::pb::HealthCheckRequest::default(),
            "authorization",
            &format!("Bearer {SHOP_KEY}"),
        ))
        .await
        .expect("health is not limited");

    // Other callers have buckets of their own: the default's burst, or none.
    for _ in 0..3 {
        gw.catalog()
            .list_providers(bearer(list_providers(), CATALOG_KEY))
            .await
            .expect("within the default burst");
    }
    let status = gw
        .catalog()
        .list_providers(bearer(list_providers(), CATALOG_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::ResourceExhausted, "RATE_LIMITED");
    for _ in 0..10 {
        gw.catalog()
            .list_providers(bearer(list_providers(), OPS_KEY))
            .await
            .expect("ops is unlimited");
    }
}

#[tokio::test]
async fn mode_none_is_unlimited_unless_a_default_rate_is_configured() {
    let (_sims, open) = gateway_with(AuthConfig::default()).await;
    for _ in 0..20 {
        open.catalog()
            .list_providers(list_providers())
            .await
            .expect("unlimited by default");
    }
    let (_sims, limited) = gateway_with(AuthConfig {
        rate_per_second: PER_MINUTE,
        burst: Some(2),
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        limited
            .catalog()
            .list_providers(list_providers())
            .await
            .expect("within the burst");
    }
    let status = limited
        .catalog()
        .list_providers(list_providers())
        .await
        .unwrap_err();
    assert_error(&status, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(retry_delay(&status).is_some_and(|d| !d.is_zero()));
}

#[test]
fn nonsense_rate_limits_are_refused_at_start() {
    let mut callers = callers();
    callers[2].burst = Some(0);
    callers[2].rate_per_second = Some(1.0);
    let config = AuthConfig {
        mode: AuthMode::ApiKey,
        callers,
        payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
        ..Default::default()
    };
    let error = Authenticator::new(&config).unwrap_err();
    assert!(error.contains("catalog-reader"), "{error}");
    let negative = AuthConfig {
        rate_per_second: -1.0,
        ..Default::default()
    };
    assert!(Authenticator::new(&negative).is_err());
}

const BILLING_KEY: &str = "billing-key-0c4d81";

/// OnePipe's walkthrough meter: an option to pay, for `key`'s caller.
async fn onepipe_order(gw: &TestGateway, key: &str, request_id: &str) -> pb::CreatePaymentRequest {
    let option = gw
        .customers()
        .get_payment_options(bearer(
            pb::GetPaymentOptionsRequest {
                provider: pb::Provider::Onepipe as i32,
                biller_id: "IKEDCPR".into(),
                customer_id: "10000000001".into(),
                amount: ngn(500_000),
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("options")
        .into_inner()
        .options
        .into_iter()
        .next()
        .expect("one option");
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Onepipe as i32,
        biller_id: "IKEDCPR".into(),
        product_id: option.product_id,
        customer_id: "10000000001".into(),
        amount: ngn(500_000),
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

/// The unkeyed operation id of `request_id` (what the anonymous caller's would be).
fn unkeyed_operation_id(request_id: &str) -> String {
    Sha256::digest(format!("billpay/operation/{request_id}"))[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn follow_up_request_ids_are_per_caller() {
    let mut callers = callers();
    callers.push(CallerConfig {
        name: "billing".into(),
        api_key_sha256: sha256_hex(BILLING_KEY),
        ..Default::default()
    });
    let store = Arc::new(MemoryStore::default());
    let (sims, gw) = gateway_over(
        AuthConfig {
            mode: AuthMode::ApiKey,
            callers,
            payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
            ..Default::default()
        },
        store.clone(),
    )
    .await;
    // Two callers, each its own payment waiting for an OTP.
    let mut payments = Vec::new();
    for key in [BILLING_KEY, OPS_KEY] {
        let order = onepipe_order(&gw, key, "fu-pay").await;
        let payment = gw
            .payments()
            .create_payment(bearer(order, key))
            .await
            .expect("paid")
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(state(&payment), pb::PaymentState::OtpRequired);
        payments.push((key, payment.payment_id));
    }
    assert_ne!(payments[0].1, payments[1].1);
    // The same follow-up request_ids, each caller its own operation: no IDEMPOTENCY_KEY_REUSED,
    // one provider call each.
    for (key, payment_id) in &payments {
        let validated = gw
            .payments()
            .validate_payment_otp(bearer(
                pb::ValidatePaymentOtpRequest {
                    request_id: "fu-otp".into(),
                    payment_id: payment_id.clone(),
                    otp: sandbox::onepipe::OTP.into(),
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("its own OTP operation")
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(state(&validated), pb::PaymentState::Succeeded);
    }
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 2);
    let reverse = |key: &'static str, payment_id: String| {
        let mut client = gw.payments();
        async move {
            client
                .reverse_payment(bearer(
                    pb::ReversePaymentRequest {
                        request_id: "fu-rev".into(),
                        payment_id,
                        reason: "customer asked".into(),
                    },
                    key,
                ))
                .await
                .map(|r| r.into_inner().payment.unwrap())
        }
    };
    for (key, payment_id) in &payments {
        let reversed = reverse(key, payment_id.clone())
            .await
            .expect("its own reversal");
        assert_eq!(state(&reversed), pb::PaymentState::Reversed);
    }
    assert_eq!(sims.calls.get("onepipe", "reverse_payment"), 2);
    // A replay by the same caller is its operation: answered, no new call.
    let (key, payment_id) = &payments[0];
    assert_eq!(
        state(&reverse(key, payment_id.clone()).await.expect("replayed")),
        pb::PaymentState::Reversed
    );
    assert_eq!(sims.calls.get("onepipe", "reverse_payment"), 2);
    // The operation records are keyed: none under the request_id's unkeyed id.
    for request_id in ["fu-otp", "fu-rev"] {
        let unkeyed = billpay_gateway::store::keys::operation(&unkeyed_operation_id(request_id));
        assert_eq!(
            billpay_gateway::store::Store::get(store.as_ref(), &unkeyed)
                .await
                .unwrap(),
            None,
            "{request_id}"
        );
    }
}

#[tokio::test]
async fn the_operator_sees_and_filters_by_each_payments_caller() {
    let (_sims, gw) = gateway(AuthMode::ApiKey).await;
    gw.gateway.set_operator_enabled(true);
    for (key, request_id) in [(SHOP_KEY, "c-1"), (OPS_KEY, "c-2"), (SHOP_KEY, "c-3")] {
        gw.payments()
            .create_payment(bearer(
                payment_request(request_id, "90101", "0000000001", 100_000),
                key,
            ))
            .await
            .expect("paid");
    }
    let mut operator = OperatorServiceClient::new(gw.channel.clone());
    let list = |caller: &str| {
        bearer(
            pb::ListJournalPaymentsRequest {
                caller: caller.into(),
                ..Default::default()
            },
            OPS_KEY,
        )
    };
    let all = operator
        .list_journal_payments(list(""))
        .await
        .unwrap()
        .into_inner()
        .payments;
    let mut callers: Vec<&str> = all.iter().map(|p| p.caller.as_str()).collect();
    callers.sort_unstable();
    assert_eq!(callers, ["ops", "shop", "shop"]);
    let shops = operator
        .list_journal_payments(list("shop"))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(shops.len(), 2);
    assert!(shops.iter().all(|p| p.caller == "shop"));
    let none = operator
        .list_journal_payments(list("nobody"))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert!(none.is_empty());
}

/// A caller's name scopes its payment ids and what it may see: two callers with one name (or
/// one named like unidentified calls), or two with one key, would share payments.
#[test]
fn callers_that_would_share_payments_are_refused_at_start() {
    let with = |edit: &dyn Fn(&mut Vec<CallerConfig>)| {
        let mut callers = callers();
        edit(&mut callers);
        Authenticator::new(&AuthConfig {
            mode: AuthMode::ApiKey,
            callers,
            payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
            ..Default::default()
        })
    };
    assert!(with(&|_| {}).is_ok());
    let twice = with(&|c| c[1].name = c[0].name.clone()).unwrap_err();
    assert!(twice.contains("used twice"), "{twice}");
    let reserved = with(&|c| c[0].name = "anonymous".into()).unwrap_err();
    assert!(reserved.contains("reserved"), "{reserved}");
    let same_key = with(&|c| c[1].api_key_sha256 = c[0].api_key_sha256.clone()).unwrap_err();
    assert!(same_key.contains("same key"), "{same_key}");
}

/// A retry across a change of `payment_id_key` finds the payment made under the old key when
/// the old key is listed in `previous_payment_id_keys`; without it the retry is a new payment
/// (what the setting is for).
#[tokio::test]
async fn a_retry_across_a_payment_id_key_change_replays_with_the_previous_key_listed() {
    const OLD: &str = "old-payment-id-key-77a1";
    const NEW: &str = "new-payment-id-key-2b9c";
    let store = Arc::new(MemoryStore::default());
    let config = |key: &str, previous: Option<&str>| AuthConfig {
        mode: AuthMode::ApiKey,
        callers: callers(),
        payment_id_key: Some(key.to_owned().into()),
        previous_payment_id_keys: previous.map(|p| p.to_owned().into()),
        ..Default::default()
    };
    let pay = |gw: &TestGateway| {
        let mut client = gw.payments();
        async move {
            client
                .create_payment(bearer(
                    payment_request("across-keys", "90101", "0000000001", 100_000),
                    SHOP_KEY,
                ))
                .await
                .expect("answered")
                .into_inner()
                .payment
                .unwrap()
        }
    };

    let (sims, gw) = gateway_over(config(OLD, None), store.clone()).await;
    let first = pay(&gw).await;
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;

    // Rotated, the old key kept as previous: the same payment, nothing sent.
    let (sims, gw) = gateway_over(config(NEW, Some(OLD)), store.clone()).await;
    let retried = pay(&gw).await;
    assert_eq!(retried.payment_id, first.payment_id);
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    gw.stop().await;

    // Rotated without it: the retry is a second payment.
    let (sims, gw) = gateway_over(config(NEW, None), store.clone()).await;
    let second = pay(&gw).await;
    assert_ne!(second.payment_id, first.payment_id);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;

    // Previous keys are keys: too short is refused at start.
    assert!(Authenticator::new(&config(NEW, Some("short"))).is_err());
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_resolution_records_the_authenticated_caller_beside_the_claimed_operator() {
    let logs = Logs::default();
    // A current-thread runtime: the server's tasks log through this thread's subscriber.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    );
    let store = Arc::new(MemoryStore::default());
    let (_sims, gw) = gateway_over(
        AuthConfig {
            mode: AuthMode::ApiKey,
            callers: callers(),
            payment_id_key: Some("test-payment-id-key-5e1f".to_owned().into()),
            ..Default::default()
        },
        store.clone(),
    )
    .await;
    gw.gateway.set_operator_enabled(true);
    // Customer 1111111112 stays PENDING at the simulator.
    let payment = gw
        .payments()
        .create_payment(bearer(
            payment_request("to-resolve", "90101", "1111111112", 2_000),
            SHOP_KEY,
        ))
        .await
        .expect("paid")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.state, pb::PaymentState::Pending as i32);
    // The ops caller claims to be someone else by name.
    let answered = OperatorServiceClient::new(gw.channel.clone())
        .resolve_payment(bearer(
            pb::ResolvePaymentRequest {
                request_id: "resolve-1".into(),
                payment_id: payment.payment_id.clone(),
                state: pb::PaymentState::Failed as i32,
                provider_code: "70120".into(),
                note: "declined per support ticket 4711".into(),
                operator: "grace@ops".into(),
                ..Default::default()
            },
            OPS_KEY,
        ))
        .await
        .expect("resolved")
        .into_inner()
        .payment
        .expect("the journal payment");
    let shown = answered.audit.last().expect("an audit entry in the answer");
    assert_eq!(
        (shown.operator.as_str(), shown.caller.as_str()),
        ("grace@ops", "ops")
    );
    use billpay_gateway::store::Store;
    let stored: billpay_gateway::domain::PaymentRecord = serde_json::from_slice(
        &store
            .get(&billpay_gateway::store::keys::payment(&payment.payment_id))
            .await
            .unwrap()
            .expect("stored"),
    )
    .unwrap();
    let entry = stored.audit.last().expect("an audit entry");
    assert_eq!(entry.operator, "grace@ops");
    assert_eq!(entry.caller, "ops");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("payment resolved by an operator"))
        .unwrap_or_else(|| panic!("no audit line in {text}"));
    assert!(line.contains(" audit:"), "{line}");
    assert!(line.contains(r#"operator="grace@ops""#), "{line}");
    assert!(line.contains(r#"caller="ops""#), "{line}");
    assert!(line.contains(&payment.payment_id), "{line}");
}

/// `billpay_auth_refusals_total{reason}` now (the process's metrics: other tests add to it).
fn refusals(reason: &str) -> u64 {
    let prefix = format!("billpay_auth_refusals_total{{reason=\"{reason}\"}} ");
    billpay_gateway::metrics::global()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .unwrap_or(0)
}

#[tokio::test]
async fn refused_calls_are_counted_and_logged_at_a_bounded_rate() {
    let logs = Logs::default();
    // A current-thread runtime: the server's tasks log through this thread's subscriber.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    );
    // Every answered call writes its access line here (the default writes none).
    billpay_gateway::telemetry::set_access_log(billpay_gateway::config::AccessLog::All, 1.0);
    let (_sims, gw) = gateway(AuthMode::ApiKey).await;
    let (unauthenticated, not_allowed) =
        (refusals("unauthenticated"), refusals("method_not_allowed"));
    const CALLS: u64 = 200;
    let started = std::time::Instant::now();
    for i in 0..CALLS {
        let request = list_billers(pb::Provider::Interswitch);
        let request = match i % 2 {
            0 => Request::new(request),
            _ => bearer(request, "not-a-configured-key"),
        };
        let status = gw.catalog().list_billers(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // catalog-reader may not pay.
    let status = gw
        .payments()
        .get_payment(bearer(
            pb::GetPaymentRequest {
                payment_id: "pay_00000000000000000000000000000000".into(),
            },
            CATALOG_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let elapsed = started.elapsed();

    assert!(refusals("unauthenticated") >= unauthenticated + CALLS);
    assert!(refusals("method_not_allowed") > not_allowed);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("call refused"))
        .collect();
    let lines = |reason: &str| {
        refused
            .iter()
            .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
            .count() as u64
    };
    // At most one line per second per reason (the first one at once).
    assert!(
        (1..=elapsed.as_secs() + 1).contains(&lines("unauthenticated")),
        "{elapsed:?}: {refused:#?}"
    );
    assert_eq!(lines("method_not_allowed"), 1, "{refused:#?}");
    // No per-call line for a refused call; an answered one still has its line.
    let finished = |text: &str, code: &str| {
        text.lines()
            .filter(|l| {
                l.contains("rpc finished") && l.contains(&format!("grpc_status=\"{code}\""))
            })
            .count()
    };
    assert_eq!(finished(&text, "16") + finished(&text, "7"), 0, "{text}");
    // The access line's call site may first have been reached by a concurrent test on a
    // thread without a subscriber (the setting above is process-wide), which caches "never"
    // for it; ask every live subscriber again, this test's included.
    tracing::callsite::rebuild_interest_cache();
    gw.catalog()
        .list_billers(bearer(list_billers(pb::Provider::Interswitch), CATALOG_KEY))
        .await
        .expect("an allowed call");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(finished(&text, "0"), 1, "{text}");
}
