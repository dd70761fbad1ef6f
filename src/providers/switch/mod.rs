//! Switch (Nigeria) bill payments: categories, vendors and vendor plans, payment of a plan
//! (`/bills/pay`) with the user's PIN or OTP, schedules and saved bills, and the OTP request.
//!
//! Switch is a consumer-app API: the gateway acts as one Switch user whose session token
//! (`Authorization: Bearer`) comes from the configured login call or a static token, shared by
//! every replica through the token cache. Amounts are naira decimal strings converted exactly
//! from kobo. A payment is priced from the cached plan (`pays_from_catalog`): amount, item_fee,
//! vat and total are checked before anything is recorded or sent. Switch takes no client
//! reference and has no status query: a payment whose answer is lost stays PENDING and ends
//! with an operator (NEEDS_ATTENTION); it is never sent again (the journal holds its
//! `request_id`), not even after a 401 and a new login (a resend would be a second payment,
//! with the same one-time OTP). An answer the documents do not define goes straight to an
//! operator with the answer recorded ([`codes`]). The reference the gateway stores
//! (`SWI<sequence>`) is its own and never sent.

pub mod auth;
pub mod codes;
pub mod wire;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Map, Value};

use crate::domain::{
    options::PaymentOptions, Biller, Capability, Category, Currency, Money, PaymentOrder,
    PaymentOutcome, PaymentRecord, PaymentSecrets, Product, Provider, ProviderError, ProviderId,
    ProviderObject, ProviderPage, ProviderPageRequest, Resource, SavedBill,
};
use crate::providers::{
    guard::{CallGuard, CallLimits},
    http::{self, RawResponse},
    token_cache::{IssuedToken, Token, TokenCache, TokenSettings, TokenSource},
};
use crate::store::Store;
use auth::ChecksumStrategy;
use wire::{naira, plan_keys, Envelope, MessageOnly};

/// The second factor of the Switch user the gateway acts as
/// (`two_factor_authentication_type`): it decides whether a payment carries a PIN or an OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactor {
    /// Every payment carries the user's 4-digit PIN (`pin`).
    Pin,
    /// Every payment carries an OTP (`otp`): 2FA type `phone` (ask with SendPaymentOtp) or
    /// `google_authenticator`.
    Otp,
    /// Neither.
    None,
}

/// `[providers.switch.login]`: the login call that issues the session token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Path of the login call, POSTed with SWI-CID and SWI-CS.
    #[serde(default = "default_login_path")]
    pub path: String,
    /// JSON field that carries `username` (the login body is not documented: an assumption,
    /// `{"<username_field>": username, "password": password}`).
    #[serde(default = "default_username_field")]
    pub username_field: String,
    pub username: String,
    /// Never logged.
    pub password: SecretString,
}

fn default_login_path() -> String {
    "/user/login".into()
}
fn default_username_field() -> String {
    "email".into()
}

/// `[providers.switch]` configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Scheme and host, no trailing path: `https://switchapi3.azurewebsites.net` (staging).
    pub base_url: String,
    /// `SWI-CID`, the client id issued by Switch.
    pub client_id: String,
    /// `SWI-CS` strategy: "hmac-sha256-hex" (default, an assumption: the algorithm is not
    /// published), "sha256-hex" or "none".
    #[serde(default = "default_checksum")]
    pub checksum: ChecksumStrategy,
    /// Key of the `SWI-CS` checksum. Required by "hmac-sha256-hex". Never logged.
    #[serde(default)]
    pub checksum_key: Option<SecretString>,
    /// A static session token, instead of `[providers.switch.login]`. Never logged.
    #[serde(default)]
    pub session_token: Option<SecretString>,
    /// The login call that issues session tokens, instead of `session_token`.
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// How long a session token lives when it says nothing (no JWT `exp`), milliseconds. 30
    /// minutes: the `iat`/`exp` distance of the documented sample.
    #[serde(default = "default_session_lifetime_ms")]
    pub session_lifetime_ms: u64,
    /// Obtain a new session this long before the current one expires, milliseconds.
    #[serde(default = "default_session_refresh_margin_ms")]
    pub session_refresh_margin_ms: u64,
    /// The user's 2FA type: "pin" (default), "otp" or "none".
    #[serde(default = "default_two_factor")]
    pub two_factor: TwoFactor,
    /// Whole-request timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP/TLS connect timeout, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrency limit and circuit breaker (`[providers.switch.limits]`).
    #[serde(default)]
    pub limits: CallLimits,
}

