//! IP2 JSON as the spec shows it (PascalCase names), the exact conversion of amounts between
//! [`Money`] and IP2's JSON numbers, and the mapping of IP2 records to domain types.
//!
//! Amounts: IP2 writes `Amount: 0`, a JSON number of the currency's whole units (the spec's
//! examples are UGX, which has no minor unit). The gateway sends whole units only, as an
//! integer, and refuses an amount the currency's unit cannot hold exactly. Answers are read
//! exactly from integers, decimal numbers or numeric strings.
//!
//! Identity: the spec's transaction record (`GET transactions`) echoes our `RequestId`, the
//! `CustomerId` and `ProductId` we sent and the `Amount` with its `CurrencyCode`;
//! [`TransactionItem::identity`] and [`TransactionAnswer::identity`] read them for
//! [`AnswerIdentity`] so an answer about another payment never settles ours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    transaction_details as keys, Account, AnswerIdentity, Currency, Money, PaymentMethod,
    PaymentState, Product, ProviderError, ProviderTransaction, TransactionKind,
};

use super::{codes, dates};

/// The amount IP2 is sent: whole units of the currency. `Unrepresentable` for a fraction of a
/// unit (for example KES 150.50) or a non-positive amount.
pub fn to_ip2_amount(money: Money) -> Result<i64, ProviderError> {
    if money.minor_units <= 0 {
        return Err(ProviderError::Unrepresentable {
            field: "amount.minor_units",
            reason: "IP2 moves only amounts greater than zero".into(),
        });
    }
    let per_unit = 10i64.pow(money.currency.exponent());
    if money.minor_units % per_unit != 0 {
        return Err(ProviderError::Unrepresentable {
            field: "amount.minor_units",
            reason: format!(
                "IP2 takes whole {} only; {} minor units is a fraction",
                money.currency.code(),
                money.minor_units
            ),
        });
    }
    Ok(money.minor_units / per_unit)
}

/// Reads an IP2 amount (number or numeric string, whole units, optionally with decimals the
/// currency holds) exactly; `None` for anything else.
pub fn from_ip2_amount(currency: Currency, value: &Value) -> Option<Money> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    parse_decimal(currency, &text)
}

fn parse_decimal(currency: Currency, text: &str) -> Option<Money> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = fraction.trim_end_matches('0');
    let exponent = currency.exponent() as usize;
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > exponent
    {
        return None;
    }
    let minor: i64 = format!("{whole}{fraction:0<exponent$}").parse().ok()?;
    Some(Money::new(currency, if negative { -minor } else { minor }))
}

/// One item of a `transactions/debits` or `transactions/credits` body (the API takes an
/// array; the gateway sends one item per request, see `Ip2PaymentOptions` in the proto).
#[derive(Debug, Serialize, Deserialize, Default, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionRequest {
    pub batch_id: String,
    pub request_id: String,
    pub payment_method_id: String,
    pub payment_method_reference: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub product_reference: BTreeMap<String, String>,
    /// Whole units of `currency_code`.
    pub amount: i64,
    pub currency_code: String,
    pub country_code: String,
    pub memo: String,
    pub channel_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_reference: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_id: String,
}

/// A debit or credit answer, read tolerantly: the spec shows `{ResponseCode, ResponseMessage,
/// Data}` for credits and an account-shaped array for debits, so the status fields are looked
/// for at the top level, in `Data`, and in the first element of an array.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TransactionAnswer {
    pub response_code: Value,
    pub response_message: String,
    pub data: Value,
    pub transaction_id: String,
    pub request_id: String,
    pub transaction_status: String,
    pub status_message: String,
    pub amount: Value,
    pub currency_code: String,
    pub customer_id: String,
    pub product_id: String,
    pub fee: Value,
}

impl TransactionAnswer {
    /// Parses a body that is the answer object or an array whose first item is.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        let value: Value = serde_json::from_slice(body)?;
        let value = match value {
            Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            other => other,
        };
        let mut answer: TransactionAnswer = serde_json::from_value(value)?;
        // Status fields nested in Data fill what the top level lacks.
        if let Ok(data) = serde_json::from_value::<TransactionAnswer>(answer.data.clone()) {
            if answer.transaction_id.is_empty() {
                answer.transaction_id = data.transaction_id;
            }
            if answer.request_id.is_empty() {
                answer.request_id = data.request_id;
            }
            if answer.transaction_status.is_empty() {
                answer.transaction_status = data.transaction_status;
            }
            if answer.status_message.is_empty() {
                answer.status_message = data.status_message;
            }
            if answer.amount.is_null() {
                answer.amount = data.amount;
            }
            if answer.currency_code.is_empty() {
                answer.currency_code = data.currency_code;
            }
            if answer.customer_id.is_empty() {
                answer.customer_id = data.customer_id;
            }
            if answer.product_id.is_empty() {
                answer.product_id = data.product_id;
            }
            if answer.fee.is_null() {
                answer.fee = data.fee;
            }
        }
        Ok(answer)
    }

    /// `ResponseCode` as text ("" when absent), whether sent as a number or a string.
    pub fn code(&self) -> String {
        value_text(&self.response_code)
    }

    /// The transaction-record fields the answer echoes (the spec shows none for a debit or
    /// credit answer; they count only when the answer carries a transaction record).
    pub fn identity(&self, ours: Currency) -> AnswerIdentity {
        identity(
            &self.request_id,
            &self.customer_id,
            &self.product_id,
            &self.amount,
            &self.currency_code,
            ours,
        )
    }
}

