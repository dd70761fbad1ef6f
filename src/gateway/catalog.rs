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
//!
//! Payments name products: [`Gateway::listed_product`] checks the name against the cached list
//! before anything is recorded or sent, and reads the list again from the provider once when
//! the product is missing from a copy older than the check (one read shared by concurrent
//! misses), so a product the provider added since is found and an unlisted one is refused.

use std::{any::Any, future::Future, sync::Arc, time::Duration};
use tracing::Instrument;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ms, Gateway};
use crate::domain::{
    Biller, Capability, Category, CustomerValidation, PaymentMethod, Product, ProductCatalog,
    ProviderError, ProviderId,
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

/// A product list read again from the provider after a miss: shared by concurrent misses.
pub(crate) type Refreshed = Result<Arc<Vec<Product>>, ProviderError>;

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

    /// Validates a customer (never cached: amounts due change). With a `biller_id` the product
    /// is first checked against the provider's catalog, as a payment's is.
    pub async fn validate_customer(
        self: &Arc<Self>,
        id: ProviderId,
        biller_id: &str,
        product_id: &str,
        customer_id: &str,
    ) -> Result<CustomerValidation, GatewayError> {
        let p = self.provider(id, Capability::ValidateCustomer)?.clone();
        if !biller_id.is_empty() {
            self.listed_product(id, biller_id, product_id).await?;
        }
        p.validate_customer(product_id, customer_id)
            .await
            .map_err(|e| GatewayError::provider(id, "validate_customer", e))
    }

    /// The product `product_id` as the provider lists it (of `biller_id` where products are
    /// listed per biller), or NOT_FOUND/PRODUCT_NOT_FOUND. `None` when the provider lists no
    /// products to check against, or when no product is named. A catalog that cannot be read
    /// answers its provider error (UNAVAILABLE for an outage), never NOT_FOUND.
    pub(crate) async fn listed_product(
        self: &Arc<Self>,
        id: ProviderId,
        biller_id: &str,
        product_id: &str,
    ) -> Result<Option<Product>, GatewayError> {
        let catalog = self.providers.get(&id).map(|p| p.product_catalog());
        let Some(catalog) = catalog.filter(|c| *c != ProductCatalog::Unlisted) else {
            return Ok(None);
        };
        if product_id.is_empty() {
            return Ok(None);
        }
        let billers = match catalog {
            ProductCatalog::Whole => vec![String::new()],
            ProductCatalog::PerBiller if biller_id.is_empty() => {
                return Err(GatewayError::invalid(
                    "biller_id",
                    format!(
                        "required for {}: its products are listed per biller",
                        id.proto_name()
                    ),
                ));
            }
            ProductCatalog::PerBillerOrAny if biller_id.is_empty() => self
                .list_billers(id, None)
                .await?
                .into_iter()
                .map(|b| b.biller_id)
                .collect(),
            _ => vec![biller_id.to_owned()],
        };
        let started_ms = self.clock.now_ms();
        for biller in billers {
            if let Some(product) = self
                .find_product(id, &biller, product_id, started_ms)
                .await?
            {
                return Ok(Some(product));
            }
        }
        Err(GatewayError::ProductNotFound {
            provider: id,
            biller_id: biller_id.to_owned(),
            product_id: product_id.to_owned(),
        })
    }

    /// `product_id` in the cached list of `biller`; on a miss in a copy read before
    /// `started_ms`, in the list read again from the provider. An unknown biller lists nothing.
    async fn find_product(
        self: &Arc<Self>,
        id: ProviderId,
        biller: &str,
        product_id: &str,
        started_ms: i64,
    ) -> Result<Option<Product>, GatewayError> {
        let p = self.provider(id, Capability::ListProducts)?.clone();
        let scope = format!("biller:{biller}");
        let fetch = {
            let (p, biller) = (p.clone(), biller.to_owned());
            move || {
                let (p, biller) = (p.clone(), biller.clone());
                async move { p.list_products(&biller).await }
            }
        };
        let (products, fetched_at_ms) = match self
            .cached_copy(id, "products", &scope, "list_products", fetch)
            .await
        {
            Ok(copy) => copy,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(product) = products.iter().find(|p| p.product_id == product_id) {
            return Ok(Some(product.clone()));
        }
        if fetched_at_ms > started_ms {
            // Read from the provider since this check began: the miss is the provider's. A
            // copy stamped in the very millisecond the check began may be older than it, so
            // it is read again (at worst one extra read, when this check fetched it itself).
            return Ok(None);
        }
        let key = keys::catalog(id.name(), "products", &scope);
        let this = self.clone();
        let (biller, flight_key) = (biller.to_owned(), key.clone());
        let refreshed = self
            .product_refreshes
            .run(&flight_key, async move {
                count_cache("miss_refresh");
                let items = p.list_products(&biller).await?;
                this.write_catalog(&key, &items).await;
                let items = Arc::new(items);
                this.local_catalog
                    .insert(
                        key,
                        LocalCopy {
                            fetched_at_ms: this.clock.now_ms(),
                            items: Arc::new(items.as_ref().clone()),
                        },
                    )
                    .await;
                Ok(items)
            })
            .await
            .map_err(|_| GatewayError::Internal("catalog refresh task ended early".into()))?;
        match refreshed {
            Ok(items) => Ok(items.iter().find(|p| p.product_id == product_id).cloned()),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(GatewayError::provider(id, "list_products", e)),
        }
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
        self.cached_copy(provider, what, scope, operation, fetch)
            .await
            .map(|(items, _)| items)
    }

    /// The cached list with when the provider answered it (unix ms).
    async fn cached_copy<T, F, Fut>(
        self: &Arc<Self>,
        provider: ProviderId,
        what: &str,
        scope: &str,
        operation: &'static str,
        fetch: F,
    ) -> Result<(Vec<T>, i64), GatewayError>
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
                    return Ok((items.clone(), copy.fetched_at_ms));
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
        Ok((
            loaded
                .items
                .downcast_ref::<Vec<T>>()
                .expect("a catalog key always holds one item type")
                .clone(),
            loaded.fetched_at_ms,
        ))
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
    /// The list the store holds for `what` of `provider` in `scope`, without asking the
    /// provider; `None` when none is cached.
    pub(crate) async fn stored_catalog<T: DeserializeOwned>(
        &self,
        provider: ProviderId,
        what: &str,
        scope: &str,
    ) -> Option<Vec<T>> {
        self.read_store::<T>(&keys::catalog(provider.name(), what, scope))
            .await
            .map(|cached| cached.items)
    }

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
        }
        .in_current_span());
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

/// A catalog read that says the list's owner (the biller) does not exist at the provider.
fn is_not_found(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::NotFound {
            provider: Some(_),
            ..
        }
    )
}
