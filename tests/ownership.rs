//! Provider-side objects belong to the caller that made them, through a real client against the
//! sandbox simulators over HTTP: two API-key callers (alice, bob) see and delete only their own
//! Switch saved bills and IP2 transactions (ListProviderTransactions); another's saved bill is
//! NOT_FOUND and is not sent to Switch; a bill both saved stays at Switch for one when the other
//! deletes it; balances and accounts are PERMISSION_DENIED without `merchant_reads`, before any
//! provider call; a caller with `merchant_reads` (treasury) sees and deletes everything.

mod common;

use std::sync::Arc;

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

const ALICE: &str = "alice-key-0a1b2c";
const BOB: &str = "bob-key-3d4e5f";
const TREASURY: &str = "treasury-key-6a7b8c";
const SWITCH: i32 = pb::Provider::Switch as i32;
const IP2: i32 = pb::Provider::IntelworldIp2 as i32;

fn caller(name: &str, key: &str, merchant_reads: bool) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        api_key_sha256: Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        merchant_reads,
        ..Default::default()
    }
}

async fn gateway() -> (Simulators, TestGateway) {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let gw = gateway_over(
        &sims,
        Arc::new(MemoryStore::default()),
        "ownership-test-key-91c2",
        None,
    )
    .await;
    (sims, gw)
}

/// A gateway in front of `sims` over `store`, with `payment_id_key` `key` (and the keys it
/// replaced).
async fn gateway_over(
    sims: &Simulators,
    store: Arc<MemoryStore>,
    key: &str,
    previous: Option<&str>,
) -> TestGateway {
    let auth = AuthConfig {
        mode: AuthMode::ApiKey,
        callers: vec![
            caller("alice", ALICE, false),
            caller("bob", BOB, false),
            caller("treasury", TREASURY, true),
        ],
        payment_id_key: Some(key.to_owned().into()),
        previous_payment_id_keys: previous.map(|p| p.to_owned().into()),
        ..Default::default()
    };
    let server = ServerConfig {
        auth: Some(Arc::new(Authenticator::new(&auth).expect("valid auth"))),
        ..ServerConfig::default()
    };
    TestGateway::start_serving(
        sandbox::providers_config(&sims.base_url()),
        store,
        PaymentSettings::default(),
        server,
    )
    .await
}

fn as_caller<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

async fn pay(gw: &TestGateway, key: &str, request: pb::CreatePaymentRequest) -> pb::Payment {
    let id = request.request_id.clone();
    gw.payments()
        .create_payment(as_caller(request, key))
        .await
        .unwrap_or_else(|s| panic!("{id}: {s:?}"))
        .into_inner()
        .payment
        .expect("a payment")
}

