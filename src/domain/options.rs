//! What a payment carries besides the common order fields: provider-specific options (kept in
//! the journal and compared on replay) and the caller's secrets (PINs, OTPs, card and funding
//! data), which are held in memory for the one provider call and never stored, logged or
//! fingerprinted.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Provider-specific options of a payment. Holds no secret: it is stored with the record and is
/// part of the order's fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentOptions {
    /// The request named no options.
    #[default]
    None,
    Switch(SwitchOptions),
    OnePipe(OnePipeOptions),
    Ip2(Ip2Options),
    InterIntel(InterIntelOptions),
}

impl PaymentOptions {
    /// True when the request named no options.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// Switch: saving and scheduling (the PIN or OTP is in [`PaymentSecrets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOptions {
    pub save_information: bool,
    /// When Switch should pay, unix milliseconds; `None` means now.
    pub start_time_ms: Option<i64>,
    pub repeat: bool,
    /// "monthly", "weekly" or "custom" when `repeat`.
    pub repeat_pattern: String,
    /// Days between payments with pattern "custom".
    pub custom_interval_days: i32,
}

/// How a OnePipe payment is funded. The funding data itself is secret
/// ([`FundingSecret`]); only its kind is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnePipeFundingKind {
    Card,
    BankAccount,
    Wallet,
    Airtime,
    Voucher,
}

/// OnePipe: the options call's order reference and the funding kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnePipeOptions {
    pub order_reference: String,
    pub funding: OnePipeFundingKind,
}

/// IP2: the account, method and product references of a debit or credit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip2Options {
    /// Empty means the configured default account.
    pub account_id: String,
    pub payment_method_id: String,
    /// ISO-3166 alpha-2.
    pub country_code: String,
    pub memo: String,
    /// Method-specific payer details (IP2 PaymentMethodReference).
    pub payment_method_reference: BTreeMap<String, String>,
    /// Empty means the configured default channel.
    pub channel_id: String,
    /// Product-specific details (IP2 ProductReference).
    pub product_reference: BTreeMap<String, String>,
    pub channel_reference: String,
    /// The caller's own id for the customer (IP2 CustomerId).
    pub customer_reference: String,
}

/// InterIntel: scheduled sending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterIntelOptions {
    /// When InterIntel should send the payment, unix milliseconds; `None` means now.
    pub scheduled_send_ms: Option<i64>,
}

/// The caller's secrets for one provider call. Never serialized, never stored, never part of a
/// fingerprint; `Debug` shows only which are present.
#[derive(Default)]
pub struct PaymentSecrets {
    /// A PIN (Switch 2FA "pin").
    pub pin: Option<SecretString>,
    /// A one-time password (Switch 2FA phone or authenticator).
    pub otp: Option<SecretString>,
    /// The customer's funding data (OnePipe `auth.secure`).
    pub funding: Option<FundingSecret>,
    /// Extra named secret inputs a provider asked for (OnePipe PendingValidation fields).
    pub fields: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for PaymentSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSecrets")
            .field("pin", &self.pin.is_some())
            .field("otp", &self.otp.is_some())
            .field("funding", &self.funding.as_ref().map(FundingSecret::kind))
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Funding data for OnePipe's encrypted `auth.secure`, by `auth.type`.
pub enum FundingSecret {
    Card {
        pan: SecretString,
        cvv: SecretString,
        expiry_mmyy: SecretString,
        pin: SecretString,
    },
    BankAccount {
        account_number: SecretString,
        bank_cbn_code: String,
    },
    Wallet {
        wallet_number: SecretString,
        provider_code: String,
    },
    Airtime {
        phone_number: SecretString,
        telco_code: String,
    },
    Voucher {
        voucher_code: SecretString,
        provider_code: String,
    },
}

impl FundingSecret {
    /// The stored, non-secret kind of this funding.
    pub fn kind(&self) -> OnePipeFundingKind {
        match self {
            Self::Card { .. } => OnePipeFundingKind::Card,
            Self::BankAccount { .. } => OnePipeFundingKind::BankAccount,
            Self::Wallet { .. } => OnePipeFundingKind::Wallet,
            Self::Airtime { .. } => OnePipeFundingKind::Airtime,
            Self::Voucher { .. } => OnePipeFundingKind::Voucher,
        }
    }
}
