//! The kinds of object a caller can name by id and be told "not found" about: the resource types
//! of `google.rpc.ResourceInfo` on NOT_FOUND, named after the contract's messages.

use serde::{Deserialize, Serialize};

/// An object a request names by id that may not exist (at the gateway or at the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// A payment in the gateway's journal (`billpay.v1.Payment`, by payment_id).
    Payment,
    /// A provider's category (`billpay.v1.Category`, by category_id).
    Category,
    /// A provider's biller (`billpay.v1.Biller`, by biller_id).
    Biller,
    /// A provider's product (`billpay.v1.Product`, by product_id).
    Product,
    /// A bill saved at the provider (`billpay.v1.SavedBill`, by saved_bill_id).
    SavedBill,
    /// An account at the provider (`billpay.v1.Account`, by account_id).
    Account,
    /// A biller of the gateway's directory (`billpay.v1.DirectoryBiller`, by
    /// directory_biller_id).
    DirectoryBiller,
}

impl Resource {
    /// Every kind, for tests and documentation.
    pub const ALL: [Resource; 7] = [
        Self::Payment,
        Self::Category,
        Self::Biller,
        Self::Product,
        Self::SavedBill,
        Self::Account,
        Self::DirectoryBiller,
    ];

    /// The full name of the contract's message for it: `ResourceInfo.resource_type`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Payment => "billpay.v1.Payment",
            Self::Category => "billpay.v1.Category",
            Self::Biller => "billpay.v1.Biller",
            Self::Product => "billpay.v1.Product",
            Self::SavedBill => "billpay.v1.SavedBill",
            Self::Account => "billpay.v1.Account",
            Self::DirectoryBiller => "billpay.v1.DirectoryBiller",
        }
    }

    /// What a sentence calls it.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Category => "category",
            Self::Biller => "biller",
            Self::Product => "product",
            Self::SavedBill => "saved bill",
            Self::Account => "account",
            Self::DirectoryBiller => "directory biller",
        }
    }
}
