//! The biller directory and routed payments end to end: a real tonic client -> the gateway ->
//! real HTTP -> the sandbox simulators (or wiremock for a garbled answer), with Interswitch
//! first in the routing policy. A route is left for the next only when nothing was sent
//! (provider down, not configured, not allowed, circuit open, validation or order refusal, a
//! product its catalog no longer lists); after a timeout, a 5xx or a garbled answer the
//! payment stays PENDING on its route. 500 duplicates of one routed request over two replicas
//! sharing Redis pay once.

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use billpay_gateway::{
    auth::{AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::{ProvidersConfig, ServerConfig},
    domain::{directory::Directory, ProviderId},
    gateway::{directory::DirectorySettings, PaymentSettings},
    pb::{self, directory_service_client::DirectoryServiceClient},
    providers::{guard::CallLimits, interswitch::auth::SignatureMethod},
    sandbox::{self, Simulators},
    store::{identity, memory::MemoryStore, redis::RedisStore, Store},
};
use common::{redis::RedisServer, *};
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

const IKEDC: &str = "ng.ikedc.prepaid";

async fn simulators() -> Simulators {
    Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

/// A URL where nothing listens: connections are refused.
async fn unreachable() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// The simulators' providers with `down` cut off.
async fn providers(sims: &Simulators, down: &[ProviderId]) -> ProvidersConfig {
    let mut config = sandbox::providers_config(&sims.base_url());
    sandbox::cut_off(&mut config, down, &unreachable().await);
    config
}

/// The built-in directory, Interswitch first, then OnePipe.
fn policy() -> DirectorySettings {
    DirectorySettings {
        provider_priority: vec!["interswitch".into(), "onepipe".into(), "switch".into()],
        ..Default::default()
    }
}

async fn gateway(providers: ProvidersConfig) -> TestGateway {
    let gw = TestGateway::start(providers).await;
    gw.gateway.set_directory(Directory::built_in(), policy());
    gw
}

/// A routed IKEDC payment of NGN 5,000.00 with OnePipe funding (used by the OnePipe route).
fn routed(request_id: &str, customer: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        directory_biller_id: IKEDC.into(),
        customer_id: customer.into(),
        amount: ngn(500_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
            pb::OnePipePaymentOptions {
                order_reference: String::new(),
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

fn directory(gw: &TestGateway) -> DirectoryServiceClient<tonic::transport::Channel> {
    DirectoryServiceClient::new(gw.channel.clone())
}

async fn ikedc(gw: &TestGateway) -> pb::DirectoryBiller {
    directory(gw)
        .get_directory_biller(pb::GetDirectoryBillerRequest {
            directory_biller_id: IKEDC.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .biller
        .unwrap()
}

fn route(biller: &pb::DirectoryBiller, provider: pb::Provider) -> pb::DirectoryRoute {
    biller
        .routes
        .iter()
        .find(|r| r.provider == provider as i32)
        .cloned()
        .unwrap_or_else(|| panic!("no {provider:?} route: {biller:?}"))
}

/// (provider, outcome, reason) of each attempt.
fn attempts(p: &pb::Payment) -> Vec<(pb::Provider, pb::RouteAttemptOutcome, String)> {
    p.route_attempts
        .iter()
        .map(|a| (a.provider(), a.outcome(), a.reason.clone()))
        .collect()
}

/// The attempt at `provider`, which must be there.
fn attempt_at(
    p: &pb::Payment,
    provider: pb::Provider,
) -> (pb::Provider, pb::RouteAttemptOutcome, String) {
    attempts(p)
        .into_iter()
        .find(|a| a.0 == provider)
        .unwrap_or_else(|| panic!("no {provider:?} attempt: {:?}", attempts(p)))
}

/// Asserts the payment was paid through OnePipe after `skipped` was left with a reason
/// containing `why`, and that OnePipe received exactly one payment.
fn paid_by_onepipe_after(p: &pb::Payment, sims: &Simulators, skipped: pb::Provider, why: &str) {
    assert_eq!(state(p), pb::PaymentState::Succeeded, "{p:?}");
    assert_eq!(p.provider(), pb::Provider::Onepipe);
    assert_eq!(p.biller_id, "IKEDCPR");
    assert_eq!(p.directory_biller_id, IKEDC);
    let (_, outcome, reason) = attempt_at(p, skipped);
    assert_eq!(outcome, pb::RouteAttemptOutcome::NotSent);
    assert!(
        reason.contains(why),
        "{skipped:?}: {reason:?} lacks {why:?}"
    );
    let last = p.route_attempts.last().unwrap();
    assert_eq!(last.provider(), pb::Provider::Onepipe);
    assert_eq!(last.outcome(), pb::RouteAttemptOutcome::Sent);
    assert_eq!(last.provider_reference, p.provider_reference);
    assert_eq!(sims.calls.get("onepipe", "pay"), 1);
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
}

#[tokio::test]
async fn the_directory_lists_routes_with_their_live_state() {
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[]).await).await;
    let listed = directory(&gw)
        .list_directory_billers(pb::ListDirectoryBillersRequest {
            country_code: "NG".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .billers
        .iter()
        .map(|b| b.directory_biller_id.as_str())
        .collect();
    assert!(ids.contains(&IKEDC), "{ids:?}");
    assert!(ids.len() >= 4, "{ids:?}");

    let biller = ikedc(&gw).await;
    assert_eq!(biller.currency_code, "NGN");
    assert_eq!(biller.routes.len(), 3);
    let interswitch = route(&biller, pb::Provider::Interswitch);
    assert_eq!(
        (
            interswitch.biller_id.as_str(),
            interswitch.product_id.as_str()
        ),
        ("901", "90101")
    );
    assert_eq!(interswitch.catalog_state(), pb::RouteCatalogState::Listed);
    assert!(interswitch.can_pay && interswitch.healthy && !interswitch.circuit_open);
    assert_eq!(interswitch.rank, 1);
    // The fee Interswitch's catalog states (itemFee).
    assert_eq!(
        interswitch.fee.as_ref().map(|f| f.minor_units),
        Some(10_000)
    );
    let onepipe = route(&biller, pb::Provider::Onepipe);
    assert_eq!(onepipe.catalog_state(), pb::RouteCatalogState::Listed);
    assert_eq!(onepipe.rank, 2);
    // The sandbox's Switch lists no plan for vendor 137: shown broken, never ranked.
    let switch = route(&biller, pb::Provider::Switch);
    assert_eq!(switch.catalog_state(), pb::RouteCatalogState::Broken);
    assert!(!switch.can_pay);
    assert_eq!(switch.rank, 0);
    assert!(switch.note.contains("no longer lists"), "{}", switch.note);

    let missing = directory(&gw)
        .get_directory_biller(pb::GetDirectoryBillerRequest {
            directory_biller_id: "ng.nowhere".into(),
        })
        .await
        .unwrap_err();
    assert_error(&missing, Code::NotFound, "NOT_FOUND");
    assert_eq!(
        error_meta(&missing, "resource_type").as_deref(),
        Some("billpay.v1.DirectoryBiller")
    );
    let bad = directory(&gw)
        .get_directory_biller(pb::GetDirectoryBillerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&bad, Code::InvalidArgument, "INVALID_REQUEST"),
        ["directory_biller_id"]
    );
    gw.stop().await;
}

/// Interswitch unreachable: its catalog cannot be read, so the route is left before anything
/// is sent and OnePipe pays (its options fetched by the gateway for an order_reference).
#[tokio::test]
async fn a_provider_outage_fails_over_and_the_payment_names_its_route() {
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[ProviderId::Interswitch]).await).await;
    let p = gw.pay(routed("dir-outage-1", "10000000003")).await;
    paid_by_onepipe_after(&p, &sims, pb::Provider::Interswitch, "PROVIDER_INTERSWITCH");
    assert_eq!(sims.calls.get("onepipe", "payment_options"), 1);
    // GetPayment shows the same routes; a retry replays, nothing paid again.
    let read = gw.get(&p.payment_id).await;
    assert_eq!(read.route_attempts, p.route_attempts);
    let again = gw.pay(routed("dir-outage-1", "10000000003")).await;
    assert_eq!(again.payment_id, p.payment_id);
    assert_eq!(sims.calls.get("onepipe", "pay"), 1);
    gw.stop().await;
}

/// Each certainly-not-sent cause before the claim moves the payment to the next route.
#[tokio::test]
async fn failover_on_each_cause_before_anything_is_sent() {
    // Not configured.
    let sims = simulators().await;
    let config = ProvidersConfig {
        interswitch: None,
        ..providers(&sims, &[]).await
    };
    let gw = gateway(config).await;
    let p = gw.pay(routed("dir-cause-1", "10000000003")).await;
    paid_by_onepipe_after(&p, &sims, pb::Provider::Interswitch, "not configured");
    gw.stop().await;

    // A validation refusal: the Interswitch simulator does not know meter 10000000003.
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[]).await).await;
    let p = gw.pay(routed("dir-cause-2", "10000000003")).await;
    paid_by_onepipe_after(&p, &sims, pb::Provider::Interswitch, "refused");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 1);
    gw.stop().await;

    // The provider's order rules: OnePipe first, but the request carries no OnePipe funding;
    // Interswitch pays.
    let sims = simulators().await;
    let gw = TestGateway::start(providers(&sims, &[]).await).await;
    gw.gateway.set_directory(
        Directory::built_in(),
        DirectorySettings {
            provider_priority: vec!["onepipe".into(), "interswitch".into()],
            ..Default::default()
        },
    );
    let p = gw
        .pay(pb::CreatePaymentRequest {
            provider_options: None,
            ..routed("dir-cause-3", "0000000000")
        })
        .await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded, "{p:?}");
    assert_eq!(p.provider(), pb::Provider::Interswitch);
    let (_, outcome, reason) = attempt_at(&p, pb::Provider::Onepipe);
    assert_eq!(outcome, pb::RouteAttemptOutcome::NotSent);
    assert!(reason.contains("onepipe"), "{reason}");
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

/// An open circuit: Interswitch down with a breaker that opens on the first failure. Its
/// route shows circuit_open (unhealthy, tried after the healthy one); OnePipe pays and
/// Interswitch is sent nothing, not even a validation.
#[tokio::test]
async fn an_open_circuit_is_skipped() {
    let sims = simulators().await;
    let mut config = providers(&sims, &[ProviderId::Interswitch]).await;
    if let Some(c) = config.interswitch.as_mut() {
        c.limits = CallLimits {
            breaker_failures: 1,
            breaker_open_ms: 600_000,
            ..CallLimits::default()
        };
    }
    let gw = gateway(config).await;
    // Reading the directory reads Interswitch's catalog: the failure opens the circuit.
    let _ = ikedc(&gw).await;
    let biller = ikedc(&gw).await;
    let interswitch = route(&biller, pb::Provider::Interswitch);
    assert!(
        interswitch.circuit_open && !interswitch.healthy,
        "{interswitch:?}"
    );
    assert_eq!(biller.routes[0].provider(), pb::Provider::Onepipe);
    let p = gw.pay(routed("dir-circuit-1", "10000000003")).await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    assert_eq!(p.provider(), pb::Provider::Onepipe);
    assert_eq!(sims.calls.get("onepipe", "pay"), 1);
    gw.stop().await;
}

/// A route whose product its provider no longer lists is never used, not even when it comes
/// first in the policy.
#[tokio::test]
async fn a_route_whose_product_vanished_is_never_used() {
    let sims = simulators().await;
    let gw = TestGateway::start(providers(&sims, &[]).await).await;
    let built_in = billpay_gateway::domain::directory::BUILT_IN;
    let vanished = built_in.replacen("product_id = \"90101\"", "product_id = \"90199\"", 1);
    gw.gateway
        .set_directory(Directory::parse(&vanished).unwrap(), policy());
    let interswitch = route(&ikedc(&gw).await, pb::Provider::Interswitch);
    assert_eq!(interswitch.catalog_state(), pb::RouteCatalogState::Broken);
    assert!(!interswitch.can_pay);
    // Meter 0000000000 would pay at Interswitch; the route is not used.
    let p = gw.pay(routed("dir-vanished-1", "10000000003")).await;
    paid_by_onepipe_after(&p, &sims, pb::Provider::Interswitch, "no longer lists");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 0);
    gw.stop().await;
}

