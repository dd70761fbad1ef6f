//! Typed configuration: a TOML file, then environment overrides, then validation.
//!
//! Environment: `BILLPAY__SECTION__KEY=value` sets `[section] key` (nested sections with more
//! `__`), for example `BILLPAY__PROVIDERS__INTERSWITCH__CLIENT_SECRET`. Values are strings,
//! except keys ending in `_ms` (integers) and `true`/`false` (booleans). `REDIS_URL` sets
//! `store.redis_url`; `REDIS_CLUSTER_URLS` sets `store.redis_cluster_urls` (a comma-separated
//! string, since the environment cannot hold a list); `DATABASE_URL` sets `store.postgres_url`. Secrets are held as `SecretString` and never printed.

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use crate::gateway::{CatalogSettings, PaymentSettings};
use crate::providers::interintel::InterIntelConfig;
use crate::providers::interswitch::InterswitchConfig;
use crate::providers::ip2::Ip2Config;
use crate::providers::onepipe::OnePipeConfig;
use crate::providers::switch::SwitchConfig;

/// The whole configuration.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub payments: PaymentSettings,
    #[serde(default)]
    pub catalog: CatalogSettings,
    #[serde(default)]
    pub providers: ProvidersConfig,
    #[serde(default)]
    pub operator: OperatorConfig,
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// `[directory]`: the biller directory and its routing policy.
    #[serde(default)]
    pub directory: crate::gateway::directory::DirectorySettings,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub events: crate::relay::NatsRelayConfig,
}

/// `[telemetry]`: trace export and the access log.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of a trace collector (`http://otel-collector:4317`); empty (the
    /// default): no spans are exported and no exporter runs.
    pub otlp_endpoint: String,
    /// Timeout of one export call to the collector, milliseconds.
    pub otlp_timeout_ms: u64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces started here (calls without a caller's `traceparent`) that are
    /// recorded, from 0 to 1 (a fraction of calls). A call with a `traceparent` follows its
    /// sampled flag.
    pub trace_sample_ratio: f64,
    /// Per-call `rpc finished` lines (target `access`): `off` (the default), `sampled` or
    /// `all`. Audit lines of mutating RPCs, warnings and errors are written whatever this says.
    pub access_log: AccessLog,
    /// With `access_log = "sampled"`: the share of calls that get a line, from 0 to 1 (a
    /// fraction of calls; 0.01 writes every hundredth call).
    pub access_log_sample_rate: f64,
}

/// Which calls write an access log line.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// None: metrics count every call, audit lines record every mutating one.
    #[default]
    Off,
    /// A share of calls (`access_log_sample_rate`).
    Sampled,
    /// Every call.
    All,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            otlp_timeout_ms: 10_000,
            service_name: "billpay-gateway".into(),
            trace_sample_ratio: 1.0,
            access_log: AccessLog::Off,
            access_log_sample_rate: 0.01,
        }
    }
}

