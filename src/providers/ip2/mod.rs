//! Intelworld IP2 Payments API (Uganda): payment methods, products, accounts, balances,
//! debits (CreatePayment), credits (CreateCollection) and the transaction list (ListProviderTransactions,
//! and GetPayment/reconciliation by our RequestId), signed with the `ApiAuth` scheme
//! ([`auth`]). Amounts are whole UGX ([`wire::to_ip2_amount`]).
//!
//! Assumptions where the spec is silent (README "Intelworld IP2" says the same):
//! - every call carries `subscriptionId` and `accountId` in the query (documented for the
//!   account and transaction resources; harmless elsewhere) and signs them;
//! - a payment's `RequestId` and `BatchId` are both our stored reference: one debit per batch;
//! - IP2 has no "get one transaction": a payment is found again in `GET transactions` around
//!   its creation time by `RequestId`;
//! - a debit or credit answer decides a payment only through a clear transaction status word
//!   ([`codes`]); `ResponseCode` 0 alone means "accepted" (PENDING); HTTP 400/422 are
//!   PENDING with IP2's code and message recorded: IP2 publishes no codes, so nothing says the
//!   request was refused before any money moved, and the transaction list decides; anything
//!   else stays PENDING too;
//! - a debit or credit is sent once, never again, not even after a 401: every request is signed
//!   with the API password (there is no token to renew), and IP2 documents no duplicate check
//!   on `RequestId` that would make a resend safe;
//! - an answer (debit, credit or listed transaction) echoing a RequestId, CustomerId,
//!   ProductId or Amount other than ours is about another transaction: it never settles the
//!   payment, which goes to an operator (NEEDS_ATTENTION);
//! - IP2 documents no "no transaction with this reference" answer, so a RequestId missing
//!   from the listing leaves the outcome unknown (never `reference_not_found`).

pub mod auth;
pub mod codes;
pub mod dates;
pub mod wire;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::Value;

use crate::domain::{
    options::Ip2Options, payment::PaymentKind, Account, AnswerIdentity, Balance, BalanceQuery,
    Capability, Currency, Money, PaymentMethod, PaymentOptions, PaymentOrder, PaymentOutcome,
    PaymentRecord, PaymentSecrets, Product, Provider, ProviderError, ProviderId, ProviderObject,
    ProviderPage, ProviderTransaction, Resource, TransactionQuery,
};
use crate::providers::{
    guard::{CallGuard, CallLimits},
    http::{self, RawResponse},
};
use auth::{SignedFields, SigningOptions};
use wire::{TransactionAnswer, TransactionItem};

/// Longest IP2 memo (spec: "Maximum 500 characters").
pub const MAX_MEMO_CHARS: usize = 500;

/// `[providers.intelworld_ip2]` configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ip2Config {
    /// The BaseUri from the Business Console (Manage), path included, no trailing slash
    /// needed: `https://<host>/<path>`. Not published.
    pub base_url: String,
    /// API Key from the Business Console. Never logged.
    pub api_key: SecretString,
    /// API Password from the Business Console. Never logged.
    pub api_password: SecretString,
    /// subscriptionId from the Business Console.
    pub subscription_id: String,
    /// Account used when a request names none (Business Console, Accounts).
    pub account_id: String,
    /// ChannelId used when a payment names none.
    pub channel_id: String,
    /// ISO-3166 alpha-2 CountryCode used when a payment names none.
    #[serde(default = "default_country_code")]
    pub country_code: String,
    /// Prefix of our RequestIds (letters and digits, at most 8), followed by 12 digits of a
    /// deployment-wide sequence.
    #[serde(default = "default_request_id_prefix")]
    pub request_id_prefix: String,
    /// Which reading of the ApiAuth steps to sign with (`[...signing]`: `hash`, `key`).
    #[serde(default)]
    pub signing: SigningOptions,
    /// Records asked for per page (`count`) when reading whole lists.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Most pages read for one whole list or one payment look-up.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// How far before a payment's creation, and after now, its look-up in the transaction
    /// list searches, milliseconds.
    #[serde(default = "default_query_window_ms")]
    pub query_window_ms: u64,
    /// Whole-request timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP/TLS connect timeout, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrency limit and circuit breaker (`[providers.intelworld_ip2.limits]`).
    #[serde(default)]
    pub limits: CallLimits,
}

fn default_country_code() -> String {
    "UG".into()
}
fn default_request_id_prefix() -> String {
    "BPG".into()
}
fn default_page_size() -> u32 {
    100
}
fn default_max_pages() -> u32 {
    50
}
fn default_query_window_ms() -> u64 {
    86_400_000
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}