fn default_checksum() -> ChecksumStrategy {
    ChecksumStrategy::HmacSha256Hex
}
fn default_session_lifetime_ms() -> u64 {
    30 * 60 * 1000
}
fn default_session_refresh_margin_ms() -> u64 {
    60_000
}
fn default_two_factor() -> TwoFactor {
    TwoFactor::Pin
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}

impl SwitchConfig {
    /// Checks what would otherwise fail at the first call.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://"))
            || reqwest::Url::parse(&self.base_url).is_err()
        {
            return Err("switch.base_url must be an http:// or https:// URL".into());
        }
        if self.client_id.is_empty() {
            return Err("switch.client_id must be set".into());
        }
        match (&self.session_token, &self.login) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(
                    "switch needs exactly one of session_token and [providers.switch.login]".into(),
                )
            }
        }
        if let Some(login) = &self.login {
            if !login.path.starts_with('/') || login.username.is_empty() {
                return Err(
                    "switch.login.path must start with / and switch.login.username be set".into(),
                );
            }
        }
        let no_key = self
            .checksum_key
            .as_ref()
            .is_none_or(|k| k.expose_secret().is_empty());
        if self.checksum == ChecksumStrategy::HmacSha256Hex && no_key {
            return Err("switch.checksum \"hmac-sha256-hex\" needs switch.checksum_key".into());
        }
        if self.session_lifetime_ms <= self.session_refresh_margin_ms {
            return Err("switch.session_lifetime_ms must exceed session_refresh_margin_ms".into());
        }
        Ok(())
    }
}

const CAPABILITIES: &[Capability] = &[
    Capability::ListCategories,
    Capability::ListBillers,
    Capability::ListProducts,
    Capability::CreatePayment,
    Capability::SavedBills,
    Capability::SendOtp,
];

/// How the session token is obtained.
enum Session {
    Static(SecretString),
    Login(LoginConfig),
}

/// The Switch client.
pub struct Switch {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    checksum: ChecksumStrategy,
    checksum_key: SecretString,
    session: Session,
    session_lifetime: Duration,
    two_factor: TwoFactor,
    tokens: TokenCache,
    guard: CallGuard,
}

