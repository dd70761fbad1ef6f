//! Catalog reads through two caches: a bounded process-local one (moka) in front of the shared
//! copy in the store. A local copy is served without any I/O while it is fresh (younger than
//! `catalog.fresh_ms` since the provider answered it, and never kept longer than that), so
//! replicas agree within the freshness window. A local miss costs one store read, shared by
//! every concurrent caller of the same key (single flight). From the store, a fresh copy is
//! served as is; a stale copy is served while one refresh runs in the background (one per key
//! across replicas, by a short store lock); a provider outage keeps serving the stale copy; a
//! cold miss asks the provider once: once per process by the single flight, and once across
//! replicas by the same lock (the others wait a bounded time for the copy); a store outage
//! fetches directly.

use std::{any::Any, future::Future, sync::Arc, time::Duration};

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
/// On a cold miss while another replica holds the refresh lock: how long to wait for its copy
/// before asking the provider anyway, and how often to look.
const COLD_WAIT: Duration = Duration::from_secs(3);
const COLD_POLL: Duration = Duration::from_millis(20);

/// A catalog list held in this process: when the provider answered it, and the list (a
/// `Vec<T>`; the key fixes `T`).
#[derive(Clone)]
pub(crate) struct LocalCopy {
    fetched_at_ms: i64,
    items: Arc<dyn Any + Send + Sync>,
}

/// The process-local catalog cache, by store key.
pub(crate) type LocalCatalog = moka::future::Cache<String, LocalCopy>;

/// A bounded local cache whose entries never outlive the freshness window.
pub(crate) fn local_catalog(settings: &super::CatalogSettings) -> LocalCatalog {
    moka::future::Cache::builder()
        .max_capacity(settings.local_entries)
        .time_to_live(Duration::from_millis(settings.fresh_ms.max(1)))
        .build()
}

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

    /// Drops every catalog list held in this process (the store's copies stay): the next read
    /// of each goes to the store. For operators and tests that change the store's copy.
    pub async fn forget_local_catalog(&self) {
        self.local_catalog.invalidate_all();
        self.local_catalog.run_pending_tasks().await;
    }

    fn is_fresh(&self, fetched_at_ms: i64) -> bool {
        self.clock.now_ms() - fetched_at_ms < self.catalog.fresh_ms as i64
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
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ProviderError>> + Send + 'static,
    {
        let key = keys::catalog(provider.name(), what, scope);
        if let Some(copy) = self.local_catalog.get(&key).await {
            if self.is_fresh(copy.fetched_at_ms) {
                if let Some(items) = copy.items.downcast_ref::<Vec<T>>() {
                    count_cache("local");
                    return Ok(items.clone());
                }
            }
            // Stale here: look at the store again (it may hold a refreshed copy).
            self.local_catalog.invalidate(&key).await;
        }
        let this = self.clone();
        let loaded = self
            .local_catalog
            .try_get_with(key.clone(), async move {
                this.load::<T, F, Fut>(key, fetch).await
            })
            .await
            .map_err(|e| GatewayError::provider(provider, operation, (*e).clone()))?;
        Ok(loaded
            .items
            .downcast_ref::<Vec<T>>()
            .expect("a catalog key always holds one item type")
            .clone())
    }

    /// A local miss: one store read; on a stale copy, a background refresh; on a cold miss,
    /// the provider (one replica at a time, by the refresh lock).
    async fn load<T, F, Fut>(
        self: &Arc<Self>,
        key: String,
        fetch: F,
    ) -> Result<LocalCopy, ProviderError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ProviderError>> + Send + 'static,
    {
        if let Some(cached) = self.read_store::<T>(&key).await {
            let stale = !self.is_fresh(cached.fetched_at_ms);
            count_cache(if stale { "stale" } else { "fresh" });
            if stale {
                self.refresh_in_background(key, fetch).await;
            }
            return Ok(local_copy(cached));
        }
        count_cache("miss");
        let lock = format!("{key}:refreshing");
        let locked = self
            .store
            .set_if_absent(&lock, b"1", Some(REFRESH_LOCK))
            .await;
        if matches!(locked, Ok(true)) {
            // Read again under the lock: a replica that wrote its copy and released the lock
            // between this one's read and its lock must not be followed by a second fetch.
            if let Some(cached) = self.read_store::<T>(&key).await {
                let _ = self.store.delete(&lock).await;
                return Ok(local_copy(cached));
            }
        }
        if matches!(locked, Ok(false)) {
            // Another replica is asking the provider: wait a bounded time for its copy.
            let waited = tokio::time::Instant::now();
            while waited.elapsed() < COLD_WAIT {
                tokio::time::sleep(COLD_POLL).await;
                if let Some(cached) = self.read_store::<T>(&key).await {
                    return Ok(local_copy(cached));
                }
            }
        }
        let result = fetch().await;
        if let Ok(items) = &result {
            self.write_catalog(&key, items).await;
        }
        if matches!(locked, Ok(true)) {
            let _ = self.store.delete(&lock).await;
        }
        let items = result?;
        Ok(LocalCopy {
            fetched_at_ms: self.clock.now_ms(),
            items: Arc::new(items),
        })
    }

    /// The store's copy, if it has a readable one.
    async fn read_store<T: DeserializeOwned>(&self, key: &str) -> Option<Cached<Vec<T>>> {
        match self.store.get(key).await {
            Ok(bytes) => bytes.and_then(|b| serde_json::from_slice::<Cached<Vec<T>>>(&b).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "catalog cache unreadable; asking the provider");
                None
            }
        }
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

fn local_copy<T: Send + Sync + 'static>(cached: Cached<Vec<T>>) -> LocalCopy {
    LocalCopy {
        fetched_at_ms: cached.fetched_at_ms,
        items: Arc::new(cached.items),
    }
}