impl Ip2Config {
    /// Checks what the provider would otherwise reject at the first call.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://"))
            || reqwest::Url::parse(&self.base_url).is_err()
        {
            return Err("intelworld_ip2.base_url must be an http:// or https:// URL".into());
        }
        for (name, value) in [
            ("subscription_id", &self.subscription_id),
            ("account_id", &self.account_id),
            ("channel_id", &self.channel_id),
        ] {
            if value.trim().is_empty() {
                return Err(format!("intelworld_ip2.{name} must be set"));
            }
        }
        let p = &self.request_id_prefix;
        if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("intelworld_ip2.request_id_prefix must be 1-8 letters or digits".into());
        }
        let c = &self.country_code;
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("intelworld_ip2.country_code must be ISO-3166 alpha-2, upper case".into());
        }
        if !(1..=1_000).contains(&self.page_size) || self.max_pages == 0 {
            return Err("intelworld_ip2.page_size must be 1-1000 and max_pages at least 1".into());
        }
        Ok(())
    }
}

const CAPABILITIES: &[Capability] = &[
    Capability::ListProducts,
    Capability::ListPaymentMethods,
    Capability::CreatePayment,
    Capability::CreateCollection,
    Capability::QueryPayment,
    Capability::ListProviderPayments,
    Capability::GetBalance,
    Capability::ListAccounts,
];

/// Digits of the sequence in a RequestId.
const REFERENCE_DIGITS: usize = 12;

/// Transaction limits of an account, learnt from `GET accounts`.
#[derive(Clone, Copy, Default)]
struct Limits {
    min: Option<Money>,
    max: Option<Money>,
}

/// The Intelworld IP2 client.
pub struct Ip2 {
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    api_password: SecretString,
    signing: SigningOptions,
    subscription_id: String,
    account_id: String,
    channel_id: String,
    country_code: String,
    request_id_prefix: String,
    page_size: u32,
    max_pages: u32,
    query_window_ms: i64,
    guard: CallGuard,
    /// Limits per account id, from the last ListAccounts: checked before paying.
    limits: Mutex<HashMap<String, Limits>>,
}

