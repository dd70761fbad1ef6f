//! InterIntel "Utility Billers API using OAuth 2.0" (Kenya, KES): `bill_payment`,
//! `bill_status`, `bill_query` and `biller-float`, each a JSON `POST` with a Bearer token from
//! the shared [`TokenCache`] (OAuth2 password grant, refresh grant; see [`auth`]).
//!
//! InterIntel has no catalog API: the product items a deployment was issued are configured,
//! and ListBillers / ListProducts serve them. A payment's `ext_outbound_id` is the configured
//! prefix followed by a deployment-wide sequence, stored before the call and used for
//! `bill_status`. Amounts are KES shillings as strings ([`wire::kes_amount`]).
//!
//! Two API generations differ: the 2023 one wants `gateway_host` and `credentials` in every
//! body, the current one (base `/api/v1`) dropped both; they are sent only when configured.
//!
//! What an answer cannot say: the spec documents only `response_status` and `response` in the
//! `bill_payment` and `bill_status` answers, so no answer echoes which payment it is about (no
//! reference, account number, product item or amount) and no [`AnswerIdentity`] can be
//! filled: an answer about another payment cannot be detected here. Nor does the billers spec
//! document a code for "no transaction with this reference" (see [`codes::NOT_FOUND`]), so no
//! answer is ever `reference_not_found`.
//!
//! [`AnswerIdentity`]: crate::domain::AnswerIdentity

pub mod auth;
pub mod codes;
pub mod wire;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::{
    Balance, BalanceQuery, BillLookup, Biller, Capability, Currency, Money, PaymentOptions,
    PaymentOrder, PaymentOutcome, PaymentRecord, PaymentSecrets, PaymentState, Product, Provider,
    ProviderError, ProviderId, Resource,
};
use crate::providers::{
    guard::{CallGuard, CallLimits},
    http::{self, RawResponse},
    token_cache::{Token, TokenCache, TokenSettings},
};
use crate::store::Store;
use auth::{OAuth, Refresh};
use wire::{BodyCredentials, Cents, ServiceAnswer, ServiceRequest, UtcOffset};

/// `[providers.interintel]` configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterIntelConfig {
    /// Base of the service paths, no trailing slash: `https://interintel.co/api/v1` (the
    /// current README); the 2023 generation used `https://interintel.co/api`.
    pub base_url: String,
    /// Path of the token endpoint under `base_url`, or a whole `https://` URL. Default
    /// `/token` (the billers README); the sibling APIs use `/o/token/`: confirm with
    /// InterIntel.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// OAuth2 client id from the portal (Developer -> Settings).
    pub client_id: String,
    /// OAuth2 client secret, sent with both grants only when set. Never logged.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Portal username.
    pub username: String,
    /// Portal password. Never logged.
    pub password: SecretString,
    /// "refresh_token" (default): refresh near expiry, falling back to the password grant;
    /// "never": always the password grant.
    #[serde(default)]
    pub refresh: Refresh,
    /// `gateway_host` body field of the 2023 API generation; not sent when unset.
    #[serde(default)]
    pub gateway_host: Option<String>,
    /// Send the `credentials` body field ({username, password}) of the 2023 generation.
    #[serde(default)]
    pub send_body_credentials: bool,
    /// Prefix of every `ext_outbound_id` (then 12 digits of the deployment-wide sequence).
    #[serde(default = "default_reference_prefix")]
    pub reference_prefix: String,
    /// Amounts with cents: "refuse" (default; whole shillings only, as every sample shows)
    /// or "decimal" (two decimals, "10.05").
    #[serde(default)]
    pub cents: Cents,
    /// Time zone of `scheduled_send`, a fixed offset from UTC: "+03:00" (default, Nairobi,
    /// which has no daylight saving time). A fixed offset is enough for Kenya.
    #[serde(default = "default_schedule_offset")]
    pub schedule_utc_offset: String,
    /// Field of the `biller-float` answer that holds the float in shillings. Default
    /// "response": the README documents no other field (an assumption; confirm).
    #[serde(default = "default_float_field")]
    pub float_field: String,
    /// The product items InterIntel issued to this deployment (`[[providers.interintel.
    /// products]]`): InterIntel has no product list API.
    #[serde(default)]
    pub products: Vec<ProductItem>,
    /// Renew the access token this long before `expires_in` ends, milliseconds.
    #[serde(default = "default_refresh_margin_ms")]
    pub token_refresh_margin_ms: u64,
    /// Longest time one token request holds the cross-replica lock, milliseconds.
    #[serde(default = "default_token_lock_ms")]
    pub token_lock_ms: u64,
    /// How often a replica waiting for another's token request looks for it, milliseconds.
    #[serde(default = "default_token_poll_ms")]
    pub token_poll_ms: u64,
    /// Whole-request timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP/TLS connect timeout, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrency limit and circuit breaker (`[providers.interintel.limits]`).
    #[serde(default)]
    pub limits: CallLimits,
}