/// An [`AnswerIdentity`] from echoed fields; empty ones are absent. The amount is read in its
/// `CurrencyCode` (the payment's currency when none is given): an amount in another currency
/// differs from ours, and one that does not convert exactly (or names a currency the gateway
/// does not know) is `Err` with its text.
fn identity(
    request_id: &str,
    customer_id: &str,
    product_id: &str,
    amount: &Value,
    currency_code: &str,
    ours: Currency,
) -> AnswerIdentity {
    let present = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let amount = match amount {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        value => {
            let code = currency_code.trim().to_ascii_uppercase();
            let currency = if code.is_empty() {
                Some(ours)
            } else {
                Currency::from_code(&code)
            };
            Some(
                currency
                    .and_then(|c| from_ip2_amount(c, value))
                    .ok_or_else(|| {
                        let text = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        format!("{text} {code}").trim_end().to_owned()
                    }),
            )
        }
    };
    AnswerIdentity {
        reference: present(request_id),
        customer_id: present(customer_id),
        product_id: present(product_id),
        amount,
    }
}

/// A JSON scalar as text; "" for null and structures.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A currency code of an answer; unknown codes fall back to `fallback`.
fn currency_or(code: &str, fallback: Currency) -> Currency {
    Currency::from_code(code.trim()).unwrap_or(fallback)
}

/// One payment method (`GET paymentMethods`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PaymentMethodItem {
    pub payment_method_id: String,
    pub payment_provider_id: String,
    pub name: String,
    pub short_description: String,
    pub long_description: String,
    pub currencies: Vec<CurrencyItem>,
    pub countries: Vec<CountryItem>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CurrencyItem {
    pub currency_code: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CountryItem {
    pub country_code: String,
}

impl From<PaymentMethodItem> for PaymentMethod {
    fn from(m: PaymentMethodItem) -> Self {
        // The table names PaymentMethodId, the example shows PaymentProviderId: take the
        // first one present.
        let id = if m.payment_method_id.is_empty() {
            m.payment_provider_id
        } else {
            m.payment_method_id
        };
        PaymentMethod {
            payment_method_id: id,
            name: m.name,
            description: first_non_empty(m.short_description, m.long_description),
            currency_codes: m.currencies.into_iter().map(|c| c.currency_code).collect(),
            country_codes: m.countries.into_iter().map(|c| c.country_code).collect(),
        }
    }
}

fn first_non_empty(a: String, b: String) -> String {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// One product (`GET products`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProductItem {
    pub product_id: String,
    pub name: String,
    pub short_description: String,
    pub currency_code: String,
    pub country_code: String,
}

impl From<ProductItem> for Product {
    fn from(p: ProductItem) -> Self {
        let mut provider_data = BTreeMap::new();
        for (key, value) in [
            ("currency_code", p.currency_code),
            ("country_code", p.country_code),
            ("description", p.short_description),
        ] {
            if !value.is_empty() {
                provider_data.insert(key.to_owned(), value);
            }
        }
        Product {
            product_id: p.product_id,
            name: p.name,
            provider_data,
            ..Product::default()
        }
    }
}

/// An account (`GET accounts`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AccountItem {
    pub account_id: String,
    pub subscription_id: String,
    pub account_type: String,
    pub currency_code: String,
    pub account_status: String,
    pub name: String,
    pub minimum_transaction_amount: Value,
    pub maximum_transaction_amount: Value,
    pub minimum_balance: Value,
    pub balance: Value,
}

impl AccountItem {
    /// The domain account; limits of 0 (or absent) mean "no limit". `fallback` is the
    /// currency when the account names none the gateway knows.
    pub fn into_account(self, fallback: Currency) -> Account {
        let currency = currency_or(&self.currency_code, fallback);
        let limit = |v: &Value| from_ip2_amount(currency, v).filter(|m| m.minor_units > 0);
        Account {
            min_transaction_amount: limit(&self.minimum_transaction_amount),
            max_transaction_amount: limit(&self.maximum_transaction_amount),
            minimum_balance: limit(&self.minimum_balance),
            account_id: self.account_id,
            name: self.name,
            currency_code: currency.code().to_owned(),
            account_type: self.account_type,
            status: self.account_status,
        }
    }
}

