//! Catalog entries: what can be paid, and to whom.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Money;

/// A group of billers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub category_id: String,
    pub name: String,
    pub description: String,
}

/// An organisation that can be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Biller {
    pub biller_id: String,
    pub name: String,
    pub short_name: String,
    pub category_id: String,
    /// ISO-4217 code, empty when the provider does not say.
    pub currency_code: String,
}

/// One thing a customer can pay a biller for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub biller_id: String,
    pub name: String,
    /// The stated price, when the provider states one.
    pub amount: Option<Money>,
    /// Only exactly `amount` may be paid.
    pub amount_fixed: bool,
    pub fee: Option<Money>,
    pub customer_id_label: String,
    /// Tax charged on top of the amount, when stated.
    #[serde(default)]
    pub tax: Option<Money>,
    /// Amount + fee + tax, when the provider states a fixed price.
    #[serde(default)]
    pub total: Option<Money>,
    /// Inputs a payment for this product needs.
    #[serde(default)]
    pub input_fields: Vec<InputField>,
    /// Provider fields a payment must echo back (Switch mandate_id, payment_code, ...), not
    /// shown to callers.
    #[serde(default)]
    pub provider_data: BTreeMap<String, String>,
}

/// One input a product needs with a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputField {
    pub key: String,
    pub label: String,
    pub default_value: String,
    pub required: bool,
}

/// A way to move money at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub payment_method_id: String,
    pub name: String,
    pub description: String,
    pub currency_codes: Vec<String>,
    pub country_codes: Vec<String>,
}