/// One configured product item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductItem {
    /// The `product_item_id` InterIntel issued.
    pub id: String,
    /// Name shown to callers.
    pub name: String,
    /// Biller id (the gateway's; InterIntel has none).
    pub biller: String,
    /// Biller name; the biller id when unset.
    #[serde(default)]
    pub biller_name: Option<String>,
    /// Label of the account number, for example "Meter Number".
    #[serde(default)]
    pub account_label: String,
    /// The only amount this item takes, KES cents; any amount when unset.
    #[serde(default)]
    pub fixed_amount_cents: Option<i64>,
}

fn default_token_path() -> String {
    "/token".into()
}
fn default_reference_prefix() -> String {
    "BPG".into()
}
fn default_schedule_offset() -> String {
    "+03:00".into()
}
fn default_float_field() -> String {
    "response".into()
}
fn default_refresh_margin_ms() -> u64 {
    60_000
}
fn default_token_lock_ms() -> u64 {
    15_000
}
fn default_token_poll_ms() -> u64 {
    25
}
fn default_timeout_ms() -> u64 {
    20_000
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}

impl InterIntelConfig {
    /// Checks what would otherwise fail at the first call.
    pub fn validate(&self) -> Result<(), String> {
        let url = |u: &str| {
            (u.starts_with("http://") || u.starts_with("https://"))
                && reqwest::Url::parse(u).is_ok()
        };
        if !url(&self.base_url) {
            return Err("interintel.base_url must be an http:// or https:// URL".into());
        }
        if !url(&self.token_url()) {
            return Err("interintel.token_path must be a path or an http(s) URL".into());
        }
        if self.client_id.is_empty() || self.username.is_empty() {
            return Err("interintel.client_id and interintel.username must be set".into());
        }
        if UtcOffset::parse(&self.schedule_utc_offset).is_none() {
            return Err("interintel.schedule_utc_offset must look like +03:00".into());
        }
        let p = &self.reference_prefix;
        if p.len() > 20 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("interintel.reference_prefix must be up to 20 letters, digits or -".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for item in &self.products {
            if item.id.is_empty() || item.biller.is_empty() || !ids.insert(&item.id) {
                return Err(format!(
                    "interintel.products: {:?} needs a unique id and a biller",
                    item.id
                ));
            }
            if item.fixed_amount_cents.is_some_and(|c| c <= 0) {
                return Err(format!(
                    "interintel.products: {} fixed_amount_cents must be positive",
                    item.id
                ));
            }
        }
        Ok(())
    }

    fn token_url(&self) -> String {
        if self.token_path.starts_with("http://") || self.token_path.starts_with("https://") {
            self.token_path.clone()
        } else {
            format!("{}{}", self.base_url.trim_end_matches('/'), self.token_path)
        }
    }
}

const CAPABILITIES: &[Capability] = &[
    Capability::ListBillers,
    Capability::ListProducts,
    Capability::LookupBill,
    Capability::CreatePayment,
    Capability::QueryPayment,
    Capability::GetBalance,
];

/// The InterIntel client.
pub struct InterIntel {
    http: reqwest::Client,
    base_url: String,
    oauth: OAuth,
    tokens: TokenCache,
    gateway_host: Option<String>,
    body_credentials: bool,
    username: String,
    password: SecretString,
    reference_prefix: String,
    cents: Cents,
    offset: UtcOffset,
    float_field: String,
    products: Vec<ProductItem>,
    guard: Arc<CallGuard>,
}

impl InterIntel {
    /// Builds the client from validated configuration; tokens live in `store`, shared by every
    /// replica that uses the same store.
    pub fn new(config: InterIntelConfig, store: Arc<dyn Store>) -> Self {
        let http = http::client(
            Duration::from_millis(config.connect_timeout_ms),
            Duration::from_millis(config.timeout_ms),
        );
        let guard = Arc::new(CallGuard::new("interintel", &config.limits));
        let tokens = TokenCache::new(
            store,
            "interintel",
            &format!("interintel:{}:{}", config.client_id, config.username),
            TokenSettings {
                refresh_margin: Duration::from_millis(config.token_refresh_margin_ms),
                lock_for: Duration::from_millis(config.token_lock_ms),
                poll_every: Duration::from_millis(config.token_poll_ms.max(1)),
            },
        );
        let offset = UtcOffset::parse(&config.schedule_utc_offset).unwrap_or(UtcOffset(3 * 3600));
        Self {
            oauth: OAuth {
                http: http.clone(),
                token_url: config.token_url(),
                client_id: config.client_id,
                client_secret: config.client_secret,
                username: config.username.clone(),
                password: config.password.clone(),
                refresh: config.refresh,
                guard: guard.clone(),
            },
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            tokens,
            gateway_host: config.gateway_host,
            body_credentials: config.send_body_credentials,
            username: config.username,
            password: config.password,
            reference_prefix: config.reference_prefix,
            cents: config.cents,
            offset,
            float_field: config.float_field,
            products: config.products,
            guard,
        }
    }

