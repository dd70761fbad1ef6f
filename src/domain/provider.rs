//! The [`Provider`] trait every adapter implements, the capabilities it declares, and the errors
//! it returns. Operations an adapter does not override answer [`ProviderError::Unsupported`]; the
//! gateway checks [`Provider::capabilities`] first, so callers get a clear UNIMPLEMENTED.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    money::Currency, Account, Balance, BalanceQuery, BillLookup, Biller, Category,
    CustomerValidation, Money, OffersQuery, PaymentMethod, PaymentOffers, PaymentOrder,
    PaymentOutcome, PaymentRecord, PaymentSecrets, Product, ProviderObject, ProviderPage,
    ProviderPageRequest, ProviderTransaction, Resource, SavedBill, TransactionQuery,
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

    /// Lower-case name used in config sections, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::InterIntel => "interintel",
            Self::Switch => "switch",
            Self::IntelworldIp2 => "intelworld_ip2",
            Self::OnePipe => "onepipe",
            Self::Interswitch => "interswitch",
        }
    }

    /// The `billpay.v1.Provider` value name (`PROVIDER_INTERSWITCH`): what error messages and
    /// ErrorInfo metadata call the provider, the name the caller sent.
    pub fn proto_name(self) -> &'static str {
        match self {
            Self::InterIntel => "PROVIDER_INTERINTEL",
            Self::Switch => "PROVIDER_SWITCH",
            Self::IntelworldIp2 => "PROVIDER_INTELWORLD_IP2",
            Self::OnePipe => "PROVIDER_ONEPIPE",
            Self::Interswitch => "PROVIDER_INTERSWITCH",
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
    GetPaymentOptions,
    SendOtp,
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
            Self::GetPaymentOptions => "GET_PAYMENT_OPTIONS",
            Self::SendOtp => "SEND_OTP",
        }
    }

    /// The `billpay.v1.Capability` value name (`CAPABILITY_GET_BALANCE`), as error messages
    /// and ErrorInfo metadata name it.
    pub fn proto_name(self) -> &'static str {
        match self {
            Self::ListCategories => "CAPABILITY_LIST_CATEGORIES",
            Self::ListBillers => "CAPABILITY_LIST_BILLERS",
            Self::ListProducts => "CAPABILITY_LIST_PRODUCTS",
            Self::ListPaymentMethods => "CAPABILITY_LIST_PAYMENT_METHODS",
            Self::ValidateCustomer => "CAPABILITY_VALIDATE_CUSTOMER",
            Self::LookupBill => "CAPABILITY_LOOKUP_BILL",
            Self::CreatePayment => "CAPABILITY_CREATE_PAYMENT",
            Self::QueryPayment => "CAPABILITY_QUERY_PAYMENT",
            Self::ValidatePaymentOtp => "CAPABILITY_VALIDATE_PAYMENT_OTP",
            Self::ReversePayment => "CAPABILITY_REVERSE_PAYMENT",
            Self::ListProviderPayments => "CAPABILITY_LIST_PROVIDER_PAYMENTS",
            Self::SavedBills => "CAPABILITY_SAVED_BILLS",
            Self::CreateCollection => "CAPABILITY_CREATE_COLLECTION",
            Self::GetBalance => "CAPABILITY_GET_BALANCE",
            Self::ListAccounts => "CAPABILITY_LIST_ACCOUNTS",
            Self::GetPaymentOptions => "CAPABILITY_GET_PAYMENT_OPTIONS",
            Self::SendOtp => "CAPABILITY_SEND_OTP",
        }
    }
}

/// Why a provider call did not produce an answer the gateway can use. For a payment, every
/// variant but `Unrepresentable`, `Unsupported` and `CircuitOpen` (nothing was sent) means
/// "outcome unknown": the payment stays PENDING.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The provider has no such object (a biller whose products were asked for, a saved bill to
    /// delete). A 404 from a fixed path (a list, a validation endpoint) is `Upstream`: it says
    /// the endpoint is missing, not the caller's object.
    #[error("{} {name:?} not found at the provider", resource.noun())]
    NotFound { resource: Resource, name: String },
    #[error("{field} cannot be sent to this provider: {reason}")]
    Unrepresentable { field: &'static str, reason: String },
    /// The order breaks the provider's rules (field path, why); found before anything is
    /// recorded or sent.
    #[error("the order breaks the provider's rules")]
    InvalidOrder(Vec<(String, String)>),
    /// The provider's price is not what the caller expected; nothing was sent.
    #[error(
        "the price is {} minor units, not the expected {}",
        actual.minor_units,
        expected.minor_units
    )]
    PriceChanged { expected: Money, actual: Money },
    #[error("the provider does not support {}", .0.name())]
    Unsupported(Capability),
    /// The provider's circuit is open after repeated transport failures: nothing was sent.
    #[error("the provider is failing; calls paused for {} ms", retry_after.as_millis())]
    CircuitOpen { retry_after: std::time::Duration },
    /// The request never reached the provider's operation endpoint (no access token could be
    /// obtained, say): for a payment, certainly not sent. Wraps why.
    #[error("not sent: {0}")]
    NotSent(Box<ProviderError>),
}

impl ProviderError {
    /// Marks an error that stopped a request before it was sent.
    pub fn not_sent(self) -> Self {
        match self {
            already @ ProviderError::NotSent(_) => already,
            other => ProviderError::NotSent(Box::new(other)),
        }
    }
}

