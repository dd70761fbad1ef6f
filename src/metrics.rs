//! Prometheus metrics, served as text at `GET /metrics` on `server.metrics_listen`: per RPC
//! (count by status code, errors by ErrorInfo reason, latency), per provider operation (count by
//! outcome, latency), provider circuits and token requests, catalog cache results,
//! reconciliation checks and its overdue backlog, payments handed to an operator, the store's
//! health and posture, and calls refused by a caller's rate limit. One process-wide registry;
//! label values come from fixed sets (no caller-chosen text; caller names come from config,
//! reasons from the contract's ErrorReason), so cardinality is bounded. The alert rules and the
//! dashboard in `deploy/` are built on these names (tests/prometheus.rs checks them).

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

/// Labels of an RPC error count: the ErrorInfo reason every error carries (a fixed set, the
/// contract's ErrorReason names; `NONE` for a status without ErrorInfo).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcErrorLabels {
    pub method: String,
    pub code: String,
    pub reason: String,
}

/// Labels of a provider token request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    /// `refresh` (a refresh token) or `credentials` (the configured credentials).
    pub grant: String,
    /// `ok` or `failed`.
    pub outcome: String,
}

/// Labels of the store health gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreHealthLabels {
    /// `up`, `unreachable`, `data_lost` or `refused` (see `gateway::StoreHealth`).
    pub state: String,
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

/// How late a scheduled status check must be to count in `billpay_reconcile_overdue`, ms.
pub const RECONCILE_OVERDUE_AFTER_MS: i64 = 60_000;
/// Most overdue checks one pass counts (one bounded store read).
pub const RECONCILE_OVERDUE_COUNT_LIMIT: usize = 1_000;

/// Every metric of the process.
pub struct Metrics {
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_seconds: Histograms<RpcMethod>,
    /// Calls answered with an error, by method, code and ErrorInfo reason.
    pub rpc_errors: Family<RpcErrorLabels, Counter>,
    pub provider_calls: Family<ProviderLabels, Counter>,
    pub provider_seconds: Histograms<ProviderOperation>,
    pub catalog_cache: Family<CacheLabels, Counter>,
    /// 1 while a provider's circuit is not closed (open, or half-open after its open time
    /// until a call succeeds); 0 once a call succeeded.
    pub provider_circuit_open: Family<ProviderName, Gauge>,
    /// Times a provider's circuit opened.
    pub provider_circuit_opened: Family<ProviderName, Counter>,
    /// Token requests to providers' token endpoints, by grant and outcome.
    pub token_requests: Family<TokenLabels, Counter>,
    pub payment_outcomes: Family<PaymentLabels, Counter>,
    pub reconcile_checks: Counter,
    /// Scheduled status checks that got no answer (they use up no schedule step).
    pub reconcile_unanswered: Counter,
    /// Scheduled status checks more than [`RECONCILE_OVERDUE_AFTER_MS`] late, as of the last
    /// reconciliation pass (counted up to [`RECONCILE_OVERDUE_COUNT_LIMIT`]).
    pub reconcile_overdue: Gauge,
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
    /// The store's health as the server's store watch last found it: 1 for the current state.
    pub store_health: Family<StoreHealthLabels, Gauge>,
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
    /// Every sample name the registry can render (see [`Metrics::sample_names`]).
    sample_names: Vec<String>,
}

/// The registry being filled, with the sample names each registration adds.
struct Registering {
    registry: Registry,
    sample_names: Vec<String>,
}

impl Registering {
    fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        use prometheus_client::metrics::MetricType;
        let full = format!("billpay_{name}");
        let suffixes: &[&str] = match metric.metric_type() {
            MetricType::Counter => &["_total"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            MetricType::Info => &["_info"],
            _ => &[""],
        };
        self.sample_names
            .extend(suffixes.iter().map(|suffix| format!("{full}{suffix}")));
        self.registry.register(name, help, metric);
    }
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registering {
            registry: Registry::with_prefix("billpay"),
            sample_names: Vec::new(),
        };
        let m = Self {
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_buckets),
            rpc_errors: Family::default(),
            provider_calls: Family::default(),
            provider_seconds: Family::new_with_constructor(latency_buckets),
            catalog_cache: Family::default(),
            provider_circuit_open: Family::default(),
            provider_circuit_opened: Family::default(),
            token_requests: Family::default(),
            payment_outcomes: Family::default(),
            reconcile_checks: Counter::default(),
            reconcile_unanswered: Counter::default(),
            reconcile_overdue: Gauge::default(),
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
            store_health: Family::default(),
            store_posture_refusals: Counter::default(),
            store_loss_window_accepted: Family::default(),
            events_relayed: Counter::default(),
            events_relay_duplicates: Counter::default(),
            events_relay_errors: Counter::default(),
            events_relay_gaps: Counter::default(),
            registry: Registry::default(),
            sample_names: Vec::new(),
        };
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            m.rpc_requests.clone(),
        );
        registry.register("rpc_seconds", "gRPC call latency", m.rpc_seconds.clone());
        registry.register(
            "rpc_errors",
            "gRPC calls answered with an error, by method, status code and ErrorInfo reason \
             (NONE: a status without ErrorInfo)",
            m.rpc_errors.clone(),
        );
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
            "provider_circuit_open",
            "1 while a provider's circuit breaker is not closed (open, or half-open until a call \
             succeeds): its payments are refused before they are recorded",
            m.provider_circuit_open.clone(),
        );
        registry.register(
            "provider_circuit_opened",
            "Times a provider's circuit breaker opened (breaker_failures transport failures in a row)",
            m.provider_circuit_opened.clone(),
        );
        registry.register(
            "token_requests",
            "Token requests to a provider's token endpoint by grant (refresh, credentials) and \
             outcome (ok, failed); a failed refresh falls back to the credentials",
            m.token_requests.clone(),
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
            "reconcile_overdue",
            "Scheduled status checks more than 60 s late as of the last reconciliation pass \
             (counted up to 1000): the reconciler is not keeping up, or not running",
            m.reconcile_overdue.clone(),
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
            "store_health",
            "The store as the payment service's health watch last found it, every second (1 = \
             current): up, unreachable, data_lost (no identity: payments stop until `store \
             recover`) or refused (posture unfit for payments)",
            m.store_health.clone(),
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
        Self {
            registry: registry.registry,
            sample_names: registry.sample_names,
            ..m
        }
    }

    /// Every sample name `/metrics` can carry (`billpay_rpc_requests_total`,
    /// `billpay_rpc_seconds_bucket`, ...), also for families with no sample yet (the text
    /// leaves those out): the names alert rules and dashboards may use.
    pub fn sample_names(&self) -> &[String] {
        &self.sample_names
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
