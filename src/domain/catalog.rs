//! Catalog entries: what can be paid, and to whom.

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