/// What a signed call sends besides its path.
struct Call<'a> {
    operation: &'static str,
    method: reqwest::Method,
    path: &'a str,
    account_id: &'a str,
    query: Vec<(&'static str, String)>,
    /// The JSON body with the signed fields of its one item.
    body: Option<(Vec<u8>, SignedFields)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Ip2 {
    /// Builds the client from validated configuration.
    pub fn new(config: Ip2Config) -> Self {
        Self {
            http: http::client(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.timeout_ms),
            ),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key,
            api_password: config.api_password,
            signing: config.signing,
            subscription_id: config.subscription_id,
            account_id: config.account_id,
            channel_id: config.channel_id,
            country_code: config.country_code,
            request_id_prefix: config.request_id_prefix,
            page_size: config.page_size,
            max_pages: config.max_pages,
            query_window_ms: i64::try_from(config.query_window_ms).unwrap_or(i64::MAX / 4),
            guard: CallGuard::new("intelworld_ip2", &config.limits),
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// The account a request is about: its own, else the configured default.
    fn account<'a>(&'a self, requested: &'a str) -> &'a str {
        if requested.is_empty() {
            &self.account_id
        } else {
            requested
        }
    }

    /// Signs and sends one request.
    async fn call(&self, call: Call<'_>) -> Result<RawResponse, ProviderError> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("subscriptionId", &self.subscription_id)
                .append_pair("accountId", call.account_id);
            for (name, value) in &call.query {
                query.append_pair(name, value);
            }
            query.finish()
        };
        let url = format!("{}/{}?{query}", self.base_url, call.path);
        let (body, mut fields) = call.body.unwrap_or_default();
        fields.subscription_id = self.subscription_id.clone();
        fields.account_id = call.account_id.to_owned();
        let date = dates::api_auth_date(now_ms() / 1_000);
        let signature = auth::signature(
            self.signing,
            &self.api_key,
            &self.api_password,
            &auth::representation(&fields, &date),
        );
        let api_key = {
            use secrecy::ExposeSecret;
            let mut v = reqwest::header::HeaderValue::from_str(self.api_key.expose_secret())
                .map_err(|_| {
                    ProviderError::Transport("the API key is not a header value".into())
                })?;
            v.set_sensitive(true);
            v
        };
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&auth::authorization(&signature))
                .expect("base64 is a header value");
        authorization.set_sensitive(true);
        // Content-MD5 goes on every call, of the empty body on a GET [GUESS].
        let mut request = self
            .http
            .request(call.method, url)
            .header("X-ApiAuth-ApiKey", api_key)
            .header("X-Date", &date)
            .header("X-Content-Type", "application/json; charset=utf-8")
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Content-MD5", auth::base64_md5(&body))
            .header("Authorization", authorization);
        if !body.is_empty() {
            request = request.body(body);
        }
        self.guard
            .run(
                http::send("intelworld_ip2", call.operation, request),
                http::transport_failure,
            )
            .await
    }

    /// A signed GET of the default or named account, read as `T`.
    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        account_id: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<T, ProviderError> {
        let raw = self
            .call(Call {
                operation,
                method: reqwest::Method::GET,
                path,
                account_id,
                query,
                body: None,
            })
            .await?;
        match raw.status {
            200..=299 => serde_json::from_slice(&raw.body)
                .map_err(|e| ProviderError::Unreadable(format!("{operation}: {e}"))),
            401 | 403 => Err(ProviderError::Auth { status: raw.status }),
            // Every path is fixed; the account is a query parameter. A 404 about an account
            // the caller named is that account missing; about the configured one, the
            // endpoint missing.
            404 if account_id != self.account_id => Err(ProviderError::NotFound {
                resource: Resource::Account,
                name: account_id.to_owned(),
            }),
            500..=599 => Err(ProviderError::Upstream { status: raw.status }),
            status => match TransactionAnswer::parse(&raw.body) {
                Ok(a) if !a.code().is_empty() || !a.response_message.is_empty() => {
                    Err(ProviderError::Rejected {
                        code: a.code(),
                        message: a.response_message,
                    })
                }
                _ => Err(ProviderError::Upstream { status }),
            },
        }
    }

    /// Every item of a list the provider pages with `offset`/`count`.
    async fn get_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut all = Vec::new();
        for page in 0..self.max_pages {
            let offset = u64::from(page) * u64::from(self.page_size);
            let items: Vec<T> = self
                .get(
                    operation,
                    path,
                    &self.account_id,
                    vec![
                        ("offset", offset.to_string()),
                        ("count", self.page_size.to_string()),
                    ],
                )
                .await?;
            let full = items.len() >= self.page_size as usize;
            all.extend(items);
            if !full {
                return Ok(all);
            }
        }
        Err(ProviderError::Unreadable(format!(
            "{operation}: more than {} pages of {}",
            self.max_pages, self.page_size
        )))
    }

    /// One page of transactions of `account_id` between two times (unix ms).
    async fn transactions(
        &self,
        operation: &'static str,
        account_id: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        offset: u64,
        count: u32,
    ) -> Result<Vec<TransactionItem>, ProviderError> {
        let mut query = Vec::new();
        if let Some(from) = from_ms {
            query.push(("ealierdate", dates::iso(from)));
        }
        if let Some(to) = to_ms {
            query.push(("laterdate", dates::iso(to)));
        }
        query.push(("offset", offset.to_string()));
        query.push(("count", count.to_string()));
        self.get(operation, "transactions", account_id, query).await
    }

    /// The IP2 options of an order (checked by `check_order`).
    fn options(order: &PaymentOrder) -> Option<&Ip2Options> {
        match &order.options {
            PaymentOptions::Ip2(o) => Some(o),
            _ => None,
        }
    }

    /// The memo sent: the IP2 memo, else the payment's description.
    fn memo(order: &PaymentOrder, o: &Ip2Options) -> String {
        if o.memo.trim().is_empty() {
            order.description.clone()
        } else {
            o.memo.clone()
        }
    }

    /// Remembers the limits of listed accounts.
    fn learn_limits(&self, accounts: &[Account]) {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        for a in accounts {
            limits.insert(
                a.account_id.clone(),
                Limits {
                    min: a.min_transaction_amount,
                    max: a.max_transaction_amount,
                },
            );
        }
    }

    fn known_limits(&self, account_id: &str) -> Limits {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account_id)
            .copied()
            .unwrap_or_default()
    }
}