    /// A request body with the generation-specific fields filled in.
    fn body<'a>(&'a self, product_item_id: &'a str) -> ServiceRequest<'a> {
        ServiceRequest {
            gateway_host: self.gateway_host.as_deref(),
            credentials: self.body_credentials.then_some(BodyCredentials {
                username: &self.username,
                password: &self.password,
            }),
            product_item_id,
            ..ServiceRequest::default()
        }
    }

    /// `POST {base_url}{path}` with a Bearer token. A 401 invalidates the token and the call
    /// is sent once more with a new one. Only for calls that move no money (status, query,
    /// float): a payment goes through [`InterIntel::post_once`].
    async fn post(
        &self,
        operation: &'static str,
        path: &'static str,
        body: &ServiceRequest<'_>,
    ) -> Result<RawResponse, ProviderError> {
        let bytes = serde_json::to_vec(body).expect("a service request serializes");
        self.tokens
            .authorized(&self.oauth, |token| {
                self.send_with(operation, path, bytes.clone(), token)
            })
            .await
    }

    /// `POST {base_url}{path}` with a Bearer token, sent once: a 401 invalidates the token (the
    /// next call obtains a new one) and is returned. For `bill_payment`: that InterIntel refuses
    /// a bad token before processing is not documented, and it documents no duplicate check on
    /// `ext_outbound_id` (docs/providers.md §1.6), so a resend could pay twice. The payment is
    /// PENDING and `bill_status` decides.
    async fn post_once(
        &self,
        operation: &'static str,
        path: &'static str,
        body: &ServiceRequest<'_>,
    ) -> Result<RawResponse, ProviderError> {
        let bytes = serde_json::to_vec(body).expect("a service request serializes");
        self.tokens
            .authorized_once(&self.oauth, |token| {
                self.send_with(operation, path, bytes, token)
            })
            .await
    }

    /// One `POST` with `token`; a 401 is `Err(Auth)` so the token cache drops the token.
    async fn send_with(
        &self,
        operation: &'static str,
        path: &'static str,
        bytes: Vec<u8>,
        token: Token,
    ) -> Result<RawResponse, ProviderError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(token.secret())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(bytes);
        let raw = self
            .guard
            .run(
                http::send("interintel", operation, request),
                http::transport_failure,
            )
            .await?;
        match raw.status {
            401 => Err(ProviderError::Auth { status: 401 }),
            _ => Ok(raw),
        }
    }

