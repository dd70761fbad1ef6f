//! Provider registration: the one place that turns configuration into provider clients. Adding
//! a provider means one arm here (plus its folder and its config section).

use std::{collections::BTreeMap, sync::Arc};

use crate::config::ProvidersConfig;
use crate::domain::{Provider, ProviderId};
use crate::providers::interintel::InterIntel;
use crate::providers::interswitch::Interswitch;
use crate::store::Store;

/// The configured providers by id.
pub type Registry = BTreeMap<ProviderId, Arc<dyn Provider>>;

/// Builds a client for every configured provider. A provider without configuration, or without
/// an adapter yet, is left out and answers PROVIDER_NOT_CONFIGURED. `store` is the shared store,
/// for providers that keep tokens in it.
pub fn build(config: ProvidersConfig, store: &Arc<dyn Store>) -> Result<Registry, String> {
    let ProvidersConfig {
        mut interswitch,
        mut interintel,
    } = config;
    let mut registry = Registry::new();
    for id in ProviderId::ALL {
        let provider: Option<Arc<dyn Provider>> = match id {
            ProviderId::Interswitch => match interswitch.take() {
                Some(c) => {
                    c.validate()?;
                    Some(Arc::new(Interswitch::new(c)))
                }
                None => None,
            },
            ProviderId::InterIntel => match interintel.take() {
                Some(c) => {
                    c.validate()?;
                    Some(Arc::new(InterIntel::new(c, store.clone())))
                }
                None => None,
            },
            // No adapter yet.
            ProviderId::Switch | ProviderId::IntelworldIp2 | ProviderId::OnePipe => None,
        };
        if let Some(p) = provider {
            registry.insert(id, p);
        }
    }
    Ok(registry)
}