/// Maps a debit or credit answer. Only a clear status word in a 2xx answer settles the
/// payment. HTTP 400/422 with a code or message are recorded but PENDING: IP2 publishes no
/// codes, so the answer does not say that no money moved, and the transaction list decides.
/// 5xx, other statuses and unreadable bodies are unknown.
fn pay_outcome(raw: RawResponse, payment: &PaymentRecord) -> Result<PaymentOutcome, ProviderError> {
    match raw.status {
        200..=299 | 400 | 422 => {}
        401 | 403 => return Err(ProviderError::Auth { status: raw.status }),
        status => return Err(ProviderError::Upstream { status }),
    }
    let answer = TransactionAnswer::parse(&raw.body)
        .map_err(|e| ProviderError::Unreadable(format!("transaction answer: {e}")))?;
    let code = answer.code();
    let message = if answer.status_message.is_empty() {
        answer.response_message.clone()
    } else {
        answer.status_message.clone()
    };
    if raw.status >= 400 {
        if code.is_empty() && message.is_empty() {
            return Err(ProviderError::Upstream { status: raw.status });
        }
        let code = if code.is_empty() {
            format!("HTTP {}", raw.status)
        } else {
            code
        };
        return Ok(PaymentOutcome::answered(
            crate::domain::PaymentState::Pending,
            code,
            format!(
                "IP2 answered HTTP {} ({message}); IP2 publishes no codes, so this does not say \
                 that no money moved: the transaction list decides",
                raw.status
            ),
        ));
    }
    let currency = payment.order.amount.currency;
    let mut outcome = if !answer.transaction_status.is_empty() {
        let state = codes::transaction_state(&answer.transaction_status);
        let code = if code.is_empty() {
            answer.transaction_status.clone()
        } else {
            code
        };
        PaymentOutcome::answered(state, code, message)
    } else if !code.is_empty() {
        // Accepted (0) or a code nobody has documented: the transaction list decides.
        PaymentOutcome::answered(crate::domain::PaymentState::Pending, code, message)
    } else {
        PaymentOutcome::unknown("IP2 answered without a response code or a transaction status")
    };
    outcome.provider_transaction_id = Some(answer.transaction_id.clone()).filter(|t| !t.is_empty());
    outcome.extras.fee = wire::from_ip2_amount(currency, &answer.fee).filter(|f| f.minor_units > 0);
    Ok(checked(&answer.identity(currency), payment, outcome))
}

/// `outcome`, marked as a mismatch when the echoed fields are not those of `payment` (the
/// answer is about another transaction behind our RequestId: it never settles this payment).
/// `CustomerId` is compared with what was sent as CustomerId: `ip2.customer_reference` when
/// set, else the payment's customer_id.
fn checked(
    identity: &AnswerIdentity,
    payment: &PaymentRecord,
    mut outcome: PaymentOutcome,
) -> PaymentOutcome {
    let mut identity = identity.clone();
    let sent_reference = Ip2::options(&payment.order)
        .map(|o| o.customer_reference.as_str())
        .filter(|r| !r.is_empty());
    if let Some(sent) = sent_reference {
        if let Some(theirs) = identity.customer_id.take().filter(|t| t.trim() != sent) {
            outcome = outcome.contradicting(format!(
                "the provider's answer is not about this payment: customer {theirs:?} (ours {sent:?})"
            ));
        }
    }
    identity.check(payment, outcome)
}

/// Maps the transaction found by our RequestId. An entry for another customer, product or
/// amount, or of the other direction, is another transaction behind a reused reference: it is
/// marked as a mismatch and never settles this payment.
fn found_outcome(item: TransactionItem, payment: &PaymentRecord) -> PaymentOutcome {
    let currency = payment.order.amount.currency;
    let (status, message) = item.status();
    let mut outcome = if status.is_empty() {
        PaymentOutcome::unknown(format!(
            "transaction {} has no status yet",
            item.transaction_id
        ))
    } else if item.identity(currency).amount.is_none() {
        // Every listed transaction shows its Amount: one without it does not decide.
        PaymentOutcome::unknown(format!(
            "transaction {} lists no amount",
            item.transaction_id
        ))
    } else {
        PaymentOutcome::answered(item.state(), status, message)
    };
    outcome.provider_transaction_id = Some(item.transaction_id.clone()).filter(|t| !t.is_empty());
    outcome.extras.fee = wire::from_ip2_amount(currency, &item.fee).filter(|f| f.minor_units > 0);
    let listed_type = item.transaction_type.to_ascii_lowercase();
    let expected_type = match payment.order.kind {
        PaymentKind::Bill => "debit",
        PaymentKind::Collection => "credit",
    };
    if !listed_type.is_empty() && !listed_type.contains(expected_type) {
        outcome = outcome.contradicting(format!(
            "the provider's answer is not about this payment: a {} (ours a {expected_type})",
            item.transaction_type
        ));
    }
    checked(&item.identity(currency), payment, outcome)
}

/// A balance answer: a number, a numeric string, or an object with `Balance`.
fn balance_amount(value: &Value, currency: Currency) -> Option<Money> {
    match value {
        Value::Object(o) => o
            .get("Balance")
            .and_then(|b| wire::from_ip2_amount(currency, b)),
        Value::Array(items) => items.first().and_then(|v| balance_amount(v, currency)),
        other => wire::from_ip2_amount(currency, other),
    }
}

#[async_trait]
impl Provider for Ip2 {
    /// One product list (`/products`) for the whole account.
    fn product_catalog(&self) -> crate::domain::ProductCatalog {
        crate::domain::ProductCatalog::Whole
    }

    fn id(&self) -> ProviderId {
        ProviderId::IntelworldIp2
    }

