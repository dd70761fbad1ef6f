//! Provider registration: the one place that turns configuration into provider clients. Adding
//! a provider means one arm here (plus its folder and its config section).

use std::{collections::BTreeMap, sync::Arc};

use crate::config::ProvidersConfig;
use crate::domain::{Provider, ProviderId};
use crate::providers::{
    interintel::InterIntel, interswitch::Interswitch, ip2::Ip2, onepipe::OnePipe, switch::Switch,
};
use crate::store::Store;

/// The configured providers by id.
pub type Registry = BTreeMap<ProviderId, Arc<dyn Provider>>;

/// Validates a provider's section, when there is one, and builds its client.
fn configured<C, P: Provider>(
    section: Option<C>,
    validate: impl FnOnce(&C) -> Result<(), String>,
    client: impl FnOnce(C) -> P,
) -> Result<Option<Arc<dyn Provider>>, String> {
    let Some(config) = section else {
        return Ok(None);
    };
    validate(&config)?;
    Ok(Some(Arc::new(client(config))))
}

/// Builds a client for every configured provider. A provider without configuration, or without
/// an adapter yet, is left out and answers PROVIDER_NOT_CONFIGURED. `store` is the shared store,
/// for providers that keep tokens in it.
pub fn build(config: ProvidersConfig, store: &Arc<dyn Store>) -> Result<Registry, String> {
    let ProvidersConfig {
        mut interswitch,
        mut onepipe,
        mut intelworld_ip2,
        mut switch,
        mut interintel,
    } = config;
    let mut registry = Registry::new();
    for id in ProviderId::ALL {
        let provider = match id {
            ProviderId::Interswitch => {
                configured(interswitch.take(), |c| c.validate(), Interswitch::new)?
            }
            ProviderId::OnePipe => configured(onepipe.take(), |c| c.validate(), OnePipe::new)?,
            ProviderId::IntelworldIp2 => {
                configured(intelworld_ip2.take(), |c| c.validate(), Ip2::new)?
            }
            ProviderId::Switch => configured(
                switch.take(),
                |c| c.validate(),
                |c| Switch::new(c, store.clone()),
            )?,
            ProviderId::InterIntel => configured(
                interintel.take(),
                |c| c.validate(),
                |c| InterIntel::new(c, store.clone()),
            )?,
        };
        if let Some(p) = provider {
            registry.insert(id, p);
        }
    }
    Ok(registry)
}