    fn amount(&self, money: Money) -> Result<String, ProviderError> {
        wire::kes_amount(money, self.cents)
    }

    fn product(&self, id: &str) -> Option<&ProductItem> {
        self.products.iter().find(|p| p.id == id)
    }

    fn scheduled_ms(order: &PaymentOrder) -> Option<i64> {
        match &order.options {
            PaymentOptions::InterIntel(o) => o.scheduled_send_ms,
            _ => None,
        }
    }
}

/// Reads a service answer: a 2xx or 4xx with a `response_status`. 5xx, 403 and bodies
/// without a code are errors (for a payment: outcome unknown, PENDING).
fn answer(raw: RawResponse, operation: &str) -> Result<ServiceAnswer, ProviderError> {
    if raw.status >= 500 {
        return Err(ProviderError::Upstream { status: raw.status });
    }
    let parsed: Option<ServiceAnswer> = serde_json::from_slice(&raw.body).ok();
    match parsed {
        Some(a) if !a.response_status.is_empty() => Ok(a),
        _ if raw.status == 403 => Err(ProviderError::Auth { status: 403 }),
        _ if raw.status >= 300 => Err(ProviderError::Upstream { status: raw.status }),
        _ => Err(ProviderError::Unreadable(format!(
            "{operation} answered HTTP {} without a response_status",
            raw.status
        ))),
    }
}

fn message(answer: &ServiceAnswer, code: &str) -> String {
    match answer.response.as_str() {
        "" => codes::describe(code).unwrap_or_default().to_owned(),
        m => m.to_owned(),
    }
}

/// Maps a `bill_status` answer about `payment`. The answer carries nothing that identifies the
/// payment (see the module documentation), so it is taken as about the `ext_outbound_id` sent.
fn status_outcome(answer: &ServiceAnswer, payment: &PaymentRecord) -> PaymentOutcome {
    // The payment's own status when the answer separates it from the query's code.
    let code = match answer.overall_status.as_str() {
        "" => answer.response_status.clone(),
        overall => overall.to_owned(),
    };
    if code == codes::NOT_FOUND {
        // Unknown, not `reference_not_found`: the billers spec documents no "not found" code,
        // and `25` (sibling Airtime API) also means "missing configuration", so it cannot
        // prove that a payment was never sent.
        return PaymentOutcome::unknown(format!(
            "InterIntel answered {code} (not found or missing configuration) for this \
             ext_outbound_id: outcome unknown"
        ));
    }
    if codes::is_failure(&code) {
        // A refusal code answering `bill_payment` refuses that payment. Answering `bill_status`
        // it may refuse the query itself (`92`: the product item is gone, say): the billers API
        // documents no codes but `00`, and these come from the Airtime API. A FAILED the
        // provider did not clearly say would let the caller pay again, so the payment stays
        // PENDING and ends with an operator if nothing settles it.
        return PaymentOutcome::answered(
            PaymentState::Pending,
            &code,
            format!(
                "InterIntel answered {code} ({}) to the status query; the billers API does not \
                 say whether that refuses the query or describes the payment: outcome unknown",
                message(answer, &code)
            ),
        );
    }
    let mut outcome =
        PaymentOutcome::answered(codes::payment_state(&code), &code, message(answer, &code));
    if outcome.state == PaymentState::Pending && payment.state == PaymentState::Scheduled {
        // Still waiting for its time: it stays SCHEDULED.
        outcome.state = PaymentState::Scheduled;
        outcome.extras.scheduled_at_ms = InterIntel::scheduled_ms(&payment.order);
    }
    outcome
}

#[async_trait]
impl Provider for InterIntel {
    /// The configured product items, each with its biller: InterIntel has no list API, and
    /// answers an unknown product_item_id only after accepting the payment (code 92).
    fn product_catalog(&self) -> crate::domain::ProductCatalog {
        crate::domain::ProductCatalog::PerBillerOrAny
    }

    fn id(&self) -> ProviderId {
        ProviderId::InterIntel
    }

