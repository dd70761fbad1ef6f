//! OnePipe v2 `transact` JSON: the request envelope (`request_ref`, `request_type`, `auth`,
//! `transaction`) and the response envelope (`status`, `message`, `data`), read leniently (a
//! field of the wrong JSON type is treated as absent) and mapped to domain outcomes. Amounts
//! are kobo integers. Field names follow docs/providers.md §4.5-4.6.
//!
//! No answer is checked against the journal's identity (`AnswerIdentity`): the documents show
//! no field that echoes which payment an answer is about. The `/transact` answer's
//! `provider_response.reference` is OnePipe's own (the options answer carries one before any
//! payment exists), `transaction_final_amount` is the final charge (the sample answers 20000
//! with a 5000 fee to a request of 10000), not the order's amount echoed, and
//! neither `customer_ref` nor `biller_id`/`biller_item_id` come back; the `/transact/query`
//! answer is not shown at all. Comparing any of these would be a guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codes;
use crate::domain::{
    payment::PaymentExtras, Currency, Money, PaymentOffer, PaymentOffers, PaymentOutcome,
    PaymentState,
};

/// The `request_type` of every call this adapter makes.
pub const REQUEST_TYPE: &str = "pay_electricity";

/// One request: a fresh `request_ref` per HTTP call. No `Debug`: validation fields in
/// `details` are secret, so a request can only be serialized for sending.
#[derive(Serialize)]
pub struct Envelope<'a> {
    pub request_ref: &'a str,
    pub request_type: &'a str,
    pub auth: Auth<'a>,
    pub transaction: Transaction<'a>,
}

/// `auth`: the funding type and its encrypted data, or nulls for calls without funding.
#[derive(Serialize)]
pub struct Auth<'a> {
    #[serde(rename = "type")]
    pub kind: Option<&'a str>,
    /// Base64 3DES ciphertext; never the plaintext.
    pub secure: Option<String>,
    pub auth_provider: &'a str,
    pub route_mode: Option<&'a str>,
}

/// `transaction`. Absent parts are left out of the JSON.
#[derive(Default, Serialize)]
pub struct Transaction<'a> {
    pub mock_mode: &'a str,
    pub transaction_ref: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_ref_parent: Option<&'a str>,
    /// Kobo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// `transaction.customer`; `customer_ref` is the meter number.
#[derive(Debug, Serialize)]
pub struct Customer<'a> {
    pub customer_ref: &'a str,
    pub firstname: &'a str,
    pub surname: &'a str,
    pub email: &'a str,
    pub mobile_no: &'a str,
}

/// A response envelope.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Response {
    #[serde(deserialize_with = "lenient_text")]
    pub status: String,
    #[serde(deserialize_with = "lenient_text")]
    pub message: String,
    /// Top-level errors some answers carry (`[{message}]`).
    pub errors: Value,
    pub data: Value,
}

/// A string, a number written as text, or empty for anything else (null, objects).
fn lenient_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(text(&Value::deserialize(d)?))
}