    fn display_name(&self) -> &'static str {
        "Intelworld IP2"
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ugx]
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    /// Every debit and credit is listed by `/transactions` under the `request_id` sent.
    fn created_objects(&self, _order: &PaymentOrder, reference: &str) -> Vec<ProviderObject> {
        vec![ProviderObject::Transaction {
            reference: reference.to_owned(),
        }]
    }

    fn accepting_calls(&self) -> Result<(), ProviderError> {
        self.guard.check()
    }

    fn payment_reference(&self, sequence: u64) -> Option<String> {
        (sequence < 10u64.pow(REFERENCE_DIGITS as u32)).then(|| {
            format!(
                "{}{sequence:0width$}",
                self.request_id_prefix,
                width = REFERENCE_DIGITS
            )
        })
    }

    fn check_order(
        &self,
        order: &PaymentOrder,
        _product: Option<&Product>,
        _secrets: &PaymentSecrets,
    ) -> Result<(), ProviderError> {
        let mut bad: Vec<(String, String)> = Vec::new();
        let Some(o) = Self::options(order) else {
            return Err(ProviderError::InvalidOrder(vec![(
                "ip2".into(),
                "required (the IP2 payment method and its reference)".into(),
            )]));
        };
        if o.payment_method_id.trim().is_empty() {
            bad.push((
                "ip2.payment_method_id".into(),
                "required (see ListPaymentMethods)".into(),
            ));
        }
        if o.payment_method_reference.is_empty() {
            bad.push((
                "ip2.payment_method_reference".into(),
                "required (the payer's details for the method, e.g. {\"MSISDN\": ...})".into(),
            ));
        }
        let memo = Self::memo(order, o);
        if memo.trim().is_empty() {
            bad.push((
                "ip2.memo".into(),
                "required by IP2 (or set description)".into(),
            ));
        } else if memo.chars().count() > MAX_MEMO_CHARS {
            bad.push((
                "ip2.memo".into(),
                format!("at most {MAX_MEMO_CHARS} characters"),
            ));
        }
        if order.amount.currency != Currency::Ugx {
            bad.push(("amount.currency_code".into(), "IP2 pays in UGX only".into()));
        }
        if let Err(ProviderError::Unrepresentable { field, reason }) =
            wire::to_ip2_amount(order.amount)
        {
            bad.push((field.into(), reason));
        }
        let limits = self.known_limits(self.account(&o.account_id));
        if let Some(min) = limits.min.filter(|m| m.currency == order.amount.currency) {
            if order.amount.minor_units < min.minor_units {
                bad.push((
                    "amount.minor_units".into(),
                    format!("below the account's minimum of {}", min.minor_units),
                ));
            }
        }
        if let Some(max) = limits.max.filter(|m| m.currency == order.amount.currency) {
            if order.amount.minor_units > max.minor_units {
                bad.push((
                    "amount.minor_units".into(),
                    format!("above the account's maximum of {}", max.minor_units),
                ));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::InvalidOrder(bad))
        }
    }

    async fn list_products(&self, _biller_id: &str) -> Result<Vec<Product>, ProviderError> {
        let items: Vec<wire::ProductItem> = self.get_all("list_products", "products").await?;
        Ok(items.into_iter().map(Product::from).collect())
    }

    async fn list_payment_methods(&self) -> Result<Vec<PaymentMethod>, ProviderError> {
        let items: Vec<wire::PaymentMethodItem> = self
            .get_all("list_payment_methods", "paymentMethods")
            .await?;
        Ok(items.into_iter().map(PaymentMethod::from).collect())
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, ProviderError> {
        let value: Value = self
            .get("list_accounts", "accounts", &self.account_id, Vec::new())
            .await?;
        let items: Vec<wire::AccountItem> = match value {
            Value::Array(_) => serde_json::from_value(value),
            other => serde_json::from_value(other).map(|one| vec![one]),
        }
        .map_err(|e| ProviderError::Unreadable(format!("list_accounts: {e}")))?;
        let accounts: Vec<Account> = items
            .into_iter()
            .map(|a| a.into_account(Currency::Ugx))
            .collect();
        self.learn_limits(&accounts);
        Ok(accounts)
    }

    async fn get_balance(&self, query: &BalanceQuery) -> Result<Vec<Balance>, ProviderError> {
        let account_id = self.account(&query.account_id).to_owned();
        let value: Value = self
            .get("get_balance", "accounts/balances", &account_id, Vec::new())
            .await?;
        let available = balance_amount(&value, Currency::Ugx).ok_or_else(|| {
            ProviderError::Unreadable("get_balance: no exact UGX balance in the answer".into())
        })?;
        Ok(vec![Balance {
            account_id,
            available,
            provider_message: String::new(),
        }])
    }

    async fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<ProviderPage<ProviderTransaction>, ProviderError> {
        let account_id = self.account(&query.account_id).to_owned();
        let limit = query.page.limit.max(1);
        // One more than asked tells whether another page follows.
        let items = self
            .transactions(
                "list_transactions",
                &account_id,
                query.from_ms,
                query.to_ms,
                u64::from(query.page.offset),
                limit + 1,
            )
            .await?;
        let more = items.len() > limit as usize;
        let items = items
            .into_iter()
            .take(limit as usize)
            .map(|t| {
                let (id, amount) = (t.transaction_id.clone(), wire::value_text(&t.amount));
                t.into_transaction(Currency::Ugx).ok_or_else(|| {
                    ProviderError::Unreadable(format!(
                        "transaction {id}: amount {amount:?} is not exact"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProviderPage { items, more })
    }

    async fn pay(
        &self,
        payment: &PaymentRecord,
        _secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        let order = &payment.order;
        let o = Self::options(order).ok_or_else(|| ProviderError::Unrepresentable {
            field: "ip2",
            reason: "an IP2 payment needs IP2 options".into(),
        })?;
        let amount = wire::to_ip2_amount(order.amount)?;
        let account_id = self.account(&o.account_id).to_owned();
        let item = wire::TransactionRequest {
            batch_id: payment.provider_reference.clone(),
            request_id: payment.provider_reference.clone(),
            payment_method_id: o.payment_method_id.clone(),
            payment_method_reference: o.payment_method_reference.clone(),
            metadata: order.metadata.clone(),
            product_id: order.product_id.clone(),
            product_reference: o.product_reference.clone(),
            amount,
            currency_code: order.amount.currency.code().to_owned(),
            country_code: if o.country_code.is_empty() {
                self.country_code.clone()
            } else {
                o.country_code.clone()
            },
            memo: Self::memo(order, o),
            channel_id: if o.channel_id.is_empty() {
                self.channel_id.clone()
            } else {
                o.channel_id.clone()
            },
            channel_reference: Some(o.channel_reference.clone())
                .filter(|r| !r.is_empty())
                .map(|r| BTreeMap::from([("Reference".to_owned(), r)]))
                .unwrap_or_default(),
            customer_id: if o.customer_reference.is_empty() {
                order.customer_id.clone()
            } else {
                o.customer_reference.clone()
            },
        };
        let fields = SignedFields {
            request_id: item.request_id.clone(),
            batch_id: item.batch_id.clone(),
            amount: item.amount.to_string(),
            payment_method_id: item.payment_method_id.clone(),
            product_id: item.product_id.clone(),
            currency_code: item.currency_code.clone(),
            country_code: item.country_code.clone(),
            memo: item.memo.clone(),
            channel_id: item.channel_id.clone(),
            ..SignedFields::default()
        };
        let body = serde_json::to_vec(&[&item]).expect("a transaction request serializes");
        let (operation, path) = match order.kind {
            PaymentKind::Bill => ("pay", "transactions/debits"),
            PaymentKind::Collection => ("collect", "transactions/credits"),
        };
        let raw = self
            .call(Call {
                operation,
                method: reqwest::Method::POST,
                path,
                account_id: &account_id,
                query: Vec::new(),
                body: Some((body, fields)),
            })
            .await?;
        pay_outcome(raw, payment)
    }

    async fn query_payment(
        &self,
        payment: &PaymentRecord,
    ) -> Result<PaymentOutcome, ProviderError> {
        let account_id = Self::options(&payment.order)
            .map(|o| self.account(&o.account_id).to_owned())
            .unwrap_or_else(|| self.account_id.clone());
        let from = payment.created_at_ms.saturating_sub(self.query_window_ms);
        let to = now_ms().saturating_add(self.query_window_ms);
        for page in 0..self.max_pages {
            let offset = u64::from(page) * u64::from(self.page_size);
            let items = self
                .transactions(
                    "query_payment",
                    &account_id,
                    Some(from),
                    Some(to),
                    offset,
                    self.page_size,
                )
                .await?;
            let full = items.len() >= self.page_size as usize;
            if let Some(item) = items
                .into_iter()
                .find(|t| t.request_id == payment.provider_reference)
            {
                return Ok(found_outcome(item, payment));
            }
            if !full {
                break;
            }
        }
        // IP2 documents no "no such transaction" answer: a RequestId missing from the listing
        // may be outside the window or not listed yet, so this is unknown, never
        // `reference_not_found`.
        Ok(PaymentOutcome::unknown(format!(
            "IP2 lists no transaction with RequestId {} yet",
            payment.provider_reference
        )))
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

    fn record(ugx: i64) -> PaymentRecord {
        let order = PaymentOrder::new(
            ProviderId::IntelworldIp2,
            PaymentKind::Bill,
            "",
            "256700000001",
            Money::new(Currency::Ugx, ugx),
        );
        PaymentRecord::claimed("r".into(), order, "BPG000000000001".into(), 0)
    }

    #[test]
    fn debit_answers_map_to_states() {
        let p = record(5_000);
        let out = |status, body: &str| pay_outcome(raw(status, body), &p);
        let ok = out(
            200,
            r#"{"ResponseCode":0,"Data":{"TransactionId":"T1","TransactionStatus":"Successful"}}"#,
        )
        .unwrap();
        assert_eq!(ok.state, PaymentState::Succeeded);
        assert_eq!(ok.provider_transaction_id.as_deref(), Some("T1"));
        let accepted = out(200, r#"{"ResponseCode":0,"ResponseMessage":"Accepted"}"#).unwrap();
        assert_eq!(accepted.state, PaymentState::Pending);
        assert!(!accepted.is_unknown());
        let declined = out(
            200,
            r#"{"ResponseCode":2,"Data":{"TransactionStatus":"Failed","StatusMessage":"Insufficient balance"}}"#,
        )
        .unwrap();
        assert_eq!(declined.state, PaymentState::Failed);
        assert_eq!(declined.provider_message, "Insufficient balance");
        // IP2 publishes no codes: a 400/422 is recorded, but PENDING for the listing to decide.
        for status in [400, 422] {
            let refused = out(status, r#"{"ResponseCode":400,"ResponseMessage":"Memo"}"#).unwrap();
            assert_eq!(refused.state, PaymentState::Pending);
            assert!(!refused.is_unknown());
            assert_eq!(refused.provider_code, "400");
            assert!(refused.provider_message.contains("(Memo)"));
        }
        assert!(out(200, "{}").unwrap().is_unknown());
        assert!(matches!(out(502, ""), Err(ProviderError::Upstream { .. })));
        assert!(matches!(
            out(409, "{}"),
            Err(ProviderError::Upstream { .. })
        ));
        assert!(matches!(out(401, ""), Err(ProviderError::Auth { .. })));
        assert!(matches!(
            out(200, "<html>"),
            Err(ProviderError::Unreadable(_))
        ));
        // An answer about another amount or RequestId is not this payment's.
        for body in [
            r#"{"ResponseCode":0,"Data":{"Amount":5001,"TransactionStatus":"Successful"}}"#,
            r#"{"RequestId":"BPG9","TransactionStatus":"Successful"}"#,
            r#"{"ResponseCode":0,"Data":{"CustomerId":"256700000009","TransactionStatus":"Successful"}}"#,
            r#"{"ResponseCode":0,"Data":{"ProductId":"UMEME-YAKA"}}"#,
            r#"{"ResponseCode":0,"Data":{"Amount":"5000.5"}}"#,
        ] {
            let answer = out(200, body).unwrap();
            assert_eq!(
                answer.effective_state(),
                PaymentState::NeedsAttention,
                "{body}"
            );
            assert!(
                answer.mismatch.unwrap().contains("not about this payment"),
                "{body}"
            );
        }
        let echoed = out(
            200,
            r#"{"ResponseCode":0,"Data":{"RequestId":"BPG000000000001","CustomerId":"256700000001","Amount":5000,"CurrencyCode":"UGX","TransactionStatus":"Successful"}}"#,
        )
        .unwrap();
        assert_eq!(echoed.effective_state(), PaymentState::Succeeded);
    }

    #[test]
    fn customer_id_is_compared_with_the_customer_reference_sent() {
        let mut p = record(5_000);
        p.order.options = PaymentOptions::Ip2(Ip2Options {
            customer_reference: "cust-42".into(),
            ..Ip2Options::default()
        });
        let item = |json: &str| serde_json::from_str::<TransactionItem>(json).unwrap();
        let ours = found_outcome(
            item(
                r#"{"RequestId":"BPG000000000001","CustomerId":"cust-42","Amount":5000,"TransactionStatus":"Successful"}"#,
            ),
            &p,
        );
        assert_eq!(ours.effective_state(), PaymentState::Succeeded);
        let theirs = found_outcome(
            item(
                r#"{"RequestId":"BPG000000000001","CustomerId":"256700000001","Amount":5000,"TransactionStatus":"Successful"}"#,
            ),
            &p,
        );
        assert_eq!(theirs.effective_state(), PaymentState::NeedsAttention);
        assert!(theirs
            .mismatch
            .unwrap()
            .contains(r#"customer "256700000001" (ours "cust-42")"#));
    }

    #[test]
    fn found_transactions_settle_only_with_our_amount_and_a_clear_status() {
        let p = record(5_000);
        let item = |json: &str| serde_json::from_str::<TransactionItem>(json).unwrap();
        let done = found_outcome(
            item(
                r#"{"RequestId":"BPG000000000001","CustomerId":"256700000001","Amount":5000,"CurrencyCode":"UGX","TransactionStatus":"Successful","Fee":100}"#,
            ),
            &p,
        );
        assert_eq!(done.effective_state(), PaymentState::Succeeded);
        assert_eq!(done.extras.fee, Some(Money::new(Currency::Ugx, 100)));
        let waiting = found_outcome(
            item(
                r#"{"RequestId":"BPG000000000001","Amount":5000,"TransactionStatus":"Processing"}"#,
            ),
            &p,
        );
        assert_eq!(waiting.effective_state(), PaymentState::Pending);
        let credit = found_outcome(
            item(
                r#"{"RequestId":"BPG000000000001","Amount":5000,"TransactionType":"Credit","TransactionStatus":"Successful"}"#,
            ),
            &p,
        );
        assert_eq!(
            credit.effective_state(),
            PaymentState::NeedsAttention,
            "a credit never settles a debit"
        );
        for (json, why) in [
            (
                r#"{"RequestId":"BPG000000000001","Amount":5001,"TransactionStatus":"Successful"}"#,
                "amount 5001 UGX (ours 5000 UGX)",
            ),
            (
                r#"{"RequestId":"BPG000000000001","Amount":5000,"CurrencyCode":"KES","TransactionStatus":"Successful"}"#,
                "amount 500000 KES",
            ),
            (
                r#"{"RequestId":"BPG000000000001","Amount":"five","TransactionStatus":"Successful"}"#,
                "unreadable amount \"five\"",
            ),
            (
                r#"{"RequestId":"BPG000000000001","Amount":5000,"CustomerId":"256700000009","TransactionStatus":"Successful"}"#,
                "customer \"256700000009\"",
            ),
            (
                r#"{"RequestId":"BPG000000000001","Amount":5000,"ProductId":"UMEME-YAKA","TransactionStatus":"Successful"}"#,
                "product \"UMEME-YAKA\" (ours \"\")",
            ),
            // Still no status, but already about another payment.
            (
                r#"{"RequestId":"BPG000000000001","Amount":4000}"#,
                "amount 4000 UGX",
            ),
        ] {
            let outcome = found_outcome(item(json), &p);
            assert_eq!(
                outcome.effective_state(),
                PaymentState::NeedsAttention,
                "{json}"
            );
            let mismatch = outcome.mismatch.unwrap();
            assert!(mismatch.contains(why), "{json}: {mismatch}");
        }
        assert!(
            found_outcome(item(r#"{"RequestId":"BPG000000000001","Amount":5000}"#), &p)
                .is_unknown()
        );
        assert!(found_outcome(
            item(r#"{"RequestId":"BPG000000000001","TransactionStatus":"Successful"}"#),
            &p
        )
        .is_unknown());
    }

    #[test]
    fn config_parses_signing_options_and_validates() {
        let config: Ip2Config = toml::from_str(
            r#"
            base_url = "https://ip2.example/api"
            api_key = "key-visible-nowhere"
            api_password = "password-visible-nowhere"
            subscription_id = "S"
            account_id = "A"
            channel_id = "API"
            [signing]
            hash = "hmac_sha1"
            key = "password"
            "#,
        )
        .unwrap();
        assert_eq!(config.signing.hash, auth::SignatureHash::HmacSha1);
        assert_eq!(config.signing.key, auth::SigningKey::Password);
        assert_eq!(config.country_code, "UG");
        assert!(config.validate().is_ok());
        assert!(
            !format!("{config:?}").contains("\"p\""),
            "secrets stay hidden"
        );
        let bad = |edit: fn(&mut Ip2Config)| {
            let mut c = crate::sandbox::ip2::client_config("http://x");
            edit(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.base_url = "ftp://x".into()));
        assert!(bad(|c| c.request_id_prefix = "BP-G".into()));
        assert!(bad(|c| c.request_id_prefix = "TOOLONGPX".into()));
        assert!(bad(|c| c.country_code = "ug".into()));
        assert!(bad(|c| c.channel_id = String::new()));
        assert!(bad(|c| c.page_size = 0));
    }

    #[test]
    fn request_ids_are_the_prefix_and_twelve_digits_and_never_wrap() {
        let ip2 = Ip2::new(crate::sandbox::ip2::client_config("http://x"));
        assert_eq!(ip2.payment_reference(7).as_deref(), Some("BPG000000000007"));
        assert_eq!(
            ip2.payment_reference(999_999_999_999).as_deref(),
            Some("BPG999999999999")
        );
        assert_eq!(ip2.payment_reference(1_000_000_000_000), None);
    }

    #[test]
    fn balances_are_read_in_every_documented_shape() {
        use serde_json::json;
        for v in [
            json!(1000),
            json!("1000"),
            json!({"Balance": 1000}),
            json!([{"Balance": "1000"}]),
        ] {
            assert_eq!(
                balance_amount(&v, Currency::Ugx),
                Some(Money::new(Currency::Ugx, 1_000)),
                "{v}"
            );
        }
        assert_eq!(balance_amount(&json!({"0": 1}), Currency::Ugx), None);
    }
}
