//! A simulator of the Intelworld IP2 Payments API for the sandbox and the tests.
//!
//! It checks the ApiAuth headers on every call as the gateway's chosen reading of the scheme
//! defines them ([`crate::providers::ip2::auth`]): `X-ApiAuth-ApiKey`, an `X-Date` within 5
//! minutes, `Content-MD5` of the body (required on POST) and `Authorization: ApiAuth
//! <signature>` recomputed from the query and body; anything wrong answers HTTP 401. It keeps
//! one UGX account whose balance debits lower and credits raise, and lists transactions with
//! the `ealierdate`/`laterdate` filters (ISO-8601 UTC) and `offset`/`count`.
//!
//! Test data: subscription `SUB-SANDBOX-01`, account `ACC-UGX-001` (UGX 1,000,000 at start,
//! transactions of UGX 500 to 5,000,000), channel `API`, payment methods `MTNMM` and
//! `AIRTELMM`, products `AIRTIME-MTN` and `UMEME-YAKA`. The payer or payee is
//! `PaymentMethodReference.MSISDN`:
//!
//! | MSISDN         | debit or credit                                                      |
//! |----------------|----------------------------------------------------------------------|
//! | `256700000002` | declined: ResponseCode 3, status Failed "Recipient account barred"   |
//! | `256700000003` | accepted as Pending; Successful from the first transaction listing   |
//! | `256700000004` | slow: answers after 3 seconds, Successful                            |
//! | other          | Successful at once                                                   |
//!
//! A debit larger than the balance is refused: ResponseCode 2, status Failed, "Insufficient
//! balance". A RequestId seen before answers its first transaction again (no money moves).

// Helpers answer early with the whole HTTP response the simulator sends; its size is no
// concern in a test double.
#![allow(clippy::result_large_err)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use super::CallCounter;
use crate::providers::ip2::{
    auth::{self, SignedFields, SigningOptions},
    dates,
    wire::value_text,
    Ip2Config, MAX_MEMO_CHARS,
};

/// Sandbox API key (not a secret: it only opens the simulator).
pub const API_KEY: &str = "ip2-sandbox-api-key";
/// Sandbox API password (not a secret: it only opens the simulator).
pub const API_PASSWORD: &str = "ip2-sandbox-api-password";
/// Sandbox subscriptionId.
pub const SUBSCRIPTION_ID: &str = "SUB-SANDBOX-01";
/// The sandbox account.
pub const ACCOUNT_ID: &str = "ACC-UGX-001";
/// The sandbox channel.
pub const CHANNEL_ID: &str = "API";
/// The account's balance at start, UGX.
pub const STARTING_BALANCE_UGX: i64 = 1_000_000;
/// Smallest transaction, UGX.
pub const MIN_TRANSACTION_UGX: i64 = 500;
/// Largest transaction, UGX.
pub const MAX_TRANSACTION_UGX: i64 = 5_000_000;
/// How long the slow MSISDN's transaction takes.
pub const SLOW_ANSWER: Duration = Duration::from_secs(3);
/// Largest accepted clock skew of X-Date, seconds.
const MAX_SKEW_SECS: i64 = 300;

