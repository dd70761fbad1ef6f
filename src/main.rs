//! `billpay-gateway`: `serve` runs the gRPC gateway (from a config file, or `--sandbox` with
//! in-process provider simulators and the in-memory store); `simulate` runs the simulators
//! alone; `check-config` validates a config file; `store init` / `store recover` are the
//! operator steps of a shared store's identity (first run, recovery after data loss), and
//! `store migrate` brings a PostgreSQL store's schema up to date (`store init` does too).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use billpay_gateway::{
    config, domain::ProviderId, sandbox::Simulators, server, store::identity, telemetry,
};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "billpay-gateway",
    version,
    about = "One gRPC contract over five bill-payment providers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file (environment overrides apply either way).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; overrides `server.listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Point every provider at simulators: no credentials, no network. Uses the in-memory
        /// store unless DATABASE_URL, REDIS_URL or REDIS_CLUSTER_URLS is set (a PostgreSQL
        /// schema is brought up to date first).
        #[arg(long)]
        sandbox: bool,
        /// With --sandbox: use simulators already running at this URL (`simulate`) instead of
        /// starting them in-process.
        #[arg(long, requires = "sandbox")]
        sandbox_url: Option<String>,
        /// With --sandbox: make this provider's simulator unreachable (connections refused),
        /// to watch routed payments fail over. A provider config name (`interswitch`,
        /// `onepipe`, `switch`, `intelworld_ip2`, `interintel`); repeatable.
        #[arg(long, requires = "sandbox", value_parser = provider_name)]
        sandbox_outage: Vec<ProviderId>,
        /// Log JSON lines.
        #[arg(long)]
        json_logs: bool,
    },
    /// Run the provider simulators alone (shared by several gateways).
    Simulate {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:50080")]
        listen: String,
        /// Fixed delay added to every provider answer, milliseconds (0: none).
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Load and validate a configuration file, then exit.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Operator steps on the shared store: PostgreSQL (DATABASE_URL or `store.postgres_url`),
    /// Redis (REDIS_URL or `store.redis_url`) or a Redis Cluster (REDIS_CLUSTER_URLS or
    /// `store.redis_cluster_urls`).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// First run of a new store: on PostgreSQL applies the schema migrations first; then
    /// writes its identity (and starts every provider's reference counter at the clock
    /// floor). Does nothing more when the store already has one.
    Init {
        /// TOML configuration file (for `[store]`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// PostgreSQL: applies the schema migrations this binary ships that the database lacks
    /// (each in its own transaction; concurrent runs wait for each other). Run it before
    /// starting gateways of a new version.
    Migrate {
        /// TOML configuration file (for `[store]`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// After the store lost data (payments answer STORE_DATA_LOST): raises every provider's
    /// reference counter above anything used, puts every payment record back in the journal
    /// index and every unfinished one on the reconciliation schedule, then writes a new
    /// identity; payments resume.
    Recover {
        /// TOML configuration file (for `[store]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Raise the counters to at least this value (they are raised to each provider's
        /// reference clock recovery floor anyway, which is above every reference any replica
        /// may have sent: see the README, "Provider references and recovery"). Run with the
        /// gateways' configuration: the clocks follow the configured reference formats.
        #[arg(long)]
        reference_floor: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("billpay-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A provider by its config name, for `--sandbox-outage`.
fn provider_name(name: &str) -> Result<ProviderId, String> {
    ProviderId::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = ProviderId::ALL.iter().map(|p| p.name()).collect();
            format!("unknown provider {name:?}; one of {}", names.join(", "))
        })
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            sandbox,
            sandbox_url,
            sandbox_outage,
            json_logs,
        } => {
            let mut cfg = config::load(config.as_deref())?;
            // Kept to the end: dropping it exports the spans still buffered.
            let span_exporter = telemetry::init(json_logs || cfg.server.json_logs, &cfg.telemetry)?;
            if let Some(listen) = listen {
                cfg.server.listen = listen;
            }
            let mut simulators = None;
            if sandbox {
                // The sandbox prepares a PostgreSQL store itself, as it initialises any store.
                if let Some(store) = server::postgres_store(&cfg.store) {
                    let applied = store?.migrate().await.map_err(|e| e.to_string())?;
                    if !applied.is_empty() {
                        tracing::info!(?applied, "sandbox: PostgreSQL schema migrations applied");
                    }
                }
                let base_url = match sandbox_url {
                    Some(url) => url,
                    None => {
                        let listener = TcpListener::bind("127.0.0.1:0")
                            .await
                            .map_err(|e| format!("sandbox: {e}"))?;
                        let sims = Simulators::start(listener).map_err(|e| e.to_string())?;
                        let url = sims.base_url();
                        tracing::info!(url, "sandbox simulators started");
                        simulators = Some(sims);
                        url
                    }
                };
                cfg.providers = billpay_gateway::sandbox::providers_config(&base_url);
                if !sandbox_outage.is_empty() {
                    // A port that was just free and is closed again: connections are refused.
                    let closed = TcpListener::bind("127.0.0.1:0")
                        .await
                        .and_then(|l| l.local_addr())
                        .map_err(|e| format!("sandbox: {e}"))?;
                    let down = format!("http://{closed}");
                    billpay_gateway::sandbox::cut_off(&mut cfg.providers, &sandbox_outage, &down);
                    let names: Vec<&str> = sandbox_outage.iter().map(|p| p.name()).collect();
                    tracing::warn!(?names, "sandbox outage: these providers are unreachable");
                }
            }
            let margin = Duration::from_millis(cfg.payments.deadline_margin_ms);
            let (gateway, server_cfg) = server::build_gateway(cfg, sandbox)?;
            if sandbox {
                // The sandbox is for trying things: its operator service is on.
                gateway.set_operator_enabled(true);
                // The sandbox initialises its store itself (a no-op when it has an identity).
                let now = billpay_gateway::gateway::Clock::default().now_ms();
                if let Err(e) =
                    identity::init(gateway.store().as_ref(), now, gateway.reference_clocks()).await
                {
                    tracing::warn!(error = %e, "sandbox store not initialised");
                }
            }
            let listener = TcpListener::bind(&server_cfg.listen)
                .await
                .map_err(|e| format!("listen on {}: {e}", server_cfg.listen))?;
            server::run(
                listener,
                gateway,
                server_cfg,
                margin,
                server::shutdown_signal(),
            )
            .await
            .map_err(|e| e.to_string())?;
            drop(simulators);
            if let Some(span_exporter) = span_exporter {
                // A blocking flush: off the async threads, which carry its gRPC channel.
                let _ = tokio::task::spawn_blocking(move || drop(span_exporter)).await;
            }
            tracing::info!("stopped");
            Ok(())
        }
        Command::Simulate { listen, latency_ms } => {
            telemetry::init(false, &Default::default())?;
            let listener = TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("listen on {listen}: {e}"))?;
            let sims = Simulators::start_with_latency(listener, Duration::from_millis(latency_ms))
                .map_err(|e| e.to_string())?;
            tracing::info!(
                url = sims.base_url(),
                latency_ms,
                "simulators running; GET /_sandbox/calls for counts"
            );
            tokio::select! {
                _ = sims.wait() => {},
                _ = server::shutdown_signal() => {},
            }
            Ok(())
        }
        Command::Store { action } => {
            telemetry::init(false, &Default::default())?;
            let config_path = match &action {
                StoreAction::Init { config }
                | StoreAction::Migrate { config }
                | StoreAction::Recover { config, .. } => config,
            };
            let cfg = config::load(config_path.as_deref())?;
            if server::store_kind(&cfg.store) == "memory" {
                return Err("store commands need a shared store: set DATABASE_URL or \
                            store.postgres_url, REDIS_URL or store.redis_url, or \
                            REDIS_CLUSTER_URLS or store.redis_cluster_urls (the memory store \
                            lives inside `serve`)"
                    .into());
            }
            let store = server::build_store(&cfg.store)?;
            if let Some(postgres) = server::postgres_store(&cfg.store) {
                if matches!(
                    action,
                    StoreAction::Init { .. } | StoreAction::Migrate { .. }
                ) {
                    let postgres = postgres?;
                    let applied = postgres.migrate().await.map_err(|e| e.to_string())?;
                    let version = postgres.schema_version().await.map_err(|e| e.to_string())?;
                    for v in &applied {
                        println!("migration {v} applied");
                    }
                    println!("PostgreSQL schema version: {version}");
                }
            } else if matches!(action, StoreAction::Migrate { .. }) {
                println!("a Redis store has no schema: nothing to migrate");
            }
            if matches!(action, StoreAction::Migrate { .. }) {
                return Ok(());
            }
            // The same reference clocks as the gateways: from the configured formats.
            let clocks = match &cfg.providers.interswitch {
                Some(c) => identity::ReferenceClocks::default().with(
                    billpay_gateway::domain::ProviderId::Interswitch,
                    Some(c.reference_capacity()),
                ),
                None => identity::ReferenceClocks::default(),
            };
            let now = billpay_gateway::gateway::Clock::default().now_ms();
            let store_error = |e: billpay_gateway::store::StoreError| e.to_string();
            let seeded = match action {
                StoreAction::Init { .. } => {
                    match identity::init(store.as_ref(), now, &clocks)
                        .await
                        .map_err(store_error)?
                    {
                        Some(seeded) => seeded,
                        None => {
                            println!("store already initialised; nothing changed");
                            return Ok(());
                        }
                    }
                }
                StoreAction::Migrate { .. } => return Ok(()),
                StoreAction::Recover {
                    reference_floor, ..
                } => identity::recover(store.as_ref(), reference_floor, now, &clocks)
                    .await
                    .map_err(store_error)?,
            };
            for (provider, counter) in &seeded.counters {
                println!("reference counter {}: {counter}", provider.name());
            }
            let records = seeded.records;
            println!(
                "payment records: {} found, re-indexed {}, rescheduled {}",
                records.records, records.reindexed, records.rescheduled
            );
            println!("store identity: {}", seeded.identity);
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = config::load(config.as_deref())?;
            let (gateway, _) = server::build_gateway(cfg, false)?;
            let names: Vec<_> = gateway.providers().map(|p| p.id().name()).collect();
            println!("config ok; providers: {}", names.join(", "));
            Ok(())
        }
    }
}
