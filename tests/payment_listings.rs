//! The two payment listings through a real client -> the gateway -> the sandbox simulators over
//! HTTP: `ListOwnPayments`, each caller's own payments from the journal (newest first, by
//! state, provider and creation time, paged), and `ListProviderTransactions`, the provider's
//! own transaction list under its new name, answering what the deprecated `ListPayments`
//! answers. Which callers may call them follows `[[auth.callers]] methods`.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    auth::{AuthConfig, AuthMode, Authenticator, CallerConfig},
    config::ServerConfig,
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::memory::MemoryStore,
};
use common::*;
use sha2::{Digest, Sha256};
use tonic::{Code, Request};

const SHOP_KEY: &str = "shop-key-listings-41c2";
const BILLING_KEY: &str = "billing-key-listings-9e07";
const OPS_KEY: &str = "ops-key-listings-5ad3";
const CATALOG_KEY: &str = "catalog-key-listings-d81f";
const IP2: i32 = pb::Provider::IntelworldIp2 as i32;

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn caller(name: &str, key: &str, methods: &[&str], operator: bool) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        api_key_sha256: sha256_hex(key),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        operator,
        ..Default::default()
    }
}

/// A gateway over `store` in `mode`: shop may call the payment service's methods
/// (`billpay.v1.PaymentService/*`), billing every method but the operator's, ops is an
/// operator, catalog-reader may only read the catalog.
async fn gateway_over(mode: AuthMode, store: Arc<MemoryStore>) -> (Simulators, TestGateway) {
    let callers = match mode {
        AuthMode::None => Vec::new(),
        _ => vec![
            caller("shop", SHOP_KEY, &["billpay.v1.PaymentService/*"], false),
            caller("billing", BILLING_KEY, &[], false),
            caller("ops", OPS_KEY, &[], true),
            caller(
                "catalog-reader",
                CATALOG_KEY,
                &["billpay.v1.CatalogService/*"],
                false,
            ),
        ],
    };
    let config = AuthConfig {
        mode,
        callers,
        payment_id_key: Some("listings-payment-id-key-0c4d".to_owned().into()),
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
        store,
        PaymentSettings::default(),
        server,
    )
    .await;
    (sims, gw)
}

fn bearer<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

