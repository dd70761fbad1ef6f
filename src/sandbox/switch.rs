//! A faithful simulator of the Switch bill-payment API for the sandbox and the tests.
//!
//! It checks `SWI-CID` on every call, the session token (`Authorization: Bearer`, issued by
//! `POST /user/login`, expiring after [`SESSION_LIFETIME`]; an unknown or expired token answers
//! HTTP 401) and the `SWI-CS` checksum of every POST body with the sandbox's configured strategy
//! (the gateway's default, `hmac-sha256-hex`, keyed with [`CHECKSUM_KEY`]). Catalog data is the
//! spec's samples (categories, vendors, and the four cable plans of vendor `104`, DStv). The
//! user's 2FA type is PIN, [`PIN`]; a wrong or missing PIN answers HTTP 400 with the one message
//! Switch documents for PINs. Payments with `save_information` create saved bills (with an `id`,
//! which the documented sample lacks: the simulator assumes Switch sends one).
//! `POST /_sandbox/expire_sessions` ends every session (the next call answers 401).
//!
//! Payment faults by `consumer_id_field`:
//!
//! | consumer_id_field | payment                                               |
//! |-------------------|-------------------------------------------------------|
//! | `2222222222`      | declined: HTTP 400 "Transaction declined by vendor"    |
//! | `3333333333`      | succeeds after 3 seconds                              |
//! | `4444444444`      | takes the money (and saves the bill), then HTTP 502   |
//! | any other         | succeeds (SCHEDULED with a `start_date`)              |

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{OriginalUri, Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::CallCounter;
use crate::providers::switch::{
    auth::{self, ChecksumStrategy},
    wire::{iso_time, naira, parse_naira},
    LoginConfig, SwitchConfig, TwoFactor,
};

/// Sandbox `SWI-CID` (not a secret: it only opens the simulator).
pub const CLIENT_ID: &str = "SWI-SANDBOX-CLIENT-0001";
/// Sandbox `SWI-CS` key (not a secret: it only opens the simulator).
pub const CHECKSUM_KEY: &str = "sandbox-checksum-key-not-for-production";
/// The sandbox user's login.
pub const USERNAME: &str = "sandbox@switch.test";
/// The sandbox user's password (not a secret: it only opens the simulator).
pub const PASSWORD: &str = "sandbox-password-not-for-production";
/// The sandbox user's PIN (2FA type "pin").
pub const PIN: &str = "1234";
/// How long a session token lives.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long the slow customer's payment takes.
pub const SLOW_PAYMENT: Duration = Duration::from_secs(3);
/// The one PIN error message Switch documents (HTTP 400).
pub const PIN_MESSAGE: &str = "Pin should be a 4-digit number";

/// Client configuration for this simulator at `base_url`.
pub fn client_config(base_url: &str) -> SwitchConfig {
    SwitchConfig {
        base_url: base_url.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        checksum: ChecksumStrategy::HmacSha256Hex,
        checksum_key: Some(SecretString::from(CHECKSUM_KEY.to_owned())),
        session_token: None,
        login: Some(LoginConfig {
            path: "/user/login".into(),
            username_field: "email".into(),
            username: USERNAME.to_owned(),
            password: SecretString::from(PASSWORD.to_owned()),
        }),
        session_lifetime_ms: SESSION_LIFETIME.as_millis() as u64,
        session_refresh_margin_ms: 60_000,
        two_factor: TwoFactor::Pin,
        timeout_ms: 10_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

/// A saved bill.
struct Saved {
    id: u64,
    consumer_id: String,
    vendor_id: String,
    plan_id: String,
    amount: String,
    created_at: String,
}

struct Sim {
    calls: Arc<CallCounter>,
    sessions: Mutex<HashMap<String, Instant>>,
    saved: Mutex<Vec<Saved>>,
    next_id: Mutex<u64>,
    /// Saved bills are numbered on their own from 1, so the walkthrough's ids are stable.
    next_saved_id: Mutex<u64>,
}

fn next(counter: &Mutex<u64>) -> u64 {
    let mut n = counter.lock().unwrap_or_else(|p| p.into_inner());
    *n += 1;
    *n
}

/// The simulator's routes, to be nested under `/switch`.
pub fn router(calls: Arc<CallCounter>) -> Router<Arc<CallCounter>> {
    let sim = Arc::new(Sim {
        calls,
        sessions: Mutex::new(HashMap::new()),
        saved: Mutex::new(Vec::new()),
        next_id: Mutex::new(0),
        next_saved_id: Mutex::new(0),
    });
    let api = Router::new()
        .route("/user/login", post(login))
        .route("/user/bills/categories", get(categories))
        .route("/user/bills/categories/{id}/vendors", get(category_vendors))
        .route("/user/bills/vendors", get(vendors))
        .route("/user/bills/vendors/{id}/plans", get(plans))
        .route("/user/bills/saved_bills", get(saved_bills))
        .route("/user/saved_bills/{id}", delete(delete_saved))
        .route("/bills/pay", post(pay))
        .route("/user/two_factor_auth/send_otp", post(send_otp))
        .layer(middleware::from_fn_with_state(sim.clone(), check_auth));
    Router::new()
        .merge(api)
        .route("/_sandbox/expire_sessions", post(expire_sessions))
        .with_state(sim)
}

fn unauthorized(sim: &Sim, why: &str) -> Response {
    sim.calls.count("switch", "rejected_auth");
    (StatusCode::UNAUTHORIZED, Json(json!({ "message": why }))).into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// Verifies SWI-CID, the session (except on login) and SWI-CS on POSTs, as Switch does.
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
            .to_owned()
    };
    if header("SWI-CID") != CLIENT_ID {
        return unauthorized(&sim, "Invalid client id");
    }
    if !uri.path().ends_with("/user/login") {
        let token = header("Authorization")
            .strip_prefix("Bearer ")
            .unwrap_or("")
            .to_owned();
        let live = {
            let sessions = sim.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions
                .get(&token)
                .is_some_and(|expires| Instant::now() < *expires)
        };
        if !live {
            return unauthorized(&sim, "Session expired, please login again");
        }
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return message(StatusCode::BAD_REQUEST, "Body too large");
    };
    let key = SecretString::from(CHECKSUM_KEY.to_owned());
    let expected = auth::checksum(ChecksumStrategy::HmacSha256Hex, &key, &bytes);
    if Some(header("SWI-CS")) != expected {
        return unauthorized(&sim, "Invalid payload checksum");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn login(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("switch", "login");
    if body["email"] != USERNAME || body["password"] != PASSWORD {
        return message(StatusCode::UNAUTHORIZED, "Invalid email or password");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let n = next(&sim.next_id);
    let claims = json!({"id": n, "iat": now, "exp": now + SESSION_LIFETIME.as_secs()});
    let token = format!(
        "{}.{}.sandbox{n}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    sim.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone(), Instant::now() + SESSION_LIFETIME);
    Json(json!({
        "message": "Login successful",
        "data": {"auth_token": token, "two_factor_authentication_type": "pin"}
    }))
    .into_response()
}

async fn expire_sessions(State(sim): State<Arc<Sim>>) -> Response {
    sim.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    message(StatusCode::OK, "All sessions expired")
}

fn category_list() -> Value {
    json!([
        {"id": "2", "name": "Cable TV Bills", "description": "Pay for your cable TV subscriptions here",
         "category_icon": "https://res.cloudinary.com/ushnuel/image/upload/v1586203831/Switch/tv_and-entertainment.png",
         "category_color": "#caeeff"},
        {"id": "4", "name": "Mobile Recharge", "description": "Recharge your phone",
         "category_icon": "https://res.cloudinary.com/ushnuel/image/upload/v1586203917/Switch/airtime_and_data.png",
         "category_color": "#ecedfa"},
        {"id": "6", "name": "Phone Bills", "description": "Pay all post paid phone bills",
         "category_icon": null, "category_color": null},
        {"id": "7", "name": "Subscriptions", "description": "Pay for your other subscriptions (like ISP) here",
         "category_icon": null, "category_color": null},
        {"id": "13", "name": "Transport", "description": "Transport",
         "category_icon": "https://res.cloudinary.com/ushnuel/image/upload/v1586203865/Switch/travel_and_transport.png",
         "category_color": "#d0faf2"},
        {"id": "1", "name": "Utility Bills", "description": "Pay your utility bills here",
         "category_icon": "https://res.cloudinary.com/ushnuel/image/upload/v1586203937/Switch/utility_bills.png",
         "category_color": "#e3f9bb"}
    ])
}

fn vendor(id: &str, name: &str, short: &str, narration: &str, category: &str) -> Value {
    json!({"vendor_id": id, "name": name, "short_name": short, "narration": narration,
           "surcharge": null, "bill_payment_category_id": category, "switch_short_name": null,
           "switch_category": null, "logo_url": null})
}

fn vendor_list() -> Vec<Value> {
    vec![
        vendor("104", "DStv", "DSTV", "Pay your DStv subscription", "2"),
        vendor(
            "120",
            "9Mobile Prepaid",
            "9MobileMTU",
            "Buy Etisalat recharge",
            "4",
        ),
        vendor(
            "901",
            "Airtel Prepaid",
            "AirtelMTU",
            "Top up your line automatically",
            "4",
        ),
        vendor("402", "Glo Prepaid", "GloMTU", "Mobile Top-Up", "4"),
        vendor(
            "109",
            "MTN Prepaid",
            "MTNVTU",
            "Purchase MTN Virtual Aitime",
            "4",
        ),
        vendor("102", "Airtel Postpaid", "Airtel", "Pay Zain bill", "6"),
        vendor("106", "MTN VTU PLUS DATA PLAN", "MTN", "VTU PLUS", "6"),
        vendor("111", "IPNX", "IPNX", "Pay IPNX subscriptions", "7"),
        vendor("14237", "SpectraNet", "SPEC", "SpectraNet", "7"),
        vendor(
            "14235",
            "Lekki Concession Company",
            "LCCN",
            "Lekki Concession Company",
            "13",
        ),
        vendor("14319", "IBEDC", "IBEDC", "IBEDC Prepaid", "1"),
        vendor("137", "Ikeja Prepaid", "IKEDC", "Ikeja Prepaid", "1"),
        vendor("905", "Phcn Prepaid", "PhcnPP", "Buy your meter token", "1"),
    ]
}

/// The spec's sample plans (vendor 104): id, name, payment code, amount in naira.
const PLANS: &[(&str, &str, &str, &str)] = &[
    ("01", "Premium", "10401", "14600.00"),
    ("28", "Access", "10428", "1800.00"),
    ("03", "Compact", "10403", "8500.00"),
    ("06", "Family", "10406", "3960.00"),
];
const MANDATE_ID: &str = "SWV220200401122742464584041257";
/// Every sample plan's item fee and VAT, in naira.
const ITEM_FEE_KOBO: i64 = 8_000;
const VAT_KOBO: i64 = 400;

fn plan_json(&(id, name, code, amount): &(&str, &str, &str, &str)) -> Value {
    let total = parse_naira(amount).unwrap_or_default() + ITEM_FEE_KOBO + VAT_KOBO;
    json!({
        "mandate_id": MANDATE_ID, "id": id, "name": name, "payment_code": code,
        "item_fee": "80", "vat": 4, "category_id": "2",
        "input_fields": [{"key": "consumer_id_field", "value": "", "text": "Decoder Number"}],
        "additions": {"amount": amount, "total": naira(total)}
    })
}

async fn categories(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.calls.count("switch", "list_categories");
    Json(
        json!({"message": "Bill payment categories retrieved successfully", "data": category_list()}),
    )
}

fn filter_short_name(vendors: Vec<Value>, params: &HashMap<String, String>) -> Vec<Value> {
    match params.get("short_name").filter(|s| !s.is_empty()) {
        Some(short) => vendors
            .into_iter()
            .filter(|v| v["short_name"] == short.as_str())
            .collect(),
        None => vendors,
    }
}

async fn vendors(
    State(sim): State<Arc<Sim>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Value> {
    sim.calls.count("switch", "list_billers");
    let data = filter_short_name(vendor_list(), &params);
    Json(json!({"message": "Bill payment category vendors retrieved successfully", "data": data}))
}

async fn category_vendors(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    sim.calls.count("switch", "list_billers");
    if !category_list()
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["id"] == id.as_str()))
    {
        return message(StatusCode::NOT_FOUND, "Category not found");
    }
    let in_category = vendor_list()
        .into_iter()
        .filter(|v| v["bill_payment_category_id"] == id.as_str())
        .collect();
    let data = filter_short_name(in_category, &params);
    Json(json!({"message": "Vendors retrieved successfully", "data": data})).into_response()
}

async fn plans(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.calls.count("switch", "list_products");
    if !vendor_list().iter().any(|v| v["vendor_id"] == id.as_str()) {
        return message(StatusCode::NOT_FOUND, "Vendor not found");
    }
    let data: Vec<Value> = if id == "104" {
        PLANS.iter().map(plan_json).collect()
    } else {
        Vec::new()
    };
    Json(json!({"message": "Vendor plans retrieved successfully", "data": data})).into_response()
}

async fn pay(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("switch", "pay");
    let field = |name: &str| match &body[name] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match body["pin"].as_str() {
        Some(PIN) => {}
        _ => return message(StatusCode::BAD_REQUEST, PIN_MESSAGE),
    }
    let Some(plan) = PLANS
        .iter()
        .find(|p| p.0 == field("plan_id"))
        .filter(|_| field("vendor_id") == "104")
    else {
        return message(StatusCode::BAD_REQUEST, "Invalid vendor plan");
    };
    let consumer = field("consumer_id_field");
    if consumer.is_empty() {
        return message(StatusCode::BAD_REQUEST, "consumer_id_field is required");
    }
    let amount = parse_naira(&field("amount"));
    let price = parse_naira(plan.3);
    let sum = amount
        .zip(parse_naira(&field("item_fee")))
        .zip(parse_naira(&field("vat")))
        .map(|((a, f), v)| a + f + v);
    if amount != price
        || parse_naira(&field("item_fee")) != Some(ITEM_FEE_KOBO)
        || parse_naira(&field("vat")) != Some(VAT_KOBO)
        || sum.is_none()
        || sum != parse_naira(&field("total"))
        || field("mandate_id") != MANDATE_ID
        || field("payment_code") != plan.2
        || field("plan_name") != plan.1
    {
        return message(
            StatusCode::BAD_REQUEST,
            "Amount, fees or plan details do not match the plan",
        );
    }
    if consumer == "2222222222" {
        return message(StatusCode::BAD_REQUEST, "Transaction declined by vendor");
    }
    let reference = format!("SWT{:08}", next(&sim.next_id));
    if body["save_information"] == true {
        let id = next(&sim.next_saved_id);
        sim.saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Saved {
                id,
                consumer_id: consumer.clone(),
                vendor_id: "104".into(),
                plan_id: plan.0.into(),
                amount: plan.3.into(),
                created_at: iso_time(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or_default(),
                ),
            });
    }
    match consumer.as_str() {
        "3333333333" => tokio::time::sleep(SLOW_PAYMENT).await,
        "4444444444" => return (StatusCode::BAD_GATEWAY, "upstream error").into_response(),
        _ => {}
    }
    let text = if body["start_date"].is_string() {
        "Bill payment scheduled successfully"
    } else {
        "Bill payment successful"
    };
    Json(json!({"message": text, "data": {"reference": reference}})).into_response()
}

async fn saved_bills(
    State(sim): State<Arc<Sim>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    sim.calls.count("switch", "list_saved_bills");
    let number = |name: &str, default: usize| {
        params
            .get(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let (per_page, page) = (number("per_page", 10), number("page", 1));
    let saved = sim.saved.lock().unwrap_or_else(|p| p.into_inner());
    let vendors = vendor_list();
    let data: Vec<Value> = saved
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|s| {
            let v = vendors
                .iter()
                .find(|v| v["vendor_id"] == s.vendor_id.as_str())
                .cloned()
                .unwrap_or_default();
            json!({
                "id": s.id,
                "consumer_id_field": s.consumer_id,
                "plan_id": s.plan_id,
                "amount": s.amount,
                "vendor": {"vendor_id": v["vendor_id"], "name": v["name"], "narration": v["narration"],
                           "short_name": v["short_name"], "surcharge": null,
                           "switch_category": null, "switch_short_name": null},
                "created_at": s.created_at,
            })
        })
        .collect();
    Json(json!({"message": "Saved bill payment information retrieved successfully", "data": data}))
        .into_response()
}

async fn delete_saved(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.calls.count("switch", "delete_saved_bill");
    let mut saved = sim.saved.lock().unwrap_or_else(|p| p.into_inner());
    let before = saved.len();
    saved.retain(|s| s.id.to_string() != id);
    if saved.len() == before {
        return message(StatusCode::NOT_FOUND, "Saved bill not found");
    }
    message(StatusCode::OK, "Saved bill deleted successfully")
}

async fn send_otp(State(sim): State<Arc<Sim>>) -> Response {
    sim.calls.count("switch", "send_otp");
    message(StatusCode::OK, "OTP sent successfully")
}
