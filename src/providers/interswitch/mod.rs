//! Interswitch Quickteller services API v2 ("SVA"): categories, billers, payment items,
//! customer validation, payment advice and transaction query, signed with InterswitchAuth.
//! Amounts are kobo strings. A payment's `requestReference` is the configured 4-digit prefix
//! followed by 8 digits of a deployment-wide sequence (12 digits, the documented safe length).

pub mod auth;
pub mod codes;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{de::DeserializeOwned, Deserialize};

use crate::domain::{
    AnswerIdentity, Biller, Capability, Category, Currency, CustomerValidation, Money,
    PaymentOutcome, PaymentRecord, PaymentSecrets, Product, Provider, ProviderError, ProviderId,
    Resource,
};
use crate::providers::{
    guard::{CallGuard, CallLimits},
    http::{self, RawResponse},
};
use auth::{SignatureMethod, Signer};
use wire::TransactionResponse;

/// `[providers.interswitch]` configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterswitchConfig {
    /// Scheme, host and optional port, no trailing path: `https://sandbox.interswitchng.com`.
    pub base_url: String,
    /// Client id issued by Interswitch.
    pub client_id: String,
    /// Client secret issued by Interswitch. Never logged.
    pub client_secret: SecretString,
    /// 8-character TerminalID issued by Interswitch.
    pub terminal_id: String,
    /// 4-digit requestReference prefix issued by Interswitch.
    pub request_reference_prefix: String,
    /// Total length of a requestReference, prefix included: 12 (default; the documents
    /// disagree between 12 and 20, and 12 is what every sample shows) up to 20. The digits
    /// after the prefix number the payments: 8 digits give 10^8 references per prefix.
    #[serde(default = "default_reference_length")]
    pub request_reference_length: u32,
    /// Hash of the request signature: "SHA1" (default, what the SVA pages show), "SHA256",
    /// "SHA512".
    #[serde(default = "default_signature_method")]
    pub signature_method: SignatureMethod,
    /// Whole-request timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP/TLS connect timeout, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Concurrency limit and circuit breaker (`[providers.interswitch.limits]`).
    #[serde(default)]
    pub limits: CallLimits,
}

fn default_signature_method() -> SignatureMethod {
    SignatureMethod::Sha1
}
fn default_reference_length() -> u32 {
    12
}
fn default_timeout_ms() -> u64 {
    20_000
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}

impl InterswitchConfig {
    /// How many references the digits after the prefix number.
    pub fn reference_capacity(&self) -> u64 {
        10u64.pow(self.request_reference_length.saturating_sub(4))
    }

    /// Checks what the provider would otherwise reject at the first payment.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.request_reference_prefix;
        if p.len() != 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("interswitch.request_reference_prefix must be 4 digits".into());
        }
        if !(12..=20).contains(&self.request_reference_length) {
            return Err("interswitch.request_reference_length must be 12 to 20".into());
        }
        let t = &self.terminal_id;
        if t.len() != 8 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("interswitch.terminal_id must be 8 letters or digits".into());
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://"))
            || reqwest::Url::parse(&self.base_url).is_err()
        {
            return Err("interswitch.base_url must be an http:// or https:// URL".into());
        }
        if self.client_id.is_empty() {
            return Err("interswitch.client_id must be set".into());
        }
        Ok(())
    }
}

const API: &str = "/api/v2/quickteller";

const CAPABILITIES: &[Capability] = &[
    Capability::ListCategories,
    Capability::ListBillers,
    Capability::ListProducts,
    Capability::ValidateCustomer,
    Capability::CreatePayment,
    Capability::QueryPayment,
];

/// The Interswitch Quickteller client.
pub struct Interswitch {
    http: reqwest::Client,
    base_url: String,
    signer: Signer,
    terminal_id: String,
    reference_prefix: String,
    /// How many payments the reference digits after the prefix can number.
    reference_capacity: u64,
    guard: CallGuard,
}

