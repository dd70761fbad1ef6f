//! A faithful simulator of Interswitch Quickteller v2 for the sandbox and the tests.
//!
//! It checks InterswitchAuth on every call (Authorization, TerminalID, SignatureMethod, a
//! Timestamp within 5 minutes, a Nonce never seen before, and the Signature recomputed from
//! the URL the client called) and answers HTTP 401 when any is wrong. Payments apply the
//! customer's amountType rule, remember each requestReference (a reused one answers 10001),
//! and are found again by the transaction query. `GET /interswitch/_sandbox/advices` lists
//! every payment advice received, in order (a reused reference included), so that a test or
//! `scripts/chaos.sh` can count payments made twice and references reused.
//!
//! Test data (product `90101`, Ikeja Electric prepaid token, unless stated):
//!
//! | customerId   | validation                         | payment advice                          |
//! |--------------|------------------------------------|-----------------------------------------|
//! | `0000000000` | amountType 0 (any)                 | succeeds, returns a token               |
//! | `0000000001` | 1: minimum  NGN 1,000.00 (100000)  | succeeds when the rule holds            |
//! | `0000000002` | 2: greater than 100000             | succeeds when the rule holds            |
//! | `0000000003` | 3: maximum 100000                  | succeeds when the rule holds            |
//! | `0000000004` | 4: less than 100000                | succeeds when the rule holds            |
//! | `0000000005` | 5: exactly 100000                  | succeeds when the rule holds            |
//! | `1111111111` | any                                | PENDING; the first status query: success|
//! | `1111111112` | any                                | PENDING forever                         |
//! | `2222222222` | any                                | declined: 70120, grouping FAILED        |
//! | `3333333333` | any                                | succeeds after 3 seconds                |
//! | `4444444444` | any                                | takes the money, then answers HTTP 502  |
//! | other        | refused: responseCode 20050        | —                                       |

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{OriginalUri, Path, Query, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use super::CallCounter;
use crate::domain::{AmountRuleKind, Currency, Money};
use crate::providers::interswitch::{
    auth::{self, SignatureMethod},
    InterswitchConfig,
};

/// Sandbox client id (not a secret: it only opens the simulator).
pub const CLIENT_ID: &str = "IKIASANDBOX0000000000000000000000000000001";
/// Sandbox client secret (not a secret: it only opens the simulator).
pub const CLIENT_SECRET: &str = "sandbox-secret-not-for-production";
/// Sandbox TerminalID.
pub const TERMINAL_ID: &str = "3DMO0001";
/// Sandbox requestReference prefix.
pub const REFERENCE_PREFIX: &str = "1456";
/// How long the slow customer's payment takes.
pub const SLOW_PAYMENT: Duration = Duration::from_secs(3);
/// The reference amount of the amountType customers: NGN 1,000.00.
pub const RULE_AMOUNT_KOBO: i64 = 100_000;
/// Largest accepted clock skew of the Timestamp header, seconds.
const MAX_SKEW_SECS: i64 = 300;

/// Client configuration for this simulator at `base_url`.
pub fn client_config(base_url: &str) -> InterswitchConfig {
    InterswitchConfig {
        base_url: base_url.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned().into(),
        terminal_id: TERMINAL_ID.to_owned(),
        request_reference_length: 12,
        request_reference_prefix: REFERENCE_PREFIX.to_owned(),
        signature_method: SignatureMethod::Sha1,
        timeout_ms: 10_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

/// What the simulator does with a customer's payment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Succeed,
    PendingThenSucceed,
    PendingForever,
    Decline,
    Slow,
    TakeMoneyThen502,
}

/// A customer of the test data.
struct Customer {
    name: &'static str,
    rule: AmountRuleKind,
    amount_type: u8,
    behaviour: Behaviour,
}

fn customer(customer_id: &str) -> Option<Customer> {
    let rule = |amount_type, rule| Customer {
        name: "Ada Obi",
        rule,
        amount_type,
        behaviour: Behaviour::Succeed,
    };
    let any = |behaviour| Customer {
        name: "Tunde Bello",
        rule: AmountRuleKind::Any,
        amount_type: 0,
        behaviour,
    };
    Some(match customer_id {
        "0000000000" => rule(0, AmountRuleKind::Any),
        "0000000001" => rule(1, AmountRuleKind::Minimum),
        "0000000002" => rule(2, AmountRuleKind::GreaterThanMinimum),
        "0000000003" => rule(3, AmountRuleKind::Maximum),
        "0000000004" => rule(4, AmountRuleKind::LessThanMaximum),
        "0000000005" => rule(5, AmountRuleKind::Exact),
        "1111111111" => any(Behaviour::PendingThenSucceed),
        "1111111112" => any(Behaviour::PendingForever),
        "2222222222" => any(Behaviour::Decline),
        "3333333333" => any(Behaviour::Slow),
        "4444444444" => any(Behaviour::TakeMoneyThen502),
        _ => return None,
    })
}

fn known_payment_code(code: &str) -> bool {
    matches!(code, "90101" | "90201")
}

/// A payment the simulator has received.
struct Transaction {
    code: &'static str,
    grouping: &'static str,
    amount_kobo: String,
    resolves_on_query: bool,
}

struct Sim {
    calls: Arc<CallCounter>,
    nonces: Mutex<HashSet<String>>,
    transactions: Mutex<HashMap<String, Transaction>>,
    /// Every advice received that passed its checks, in order: reference, customerId, amount
    /// and the answer's transaction code.
    advices: Mutex<Vec<Value>>,
}

/// The simulator's routes, to be nested under `/interswitch`.
pub fn router(calls: Arc<CallCounter>) -> Router<Arc<CallCounter>> {
    let sim = Arc::new(Sim {
        calls,
        nonces: Mutex::new(HashSet::new()),
        transactions: Mutex::new(HashMap::new()),
        advices: Mutex::new(Vec::new()),
    });
    let log = Router::new().route("/_sandbox/advices", get(advices));
    Router::new()
        .route("/api/v2/quickteller/categorys", get(categories))
        .route("/api/v2/quickteller/billers", get(billers))
        .route(
            "/api/v2/quickteller/categorys/{id}/billers",
            get(category_billers),
        )
        .route(
            "/api/v2/quickteller/billers/{id}/paymentitems",
            get(payment_items),
        )
        .route("/api/v2/quickteller/customers/validations", post(validate))
        .route("/api/v2/quickteller/payments/advices", post(advice))
        .route("/api/v2/quickteller/transactions", get(query))
        .layer(middleware::from_fn_with_state(sim.clone(), check_auth))
        .merge(log)
        .with_state(sim)
}

/// Every advice received, in order.
async fn advices(State(sim): State<Arc<Sim>>) -> Response {
    let advices = sim
        .advices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!({ "advices": advices })).into_response()
}

fn unauthorized(sim: &Sim, why: &str) -> Response {
    sim.calls.count("interswitch", "rejected_auth");
    (StatusCode::UNAUTHORIZED, Json(json!({ "message": why }))).into_response()
}

/// Verifies InterswitchAuth as the real API does.
async fn check_auth(
    State(sim): State<Arc<Sim>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("Authorization") != auth::authorization(CLIENT_ID) {
        return unauthorized(&sim, "unknown client");
    }
    if header("TerminalID") != TERMINAL_ID {
        return unauthorized(&sim, "unknown terminal");
    }
    let Some(method) = SignatureMethod::from_header(header("SignatureMethod")) else {
        return unauthorized(&sim, "unsupported SignatureMethod");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    match header("Timestamp").parse::<i64>() {
        Ok(ts) if (ts - now).abs() <= MAX_SKEW_SECS => {}
        _ => return unauthorized(&sim, "Timestamp must be unix seconds within 5 minutes"),
    }
    let nonce = header("Nonce");
    if nonce.is_empty() || nonce.len() > 64 {
        return unauthorized(&sim, "Nonce must be 1-64 characters");
    }
    let url = format!("https://{}{}", header("Host"), uri);
    let expected = auth::signature(
        method,
        request.method().as_str(),
        &url,
        header("Timestamp"),
        nonce,
        CLIENT_ID,
        CLIENT_SECRET,
    );
    if header("Signature") != expected {
        return unauthorized(&sim, "Signature mismatch");
    }
    {
        let mut nonces = sim.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() > 1_000_000 {
            nonces.clear();
        }
        if !nonces.insert(nonce.to_owned()) {
            return unauthorized(&sim, "Nonce reused");
        }
    }
    next.run(request).await
}

fn category_list() -> Value {
    json!([
        {"categoryid": "1", "categoryname": "Utilities", "categorydescription": "Electricity and water"},
        {"categoryid": "2", "categoryname": "Cable TV", "categorydescription": "Pay TV subscriptions"}
    ])
}

fn biller_list() -> Vec<Value> {
    vec![
        json!({"billerid": "901", "billername": "Ikeja Electric Prepaid", "shortName": "IKEDC",
               "categoryid": "1", "categoryname": "Utilities", "currencyCode": "566"}),
        json!({"billerid": "902", "billername": "DStv", "shortName": "DSTV",
               "categoryid": "2", "categoryname": "Cable TV", "currencyCode": "566"}),
    ]
}

async fn categories(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.calls.count("interswitch", "list_categories");
    Json(json!({ "categorys": category_list() }))
}

async fn billers(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.calls.count("interswitch", "list_billers");
    Json(json!({ "billers": biller_list() }))
}

async fn category_billers(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.calls.count("interswitch", "list_billers");
    if !matches!(id.as_str(), "1" | "2") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"ResponseCode": "20050"})),
        )
            .into_response();
    }
    let billers: Vec<Value> = biller_list()
        .into_iter()
        .filter(|b| b["categoryid"] == id.as_str())
        .collect();
    Json(json!({ "billers": billers })).into_response()
}

