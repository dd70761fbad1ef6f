//! Sandbox: in-process HTTP simulators of the providers, so `serve --sandbox` and the tests need
//! no credentials and no network. Each simulator speaks its provider's documented HTTP, checks
//! its authentication as the real API would, and has documented test data (see README.md,
//! "Sandbox"). `simulate --listen ADDR` runs them standalone so several gateway replicas can
//! share one. `GET /_sandbox/calls` reports how many calls of each operation each simulator has
//! received. `simulate --latency-ms N` delays every provider answer by a fixed N ms, so a load
//! test can subtract the provider's share from the gateway's latency.

pub mod interintel;
pub mod interswitch;
pub mod ip2;
pub mod onepipe;
pub mod switch;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Json, Router,
};
use tokio::net::TcpListener;

use crate::config::ProvidersConfig;

/// Counts of calls per provider and operation.
#[derive(Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<&'static str, BTreeMap<&'static str, u64>>>,
}

impl CallCounter {
    /// Counts one call.
    pub fn count(&self, provider: &'static str, operation: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts
            .entry(provider)
            .or_default()
            .entry(operation)
            .or_default() += 1;
    }

    /// Calls of one operation so far.
    pub fn get(&self, provider: &str, operation: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(provider)
            .and_then(|ops| ops.get(operation))
            .copied()
            .unwrap_or(0)
    }

    fn snapshot(&self) -> BTreeMap<&'static str, BTreeMap<&'static str, u64>> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Running simulators.
pub struct Simulators {
    /// Where they listen.
    pub addr: SocketAddr,
    /// Calls received.
    pub calls: Arc<CallCounter>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulators {
    /// Starts every simulator on `listener`.
    pub fn start(listener: TcpListener) -> std::io::Result<Self> {
        Self::start_with_latency(listener, Duration::ZERO)
    }

    /// Starts every simulator on `listener`; each provider request is answered `latency` later
    /// than it would be (a fixed delay, before the simulator handles it; `/_sandbox/calls` is
    /// not delayed).
    pub fn start_with_latency(listener: TcpListener, latency: Duration) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let calls = Arc::new(CallCounter::default());
        let mut providers = Router::new()
            .nest("/interswitch", interswitch::router(calls.clone()))
            .nest("/onepipe", onepipe::router(calls.clone()))
            .nest("/intelworld_ip2", ip2::router(calls.clone()))
            .nest("/switch", switch::router(calls.clone()))
            .nest("/interintel", interintel::router(calls.clone()));
        if !latency.is_zero() {
            providers = providers.layer(middleware::from_fn(move |req: Request, next: Next| {
                delayed(latency, req, next)
            }));
        }
        let app = providers
            .route("/_sandbox/calls", get(report))
            .with_state(calls.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "sandbox simulators stopped");
            }
        });
        Ok(Self { addr, calls, task })
    }

    /// The base URL of the simulators, for [`providers_config`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the simulators stop (they run until the process ends).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Simulators {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers `req` after a fixed `latency` (the provider's simulated processing time).
async fn delayed(latency: Duration, req: Request, next: Next) -> Response {
    tokio::time::sleep(latency).await;
    next.run(req).await
}

async fn report(
    State(calls): State<Arc<CallCounter>>,
) -> Json<BTreeMap<&'static str, BTreeMap<&'static str, u64>>> {
    Json(calls.snapshot())
}

/// Provider configuration pointing every simulated provider at simulators under `base_url`
/// (`http://host:port`), with the sandbox credentials.
pub fn providers_config(base_url: &str) -> ProvidersConfig {
    let base_url = base_url.trim_end_matches('/');
    ProvidersConfig {
        interswitch: Some(interswitch::client_config(&format!(
            "{base_url}/interswitch"
        ))),
        onepipe: Some(onepipe::client_config(&format!("{base_url}/onepipe"))),
        intelworld_ip2: Some(ip2::client_config(&format!("{base_url}/intelworld_ip2"))),
        switch: Some(switch::client_config(&format!("{base_url}/switch"))),
        interintel: Some(interintel::client_config(&format!("{base_url}/interintel"))),
    }
}

/// Points the providers of `outages` at `unreachable_url` (`serve --sandbox --sandbox-outage`):
/// every call to them fails to connect, as during a provider's outage.
pub fn cut_off(
    config: &mut ProvidersConfig,
    outages: &[crate::domain::ProviderId],
    unreachable_url: &str,
) {
    use crate::domain::ProviderId;
    for id in outages {
        let url = match id {
            ProviderId::Interswitch => config.interswitch.as_mut().map(|c| &mut c.base_url),
            ProviderId::OnePipe => config.onepipe.as_mut().map(|c| &mut c.base_url),
            ProviderId::IntelworldIp2 => config.intelworld_ip2.as_mut().map(|c| &mut c.base_url),
            ProviderId::Switch => config.switch.as_mut().map(|c| &mut c.base_url),
            ProviderId::InterIntel => config.interintel.as_mut().map(|c| &mut c.base_url),
        };
        if let Some(url) = url {
            *url = format!("{}/{}", unreachable_url.trim_end_matches('/'), id.name());
        }
    }
}
