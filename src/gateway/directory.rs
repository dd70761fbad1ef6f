//! The biller directory as this replica sees it: each route's live state (configured, allowed
//! for the caller, catalog entry listed or broken, circuit, recent success rate and latency,
//! the fee the catalog states) and the order a routed payment tries the routes in. The
//! payment calls' recent outcomes per provider are kept here too ([`RouteStats`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use serde::Deserialize;

use super::Gateway;
use crate::domain::{
    directory::{Directory, DirectoryBiller, Route},
    Biller, Capability, Money, Product, ProductCatalog, ProviderError, ProviderId,
};
use crate::error::GatewayError;

/// `[directory]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// A mapping file to use instead of the built-in `config/directory.toml` (same format);
    /// empty: the built-in one. Read and checked at start: a bad file stops the gateway.
    pub file: String,
    /// Routing policy: providers by config name (`interswitch`, `onepipe`, `switch`, ...), the
    /// one a routed payment tries first first. Providers not listed come after those listed,
    /// by lowest stated fee, then in the mapping file's order. Empty: lowest fee first.
    pub provider_priority: Vec<String>,
    /// How many of a provider's most recent payment calls its route health is read from,
    /// calls (per replica).
    pub stats_window: u32,
    /// A provider with fewer recent payment calls than this is healthy unless its circuit is
    /// open, calls.
    pub min_calls_for_health: u32,
    /// A provider is unhealthy when fewer than this many thousandths of its recent payment
    /// calls got an answer (any explicit state rather than an unknown outcome), permille.
    /// Unhealthy routes are tried only after every healthy one.
    pub min_success_permille: u32,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            file: String::new(),
            provider_priority: Vec::new(),
            stats_window: 50,
            min_calls_for_health: 5,
            min_success_permille: 500,
        }
    }
}

impl DirectorySettings {
    /// The directory these settings name, checked, after checking the priority list's names.
    pub fn load(&self) -> Result<Directory, String> {
        for name in &self.provider_priority {
            if !ProviderId::ALL.iter().any(|p| p.name() == name) {
                return Err(format!(
                    "directory.provider_priority: unknown provider {name:?}"
                ));
            }
        }
        if self.file.is_empty() {
            return Ok(Directory::built_in());
        }
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| format!("directory.file {}: {e}", self.file))?;
        Directory::parse(&text)
    }

    fn priority(&self, id: ProviderId) -> usize {
        self.provider_priority
            .iter()
            .position(|p| p == id.name())
            .unwrap_or(usize::MAX)
    }
}

/// One payment call's result, for route health.
#[derive(Debug, Clone, Copy)]
struct CallSample {
    answered: bool,
    latency_ms: u64,
}

/// The most recent payment calls per provider (bounded by `stats_window`), in this process.
#[derive(Default)]
pub(crate) struct RouteStats(Mutex<HashMap<ProviderId, VecDeque<CallSample>>>);

/// A provider's recent payment calls summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentCalls {
    pub calls: u32,
    /// Thousandths of the calls that got an answer.
    pub answered_permille: u32,
    /// Median latency, milliseconds.
    pub median_latency_ms: u64,
}

impl RouteStats {
    pub(crate) fn note(&self, id: ProviderId, answered: bool, latency_ms: u64, window: u32) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let samples = all.entry(id).or_default();
        samples.push_back(CallSample {
            answered,
            latency_ms,
        });
        while samples.len() > window.max(1) as usize {
            samples.pop_front();
        }
    }

    pub(crate) fn recent(&self, id: ProviderId) -> RecentCalls {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(samples) = all.get(&id).filter(|s| !s.is_empty()) else {
            return RecentCalls::default();
        };
        let calls = samples.len() as u32;
        let answered = samples.iter().filter(|s| s.answered).count() as u32;
        let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_ms).collect();
        latencies.sort_unstable();
        RecentCalls {
            calls,
            answered_permille: answered * 1000 / calls,
            median_latency_ms: latencies[latencies.len() / 2],
        }
    }
}

/// Whether a route's catalog entry checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogState {
    Listed,
    /// The provider no longer lists it: never used.
    Broken,
    /// Could not be read (provider down, not configured, not allowed).
    Unknown,
}

/// One route with its live state.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub route: Route,
    pub catalog: CatalogState,
    pub configured: bool,
    pub can_pay: bool,
    pub circuit_open: bool,
    pub healthy: bool,
    pub recent: RecentCalls,
    pub fee: Option<Money>,
    pub amount: Option<Money>,
    pub amount_fixed: bool,
    /// 1 for the route tried first; 0 when it cannot pay.
    pub rank: u32,
    /// Why it cannot pay or is unhealthy.
    pub note: String,
}