async fn payment_items(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.calls.count("interswitch", "list_products");
    let items = match id.as_str() {
        "901" => json!([{"categoryid": "1", "billerid": "901", "isAmountFixed": false,
            "paymentitemid": "01", "paymentitemname": "Prepaid token", "amount": "0",
            "code": "01", "currencyCode": "566", "paymentCode": "90101", "itemFee": "10000"}]),
        "902" => json!([{"categoryid": "2", "billerid": "902", "isAmountFixed": true,
            "paymentitemid": "01", "paymentitemname": "DStv Compact", "amount": "1050000",
            "code": "01", "currencyCode": "566", "paymentCode": "90201", "itemFee": "0"}]),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"ResponseCode": "20050"})),
            )
                .into_response();
        }
    };
    Json(json!({ "paymentitems": items })).into_response()
}

async fn validate(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interswitch", "validate_customer");
    let Some(c) = body["customers"].get(0) else {
        return bad_request("20010", "customers node missing");
    };
    let (customer_id, code) = (
        c["customerId"].as_str().unwrap_or(""),
        c["paymentCode"].as_str().unwrap_or(""),
    );
    let answer = match customer(customer_id).filter(|_| known_payment_code(code)) {
        Some(cust) => json!({
            "paymentCode": code, "customerId": customer_id, "fullName": cust.name,
            "responseCode": "90000",
            "amount": if cust.amount_type == 0 { "0".to_owned() } else { RULE_AMOUNT_KOBO.to_string() },
            "amountType": cust.amount_type.to_string(),
            "amountTypeDescription": format!("amountType {}", cust.amount_type),
        }),
        None => json!({"paymentCode": code, "customerId": customer_id, "responseCode": "20050",
                       "fullName": "", "amount": "0", "amountType": "0"}),
    };
    Json(json!({ "Customers": [answer] })).into_response()
}