/// Payment status nested in a transaction.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PaymentStatusItem {
    pub payment_status: String,
    pub payment_status_message: String,
    pub payment_status_code: Value,
}

/// One transaction (`GET transactions`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TransactionItem {
    pub transaction_id: String,
    pub batch_id: String,
    pub account_id: String,
    pub request_id: String,
    pub currency_code: String,
    pub amount: Value,
    pub payment_method_id: String,
    pub product_id: String,
    pub channel_id: String,
    pub memo: String,
    pub transaction_type: String,
    pub transaction_status: String,
    pub status_message: String,
    pub payment: PaymentStatusItem,
    pub fee: Value,
    pub commission: Value,
    pub customer_id: String,
    pub created_on: String,
}

impl TransactionItem {
    /// The status word that decides, and its message: `TransactionStatus`, else the nested
    /// `Payment.PaymentStatus`.
    pub fn status(&self) -> (&str, &str) {
        if self.transaction_status.is_empty() {
            (
                &self.payment.payment_status,
                &self.payment.payment_status_message,
            )
        } else {
            (&self.transaction_status, &self.status_message)
        }
    }

    /// The state the transaction's status word means.
    pub fn state(&self) -> PaymentState {
        codes::transaction_state(self.status().0)
    }

    /// The fields that say which payment the transaction is: RequestId, CustomerId,
    /// ProductId, Amount (in CurrencyCode).
    pub fn identity(&self, ours: Currency) -> AnswerIdentity {
        identity(
            &self.request_id,
            &self.customer_id,
            &self.product_id,
            &self.amount,
            &self.currency_code,
            ours,
        )
    }

