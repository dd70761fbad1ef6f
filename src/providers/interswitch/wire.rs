//! Interswitch Quickteller v2 JSON, as sent and received, and its mapping to domain types.
//! Interswitch mixes key casings (`Customers` vs `customers`, `TransactionRef` vs
//! `transactionRef`) and sends ids and amounts as strings or numbers, so every field read is
//! lenient; what the gateway sends is exact.

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{
    AmountRule, AmountRuleKind, Biller, Category, Currency, CustomerValidation, Money, Product,
};

/// Reads a JSON string, number or bool as a string; null or absent as empty.
fn loose<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    })
}

/// Reads a JSON bool or "true"/"false" string.
fn loose_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

/// Reads a value of type `T`, or its default when the JSON is null or of another shape: an
/// error envelope that is `null` or a bare string must not make a whole answer unreadable.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(serde_json::from_value(serde_json::Value::deserialize(d)?).unwrap_or_default())
}

/// Interswitch gives ISO-4217 numeric codes ("566") or alphabetic ones.
pub fn currency_from_code(code: &str) -> Option<Currency> {
    match code.trim() {
        "566" => Some(Currency::Ngn),
        "404" => Some(Currency::Kes),
        "800" => Some(Currency::Ugx),
        other => Currency::from_code(other),
    }
}

/// `GET /api/v2/quickteller/categorys`.
#[derive(Debug, Deserialize)]
pub struct CategoriesResponse {
    #[serde(default)]
    pub categorys: Vec<WireCategory>,
}

#[derive(Debug, Deserialize)]
pub struct WireCategory {
    #[serde(default, deserialize_with = "loose")]
    pub categoryid: String,
    #[serde(default, deserialize_with = "loose")]
    pub categoryname: String,
    #[serde(default, deserialize_with = "loose")]
    pub categorydescription: String,
}

impl From<WireCategory> for Category {
    fn from(c: WireCategory) -> Self {
        Category {
            category_id: c.categoryid,
            name: c.categoryname,
            description: c.categorydescription,
        }
    }
}

/// `GET /api/v2/quickteller/billers` and `.../categorys/{id}/billers`.
#[derive(Debug, Deserialize)]
pub struct BillersResponse {
    #[serde(default)]
    pub billers: Vec<WireBiller>,
}

#[derive(Debug, Deserialize)]
pub struct WireBiller {
    #[serde(default, deserialize_with = "loose")]
    pub billerid: String,
    #[serde(default, deserialize_with = "loose")]
    pub billername: String,
    #[serde(default, rename = "shortName", deserialize_with = "loose")]
    pub short_name: String,
    #[serde(default, deserialize_with = "loose")]
    pub categoryid: String,
    #[serde(default, rename = "currencyCode", deserialize_with = "loose")]
    pub currency_code: String,
}

impl From<WireBiller> for Biller {
    fn from(b: WireBiller) -> Self {
        Biller {
            currency_code: currency_from_code(&b.currency_code)
                .map(|c| c.code().to_owned())
                .unwrap_or_default(),
            biller_id: b.billerid,
            name: b.billername,
            short_name: b.short_name,
            category_id: b.categoryid,
        }
    }
}

/// `GET /api/v2/quickteller/billers/{billerId}/paymentitems`.
#[derive(Debug, Deserialize)]
pub struct PaymentItemsResponse {
    #[serde(default)]
    pub paymentitems: Vec<WirePaymentItem>,
}

#[derive(Debug, Deserialize)]
pub struct WirePaymentItem {
    #[serde(default, deserialize_with = "loose")]
    pub billerid: String,
    #[serde(default, deserialize_with = "loose")]
    pub paymentitemname: String,
    #[serde(default, rename = "paymentCode", deserialize_with = "loose")]
    pub payment_code: String,
    #[serde(default, rename = "isAmountFixed", deserialize_with = "loose_bool")]
    pub is_amount_fixed: bool,
    /// Kobo.
    #[serde(default, deserialize_with = "loose")]
    pub amount: String,
    /// Kobo (assumed: the documents give no unit; every other Quickteller amount is minor units).
    #[serde(default, rename = "itemFee", deserialize_with = "loose")]
    pub item_fee: String,
    #[serde(default, rename = "currencyCode", deserialize_with = "loose")]
    pub currency_code: String,
}

impl WirePaymentItem {
    /// Maps to a product; amounts in an unknown currency or unreadable are left out, not guessed.
    pub fn into_product(self) -> Product {
        let currency = currency_from_code(&self.currency_code).unwrap_or(Currency::Ngn);
        let amount = Money::parse_minor_units(currency, &self.amount).filter(|m| m.minor_units > 0);
        let fee = Money::parse_minor_units(currency, &self.item_fee).filter(|m| m.minor_units > 0);
        Product {
            product_id: self.payment_code,
            biller_id: self.billerid,
            name: self.paymentitemname,
            amount_fixed: self.is_amount_fixed && amount.is_some(),
            amount,
            fee,
            customer_id_label: String::new(),
            ..Product::default()
        }
    }
}

