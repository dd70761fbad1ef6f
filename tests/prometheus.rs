//! The monitoring in `deploy/` against the real thing: a real Prometheus (Debian's
//! `prometheus`, installed by scripts/test.sh) scrapes a real sandbox gateway's `/metrics` every
//! second with `deploy/prometheus/alerts.yml` loaded. Payments go through real gRPC (one ends
//! NEEDS_ATTENTION on a short status-check schedule); the series, the rules' health and the one
//! firing alert are read back from Prometheus's HTTP API. Every metric an alert rule or a
//! dashboard panel (`deploy/grafana/billpay.json`) names must be one the gateway exports, and
//! every dashboard query must be one Prometheus accepts.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use billpay_gateway::pb::{self, payment_service_client::PaymentServiceClient};
use common::process::{free_addr, Spawned};
use common::{payment_request, state};
use serde_json::Value;

/// How long Prometheus gets to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(90);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A `prometheus` process with its own configuration and storage in a temporary directory,
/// on a free loopback port; killed and removed on drop.
struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl PrometheusServer {
    /// Scrapes `target` (host:port) and evaluates `rules` every second.
    fn start(target: &str, rules: &Path) -> Self {
        let addr = free_addr();
        let dir = std::env::temp_dir().join(format!(
            "billpay-prometheus-{}-{}",
            addr.replace([':', '.'], "-"),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: billpay\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus must be installed (scripts/test.sh installs Debian's package)");
        Self {
            child,
            dir,
            url: format!("http://{addr}"),
        }
    }

    /// Waits until Prometheus says it is ready.
    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = http
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/<path>`'s `data`, asserting the API answered success.
    async fn api(&self, http: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
        let body: Value = http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The instant vector of `expr`: each result's labels and value.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Vec<(Value, f64)> {
        let data = self.api(http, "query", &[("query", expr)]).await;
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `check` until it returns `Some`, at most [`PATIENCE`].
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never showed {what} within {PATIENCE:?}; its log: {}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory when dropped, also when the test fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Words of PromQL that are not metric names: keywords and aggregation operators (which may
/// take a `by (...)` before their parenthesis).
const KEYWORDS: [&str; 26] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// Metric names a PromQL expression reads: identifiers that are not functions (followed by
/// `(`), keywords, label lists (after `by`, `on`, ...), label matchers (`{...}`), ranges
/// (`[...]`), strings, numbers or Grafana variables (`$...`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_until = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            if chars[*i] == '"' {
                *i += 1;
                while *i < chars.len() && chars[*i] != '"' {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            skip_until(&mut i, '}');
            i += 1;
        } else if c == '[' {
            skip_until(&mut i, ']');
            i += 1;
        } else if c == '$' || c.is_ascii_digit() {
            // A Grafana variable, or a number (1e3, 0x1f, 5m in an offset).
            i += 1;
            while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if KEYWORDS.contains(&lower.as_str()) {
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) && chars.get(next) == Some(&'(')
                {
                    // A label list.
                    i = next;
                    skip_until(&mut i, ')');
                    i += 1;
                }
            } else if chars.get(next) != Some(&'(') {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names `/metrics` can carry: from each `# TYPE` line (a family without samples
/// yet still names itself there), with the suffixes its type gives samples.
fn exported_names(metrics_text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics_text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `expr` string of a Grafana dashboard, at any depth.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_metric_name_parser_skips_functions_labels_and_keywords() {
    let expr = r#"sum by (reason) (rate(billpay_rpc_errors_total{reason=~"A|B", x="{y}"}[5m]))
        / on () group_left sum(rate(billpay_rpc_requests_total[$__rate_interval] offset 5m)) > 0.05
        and on (provider) histogram_quantile(0.95, sum by (le) (rate(billpay_rpc_seconds_bucket[1m])))
        unless max(billpay_store_health) == bool 1e3"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "billpay_rpc_errors_total",
            "billpay_rpc_requests_total",
            "billpay_rpc_seconds_bucket",
            "billpay_store_health"
        ]
    );
    let text = "# HELP billpay_x X.\n# TYPE billpay_x counter\nbillpay_x_total 1\n\
                # TYPE billpay_h histogram\n# TYPE billpay_g gauge\n# EOF\n";
    let exported: Vec<String> = exported_names(text).into_iter().collect();
    assert_eq!(
        exported,
        [
            "billpay_g",
            "billpay_h_bucket",
            "billpay_h_count",
            "billpay_h_sum",
            "billpay_x_total"
        ]
    );
}

/// Payments through a sandbox gateway scraped by a real Prometheus with the shipped rules: the
/// series arrive, every rule evaluates cleanly over real data, the one payment left unknown
/// fires BillpayNeedsAttentionGrowing (and nothing else fires), and the alerts and the
/// dashboard name only metrics the gateway exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_fires_the_needs_attention_alert() {
    let metrics_addr = free_addr();
    let grpc_addr = free_addr();
    let config_dir = std::env::temp_dir().join(format!(
        "billpay-prometheus-gateway-{}-{}",
        grpc_addr.replace([':', '.'], "-"),
        std::process::id()
    ));
    std::fs::create_dir_all(&config_dir).unwrap();
    let _remove_config = RemoveOnDrop(config_dir.clone());
    let config = config_dir.join("gateway.toml");
    // A short status-check schedule: a payment whose outcome stays unknown reaches
    // NEEDS_ATTENTION in under a second instead of hours.
    std::fs::write(
        &config,
        format!(
            "[server]\nmetrics_listen = \"{metrics_addr}\"\n\n[payments]\n\
             reconcile_backoff_ms = [100, 100]\nreconcile_poll_ms = 100\n"
        ),
    )
    .unwrap();
    let _gateway = Spawned::start(
        &[
            "serve",
            "--sandbox",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &grpc_addr,
        ],
        &grpc_addr,
        &[],
    );
    let prometheus =
        PrometheusServer::start(&metrics_addr, &repo_file("deploy/prometheus/alerts.yml"));
    let http = reqwest::Client::new();
    prometheus.ready(&http).await;

    // Every rule loaded.
    let rules = prometheus.api(&http, "rules", &[]).await;
    let rules: Vec<Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    assert_eq!(rules.len(), 10, "{rules:?}");

    // Prometheus has scraped the gateway before any payment: the counters' first samples are
    // 0, so their increase is seen (a series first scraped at 1 shows no increase).
    prometheus
        .wait_for("the first scrape", || async {
            let found = prometheus
                .query(
                    &http,
                    r#"billpay_payments_needs_attention_total{job="billpay"}"#,
                )
                .await;
            (found.len() == 1).then_some(())
        })
        .await;

    let mut payments = PaymentServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let pay = |request_id: &str, customer: &str| {
        let request = payment_request(request_id, "90101", customer, 100_000);
        let mut client = payments.clone();
        async move {
            client
                .create_payment(request)
                .await
                .unwrap()
                .into_inner()
                .payment
                .expect("CreatePayment answers a payment")
        }
    };
    let ok = pay("prometheus-ok", "0000000000").await;
    assert_eq!(state(&ok), pb::PaymentState::Succeeded);
    let declined = pay("prometheus-declined", "2222222222").await;
    assert_eq!(state(&declined), pb::PaymentState::Failed);
    let unknown = pay("prometheus-unknown", "1111111112").await;
    assert_eq!(state(&unknown), pb::PaymentState::Pending);
    // A caller's mistake: counted by its ErrorInfo reason.
    let bad = payments
        .create_payment(payment_request("", "90101", "0000000000", 100_000))
        .await
        .unwrap_err();
    common::assert_error(&bad, tonic::Code::InvalidArgument, "INVALID_REQUEST");

    // The unknown payment ends with an operator.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = payments
            .get_payment(pb::GetPaymentRequest {
                payment_id: unknown.payment_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .expect("GetPayment answers a payment");
        if state(&now) == pb::PaymentState::NeedsAttention {
            break;
        }
        assert!(Instant::now() < deadline, "never NEEDS_ATTENTION: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The series, as Prometheus scraped them.
    let outcomes = prometheus
        .wait_for("the three payment outcomes", || async {
            let found = prometheus
                .query(
                    &http,
                    r#"sum by (state) (billpay_payment_outcomes_total{provider="interswitch"})"#,
                )
                .await;
            let states: BTreeSet<String> = found
                .iter()
                .map(|(m, _)| m["state"].as_str().unwrap().to_owned())
                .collect();
            (states.len() >= 4).then_some(states)
        })
        .await;
    for expected in ["succeeded", "failed", "pending", "needs_attention"] {
        assert!(outcomes.contains(expected), "{outcomes:?}");
    }
    let errors = prometheus
        .wait_for("the INVALID_REQUEST error", || async {
            let found = prometheus
                .query(
                    &http,
                    r#"billpay_rpc_errors_total{method="/billpay.v1.PaymentService/CreatePayment", reason="INVALID_REQUEST"}"#,
                )
                .await;
            (!found.is_empty()).then_some(found)
        })
        .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0["code"], "3");
    assert_eq!(errors[0].1, 1.0);
    let store = prometheus.query(&http, "billpay_store_health == 1").await;
    assert_eq!(store.len(), 1, "{store:?}");
    assert_eq!(store[0].0["state"], "up");

    // The alert fires; nothing else does (the store is up, no circuit opened, no errors but
    // the caller's own).
    let firing = prometheus
        .wait_for("BillpayNeedsAttentionGrowing firing", || async {
            let alerts = prometheus.api(&http, "alerts", &[]).await;
            let firing: Vec<Value> = alerts["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["state"] == "firing")
                .cloned()
                .collect();
            firing
                .iter()
                .any(|a| a["labels"]["alertname"] == "BillpayNeedsAttentionGrowing")
                .then_some(firing)
                .or_else(|| {
                    eprintln!("alerts so far: {alerts}");
                    None
                })
        })
        .await;
    assert_eq!(firing.len(), 1, "only one alert fires: {firing:?}");
    assert_eq!(firing[0]["labels"]["severity"], "ticket");
    assert!(
        firing[0]["annotations"]["runbook"]
            .as_str()
            .unwrap()
            .starts_with("README.md#"),
        "{firing:?}"
    );

    // Every rule evaluated over real series without an error (a bad match, a bad regex), and
    // its runbook is a section of the README.
    let rules = prometheus.api(&http, "rules", &[]).await;
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let sections: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .map(|title| title.trim().to_ascii_lowercase())
        .collect();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
            let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
            let section = runbook.strip_prefix("README.md#").unwrap_or_default();
            assert!(
                sections.contains(section)
                    && section == rule["name"].as_str().unwrap().to_ascii_lowercase(),
                "{} has no runbook section in README.md: {runbook:?}",
                rule["name"]
            );
        }
    }

    // Names: every metric the rules (as Prometheus parsed them) and the dashboard read is one
    // the gateway exports.
    let metrics_text = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A family without samples yet (no caller rate-limited, no circuit opened) is left out of
    // the text: the registry lists every name it can render, and the text must agree with it.
    let exported: BTreeSet<String> = billpay_gateway::metrics::global()
        .sample_names()
        .iter()
        .cloned()
        .collect();
    let rendered = exported_names(&metrics_text);
    assert!(rendered.len() >= 20, "{metrics_text}");
    let unlisted: Vec<&String> = rendered.difference(&exported).collect();
    assert!(
        unlisted.is_empty(),
        "/metrics shows names the registry does not list: {unlisted:?}"
    );
    let mut rule_names = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            rule_names.extend(metric_names(rule["query"].as_str().unwrap()));
        }
    }
    let missing: Vec<&String> = rule_names.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "alert rules read unexported metrics: {missing:?}"
    );

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana/billpay.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut dashboard_names = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "a panel query reads no metric: {expr}");
        dashboard_names.extend(names);
        // Prometheus accepts the query (Grafana's interval variable filled in).
        let filled = expr.replace("$__rate_interval", "1m");
        prometheus.api(&http, "query", &[("query", &filled)]).await;
    }
    let missing: Vec<&String> = dashboard_names.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboard reads unexported metrics: {missing:?}"
    );
    for wanted in [
        "billpay_payment_outcomes_total",
        "billpay_rpc_seconds_bucket",
        "billpay_provider_circuit_open",
        "billpay_store_health",
        "billpay_store_posture",
        "billpay_reconcile_overdue",
    ] {
        assert!(dashboard_names.contains(wanted), "dashboard lacks {wanted}");
    }
}