impl Switch {
    /// Builds the client from validated configuration; session tokens live in `store`.
    pub fn new(config: SwitchConfig, store: Arc<dyn Store>) -> Self {
        let session = match (config.session_token, config.login) {
            (Some(token), _) => Session::Static(token),
            (None, Some(login)) => Session::Login(login),
            (None, None) => Session::Static(SecretString::from(String::new())),
        };
        let credential = match &session {
            Session::Static(_) => format!("switch:{}:static", config.client_id),
            Session::Login(l) => format!("switch:{}:{}", config.client_id, l.username),
        };
        Self {
            http: http::client(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.timeout_ms),
            ),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            checksum: config.checksum,
            checksum_key: config
                .checksum_key
                .unwrap_or_else(|| SecretString::from(String::new())),
            session,
            session_lifetime: Duration::from_millis(config.session_lifetime_ms),
            two_factor: config.two_factor,
            tokens: TokenCache::new(
                store,
                "switch",
                &credential,
                TokenSettings {
                    refresh_margin: Duration::from_millis(config.session_refresh_margin_ms),
                    ..TokenSettings::default()
                },
            ),
            guard: CallGuard::new("switch", &config.limits),
            client_id: config.client_id,
        }
    }

    /// Sends one request with `SWI-CID`, the session token when given, and `SWI-CS` on POSTs
    /// (computed over the exact body bytes sent, empty when there is no body).
    async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        token: Option<&Token>,
    ) -> Result<RawResponse, ProviderError> {
        let url = format!("{}{}", self.base_url, path_and_query);
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("SWI-CID", &self.client_id)
            .header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", auth::bearer(token.secret()));
        }
        if method == reqwest::Method::POST {
            let bytes = body.unwrap_or_default();
            if let Some(cs) = auth::checksum(self.checksum, &self.checksum_key, &bytes) {
                request = request.header("SWI-CS", cs);
            }
            request = request
                .header("Content-Type", "application/json")
                .body(bytes);
        }
        self.guard
            .run(
                http::send("switch", operation, request),
                http::transport_failure,
            )
            .await
    }

    /// Sends with the session token; a 401 invalidates it and the call is made once more with a
    /// new one. For reads, saved-bill deletion and the OTP request, which pay nothing; a
    /// payment goes through [`Switch::call_once`].
    async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ProviderError> {
        self.tokens
            .authorized(self, |token| {
                let (method, body) = (method.clone(), body.clone());
                async move {
                    let raw = self
                        .send(operation, method, path_and_query, body, Some(&token))
                        .await?;
                    if raw.status == 401 {
                        return Err(ProviderError::Auth { status: 401 });
                    }
                    Ok(raw)
                }
            })
            .await
    }

    /// Sends a payment with the session token, once: a 401 invalidates the token (the next call
    /// logs in again) and is returned as `Err(Auth)`, with the body Switch sent in `refusal`.
    /// Switch takes no reference of ours, so a resend after a new login would be a second
    /// payment.
    async fn call_once(
        &self,
        operation: &'static str,
        path: &str,
        body: Vec<u8>,
        refusal: &std::sync::Mutex<Vec<u8>>,
    ) -> Result<RawResponse, ProviderError> {
        self.tokens
            .authorized_once(self, |token| async move {
                let raw = self
                    .send(
                        operation,
                        reqwest::Method::POST,
                        path,
                        Some(body),
                        Some(&token),
                    )
                    .await?;
                if raw.status == 401 {
                    *refusal.lock().unwrap_or_else(|p| p.into_inner()) = raw.body;
                    return Err(ProviderError::Auth { status: 401 });
                }
                Ok(raw)
            })
            .await
    }

    /// A read: 2xx parsed as an envelope of `T`, anything else an error. `not_found` is the
    /// object the path names (a 404 says it does not exist); `None` for a fixed path.
    async fn read<T: DeserializeOwned + Default>(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        not_found: Option<(Resource, &str)>,
    ) -> Result<Envelope<T>, ProviderError> {
        let raw = self.call(operation, method, path_and_query, None).await?;
        answer(operation, raw, not_found)
    }

    /// Everything a payment sends, from the order and the plan it was checked against. Fails
    /// (nothing sent) when the order breaks the plan's rules.
    fn pay_body(
        &self,
        order: &PaymentOrder,
        product: Option<&Product>,
        secrets: &PaymentSecrets,
    ) -> Result<Map<String, Value>, ProviderError> {
        let priced = self.price(order, product, secrets)?;
        let product = priced.product;
        let data = |key: &str| product.provider_data.get(key).cloned().unwrap_or_default();
        // `what` names the amount; the field blamed is the request's amount, or the plan
        // (product_id) for the plan's own charges.
        let text = |kobo: i64, what: &'static str| {
            naira(kobo).ok_or_else(|| ProviderError::Unrepresentable {
                field: if what == "amount" {
                    "amount.minor_units"
                } else {
                    "product_id"
                },
                reason: if what == "amount" {
                    "must not be negative (Switch amounts are not negative)".to_owned()
                } else {
                    format!("the plan's {what} is negative: Switch amounts are not negative")
                },
            })
        };
        let mut body = Map::new();
        // Plan inputs first, so the fields below always win over a same-named input.
        for field in &product.input_fields {
            let value = order
                .inputs
                .get(&field.key)
                .filter(|v| !v.is_empty())
                .unwrap_or(&field.default_value);
            body.insert(field.key.clone(), json!(value));
        }
        body.insert("vendor_id".into(), json!(order.biller_id));
        body.insert("plan_id".into(), json!(product.product_id));
        body.insert("plan_name".into(), json!(data(plan_keys::PLAN_NAME)));
        body.insert("category_id".into(), json!(data(plan_keys::CATEGORY_ID)));
        body.insert("mandate_id".into(), json!(data(plan_keys::MANDATE_ID)));
        body.insert("payment_code".into(), json!(data(plan_keys::PAYMENT_CODE)));
        body.insert(wire::CUSTOMER_FIELD.into(), json!(order.customer_id));
        body.insert(
            "amount".into(),
            json!(text(order.amount.minor_units, "amount")?),
        );
        body.insert("item_fee".into(), json!(text(priced.fee, "item_fee")?));
        body.insert("vat".into(), json!(text(priced.vat, "vat")?));
        body.insert("total".into(), json!(text(priced.total, "total")?));
        let options = match &order.options {
            PaymentOptions::Switch(o) => o.clone(),
            _ => Default::default(),
        };
        body.insert("save_information".into(), json!(options.save_information));
        if let Some(start) = options.start_time_ms {
            body.insert("start_date".into(), json!(wire::iso_time(start)));
        }
        if options.repeat {
            body.insert("repeat".into(), json!(true));
            body.insert("event_pattern".into(), json!(options.repeat_pattern));
            if options.repeat_pattern == "custom" {
                body.insert(
                    "custom_cron".into(),
                    json!(options.custom_interval_days.to_string()),
                );
            }
        }
        match self.two_factor {
            TwoFactor::Pin => {
                if let Some(pin) = &secrets.pin {
                    body.insert("pin".into(), json!(pin.expose_secret()));
                }
            }
            TwoFactor::Otp => {
                if let Some(otp) = &secrets.otp {
                    body.insert("otp".into(), json!(otp.expose_secret()));
                }
            }
            TwoFactor::None => {}
        }
        Ok(body)
    }

    /// Checks an order against its plan and prices it: the plan's amount for a fixed-price
    /// plan, the plan's stated total against amount + item_fee + vat, the caller's expected
    /// total, the plan's required inputs and the user's second factor.
    fn price<'p>(
        &self,
        order: &PaymentOrder,
        product: Option<&'p Product>,
        secrets: &PaymentSecrets,
    ) -> Result<Priced<'p>, ProviderError> {
        let mut why: Vec<(String, String)> = Vec::new();
        let Some(product) = product else {
            return Err(ProviderError::InvalidOrder(vec![(
                "product_id".into(),
                "not a plan of this vendor".into(),
            )]));
        };
        if order.amount.currency != Currency::Ngn {
            why.push(("amount.currency_code".into(), "Switch pays in NGN".into()));
        }
        let (fee, vat) = match (product.fee, product.tax) {
            (Some(f), Some(v)) => (f.minor_units, v.minor_units),
            _ => {
                why.push((
                    "product_id".into(),
                    "the plan's item_fee or vat is not a naira amount; it cannot be priced".into(),
                ));
                (0, 0)
            }
        };
        if product.amount_fixed {
            if let Some(price) = product.amount {
                if price.minor_units != order.amount.minor_units {
                    why.push((
                        "amount.minor_units".into(),
                        format!(
                            "plan {} costs exactly {} kobo",
                            product.product_id, price.minor_units
                        ),
                    ));
                }
                let sum = price
                    .minor_units
                    .checked_add(fee)
                    .and_then(|s| s.checked_add(vat));
                if let (Some(stated), Some(sum)) = (product.total, sum) {
                    if stated.minor_units != sum {
                        why.push((
                            "product_id".into(),
                            format!(
                                "the plan's total {} kobo is not amount + item_fee + vat = {sum} kobo",
                                stated.minor_units
                            ),
                        ));
                    }
                }
            }
        }
        let total = order
            .amount
            .minor_units
            .checked_add(fee)
            .and_then(|s| s.checked_add(vat));
        if total.is_none() {
            why.push((
                "amount.minor_units".into(),
                "too large with the plan's charges".into(),
            ));
        }
        if let Some(expected) = order.expected_total {
            if expected.currency != Currency::Ngn {
                why.push((
                    "expected_total.currency_code".into(),
                    "Switch pays in NGN".into(),
                ));
            }
        }
        for key in order.inputs.keys() {
            if !product.input_fields.iter().any(|f| &f.key == key) {
                why.push((format!("inputs[{key}]"), "not an input of this plan".into()));
            }
        }
        for field in &product.input_fields {
            let given = order.inputs.get(&field.key).is_some_and(|v| !v.is_empty());
            if field.required && !given && field.default_value.is_empty() {
                why.push((
                    format!("inputs[{}]", field.key),
                    format!("required ({})", field.label),
                ));
            }
        }
        match self.two_factor {
            TwoFactor::Pin if secrets.pin.is_none() => why.push((
                "switch.pin".into(),
                "required (the Switch user's second factor is a PIN)".into(),
            )),
            TwoFactor::Otp if secrets.otp.is_none() => why.push((
                "switch.otp".into(),
                "required (the Switch user's second factor is an OTP; see SendPaymentOtp)".into(),
            )),
            _ => {}
        }
        if !why.is_empty() {
            return Err(ProviderError::InvalidOrder(why));
        }
        let total = total.unwrap_or_default();
        if let Some(expected) = order.expected_total {
            if expected.minor_units != total {
                return Err(ProviderError::PriceChanged {
                    expected,
                    actual: Money::new(Currency::Ngn, total),
                });
            }
        }
        Ok(Priced {
            product,
            fee,
            vat,
            total,
        })
    }
}