/// After a 5xx, a timeout or a garbled answer the outcome is unknown: the payment stays
/// PENDING on its route and no other route is ever called, not on a retry either.
#[tokio::test]
async fn no_failover_after_an_unknown_outcome() {
    // 5xx: the simulator takes the money, then answers 502.
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[]).await).await;
    let p = gw.pay(routed("dir-unknown-5xx", "4444444444")).await;
    assert_stays_on_interswitch(&p, &gw, &sims).await;
    gw.stop().await;

    // Timeout: the simulator takes 3 s; the gateway waits 1 s.
    let sims = simulators().await;
    let mut config = providers(&sims, &[]).await;
    if let Some(c) = config.interswitch.as_mut() {
        c.timeout_ms = 1_000;
    }
    let gw = gateway(config).await;
    let p = gw.pay(routed("dir-unknown-timeout", "3333333333")).await;
    assert!(p.provider_message.contains("in time"), "{p:?}");
    assert_stays_on_interswitch(&p, &gw, &sims).await;
    gw.stop().await;

    // Garbled: Interswitch behind wiremock answers the advice with "}{".
    let sims = simulators().await;
    let server = MockServer::start().await;
    mock_interswitch_items(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/quickteller/customers/validations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"paymentCode": "90101", "customerId": "0000000001",
                "fullName": "Ada Obi", "responseCode": "90000", "amount": "0",
                "amountType": "0", "amountTypeDescription": "any"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/quickteller/payments/advices"))
        .respond_with(ResponseTemplate::new(200).set_body_string("}{"))
        .mount(&server)
        .await;
    let config = ProvidersConfig {
        interswitch: Some(interswitch_config(
            &server.uri(),
            SignatureMethod::Sha1,
            5_000,
        )),
        ..providers(&sims, &[]).await
    };
    let gw = gateway(config).await;
    let p = gw.pay(routed("dir-unknown-garbled", "0000000001")).await;
    assert_eq!(state(&p), pb::PaymentState::Pending, "{p:?}");
    assert_eq!(p.provider(), pb::Provider::Interswitch);
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
    assert_eq!(sims.calls.get("onepipe", "payment_options"), 0);
    let advices = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/payments/advices"))
        .count();
    assert_eq!(advices, 1);
    gw.stop().await;
}

