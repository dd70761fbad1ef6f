//! The [`Provider`] trait every adapter implements, the capabilities it declares, and the errors
//! it returns. Operations an adapter does not override answer [`ProviderError::Unsupported`]; the
//! gateway checks [`Provider::capabilities`] first, so callers get a clear UNIMPLEMENTED.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    money::Currency, Biller, Category, CustomerValidation, PaymentOutcome, PaymentRecord, Product,
};

/// The five providers of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProviderId {
    InterIntel,
    Switch,
    IntelworldIp2,
    OnePipe,
    Interswitch,
}

impl ProviderId {
    /// Every provider, in contract order.
    pub const ALL: [ProviderId; 5] = [
        Self::InterIntel,
        Self::Switch,
        Self::IntelworldIp2,
        Self::OnePipe,
        Self::Interswitch,
    ];

    /// Lower-case name used in config sections, logs, metrics and ErrorInfo metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::InterIntel => "interintel",
            Self::Switch => "switch",
            Self::IntelworldIp2 => "intelworld_ip2",
            Self::OnePipe => "onepipe",
            Self::Interswitch => "interswitch",
        }
    }
}

impl std::fmt::Display for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation a provider supports through the gateway (mirrors `billpay.v1.Capability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    ListCategories,
    ListBillers,
    ListProducts,
    ListPaymentMethods,
    ValidateCustomer,
    LookupBill,
    CreatePayment,
    QueryPayment,
    ValidatePaymentOtp,
    ReversePayment,
    ListProviderPayments,
    SavedBills,
    CreateCollection,
    GetBalance,
    ListAccounts,
}

impl Capability {
    /// UPPER_SNAKE name used in ErrorInfo metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListCategories => "LIST_CATEGORIES",
            Self::ListBillers => "LIST_BILLERS",
            Self::ListProducts => "LIST_PRODUCTS",
            Self::ListPaymentMethods => "LIST_PAYMENT_METHODS",
            Self::ValidateCustomer => "VALIDATE_CUSTOMER",
            Self::LookupBill => "LOOKUP_BILL",
            Self::CreatePayment => "CREATE_PAYMENT",
            Self::QueryPayment => "QUERY_PAYMENT",
            Self::ValidatePaymentOtp => "VALIDATE_PAYMENT_OTP",
            Self::ReversePayment => "REVERSE_PAYMENT",
            Self::ListProviderPayments => "LIST_PROVIDER_PAYMENTS",
            Self::SavedBills => "SAVED_BILLS",
            Self::CreateCollection => "CREATE_COLLECTION",
            Self::GetBalance => "GET_BALANCE",
            Self::ListAccounts => "LIST_ACCOUNTS",
        }
    }
}

/// Why a provider call did not produce an answer the gateway can use. For a payment, every
/// variant but `Unrepresentable`, `Unsupported` and `CircuitOpen` (nothing was sent) means
/// "outcome unknown": the payment stays PENDING.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("could not reach the provider: {0}")]
    Transport(String),
    #[error("the provider answered HTTP {status}")]
    Upstream { status: u16 },
    #[error("the provider's answer could not be read: {0}")]
    Unreadable(String),
    #[error("the provider refused the gateway's credentials (HTTP {status})")]
    Auth { status: u16 },
    #[error("the provider refused the request: {code} {message}")]
    Rejected { code: String, message: String },
    #[error("{0} not found at the provider")]
    NotFound(String),
    #[error("{field} cannot be sent to this provider: {reason}")]
    Unrepresentable { field: &'static str, reason: String },
    #[error("the provider does not support {}", .0.name())]
    Unsupported(Capability),
    /// The provider's circuit is open after repeated transport failures: nothing was sent.
    #[error("the provider is failing; calls paused for {} ms", retry_after.as_millis())]
    CircuitOpen { retry_after: std::time::Duration },
}

/// One bill-payment provider. Implementations speak the provider's HTTP exactly and map its
/// answers to domain types; they know nothing of gRPC, caches or idempotency.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Which provider this is.
    fn id(&self) -> ProviderId;
    /// Human-readable name.
    fn display_name(&self) -> &'static str;
    /// Currencies the provider settles in.
    fn currencies(&self) -> &'static [Currency];
    /// Operations this adapter implements.
    fn capabilities(&self) -> &'static [Capability];
    /// The provider-side reference for a new payment, from a sequence number unique across the
    /// deployment (allocated by the store). Stored before the provider is called. `None` when
    /// the sequence no longer fits the provider's reference format: references are never
    /// reused, so the gateway then refuses to pay.
    fn payment_reference(&self, sequence: u64) -> Option<String>;

    /// `Err(CircuitOpen)` while calls to the provider are paused. Checked before a payment is
    /// recorded, so no payment is started into an outage.
    fn accepting_calls(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Bill categories.
    async fn list_categories(&self) -> Result<Vec<Category>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListCategories))
    }
    /// Billers, optionally of one category.
    async fn list_billers(&self, _category_id: Option<&str>) -> Result<Vec<Biller>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListBillers))
    }
    /// Products of one biller.
    async fn list_products(&self, _biller_id: &str) -> Result<Vec<Product>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListProducts))
    }
    /// What the biller knows of a customer, with the amount rule.
    async fn validate_customer(
        &self,
        _product_id: &str,
        _customer_id: &str,
    ) -> Result<CustomerValidation, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ValidateCustomer))
    }
    /// Sends the payment once. Never retried by the gateway.
    async fn pay(&self, _payment: &PaymentRecord) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::CreatePayment))
    }
    /// Asks the provider for the state of an earlier payment by its reference.
    async fn query_payment(
        &self,
        _payment: &PaymentRecord,
    ) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::QueryPayment))
    }
}