/// An IP2 debit to a wallet the simulator pays.
fn ip2_debit(request_id: &str, shillings: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: IP2,
        customer_id: "256700000001".into(),
        amount: ugx(shillings),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            pb::Ip2PaymentOptions {
                payment_method_id: "MTNMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), "256700000001".to_owned())].into(),
                memo: "Mobile money top-up".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

async fn pay_as(gw: &TestGateway, key: &str, request: pb::CreatePaymentRequest) -> pb::Payment {
    let payment = gw
        .payments()
        .create_payment(bearer(request, key))
        .await
        .expect("paid")
        .into_inner()
        .payment
        .expect("a payment");
    // The next payment is created at a later millisecond, so newest-first order is the
    // reverse of the order of creation (equal times would be ordered by payment id).
    tokio::time::sleep(Duration::from_millis(2)).await;
    payment
}

async fn list_own(
    gw: &TestGateway,
    key: Option<&str>,
    request: pb::ListOwnPaymentsRequest,
) -> Result<pb::ListOwnPaymentsResponse, tonic::Status> {
    let request = match key {
        Some(key) => bearer(request, key),
        None => Request::new(request),
    };
    gw.payments()
        .list_own_payments(request)
        .await
        .map(|r| r.into_inner())
}

/// The payment ids of every page of a walk with `request`'s filters, page by page.
async fn walk(
    gw: &TestGateway,
    key: Option<&str>,
    request: pb::ListOwnPaymentsRequest,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list_own(
            gw,
            key,
            pb::ListOwnPaymentsRequest {
                page_token,
                ..request.clone()
            },
        )
        .await
        .expect("listed");
        pages.push(page.payments.into_iter().map(|p| p.payment_id).collect());
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
    }
}

fn ids(payments: &[&pb::Payment]) -> Vec<String> {
    payments.iter().map(|p| p.payment_id.clone()).collect()
}

#[tokio::test]
async fn each_caller_lists_its_own_payments_by_state_provider_and_time_in_pages() {
    let store = Arc::new(MemoryStore::default());
    let (_sims, gw) = gateway_over(AuthMode::ApiKey, store.clone()).await;
    let ok = |id: &str| payment_request(id, "90101", "0000000000", 150_000);
    // Interleaved: shop's payments (one declined, one with IP2), billing's, an operator's.
    let s1 = pay_as(&gw, SHOP_KEY, ok("shop-1")).await;
    let b1 = pay_as(&gw, BILLING_KEY, ok("billing-1")).await;
    let s2 = pay_as(
        &gw,
        SHOP_KEY,
        payment_request("shop-2", "90101", "2222222222", 50_000),
    )
    .await;
    assert_eq!(state(&s2), pb::PaymentState::Failed);
    let s3 = pay_as(&gw, SHOP_KEY, ip2_debit("shop-3", 25_000)).await;
    assert_eq!(state(&s3), pb::PaymentState::Succeeded);
    let b2 = pay_as(&gw, BILLING_KEY, ok("billing-2")).await;
    let s4 = pay_as(&gw, SHOP_KEY, ok("shop-4")).await;
    let o1 = pay_as(&gw, OPS_KEY, ok("ops-1")).await;
    let all = pb::ListOwnPaymentsRequest::default();

    // Each caller its own, newest first, as GetPayment shows them; an operator too (it
    // lists everyone's with ListJournalPayments).
    let shops = list_own(&gw, Some(SHOP_KEY), all.clone()).await.unwrap();
    assert_eq!(
        ids(&shops.payments.iter().collect::<Vec<_>>()),
        ids(&[&s4, &s3, &s2, &s1])
    );
    assert!(shops.next_page_token.is_empty());
    assert_eq!(shops.payments[1], s3, "as recorded");
    assert_eq!(shops.payments[1].provider, IP2);
    let billings = list_own(&gw, Some(BILLING_KEY), all.clone()).await.unwrap();
    assert_eq!(
        ids(&billings.payments.iter().collect::<Vec<_>>()),
        ids(&[&b2, &b1])
    );
    let operators = list_own(&gw, Some(OPS_KEY), all.clone()).await.unwrap();
    assert_eq!(
        ids(&operators.payments.iter().collect::<Vec<_>>()),
        ids(&[&o1])
    );

    // Filters: state, provider, both, and creation time (start included, end excluded).
    let shop_ids = |request: pb::ListOwnPaymentsRequest| {
        let gw = &gw;
        async move { walk(gw, Some(SHOP_KEY), request).await.concat() }
    };
    let failed = pb::ListOwnPaymentsRequest {
        state: pb::PaymentState::Failed as i32,
        ..all.clone()
    };
    assert_eq!(shop_ids(failed).await, ids(&[&s2]));
    let at_ip2 = pb::ListOwnPaymentsRequest {
        provider: IP2,
        ..all.clone()
    };
    assert_eq!(shop_ids(at_ip2).await, ids(&[&s3]));
    let succeeded_at_interswitch = pb::ListOwnPaymentsRequest {
        state: pb::PaymentState::Succeeded as i32,
        provider: pb::Provider::Interswitch as i32,
        ..all.clone()
    };
    assert_eq!(shop_ids(succeeded_at_interswitch).await, ids(&[&s4, &s1]));
    let between = pb::ListOwnPaymentsRequest {
        start_time: s2.create_time,
        end_time: s4.create_time,
        ..all.clone()
    };
    assert_eq!(shop_ids(between).await, ids(&[&s3, &s2]));

    // Pages of one walk every payment once, in order.
    let one_by_one = pb::ListOwnPaymentsRequest {
        page_size: 1,
        ..all.clone()
    };
    let pages = walk(&gw, Some(SHOP_KEY), one_by_one.clone()).await;
    assert_eq!(pages.concat(), ids(&[&s4, &s3, &s2, &s1]));
    assert!(pages.iter().all(|page| page.len() <= 1));
    // A page token belongs to its caller and its filters.
    let first = list_own(&gw, Some(SHOP_KEY), one_by_one.clone())
        .await
        .unwrap();
    assert!(!first.next_page_token.is_empty());
    for (key, request) in [
        (
            BILLING_KEY,
            pb::ListOwnPaymentsRequest {
                page_token: first.next_page_token.clone(),
                ..one_by_one.clone()
            },
        ),
        (
            SHOP_KEY,
            pb::ListOwnPaymentsRequest {
                page_token: first.next_page_token.clone(),
                state: pb::PaymentState::Succeeded as i32,
                ..one_by_one.clone()
            },
        ),
    ] {
        let status = list_own(&gw, Some(key), request).await.unwrap_err();
        assert_eq!(
            assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
            ["page_token"]
        );
    }

    // Bad input is refused with the field named.
    for (request, field) in [
        (
            pb::ListOwnPaymentsRequest {
                start_time: s4.create_time,
                end_time: s1.create_time,
                ..all.clone()
            },
            "end_time",
        ),
        (
            pb::ListOwnPaymentsRequest {
                state: 99,
                ..all.clone()
            },
            "state",
        ),
        (
            pb::ListOwnPaymentsRequest {
                provider: 99,
                ..all.clone()
            },
            "provider",
        ),
        (
            pb::ListOwnPaymentsRequest {
                page_size: -1,
                ..all.clone()
            },
            "page_size",
        ),
        (
            pb::ListOwnPaymentsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: -1,
                    nanos: 0,
                }),
                ..all.clone()
            },
            "start_time",
        ),
    ] {
        let status = list_own(&gw, Some(SHOP_KEY), request).await.unwrap_err();
        assert_eq!(
            assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
            [field]
        );
    }

    // The anonymous caller of mode `none` (here a gateway over the same journal) sees every
    // caller's payments, as GetPayment does.
    let (_sims_none, open) = gateway_over(AuthMode::None, store).await;
    let everyone = walk(
        &open,
        None,
        pb::ListOwnPaymentsRequest {
            page_size: 3,
            ..all
        },
    )
    .await
    .concat();
    assert_eq!(everyone, ids(&[&o1, &s4, &b2, &s3, &s2, &b1, &s1]));
    open.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_new_listings_are_authorized_by_method_like_the_rest() {
    let (_sims, gw) = gateway_over(AuthMode::ApiKey, Arc::new(MemoryStore::default())).await;
    let provider_listing = || pb::ListProviderTransactionsRequest {
        provider: IP2,
        ..Default::default()
    };
    // `billpay.v1.PaymentService/*` covers both.
    gw.payments()
        .list_own_payments(bearer(pb::ListOwnPaymentsRequest::default(), SHOP_KEY))
        .await
        .expect("shop may list its payments");
    gw.payments()
        .list_provider_transactions(bearer(provider_listing(), SHOP_KEY))
        .await
        .expect("shop may list provider transactions");
    // A caller limited to the catalog may call neither; no credentials, no call.
    let status = gw
        .payments()
        .list_own_payments(bearer(pb::ListOwnPaymentsRequest::default(), CATALOG_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    let status = gw
        .payments()
        .list_provider_transactions(bearer(provider_listing(), CATALOG_KEY))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    let status = gw
        .payments()
        .list_own_payments(pb::ListOwnPaymentsRequest::default())
        .await
        .unwrap_err();
    assert_error(&status, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    gw.stop().await;
}

/// ListPayments, under its new name, through one handler: the same transactions, page
/// tokens and errors.
#[tokio::test]
#[allow(deprecated)] // ListPayments, the old name of ListProviderTransactions, keeps working.
async fn list_provider_transactions_answers_what_list_payments_answers() {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    gw.pay(ip2_debit("ip2-list-1", 25_000)).await;
    gw.pay(ip2_debit("ip2-list-2", 2_000_000)).await; // beyond the balance: declined
    gw.pay(ip2_debit("ip2-list-3", 1_000)).await;

    let old = |request: pb::ListProviderTransactionsRequest| {
        let mut client = gw.payments();
        async move {
            client
                .list_payments(pb::ListPaymentsRequest {
                    provider: request.provider,
                    account_id: request.account_id,
                    page_size: request.page_size,
                    page_token: request.page_token,
                    start_time: request.start_time,
                    end_time: request.end_time,
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    (r.transactions, r.next_page_token)
                })
        }
    };
    let new = |request: pb::ListProviderTransactionsRequest| {
        let mut client = gw.payments();
        async move {
            client.list_provider_transactions(request).await.map(|r| {
                let r = r.into_inner();
                (r.transactions, r.next_page_token)
            })
        }
    };
    let all = pb::ListProviderTransactionsRequest {
        provider: IP2,
        ..Default::default()
    };
    let (listed, token) = new(all.clone()).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(token.is_empty());
    assert_eq!(old(all.clone()).await.unwrap(), (listed, token));

    // Page by page, each name's token taken by the other.
    let mut request = pb::ListProviderTransactionsRequest {
        page_size: 2,
        ..all.clone()
    };
    let mut pages = 0;
    loop {
        let (transactions, next) = new(request.clone()).await.unwrap();
        assert_eq!(
            old(request.clone()).await.unwrap(),
            (transactions.clone(), next.clone())
        );
        pages += 1;
        if next.is_empty() {
            break;
        }
        request.page_token = next;
    }
    assert_eq!(pages, 2);

    // Filters and refusals alike.
    let none_before_2001 = pb::ListProviderTransactionsRequest {
        end_time: Some(prost_types::Timestamp {
            seconds: 1_000_000_000,
            nanos: 0,
        }),
        ..all.clone()
    };
    let (transactions, _) = new(none_before_2001.clone()).await.unwrap();
    assert!(transactions.is_empty());
    assert_eq!(
        old(none_before_2001).await.unwrap(),
        (transactions, String::new())
    );
    let backwards = pb::ListProviderTransactionsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: 2_000_000_000,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: 1_000_000_000,
            nanos: 0,
        }),
        ..all.clone()
    };
    for status in [
        new(backwards.clone()).await.unwrap_err(),
        old(backwards).await.unwrap_err(),
    ] {
        assert_eq!(
            assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
            ["end_time"]
        );
    }
    let unsupported = pb::ListProviderTransactionsRequest {
        provider: pb::Provider::Interswitch as i32,
        ..Default::default()
    };
    let (a, b) = (
        new(unsupported.clone()).await.unwrap_err(),
        old(unsupported).await.unwrap_err(),
    );
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(a.code(), Code::Unimplemented);
    gw.stop().await;
}
