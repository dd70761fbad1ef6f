//! A simulator of OnePipe v2 `transact` (service `pay_electricity`) for the sandbox and the
//! tests.
//!
//! Every call must carry `Authorization: Bearer <API_KEY>` and `Signature` = MD5 hex of
//! `request_ref;CLIENT_SECRET`, with a `request_ref` never seen before (a reused one answers
//! HTTP 400 `Failed` and is not processed); `auth.secure`, when sent, must decrypt with
//! the client secret (3DES, see `providers::onepipe::auth`) or the call answers HTTP 401.
//! `transaction.mock_mode` must be `Inspect`. Options answer one product per biller
//! (`<biller>-TOKEN`, customer name "Ngozi Okafor") with a fresh `order_reference`
//! (`<biller>-<meter>-<n>` for the meter's n-th options call), which `/transact` requires for
//! the same meter. A
//! `transaction_ref` sent twice answers the first transaction as it stands; nothing is paid
//! twice. Fee: NGN 100.00 (10000 kobo) per payment.
//!
//! Test data (`customer_ref` = meter number, any biller of ListBillers):
//!
//! | meter         | payment                                                              |
//! |---------------|----------------------------------------------------------------------|
//! | `10000000001` | `WaitingForOTP`; OTP `123456` succeeds, any other keeps WaitingForOTP |
//! | `10000000002` | `PendingValidation` for `date_of_birth`; `1990-01-01` (no OTP) succeeds |
//! | `10000000003` | `Successful` at once, with a token                                   |
//! | `20000000000` | `Failed` (declined: insufficient funds)                              |
//! | `30000000001` | `Processing` (PENDING); the first status query: `Successful`         |
//! | `30000000002` | `Processing` forever                                                 |
//! | `40000000000` | `Successful` after 3 seconds                                         |
//! | `50000000000` | takes the money, then answers HTTP 502; the query says `Successful`  |
//! | other         | options and payment answer `Failed` (unknown meter)                  |

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};

use super::CallCounter;
use crate::providers::onepipe::{auth, MockMode, OnePipeConfig, BILLERS};

/// Sandbox API key (not a secret: it only opens the simulator).
pub const API_KEY: &str = "onepipe-sandbox-api-key";
/// Sandbox client secret (not a secret: it only opens the simulator).
pub const CLIENT_SECRET: &str = "onepipe-sandbox-client-secret";
/// The `auth_provider` the simulator serves.
pub const AUTH_PROVIDER: &str = "BillpaySim";
/// The OTP that completes the OTP customer's payment.
pub const OTP: &str = "123456";
/// The input the validation customer is asked for, and its right value.
pub const VALIDATION_FIELD: (&str, &str) = ("date_of_birth", "1990-01-01");
/// The simulator's fee per payment, kobo.
pub const FEE_KOBO: i64 = 10_000;
/// How long the slow customer's payment takes.
pub const SLOW_PAYMENT: Duration = Duration::from_secs(3);

/// Client configuration for this simulator at `base_url` (the `/onepipe` mount).
pub fn client_config(base_url: &str) -> OnePipeConfig {
    OnePipeConfig {
        base_url: format!("{}/v2", base_url.trim_end_matches('/')),
        api_key: API_KEY.to_owned().into(),
        client_secret: CLIENT_SECRET.to_owned().into(),
        mock_mode: MockMode::Inspect,
        auth_provider: AUTH_PROVIDER.to_owned(),
        transaction_ref_prefix: "billpay-sbx-".to_owned(),
        timeout_ms: 10_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Otp,
    Validation,
    Succeed,
    Decline,
    PendingThenSucceed,
    PendingForever,
    Slow,
    TakeMoneyThen502,
}

fn behaviour(meter: &str) -> Option<Behaviour> {
    Some(match meter {
        "10000000001" => Behaviour::Otp,
        "10000000002" => Behaviour::Validation,
        "10000000003" => Behaviour::Succeed,
        "20000000000" => Behaviour::Decline,
        "30000000001" => Behaviour::PendingThenSucceed,
        "30000000002" => Behaviour::PendingForever,
        "40000000000" => Behaviour::Slow,
        "50000000000" => Behaviour::TakeMoneyThen502,
        _ => return None,
    })
}

/// A transaction the simulator has received.
struct Txn {
    number: u64,
    meter: String,
    amount_kobo: i64,
    status: &'static str,
    message: &'static str,
    resolves_on_query: bool,
}

#[derive(Default)]
struct Ledger {
    request_refs: HashSet<String>,
    /// order_reference -> meter.
    orders: HashMap<String, String>,
    transactions: HashMap<String, Txn>,
    next: u64,
}

struct Sim {
    calls: Arc<CallCounter>,
    ledger: Mutex<Ledger>,
}

impl Sim {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The simulator's routes, to be nested under `/onepipe`.
pub fn router(calls: Arc<CallCounter>) -> Router<Arc<CallCounter>> {
    let sim = Arc::new(Sim {
        calls,
        ledger: Mutex::new(Ledger::default()),
    });
    Router::new()
        .route("/v2/transact/options", post(options))
        .route("/v2/transact", post(transact))
        .route("/v2/transact/validate", post(validate))
        .route("/v2/transact/query", post(query))
        .route("/v2/transact/reverse", post(reverse))
        .with_state(sim)
}

fn failed(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": "Failed", "message": message,
                    "data": {"provider_response_code": "99", "provider": AUTH_PROVIDER,
                             "errors": null, "error": message, "provider_response": null}})),
    )
        .into_response()
}