/// `POST /api/v2/quickteller/customers/validations` body.
#[derive(Debug, Serialize)]
pub struct ValidationRequest<'a> {
    pub customers: [ValidationCustomer<'a>; 1],
}

#[derive(Debug, Serialize)]
pub struct ValidationCustomer<'a> {
    #[serde(rename = "customerId")]
    pub customer_id: &'a str,
    #[serde(rename = "paymentCode")]
    pub payment_code: &'a str,
}

/// Its response: `Customers` (capitalised) in the documents, `customers` accepted too.
#[derive(Debug, Deserialize)]
pub struct ValidationResponse {
    #[serde(default, rename = "Customers", alias = "customers")]
    pub customers: Vec<WireCustomer>,
}

#[derive(Debug, Deserialize)]
pub struct WireCustomer {
    #[serde(default, rename = "customerId", deserialize_with = "loose")]
    pub customer_id: String,
    #[serde(default, rename = "fullName", deserialize_with = "loose")]
    pub full_name: String,
    #[serde(default, rename = "responseCode", deserialize_with = "loose")]
    pub response_code: String,
    /// Kobo.
    #[serde(default, deserialize_with = "loose")]
    pub amount: String,
    #[serde(default, rename = "amountType", deserialize_with = "loose")]
    pub amount_type: String,
    #[serde(default, rename = "amountTypeDescription", deserialize_with = "loose")]
    pub amount_type_description: String,
}

impl WireCustomer {
    /// Maps a successful validation. `Err` names what could not be read.
    pub fn into_validation(self) -> Result<CustomerValidation, String> {
        let kind = match self.amount_type.trim() {
            "0" => AmountRuleKind::Any,
            "1" => AmountRuleKind::Minimum,
            "2" => AmountRuleKind::GreaterThanMinimum,
            "3" => AmountRuleKind::Maximum,
            "4" => AmountRuleKind::LessThanMaximum,
            "5" => AmountRuleKind::Exact,
            other => return Err(format!("unknown amountType {other:?}")),
        };
        let amount = if self.amount.trim().is_empty() {
            None
        } else {
            Some(
                Money::parse_minor_units(Currency::Ngn, &self.amount)
                    .ok_or_else(|| format!("unreadable amount {:?}", self.amount))?,
            )
        };
        if kind != AmountRuleKind::Any && amount.is_none() {
            return Err("amountType needs an amount".into());
        }
        Ok(CustomerValidation {
            customer_id: self.customer_id,
            customer_name: self.full_name,
            amount,
            amount_rule: AmountRule {
                kind,
                amount: if kind == AmountRuleKind::Any {
                    None
                } else {
                    amount
                },
                description: self.amount_type_description,
            },
        })
    }
}

/// `POST /api/v2/quickteller/payments/advices` body. Amount in kobo, as a string.
#[derive(Debug, Serialize)]
pub struct AdviceRequest<'a> {
    #[serde(rename = "TerminalId")]
    pub terminal_id: &'a str,
    #[serde(rename = "paymentCode")]
    pub payment_code: &'a str,
    #[serde(rename = "customerId")]
    pub customer_id: &'a str,
    #[serde(rename = "customerMobile", skip_serializing_if = "str::is_empty")]
    pub customer_mobile: &'a str,
    #[serde(rename = "customerEmail", skip_serializing_if = "str::is_empty")]
    pub customer_email: &'a str,
    pub amount: String,
    #[serde(rename = "requestReference")]
    pub request_reference: &'a str,
}

/// A payment advice or transaction query answer. Every field optional: an answer without a
/// response code is PENDING.
#[derive(Debug, Default, Deserialize)]
pub struct TransactionResponse {
    #[serde(
        default,
        rename = "ResponseCode",
        alias = "responseCode",
        deserialize_with = "loose"
    )]
    pub response_code: String,
    /// On a query: the status of the queried transaction.
    #[serde(
        default,
        rename = "TransactionResponseCode",
        alias = "transactionResponseCode",
        deserialize_with = "loose"
    )]
    pub transaction_response_code: String,
    #[serde(
        default,
        rename = "ResponseCodeGrouping",
        alias = "responseCodeGrouping",
        deserialize_with = "loose"
    )]
    pub response_code_grouping: String,
    #[serde(
        default,
        rename = "ResponseDescription",
        alias = "responseDescription",
        alias = "ResponseMessage",
        deserialize_with = "loose"
    )]
    pub response_description: String,
    #[serde(
        default,
        rename = "TransactionReference",
        alias = "transactionReference",
        alias = "TransactionRef",
        alias = "transactionRef",
        deserialize_with = "loose"
    )]
    pub transaction_reference: String,
    /// Token or PIN delivered by token-based billers (prepaid electricity).
    #[serde(
        default,
        rename = "RechargePIN",
        alias = "rechargePIN",
        alias = "PIN",
        deserialize_with = "loose"
    )]
    pub recharge_pin: String,
    /// On a query: the queried transaction's amount, kobo.
    #[serde(default, alias = "Amount", deserialize_with = "loose")]
    pub amount: String,
    /// The amount approved, kobo, when it differs from the amount sent (partial approvals).
    #[serde(
        default,
        rename = "ApprovedAmount",
        alias = "approvedAmount",
        deserialize_with = "loose"
    )]
    pub approved_amount: String,
    /// On a query, when Interswitch echoes them: our `requestReference`, the customer and the
    /// payment code of the queried transaction. The SDK's DTO does not list them; they are
    /// compared with the journal only when present.
    #[serde(
        default,
        rename = "requestReference",
        alias = "RequestReference",
        deserialize_with = "loose"
    )]
    pub request_reference: String,
    #[serde(
        default,
        rename = "customerId",
        alias = "CustomerId",
        alias = "customerID",
        deserialize_with = "loose"
    )]
    pub customer_id: String,
    #[serde(
        default,
        rename = "paymentCode",
        alias = "PaymentCode",
        deserialize_with = "loose"
    )]
    pub payment_code: String,
    /// Interswitch's error envelope on 4xx answers.
    #[serde(default, deserialize_with = "lenient")]
    pub error: Option<WireError>,
    #[serde(default, deserialize_with = "lenient")]
    pub errors: Vec<WireError>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WireError {
    #[serde(default, deserialize_with = "loose")]
    pub code: String,
    #[serde(default, deserialize_with = "loose")]
    pub message: String,
}

