//! The gRPC server: the billpay services, health (overall "" and each service), reflection
//! v1 and v1alpha, the request-id layer, the reconciler, a store watch that drives the payment
//! service's health, and graceful shutdown (NOT_SERVING first, then drain).

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::transport::{server::TcpIncoming, Server};
use tonic_health::{server::HealthReporter, ServingStatus};

use crate::api::{call_limit::CallLimitLayer, framework::FrameworkStatusLayer, Api};
use crate::auth::AuthLayer;
use crate::config::{Config, ServerConfig};
use crate::gateway::{reconcile::ReconcileStats, registry, Gateway, StoreHealth};
use crate::pb::{
    self, account_service_server::AccountServiceServer,
    catalog_service_server::CatalogServiceServer, customer_service_server::CustomerServiceServer,
    directory_service_server::DirectoryServiceServer,
    operator_service_server::OperatorServiceServer, payment_service_server::PaymentServiceServer,
};
use crate::store::{
    memory::MemoryStore, postgres::PostgresStore, redis::RedisStore, routed::RoutedStore, Store,
};
use crate::telemetry::RequestIdLayer;

/// Fully-qualified names of the billpay services, as health checks name them.
pub const SERVICE_NAMES: [&str; 5] = [
    "billpay.v1.CatalogService",
    "billpay.v1.DirectoryService",
    "billpay.v1.CustomerService",
    "billpay.v1.PaymentService",
    "billpay.v1.AccountService",
];

/// How often the store is pinged to drive the payment service's health.
const STORE_WATCH_EVERY: Duration = Duration::from_secs(1);

/// The PostgreSQL store named by `store.postgres_url`, when it is set.
pub fn postgres_store(
    config: &crate::config::StoreConfig,
) -> Option<Result<PostgresStore, String>> {
    use secrecy::ExposeSecret;
    let url = config.postgres_url.as_ref()?;
    Some(
        PostgresStore::new(
            url.expose_secret(),
            Duration::from_millis(config.command_timeout_ms),
            Duration::from_millis(config.connect_timeout_ms),
            config.postgres_max_connections,
        )
        .map_err(|e| e.to_string()),
    )
}

/// Which backend holds the journal (payments, follow-ups, audit, references, schedules,
/// identity, owners), for messages: `postgres`, `redis`, `redis-cluster` or `memory`.
pub fn store_kind(config: &crate::config::StoreConfig) -> &'static str {
    match (
        &config.postgres_url,
        &config.redis_url,
        &config.redis_cluster_urls,
    ) {
        (Some(_), _, _) => "postgres",
        (None, Some(_), _) => "redis",
        (None, None, Some(_)) => "redis-cluster",
        (None, None, None) => "memory",
    }
}

/// Which backend holds provider tokens, catalog copies and validation leases: the journal's
/// own, except in a mixed deployment (PostgreSQL beside Redis, or `caches_in_memory`).
pub fn cache_kind(config: &crate::config::StoreConfig) -> &'static str {
    match (
        &config.postgres_url,
        &config.redis_url,
        &config.redis_cluster_urls,
    ) {
        (Some(_), Some(_), _) => "redis",
        (Some(_), None, Some(_)) => "redis-cluster",
        (Some(_), None, None) if config.caches_in_memory => "memory",
        _ => store_kind(config),
    }
}