/// `[operator]`: the operator service (list, recheck and resolve journal payments).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// Serve `billpay.v1.OperatorService`; off (UNIMPLEMENTED) by default. Restrict its path
    /// (`/billpay.v1.OperatorService/`) to operators in the mesh.
    pub enabled: bool,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: String,
    /// After SIGTERM, how long health says NOT_SERVING while still serving, so the mesh stops
    /// sending traffic, milliseconds.
    pub shutdown_grace_ms: u64,
    /// Then how long in-flight calls may take to finish, milliseconds.
    pub drain_timeout_ms: u64,
    /// Log as JSON lines instead of text.
    pub json_logs: bool,
    /// Address of the Prometheus `GET /metrics` endpoint; empty disables it.
    pub metrics_listen: String,
    /// Largest request message a billpay service decodes, bytes (after decompression).
    /// Larger ones answer RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE before any handler runs.
    pub max_request_bytes: usize,
    /// `[server.tls]`: TLS on the gRPC listener; with `client_ca_file`, mutual TLS.
    pub tls: Option<TlsConfig>,
    /// HTTP/2 streams (calls) a client may have open at once on one connection, advertised as
    /// SETTINGS_MAX_CONCURRENT_STREAMS; streams.
    pub max_concurrent_streams: u32,
    /// Open connections in total; more are closed at once (0: unlimited); connections.
    pub max_connections: usize,
    /// `billpay.v1` calls in progress at once over all connections; more answer
    /// RESOURCE_EXHAUSTED (SERVER_BUSY) at once (0: unlimited); calls. Health and reflection
    /// are not counted. This bounds memory: a call holds its state until its request arrives.
    pub max_calls_in_progress: usize,
    /// Open connections from one peer IP address; more are closed at once (0: unlimited).
    /// Behind a sidecar every connection comes from its address; connections.
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first 24 bytes (the HTTP/2 preface; with
    /// TLS the start of its ClientHello) before it is closed, milliseconds. With TLS, also how
    /// long it may take to send the HTTP/2 preface once the handshake is done.
    pub preface_timeout_ms: u64,
    /// With `[server.tls]`: how long the TLS handshake may take once the connection sent its
    /// first bytes, milliseconds; a stalled handshake is closed after it.
    pub tls_handshake_timeout_ms: u64,
    /// Interval of HTTP/2 PING frames on a connection, milliseconds (0: none).
    pub http2_keepalive_interval_ms: u64,
    /// How long a PING may go unanswered before the connection is closed, milliseconds.
    pub http2_keepalive_timeout_ms: u64,
    /// TCP keepalive idle time before probes, milliseconds (0: off).
    pub tcp_keepalive_ms: u64,
    /// Age after which a connection is told to go away (GOAWAY; clients reconnect), which also
    /// ends idle connections, milliseconds (0: no limit).
    pub max_connection_age_ms: u64,
    /// After that GOAWAY, how long its calls may still run before it is closed, milliseconds.
    pub max_connection_age_grace_ms: u64,
    /// Largest header block (all metadata of one call) accepted, bytes.
    pub http2_max_header_list_size: u32,
    /// Who may call (from `[auth]`, built at start); `None` is mode `none`.
    #[serde(skip)]
    pub auth: Option<std::sync::Arc<crate::auth::Authenticator>>,
}

/// Default request size limit: requests are a few hundred bytes; 1 MiB leaves room for
/// metadata maps and inputs without letting a caller make the gateway buffer megabytes.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".into(),
            shutdown_grace_ms: 2_000,
            drain_timeout_ms: 25_000,
            json_logs: false,
            metrics_listen: String::new(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            tls: None,
            max_concurrent_streams: 256,
            max_connections: 4_096,
            max_calls_in_progress: 4_096,
            max_connections_per_peer: 1_024,
            preface_timeout_ms: 10_000,
            tls_handshake_timeout_ms: 10_000,
            http2_keepalive_interval_ms: 60_000,
            http2_keepalive_timeout_ms: 20_000,
            tcp_keepalive_ms: 60_000,
            max_connection_age_ms: 0,
            max_connection_age_grace_ms: 30_000,
            http2_max_header_list_size: 65_536,
            auth: None,
        }
    }
}