impl TransactionResponse {
    /// The code that says what happened: a query's transaction code first, else the response
    /// code, else the first error code.
    pub fn effective_code(&self) -> &str {
        [
            self.transaction_response_code.as_str(),
            self.response_code.as_str(),
        ]
        .into_iter()
        .find(|c| !c.is_empty())
        .or_else(|| self.error.as_ref().map(|e| e.code.as_str()))
        .or_else(|| self.errors.first().map(|e| e.code.as_str()))
        .unwrap_or("")
    }

    /// The provider's message, or the first error message.
    pub fn message(&self) -> &str {
        if !self.response_description.is_empty() {
            return &self.response_description;
        }
        self.error
            .as_ref()
            .map(|e| e.message.as_str())
            .or_else(|| self.errors.first().map(|e| e.message.as_str()))
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_or_strings_and_either_key_case() {
        let r: ValidationResponse = serde_json::from_str(
            r#"{"Customers":[{"customerId":"1","fullName":"A","responseCode":90000,"amount":1500000,"amountType":"5"}]}"#,
        )
        .unwrap();
        let v = r
            .customers
            .into_iter()
            .next()
            .unwrap()
            .into_validation()
            .unwrap();
        assert_eq!(v.amount_rule.kind, AmountRuleKind::Exact);
        assert_eq!(v.amount, Some(Money::new(Currency::Ngn, 1_500_000)));
        let lower: ValidationResponse =
            serde_json::from_str(r#"{"customers":[{"amountType":0}]}"#).unwrap();
        assert_eq!(lower.customers.len(), 1);
    }

    #[test]
    fn unknown_amount_type_or_missing_amount_is_an_error() {
        let c = |t: &str, a: &str| WireCustomer {
            customer_id: String::new(),
            full_name: String::new(),
            response_code: "90000".into(),
            amount: a.into(),
            amount_type: t.into(),
            amount_type_description: String::new(),
        };
        assert!(c("6", "100").into_validation().is_err());
        assert!(c("1", "").into_validation().is_err());
        assert!(c("1", "1.50").into_validation().is_err());
        assert!(c("0", "").into_validation().is_ok());
    }

    #[test]
    fn advice_amount_is_kobo_string() {
        let body = AdviceRequest {
            terminal_id: "3DMO0001",
            payment_code: "10401",
            customer_id: "0000000001",
            customer_mobile: "",
            customer_email: "",
            amount: Money::new(Currency::Ngn, 150_000).minor_units_string(),
            request_reference: "145600000001",
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"TerminalId":"3DMO0001","paymentCode":"10401","customerId":"0000000001","amount":"150000","requestReference":"145600000001"})
        );
    }

    #[test]
    fn null_or_odd_error_envelopes_do_not_hide_the_code() {
        for body in [
            r#"{"ResponseCode":"90000","ResponseCodeGrouping":"SUCCESSFUL","errors":null,"error":null}"#,
            r#"{"ResponseCode":"90000","errors":"none","error":"none"}"#,
        ] {
            let r: TransactionResponse = serde_json::from_str(body).unwrap();
            assert_eq!(r.effective_code(), "90000", "{body}");
        }
    }

    #[test]
    fn effective_code_prefers_the_transaction_code() {
        let r: TransactionResponse =
            serde_json::from_str(r#"{"ResponseCode":"90000","TransactionResponseCode":"70120"}"#)
                .unwrap();
        assert_eq!(r.effective_code(), "70120");
        let e: TransactionResponse =
            serde_json::from_str(r#"{"errors":[{"code":"20050","message":"bad"}]}"#).unwrap();
        assert_eq!((e.effective_code(), e.message()), ("20050", "bad"));
    }
}