impl Interswitch {
    /// Builds the client from validated configuration.
    pub fn new(config: InterswitchConfig) -> Self {
        let reference_capacity = config.reference_capacity();
        Self {
            http: http::client(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.timeout_ms),
            ),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            signer: Signer {
                client_id: config.client_id,
                client_secret: config.client_secret,
                method: config.signature_method,
            },
            terminal_id: config.terminal_id,
            reference_capacity,
            guard: CallGuard::new("interswitch", &config.limits),
            reference_prefix: config.request_reference_prefix,
        }
    }

    /// Signs and sends one request. `path_and_query` starts with `/`.
    async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ProviderError> {
        // Sign the URL exactly as reqwest will send it (normalised host case, default port).
        let url = reqwest::Url::parse(&format!("{}{}", self.base_url, path_and_query))
            .map_err(|e| ProviderError::Transport(format!("bad URL: {e}")))?;
        let headers = self.signer.sign(method.as_str(), url.as_str());
        let mut request = self
            .http
            .request(method, url)
            .header("Authorization", headers.authorization)
            .header("Timestamp", headers.timestamp)
            .header("Nonce", headers.nonce)
            .header("Signature", headers.signature)
            .header("SignatureMethod", headers.signature_method)
            .header("TerminalID", &self.terminal_id)
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        self.guard
            .run(
                http::send("interswitch", operation, request),
                http::transport_failure,
            )
            .await
    }

    /// A read: 2xx parsed as `T`, anything else an error. `not_found` is the object the path
    /// names (a 404 says it does not exist); `None` for a fixed path, whose 404 is `Upstream`.
    async fn read<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        not_found: Option<(Resource, &str)>,
    ) -> Result<T, ProviderError> {
        let raw = self.call(operation, method, path_and_query, body).await?;
        match raw.status {
            200..=299 => serde_json::from_slice(&raw.body)
                .map_err(|e| ProviderError::Unreadable(format!("{operation}: {e}"))),
            401 | 403 => Err(ProviderError::Auth { status: raw.status }),
            404 => Err(match not_found {
                Some((resource, name)) => ProviderError::NotFound {
                    resource,
                    name: name.to_owned(),
                },
                None => ProviderError::Upstream { status: 404 },
            }),
            500..=599 => Err(ProviderError::Upstream { status: raw.status }),
            status => {
                let answer: TransactionResponse =
                    serde_json::from_slice(&raw.body).unwrap_or_default();
                let code = answer.effective_code();
                if code.is_empty() {
                    Err(ProviderError::Upstream { status })
                } else {
                    Err(ProviderError::Rejected {
                        code: code.to_owned(),
                        message: answer.message().to_owned(),
                    })
                }
            }
        }
    }
}

/// Maps a payment-advice answer to an outcome. Only a readable code moves the payment out of
/// PENDING; 5xx, unreadable bodies and credential refusals without a code leave it PENDING.
fn advice_outcome(raw: RawResponse) -> Result<PaymentOutcome, ProviderError> {
    if raw.status >= 500 {
        return Err(ProviderError::Upstream { status: raw.status });
    }
    let answer: TransactionResponse = match serde_json::from_slice(&raw.body) {
        Ok(answer) => answer,
        Err(_) if matches!(raw.status, 401 | 403) => {
            return Err(ProviderError::Auth { status: raw.status });
        }
        Err(e) => return Err(ProviderError::Unreadable(format!("payment advice: {e}"))),
    };
    let code = answer.effective_code().to_owned();
    if code.is_empty() {
        return Err(ProviderError::Unreadable(format!(
            "payment advice answered HTTP {} without a response code",
            raw.status
        )));
    }
    let grouping = Some(answer.response_code_grouping.as_str()).filter(|g| !g.is_empty());
    Ok(outcome(&answer, &code, grouping))
}

/// Maps an answer to an outcome by `code`; `grouping` is `ResponseCodeGrouping` when it speaks
/// for that code.
fn outcome(answer: &TransactionResponse, code: &str, grouping: Option<&str>) -> PaymentOutcome {
    let message = match answer.message() {
        "" => codes::describe(code).unwrap_or_default().to_owned(),
        m => m.to_owned(),
    };
    let mut outcome = PaymentOutcome {
        state: codes::payment_state(code, grouping),
        provider_code: code.to_owned(),
        provider_message: message,
        provider_transaction_id: Some(answer.transaction_reference.clone())
            .filter(|r| !r.is_empty()),
        fulfilment_token: Some(answer.recharge_pin.clone()).filter(|p| !p.is_empty()),
        ..PaymentOutcome::default()
    };
    if !answer.approved_amount.trim().is_empty() {
        match Money::parse_minor_units(Currency::Ngn, &answer.approved_amount) {
            // The gateway compares it with the payment's amount (a smaller one is not a success).
            Some(approved) => outcome.extras.approved_amount = Some(approved),
            None => {
                outcome = outcome.contradicting(format!(
                    "unreadable ApprovedAmount {:?}",
                    answer.approved_amount
                ))
            }
        }
    }
    if codes::is_partial_approval(code) {
        outcome = outcome.contradicting(format!(
            "Interswitch approved only part of the payment ({code})"
        ));
    }
    outcome
}