/// `[server.tls]`: PEM files read at start.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain.
    pub cert_file: String,
    /// The server's private key.
    pub key_file: String,
    /// CA whose certificates clients must present (mutual TLS); unset: no client certificate
    /// is asked for. `[auth] mode = "mtls"` needs it.
    pub client_ca_file: Option<String>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Redis URL (`redis://host:port/db`); unset means the in-memory store. May carry a
    /// password, so it is a secret.
    pub redis_url: Option<SecretString>,
    /// A Redis Cluster instead: some of its nodes' URLs, comma-separated
    /// (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`); the client discovers the rest. Exclusive
    /// with `redis_url`. May carry a password, so it is a secret.
    pub redis_cluster_urls: Option<SecretString>,
    /// PostgreSQL (`postgres://user:password@host:5432/billpay`, env `DATABASE_URL`; schema
    /// from `billpay-gateway store init` / `store migrate`): alone, the whole store in
    /// PostgreSQL; beside `redis_url` or `redis_cluster_urls`, a mixed deployment: the journal
    /// (payments, follow-ups, audit, references, schedules, identity, owners) in PostgreSQL,
    /// provider tokens, catalog copies and validation leases in Redis (see
    /// `store::routed`). May carry a password, so it is a secret.
    pub postgres_url: Option<SecretString>,
    /// With `postgres_url` and no Redis: keep provider tokens, catalog copies and validation
    /// leases in this process's memory instead of PostgreSQL (one fewer database round trip
    /// for each; every replica then fetches its own tokens and validates on its own).
    pub caches_in_memory: bool,
    /// Connections each gateway process keeps to PostgreSQL at most (its pool size).
    pub postgres_max_connections: usize,
    /// Timeout of one Redis command or PostgreSQL statement, milliseconds (PostgreSQL also
    /// gets it as `statement_timeout`).
    pub command_timeout_ms: u64,
    /// Timeout of a Redis or PostgreSQL (re)connection attempt, milliseconds.
    pub connect_timeout_ms: u64,
    /// Allow the in-memory store with real providers (no `redis_url`). It forgets every
    /// `request_id` and payment on restart, so a retried request could pay again: `serve`
    /// refuses it unless this is `true`. `--sandbox` always may use it.
    pub allow_memory_store: bool,
    /// Kept so that older configuration files still load; no effect any more: every store
    /// that can lose acknowledged writes (no persistence among them) is refused for payments
    /// with real providers unless `accept_loss_window` names its window.
    pub require_persistence: bool,
    /// The one loss window an operator accepts for payments with real providers, by name:
    /// `everysec` (appendfsync everysec without WAITAOF: a host crash loses about the last
    /// second), `appendfsync-no`, `snapshot` (RDB only), `none` (no persistence) or
    /// `unverified` (CONFIG disabled or renamed). Unset (the default): every such store is
    /// refused (STORE_POSTURE_REFUSED). Logged at start and exported as
    /// `billpay_store_loss_window_accepted`. Env: `BILLPAY__STORE__ACCEPT_LOSS_WINDOW`.
    pub accept_loss_window: Option<String>,
    /// How often the store's posture is read again, milliseconds (at most 10,000): no payment
    /// is sent while the last successful read is older.
    pub posture_recheck_ms: u64,
    /// Replicas that must acknowledge a payment's claim and in-flight writes (Redis `WAIT`)
    /// before the provider is called; 0 (the default) does not wait. A write not acknowledged
    /// in time answers STORE_UNAVAILABLE and nothing is sent.
    pub min_replica_acks: u32,
    /// How long to wait for those acknowledgements, milliseconds; below `command_timeout_ms`.
    pub replica_ack_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_cluster_urls: None,
            postgres_url: None,
            caches_in_memory: false,
            postgres_max_connections: crate::store::postgres::DEFAULT_MAX_CONNECTIONS,
            command_timeout_ms: 1_000,
            connect_timeout_ms: 1_000,
            allow_memory_store: false,
            require_persistence: false,
            accept_loss_window: None,
            posture_recheck_ms: 10_000,
            min_replica_acks: 0,
            replica_ack_timeout_ms: 500,
        }
    }
}

/// `[providers.*]`: one optional section per provider; a missing section leaves it out.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub interswitch: Option<InterswitchConfig>,
    pub onepipe: Option<OnePipeConfig>,
    pub intelworld_ip2: Option<Ip2Config>,
    pub switch: Option<SwitchConfig>,
    pub interintel: Option<InterIntelConfig>,
}

/// Reads and parses configuration from an optional file and the environment.
pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| describe(&e, &text))?;
    apply_env(&mut table, std::env::vars());
    table
        .try_into()
        .map_err(|e: toml::de::Error| describe(&e, ""))
}