async fn assert_stays_on_interswitch(p: &pb::Payment, gw: &TestGateway, sims: &Simulators) {
    assert_eq!(state(p), pb::PaymentState::Pending, "{p:?}");
    assert_eq!(p.provider(), pb::Provider::Interswitch);
    assert_eq!(
        attempts(p)
            .into_iter()
            .map(|a| (a.0, a.1))
            .collect::<Vec<_>>()
            .last(),
        Some(&(pb::Provider::Interswitch, pb::RouteAttemptOutcome::Sent))
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
    assert_eq!(sims.calls.get("onepipe", "payment_options"), 0);
    // A retry of the request_id replays (or is in flight): never another route.
    match gw
        .payments()
        .create_payment(routed(&p.request_id, &p.customer_id))
        .await
    {
        Ok(again) => {
            let again = again.into_inner().payment.unwrap();
            assert_eq!(again.payment_id, p.payment_id);
            assert_eq!(again.provider(), pb::Provider::Interswitch);
        }
        Err(status) => {
            assert_error(&status, Code::Aborted, "REQUEST_IN_FLIGHT");
        }
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
}

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

/// A caller's provider permissions apply to routes: `shop` may use Interswitch only, so with
/// Interswitch down it gets NO_ROUTE_AVAILABLE and OnePipe is sent nothing; `ops` may use
/// every provider and pays through OnePipe.
#[tokio::test]
async fn a_caller_pays_only_through_providers_it_may_use() {
    const SHOP_KEY: &str = "directory-shop-key-71b2";
    const OPS_KEY: &str = "directory-ops-key-9c04";
    let sims = simulators().await;
    let caller = |name: &str, key: &str, providers: Vec<String>| CallerConfig {
        name: name.into(),
        api_key_sha256: sha256_hex(key),
        providers,
        ..Default::default()
    };
    let auth = AuthConfig {
        mode: AuthMode::ApiKey,
        callers: vec![
            caller("shop", SHOP_KEY, vec!["interswitch".into()]),
            caller("ops", OPS_KEY, Vec::new()),
        ],
        payment_id_key: Some("directory-payment-id-key-5e1a".to_owned().into()),
        ..Default::default()
    };
    let server = ServerConfig {
        auth: Some(Arc::new(Authenticator::new(&auth).expect("valid auth"))),
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_serving(
        providers(&sims, &[ProviderId::Interswitch]).await,
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        server,
    )
    .await;
    gw.gateway.set_directory(Directory::built_in(), policy());

    // The directory as shop sees it: OnePipe cannot pay for it.
    let seen = directory(&gw)
        .get_directory_biller(with_key(
            pb::GetDirectoryBillerRequest {
                directory_biller_id: IKEDC.into(),
            },
            SHOP_KEY,
        ))
        .await
        .unwrap()
        .into_inner()
        .biller
        .unwrap();
    let onepipe = route(&seen, pb::Provider::Onepipe);
    assert!(!onepipe.can_pay, "{onepipe:?}");
    assert!(onepipe.note.contains("not allowed"), "{}", onepipe.note);

    let refused = gw
        .payments()
        .create_payment(with_key(routed("dir-shop-1", "10000000003"), SHOP_KEY))
        .await
        .unwrap_err();
    assert_error(&refused, Code::Unavailable, "NO_ROUTE_AVAILABLE");
    assert_eq!(
        error_meta(&refused, "directory_biller_id").as_deref(),
        Some(IKEDC)
    );
    let why = error_meta(&refused, "attempts").unwrap();
    assert!(why.contains("PROVIDER_ONEPIPE: not allowed"), "{why}");
    assert!(why.contains("PROVIDER_INTERSWITCH"), "{why}");
    assert!(retry_delay(&refused).is_some());
    // The metadata keys the contract documents for the reason, and no others.
    let documented = common::error_doc::documented_metadata(common::error_doc::COMMON_PROTO);
    let sent: BTreeSet<String> = ["directory_biller_id", "attempts"]
        .into_iter()
        .filter(|k| error_meta(&refused, k).is_some())
        .map(String::from)
        .collect();
    documented["NO_ROUTE_AVAILABLE"].check(&sent).unwrap();
    assert_eq!(sims.calls.get("onepipe", "pay"), 0);
    assert_eq!(sims.calls.get("onepipe", "payment_options"), 0);

    let paid = gw
        .payments()
        .create_payment(with_key(routed("dir-ops-1", "10000000003"), OPS_KEY))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.provider(), pb::Provider::Onepipe);
    assert_eq!(sims.calls.get("onepipe", "pay"), 1);
    gw.stop().await;
}

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::new(
            &redis.url(),
            Duration::from_millis(2_000),
            Duration::from_millis(2_000),
        )
        .unwrap(),
    )
}