/// The fields of a query answer that say which transaction it is about.
fn answer_identity(answer: &TransactionResponse) -> AnswerIdentity {
    let present = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    AnswerIdentity {
        reference: present(&answer.request_reference),
        customer_id: present(&answer.customer_id),
        product_id: present(&answer.payment_code),
        amount: present(&answer.amount)
            .map(|text| Money::parse_minor_units(Currency::Ngn, &text).ok_or(text)),
    }
}

/// Maps a transaction-query answer. Only `TransactionResponseCode` speaks for the payment; a
/// query without it (or "not found") leaves the payment PENDING. An answer whose reference,
/// customer, payment code or amount differs from the journal is about another transaction (a
/// reused reference): it is marked as a mismatch and never settles this payment.
fn query_outcome(
    raw: RawResponse,
    payment: &PaymentRecord,
) -> Result<PaymentOutcome, ProviderError> {
    match raw.status {
        200..=299 | 404 => {}
        401 | 403 => return Err(ProviderError::Auth { status: raw.status }),
        status if status >= 500 => return Err(ProviderError::Upstream { status }),
        _ => {}
    }
    let answer: TransactionResponse = serde_json::from_slice(&raw.body)
        .map_err(|e| ProviderError::Unreadable(format!("transaction query: {e}")))?;
    let identity = answer_identity(&answer);
    let transaction_code = answer.transaction_response_code.clone();
    if transaction_code.is_empty() {
        let code = answer.effective_code();
        if code == codes::TRANSACTION_NOT_FOUND || raw.status == 404 {
            return Ok(PaymentOutcome::reference_not_found(
                "Interswitch has no transaction with this reference",
            ));
        }
        return Ok(PaymentOutcome::unknown(format!(
            "transaction query answered {code:?} without a transaction status"
        )));
    }
    // ResponseCodeGrouping goes with the query's own ResponseCode, not with the transaction's
    // code: only the transaction code decides.
    Ok(identity.check(payment, outcome(&answer, &transaction_code, None)))
}

#[async_trait]
impl Provider for Interswitch {
    /// Payment items are listed per biller (`/billers/{id}/paymentitems`).
    fn product_catalog(&self) -> crate::domain::ProductCatalog {
        crate::domain::ProductCatalog::PerBiller
    }

    fn id(&self) -> ProviderId {
        ProviderId::Interswitch
    }