/// An order priced against its plan, in kobo.
struct Priced<'p> {
    product: &'p Product,
    fee: i64,
    vat: i64,
    total: i64,
}

/// Maps a read's answer: 2xx parsed, anything else an error. A 404 is `NotFound` of the object
/// the path names (`not_found`), or `Upstream` for a fixed path.
fn answer<T: DeserializeOwned + Default>(
    operation: &'static str,
    raw: RawResponse,
    not_found: Option<(Resource, &str)>,
) -> Result<Envelope<T>, ProviderError> {
    match (raw.status, not_found) {
        (404, Some((resource, name))) => {
            return Err(ProviderError::NotFound {
                resource,
                name: name.to_owned(),
            })
        }
        (404, None) => return Err(ProviderError::Upstream { status: 404 }),
        _ => {}
    }
    match raw.status {
        200..=299 => serde_json::from_slice(&raw.body)
            .map_err(|e| ProviderError::Unreadable(format!("{operation}: {e}"))),
        401 | 403 => Err(ProviderError::Auth { status: raw.status }),
        status @ 500..=599 => Err(ProviderError::Upstream { status }),
        status => {
            let message = serde_json::from_slice::<MessageOnly>(&raw.body)
                .map(|m| m.message)
                .unwrap_or_default();
            if message.is_empty() {
                Err(ProviderError::Upstream { status })
            } else {
                Err(ProviderError::Rejected {
                    code: status.to_string(),
                    message,
                })
            }
        }
    }
}