/// A configuration error without the offending text: the line may hold a secret.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let line = e
        .span()
        .filter(|_| !text.is_empty())
        .map(|s| {
            format!(
                " at line {}",
                text[..s.start.min(text.len())].lines().count().max(1)
            )
        })
        .unwrap_or_default();
    format!("config{line}: {}", e.message())
}

/// Applies `BILLPAY__A__B=value`, `REDIS_URL`, `REDIS_CLUSTER_URLS` and `DATABASE_URL`
/// overrides to a parsed TOML table.
pub fn apply_env(table: &mut toml::Table, vars: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in vars {
        let shorthand = match name.as_str() {
            "REDIS_URL" => Some("redis_url"),
            "REDIS_CLUSTER_URLS" => Some("redis_cluster_urls"),
            "DATABASE_URL" => Some("postgres_url"),
            _ => None,
        };
        let path: Vec<String> = if let Some(key) = shorthand {
            vec!["store".into(), key.into()]
        } else if let Some(rest) = name.strip_prefix("BILLPAY__") {
            rest.split("__").map(|s| s.to_ascii_lowercase()).collect()
        } else {
            continue;
        };
        if value.is_empty() && shorthand.is_some() {
            continue;
        }
        let (leaf, sections) = path.split_last().expect("at least one segment");
        let mut node = &mut *table;
        for section in sections {
            node = match node
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                other => {
                    *other = toml::Value::Table(toml::Table::new());
                    other.as_table_mut().expect("just made a table")
                }
            };
        }
        node.insert(leaf.clone(), env_value(leaf, value));
    }
}

/// Settings that are numbers without a unit suffix (those ending in `_ms` are numbers too).
/// Any other value stays text: a PIN or a terminal id made of digits is still a string.
const NUMERIC_KEYS: &[&str] = &[
    "local_entries",
    "stats_window",
    "min_calls_for_health",
    "min_success_permille",
    "nats_batch",
    "min_replica_acks",
    "postgres_max_connections",
    "max_concurrent_calls",
    "breaker_failures",
    "request_reference_length",
    "page_size",
    "max_pages",
    "max_request_bytes",
    "max_concurrent_streams",
    "max_connections",
    "max_calls_in_progress",
    "max_connections_per_peer",
    "http2_max_header_list_size",
    "rate_per_second",
    "burst",
    "trace_sample_ratio",
    "access_log_sample_rate",
];