    fn display_name(&self) -> &'static str {
        "Interswitch Quickteller"
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ngn]
    }

    fn capabilities(&self) -> &'static [Capability] {
        CAPABILITIES
    }

    fn accepting_calls(&self) -> Result<(), ProviderError> {
        self.guard.check()
    }

    fn reference_capacity(&self) -> Option<u64> {
        Some(self.reference_capacity)
    }

    fn payment_reference(&self, sequence: u64) -> Option<String> {
        let digits = self.reference_capacity.ilog10() as usize;
        (sequence < self.reference_capacity)
            .then(|| format!("{}{sequence:0digits$}", self.reference_prefix))
    }

    async fn list_categories(&self) -> Result<Vec<Category>, ProviderError> {
        let path = format!("{API}/categorys");
        let r: wire::CategoriesResponse = self
            .read("list_categories", reqwest::Method::GET, &path, None, None)
            .await?;
        Ok(r.categorys.into_iter().map(Category::from).collect())
    }

    async fn list_billers(&self, category_id: Option<&str>) -> Result<Vec<Biller>, ProviderError> {
        let path = match category_id {
            Some(id) => format!("{API}/categorys/{}/billers", path_segment(id)),
            None => format!("{API}/billers"),
        };
        let r: wire::BillersResponse = self
            .read(
                "list_billers",
                reqwest::Method::GET,
                &path,
                None,
                category_id.map(|id| (Resource::Category, id)),
            )
            .await?;
        Ok(r.billers.into_iter().map(Biller::from).collect())
    }

    async fn list_products(&self, biller_id: &str) -> Result<Vec<Product>, ProviderError> {
        let path = format!("{API}/billers/{}/paymentitems", path_segment(biller_id));
        let r: wire::PaymentItemsResponse = self
            .read(
                "list_products",
                reqwest::Method::GET,
                &path,
                None,
                Some((Resource::Biller, biller_id)),
            )
            .await?;
        Ok(r.paymentitems
            .into_iter()
            .map(|i| i.into_product())
            .collect())
    }

    async fn validate_customer(
        &self,
        product_id: &str,
        customer_id: &str,
    ) -> Result<CustomerValidation, ProviderError> {
        let body = serde_json::to_vec(&wire::ValidationRequest {
            customers: [wire::ValidationCustomer {
                customer_id,
                payment_code: product_id,
            }],
        })
        .expect("validation request serializes");
        let path = format!("{API}/customers/validations");
        let r: wire::ValidationResponse = self
            .read(
                "validate_customer",
                reqwest::Method::POST,
                &path,
                Some(body),
                None,
            )
            .await?;
        let customer =
            r.customers.into_iter().next().ok_or_else(|| {
                ProviderError::Unreadable("validation answered no customer".into())
            })?;
        if customer.response_code != codes::SUCCESS {
            return Err(ProviderError::Rejected {
                message: codes::describe(&customer.response_code)
                    .unwrap_or("customer not validated")
                    .to_owned(),
                code: customer.response_code,
            });
        }
        customer
            .into_validation()
            .map_err(ProviderError::Unreadable)
    }

    async fn pay(
        &self,
        payment: &PaymentRecord,
        _secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        let order = &payment.order;
        if order.amount.currency != Currency::Ngn {
            return Err(ProviderError::Unrepresentable {
                field: "amount.currency_code",
                reason: "Interswitch Quickteller pays in NGN only".into(),
            });
        }
        let body = serde_json::to_vec(&wire::AdviceRequest {
            terminal_id: &self.terminal_id,
            payment_code: &order.product_id,
            customer_id: &order.customer_id,
            customer_mobile: &order.contact.mobile_number,
            customer_email: &order.contact.email,
            amount: order.amount.minor_units_string(),
            request_reference: &payment.provider_reference,
        })
        .expect("advice serializes");
        let path = format!("{API}/payments/advices");
        // Sent once, never again, not even after a 401: InterswitchAuth signs every request
        // with the client secret (there is no token to renew), and although the advice carries
        // our unique requestReference, Interswitch answers a reused one as a duplicate (10001)
        // without saying what became of the first: the transaction query decides instead.
        let raw = self
            .call("pay", reqwest::Method::POST, &path, Some(body))
            .await?;
        advice_outcome(raw)
    }

    async fn query_payment(
        &self,
        payment: &PaymentRecord,
    ) -> Result<PaymentOutcome, ProviderError> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("requestreference", &payment.provider_reference)
            .finish();
        let path = format!("{API}/transactions?{query}");
        let raw = self
            .call("query_payment", reqwest::Method::GET, &path, None)
            .await?;
        query_outcome(raw, payment)
    }
}

