//! Prometheus metrics, served as text at `GET /metrics` on `server.metrics_listen`: per RPC
//! (count by status code, latency), per provider operation (count by outcome, latency), catalog
//! cache results, reconciliation checks, payments handed to an operator and calls refused by a
//! caller's rate limit. One process-wide registry; label values come from fixed sets (no
//! caller-chosen text; caller names come from config), so cardinality is bounded.

use std::sync::OnceLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of an RPC count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

/// Labels of an RPC latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcMethod {
    pub method: String,
}

/// Labels of a provider call count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
    pub operation: String,
    /// `2xx`, `4xx`, `5xx`, `timeout`, `transport` or `unreadable`.
    pub outcome: String,
}

/// Labels of a provider call latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOperation {
    pub provider: String,
    pub operation: String,
}

/// Labels of a catalog cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `fresh`, `stale` or `miss`.
    pub result: String,
}

/// Labels of a payment outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    pub provider: String,
    pub state: String,
}

/// Labels of a per-provider count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderName {
    pub provider: String,
}

/// Labels of a detected store loss: how it was noticed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LossHow {
    pub how: String,
}

/// Labels of a per-caller count (caller names come from config: a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerName {
    pub caller: String,
}

/// Labels of an auth refusal count: `unauthenticated` or `method_not_allowed` (a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: String,
}

/// Labels of the store posture gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PostureLabels {
    /// `always`, `replicas`, `waitaof`, a loss window (`everysec`, `appendfsync-no`,
    /// `snapshot`, `none`, `unverified`), `evicting`, `replica` or `memory`.
    pub posture: String,
    /// `yes`, `opt_in` (`[store] accept_loss_window`), `sandbox` or `no`.
    pub accepted: String,
}