/// Builds the store named by the configuration: PostgreSQL when `postgres_url` is set (mixed
/// with Redis, a Redis Cluster or memory for tokens, catalog copies and leases when one of
/// `redis_url`, `redis_cluster_urls` or `caches_in_memory` is set too), else Redis when
/// `redis_url` is, a Redis Cluster when `redis_cluster_urls` is (never both), else memory.
pub fn build_store(config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, String> {
    let system = match (store_kind(config), cache_kind(config)) {
        ("postgres", "redis" | "redis-cluster") => "postgres+redis",
        (journal, _) => journal,
    };
    Ok(crate::store::traced::wrap(backend_store(config)?, system))
}

/// The store of [`build_store`], before any tracing wrapper.
fn backend_store(config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, String> {
    use secrecy::ExposeSecret;
    let command = Duration::from_millis(config.command_timeout_ms);
    let connect = Duration::from_millis(config.connect_timeout_ms);
    let redis: Option<Arc<dyn Store>> = match (&config.redis_url, &config.redis_cluster_urls) {
        (Some(_), Some(_)) => {
            return Err("store.redis_url (REDIS_URL) and store.redis_cluster_urls \
                        (REDIS_CLUSTER_URLS) are both set: name a single Redis or a cluster, \
                        not both"
                .into())
        }
        (Some(url), None) => Some(Arc::new(
            RedisStore::new(url.expose_secret(), command, connect).map_err(|e| e.to_string())?,
        )),
        (None, Some(seeds)) => Some(Arc::new(
            RedisStore::cluster(seeds.expose_secret(), command, connect)
                .map_err(|e| e.to_string())?,
        )),
        (None, None) => None,
    };
    if config.caches_in_memory && (config.postgres_url.is_none() || redis.is_some()) {
        return Err(
            "store.caches_in_memory is for PostgreSQL without Redis: set store.postgres_url \
                    (DATABASE_URL) and neither store.redis_url nor store.redis_cluster_urls"
                .into(),
        );
    }
    if config.postgres_url.is_some() {
        if config.min_replica_acks > 0 {
            return Err(
                "store.min_replica_acks is for a Redis journal: with PostgreSQL, name \
                        synchronous standbys in its synchronous_standby_names instead (every \
                        commit then waits for them)"
                    .into(),
            );
        }
        let journal: Arc<dyn Store> =
            Arc::new(postgres_store(config).expect("postgres_url is set")?);
        return Ok(match redis {
            Some(cache) => Arc::new(RoutedStore::new(journal, cache)),
            None if config.caches_in_memory => {
                Arc::new(RoutedStore::new(journal, Arc::new(MemoryStore::default())))
            }
            None => journal,
        });
    }
    Ok(redis.unwrap_or_else(|| Arc::new(MemoryStore::default())))
}

/// `[store] accept_loss_window` and `posture_recheck_ms`, checked; an accepted window is
/// logged (warning: what it risks) and exported as `billpay_store_loss_window_accepted`.
fn accept_loss_window(
    config: &crate::config::StoreConfig,
) -> Result<Option<crate::store::posture::LossWindow>, String> {
    use crate::store::posture::LossWindow;
    if config.posture_recheck_ms == 0 || config.posture_recheck_ms > 10_000 {
        return Err(format!(
            "store.posture_recheck_ms must be between 1 and 10000 (got {})",
            config.posture_recheck_ms
        ));
    }
    let Some(name) = config.accept_loss_window.as_deref() else {
        return Ok(None);
    };
    let window = LossWindow::parse(name).ok_or_else(|| {
        let names: Vec<&str> = LossWindow::ALL.iter().map(|w| w.name()).collect();
        format!(
            "store.accept_loss_window = {name:?} names no loss window: use one of {}",
            names.join(", ")
        )
    })?;
    tracing::warn!(
        window = window.name(),
        risk = window.risk(),
        "store.accept_loss_window: payments go on over a store that can lose acknowledged writes"
    );
    crate::metrics::global()
        .store_loss_window_accepted
        .get_or_create(&crate::metrics::WindowLabels {
            window: window.name().to_owned(),
        })
        .set(1);
    Ok(Some(window))
}

/// Builds the gateway from configuration. `sandbox` labels the providers as simulated and
/// allows the in-memory store; outside the sandbox, real providers over the in-memory store are
/// refused unless `store.allow_memory_store` says so (a restart forgets every payment).
pub fn build_gateway(
    config: Config,
    sandbox: bool,
) -> Result<(Arc<Gateway>, ServerConfig), String> {
    config.payments.validate()?;
    crate::telemetry::check(&config.telemetry)?;
    crate::providers::call_time::check(&config.providers, config.payments.in_flight_expiry_ms)?;
    if config.store.min_replica_acks > 0
        && config.store.replica_ack_timeout_ms >= config.store.command_timeout_ms
    {
        return Err("store.replica_ack_timeout_ms must be below store.command_timeout_ms".into());
    }
    let accept_loss_window = accept_loss_window(&config.store)?;
    let store = build_store(&config.store)?;
    let providers = registry::build(config.providers, &store)?;
    let in_memory = store_kind(&config.store) == "memory";
    let (journal_kind, cache_kind) = (store_kind(&config.store), cache_kind(&config.store));
    tracing::info!(
        journal = journal_kind,
        tokens_catalogs_leases = cache_kind,
        "store: payments, follow-ups, audit, references, schedules, identity and owners in \
         {journal_kind}; provider tokens, catalog copies and validation leases in {cache_kind}; \
         rate limits in process memory"
    );
    if in_memory && !sandbox && !providers.is_empty() {
        if !config.store.allow_memory_store {
            return Err(
                "providers are configured but store.redis_url is not set: the in-memory \
                        store forgets every request_id and payment on restart, so a retried \
                        request could pay twice. Set DATABASE_URL (store.postgres_url), \
                        REDIS_URL (store.redis_url) or REDIS_CLUSTER_URLS \
                        (store.redis_cluster_urls), or set store.allow_memory_store = true \
                        for a single process that may forget"
                    .into(),
            );
        }
        tracing::warn!(
            "in-memory store with real providers (store.allow_memory_store): a restart forgets \
             every request_id and payment in flight"
        );
    }
    let authenticator = crate::auth::Authenticator::new(&config.auth)?;
    if authenticator.mode() == crate::auth::AuthMode::None && !sandbox && !providers.is_empty() {
        tracing::warn!(
            "[auth] mode = \"none\" with real providers: every caller that reaches this port \
             may pay, read every payment and use every provider"
        );
    }
    let mut server = config.server;
    check_listener_limits(&server)?;
    if authenticator.mode() == crate::auth::AuthMode::Mtls
        && server
            .tls
            .as_ref()
            .is_none_or(|t| t.client_ca_file.is_none())
    {
        return Err("[auth] mode = \"mtls\" needs [server.tls] with client_ca_file".into());
    }
    server.auth = Some(Arc::new(authenticator));
    let directory = config.directory.load()?;
    if !config.events.nats_url.is_empty() {
        store.keeps_events().map_err(|why| {
            format!("[events] nats_url is set but the store keeps no payment events: {why}")
        })?;
    }
    let gateway = Gateway::new(providers, store, config.payments, config.catalog, sandbox);
    gateway.set_directory(directory, config.directory);
    gateway.set_operator_enabled(config.operator.enabled);
    if !config.events.nats_url.is_empty() {
        gateway.set_event_relay(config.events);
    }
    gateway.set_store_policy(crate::gateway::StorePolicy {
        min_replica_acks: config.store.min_replica_acks,
        replica_ack_timeout: Duration::from_millis(config.store.replica_ack_timeout_ms),
        accept_loss_window,
        posture_recheck: Duration::from_millis(config.store.posture_recheck_ms),
    });
    Ok((gateway, server))
}

/// `[server]`'s listener limits, checked: a zero that would refuse every connection or call is
/// a mistake, not a setting.
fn check_listener_limits(server: &ServerConfig) -> Result<(), String> {
    for (name, value) in [
        (
            "max_concurrent_streams",
            u64::from(server.max_concurrent_streams),
        ),
        ("preface_timeout_ms", server.preface_timeout_ms),
        ("tls_handshake_timeout_ms", server.tls_handshake_timeout_ms),
        (
            "http2_keepalive_timeout_ms",
            server.http2_keepalive_timeout_ms,
        ),
        (
            "http2_max_header_list_size",
            u64::from(server.http2_max_header_list_size),
        ),
    ] {
        if value == 0 {
            return Err(format!("server.{name} must be above 0"));
        }
    }
    Ok(())
}

/// Serves on `listener` until `shutdown` resolves; then health says NOT_SERVING for
/// `shutdown_grace_ms`, and in-flight calls get up to `drain_timeout_ms` to finish.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    server: ServerConfig,
    deadline_margin: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health, health_service) = tonic_health::server::health_reporter();
    set_all(&health, ServingStatus::Serving).await;
    // Ready means the store answers with its identity: no payment service before it does.
    let store_health = gateway.store_health().await;
    export_store_health(store_health);
    if store_health != StoreHealth::Up {
        tracing::warn!(
            ?store_health,
            "store not usable at start: payments NOT_SERVING"
        );
        health
            .set_service_status("billpay.v1.PaymentService", ServingStatus::NotServing)
            .await;
    }

    // Both reflection versions list everything, each other included: grpcurl 1.8.6 and
    // Python's reflection client only speak v1alpha. The operator service is described only
    // while it is enabled at start.
    let operator = gateway.operator_enabled();
    let reflection_v1 = reflection(operator)?.build_v1()?;
    let reflection_v1alpha = reflection(operator)?.build_v1alpha()?;

    if !server.metrics_listen.is_empty() {
        let metrics_listener = TcpListener::bind(&server.metrics_listen).await?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "serving /metrics");
        crate::metrics::serve(metrics_listener);
    }

    let stats = Arc::new(ReconcileStats::default());
    let reconciler = tokio::spawn(gateway.clone().run_reconciler(stats));
    let journal_trim = tokio::spawn(gateway.clone().run_journal_trim());
    let relay = gateway.event_relay().map(|config| {
        let store = gateway.store().clone();
        tokio::spawn(crate::relay::run(
            config.clone(),
            Arc::new(crate::relay::StoreOutbox(store.clone())),
            store,
        ))
    });
    let event_reader = tokio::spawn(gateway.clone().run_event_reader());
    let watch = tokio::spawn(watch_store(gateway.clone(), health.clone(), store_health));
    // The directory's routes against the catalogs: broken ones are logged (and never used).
    let directory_check = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.check_directory().await }
    });

    let payments = gateway.clone();
    let api = Api::new(gateway, deadline_margin);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = Duration::from_millis(server.shutdown_grace_ms);
    let health_for_shutdown = health.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, then draining");
        watch.abort();
        set_all(&health_for_shutdown, ServingStatus::NotServing).await;
        tokio::time::sleep(grace).await;
        let _ = stop_tx.send(());
        let _ = draining_tx.send(());
    });

    tracing::info!(addr = %listener.local_addr()?, "serving billpay.v1");
    let limit = server.max_request_bytes;
    let authenticator = match &server.auth {
        Some(a) => a.clone(),
        None => Arc::new(crate::auth::Authenticator::new(&Default::default())?),
    };
    let ms = Duration::from_millis;
    let nonzero = |v: u64| (v > 0).then(|| ms(v));
    let mut builder = Server::builder()
        .max_concurrent_streams(server.max_concurrent_streams)
        .http2_keepalive_interval(nonzero(server.http2_keepalive_interval_ms))
        .http2_keepalive_timeout(Some(ms(server.http2_keepalive_timeout_ms)))
        .http2_max_header_list_size(server.http2_max_header_list_size);
    if server.max_connection_age_ms > 0 {
        builder = builder
            .max_connection_age(ms(server.max_connection_age_ms))
            .max_connection_age_grace(ms(server.max_connection_age_grace_ms));
    }
    // TLS is accepted by crate::listener, not tonic, so that the HTTP/2 preface after the
    // handshake has a deadline too.
    let tls = match &server.tls {
        Some(tls) => {
            let config = crate::listener::tls_server_config(tls)?;
            tracing::info!(
                mutual = tls.client_ca_file.is_some(),
                "TLS on the gRPC listener"
            );
            Some(config)
        }
        None => None,
    };
    // TCP_NODELAY: without it small HTTP/2 frames wait for the peer's delayed ACK (40 ms
    // p99 on every call, see BENCHMARKS.md). tonic's own nodelay and keepalive settings do not
    // apply to a listener passed in. Then the connection limits (crate::listener).
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(nonzero(server.tcp_keepalive_ms));
    let limits = crate::listener::Limits {
        max_connections: server.max_connections,
        max_connections_per_peer: server.max_connections_per_peer,
        preface_timeout: ms(server.preface_timeout_ms),
        tls_handshake_timeout: ms(server.tls_handshake_timeout_ms),
    };
    let router = builder
        .layer(RequestIdLayer)
        .layer(FrameworkStatusLayer {
            max_request_bytes: limit,
        })
        .layer(AuthLayer {
            authenticator: authenticator.clone(),
        })
        // After auth: a call refused for its credentials takes no place.
        .layer(CallLimitLayer::new(server.max_calls_in_progress))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CatalogServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(CustomerServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(DirectoryServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(PaymentServiceServer::new(api.clone()).max_decoding_message_size(limit))
        // Always routed, so its path is stable for the mesh; answers UNIMPLEMENTED unless
        // `[operator] enabled`.
        .add_service(OperatorServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(AccountServiceServer::new(api).max_decoding_message_size(limit));
    let stop = async {
        let _ = stop_rx.await;
    };
    type Serving =
        std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
    let (serve, accept): (Serving, _) = match tls {
        Some(tls) => {
            let (incoming, accept) = crate::listener::limit_tls(incoming, limits, tls);
            (
                Box::pin(router.serve_with_incoming_shutdown(incoming, stop)),
                accept,
            )
        }
        None => {
            let (incoming, accept) = crate::listener::limit(incoming, limits);
            (
                Box::pin(router.serve_with_incoming_shutdown(incoming, stop)),
                accept,
            )
        }
    };
    let drain = Duration::from_millis(server.drain_timeout_ms);
    let drain_expired = async move {
        if draining_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain).await;
    };
    let result = tokio::select! {
        r = serve => r.map_err(Into::into),
        _ = drain_expired => {
            tracing::warn!("drain timeout: closing the remaining connections");
            Ok(())
        }
    };
    accept.abort();
    reconciler.abort();
    journal_trim.abort();
    directory_check.abort();
    if let Some(relay) = relay {
        relay.abort();
    }
    event_reader.abort();
    payments.finish_payments(drain).await;
    result
}

/// The file that declares `billpay.v1.OperatorService`; no other proto imports it.
const OPERATOR_PROTO: &str = "billpay/v1/operator.proto";

/// Our descriptor set, without the operator file unless `operator` is on: a disabled service is
/// not advertised (nor its messages), though its path still answers UNIMPLEMENTED.
fn billpay_descriptors(
    operator: bool,
) -> Result<prost_types::FileDescriptorSet, prost::DecodeError> {
    use prost::Message;
    let mut set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)?;
    if !operator {
        set.file.retain(|f| f.name() != OPERATOR_PROTO);
    }
    Ok(set)
}