/// The text of a JSON scalar; empty for null, arrays and objects.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Kobo from an integer or an integer string; `None` for anything else (fractions, negatives
/// beyond i64, text).
pub fn kobo(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

/// True when an error field says something (not null, not empty).
fn says_something(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => a.iter().any(says_something),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// The words of an error field (`"x"`, `[{message}]`, `{message}`).
fn error_words(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(error_words)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(o) => o
            .get("message")
            .map(text)
            .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Response {
    /// `data.provider_response`, or null. An empty object says nothing and counts as none.
    pub fn provider_response(&self) -> &Value {
        static NONE: Value = Value::Null;
        match &self.data["provider_response"] {
            Value::Object(o) if o.is_empty() => &NONE,
            pr => pr,
        }
    }

    /// The error the answer carries in `data.error`, `data.errors` or `errors`, if any.
    pub fn error(&self) -> Option<String> {
        [&self.data["error"], &self.data["errors"], &self.errors]
            .into_iter()
            .find(|v| says_something(v))
            .map(|v| match error_words(v) {
                w if w.is_empty() => "the provider reported an error".to_owned(),
                w => w,
            })
    }

    /// What a `/transact` answer says about the payment.
    pub fn payment_outcome(&self) -> PaymentOutcome {
        self.outcome(false)
    }

    /// [`Response::payment_outcome`] for an answer about an existing transaction
    /// (`/transact/query`, `/transact/validate`).
    pub fn follow_up_outcome(&self) -> PaymentOutcome {
        self.outcome(true)
    }

    /// What a `/transact/reverse` answer says: `Successful` without an error reverses the
    /// payment, `Failed` refuses the reversal, anything else is unknown.
    pub fn reversal_outcome(&self) -> PaymentOutcome {
        let state = codes::payment_state(&self.status);
        match (state, self.error()) {
            (PaymentState::Succeeded, None) => {
                let mut o = PaymentOutcome::answered(
                    PaymentState::Reversed,
                    self.status.trim(),
                    self.message.clone(),
                );
                o.provider_transaction_id = None;
                o
            }
            (PaymentState::Failed, error) => PaymentOutcome::answered(
                PaymentState::Failed,
                self.status.trim(),
                error.unwrap_or_else(|| self.message.clone()),
            ),
            _ => PaymentOutcome::unknown(format!(
                "the reversal answered {:?}: outcome unknown",
                self.status
            )),
        }
    }

    /// `about_existing`: an answer about an earlier transaction, where a `Failed` without any
    /// `provider_response` may be the call failing (for example a transaction OnePipe has not
    /// recorded yet), not the payment: that stays PENDING.
    fn outcome(&self, about_existing: bool) -> PaymentOutcome {
        let pr = self.provider_response();
        let mut state = codes::payment_state(&self.status);
        let mut message = self.message.clone();
        if state == PaymentState::Succeeded {
            if let Some(error) = self.error() {
                state = PaymentState::Pending;
                message = format!("Successful with an error (not a success): {error}");
            } else if codes::payment_status_contradicts_success(&text(&pr["payment_status"])) {
                state = PaymentState::Pending;
                message = format!(
                    "Successful but payment_status {:?}: not a success yet",
                    text(&pr["payment_status"])
                );
            }
        }
        if state == PaymentState::Failed {
            if let Some(error) = self.error() {
                // OnePipe often puts the same words in `message` and `data.error`.
                message = crate::error::join_distinct(&message, &error);
            }
            if about_existing && pr.is_null() {
                return PaymentOutcome::unknown(format!(
                    "OnePipe answered Failed without a transaction: {message}"
                ));
            }
            // Cross-checked like a success: a Failed envelope whose payment_status says
            // anything but Failed (Successful, Processing, ...) is not a refusal. PENDING: the
            // status query asks again, and an operator settles it if it never agrees.
            if codes::payment_status_contradicts_failure(&text(&pr["payment_status"])) {
                state = PaymentState::Pending;
                message = format!(
                    "Failed but payment_status {:?}: not a refusal ({message})",
                    text(&pr["payment_status"])
                );
            }
        }
        if self.status.trim().is_empty() {
            return PaymentOutcome::unknown("the answer had no status");
        }
        let mut outcome = PaymentOutcome::answered(state, self.status.trim(), message);
        outcome.provider_transaction_id = Some(text(&pr["reference"])).filter(|r| !r.is_empty());
        outcome.fulfilment_token = Some(text(&pr["token"])).filter(|t| !t.is_empty());
        outcome.extras = extras(pr, state);
        outcome
    }

    /// The products of an options answer.
    pub fn offers(&self) -> PaymentOffers {
        let pr = self.provider_response();
        let products = pr["products"].as_array().cloned().unwrap_or_default();
        let customer_name = products
            .iter()
            .map(|p| text(&p["customer_name"]))
            .find(|n| !n.is_empty())
            .unwrap_or_default();
        let offers = products
            .iter()
            .map(|p| PaymentOffer {
                product_id: text(&p["biller_item_id"]),
                product_code: text(&p["biller_item_code"]),
                name: text(&p["biller_item_name"]),
                description: text(&p["biller_item_description"]),
                amount: option_amount(&p["amount"], &p["currency"]),
                order_reference: text(&p["order_reference"]),
                terms: text(&p["terms"]),
                terms_url: text(&p["terms_url"]),
            })
            .collect();
        PaymentOffers {
            customer_name,
            offers,
        }
    }
}

/// An option's price: kobo with currency "566" (ISO-4217 numeric for NGN) or "NGN". A price
/// in any other currency, or not a kobo integer, is left out rather than guessed.
fn option_amount(amount: &Value, currency: &Value) -> Option<Money> {
    let currency = match text(currency).trim() {
        "566" | "NGN" | "" => Currency::Ngn,
        _ => return None,
    };
    kobo(amount)
        .filter(|k| *k >= 0)
        .map(|k| Money::new(currency, k))
}

/// Fee, total, delivery and required inputs from `provider_response`.
fn extras(pr: &Value, state: PaymentState) -> PaymentExtras {
    let ngn = |v: &Value| {
        kobo(v)
            .filter(|k| *k >= 0)
            .map(|k| Money::new(Currency::Ngn, k))
    };
    let mut details = BTreeMap::new();
    for key in ["narration", "units", "meter_number", "receipt_number"] {
        let value = text(&pr[key]);
        if !value.is_empty() {
            details.insert(key.to_owned(), value);
        }
    }
    // PendingValidation: which inputs OnePipe wants is not documented; read the names from
    // `required_fields` ([GUESS], see README "OnePipe").
    let required_inputs = if state == PaymentState::ValidationRequired {
        pr["required_fields"]
            .as_array()
            .map(|a| a.iter().map(text).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    PaymentExtras {
        fee: ngn(&pr["transaction_fee"]),
        total: ngn(&pr["transaction_final_amount"]),
        fulfilment_state: codes::fulfilment_state(&text(&pr["fulfillment_status"])),
        fulfilment_details: details,
        required_inputs,
        ..PaymentExtras::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payment::FulfilmentState;

    fn parse(json: &str) -> Response {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_successful_payment_carries_token_fee_total_and_delivery() {
        let r = parse(
            r#"{"status":"Successful","message":"ok","data":{"provider_response_code":"00",
            "error":null,"errors":null,"provider_response":{"reference":"OP-1",
            "payment_status":"Successful","fulfillment_status":"Succesful",
            "transaction_final_amount":20000,"transaction_fee":"5000","narration":"n",
            "units":"12.5kWh","token":"1253-1167"}}}"#,
        );
        let o = r.payment_outcome();
        assert_eq!(o.state, PaymentState::Succeeded);
        assert_eq!(o.provider_code, "Successful");
        assert_eq!(o.fulfilment_token.as_deref(), Some("1253-1167"));
        assert_eq!(o.provider_transaction_id.as_deref(), Some("OP-1"));
        assert_eq!(o.extras.fee, Some(Money::new(Currency::Ngn, 5000)));
        assert_eq!(o.extras.total, Some(Money::new(Currency::Ngn, 20000)));
        assert_eq!(o.extras.fulfilment_state, Some(FulfilmentState::Delivered));
        assert_eq!(o.extras.fulfilment_details["units"], "12.5kWh");
    }

    #[test]
    fn the_documented_answer_names_onepipes_reference_and_the_final_charge_not_ours() {
        // The Pay Electricity /transact sample, for a request of amount 10000.
        let r = parse(
            r#"{"status":"Successful","message":"Transaction processed successfully",
            "data":{"provider_response_code":"00","provider":"Beeceptor","errors":null,
            "error":null,"provider_response":{"reference":"000022200225154318222333334432",
            "payment_status":"Successful","fulfillment_status":"Succesful",
            "transaction_final_amount":20000,"transaction_fee":5000,"narration":"My narration",
            "token":"1253-1167-5843-6580-4889"}}}"#,
        );
        let o = r.payment_outcome();
        assert_eq!(o.effective_state(), PaymentState::Succeeded);
        assert_eq!(o.mismatch, None);
        assert!(!o.reference_not_found);
        assert_eq!(
            o.provider_transaction_id.as_deref(),
            Some("000022200225154318222333334432")
        );
        assert_eq!(o.extras.total, Some(Money::new(Currency::Ngn, 20_000)));
        assert_eq!(o.extras.approved_amount, None, "not an approved amount");
    }

    #[test]
    fn successful_with_an_error_or_a_processing_payment_is_pending() {
        for body in [
            r#"{"status":"Successful","data":{"error":"insufficient funds"}}"#,
            r#"{"status":"Successful","data":{"errors":[{"message":"x"}]}}"#,
            r#"{"status":"Successful","errors":[{"message":"x"}],"data":{}}"#,
            r#"{"status":"Successful","data":{"provider_response":{"payment_status":"Processing"}}}"#,
        ] {
            let o = parse(body).payment_outcome();
            assert_eq!(o.state, PaymentState::Pending, "{body}");
            assert!(!o.is_unknown());
        }
        let clean = parse(r#"{"status":"Successful","data":{"error":"","errors":[]}}"#);
        assert_eq!(clean.payment_outcome().state, PaymentState::Succeeded);
    }

    #[test]
    fn unknown_or_missing_statuses_are_pending() {
        assert_eq!(
            parse(r#"{"status":"Processing"}"#).payment_outcome().state,
            PaymentState::Pending
        );
        assert!(parse(r#"{"message":"?"}"#).payment_outcome().is_unknown());
        assert!(parse(r#"{"status":null}"#).payment_outcome().is_unknown());
    }

    #[test]
    fn failed_is_cross_checked_with_payment_status_like_successful() {
        for body in [
            r#"{"status":"Failed","message":"x","data":{"provider_response":{"payment_status":"Successful"}}}"#,
            r#"{"status":"Failed","data":{"error":"timeout","provider_response":{"payment_status":"Processing"}}}"#,
        ] {
            let r = parse(body);
            for o in [r.payment_outcome(), r.follow_up_outcome()] {
                assert_eq!(o.state, PaymentState::Pending, "{body}");
                assert!(!o.is_unknown(), "{body}");
                assert!(o.provider_message.contains("not a refusal"), "{body}");
            }
        }
        // payment_status agreeing, or absent, leaves the refusal standing.
        for body in [
            r#"{"status":"Failed","data":{"provider_response":{"payment_status":"Failed"}}}"#,
            r#"{"status":"Failed","data":{"provider_response":{"reference":"OP-9"}}}"#,
        ] {
            let r = parse(body);
            assert_eq!(r.payment_outcome().state, PaymentState::Failed, "{body}");
            assert_eq!(r.follow_up_outcome().state, PaymentState::Failed, "{body}");
        }
    }

    #[test]
    fn an_empty_provider_response_counts_as_none() {
        let r = parse(r#"{"status":"Failed","message":"x","data":{"provider_response":{}}}"#);
        assert!(r.follow_up_outcome().is_unknown());
        assert_eq!(r.payment_outcome().state, PaymentState::Failed);
        let ok = parse(r#"{"status":"Successful","data":{"provider_response":{}}}"#);
        assert_eq!(ok.payment_outcome().state, PaymentState::Succeeded);
    }

    #[test]
    fn a_failed_query_without_a_transaction_is_not_a_failed_payment() {
        let r = parse(r#"{"status":"Failed","message":"not found","data":{}}"#);
        assert!(r.follow_up_outcome().is_unknown());
        // No "not found" answer is documented: this is not one, whatever its message says.
        assert!(!r.follow_up_outcome().reference_not_found);
        assert_eq!(r.payment_outcome().state, PaymentState::Failed);
        let r = parse(
            r#"{"status":"Failed","data":{"provider_response":{"payment_status":"Failed"}}}"#,
        );
        assert_eq!(r.follow_up_outcome().state, PaymentState::Failed);
    }

    #[test]
    fn options_map_currency_566_to_ngn() {
        let r = parse(
            r#"{"status":"OptionsDelivered","data":{"provider_response":{"products":[
            {"order_reference":"101","biller_item_id":"P1","biller_item_code":"C","biller_item_name":"N",
             "customer_name":"Kola","amount":"500000","currency":"566","terms":"t","terms_url":"u"},
            {"order_reference":"102","biller_item_id":"P2","amount":"1.5","currency":"566"},
            {"order_reference":"103","biller_item_id":"P3","amount":100,"currency":"840"}]}}}"#,
        );
        let offers = r.offers();
        assert_eq!(offers.customer_name, "Kola");
        assert_eq!(
            offers.offers[0].amount,
            Some(Money::new(Currency::Ngn, 500_000))
        );
        assert_eq!(offers.offers[0].order_reference, "101");
        assert_eq!(offers.offers[1].amount, None);
        assert_eq!(offers.offers[2].amount, None);
    }

    #[test]
    fn kobo_reads_integers_only() {
        assert_eq!(kobo(&Value::from(1)), Some(1));
        assert_eq!(kobo(&Value::from("9223372036854775807")), Some(i64::MAX));
        assert_eq!(kobo(&Value::from("1.5")), None);
        assert_eq!(kobo(&Value::from(1.5)), None);
        assert_eq!(kobo(&Value::from("")), None);
    }
}