/// Where a provider lists the products a payment may name: the gateway checks every payment's
/// product against that list (cached) before anything is recorded or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductCatalog {
    /// No product list to check against (OnePipe: what a customer can pay for comes per
    /// customer from `/transact/options`, quoted by an order_reference the provider checks).
    Unlisted,
    /// One list for the whole provider: `list_products` ignores the biller (IP2).
    Whole,
    /// Listed per biller, so a payment must name its biller (Switch plans, Interswitch
    /// payment items).
    PerBiller,
    /// Listed per biller; a payment that names no biller is looked up in every biller's list
    /// (InterIntel's configured items, which carry their biller).
    PerBillerOrAny,
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
    /// How many sequence numbers [`Provider::payment_reference`] can format (`None`: no
    /// limit): sets the provider's reference clock (`store::identity::ReferenceClock`). The
    /// default is the clock's for its default format.
    fn reference_capacity(&self) -> Option<u64> {
        None
    }

    /// `Err(CircuitOpen)` while calls to the provider are paused. Checked before a payment is
    /// recorded, so no payment is started into an outage.
    fn accepting_calls(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Where this provider lists the products a payment may name. A provider that lists
    /// products must say so: the default checks nothing.
    fn product_catalog(&self) -> ProductCatalog {
        ProductCatalog::Unlisted
    }

    /// True when a payment needs its product from the catalog (the gateway then looks it up in
    /// the cached `list_products(order.biller_id)`, passes it to [`Provider::check_order`] and
    /// keeps it on the record as [`PaymentRecord::product`] for [`Provider::pay`]).
    fn pays_from_catalog(&self) -> bool {
        false
    }

    /// Checks an order against the provider's rules before anything is recorded or sent:
    /// `Err(InvalidOrder)` or `Err(PriceChanged)` refuse it with no HTTP call. `product` is the
    /// cached catalog entry when [`Provider::pays_from_catalog`].
    fn check_order(
        &self,
        _order: &PaymentOrder,
        _product: Option<&Product>,
        _secrets: &PaymentSecrets,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The provider-side objects paying `order` under `reference` leaves at the provider,
    /// which the provider later lists to anyone with the merchant's credentials: the gateway
    /// records the caller as their owner before the payment is sent. None by default.
    fn created_objects(&self, _order: &PaymentOrder, _reference: &str) -> Vec<ProviderObject> {
        Vec::new()
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
    /// Sends the payment once (a collection when `payment.order.kind` says so). Never
    /// retried by the gateway. `secrets` (PIN, OTP, funding data) exist only for this call.
    async fn pay(
        &self,
        _payment: &PaymentRecord,
        _secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::CreatePayment))
    }
    /// Asks the provider for the state of an earlier payment by its reference.
    async fn query_payment(
        &self,
        _payment: &PaymentRecord,
    ) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::QueryPayment))
    }
    /// Completes a payment waiting for an OTP or validation (`secrets.otp`, `secrets.fields`).
    /// Sent once per validation request; never retried by the gateway.
    async fn validate_payment(
        &self,
        _payment: &PaymentRecord,
        _secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ValidatePaymentOtp))
    }
    /// Asks the provider to reverse a succeeded payment. Sent once; never retried.
    async fn reverse_payment(
        &self,
        _payment: &PaymentRecord,
        _reason: &str,
    ) -> Result<PaymentOutcome, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ReversePayment))
    }
    /// What one customer can pay for and the references a payment must quote (uncached).
    async fn payment_offers(&self, _query: &OffersQuery) -> Result<PaymentOffers, ProviderError> {
        Err(ProviderError::Unsupported(Capability::GetPaymentOptions))
    }
    /// What the customer owes, for `amount` when the provider prices by amount.
    async fn lookup_bill(
        &self,
        _product_id: &str,
        _customer_id: &str,
        _amount: Option<Money>,
    ) -> Result<BillLookup, ProviderError> {
        Err(ProviderError::Unsupported(Capability::LookupBill))
    }
    /// Every payment method (the gateway caches and pages the list).
    async fn list_payment_methods(&self) -> Result<Vec<PaymentMethod>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListPaymentMethods))
    }
    /// Balances (floats) held at the provider.
    async fn get_balance(&self, _query: &BalanceQuery) -> Result<Vec<Balance>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::GetBalance))
    }
    /// Every account at the provider (the gateway pages the list).
    async fn list_accounts(&self) -> Result<Vec<Account>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListAccounts))
    }
    /// One page of the provider's own transaction list.
    async fn list_transactions(
        &self,
        _query: &TransactionQuery,
    ) -> Result<ProviderPage<ProviderTransaction>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::ListProviderPayments))
    }
    /// One page of saved bills.
    async fn list_saved_bills(
        &self,
        _page: ProviderPageRequest,
    ) -> Result<ProviderPage<SavedBill>, ProviderError> {
        Err(ProviderError::Unsupported(Capability::SavedBills))
    }
    /// Deletes a saved bill. Sent once per request; never retried.
    async fn delete_saved_bill(&self, _saved_bill_id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(Capability::SavedBills))
    }
    /// Asks the provider to send the user a one-time password; answers the provider's message.
    async fn send_otp(&self) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported(Capability::SendOtp))
    }
}