/// Reflection over our protos and every descriptor a client may ask for: google.rpc error
/// details, health, and both reflection versions.
fn reflection(
    operator: bool,
) -> Result<tonic_reflection::server::Builder<'static>, prost::DecodeError> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(billpay_descriptors(operator)?)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET))
}

async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// The payment service is only SERVING while the store answers with its identity: without
/// it there are no idempotency records (or they may have been lost), so no payments. Other
/// services keep serving (uncached).
async fn watch_store(gateway: Arc<Gateway>, health: HealthReporter, mut last: StoreHealth) {
    let mut tick = tokio::time::interval(STORE_WATCH_EVERY);
    loop {
        tick.tick().await;
        let now = gateway.store_health().await;
        export_store_health(now);
        if now != last {
            last = now;
            let status = match now {
                StoreHealth::Up => {
                    tracing::info!("store usable again: payments SERVING");
                    ServingStatus::Serving
                }
                StoreHealth::Unreachable => {
                    tracing::warn!("store unreachable: payments NOT_SERVING");
                    ServingStatus::NotServing
                }
                // The gateway logged the loss (or the refusal) at error level when found.
                StoreHealth::DataLost | StoreHealth::Refused => ServingStatus::NotServing,
            };
            health
                .set_service_status("billpay.v1.PaymentService", status)
                .await;
        }
    }
}

