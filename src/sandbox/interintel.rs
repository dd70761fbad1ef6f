//! A simulator of InterIntel's "Utility Billers API using OAuth 2.0" for the sandbox and the
//! tests, under `/interintel/api/v1`.
//!
//! `POST /token` issues tokens with the password grant (client id, username, password and,
//! when sent, the client secret must match) and the refresh grant (a refresh token works
//! once); access tokens expire after `expires_in` (36000 s), and an expired or unknown Bearer
//! token answers HTTP 401. Every token request is counted on `/_sandbox/calls` (`token`,
//! `token_refresh`). The four services check their exact paths (trailing slash, the hyphen of
//! `biller-float`), the body (`product_item_id` one of the items below, `account_number`,
//! shilling `amount` strings, `scheduled_send` as `dd/mm/YYYY h:MM am|pm` in +03:00, and
//! `gateway_host` / `credentials` when present) and keep a float per product item that
//! accepted payments lower.
//!
//! Product items (biller): `101` Kenya Power prepaid tokens and `102` Kenya Power postpaid
//! (`kplc`), `201` Nairobi Water (`nairobi_water`), `301` DStv Compact, fixed KES 2,500
//! (`dstv_ke`). Each float starts at KES 100,000.00.
//!
//! | account_number | bill_query | bill_payment                                      |
//! |----------------|------------|---------------------------------------------------|
//! | `1000000001`   | `00`       | `00` success                                      |
//! | `1000000002`   | `00`       | `09` accepted; the first `bill_status` says `00`  |
//! | `1000000003`   | `00`       | `09` accepted; `bill_status` says `09` forever    |
//! | `1000000004`   | `30`       | `30` declined: invalid account number             |
//! | `1000000005`   | `00`       | `51` insufficient float (float untouched)         |
//! | `1000000006`   | `00`       | `00` after 3 seconds                              |
//! | other          | `30`       | `30` invalid account number                       |
//!
//! Any payment larger than the item's float also answers `51`. A reused `ext_outbound_id`
//! answers the first payment's status without paying again. A scheduled payment answers `00`
//! ("scheduled"); `bill_status` says `09` until its time, then `00`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::CallCounter;
use crate::gateway::Clock;
use crate::providers::interintel::{
    wire::{self, UtcOffset},
    InterIntelConfig, ProductItem,
};

/// Sandbox OAuth2 client id (not a secret: it only opens the simulator).
pub const CLIENT_ID: &str = "sandbox-interintel-client";
/// Sandbox OAuth2 client secret.
pub const CLIENT_SECRET: &str = "sandbox-interintel-client-secret";
/// Sandbox portal username.
pub const USERNAME: &str = "sandbox-company";
/// Sandbox portal password.
pub const PASSWORD: &str = "sandbox-interintel-password";
/// Lifetime of an access token, seconds (the README's 10 hours).
pub const TOKEN_LIFETIME_SECS: u64 = 36_000;
/// Every product item's float at start: KES 100,000.00.
pub const INITIAL_FLOAT_CENTS: i64 = 10_000_000;
/// How long the slow account's payment takes.
pub const SLOW_PAYMENT: Duration = Duration::from_secs(3);
/// `gateway_host` the simulator accepts when a client sends one.
pub const GATEWAY_HOST: &str = "interintel.co";

/// The sandbox product items, as a deployment would configure them.
pub fn products() -> Vec<ProductItem> {
    let item = |id: &str, name: &str, biller: &str, biller_name: &str, label: &str| ProductItem {
        id: id.into(),
        name: name.into(),
        biller: biller.into(),
        biller_name: Some(biller_name.into()),
        account_label: label.into(),
        fixed_amount_cents: None,
    };
    vec![
        item(
            "101",
            "Prepaid tokens",
            "kplc",
            "Kenya Power",
            "Meter Number",
        ),
        item(
            "102",
            "Postpaid bill",
            "kplc",
            "Kenya Power",
            "Account Number",
        ),
        item(
            "201",
            "Water bill",
            "nairobi_water",
            "Nairobi Water",
            "Account Number",
        ),
        ProductItem {
            fixed_amount_cents: Some(250_000),
            ..item(
                "301",
                "DStv Compact",
                "dstv_ke",
                "DStv Kenya",
                "Smartcard Number",
            )
        },
    ]
}

/// Client configuration for this simulator at `base_url` (`http://host:port/interintel`).
pub fn client_config(base_url: &str) -> InterIntelConfig {
    let text = format!(
        "base_url = {:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {CLIENT_SECRET:?}\n\
         username = {USERNAME:?}\npassword = {PASSWORD:?}\ntimeout_ms = 10000\n\
         connect_timeout_ms = 1000\n",
        format!("{base_url}/api/v1")
    );
    let mut config: InterIntelConfig = toml::from_str(&text).expect("sandbox config parses");
    config.products = products();
    config
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Succeed,
    PendingThenSucceed,
    PendingForever,
    Decline,
    InsufficientFloat,
    Slow,
}