fn env_value(key: &str, value: String) -> toml::Value {
    if key.ends_with("_ms") || NUMERIC_KEYS.contains(&key) {
        if let Ok(n) = value.parse::<i64>() {
            return toml::Value::Integer(n);
        }
        if let Ok(x) = value.parse::<f64>() {
            return toml::Value::Float(x);
        }
    }
    match value.as_str() {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let mut table: toml::Table = toml::from_str(
            r#"
            [server]
            listen = "127.0.0.1:1"
            [providers.interswitch]
            base_url = "https://sandbox.interswitchng.com"
            client_id = "id"
            client_secret = "from-file"
            terminal_id = "3DMO0001"
            request_reference_prefix = "1456"
            "#,
        )
        .unwrap();
        apply_env(
            &mut table,
            [
                (
                    "BILLPAY__PROVIDERS__INTERSWITCH__CLIENT_SECRET".into(),
                    "from-env".into(),
                ),
                (
                    "BILLPAY__PROVIDERS__INTERSWITCH__TIMEOUT_MS".into(),
                    "1500".into(),
                ),
                ("BILLPAY__SERVER__JSON_LOGS".into(), "true".into()),
                ("BILLPAY__AUTH__RATE_PER_SECOND".into(), "2.5".into()),
                ("BILLPAY__AUTH__BURST".into(), "7".into()),
                (
                    "BILLPAY__PROVIDERS__INTERSWITCH__LIMITS__MAX_CONCURRENT_CALLS".into(),
                    "128".into(),
                ),
                (
                    "BILLPAY__PROVIDERS__INTERSWITCH__TERMINAL_ID".into(),
                    "12345678".into(),
                ),
                ("REDIS_URL".into(), "redis://127.0.0.1:6399".into()),
                (
                    "REDIS_CLUSTER_URLS".into(),
                    "redis://127.0.0.1:7000,redis://127.0.0.1:7001".into(),
                ),
                (
                    "DATABASE_URL".into(),
                    "postgres://billpay:pw@127.0.0.1:5432/billpay".into(),
                ),
                (
                    "BILLPAY__STORE__POSTGRES_MAX_CONNECTIONS".into(),
                    "4".into(),
                ),
                ("UNRELATED".into(), "x".into()),
            ],
        );
        let config: Config = table.try_into().unwrap();
        let isw = config.providers.interswitch.unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(isw.client_secret.expose_secret(), "from-env");
        assert_eq!(isw.timeout_ms, 1500);
        // Numbers where the setting is a number; digits stay text where it is text.
        assert_eq!(config.auth.rate_per_second, 2.5);
        assert_eq!(config.auth.burst, Some(7));
        assert_eq!(isw.terminal_id, "12345678");
        assert_eq!(isw.limits.max_concurrent_calls, 128);
        assert!(config.server.json_logs);
        assert_eq!(config.server.listen, "127.0.0.1:1");
        assert!(config.store.redis_url.is_some());
        assert_eq!(
            config
                .store
                .redis_cluster_urls
                .as_ref()
                .map(|u| u.expose_secret().to_owned())
                .as_deref(),
            Some("redis://127.0.0.1:7000,redis://127.0.0.1:7001")
        );
        assert_eq!(
            config
                .store
                .postgres_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned())
                .as_deref(),
            Some("postgres://billpay:pw@127.0.0.1:5432/billpay")
        );
        assert_eq!(config.store.postgres_max_connections, 4);
        // Debug output never shows the secret.
        assert!(!format!("{isw:?}").contains("from-env"));
        assert!(!format!("{:?}", config.store).contains(":pw@"));
    }

    #[test]
    fn a_config_error_does_not_quote_the_secret() {
        let text = "[providers.interswitch]\nclient_secret = \"s3cr\\qet\"\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let message = describe(&e, text);
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("s3cr"), "{message}");
    }

    #[test]
    fn rate_limits_parse_as_integers_or_fractions() {
        let text = "[auth]\nrate_per_second = 0.5\nburst = 10\n\
                    [[auth.callers]]\nname = \"checkout\"\nrate_per_second = 50\n";
        let config: Config = toml::from_str::<toml::Table>(text)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(config.auth.rate_per_second, 0.5);
        assert_eq!(config.auth.burst, Some(10));
        assert_eq!(config.auth.callers[0].rate_per_second, Some(50.0));
        assert_eq!(config.auth.callers[0].burst, None);
    }

    #[test]
    fn telemetry_reads_its_section_and_the_environment() {
        let mut table: toml::Table = toml::from_str(
            "[telemetry]\notlp_endpoint = \"http://collector:4317\"\naccess_log = \"sampled\"\n",
        )
        .unwrap();
        apply_env(
            &mut table,
            [
                (
                    "BILLPAY__TELEMETRY__ACCESS_LOG_SAMPLE_RATE".into(),
                    "0.05".into(),
                ),
                ("BILLPAY__TELEMETRY__TRACE_SAMPLE_RATIO".into(), "1".into()),
            ],
        );
        let config: Config = table.try_into().unwrap();
        assert_eq!(config.telemetry.otlp_endpoint, "http://collector:4317");
        assert_eq!(config.telemetry.access_log, AccessLog::Sampled);
        assert_eq!(config.telemetry.access_log_sample_rate, 0.05);
        assert_eq!(config.telemetry.trace_sample_ratio, 1.0);
        // Off unless configured.
        let config = Config::default();
        assert!(config.telemetry.otlp_endpoint.is_empty());
        assert_eq!(config.telemetry.access_log, AccessLog::Off);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let table: toml::Table = toml::from_str("[server]\nlisten_addr = \"x\"").unwrap();
        assert!(table.try_into::<Config>().is_err());
    }
}
