//! Uncached provider reads: balances, accounts, the provider's transaction list, saved bills,
//! bill look-ups, per-customer payment offers, and the one non-money side effect (asking the
//! provider to send a user an OTP). Each checks the capability, calls the provider once and
//! names the operation in the error.

use std::future::Future;

use super::Gateway;
use crate::domain::{
    Account, Balance, BalanceQuery, BillLookup, Capability, Money, OffersQuery, PaymentOffers,
    Provider, ProviderError, ProviderId, ProviderPage, ProviderPageRequest, ProviderTransaction,
    SavedBill, TransactionQuery,
};
use crate::error::GatewayError;

impl Gateway {
    /// Calls `op` on provider `id` when it supports `capability`.
    async fn read<'a, T, Fut>(
        &'a self,
        id: ProviderId,
        capability: Capability,
        operation: &'static str,
        op: impl FnOnce(&'a dyn Provider) -> Fut,
    ) -> Result<T, GatewayError>
    where
        Fut: Future<Output = Result<T, ProviderError>> + 'a,
    {
        let provider = self.provider(id, capability)?;
        op(provider.as_ref())
            .await
            .map_err(|e| GatewayError::provider(id, operation, e))
    }

    /// What one customer can pay for (never cached: per customer and per moment).
    pub async fn payment_offers(
        &self,
        id: ProviderId,
        query: &OffersQuery,
    ) -> Result<PaymentOffers, GatewayError> {
        self.read(id, Capability::GetPaymentOptions, "payment_options", |p| {
            p.payment_offers(query)
        })
        .await
    }

    /// What a customer owes.
    pub async fn lookup_bill(
        &self,
        id: ProviderId,
        product_id: &str,
        customer_id: &str,
        amount: Option<Money>,
    ) -> Result<BillLookup, GatewayError> {
        self.read(id, Capability::LookupBill, "lookup_bill", |p| {
            p.lookup_bill(product_id, customer_id, amount)
        })
        .await
    }

    /// Balances held at the provider.
    pub async fn get_balance(
        &self,
        id: ProviderId,
        query: &BalanceQuery,
    ) -> Result<Vec<Balance>, GatewayError> {
        self.read(id, Capability::GetBalance, "get_balance", |p| {
            p.get_balance(query)
        })
        .await
    }

    /// Accounts at the provider.
    pub async fn list_accounts(&self, id: ProviderId) -> Result<Vec<Account>, GatewayError> {
        self.read(id, Capability::ListAccounts, "list_accounts", |p| {
            p.list_accounts()
        })
        .await
    }

    /// One page of the provider's transaction list.
    pub async fn list_transactions(
        &self,
        id: ProviderId,
        query: &TransactionQuery,
    ) -> Result<ProviderPage<ProviderTransaction>, GatewayError> {
        self.read(
            id,
            Capability::ListProviderPayments,
            "list_transactions",
            |p| p.list_transactions(query),
        )
        .await
    }

    /// One page of saved bills.
    pub async fn list_saved_bills(
        &self,
        id: ProviderId,
        page: ProviderPageRequest,
    ) -> Result<ProviderPage<SavedBill>, GatewayError> {
        self.read(id, Capability::SavedBills, "list_saved_bills", |p| {
            p.list_saved_bills(page)
        })
        .await
    }

    /// Asks the provider to send its user an OTP.
    pub async fn send_otp(&self, id: ProviderId) -> Result<String, GatewayError> {
        self.read(id, Capability::SendOtp, "send_otp", |p| p.send_otp())
            .await
    }
}