    fn display_name(&self) -> &'static str {
        "InterIntel Utility Billers"
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Kes]
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn accepting_calls(&self) -> Result<(), ProviderError> {
        self.guard.check()
    }

    fn payment_reference(&self, sequence: u64) -> Option<String> {
        (sequence < 10u64.pow(12)).then(|| format!("{}{sequence:012}", self.reference_prefix))
    }

    fn check_order(
        &self,
        order: &PaymentOrder,
        _product: Option<&Product>,
        _secrets: &PaymentSecrets,
    ) -> Result<(), ProviderError> {
        self.amount(order.amount)?;
        if let Some(at) = Self::scheduled_ms(order) {
            wire::scheduled_send(at, self.offset)?;
        }
        if let Some(fixed) = self
            .product(&order.product_id)
            .and_then(|p| p.fixed_amount_cents)
        {
            if order.amount.minor_units != fixed {
                return Err(ProviderError::InvalidOrder(vec![(
                    "amount.minor_units".into(),
                    format!(
                        "product item {} takes exactly {fixed} cents",
                        order.product_id
                    ),
                )]));
            }
        }
        Ok(())
    }

    async fn list_billers(&self, category_id: Option<&str>) -> Result<Vec<Biller>, ProviderError> {
        if category_id.is_some_and(|c| !c.is_empty()) {
            // InterIntel has no categories.
            return Ok(Vec::new());
        }
        let mut billers = BTreeMap::new();
        for p in &self.products {
            billers.entry(p.biller.clone()).or_insert_with(|| Biller {
                biller_id: p.biller.clone(),
                name: p.biller_name.clone().unwrap_or_else(|| p.biller.clone()),
                short_name: p.biller.clone(),
                category_id: String::new(),
                currency_code: "KES".into(),
            });
        }
        Ok(billers.into_values().collect())
    }

    async fn list_products(&self, biller_id: &str) -> Result<Vec<Product>, ProviderError> {
        let products: Vec<Product> = self
            .products
            .iter()
            .filter(|p| p.biller == biller_id)
            .map(|p| Product {
                product_id: p.id.clone(),
                biller_id: p.biller.clone(),
                name: p.name.clone(),
                amount: p.fixed_amount_cents.map(|c| Money::new(Currency::Kes, c)),
                amount_fixed: p.fixed_amount_cents.is_some(),
                total: p.fixed_amount_cents.map(|c| Money::new(Currency::Kes, c)),
                customer_id_label: p.account_label.clone(),
                ..Product::default()
            })
            .collect();
        if products.is_empty() {
            return Err(ProviderError::NotFound {
                resource: Resource::Biller,
                name: biller_id.to_owned(),
            });
        }
        Ok(products)
    }

    async fn pay(
        &self,
        payment: &PaymentRecord,
        _secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        let order = &payment.order;
        let scheduled = Self::scheduled_ms(order);
        let body = ServiceRequest {
            account_number: Some(&order.customer_id),
            amount: Some(self.amount(order.amount)?),
            ext_outbound_id: Some(&payment.provider_reference),
            scheduled_send: scheduled
                .map(|at| wire::scheduled_send(at, self.offset))
                .transpose()?,
            ..self.body(&order.product_id)
        };
        let raw = self.post_once("pay", "/bill_payment/", &body).await?;
        let answer = answer(raw, "bill_payment")?;
        let code = answer.response_status.clone();
        let mut state = codes::payment_state(&code);
        let mut outcome = PaymentOutcome::answered(state, &code, message(&answer, &code));
        if let Some(at) = scheduled {
            // A scheduled send accepted (00) or taken for processing (09) is SCHEDULED: the
            // money moves at `at`.
            if state == PaymentState::Succeeded || codes::is_accepted(&code) {
                state = PaymentState::Scheduled;
                outcome.state = state;
                outcome.extras.scheduled_at_ms = Some(at);
            }
        }
        Ok(outcome)
    }

    async fn query_payment(
        &self,
        payment: &PaymentRecord,
    ) -> Result<PaymentOutcome, ProviderError> {
        let order = &payment.order;
        let body = ServiceRequest {
            account_number: Some(&order.customer_id),
            amount: Some(self.amount(order.amount)?),
            ext_outbound_id: Some(&payment.provider_reference),
            ..self.body(&order.product_id)
        };
        let raw = self.post("query_payment", "/bill_status/", &body).await?;
        let answer = answer(raw, "bill_status")?;
        Ok(status_outcome(&answer, payment))
    }

    async fn lookup_bill(
        &self,
        product_id: &str,
        customer_id: &str,
        amount: Option<Money>,
    ) -> Result<BillLookup, ProviderError> {
        let body = ServiceRequest {
            account_number: Some(customer_id),
            amount: amount.map(|a| self.amount(a)).transpose()?,
            ..self.body(product_id)
        };
        let raw = self.post("lookup_bill", "/bill_query/", &body).await?;
        let answer = answer(raw, "bill_query")?;
        let code = answer.response_status.clone();
        if codes::is_failure(&code) {
            return Err(ProviderError::Rejected {
                message: message(&answer, &code),
                code,
            });
        }
        Ok(BillLookup {
            customer_id: customer_id.to_owned(),
            customer_name: String::new(),
            amount_due: None,
            provider_message: message(&answer, &code),
            provider_code: code,
        })
    }

    async fn get_balance(&self, query: &BalanceQuery) -> Result<Vec<Balance>, ProviderError> {
        let product_id = match (query.product_id.as_str(), self.products.as_slice()) {
            ("", [only]) => only.id.clone(),
            ("", _) => {
                return Err(ProviderError::InvalidOrder(vec![(
                    "product_id".into(),
                    "InterIntel keeps a float per product item: name one".into(),
                )]))
            }
            (id, _) => id.to_owned(),
        };
        let raw = self
            .post("get_balance", "/biller-float/", &self.body(&product_id))
            .await?;
        let answer = answer(raw, "biller-float")?;
        let code = answer.response_status.clone();
        if code != codes::SUCCESS {
            return Err(ProviderError::Rejected {
                message: message(&answer, &code),
                code,
            });
        }
        let available = answer
            .field(&self.float_field)
            .and_then(|t| wire::parse_kes(&t))
            .ok_or_else(|| {
                ProviderError::Unreadable(format!(
                    "biller-float answered no KES amount in {:?}",
                    self.float_field
                ))
            })?;
        Ok(vec![Balance {
            account_id: product_id,
            available,
            provider_message: answer.response.clone(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    const MINIMAL: &str = r#"
        base_url = "https://interintel.co/api/v1/"
        client_id = "c"
        username = "u"
        password = "p"
    "#;

    fn config(extra: &str) -> InterIntelConfig {
        toml::from_str(&format!("{MINIMAL}\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let c = config("");
        c.validate().unwrap();
        assert_eq!(c.token_url(), "https://interintel.co/api/v1/token");
        assert_eq!(c.cents, Cents::Refuse);
        assert_eq!(c.refresh, Refresh::RefreshToken);
        assert_eq!(c.schedule_utc_offset, "+03:00");
        assert!(c.gateway_host.is_none() && !c.send_body_credentials);
        let absolute = config("token_path = \"https://nenasasa.com/api/v1/o/token/\"");
        assert_eq!(absolute.token_url(), "https://nenasasa.com/api/v1/o/token/");
        for bad in [
            "schedule_utc_offset = \"EAT\"",
            "reference_prefix = \"has space\"",
            "[[products]]\nid = \"1\"\nname = \"a\"\nbiller = \"b\"\n[[products]]\nid = \"1\"\nname = \"c\"\nbiller = \"b\"",
            "[[products]]\nid = \"1\"\nname = \"a\"\nbiller = \"b\"\nfixed_amount_cents = 0",
        ] {
            assert!(config(bad).validate().is_err(), "{bad}");
        }
        let no_url: InterIntelConfig =
            toml::from_str(&MINIMAL.replace("https://interintel.co/api/v1/", "interintel.co"))
                .unwrap();
        assert!(no_url.validate().is_err());
        assert!(toml::from_str::<InterIntelConfig>(&format!("{MINIMAL}\nsurprise = 1")).is_err());
    }

    #[tokio::test]
    async fn references_are_prefixed_sequences_never_reused() {
        let p = InterIntel::new(config(""), Arc::new(MemoryStore::default()));
        assert_eq!(p.payment_reference(42).unwrap(), "BPG000000000042");
        assert_eq!(
            p.payment_reference(999_999_999_999).unwrap(),
            "BPG999999999999"
        );
        assert_eq!(p.payment_reference(1_000_000_000_000), None);
        assert_eq!(p.base_url, "https://interintel.co/api/v1");
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn status(body: &str, state: PaymentState) -> PaymentOutcome {
        let order = crate::domain::PaymentOrder::new(
            ProviderId::InterIntel,
            crate::domain::payment::PaymentKind::Bill,
            "101",
            "1000000001",
            Money::new(Currency::Kes, 250_000),
        );
        let record = PaymentRecord {
            state,
            ..PaymentRecord::claimed("r".into(), order, "BPG000000000001".into(), 0)
        };
        status_outcome(&answer(raw(200, body), "t").unwrap(), &record)
    }

    #[test]
    fn a_status_answer_is_never_reference_not_found_and_never_a_mismatch() {
        // `25`, as `response_status` or `overall_status`: unknown, not "not found" (the
        // billers spec documents no such code).
        for body in [
            r#"{"response_status":"25","response":"Transaction not found"}"#,
            r#"{"response_status":"00","overall_status":25}"#,
        ] {
            let o = status(body, PaymentState::Pending);
            assert!(o.is_unknown(), "{body}: {o:?}");
            assert!(!o.reference_not_found, "{body}");
            assert!(o.provider_message.contains("25"), "{body}");
        }
        // Nothing in the answer identifies the payment, so none is a mismatch; an undocumented
        // field that looks like an echo is not read.
        let paid = status(
            r#"{"response_status":"00","response":"ok","ext_outbound_id":"BPG999"}"#,
            PaymentState::Pending,
        );
        assert_eq!(
            (paid.state, paid.mismatch, paid.reference_not_found),
            (PaymentState::Succeeded, None, false)
        );
        assert_eq!(paid.provider_code, "00");
        // A refusal code on the status query does not say the payment failed.
        let declined = status(r#"{"response_status":"51"}"#, PaymentState::Pending);
        assert_eq!(declined.state, PaymentState::Pending);
        assert!(!declined.is_unknown(), "answered: it uses a schedule step");
        assert_eq!(declined.provider_code, "51");
        assert!(
            declined
                .provider_message
                .contains("51 (insufficient float) to the status query"),
            "{}",
            declined.provider_message
        );
        let waiting = status(r#"{"response_status":"09"}"#, PaymentState::Scheduled);
        assert_eq!(waiting.state, PaymentState::Scheduled);
        let processing = status(r#"{"response_status":"09"}"#, PaymentState::Pending);
        assert_eq!(processing.state, PaymentState::Pending);
        assert!(!processing.is_unknown(), "an answer, with its code");
    }

    #[test]
    fn answers_need_a_code() {
        let a = answer(raw(200, r#"{"response_status":"00","response":"ok"}"#), "t").unwrap();
        assert_eq!(
            (a.response_status.as_str(), a.response.as_str()),
            ("00", "ok")
        );
        // A numeric code keeps its text; a 4xx with a code is an answer.
        let n = answer(
            raw(400, r#"{"response_status":51,"response":"no float"}"#),
            "t",
        );
        assert_eq!(n.unwrap().response_status, "51");
        assert!(matches!(
            answer(raw(503, r#"{"response_status":"00"}"#), "t"),
            Err(ProviderError::Upstream { status: 503 })
        ));
        assert!(matches!(
            answer(raw(403, "forbidden"), "t"),
            Err(ProviderError::Auth { status: 403 })
        ));
        assert!(matches!(
            answer(raw(404, "<html>"), "t"),
            Err(ProviderError::Upstream { status: 404 })
        ));
        assert!(matches!(
            answer(raw(200, r#"{"response":"no code"}"#), "t"),
            Err(ProviderError::Unreadable(_))
        ));
    }
}
