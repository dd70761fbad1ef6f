//! Provider-neutral types: money, catalog entries, customers and amount rules, payments, and the
//! [`Provider`] trait every adapter implements. Nothing here knows about tonic or provider JSON.

pub mod account;
pub mod catalog;
pub mod customer;
pub mod directory;
pub mod money;
pub mod options;
pub mod payment;
pub mod provider;
pub mod resource;

pub use account::transaction_details;
pub use account::{
    Account, Balance, BalanceQuery, BillLookup, OffersQuery, PaymentOffer, PaymentOffers,
    ProviderObject, ProviderPage, ProviderPageRequest, ProviderTransaction, SavedBill,
    TransactionKind, TransactionQuery,
};
pub use catalog::{Biller, Category, PaymentMethod, Product};
pub use customer::{AmountRule, AmountRuleKind, CustomerValidation};
pub use money::{Currency, Money};
pub use options::{PaymentOptions, PaymentSecrets};
pub use payment::{AnswerIdentity, PaymentOrder, PaymentOutcome, PaymentRecord, PaymentState};
pub use provider::{Capability, ProductCatalog, Provider, ProviderError, ProviderId};
pub use resource::Resource;