/// 500 duplicates of one routed request_id, sent at once to two replicas sharing Redis, with
/// the first route (Interswitch) down: one OnePipe payment in total, every answer that
/// carries a payment carries the same one, and the rest are told it is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_over_two_replicas_pay_once_with_the_first_route_down() {
    let redis = RedisServer::start();
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(redis_store(&redis).as_ref(), now, &Default::default())
        .await
        .expect("store initialised");
    let sims = simulators().await;
    let down = unreachable().await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut config = sandbox::providers_config(&sims.base_url());
        sandbox::cut_off(&mut config, &[ProviderId::Interswitch], &down);
        let gw =
            TestGateway::start_with(config, redis_store(&redis), PaymentSettings::default()).await;
        gw.gateway.set_directory(Directory::built_in(), policy());
        replicas.push(gw);
    }
    let mut calls = Vec::new();
    for i in 0..500 {
        let mut client = replicas[i % 2].payments();
        calls.push(tokio::spawn(async move {
            client
                .create_payment(routed("dir-dup-1", "10000000003"))
                .await
        }));
    }
    let mut payment_ids = BTreeSet::new();
    let mut in_flight = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(answer) => {
                let p = answer.into_inner().payment.unwrap();
                assert_eq!(p.provider(), pb::Provider::Onepipe, "{p:?}");
                payment_ids.insert(p.payment_id);
            }
            Err(status) => {
                assert_error(&status, Code::Aborted, "REQUEST_IN_FLIGHT");
                in_flight += 1;
            }
        }
    }
    assert_eq!(
        payment_ids.len(),
        1,
        "{payment_ids:?} ({in_flight} in flight)"
    );
    assert_eq!(sims.calls.get("onepipe", "pay"), 1);
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    // Both replicas now answer the one payment.
    let id = payment_ids.into_iter().next().unwrap();
    for gw in &replicas {
        let p = gw.get(&id).await;
        assert_eq!(state(&p), pb::PaymentState::Succeeded);
        assert_eq!(p.provider(), pb::Provider::Onepipe);
    }
    for gw in replicas {
        gw.stop().await;
    }
}