fn behaviour(account: &str) -> Option<Behaviour> {
    Some(match account {
        "1000000001" => Behaviour::Succeed,
        "1000000002" => Behaviour::PendingThenSucceed,
        "1000000003" => Behaviour::PendingForever,
        "1000000004" => Behaviour::Decline,
        "1000000005" => Behaviour::InsufficientFloat,
        "1000000006" => Behaviour::Slow,
        _ => return None,
    })
}

struct Transaction {
    code: &'static str,
    resolves_on_query: bool,
    scheduled_at_ms: Option<i64>,
}

struct Sim {
    calls: Arc<CallCounter>,
    clock: Clock,
    /// Access token -> when it expires.
    tokens: Mutex<HashMap<String, Instant>>,
    refresh_tokens: Mutex<HashSet<String>>,
    floats: Mutex<HashMap<String, i64>>,
    transactions: Mutex<HashMap<String, Transaction>>,
}

/// The simulator's routes, to be nested under `/interintel`.
pub fn router(calls: Arc<CallCounter>) -> Router<Arc<CallCounter>> {
    let sim = Arc::new(Sim {
        calls,
        clock: Clock::default(),
        tokens: Mutex::new(HashMap::new()),
        refresh_tokens: Mutex::new(HashSet::new()),
        floats: Mutex::new(
            products()
                .into_iter()
                .map(|p| (p.id, INITIAL_FLOAT_CENTS))
                .collect(),
        ),
        transactions: Mutex::new(HashMap::new()),
    });
    let services = Router::new()
        .route("/api/v1/bill_payment/", post(pay))
        .route("/api/v1/bill_status/", post(status))
        .route("/api/v1/bill_query/", post(query))
        .route("/api/v1/biller-float/", post(float))
        .layer(middleware::from_fn_with_state(sim.clone(), check_bearer));
    Router::new()
        .route("/api/v1/token", post(token))
        .merge(services)
        .with_state(sim)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 401 unless the Bearer token was issued here and has not expired.
async fn check_bearer(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let bearer = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = lock(&sim.tokens)
        .get(bearer)
        .is_some_and(|expires| *expires > Instant::now());
    if !valid {
        sim.calls.count("interintel", "rejected_auth");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Authentication credentials were not provided or expired."})),
        )
            .into_response();
    }
    next.run(request).await
}

fn issue(sim: &Sim) -> Response {
    let access = format!("sbx-access-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("sbx-refresh-{}", uuid::Uuid::new_v4().simple());
    lock(&sim.tokens).insert(
        access.clone(),
        Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS),
    );
    lock(&sim.refresh_tokens).insert(refresh.clone());
    Json(json!({
        "access_token": access,
        "expires_in": TOKEN_LIFETIME_SECS,
        "token_type": "Bearer",
        "scope": "read write groups",
        "refresh_token": refresh,
    }))
    .into_response()
}

fn invalid_grant(status: StatusCode) -> Response {
    (status, Json(json!({"error": "invalid_grant"}))).into_response()
}

async fn token(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    let field = |name: &str| body[name].as_str().unwrap_or("");
    let secret_ok = body.get("client_secret").is_none() || field("client_secret") == CLIENT_SECRET;
    if field("client_id") != CLIENT_ID || !secret_ok {
        sim.calls.count("interintel", "token");
        return invalid_grant(StatusCode::UNAUTHORIZED);
    }
    match field("grant_type") {
        "password" => {
            sim.calls.count("interintel", "token");
            if field("username") != USERNAME || field("password") != PASSWORD {
                return invalid_grant(StatusCode::BAD_REQUEST);
            }
            issue(&sim)
        }
        "refresh_token" => {
            sim.calls.count("interintel", "token_refresh");
            if !lock(&sim.refresh_tokens).remove(field("refresh_token")) {
                return invalid_grant(StatusCode::BAD_REQUEST);
            }
            issue(&sim)
        }
        _ => {
            sim.calls.count("interintel", "token");
            invalid_grant(StatusCode::BAD_REQUEST)
        }
    }
}

fn answer(code: &str, message: impl Into<String>) -> Response {
    Json(json!({"response_status": code, "response": message.into()})).into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"response_status": "96", "response": message})),
    )
        .into_response()
}

/// Checks the generation-specific fields and the product item; `Err` is the answer.
fn common_checks(body: &Value) -> Result<String, Box<Response>> {
    if let Some(host) = body.get("gateway_host") {
        if host != GATEWAY_HOST {
            return Err(Box::new(bad_request("unknown gateway_host")));
        }
    }
    if let Some(credentials) = body.get("credentials") {
        if credentials["username"] != USERNAME || credentials["password"] != PASSWORD {
            return Err(Box::new(answer(
                "03",
                "credentials do not match the institution",
            )));
        }
    }
    let item = body["product_item_id"].as_str().unwrap_or("").to_owned();
    if !products().iter().any(|p| p.id == item) {
        return Err(Box::new(answer("92", "product item not found")));
    }
    Ok(item)
}