/// Checks Bearer, Signature, a fresh request_ref, mock_mode and (when sent) auth.secure, as
/// OnePipe does; answers the decrypted `auth.secure` plaintext.
fn authenticate(
    sim: &Sim,
    headers: &HeaderMap,
    body: &Value,
) -> Result<Option<String>, Box<Response>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let unauthorized = |why: &str| {
        sim.calls.count("onepipe", "rejected_auth");
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": "Failed", "message": why})),
        )
            .into_response()
    };
    if header("Authorization") != format!("Bearer {API_KEY}") {
        return Err(Box::new(unauthorized("unknown API key")));
    }
    let request_ref = body["request_ref"].as_str().unwrap_or("");
    if request_ref.is_empty() || header("Signature") != auth::signature(request_ref, CLIENT_SECRET)
    {
        return Err(Box::new(unauthorized("Signature mismatch")));
    }
    let plaintext = match body["auth"]["secure"].as_str().filter(|s| !s.is_empty()) {
        None => None,
        Some(secure) => match auth::decrypt_secure(secure, CLIENT_SECRET) {
            Some(p) => Some(p),
            None => return Err(Box::new(unauthorized("auth.secure could not be decrypted"))),
        },
    };
    if !sim.ledger().request_refs.insert(request_ref.to_owned()) {
        sim.calls.count("onepipe", "rejected_request_ref");
        return Err(Box::new(failed(
            StatusCode::BAD_REQUEST,
            "Duplicate request_ref",
        )));
    }
    if body["transaction"]["mock_mode"].as_str() != Some("Inspect") {
        return Err(Box::new(failed(
            StatusCode::BAD_REQUEST,
            "the sandbox only serves mock_mode Inspect",
        )));
    }
    if body["request_type"].as_str() != Some("pay_electricity") {
        return Err(Box::new(failed(
            StatusCode::BAD_REQUEST,
            "unknown request_type",
        )));
    }
    Ok(plaintext)
}

fn known_biller(id: &str) -> bool {
    BILLERS.iter().any(|(b, _)| *b == id)
}

async fn options(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sim.calls.count("onepipe", "payment_options");
    if let Err(r) = authenticate(&sim, &headers, &body) {
        return *r;
    }
    let t = &body["transaction"];
    let meter = t["customer"]["customer_ref"].as_str().unwrap_or("");
    let biller = t["details"]["biller_id"].as_str().unwrap_or("");
    if !known_biller(biller) {
        return failed(StatusCode::BAD_REQUEST, "unknown biller_id");
    }
    if behaviour(meter).is_none() {
        return failed(StatusCode::BAD_REQUEST, "unknown meter number");
    }
    // `<biller>-<meter>-<n>` for the meter's n-th options call: unique, and predictable in a
    // fresh sandbox (the README walkthrough quotes it).
    let order_reference = {
        let mut ledger = sim.ledger();
        let prefix = format!("{biller}-{meter}-");
        let n = ledger
            .orders
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .count()
            + 1;
        let r = format!("{prefix}{n}");
        ledger.orders.insert(r.clone(), meter.to_owned());
        r
    };
    let amount = t["amount"].as_i64().map(|a| a.to_string());
    Json(json!({
        "status": "OptionsDelivered",
        "message": "Transaction processed successfully",
        "data": {"provider_response_code": "00", "provider": AUTH_PROVIDER, "errors": null,
            "error": null,
            "provider_response": {"products": [{
                "order_reference": order_reference,
                "biller_item_id": format!("{biller}-TOKEN"),
                "biller_item_code": biller,
                "biller_item_name": "Electricity token",
                "biller_item_description": "Electricity bought by amount",
                "biller_item_prompt": "Please enter your meter number",
                "customer_name": "Ngozi Okafor",
                "biller_item_meta": {},
                "amount": amount,
                "currency": "566",
                "terms": "<p>Tokens are not refundable once loaded.</p>",
                "terms_url": "https://example.invalid/terms"
            }], "reference": format!("OPT{order_reference}"), "meta": {}}}
    }))
    .into_response()
}