/// ValidateCustomer and GetPaymentOptions may name a directory biller: the routes that can
/// answer are asked in policy order, and the answer names the route.
#[tokio::test]
async fn reads_may_name_a_directory_biller() {
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[]).await).await;
    let validated = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            directory_biller_id: IKEDC.into(),
            customer_id: "0000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.provider(), pb::Provider::Interswitch);
    assert_eq!(
        (validated.biller_id.as_str(), validated.product_id.as_str()),
        ("901", "90101")
    );
    // Interswitch quotes no options: OnePipe answers.
    let options = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            directory_biller_id: IKEDC.into(),
            customer_id: "10000000003".into(),
            amount: ngn(500_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(options.provider(), pb::Provider::Onepipe);
    assert_eq!(options.biller_id, "IKEDCPR");
    assert!(!options.options.is_empty());
    let mixed = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            directory_biller_id: IKEDC.into(),
            provider: pb::Provider::Interswitch as i32,
            customer_id: "0000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&mixed, Code::InvalidArgument, "INVALID_REQUEST"),
        ["provider"]
    );
    gw.stop().await;

    // Interswitch down: no other route validates customers.
    let sims = simulators().await;
    let gw = gateway(providers(&sims, &[ProviderId::Interswitch]).await).await;
    let none = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            directory_biller_id: IKEDC.into(),
            customer_id: "0000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&none, Code::Unavailable, "NO_ROUTE_AVAILABLE");
    let why = error_meta(&none, "attempts").unwrap();
    assert!(
        why.contains("PROVIDER_ONEPIPE: PROVIDER_ONEPIPE does not support"),
        "{why}"
    );
    gw.stop().await;
}