/// Sets `billpay_store_health{state}`: 1 for `now`, 0 for the other states.
fn export_store_health(now: StoreHealth) {
    let gauge = &crate::metrics::global().store_health;
    for state in [
        StoreHealth::Up,
        StoreHealth::Unreachable,
        StoreHealth::DataLost,
        StoreHealth::Refused,
    ] {
        let name = match state {
            StoreHealth::Up => "up",
            StoreHealth::Unreachable => "unreachable",
            StoreHealth::DataLost => "data_lost",
            StoreHealth::Refused => "refused",
        };
        gauge
            .get_or_create(&crate::metrics::StoreHealthLabels {
                state: name.to_owned(),
            })
            .set(i64::from(state == now));
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_provider_config() -> Config {
        let mut config = Config::default();
        config.providers.interswitch = Some(crate::sandbox::interswitch::client_config(
            "http://127.0.0.1:9",
        ));
        config
    }

    #[test]
    fn real_providers_over_the_memory_store_need_an_explicit_choice() {
        let e = build_gateway(real_provider_config(), false)
            .err()
            .expect("refused");
        assert!(e.contains("store.allow_memory_store"), "{e}");
        // The sandbox may forget: it is unaffected.
        assert!(build_gateway(real_provider_config(), true).is_ok());
        let mut allowed = real_provider_config();
        allowed.store.allow_memory_store = true;
        assert!(build_gateway(allowed, false).is_ok());
        let mut redis = real_provider_config();
        redis.store.redis_url = Some("redis://127.0.0.1:9".to_owned().into());
        assert!(build_gateway(redis, false).is_ok());
        let mut cluster = real_provider_config();
        cluster.store.redis_cluster_urls = Some(
            "redis://127.0.0.1:9, redis://127.0.0.1:10"
                .to_owned()
                .into(),
        );
        assert!(build_gateway(cluster, false).is_ok());
        // A single Redis and a cluster at once: refused, as check-config shows.
        let mut both = real_provider_config();
        both.store.redis_url = Some("redis://127.0.0.1:9".to_owned().into());
        both.store.redis_cluster_urls = Some("redis://127.0.0.1:10".to_owned().into());
        let e = build_gateway(both, false).err().expect("refused");
        assert!(e.contains("not both"), "{e}");
        // PostgreSQL alone is a store for real providers; beside Redis (or a cluster, or
        // memory) it keeps the journal and the other holds tokens, catalogs and leases.
        let mut postgres = real_provider_config();
        postgres.store.postgres_url = Some("postgres://u:pw@127.0.0.1:9/db".to_owned().into());
        assert_eq!(cache_kind(&postgres.store), "postgres");
        assert!(build_gateway(postgres, false).is_ok());
        let mut mixed = real_provider_config();
        mixed.store.postgres_url = Some("postgres://u:pw@127.0.0.1:9/db".to_owned().into());
        mixed.store.redis_url = Some("redis://127.0.0.1:9".to_owned().into());
        assert_eq!(
            (store_kind(&mixed.store), cache_kind(&mixed.store)),
            ("postgres", "redis")
        );
        assert!(build_gateway(mixed, false).is_ok());
        let mut mixed_cluster = real_provider_config();
        mixed_cluster.store.postgres_url = Some("postgres://u:pw@127.0.0.1:9/db".to_owned().into());
        mixed_cluster.store.redis_cluster_urls = Some("redis://127.0.0.1:10".to_owned().into());
        assert_eq!(cache_kind(&mixed_cluster.store), "redis-cluster");
        assert!(build_gateway(mixed_cluster, false).is_ok());
        let mut caches_in_memory = real_provider_config();
        caches_in_memory.store.postgres_url =
            Some("postgres://u:pw@127.0.0.1:9/db".to_owned().into());
        caches_in_memory.store.caches_in_memory = true;
        assert_eq!(cache_kind(&caches_in_memory.store), "memory");
        assert!(build_gateway(caches_in_memory, false).is_ok());
        // Memory caches beside a Redis, or without PostgreSQL: refused.
        let mut redis_and_memory = real_provider_config();
        redis_and_memory.store.redis_url = Some("redis://127.0.0.1:9".to_owned().into());
        redis_and_memory.store.caches_in_memory = true;
        let e = build_gateway(redis_and_memory, false)
            .err()
            .expect("refused");
        assert!(e.contains("caches_in_memory"), "{e}");
        let mut acks = real_provider_config();
        acks.store.postgres_url = Some("postgres://u:pw@127.0.0.1:9/db".to_owned().into());
        acks.store.min_replica_acks = 1;
        let e = build_gateway(acks, false).err().expect("refused");
        assert!(e.contains("synchronous_standby_names"), "{e}");
        let mut garbled = real_provider_config();
        garbled.store.postgres_url = Some(
            "postgres://u:s3cret@127.0.0.1:notaport/db"
                .to_owned()
                .into(),
        );
        let e = build_gateway(garbled, false).err().expect("refused");
        assert!(!e.contains("s3cret"), "{e}");
        // No provider, nothing to pay twice.
        assert!(build_gateway(Config::default(), false).is_ok());
    }

    #[test]
    fn listener_limits_of_zero_are_refused_at_start() {
        let mut config = Config::default();
        config.server.preface_timeout_ms = 0;
        let e = build_gateway(config, true).err().expect("refused");
        assert!(e.contains("server.preface_timeout_ms"), "{e}");
        let mut config = Config::default();
        config.server.max_concurrent_streams = 0;
        let e = build_gateway(config, true).err().expect("refused");
        assert!(e.contains("server.max_concurrent_streams"), "{e}");
    }

    #[test]
    fn a_record_ttl_shorter_than_the_schedule_is_refused_at_start() {
        let mut config = real_provider_config();
        config.store.allow_memory_store = true;
        config.payments.record_ttl_ms = 1_000;
        let e = build_gateway(config, false).err().expect("refused");
        assert!(e.contains("record_ttl_ms"), "{e}");
    }
}