/// Client configuration for this simulator at `base_url`.
pub fn client_config(base_url: &str) -> Ip2Config {
    Ip2Config {
        base_url: base_url.to_owned(),
        api_key: API_KEY.to_owned().into(),
        api_password: API_PASSWORD.to_owned().into(),
        subscription_id: SUBSCRIPTION_ID.to_owned(),
        account_id: ACCOUNT_ID.to_owned(),
        channel_id: CHANNEL_ID.to_owned(),
        country_code: "UG".into(),
        request_id_prefix: "BPG".into(),
        signing: SigningOptions::default(),
        page_size: 100,
        max_pages: 50,
        query_window_ms: 86_400_000,
        timeout_ms: 10_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

/// What happens to a transaction for a given MSISDN.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Succeed,
    Decline,
    PendingThenSucceed,
    Slow,
}

fn behaviour(msisdn: &str) -> Behaviour {
    match msisdn {
        "256700000002" => Behaviour::Decline,
        "256700000003" => Behaviour::PendingThenSucceed,
        "256700000004" => Behaviour::Slow,
        _ => Behaviour::Succeed,
    }
}

/// A transaction the simulator has taken.
#[derive(Clone)]
struct Txn {
    transaction_id: String,
    request_id: String,
    batch_id: String,
    credit: bool,
    amount: i64,
    status: &'static str,
    status_message: String,
    response_code: u32,
    payment_method_id: String,
    product_id: String,
    channel_id: String,
    memo: String,
    customer_id: String,
    created_ms: i64,
    /// Pending until the first listing that shows it.
    resolves_on_list: bool,
}

impl Txn {
    /// The sandbox charges UGX 100 per accepted debit, nothing on credits.
    fn fee(&self) -> i64 {
        if self.credit || self.status == "Failed" {
            0
        } else {
            100
        }
    }

    fn listing(&self) -> Value {
        json!({
            "TransactionId": self.transaction_id, "BatchId": self.batch_id,
            "AccountId": ACCOUNT_ID, "SubscriptionId": SUBSCRIPTION_ID,
            "RequestId": self.request_id, "CurrencyCode": "UGX", "CountryCode": "UG",
            "Amount": self.amount, "PaymentMethodId": self.payment_method_id,
            "ProductId": self.product_id, "ChannelId": self.channel_id, "Memo": self.memo,
            "TransactionType": if self.credit { "Credit" } else { "Debit" },
            "TransactionStatus": self.status, "StatusMessage": self.status_message,
            "Payment": {"PaymentId": format!("P{}", self.transaction_id),
                        "PaymentStatus": self.status,
                        "PaymentStatusMessage": self.status_message, "PaymentStatusCode": 0},
            "Fee": self.fee(), "Commission": 0,
            "CustomerId": self.customer_id, "CreatedOn": dates::iso(self.created_ms),
            "ModifiedOn": dates::iso(self.created_ms),
        })
    }

    fn answer(&self) -> Response {
        Json(json!({
            "ResponseCode": self.response_code,
            "ResponseMessage": if self.response_code == 0 { "Request accepted" } else { "Request declined" },
            "Data": {
                "TransactionId": self.transaction_id, "RequestId": self.request_id,
                "Amount": self.amount, "TransactionStatus": self.status,
                "StatusMessage": self.status_message, "Fee": self.fee(),
            }
        }))
        .into_response()
    }
}

struct Ledger {
    balance: i64,
    transactions: Vec<Txn>,
}

struct Sim {
    calls: Arc<CallCounter>,
    ledger: Mutex<Ledger>,
}

/// The simulator's routes, to be nested under `/intelworld_ip2`.
pub fn router(calls: Arc<CallCounter>) -> Router<Arc<CallCounter>> {
    let sim = Arc::new(Sim {
        calls,
        ledger: Mutex::new(Ledger {
            balance: STARTING_BALANCE_UGX,
            transactions: Vec::new(),
        }),
    });
    Router::new()
        .route("/paymentMethods", get(payment_methods))
        .route("/products", get(products))
        .route("/accounts", get(accounts))
        .route("/accounts/balances", get(balances))
        .route("/transactions", get(transactions))
        .route("/transactions/debits", post(debit))
        .route("/transactions/credits", post(credit))
        .with_state(sim)
}

type Params = Query<HashMap<String, String>>;

fn unauthorized(sim: &Sim, why: &str) -> Response {
    sim.calls.count("intelworld_ip2", "rejected_auth");
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"ResponseCode": 401, "ResponseMessage": why})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ResponseCode": 400, "ResponseMessage": message})),
    )
        .into_response()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Verifies ApiAuth as the gateway's reading defines it. `body` is the raw POST body with its
/// one item.
fn check_auth(
    sim: &Sim,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    body: Option<(&[u8], &Value)>,
) -> Result<(), Response> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if header("X-ApiAuth-ApiKey") != API_KEY {
        return Err(unauthorized(sim, "unknown API key"));
    }
    let date = header("X-Date");
    match dates::parse_api_auth_date(&date) {
        Some(t) if (t - now_ms() / 1_000).abs() <= MAX_SKEW_SECS => {}
        _ => {
            return Err(unauthorized(
                sim,
                "X-Date must be 'dddd, dd MMMM yyyy HH:mm:ss GMT' within 5 minutes",
            ))
        }
    }
    let content_md5 = header("Content-MD5");
    let raw_body = body.map(|(raw, _)| raw).unwrap_or_default();
    if (body.is_some() || !content_md5.is_empty()) && content_md5 != auth::base64_md5(raw_body) {
        return Err(unauthorized(sim, "Content-MD5 does not match the body"));
    }
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    if param("subscriptionId") != SUBSCRIPTION_ID || param("accountId") != ACCOUNT_ID {
        return Err(unauthorized(sim, "unknown subscriptionId or accountId"));
    }
    let mut fields = SignedFields {
        subscription_id: param("subscriptionId"),
        account_id: param("accountId"),
        ..SignedFields::default()
    };
    if let Some((_, item)) = body {
        let text = |name: &str| value_text(&item[name]);
        fields.request_id = text("RequestId");
        fields.batch_id = text("BatchId");
        fields.amount = text("Amount");
        fields.payment_method_id = text("PaymentMethodId");
        fields.product_id = text("ProductId");
        fields.currency_code = text("CurrencyCode");
        fields.country_code = text("CountryCode");
        fields.memo = text("Memo");
        fields.channel_id = text("ChannelId");
    }
    let expected = auth::signature(
        SigningOptions::default(),
        &API_KEY.to_owned().into(),
        &API_PASSWORD.to_owned().into(),
        &auth::representation(&fields, &date),
    );
    if header("Authorization") != auth::authorization(&expected) {
        return Err(unauthorized(sim, "signature mismatch"));
    }
    Ok(())
}