/// The envelope for a transaction as it stands.
fn answer(reference: &str, txn: &Txn) -> Response {
    let mut pr = json!({
        "reference": format!("OP{:08}", txn.number),
        "payment_status": match txn.status {
            "Successful" | "Reversed" => "Successful",
            "Failed" => "Failed",
            _ => "Processing",
        },
    });
    if txn.status == "Successful" {
        pr["fulfillment_status"] = json!("Successful");
        pr["transaction_fee"] = json!(FEE_KOBO);
        pr["transaction_final_amount"] = json!(txn.amount_kobo + FEE_KOBO);
        pr["narration"] = json!(format!("Electricity for meter {}", txn.meter));
        pr["units"] = json!(format!("{:.1}kWh", txn.amount_kobo as f64 / 100.0 / 50.0));
        pr["token"] = json!(format!(
            "{:04}-1167-5843-6580-{:04}",
            txn.number % 10_000,
            reference.len()
        ));
    }
    if txn.status == "PendingValidation" {
        pr["required_fields"] = json!([VALIDATION_FIELD.0]);
    }
    let error = (txn.status == "Failed").then_some(txn.message);
    Json(json!({
        "status": txn.status,
        "message": txn.message,
        "data": {"provider_response_code": if txn.status == "Successful" { "00" } else { "09" },
            "provider": AUTH_PROVIDER, "errors": null, "error": error, "provider_response": pr}
    }))
    .into_response()
}

/// Funding plaintext layouts of docs/providers.md §4.4: how many `;`-separated parts each has.
fn funding_parts(kind: &str) -> Option<usize> {
    match kind {
        "card" => Some(4),
        "bank.account" | "wallet" | "airtime" | "voucher" => Some(2),
        _ => None,
    }
}

