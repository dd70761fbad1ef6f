//! Reads about money held at a provider and its own records: balances, accounts, the
//! provider's transaction list, saved bills, bill look-ups and per-customer payment offers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{payment::Contact, Money, PaymentState};

/// Which balance to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceQuery {
    /// The provider account; empty means the configured default.
    pub account_id: String,
    /// The product whose float to read (InterIntel `biller-float` is per product item).
    pub product_id: String,
}

/// Money available at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub account_id: String,
    pub available: Money,
    /// The provider's message with the balance, verbatim.
    pub provider_message: String,
}

/// An account at a provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    pub name: String,
    pub currency_code: String,
    /// The account type as the provider names it (IP2 AccountType).
    #[serde(default)]
    pub account_type: String,
    /// The account status as the provider names it (IP2 AccountStatus).
    #[serde(default)]
    pub status: String,
    /// Smallest amount one transaction may move; `None` when unlimited.
    #[serde(default)]
    pub min_transaction_amount: Option<Money>,
    /// Largest amount one transaction may move; `None` when unlimited.
    #[serde(default)]
    pub max_transaction_amount: Option<Money>,
    /// Balance the account must keep; `None` when none.
    #[serde(default)]
    pub minimum_balance: Option<Money>,
}

/// A page request to a provider that pages its own lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPageRequest {
    /// Items to skip.
    pub offset: u32,
    /// Items wanted, at least 1.
    pub limit: u32,
}

/// One page of a provider-paged list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPage<T> {
    pub items: Vec<T>,
    /// True when the provider has items after this page.
    pub more: bool,
}

/// Which provider transactions to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionQuery {
    /// The provider account; empty means the configured default.
    pub account_id: String,
    /// Inclusive start, unix milliseconds.
    pub from_ms: Option<i64>,
    /// Exclusive end, unix milliseconds.
    pub to_ms: Option<i64>,
    pub page: ProviderPageRequest,
}

/// Money in or out, as a provider lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionKind {
    Debit,
    Credit,
}

/// A transaction as the provider lists it; it may not have been made through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTransaction {
    pub provider_transaction_id: String,
    /// The client reference it was made with, when known.
    pub provider_reference: String,
    pub kind: TransactionKind,
    pub state: PaymentState,
    pub amount: Money,
    pub created_at_ms: Option<i64>,
    pub description: String,
    pub provider_code: String,
    pub provider_message: String,
    /// Other fields the provider lists, verbatim; the keys in [`transaction_details`] are
    /// also shown as typed fields of the contract.
    pub details: BTreeMap<String, String>,
}

/// Keys of [`ProviderTransaction::details`] the contract shows as typed fields.
pub mod transaction_details {
    /// The provider's fee, integer minor units of the transaction's currency.
    pub const FEE_MINOR_UNITS: &str = "fee_minor_units";
    /// The commission earned, integer minor units of the transaction's currency.
    pub const COMMISSION_MINOR_UNITS: &str = "commission_minor_units";
    /// The product paid for.
    pub const PRODUCT_ID: &str = "product_id";
    /// The payment method used.
    pub const PAYMENT_METHOD_ID: &str = "payment_method_id";
    /// The provider account.
    pub const ACCOUNT_ID: &str = "account_id";
}

/// A bill the provider keeps for repeat payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedBill {
    pub saved_bill_id: String,
    pub biller_id: String,
    pub biller_name: String,
    pub product_id: String,
    pub customer_id: String,
    pub amount: Option<Money>,
    pub created_at_ms: Option<i64>,
}

impl SavedBill {
    /// The object a caller owns when it saved this bill.
    pub fn object(&self) -> ProviderObject {
        ProviderObject::SavedBill {
            biller_id: self.biller_id.clone(),
            customer_id: self.customer_id.clone(),
        }
    }
}

impl ProviderTransaction {
    /// The object a caller owns when it made this transaction; `None` when the provider
    /// lists no client reference for it (then only merchant-wide readers see it).
    pub fn object(&self) -> Option<ProviderObject> {
        (!self.provider_reference.is_empty()).then(|| ProviderObject::Transaction {
            reference: self.provider_reference.clone(),
        })
    }
}

/// Something a payment leaves at the provider that the provider later lists or acts on for
/// anyone holding the merchant's credentials (saved bills, transactions), named by what both
/// the payment and the provider's listing carry, so the gateway can tell whose it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderObject {
    /// A saved bill (Switch `save_information`). Switch answers a payment without the saved
    /// bill's id, so it is known by biller and customer: every bill saved for that pair.
    SavedBill {
        biller_id: String,
        customer_id: String,
    },
    /// A transaction in the provider's list, by the client reference it was made with.
    Transaction { reference: String },
}

impl ProviderObject {
    /// A store key part naming the object unambiguously (lengths prefixed).
    pub fn key(&self) -> String {
        match self {
            Self::SavedBill {
                biller_id,
                customer_id,
            } => format!("saved_bill:{}:{biller_id}:{customer_id}", biller_id.len()),
            Self::Transaction { reference } => format!("transaction:{reference}"),
        }
    }
}

/// What a biller says a customer owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLookup {
    pub customer_id: String,
    pub customer_name: String,
    pub amount_due: Option<Money>,
    pub provider_code: String,
    pub provider_message: String,
}

/// A per-customer request for what can be paid and how (OnePipe `/transact/options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffersQuery {
    pub biller_id: String,
    /// Empty: every product of the biller.
    pub product_id: String,
    pub customer_id: String,
    pub amount: Option<Money>,
    pub contact: Contact,
}

/// One payable offer for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOffer {
    pub product_id: String,
    pub product_code: String,
    pub name: String,
    pub description: String,
    pub amount: Option<Money>,
    /// The reference a payment for this offer must quote.
    pub order_reference: String,
    pub terms: String,
    pub terms_url: String,
}

/// The provider's answer to an [`OffersQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOffers {
    pub customer_name: String,
    pub offers: Vec<PaymentOffer>,
}