/// Percent-encodes an id used as a path segment, so a caller's id cannot change the path.
fn path_segment(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
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

    #[test]
    fn references_are_the_prefix_and_fixed_digits_and_never_wrap() {
        let isw = Interswitch::new(crate::sandbox::interswitch::client_config("http://x"));
        assert_eq!(isw.payment_reference(1).as_deref(), Some("145600000001"));
        assert_eq!(
            isw.payment_reference(99_999_999).as_deref(),
            Some("145699999999")
        );
        assert_eq!(isw.payment_reference(100_000_000), None);
        let mut long = crate::sandbox::interswitch::client_config("http://x");
        long.request_reference_length = 20;
        let isw = Interswitch::new(long);
        assert_eq!(
            isw.payment_reference(100_000_000).as_deref(),
            Some("14560000000100000000")
        );
    }

    #[test]
    fn advice_answers_map_to_states() {
        let ok = advice_outcome(raw(
            200,
            r#"{"TransactionReference":"FBN|1","ResponseCode":"90000","ResponseCodeGrouping":"SUCCESSFUL","RechargePIN":"1234-5678"}"#,
        ))
        .unwrap();
        assert_eq!(ok.state, PaymentState::Succeeded);
        assert_eq!(ok.fulfilment_token.as_deref(), Some("1234-5678"));
        let declined =
            advice_outcome(raw(400, r#"{"errors":[{"code":"70120","message":"x"}]}"#)).unwrap();
        assert_eq!(declined.state, PaymentState::Failed);
        let unknown = advice_outcome(raw(200, r#"{"ResponseCode":"70001"}"#)).unwrap();
        assert_eq!(unknown.state, PaymentState::Pending);
        assert!(matches!(
            advice_outcome(raw(502, "")),
            Err(ProviderError::Upstream { .. })
        ));
        assert!(matches!(
            advice_outcome(raw(200, "<html>")),
            Err(ProviderError::Unreadable(_))
        ));
        assert!(matches!(
            advice_outcome(raw(200, "{}")),
            Err(ProviderError::Unreadable(_))
        ));
        assert!(matches!(
            advice_outcome(raw(401, "denied")),
            Err(ProviderError::Auth { .. })
        ));
    }

    fn record(kobo: i64) -> PaymentRecord {
        use crate::domain::{payment::PaymentKind, Money, PaymentOrder};
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "90101",
            "1",
            Money::new(Currency::Ngn, kobo),
        );
        PaymentRecord::claimed("r".into(), order, "145600000001".into(), 0)
    }

    #[test]
    fn query_answers_map_to_states() {
        let p = record(150_000);
        let q = |status, body: &str| query_outcome(raw(status, body), &p);
        let done = q(
            200,
            r#"{"ResponseCode":"90000","TransactionResponseCode":"90000","amount":"150000"}"#,
        )
        .unwrap();
        assert_eq!(done.state, PaymentState::Succeeded);
        let failed = q(
            200,
            r#"{"ResponseCode":"90000","TransactionResponseCode":"70120"}"#,
        )
        .unwrap();
        assert_eq!(failed.state, PaymentState::Failed);
        // The query's own grouping says the query succeeded, not the payment.
        let declined = q(
            200,
            r#"{"ResponseCode":"90000","ResponseCodeGrouping":"SUCCESSFUL","TransactionResponseCode":"70120"}"#,
        )
        .unwrap();
        assert_eq!(declined.state, PaymentState::Failed);
        let still = q(
            200,
            r#"{"ResponseCode":"90000","ResponseCodeGrouping":"SUCCESSFUL","TransactionResponseCode":"10001"}"#,
        )
        .unwrap();
        assert_eq!(still.state, PaymentState::Pending);
        // The query itself succeeding says nothing about the transaction.
        let bare = q(200, r#"{"ResponseCode":"90000"}"#).unwrap();
        assert_eq!(bare.state, PaymentState::Pending);
        let missing = q(404, r#"{"ResponseCode":"30010"}"#).unwrap();
        assert_eq!(missing.state, PaymentState::Pending);
        assert!(missing.is_unknown() && missing.reference_not_found);
        assert!(!bare.reference_not_found);
        // Another transaction behind the same reference never settles this payment.
        let other = q(
            200,
            r#"{"ResponseCode":"90000","TransactionResponseCode":"90000","amount":"150001"}"#,
        )
        .unwrap();
        assert_eq!(other.effective_state(), PaymentState::NeedsAttention);
        assert!(other.mismatch.unwrap().contains("amount 150001"));
        for body in [
            r#"{"TransactionResponseCode":"90000","amount":"150000","customerId":"2"}"#,
            r#"{"TransactionResponseCode":"90000","amount":"150000","paymentCode":"90102"}"#,
            r#"{"TransactionResponseCode":"90000","amount":"150000","requestReference":"145600000002"}"#,
            r#"{"TransactionResponseCode":"90000","amount":"1500.00"}"#,
        ] {
            let answer = q(200, body).unwrap();
            assert!(answer.mismatch.is_some(), "{body}");
        }
        let echoed = q(
            200,
            r#"{"TransactionResponseCode":"90000","amount":"150000","customerId":"1","paymentCode":"90101","requestReference":"145600000001"}"#,
        )
        .unwrap();
        assert_eq!(echoed.effective_state(), PaymentState::Succeeded);
        // 90010: approved, partial. Never a success for the full amount.
        let partial = q(
            200,
            r#"{"TransactionResponseCode":"90010","amount":"150000","ApprovedAmount":"100000"}"#,
        )
        .unwrap();
        assert_eq!(partial.effective_state(), PaymentState::NeedsAttention);
        assert_eq!(
            partial.extras.approved_amount,
            Some(Money::new(Currency::Ngn, 100_000))
        );
        assert!(matches!(q(503, ""), Err(ProviderError::Upstream { .. })));
    }
}