/// Maps a `/bills/pay` answer (see [`codes`]). `scheduled_at_ms` is the start date sent, if
/// any; `fee` and `total` are what the payment was priced at; `secrets` are kept out of the
/// answer recorded for an operator.
///
/// No answer is checked against the journal's identity (`AnswerIdentity`): the documents show
/// no `/bills/pay` response body at all (docs/providers.md §2.4: "HTTP 200 + message"), so no
/// field is known to echo the customer (`consumer_id_field`), plan or amount sent, and our
/// reference is never sent. Nor is any answer read as "no transaction with this reference"
/// (`reference_not_found`): Switch has no status query and documents no such answer.
fn pay_outcome(
    raw: RawResponse,
    scheduled_at_ms: Option<i64>,
    fee: i64,
    total: i64,
    secrets: &PaymentSecrets,
) -> Result<PaymentOutcome, ProviderError> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let body = match serde_json::from_slice(&raw.body) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let message = body
        .as_ref()
        .and_then(|b| text(&b["message"]))
        .filter(|m| !m.trim().is_empty());
    let meaning = codes::pay_meaning(raw.status, message.is_some());
    let (Some(body), Some(message), Some(state)) = (
        body,
        message,
        codes::pay_state(meaning, scheduled_at_ms.is_some()),
    ) else {
        return match meaning {
            codes::PayMeaning::Unknown => Err(ProviderError::Upstream { status: raw.status }),
            _ => Ok(PaymentOutcome::undocumented(
                raw.status.to_string(),
                recorded_answer(&raw.body, secrets),
                format!(
                    "Switch answered the payment with HTTP {}{}, an answer its documents do not \
                     define (paid: HTTP 200 with a message; refused: HTTP 400 with a message), \
                     and Switch has no status query: settle it with Switch",
                    raw.status,
                    if raw.status == 401 {
                        " (session refused; not resent, the next call logs in again)"
                    } else {
                        ""
                    }
                ),
            )),
        };
    };
    let mut outcome = PaymentOutcome::answered(state, raw.status.to_string(), message);
    if meaning == codes::PayMeaning::Accepted {
        // The answer's `data` is undocumented: a reference and a token are read when present
        // under these assumed names.
        let data = &body["data"];
        outcome.provider_transaction_id = ["reference", "transaction_id", "id"]
            .iter()
            .find_map(|k| text(&data[*k]))
            .filter(|s| !s.is_empty());
        outcome.fulfilment_token = text(&data["token"]).filter(|s| !s.is_empty());
        outcome.extras.fee = Some(Money::new(Currency::Ngn, fee));
        outcome.extras.total = Some(Money::new(Currency::Ngn, total));
        outcome.extras.scheduled_at_ms = scheduled_at_ms;
    }
    Ok(outcome)
}

/// Longest part of an undocumented answer kept for the operator, in characters.
const RECORDED_ANSWER_CHARS: usize = 500;

/// The body of an answer as the operator sees it: text, cut to [`RECORDED_ANSWER_CHARS`], with
/// the PIN and OTP sent blanked out should Switch echo them.
fn recorded_answer(body: &[u8], secrets: &PaymentSecrets) -> String {
    let mut text: String = String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(RECORDED_ANSWER_CHARS)
        .collect();
    for secret in [&secrets.pin, &secrets.otp].into_iter().flatten() {
        let secret = secret.expose_secret();
        if !secret.is_empty() {
            text = text.replace(secret, "[redacted]");
        }
    }
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// The `exp` of a JWT session token, unix seconds, when the token is a readable JWT.
fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}