/// Labels of the accepted loss window gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub window: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // Seconds: 1 ms .. ~33 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// Every metric of the process.
pub struct Metrics {
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_seconds: Histograms<RpcMethod>,
    pub provider_calls: Family<ProviderLabels, Counter>,
    pub provider_seconds: Histograms<ProviderOperation>,
    pub catalog_cache: Family<CacheLabels, Counter>,
    pub payment_outcomes: Family<PaymentLabels, Counter>,
    pub reconcile_checks: Counter,
    /// Scheduled status checks that got no answer (they use up no schedule step).
    pub reconcile_unanswered: Counter,
    pub needs_attention: Counter,
    /// Provider answers that contradict a payment's final state.
    pub contradictions: Family<ProviderName, Counter>,
    /// Times the store was found without its identity (data lost).
    pub store_data_lost: Counter,
    /// Acknowledged writes found missing while the identity stayed (a lost tail), by how.
    pub store_losses_detected: Family<LossHow, Counter>,
    /// Journal index entries removed because their payment records expired.
    pub journal_index_trimmed: Counter,
    /// Calls refused by the caller's rate limit.
    pub rate_limited: Family<CallerName, Counter>,
    /// Calls the auth layer refused (no or unknown credentials, a method not allowed), by reason.
    pub auth_refusals: Family<RefusalLabels, Counter>,
    /// Calls answered SERVER_BUSY: `[server] max_calls_in_progress` were in progress.
    pub busy_refusals: Counter,
    /// Connections the listener closed before serving them, by reason.
    pub listener_refused: Family<RefusalLabels, Counter>,
    /// The store posture last read: 1 for the current one.
    pub store_posture: Family<PostureLabels, Gauge>,
    /// Payments (and follow-ups) refused because of the store posture.
    pub store_posture_refusals: Counter,
    /// `[store] accept_loss_window` as configured: 1 for the window accepted.
    pub store_loss_window_accepted: Family<WindowLabels, Gauge>,
    /// Payment events the NATS relay published (stored by JetStream for the first time).
    pub events_relayed: Counter,
    /// Payment events JetStream acknowledged as duplicates (a resend within its window).
    pub events_relay_duplicates: Counter,
    /// Times the NATS relay stopped on an error and started over from its checkpoint.
    pub events_relay_errors: Counter,
    /// Times the NATS relay found the events after its checkpoint gone and went on without them.
    pub events_relay_gaps: Counter,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("billpay");
        let m = Self {
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_buckets),
            provider_calls: Family::default(),
            provider_seconds: Family::new_with_constructor(latency_buckets),
            catalog_cache: Family::default(),
            payment_outcomes: Family::default(),
            reconcile_checks: Counter::default(),
            reconcile_unanswered: Counter::default(),
            needs_attention: Counter::default(),
            contradictions: Family::default(),
            store_data_lost: Counter::default(),
            store_losses_detected: Family::default(),
            journal_index_trimmed: Counter::default(),
            rate_limited: Family::default(),
            auth_refusals: Family::default(),
            busy_refusals: Counter::default(),
            listener_refused: Family::default(),
            store_posture: Family::default(),
            store_posture_refusals: Counter::default(),
            store_loss_window_accepted: Family::default(),
            events_relayed: Counter::default(),
            events_relay_duplicates: Counter::default(),
            events_relay_errors: Counter::default(),
            events_relay_gaps: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            m.rpc_requests.clone(),
        );
        registry.register("rpc_seconds", "gRPC call latency", m.rpc_seconds.clone());
        registry.register(
            "provider_calls",
            "Provider HTTP calls by operation and outcome",
            m.provider_calls.clone(),
        );
        registry.register(
            "provider_seconds",
            "Provider HTTP call latency",
            m.provider_seconds.clone(),
        );
        registry.register(
            "catalog_cache",
            "Catalog cache lookups by result (local, fresh, stale, miss)",
            m.catalog_cache.clone(),
        );
        registry.register(
            "payment_outcomes",
            "Payment states recorded after a provider call or status check",
            m.payment_outcomes.clone(),
        );
        registry.register(
            "reconcile_checks",
            "Status checks made by reconciliation",
            m.reconcile_checks.clone(),
        );
        registry.register(
            "reconcile_unanswered",
            "Reconciliation status checks that got no answer (retried without using a step)",
            m.reconcile_unanswered.clone(),
        );
        registry.register(
            "payments_needs_attention",
            "Payments whose outcome stayed unknown after the whole schedule",
            m.needs_attention.clone(),
        );
        registry.register(
            "payment_contradictions",
            "Provider answers that contradict a payment's final state (the journal keeps it)",
            m.contradictions.clone(),
        );
        registry.register(
            "store_data_lost",
            "Times the store was found without its identity: it lost data; payments stop until `store recover`",
            m.store_data_lost.clone(),
        );
        registry.register(
            "store_losses_detected",
            "Writes the store acknowledged and then lost, noticed by a gateway (a payment record missing or older than its in-flight mark, a reference counter behind one already used); payments stop until `store recover`",
            m.store_losses_detected.clone(),
        );
        registry.register(
            "journal_index_trimmed",
            "Journal index entries removed because their payment records expired",
            m.journal_index_trimmed.clone(),
        );
        registry.register(
            "rate_limited",
            "Calls refused by the caller's rate limit ([auth] rate_per_second, burst), per replica",
            m.rate_limited.clone(),
        );
        registry.register(
            "busy_refusals",
            "Calls answered SERVER_BUSY because [server] max_calls_in_progress calls were in progress",
            m.busy_refusals.clone(),
        );
        registry.register(
            "auth_refusals",
            "Calls refused before any work for their credentials: reason unauthenticated (none, or \
             none that names a caller) or method_not_allowed; logged at most once per second per \
             reason",
            m.auth_refusals.clone(),
        );
        registry.register(
            "listener_refused_connections",
            "Connections closed before serving: reason max_connections, max_connections_per_peer \
             ([server] limits), preface_timeout (no first bytes, or with TLS no HTTP/2 preface \
             after the handshake, within preface_timeout_ms) or tls_handshake_timeout (a TLS \
             handshake not done within tls_handshake_timeout_ms)",
            m.listener_refused.clone(),
        );
        registry.register(
            "store_posture",
            "The store's durability posture as last read (1 = current): accepted yes, opt_in \
             ([store] accept_loss_window), sandbox or no",
            m.store_posture.clone(),
        );
        registry.register(
            "store_posture_refusals",
            "Payments and follow-ups refused because the store's posture can lose acknowledged \
             writes or was not read recently",
            m.store_posture_refusals.clone(),
        );
        registry.register(
            "store_loss_window_accepted",
            "[store] accept_loss_window as configured (1 = the window an operator accepted)",
            m.store_loss_window_accepted.clone(),
        );
        registry.register(
            "events_relayed",
            "Payment events the NATS relay published to JetStream",
            m.events_relayed.clone(),
        );
        registry.register(
            "events_relay_duplicates",
            "Payment events JetStream acknowledged as duplicates of ones already stored",
            m.events_relay_duplicates.clone(),
        );
        registry.register(
            "events_relay_errors",
            "Times the NATS relay stopped on an error and started over from its checkpoint",
            m.events_relay_errors.clone(),
        );
        registry.register(
            "events_relay_gaps",
            "Times the NATS relay found the events after its checkpoint no longer kept \
             (retention or a store loss) and went on without them",
            m.events_relay_gaps.clone(),
        );
        Self { registry, ..m }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                global().render(),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
}