/// One page of `items` by `offset`/`count` (both required, as documented).
fn page(items: Vec<Value>, params: &HashMap<String, String>) -> Result<Vec<Value>, Response> {
    let number = |name: &str| params.get(name).and_then(|v| v.parse::<usize>().ok());
    let (Some(offset), Some(count)) = (number("offset"), number("count")) else {
        return Err(bad_request("offset and count are required"));
    };
    Ok(items.into_iter().skip(offset).take(count).collect())
}

async fn payment_methods(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    sim.calls.count("intelworld_ip2", "list_payment_methods");
    if let Err(r) = check_auth(&sim, &headers, &params, None) {
        return r;
    }
    let method = |id: &str, name: &str| {
        json!({"PaymentProviderId": id, "Name": name,
               "ShortDescription": format!("{name} Uganda"), "LongDescription": "",
               "Currencies": [{"CurrencyCode": "UGX", "Name": "Uganda Shilling"}],
               "Countries": [{"CountryCode": "UG", "Name": "Uganda"}],
               "Website": "", "ImageUri": "", "ThumbnailUri": ""})
    };
    let all = vec![
        method("MTNMM", "MTN Mobile Money"),
        method("AIRTELMM", "Airtel Money"),
    ];
    match page(all, &params) {
        Ok(items) => Json(items).into_response(),
        Err(r) => r,
    }
}

async fn products(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    sim.calls.count("intelworld_ip2", "list_products");
    if let Err(r) = check_auth(&sim, &headers, &params, None) {
        return r;
    }
    let product = |id: &str, name: &str| {
        json!({"ProductId": id, "Name": name, "ShortDescription": name, "LongDescription": "",
               "CurrencyCode": "UGX", "CountryCode": "UG", "ImageUri": "", "ThumbnailUri": "",
               "Website": ""})
    };
    let all = vec![
        product("AIRTIME-MTN", "MTN airtime"),
        product("UMEME-YAKA", "Umeme Yaka prepaid electricity"),
    ];
    match page(all, &params) {
        Ok(items) => Json(items).into_response(),
        Err(r) => r,
    }
}

async fn accounts(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    sim.calls.count("intelworld_ip2", "list_accounts");
    if let Err(r) = check_auth(&sim, &headers, &params, None) {
        return r;
    }
    let balance = sim.ledger.lock().unwrap_or_else(|p| p.into_inner()).balance;
    Json(json!({
        "CreatedOn": "2026-01-05T08:00:00Z", "ModifiedOn": "2026-01-05T08:00:00Z",
        "AccountId": ACCOUNT_ID, "SubscriptionId": SUBSCRIPTION_ID,
        "AccountType": "Payment", "CurrencyCode": "UGX", "CountryCode": "UG",
        "AccountStatus": "Active", "Name": "Sandbox UGX float",
        "ShortDescription": "Sandbox", "LongDescription": "",
        "AlertLevel": "0", "AlertChannel": "", "AlertEmailAddress": "", "AlertPhoneNumber": "",
        "MinimumTransactionAmount": MIN_TRANSACTION_UGX,
        "MaximumTransactionAmount": MAX_TRANSACTION_UGX,
        "TransactionPlan": "Standard", "TransactionPlanTotalAmount": 50_000_000,
        "MinimumBalance": 0, "Balance": balance,
    }))
    .into_response()
}

async fn balances(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    sim.calls.count("intelworld_ip2", "get_balance");
    if let Err(r) = check_auth(&sim, &headers, &params, None) {
        return r;
    }
    let balance = sim.ledger.lock().unwrap_or_else(|p| p.into_inner()).balance;
    Json(json!(balance)).into_response()
}