/// Percent-encodes an id used as a path segment, so a caller's id cannot change the path.
fn path_segment(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[async_trait]
impl TokenSource for Switch {
    /// The configured login call (or the static token).
    async fn obtain(&self) -> Result<IssuedToken, ProviderError> {
        let login = match &self.session {
            Session::Static(token) => {
                return Ok(IssuedToken {
                    access_token: token.clone(),
                    refresh_token: None,
                    expires_in: self.session_lifetime,
                })
            }
            Session::Login(login) => login,
        };
        let mut body = Map::new();
        body.insert(login.username_field.clone(), json!(login.username));
        body.insert("password".into(), json!(login.password.expose_secret()));
        let bytes = serde_json::to_vec(&body).expect("login body serializes");
        let raw = self
            .send(
                "login",
                reqwest::Method::POST,
                &login.path,
                Some(bytes),
                None,
            )
            .await?;
        if matches!(raw.status, 400..=499) {
            // Wrong credentials: the gateway's problem, never the caller's.
            return Err(ProviderError::Auth { status: raw.status });
        }
        let answer: Envelope<wire::LoginData> = answer("login", raw, None)?;
        let token = answer.data.auth_token;
        if token.is_empty() {
            return Err(ProviderError::Unreadable(
                "login answered no auth_token".into(),
            ));
        }
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let expires_in = jwt_expiry(&token)
            .map(|exp| Duration::from_secs((exp - now_s).max(0) as u64))
            .unwrap_or(self.session_lifetime);
        Ok(IssuedToken {
            access_token: SecretString::from(token),
            refresh_token: None,
            expires_in,
        })
    }
}

#[async_trait]
impl Provider for Switch {
    /// Plans are listed per vendor (`/user/bills/vendors/{id}/plans`).
    fn product_catalog(&self) -> crate::domain::ProductCatalog {
        crate::domain::ProductCatalog::PerBiller
    }

    fn id(&self) -> ProviderId {
        ProviderId::Switch
    }

    fn display_name(&self) -> &'static str {
        "Switch"
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ngn]
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    /// A payment with `save_information` saves the bill (vendor and consumer id) at Switch.
    fn created_objects(&self, order: &PaymentOrder, _reference: &str) -> Vec<ProviderObject> {
        match &order.options {
            PaymentOptions::Switch(o) if o.save_information => vec![ProviderObject::SavedBill {
                biller_id: order.biller_id.clone(),
                customer_id: order.customer_id.clone(),
            }],
            _ => Vec::new(),
        }
    }

    fn accepting_calls(&self) -> Result<(), ProviderError> {
        self.guard.check()
    }

    /// The gateway's own reference; Switch takes none, so it is never sent.
    fn payment_reference(&self, sequence: u64) -> Option<String> {
        Some(format!("SWI{sequence}"))
    }

    fn pays_from_catalog(&self) -> bool {
        true
    }

    fn check_order(
        &self,
        order: &PaymentOrder,
        product: Option<&Product>,
        secrets: &PaymentSecrets,
    ) -> Result<(), ProviderError> {
        // Prices only: the body (with the PIN or OTP) is built for the call itself.
        self.price(order, product, secrets).map(|_| ())
    }

    async fn list_categories(&self) -> Result<Vec<Category>, ProviderError> {
        let r: Envelope<Vec<wire::WireCategory>> = self
            .read(
                "list_categories",
                reqwest::Method::GET,
                "/user/bills/categories",
                None,
            )
            .await?;
        Ok(r.data.into_iter().map(Category::from).collect())
    }

    async fn list_billers(&self, category_id: Option<&str>) -> Result<Vec<Biller>, ProviderError> {
        let path = match category_id {
            Some(id) => format!("/user/bills/categories/{}/vendors", path_segment(id)),
            None => "/user/bills/vendors".to_owned(),
        };
        let category = category_id.map(|id| (Resource::Category, id));
        let r: Envelope<Vec<wire::WireVendor>> = self
            .read("list_billers", reqwest::Method::GET, &path, category)
            .await?;
        Ok(r.data.into_iter().map(Biller::from).collect())
    }

    async fn list_products(&self, biller_id: &str) -> Result<Vec<Product>, ProviderError> {
        let path = format!("/user/bills/vendors/{}/plans", path_segment(biller_id));
        let r: Envelope<Vec<wire::WirePlan>> = self
            .read(
                "list_products",
                reqwest::Method::GET,
                &path,
                Some((Resource::Biller, biller_id)),
            )
            .await?;
        Ok(r.data
            .into_iter()
            .map(|p| p.into_product(biller_id))
            .collect())
    }

    async fn pay(
        &self,
        payment: &PaymentRecord,
        secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        let order = &payment.order;
        // Checked again against the plan stored at the claim: what is sent is what was checked.
        let body = self.pay_body(order, payment.product.as_ref(), secrets)?;
        let priced = self.price(order, payment.product.as_ref(), secrets)?;
        let (fee, total) = (priced.fee, priced.total);
        let scheduled_at_ms = match &order.options {
            PaymentOptions::Switch(o) => o.start_time_ms,
            _ => None,
        };
        let bytes = serde_json::to_vec(&body).expect("payment body serializes");
        let refusal = std::sync::Mutex::new(Vec::new());
        let raw = match self.call_once("pay", "/bills/pay", bytes, &refusal).await {
            // Switch refused the session token: its documents do not say whether it looked at
            // the payment first, it cannot be asked, and a resend could pay twice.
            Err(ProviderError::Auth { status: 401 }) => RawResponse {
                status: 401,
                body: refusal.into_inner().unwrap_or_else(|p| p.into_inner()),
            },
            other => other?,
        };
        pay_outcome(raw, scheduled_at_ms, fee, total, secrets)
    }

    async fn list_saved_bills(
        &self,
        page: ProviderPageRequest,
    ) -> Result<ProviderPage<SavedBill>, ProviderError> {
        let limit = page.limit.max(1);
        // Switch pages by number: an offset that is not a whole number of pages (after a short
        // page) is read as the first page of offset + limit items, cut.
        let (per_page, number, skip) = if page.offset.is_multiple_of(limit) {
            (limit, page.offset / limit + 1, 0)
        } else {
            (page.offset.saturating_add(limit), 1, page.offset)
        };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("per_page", &per_page.to_string())
            .append_pair("page", &number.to_string())
            .finish();
        let path = format!("/user/bills/saved_bills?{query}");
        let r: Envelope<Vec<wire::WireSavedBill>> = self
            .read("list_saved_bills", reqwest::Method::GET, &path, None)
            .await?;
        // No total is documented: a full page means there may be more.
        let more = r.data.len() >= per_page as usize;
        let items = r
            .data
            .into_iter()
            .skip(skip as usize)
            .map(SavedBill::from)
            .collect();
        Ok(ProviderPage { items, more })
    }

    async fn delete_saved_bill(&self, saved_bill_id: &str) -> Result<(), ProviderError> {
        let path = format!("/user/saved_bills/{}", path_segment(saved_bill_id));
        let _: Envelope<Value> = self
            .read(
                "delete_saved_bill",
                reqwest::Method::DELETE,
                &path,
                Some((Resource::SavedBill, saved_bill_id)),
            )
            .await?;
        Ok(())
    }

    async fn send_otp(&self) -> Result<String, ProviderError> {
        let raw = self
            .call(
                "send_otp",
                reqwest::Method::POST,
                "/user/two_factor_auth/send_otp",
                None,
            )
            .await?;
        let r: Envelope<Value> = answer("send_otp", raw, None)?;
        Ok(r.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PaymentState;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn pin(pin: &str) -> PaymentSecrets {
        PaymentSecrets {
            pin: Some(SecretString::from(pin.to_owned())),
            ..PaymentSecrets::default()
        }
    }

    fn pay(status: u16, body: &str) -> Result<PaymentOutcome, ProviderError> {
        pay_outcome(raw(status, body), None, 0, 1, &pin("4821"))
    }

    #[test]
    fn pay_answers_map_to_states() {
        let ok = pay_outcome(
            raw(200, r#"{"message":"Bill paid"}"#),
            None,
            8_400,
            1_468_400,
            &pin("4821"),
        )
        .unwrap();
        assert_eq!(ok.state, PaymentState::Succeeded);
        assert_eq!(
            (ok.provider_code.as_str(), ok.provider_message.as_str()),
            ("200", "Bill paid")
        );
        assert_eq!(ok.extras.total.unwrap().minor_units, 1_468_400);
        let later = pay_outcome(
            raw(200, r#"{"message":"scheduled"}"#),
            Some(5),
            0,
            1,
            &pin("4821"),
        )
        .unwrap();
        assert_eq!(later.state, PaymentState::Scheduled);
        assert_eq!(later.extras.scheduled_at_ms, Some(5));
        let refused = pay(400, r#"{"message":"Pin should be a 4-digit number"}"#).unwrap();
        assert_eq!(refused.state, PaymentState::Failed);
        assert_eq!(refused.provider_message, "Pin should be a 4-digit number");
        assert!(matches!(
            pay(502, ""),
            Err(ProviderError::Upstream { status: 502 })
        ));
        assert!(matches!(
            pay(302, "{}"),
            Err(ProviderError::Upstream { status: 302 })
        ));
    }

    #[test]
    fn an_undocumented_answer_goes_to_an_operator_with_the_answer_recorded() {
        for (status, body) in [
            (400, "{}"),
            (400, r#"{"error":"Pin should be a 4-digit number"}"#),
            (400, r#"{"message":"  "}"#),
            (402, r#"{"message":"Insufficient funds"}"#),
            (404, r#"{"message":"Vendor not found"}"#),
            (422, r#"{"message":"Unprocessable"}"#),
            (401, r#"{"message":"jwt expired"}"#),
            (403, ""),
            (200, "{}"),
            (200, "<html>ok</html>"),
            (200, r#"["paid"]"#),
            (202, r#"{"message":"Accepted"}"#),
        ] {
            let answer = pay(status, body).unwrap();
            assert_eq!(
                answer.effective_state(),
                PaymentState::NeedsAttention,
                "{status} {body}"
            );
            assert_eq!(answer.provider_code, status.to_string());
            let expected = if body.is_empty() {
                "(empty body)"
            } else {
                body
            };
            assert_eq!(answer.provider_message, expected);
            assert!(answer.mismatch.unwrap().contains("no status query"));
        }
        // An echoed PIN is not recorded; a long answer is cut.
        let echoed = pay(422, r#"{"message":"bad pin 4821"}"#).unwrap();
        assert_eq!(
            echoed.provider_message,
            r#"{"message":"bad pin [redacted]"}"#
        );
        let long = pay(422, &"x".repeat(2_000)).unwrap();
        assert_eq!(long.provider_message.len(), RECORDED_ANSWER_CHARS);
    }

    #[test]
    fn the_documented_answer_shapes_settle_as_before_with_nothing_to_match() {
        // HTTP 200 with a message is the only success shape the documents give; no body field
        // echoes the payment, so nothing can contradict it.
        let ok = pay_outcome(
            raw(200, r#"{"message":"Bill payment successful"}"#),
            None,
            8_400,
            1_468_400,
            &pin("4821"),
        )
        .unwrap();
        assert_eq!(ok.effective_state(), PaymentState::Succeeded);
        assert_eq!(
            (ok.mismatch.as_deref(), ok.reference_not_found),
            (None, false)
        );
        assert_eq!(ok.provider_transaction_id, None);
        // The documented error (HTTP 400 + message) refuses the payment: FAILED, never "no
        // transaction with this reference".
        let refused = pay(400, r#"{"message":"Pin should be a 4-digit number"}"#).unwrap();
        assert_eq!(refused.effective_state(), PaymentState::Failed);
        assert_eq!(
            (refused.mismatch.as_deref(), refused.reference_not_found),
            (None, false)
        );
    }

    fn parse(text: &str) -> SwitchConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn config_defaults_and_rules() {
        let login = "[login]\nusername = \"u\"\npassword = \"p\"\n";
        let base = "base_url = \"https://switchapi3.azurewebsites.net\"\nclient_id = \"c\"\n";
        let c = parse(&format!("{base}checksum_key = \"k\"\n{login}"));
        assert!(c.validate().is_ok());
        assert_eq!(c.checksum, ChecksumStrategy::HmacSha256Hex);
        assert_eq!(c.two_factor, TwoFactor::Pin);
        assert_eq!(c.session_lifetime_ms, 1_800_000);
        let l = c.login.as_ref().unwrap();
        assert_eq!(
            (l.path.as_str(), l.username_field.as_str()),
            ("/user/login", "email")
        );
        // The default checksum needs its key.
        assert!(parse(&format!("{base}{login}")).validate().is_err());
        assert!(parse(&format!("{base}checksum = \"none\"\n{login}"))
            .validate()
            .is_ok());
        // Exactly one way to a session.
        assert!(parse(&format!("{base}checksum = \"none\"\n"))
            .validate()
            .is_err());
        let both = format!("{base}checksum = \"none\"\nsession_token = \"t\"\n{login}");
        assert!(parse(&both).validate().is_err());
        let otp = parse(&format!(
            "{base}checksum = \"sha256-hex\"\ntwo_factor = \"otp\"\nsession_token = \"t\"\n"
        ));
        assert!(otp.validate().is_ok());
        assert_eq!(otp.two_factor, TwoFactor::Otp);
        assert!(toml::from_str::<SwitchConfig>(&format!("{base}checksum = \"md5\"\n")).is_err());
    }

    #[test]
    fn a_jwt_session_says_when_it_expires() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iat":1586000000,"exp":1586001800}"#);
        assert_eq!(jwt_expiry(&format!("h.{payload}.s")), Some(1_586_001_800));
        assert_eq!(jwt_expiry("opaque-token"), None);
    }
}
