//! Catalog reads through a cache in the store: a fresh copy is served as is; a stale copy is
//! served while one refresh runs in the background (one per key across replicas, by a short
//! store lock); a provider outage keeps serving the stale copy; a store outage fetches directly.

use std::{future::Future, sync::Arc, time::Duration};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ms, Gateway};
use crate::domain::{
    Biller, Capability, Category, CustomerValidation, PaymentMethod, Product, ProviderError,
    ProviderId,
};
use crate::error::GatewayError;
use crate::store::keys;

/// How long one background refresh may hold its lock.
const REFRESH_LOCK: Duration = Duration::from_secs(30);

fn count_cache(result: &str) {
    crate::metrics::global()
        .catalog_cache
        .get_or_create(&crate::metrics::CacheLabels {
            result: result.to_owned(),
        })
        .inc();
}

#[derive(Serialize, Deserialize)]
struct Cached<I> {
    fetched_at_ms: i64,
    items: I,
}

impl Gateway {
    /// A provider's categories.
    pub async fn list_categories(
        self: &Arc<Self>,
        id: ProviderId,
    ) -> Result<Vec<Category>, GatewayError> {
        let p = self.provider(id, Capability::ListCategories)?.clone();
        self.cached(id, "categories", "all", "list_categories", move || {
            let p = p.clone();
            async move { p.list_categories().await }
        })
        .await
    }

    /// A provider's billers, optionally of one category.
    pub async fn list_billers(
        self: &Arc<Self>,
        id: ProviderId,
        category_id: Option<String>,
    ) -> Result<Vec<Biller>, GatewayError> {
        let p = self.provider(id, Capability::ListBillers)?.clone();
        let scope = match &category_id {
            Some(id) => format!("category:{id}"),
            None => "all".to_owned(),
        };
        self.cached(id, "billers", &scope, "list_billers", move || {
            let (p, category_id) = (p.clone(), category_id.clone());
            async move { p.list_billers(category_id.as_deref()).await }
        })
        .await
    }

    /// The products of one biller.
    pub async fn list_products(
        self: &Arc<Self>,
        id: ProviderId,
        biller_id: String,
    ) -> Result<Vec<Product>, GatewayError> {
        let p = self.provider(id, Capability::ListProducts)?.clone();
        let scope = format!("biller:{biller_id}");
        self.cached(id, "products", &scope, "list_products", move || {
            let (p, biller_id) = (p.clone(), biller_id.clone());
            async move { p.list_products(&biller_id).await }
        })
        .await
    }

    /// A provider's payment methods.
    pub async fn list_payment_methods(
        self: &Arc<Self>,
        id: ProviderId,
    ) -> Result<Vec<PaymentMethod>, GatewayError> {
        let p = self.provider(id, Capability::ListPaymentMethods)?.clone();
        self.cached(
            id,
            "payment_methods",
            "all",
            "list_payment_methods",
            move || {
                let p = p.clone();
                async move { p.list_payment_methods().await }
            },
        )
        .await
    }

    /// Validates a customer (never cached: amounts due change).
    pub async fn validate_customer(
        &self,
        id: ProviderId,
        product_id: &str,
        customer_id: &str,
    ) -> Result<CustomerValidation, GatewayError> {
        let p = self.provider(id, Capability::ValidateCustomer)?;
        p.validate_customer(product_id, customer_id)
            .await
            .map_err(|e| GatewayError::provider(id, "validate_customer", e))
    }

    async fn cached<T, F, Fut>(
        self: &Arc<Self>,
        provider: ProviderId,
        what: &str,
        scope: &str,
        operation: &'static str,
        fetch: F,
    ) -> Result<Vec<T>, GatewayError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ProviderError>> + Send + 'static,
    {
        let key = keys::catalog(provider.name(), what, scope);
        let cached = match self.store.get(&key).await {
            Ok(bytes) => bytes.and_then(|b| serde_json::from_slice::<Cached<Vec<T>>>(&b).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "catalog cache unreadable; asking the provider");
                None
            }
        };
        if let Some(cached) = cached {
            let age = self.clock.now_ms() - cached.fetched_at_ms;
            let stale = age >= self.catalog.fresh_ms as i64;
            count_cache(if stale { "stale" } else { "fresh" });
            if stale {
                self.refresh_in_background(key, fetch).await;
            }
            return Ok(cached.items);
        }
        count_cache("miss");
        let items = fetch()
            .await
            .map_err(|e| GatewayError::provider(provider, operation, e))?;
        self.write_catalog(&key, &items).await;
        Ok(items)
    }

    async fn refresh_in_background<T, F, Fut>(self: &Arc<Self>, key: String, fetch: F)
    where
        T: Serialize + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ProviderError>> + Send + 'static,
    {
        let lock = format!("{key}:refreshing");
        if !matches!(
            self.store
                .set_if_absent(&lock, b"1", Some(REFRESH_LOCK))
                .await,
            Ok(true)
        ) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match fetch().await {
                Ok(items) => this.write_catalog(&key, &items).await,
                Err(e) => {
                    tracing::warn!(error = %e, key, "catalog refresh failed; serving stale copy")
                }
            }
            let _ = this.store.delete(&lock).await;
        });
    }

    async fn write_catalog<T: Serialize>(&self, key: &str, items: &[T]) {
        let value = serde_json::to_vec(&Cached {
            fetched_at_ms: self.clock.now_ms(),
            items,
        })
        .expect("catalog entries serialize");
        if let Err(e) = self
            .store
            .set(key, &value, Some(ms(self.catalog.keep_ms)))
            .await
        {
            tracing::warn!(error = %e, "catalog not cached");
        }
    }
}