async fn transactions(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    sim.calls.count("intelworld_ip2", "list_transactions");
    if let Err(r) = check_auth(&sim, &headers, &params, None) {
        return r;
    }
    let bound = |name: &str| match params.get(name) {
        None => Ok(None),
        Some(v) => dates::parse_iso(v)
            .map(Some)
            .ok_or_else(|| bad_request(&format!("{name} must be an ISO-8601 UTC date"))),
    };
    let (from, to) = match (bound("ealierdate"), bound("laterdate")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let listed: Vec<Value> = {
        let mut ledger = sim.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let Ledger {
            balance,
            transactions,
        } = &mut *ledger;
        transactions
            .iter_mut()
            .filter(|t| {
                from.is_none_or(|f| t.created_ms >= f) && to.is_none_or(|e| t.created_ms < e)
            })
            .map(|t| {
                if t.resolves_on_list {
                    t.resolves_on_list = false;
                    t.status = "Successful";
                    t.status_message = "Transaction completed".into();
                    if t.credit {
                        *balance += t.amount;
                    }
                }
                t.listing()
            })
            .collect()
    };
    match page(listed, &params) {
        Ok(items) => Json(items).into_response(),
        Err(r) => r,
    }
}

async fn debit(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.calls.count("intelworld_ip2", "debit");
    transact(&sim, &params, &headers, &body, false).await
}

async fn credit(
    State(sim): State<Arc<Sim>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.calls.count("intelworld_ip2", "credit");
    transact(&sim, &params, &headers, &body, true).await
}

/// Takes one debit or credit: checks auth and fields, moves the balance, answers.
async fn transact(
    sim: &Sim,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    credit: bool,
) -> Response {
    let items: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(items)) if items.len() == 1 => items,
        _ => return bad_request("the body must be an array of one transaction"),
    };
    let item = &items[0];
    if let Err(r) = check_auth(sim, headers, params, Some((body, item))) {
        return r;
    }
    let text = |name: &str| item[name].as_str().unwrap_or("").to_owned();
    let msisdn = item["PaymentMethodReference"]["MSISDN"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let Some(amount) = item["Amount"].as_i64().filter(|a| *a > 0) else {
        return bad_request("Amount must be a positive whole number of UGX");
    };
    let memo = text("Memo");
    if text("RequestId").is_empty() || text("BatchId").is_empty() {
        return bad_request("RequestId and BatchId are required");
    }
    if text("CurrencyCode") != "UGX" || text("CountryCode") != "UG" {
        return bad_request("CurrencyCode must be UGX and CountryCode UG");
    }
    if !matches!(text("PaymentMethodId").as_str(), "MTNMM" | "AIRTELMM") || msisdn.is_empty() {
        return bad_request("PaymentMethodId must be a listed method, with an MSISDN reference");
    }
    if memo.is_empty() || memo.chars().count() > MAX_MEMO_CHARS || text("ChannelId") != CHANNEL_ID {
        return bad_request("Memo (1-500 characters) and ChannelId are required");
    }
    if !(MIN_TRANSACTION_UGX..=MAX_TRANSACTION_UGX).contains(&amount) {
        return bad_request("Amount is outside the account's transaction limits");
    }
    let behaviour = behaviour(&msisdn);
    let txn = {
        let mut ledger = sim.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let request_id = text("RequestId");
        if let Some(seen) = ledger
            .transactions
            .iter()
            .find(|t| t.request_id == request_id)
        {
            return seen.answer();
        }
        let (status, message, code) = if behaviour == Behaviour::Decline {
            ("Failed", "Recipient account barred".to_owned(), 3)
        } else if !credit && amount > ledger.balance {
            (
                "Failed",
                format!("Insufficient balance: UGX {} available", ledger.balance),
                2,
            )
        } else if behaviour == Behaviour::PendingThenSucceed {
            (
                "Pending",
                "Awaiting the mobile-money operator".to_owned(),
                0,
            )
        } else {
            ("Successful", "Transaction completed".to_owned(), 0)
        };
        // Debits take the money when accepted; credits add it once successful.
        if credit && status == "Successful" {
            ledger.balance += amount;
        } else if !credit && status != "Failed" {
            ledger.balance -= amount;
        }
        let txn = Txn {
            transaction_id: format!("IP2T{:08}", ledger.transactions.len() + 1),
            request_id,
            batch_id: text("BatchId"),
            credit,
            amount,
            status,
            status_message: message,
            response_code: code,
            payment_method_id: text("PaymentMethodId"),
            product_id: text("ProductId"),
            channel_id: text("ChannelId"),
            memo,
            customer_id: text("CustomerId"),
            created_ms: now_ms(),
            resolves_on_list: behaviour == Behaviour::PendingThenSucceed && status == "Pending",
        };
        ledger.transactions.push(txn.clone());
        txn
    };
    if behaviour == Behaviour::Slow {
        tokio::time::sleep(SLOW_ANSWER).await;
    }
    txn.answer()
}