    /// The domain transaction; `None` when its amount cannot be read exactly.
    pub fn into_transaction(self, fallback: Currency) -> Option<ProviderTransaction> {
        let currency = currency_or(&self.currency_code, fallback);
        let amount = from_ip2_amount(currency, &self.amount)?;
        let state = self.state();
        let (code, message) = {
            let (c, m) = self.status();
            (c.to_owned(), m.to_owned())
        };
        let mut details = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            if !value.is_empty() {
                details.insert(key.to_owned(), value);
            }
        };
        let minor = |v: &Value| {
            from_ip2_amount(currency, v)
                .map(|m| m.minor_units.to_string())
                .unwrap_or_default()
        };
        put(keys::FEE_MINOR_UNITS, minor(&self.fee));
        put(keys::COMMISSION_MINOR_UNITS, minor(&self.commission));
        put(keys::PRODUCT_ID, self.product_id);
        put(keys::PAYMENT_METHOD_ID, self.payment_method_id);
        put(keys::ACCOUNT_ID, self.account_id);
        put("batch_id", self.batch_id);
        put("channel_id", self.channel_id);
        put("customer_id", self.customer_id);
        let kind = if self
            .transaction_type
            .to_ascii_lowercase()
            .contains("credit")
        {
            TransactionKind::Credit
        } else {
            TransactionKind::Debit
        };
        Some(ProviderTransaction {
            provider_transaction_id: self.transaction_id,
            provider_reference: self.request_id,
            kind,
            state,
            amount,
            created_at_ms: dates::parse_iso(&self.created_on),
            description: self.memo,
            provider_code: code,
            provider_message: message,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_go_out_in_whole_units_exactly() {
        let ugx = |m| to_ip2_amount(Money::new(Currency::Ugx, m));
        assert_eq!(ugx(1).unwrap(), 1);
        assert_eq!(ugx(5_000).unwrap(), 5_000);
        assert_eq!(ugx(i64::MAX).unwrap(), i64::MAX);
        assert!(ugx(0).is_err());
        assert!(ugx(-1).is_err());
        let kes = |m| to_ip2_amount(Money::new(Currency::Kes, m));
        assert_eq!(kes(15_000).unwrap(), 150);
        assert!(matches!(
            kes(15_050),
            Err(ProviderError::Unrepresentable { .. })
        ));
        assert!(kes(1).is_err());
    }

    #[test]
    fn amounts_come_in_exactly() {
        let ugx = |v| from_ip2_amount(Currency::Ugx, &v).map(|m| m.minor_units);
        assert_eq!(ugx(json!(5000)), Some(5_000));
        assert_eq!(ugx(json!("5000")), Some(5_000));
        assert_eq!(ugx(json!(5000.0)), Some(5_000));
        assert_eq!(ugx(json!(0)), Some(0));
        assert_eq!(ugx(json!(-20)), Some(-20));
        assert_eq!(ugx(json!(9_223_372_036_854_775_807i64)), Some(i64::MAX));
        assert_eq!(ugx(json!(0.5)), None, "UGX has no minor unit");
        assert_eq!(ugx(json!("1e3")), None);
        assert_eq!(ugx(json!(null)), None);
        let kes = |v| from_ip2_amount(Currency::Kes, &v).map(|m| m.minor_units);
        assert_eq!(kes(json!(150.5)), Some(15_050));
        assert_eq!(kes(json!("0.01")), Some(1));
        assert_eq!(kes(json!("0.001")), None);
    }

    #[test]
    fn debit_answers_are_found_at_top_level_in_data_or_in_an_array() {
        let top = TransactionAnswer::parse(
            br#"{"ResponseCode":0,"ResponseMessage":"ok","TransactionStatus":"Successful"}"#,
        )
        .unwrap();
        assert_eq!(top.code(), "0");
        assert_eq!(top.transaction_status, "Successful");
        let nested = TransactionAnswer::parse(
            br#"[{"ResponseCode":"7","Data":{"TransactionId":"T1","TransactionStatus":"Failed","StatusMessage":"no"}}]"#,
        )
        .unwrap();
        assert_eq!(nested.code(), "7");
        assert_eq!(nested.transaction_id, "T1");
        assert_eq!(nested.status_message, "no");
    }

    #[test]
    fn transactions_echo_request_customer_product_and_amount() {
        let item: TransactionItem = serde_json::from_value(json!({
            "RequestId": " BPG000000000001 ", "CustomerId": "256772000001",
            "ProductId": "AIRTIME-MTN", "Amount": 5000, "CurrencyCode": "UGX",
            "BatchId": "ignored"
        }))
        .unwrap();
        assert_eq!(
            item.identity(Currency::Ugx),
            AnswerIdentity {
                reference: Some("BPG000000000001".into()),
                customer_id: Some("256772000001".into()),
                product_id: Some("AIRTIME-MTN".into()),
                amount: Some(Ok(Money::new(Currency::Ugx, 5_000))),
            }
        );
        let amount = |v: Value| {
            let item: TransactionItem = serde_json::from_value(v).unwrap();
            item.identity(Currency::Ugx).amount
        };
        // Absent fields stay absent; no CurrencyCode means the payment's currency.
        let bare: TransactionItem =
            serde_json::from_value(json!({"CustomerId": "", "Amount": null})).unwrap();
        assert_eq!(bare.identity(Currency::Ugx), AnswerIdentity::default());
        assert_eq!(amount(json!({"Amount": ""})), None);
        assert_eq!(
            amount(json!({"Amount": "5000"})),
            Some(Ok(Money::new(Currency::Ugx, 5_000)))
        );
        // Another currency is another amount; inexact or unknown ones do not convert.
        assert_eq!(
            amount(json!({"Amount": 50, "CurrencyCode": "kes"})),
            Some(Ok(Money::new(Currency::Kes, 5_000)))
        );
        assert_eq!(
            amount(json!({"Amount": 0.5, "CurrencyCode": "UGX"})),
            Some(Err("0.5 UGX".into()))
        );
        assert_eq!(
            amount(json!({"Amount": 5000, "CurrencyCode": "USD"})),
            Some(Err("5000 USD".into()))
        );
        assert_eq!(amount(json!({"Amount": "5k"})), Some(Err("5k".into())));
    }

    #[test]
    fn debit_answers_echo_the_same_fields_at_top_level_or_in_data() {
        let answer = TransactionAnswer::parse(
            br#"{"ResponseCode":0,"Data":{"RequestId":"R1","CustomerId":"C","ProductId":"P","Amount":"700","CurrencyCode":"UGX"}}"#,
        )
        .unwrap();
        assert_eq!(
            answer.identity(Currency::Ugx),
            AnswerIdentity {
                reference: Some("R1".into()),
                customer_id: Some("C".into()),
                product_id: Some("P".into()),
                amount: Some(Ok(Money::new(Currency::Ugx, 700))),
            }
        );
        // The spec's credit answer: `Data: {}` echoes nothing.
        let empty = TransactionAnswer::parse(br#"{"ResponseCode":0,"Data":{}}"#).unwrap();
        assert_eq!(empty.identity(Currency::Ugx), AnswerIdentity::default());
    }

    #[test]
    fn request_fields_are_pascal_case() {
        let item = TransactionRequest {
            batch_id: "B".into(),
            request_id: "R".into(),
            amount: 5,
            ..TransactionRequest::default()
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["BatchId"], "B");
        assert_eq!(v["RequestId"], "R");
        assert_eq!(v["Amount"], 5);
        assert!(v.get("ProductId").is_none());
    }
}