fn shillings(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn pay(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interintel", "pay");
    let item = match common_checks(&body) {
        Ok(item) => item,
        Err(r) => return *r,
    };
    let account = body["account_number"].as_str().unwrap_or("");
    let reference = body["ext_outbound_id"].as_str().unwrap_or("").to_owned();
    if account.is_empty() || reference.is_empty() {
        return bad_request("account_number and ext_outbound_id are required");
    }
    let Some(amount) = body["amount"]
        .as_str()
        .and_then(wire::parse_kes)
        .filter(|m| m.minor_units > 0)
    else {
        return bad_request("amount must be a positive amount of shillings");
    };
    let scheduled_at_ms = match body.get("scheduled_send") {
        None => None,
        Some(v) => match v
            .as_str()
            .and_then(|t| wire::parse_scheduled_send(t, UtcOffset(3 * 3600)))
        {
            Some(at) => Some(at),
            None => return bad_request("scheduled_send must be d/m/Y h:M am/pm"),
        },
    };
    if let Some(p) = products().iter().find(|p| p.id == item) {
        if p.fixed_amount_cents
            .is_some_and(|f| f != amount.minor_units)
        {
            return bad_request("this product item takes a fixed amount");
        }
    }
    let behaviour = behaviour(account);
    let code = {
        let mut txns = lock(&sim.transactions);
        if let Some(existing) = txns.get(&reference) {
            return answer(existing.code, "duplicate ext_outbound_id");
        }
        let mut floats = lock(&sim.floats);
        let float = floats.entry(item).or_insert(0);
        let code = match behaviour {
            None | Some(Behaviour::Decline) => "30",
            Some(Behaviour::InsufficientFloat) => "51",
            Some(_) if amount.minor_units > *float => "51",
            Some(Behaviour::PendingThenSucceed | Behaviour::PendingForever) => "09",
            Some(Behaviour::Succeed | Behaviour::Slow) => "00",
        };
        if matches!(code, "00" | "09") {
            *float -= amount.minor_units;
        }
        txns.insert(
            reference,
            Transaction {
                code,
                resolves_on_query: behaviour == Some(Behaviour::PendingThenSucceed),
                scheduled_at_ms,
            },
        );
        code
    };
    if behaviour == Some(Behaviour::Slow) {
        tokio::time::sleep(SLOW_PAYMENT).await;
    }
    match (code, scheduled_at_ms, body["scheduled_send"].as_str()) {
        ("00" | "09", Some(_), Some(text)) => answer("00", format!("Payment scheduled for {text}")),
        ("00", ..) => answer("00", "Bill payment successful"),
        ("09", ..) => answer("09", "Request accepted for processing"),
        ("51", ..) => answer("51", "Insufficient float"),
        (c, ..) => answer(c, "Invalid account number"),
    }
}

async fn status(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interintel", "query_payment");
    if let Err(r) = common_checks(&body) {
        return *r;
    }
    let reference = body["ext_outbound_id"].as_str().unwrap_or("");
    let mut txns = lock(&sim.transactions);
    let Some(txn) = txns.get_mut(reference) else {
        return answer("25", "Transaction not found");
    };
    if txn
        .scheduled_at_ms
        .is_some_and(|at| at > sim.clock.now_ms())
    {
        return answer("09", "Scheduled");
    }
    if txn.resolves_on_query {
        (txn.code, txn.resolves_on_query) = ("00", false);
    }
    match txn.code {
        "00" => answer("00", "Bill payment successful"),
        "09" => answer("09", "Processing"),
        "51" => answer("51", "Insufficient float"),
        c => answer(c, "Invalid account number"),
    }
}

async fn query(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interintel", "lookup_bill");
    if let Err(r) = common_checks(&body) {
        return *r;
    }
    if let Some(amount) = body.get("amount") {
        if amount.as_str().and_then(wire::parse_kes).is_none() {
            return bad_request("amount must be an amount of shillings");
        }
    }
    let account = body["account_number"].as_str().unwrap_or("");
    match behaviour(account) {
        None | Some(Behaviour::Decline) => answer("30", "Invalid account number"),
        Some(_) => answer("00", format!("Account {account} is valid")),
    }
}

async fn float(State(sim): State<Arc<Sim>>, Json(body): Json<Value>) -> Response {
    sim.calls.count("interintel", "get_balance");
    let item = match common_checks(&body) {
        Ok(item) => item,
        Err(r) => return *r,
    };
    let cents = lock(&sim.floats).get(&item).copied().unwrap_or(0);
    answer("00", shillings(cents))
}