fn bad_request(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn answer(code: &str, grouping: &str, reference: &str, token: Option<&str>) -> Response {
    let mut body = json!({
        "TransactionReference": format!("ISW{reference}"),
        "ResponseCode": code,
        "ResponseCodeGrouping": grouping,
        "ResponseDescription": crate::providers::interswitch::codes::describe(code).unwrap_or("Pending"),
    });
    if let Some(token) = token {
        body["RechargePIN"] = json!(token);
    }
    Json(body).into_response()
}

async fn advice(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interswitch", "pay");
    let field = |name: &str| body[name].as_str().unwrap_or("").to_owned();
    let (terminal, code, customer_id, amount, reference) = (
        field("TerminalId"),
        field("paymentCode"),
        field("customerId"),
        field("amount"),
        field("requestReference"),
    );
    if terminal != TERMINAL_ID || code.is_empty() || customer_id.is_empty() {
        return bad_request(
            "20010",
            "TerminalId, paymentCode and customerId are required",
        );
    }
    if !reference.starts_with(REFERENCE_PREFIX)
        || reference.len() > 12
        || !reference.bytes().all(|b| b.is_ascii_digit())
    {
        return bad_request(
            "20050",
            "requestReference must start with the issued prefix",
        );
    }
    let Some(paid) = Money::parse_minor_units(Currency::Ngn, &amount).filter(|m| m.minor_units > 0)
    else {
        return bad_request("20041", "amount must be a positive kobo integer");
    };
    let Some(cust) = customer(&customer_id).filter(|_| known_payment_code(&code)) else {
        return bad_request("20050", "unknown customer");
    };
    let rule = crate::domain::AmountRule {
        kind: cust.rule,
        amount: (cust.rule != AmountRuleKind::Any)
            .then_some(Money::new(Currency::Ngn, RULE_AMOUNT_KOBO)),
        description: String::new(),
    };
    let (txn_code, grouping, resolves) = if rule.check(paid).is_err() {
        ("20050", "FAILED", false)
    } else {
        match cust.behaviour {
            Behaviour::Succeed | Behaviour::Slow | Behaviour::TakeMoneyThen502 => {
                ("90000", "SUCCESSFUL", false)
            }
            Behaviour::PendingThenSucceed => ("90009", "PENDING", true),
            Behaviour::PendingForever => ("90009", "PENDING", false),
            Behaviour::Decline => ("70120", "FAILED", false),
        }
    };
    {
        let mut txns = sim.transactions.lock().unwrap_or_else(|p| p.into_inner());
        let reused = txns.contains_key(&reference);
        sim.advices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(json!({
                "requestReference": reference,
                "customerId": customer_id,
                "amount": amount,
                "code": if reused { "10001" } else { txn_code },
            }));
        if reused {
            return answer("10001", "PENDING", &reference, None);
        }
        txns.insert(
            reference.clone(),
            Transaction {
                code: txn_code,
                grouping,
                amount_kobo: amount,
                resolves_on_query: resolves,
            },
        );
    }
    match cust.behaviour {
        Behaviour::Slow => tokio::time::sleep(SLOW_PAYMENT).await,
        Behaviour::TakeMoneyThen502 => {
            return (StatusCode::BAD_GATEWAY, "upstream error").into_response();
        }
        _ => {}
    }
    let token = (txn_code == "90000" && code == "90101").then_some("1234-5678-9012-3456-7890");
    answer(txn_code, grouping, &reference, token)
}

async fn query(
    State(sim): State<Arc<Sim>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    sim.calls.count("interswitch", "query_payment");
    let reference = params.get("requestreference").cloned().unwrap_or_default();
    let mut txns = sim.transactions.lock().unwrap_or_else(|p| p.into_inner());
    let Some(txn) = txns.get_mut(&reference) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"ResponseCode": "30010", "ResponseDescription": "Transaction not found"})),
        )
            .into_response();
    };
    if txn.resolves_on_query {
        (txn.code, txn.grouping, txn.resolves_on_query) = ("90000", "SUCCESSFUL", false);
    }
    Json(json!({
        "ResponseCode": "90000",
        "TransactionResponseCode": txn.code,
        "ResponseCodeGrouping": txn.grouping,
        "transactionRef": format!("ISW{reference}"),
        "amount": txn.amount_kobo,
        "currencyCode": "566",
    }))
    .into_response()
}