/// A Switch DStv Access payment that saves the bill.
fn saved_dstv(request_id: &str, customer: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: SWITCH,
        biller_id: "104".into(),
        product_id: "28".into(),
        customer_id: customer.into(),
        amount: ngn(180_000),
        expected_total: ngn(188_400),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
            pb::SwitchPaymentOptions {
                pin: sandbox::switch::PIN.into(),
                save_information: true,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn ip2_debit(request_id: &str, msisdn: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: IP2,
        customer_id: msisdn.into(),
        amount: ugx(5_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            pb::Ip2PaymentOptions {
                payment_method_id: "MTNMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), msisdn.to_owned())].into(),
                memo: format!("top-up {request_id}"),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Every saved bill `key`'s caller sees, walking pages of `page_size`.
async fn saved_bills(gw: &TestGateway, key: &str, page_size: i32) -> Vec<pb::SavedBill> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = gw
            .payments()
            .list_saved_bills(as_caller(
                pb::ListSavedBillsRequest {
                    provider: SWITCH,
                    page_size,
                    page_token,
                },
                key,
            ))
            .await
            .expect("list saved bills")
            .into_inner();
        all.extend(page.saved_bills);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

fn customers(bills: &[pb::SavedBill]) -> Vec<&str> {
    let mut ids: Vec<&str> = bills.iter().map(|b| b.customer_id.as_str()).collect();
    ids.sort_unstable();
    ids
}

async fn delete(
    gw: &TestGateway,
    key: &str,
    request_id: &str,
    saved_bill_id: &str,
) -> Result<(), tonic::Status> {
    gw.payments()
        .delete_saved_bill(as_caller(
            pb::DeleteSavedBillRequest {
                request_id: request_id.into(),
                provider: SWITCH,
                saved_bill_id: saved_bill_id.into(),
            },
            key,
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn saved_bills_are_seen_and_deleted_only_by_the_caller_that_saved_them() {
    let (sims, gw) = gateway().await;
    pay(&gw, ALICE, saved_dstv("alice-save-1", "7012345601")).await;
    pay(&gw, ALICE, saved_dstv("alice-save-2", "7012345602")).await;
    pay(&gw, BOB, saved_dstv("bob-save-1", "7012345603")).await;

    // Pages of one: a page of only another's bills comes back empty with a token, and the walk
    // still reaches every bill of the caller's once.
    assert_eq!(
        customers(&saved_bills(&gw, ALICE, 1).await),
        ["7012345601", "7012345602"]
    );
    assert_eq!(customers(&saved_bills(&gw, BOB, 1).await), ["7012345603"]);
    let all = saved_bills(&gw, TREASURY, 0).await;
    assert_eq!(customers(&all), ["7012345601", "7012345602", "7012345603"]);

    // Bob deleting alice's bill: NOT_FOUND, and nothing is sent to Switch.
    let alices = all.iter().find(|b| b.customer_id == "7012345601").unwrap();
    let deletes_before = sims.calls.get("switch", "delete_saved_bill");
    let refused = delete(&gw, BOB, "bob-del-1", &alices.saved_bill_id)
        .await
        .expect_err("not bob's");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(
        sims.calls.get("switch", "delete_saved_bill"),
        deletes_before
    );
    assert_eq!(saved_bills(&gw, TREASURY, 0).await.len(), 3);
    // An id Switch does not list at all: NOT_FOUND as well.
    let unknown = delete(&gw, BOB, "bob-del-2", "999999").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Alice deletes her own: gone at Switch; her retry replays OK.
    delete(&gw, ALICE, "alice-del-1", &alices.saved_bill_id)
        .await
        .expect("alice's own bill");
    delete(&gw, ALICE, "alice-del-1", &alices.saved_bill_id)
        .await
        .expect("a retry replays");
    assert_eq!(
        sims.calls.get("switch", "delete_saved_bill"),
        deletes_before + 1
    );
    assert_eq!(customers(&saved_bills(&gw, ALICE, 0).await), ["7012345602"]);
    assert_eq!(saved_bills(&gw, TREASURY, 0).await.len(), 2);

    // The treasury may delete anyone's.
    let bobs = saved_bills(&gw, BOB, 0).await.remove(0);
    delete(&gw, TREASURY, "treasury-del-1", &bobs.saved_bill_id)
        .await
        .expect("merchant_reads deletes any bill");
    assert!(saved_bills(&gw, BOB, 0).await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_bill_two_callers_saved_stays_for_one_when_the_other_deletes_it() {
    let (sims, gw) = gateway().await;
    pay(&gw, ALICE, saved_dstv("alice-shared", "7012345699")).await;
    pay(&gw, BOB, saved_dstv("bob-shared", "7012345699")).await;
    let alices = saved_bills(&gw, ALICE, 0).await;
    assert!(!alices.is_empty());
    assert!(alices.iter().all(|b| b.customer_id == "7012345699"));

    let deletes_before = sims.calls.get("switch", "delete_saved_bill");
    delete(&gw, ALICE, "alice-del-shared", &alices[0].saved_bill_id)
        .await
        .expect("alice drops her claim");
    assert_eq!(
        sims.calls.get("switch", "delete_saved_bill"),
        deletes_before,
        "bob saved it too: it stays at Switch"
    );
    assert!(saved_bills(&gw, ALICE, 0).await.is_empty());
    assert_eq!(saved_bills(&gw, BOB, 0).await.len(), alices.len());
    // Alice's retry replays; a new deletion by alice is NOT_FOUND now.
    delete(&gw, ALICE, "alice-del-shared", &alices[0].saved_bill_id)
        .await
        .expect("replayed");
    let again = delete(&gw, ALICE, "alice-del-again", &alices[0].saved_bill_id)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    gw.stop().await;
}

async fn transactions(gw: &TestGateway, key: &str, page_size: i32) -> Vec<String> {
    let mut references = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = gw
            .payments()
            .list_provider_transactions(as_caller(
                pb::ListProviderTransactionsRequest {
                    provider: IP2,
                    page_size,
                    page_token,
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("list transactions")
            .into_inner();
        references.extend(page.transactions.into_iter().map(|t| t.provider_reference));
        if page.next_page_token.is_empty() {
            references.sort_unstable();
            return references;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn provider_transactions_show_only_the_callers_own_and_balances_need_merchant_reads() {
    let (sims, gw) = gateway().await;
    let a1 = pay(&gw, ALICE, ip2_debit("alice-debit-1", "256700000011")).await;
    let b1 = pay(&gw, BOB, ip2_debit("bob-debit-1", "256700000012")).await;
    let a2 = pay(&gw, ALICE, ip2_debit("alice-debit-2", "256700000013")).await;

    let mut alices = vec![a1.provider_reference, a2.provider_reference];
    alices.sort_unstable();
    assert_eq!(transactions(&gw, ALICE, 1).await, alices);
    assert_eq!(transactions(&gw, BOB, 2).await, [b1.provider_reference]);
    let all = transactions(&gw, TREASURY, 0).await;
    assert!(all.len() >= 3);
    assert!(alices.iter().all(|r| all.contains(r)));

    // Merchant-wide reads: refused before any provider call without the permission.
    let (balances, accounts) = (
        sims.calls.get("intelworld_ip2", "get_balance"),
        sims.calls.get("intelworld_ip2", "list_accounts"),
    );
    for key in [ALICE, BOB] {
        let refused = gw
            .accounts()
            .get_balance(as_caller(
                pb::GetBalanceRequest {
                    provider: IP2,
                    ..Default::default()
                },
                key,
            ))
            .await
            .unwrap_err();
        assert_error(&refused, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
        let refused = gw
            .accounts()
            .list_accounts(as_caller(
                pb::ListAccountsRequest {
                    provider: IP2,
                    ..Default::default()
                },
                key,
            ))
            .await
            .unwrap_err();
        assert_error(&refused, Code::PermissionDenied, "CALLER_NOT_ALLOWED");
    }
    assert_eq!(sims.calls.get("intelworld_ip2", "get_balance"), balances);
    assert_eq!(sims.calls.get("intelworld_ip2", "list_accounts"), accounts);
    // The InterIntel float is the merchant's too.
    let refused = gw
        .accounts()
        .get_balance(as_caller(
            pb::GetBalanceRequest {
                provider: pb::Provider::Interintel as i32,
                product_id: "1".into(),
                ..Default::default()
            },
            ALICE,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    gw.accounts()
        .get_balance(as_caller(
            pb::GetBalanceRequest {
                provider: IP2,
                ..Default::default()
            },
            TREASURY,
        ))
        .await
        .expect("merchant_reads reads the balance");
    gw.accounts()
        .list_accounts(as_caller(
            pb::ListAccountsRequest {
                provider: IP2,
                ..Default::default()
            },
            TREASURY,
        ))
        .await
        .expect("merchant_reads lists accounts");
    gw.stop().await;
}

#[tokio::test]
async fn a_deletion_request_id_from_before_a_key_change_replays_and_never_deletes_another_bill() {
    let sims =
        Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let store = Arc::new(MemoryStore::default());
    let before = gateway_over(&sims, store.clone(), "ownership-key-before-1f2e", None).await;
    pay(&before, ALICE, saved_dstv("alice-rot-1", "7012345611")).await;
    pay(&before, ALICE, saved_dstv("alice-rot-2", "7012345612")).await;
    pay(&before, BOB, saved_dstv("bob-rot-1", "7012345613")).await;
    let alices = saved_bills(&before, ALICE, 0).await;
    let first = alices
        .iter()
        .find(|b| b.customer_id == "7012345611")
        .unwrap();
    delete(&before, ALICE, "alice-rot-del", &first.saved_bill_id)
        .await
        .unwrap();
    before.stop().await;

    // The key changed; the old one is listed so retries find their records.
    let after = gateway_over(
        &sims,
        store,
        "ownership-key-after-3c4d",
        Some("ownership-key-before-1f2e"),
    )
    .await;
    let deletes = sims.calls.get("switch", "delete_saved_bill");
    // Alice's retry replays: not sent again.
    delete(&after, ALICE, "alice-rot-del", &first.saved_bill_id)
        .await
        .expect("replayed across the key change");
    // The same request_id naming bob's bill is refused as a reused key, never sent.
    let bobs = saved_bills(&after, BOB, 0).await.remove(0);
    let reused = delete(&after, ALICE, "alice-rot-del", &bobs.saved_bill_id)
        .await
        .unwrap_err();
    assert_error(&reused, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(sims.calls.get("switch", "delete_saved_bill"), deletes);
    assert_eq!(saved_bills(&after, BOB, 0).await.len(), 1);
    after.stop().await;
}