/// A directory biller with its routes, in the order a payment tries them (routes that cannot
/// pay last).
#[derive(Debug, Clone)]
pub struct BillerView {
    pub biller: DirectoryBiller,
    pub routes: Vec<RouteView>,
}

impl Gateway {
    /// Replaces the directory and its settings (the server does it at start; tests too).
    pub fn set_directory(&self, directory: Directory, settings: DirectorySettings) {
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
        *self
            .directory_settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = settings;
    }

    pub(crate) fn directory(&self) -> Arc<Directory> {
        self.directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn directory_settings(&self) -> DirectorySettings {
        self.directory_settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes one payment call for route health.
    pub(crate) fn note_payment_call(&self, id: ProviderId, answered: bool, latency_ms: u64) {
        let window = self.directory_settings().stats_window;
        self.route_stats.note(id, answered, latency_ms, window);
    }

    /// The directory's billers of `country` and `category` (when not empty), by id.
    pub fn list_directory(&self, country: &str, category: &str) -> Vec<DirectoryBiller> {
        self.directory()
            .billers()
            .filter(|b| country.is_empty() || b.country == country)
            .filter(|b| category.is_empty() || b.category == category)
            .cloned()
            .collect()
    }

    /// One directory biller with live route states, or NOT_FOUND.
    pub async fn get_directory_biller(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<BillerView, GatewayError> {
        let directory = self.directory();
        let biller = directory
            .get(id)
            .ok_or_else(|| GatewayError::not_found(crate::domain::Resource::DirectoryBiller, id))?;
        Ok(self.biller_view(biller).await)
    }

    /// `biller`'s routes with their states, ranked by the routing policy.
    pub async fn biller_view(self: &Arc<Self>, biller: &DirectoryBiller) -> BillerView {
        let settings = self.directory_settings();
        let mut routes = Vec::new();
        for route in &biller.routes {
            routes.push(self.route_view(biller, route, &settings).await);
        }
        let order = |v: &RouteView| {
            (
                !v.can_pay,
                !v.healthy,
                settings.priority(v.route.provider),
                v.fee.map(|f| f.minor_units).unwrap_or(i64::MAX),
            )
        };
        // Stable: equal keys keep the mapping file's order.
        routes.sort_by_key(order);
        let mut rank = 0;
        for v in &mut routes {
            if v.can_pay {
                rank += 1;
                v.rank = rank;
            }
        }
        BillerView {
            biller: biller.clone(),
            routes,
        }
    }

    async fn route_view(
        self: &Arc<Self>,
        biller: &DirectoryBiller,
        route: &Route,
        settings: &DirectorySettings,
    ) -> RouteView {
        let id = route.provider;
        let provider = self.providers.get(&id).cloned();
        let configured = provider.is_some();
        let mut notes = Vec::new();
        let allowed = crate::auth::check_provider(id).is_ok();
        let (catalog, product) = match &provider {
            None => {
                notes.push("provider not configured".to_owned());
                (CatalogState::Unknown, None)
            }
            // The caller may not read that provider's catalog either.
            Some(_) if !allowed => (CatalogState::Unknown, None),
            Some(_) => self.route_catalog(route).await,
        };
        match catalog {
            CatalogState::Broken => notes.push(format!(
                "{} no longer lists {} {}",
                id.proto_name(),
                route.biller_id,
                route.product_id
            )),
            CatalogState::Unknown if configured && allowed => {
                notes.push("catalog could not be read".to_owned())
            }
            _ => {}
        }
        let pays = provider
            .as_ref()
            .is_some_and(|p| p.capabilities().contains(&Capability::CreatePayment));
        if configured && !pays {
            notes.push(format!("{} cannot take payments", id.proto_name()));
        }
        let currency_ok = provider
            .as_ref()
            .is_some_and(|p| p.currencies().contains(&biller.currency));
        if configured && !currency_ok {
            notes.push(format!(
                "{} does not pay in {}",
                id.proto_name(),
                biller.currency.code()
            ));
        }
        if !allowed {
            notes.push("not allowed for this caller".to_owned());
        }
        let circuit_open = provider
            .as_ref()
            .is_some_and(|p| p.accepting_calls().is_err());
        if circuit_open {
            notes.push("circuit open".to_owned());
        }
        let recent = self.route_stats.recent(id);
        let healthy = configured
            && !circuit_open
            && (recent.calls < settings.min_calls_for_health
                || recent.answered_permille >= settings.min_success_permille);
        if configured && !circuit_open && !healthy {
            notes.push(format!(
                "{} of 1000 recent calls answered",
                recent.answered_permille
            ));
        }
        let can_pay =
            configured && pays && currency_ok && allowed && catalog != CatalogState::Broken;
        RouteView {
            route: route.clone(),
            catalog,
            configured,
            can_pay,
            circuit_open,
            healthy,
            recent,
            fee: product.as_ref().and_then(|p| p.fee),
            amount: product.as_ref().and_then(|p| p.amount),
            amount_fixed: product.as_ref().is_some_and(|p| p.amount_fixed),
            rank: 0,
            note: notes.join("; "),
        }
    }

    /// Whether `route`'s product is in its provider's cached catalog (for a provider that
    /// lists no products, whether it lists the biller), with the entry when there is one.
    pub(crate) async fn route_catalog(
        self: &Arc<Self>,
        route: &Route,
    ) -> (CatalogState, Option<Product>) {
        let id = route.provider;
        let Some(provider) = self.providers.get(&id) else {
            return (CatalogState::Unknown, None);
        };
        if provider.product_catalog() == ProductCatalog::Unlisted {
            if !provider.capabilities().contains(&Capability::ListBillers) {
                return (CatalogState::Listed, None);
            }
            return match self.list_billers(id, None).await {
                Ok(billers) if billers.iter().any(|b| b.biller_id == route.biller_id) => {
                    (CatalogState::Listed, None)
                }
                Ok(_) => (CatalogState::Broken, None),
                Err(_) => (CatalogState::Unknown, None),
            };
        }
        match self
            .listed_product(id, &route.biller_id, &route.product_id)
            .await
        {
            Ok(product) => (CatalogState::Listed, product),
            Err(GatewayError::ProductNotFound { .. } | GatewayError::NotFound { .. })
            | Err(GatewayError::Provider {
                source: ProviderError::NotFound { .. },
                ..
            }) => (CatalogState::Broken, None),
            Err(_) => (CatalogState::Unknown, None),
        }
    }

    /// Checks every route against the catalogs the store holds, without asking any provider,
    /// and logs the broken ones (at start). A catalog not cached yet is checked when a
    /// payment or a directory read needs it.
    pub async fn check_directory(self: &Arc<Self>) {
        let directory = self.directory();
        for biller in directory.billers() {
            for route in &biller.routes {
                if self.cached_route_state(route).await == Some(CatalogState::Broken) {
                    tracing::warn!(
                        directory_biller = biller.id,
                        provider = %route.provider,
                        biller_id = route.biller_id,
                        product_id = route.product_id,
                        "directory route broken: the provider no longer lists its product; never used"
                    );
                }
            }
        }
    }

    /// `route`'s catalog state from the store's cached copy alone; `None` when not cached.
    async fn cached_route_state(&self, route: &Route) -> Option<CatalogState> {
        let provider = self.providers.get(&route.provider)?;
        let listed = match provider.product_catalog() {
            ProductCatalog::Unlisted => self
                .stored_catalog::<Biller>(route.provider, "billers", "all")
                .await?
                .iter()
                .any(|b| b.biller_id == route.biller_id),
            ProductCatalog::Whole => self
                .stored_catalog::<Product>(route.provider, "products", "biller:")
                .await?
                .iter()
                .any(|p| p.product_id == route.product_id),
            ProductCatalog::PerBiller | ProductCatalog::PerBillerOrAny => self
                .stored_catalog::<Product>(
                    route.provider,
                    "products",
                    &format!("biller:{}", route.biller_id),
                )
                .await?
                .iter()
                .any(|p| p.product_id == route.product_id),
        };
        Some(if listed {
            CatalogState::Listed
        } else {
            CatalogState::Broken
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_keep_a_window_and_read_the_median() {
        let stats = RouteStats::default();
        for (answered, ms) in [(true, 10), (false, 500), (true, 30), (true, 20)] {
            stats.note(ProviderId::Switch, answered, ms, 3);
        }
        let recent = stats.recent(ProviderId::Switch);
        assert_eq!(recent.calls, 3);
        assert_eq!(recent.answered_permille, 666);
        assert_eq!(recent.median_latency_ms, 30);
        assert_eq!(stats.recent(ProviderId::OnePipe), RecentCalls::default());
    }

    #[test]
    fn an_unknown_priority_provider_is_refused() {
        let settings = DirectorySettings {
            provider_priority: vec!["paypal".into()],
            ..Default::default()
        };
        assert!(settings.load().unwrap_err().contains("paypal"));
        assert!(DirectorySettings::default().load().is_ok());
    }
}