async fn transact(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sim.calls.count("onepipe", "pay");
    let plaintext = match authenticate(&sim, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let kind = body["auth"]["type"].as_str().unwrap_or("");
    match (funding_parts(kind), &plaintext) {
        (Some(n), Some(p)) if p.split(';').count() == n && p.split(';').all(|s| !s.is_empty()) => {}
        _ => {
            return failed(
                StatusCode::BAD_REQUEST,
                "auth.type or auth.secure is invalid",
            )
        }
    }
    let t = &body["transaction"];
    let reference = t["transaction_ref"].as_str().unwrap_or("").to_owned();
    let meter = t["customer"]["customer_ref"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let order = t["details"]["order_reference"].as_str().unwrap_or("");
    let Some(amount) = t["amount"].as_i64().filter(|a| *a > 0) else {
        return failed(
            StatusCode::BAD_REQUEST,
            "amount must be a positive kobo integer",
        );
    };
    if reference.is_empty() || !known_biller(t["details"]["biller_id"].as_str().unwrap_or("")) {
        return failed(
            StatusCode::BAD_REQUEST,
            "transaction_ref and a known biller_id are required",
        );
    }
    let Some(behaviour) = behaviour(&meter) else {
        return failed(StatusCode::BAD_REQUEST, "unknown meter number");
    };
    let (status, message, resolves) = match behaviour {
        Behaviour::Otp => ("WaitingForOTP", "Enter the OTP sent to the customer", false),
        Behaviour::Validation => (
            "PendingValidation",
            "The provider needs the customer's date of birth",
            false,
        ),
        Behaviour::Succeed | Behaviour::Slow | Behaviour::TakeMoneyThen502 => {
            ("Successful", "Transaction processed successfully", false)
        }
        Behaviour::Decline => ("Failed", "Insufficient funds", false),
        Behaviour::PendingThenSucceed => ("Processing", "Transaction is processing", true),
        Behaviour::PendingForever => ("Processing", "Transaction is processing", false),
    };
    let response = {
        let mut ledger = sim.ledger();
        if let Some(existing) = ledger.transactions.get(&reference) {
            return answer(&reference, existing);
        }
        if ledger.orders.get(order).map(String::as_str) != Some(meter.as_str()) {
            return failed(
                StatusCode::BAD_REQUEST,
                "order_reference is required: call /transact/options for this meter first",
            );
        }
        ledger.next += 1;
        let txn = Txn {
            number: ledger.next,
            meter,
            amount_kobo: amount,
            status,
            message,
            resolves_on_query: resolves,
        };
        let response = answer(&reference, &txn);
        ledger.transactions.insert(reference, txn);
        response
    };
    match behaviour {
        Behaviour::Slow => tokio::time::sleep(SLOW_PAYMENT).await,
        Behaviour::TakeMoneyThen502 => {
            return (StatusCode::BAD_GATEWAY, "upstream error").into_response();
        }
        _ => {}
    }
    response
}

async fn validate(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sim.calls.count("onepipe", "validate_payment");
    let otp = match authenticate(&sim, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let reference = body["transaction"]["transaction_ref"]
        .as_str()
        .unwrap_or("");
    let mut ledger = sim.ledger();
    let Some(txn) = ledger.transactions.get_mut(reference) else {
        return failed(StatusCode::NOT_FOUND, "Transaction not found");
    };
    match txn.status {
        "WaitingForOTP" if otp.as_deref() == Some(OTP) => {
            (txn.status, txn.message) = ("Successful", "Transaction processed successfully");
        }
        "WaitingForOTP" => txn.message = "Invalid OTP: enter the OTP sent to the customer",
        // PendingValidation asks for information, not an OTP: an `auth.secure` here is a
        // client sending what was not asked for.
        "PendingValidation" if otp.is_some() => {
            return failed(
                StatusCode::BAD_REQUEST,
                "the transaction waits for validation details, not an OTP",
            )
        }
        "PendingValidation" => {
            let given = body["transaction"]["details"][VALIDATION_FIELD.0].as_str();
            if given == Some(VALIDATION_FIELD.1) {
                (txn.status, txn.message) = ("Successful", "Transaction processed successfully");
            } else {
                txn.message = "The date_of_birth does not match";
            }
        }
        _ => {
            return failed(
                StatusCode::BAD_REQUEST,
                "the transaction is not waiting for an OTP or validation",
            )
        }
    }
    answer(reference, txn)
}

async fn query(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sim.calls.count("onepipe", "query_payment");
    if let Err(r) = authenticate(&sim, &headers, &body) {
        return *r;
    }
    let reference = body["transaction"]["transaction_ref"]
        .as_str()
        .unwrap_or("");
    let mut ledger = sim.ledger();
    let Some(txn) = ledger.transactions.get_mut(reference) else {
        return failed(StatusCode::NOT_FOUND, "Transaction not found");
    };
    if txn.resolves_on_query {
        (txn.status, txn.message, txn.resolves_on_query) =
            ("Successful", "Transaction processed successfully", false);
    }
    answer(reference, txn)
}

async fn reverse(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sim.calls.count("onepipe", "reverse_payment");
    if let Err(r) = authenticate(&sim, &headers, &body) {
        return *r;
    }
    let reference = body["transaction"]["transaction_ref"]
        .as_str()
        .unwrap_or("");
    let mut ledger = sim.ledger();
    let Some(txn) = ledger.transactions.get_mut(reference) else {
        return failed(StatusCode::NOT_FOUND, "Transaction not found");
    };
    if txn.status != "Successful" {
        return failed(
            StatusCode::BAD_REQUEST,
            "only a successful transaction can be reversed",
        );
    }
    (txn.status, txn.message) = ("Reversed", "Transaction reversed");
    Json(json!({
        "status": "Successful",
        "message": "Reversal processed successfully",
        "data": {"provider_response_code": "00", "provider": AUTH_PROVIDER, "errors": null,
            "error": null, "provider_response": {"reference": format!("OPR{:08}", txn.number),
            "payment_status": "Reversed"}}
    }))
    .into_response()
}
