//! `billpay-load`: a bounded, closed-loop load generator for the billpay gateway.
//!
//! What it measures: how many calls per second one gateway answers, and with what latency, on
//! four paths of different cost:
//!
//! * `list-billers`: a catalog read served from the gateway's cache (the store, no provider call);
//! * `list-products`: the same for one biller's products (`ListProducts`, biller 901);
//! * `validate`: `ValidateCustomer`, one signed HTTP call to the provider (simulator) per call;
//! * `pay`: `CreatePayment` with a fresh `request_id` each time: the idempotency claim and the
//!   payment journal in the store, plus a validation and a payment call to the provider;
//! * `pay-same-key`: `CreatePayment` with one `request_id` shared by every call: the idempotent
//!   replay path (one store read, no provider call).
//!
//! * `baseline`: `grpc.health.v1.Health/Check` on the same server: tonic with no work, the floor
//!   every other scenario is compared with.
//!
//! Every run measures `baseline` first on the same server with the same bounds, then each
//! `--scenario` (a comma-separated list), and ends with a table of each scenario's calls/s,
//! p50 and p99 as ratios of the baseline's. With a Redis store (`REDIS_URL`, or `--redis-url`
//! with `--target`) it also reports the Redis commands per call, from `INFO commandstats`
//! before and after each scenario (the gateway's background work, such as reconciliation
//! scans, is included; commands run inside Lua scripts count too, so this is commands, not
//! round trips). With a PostgreSQL store (`DATABASE_URL`, or `--postgres-url` with `--target`)
//! whose database has the `pg_stat_statements` extension, it reports the SQL statements per
//! call: the sum of `calls` over that database's `pg_stat_statements` rows before and after
//! each scenario (`BEGIN` and `COMMIT` count as statements; the counting queries themselves do
//! not; background work is included). Without the extension that line is left out.
//! `--provider-latency-ms N` (in-process) starts the simulators with a
//! fixed N ms per provider answer and reports the gateway's added latency: each percentile
//! minus N times the provider calls per call (counted by the simulators).
//!
//! Why: to know the gateway's cost per call on each path, and to catch errors that only show
//! under concurrency. How: `--concurrency` workers each keep exactly one call outstanding over a
//! single shared tonic `Channel` (one HTTP/2 connection, multiplexed). This is a closed loop:
//! it reports the throughput N waiting callers get and the latency they see, not the latency
//! at a fixed arrival rate (a closed loop slows down with the server, so it cannot show queueing
//! beyond N calls). Every error is counted by gRPC code, never retried or hidden; latency
//! percentiles come from an HDR histogram (3 significant digits) of the successful calls. Runs
//! are bounded by `--requests` and `--max-seconds`, whichever comes first, and every call
//! carries a deadline (`--deadline-ms`), so a run always ends.
//!
//! Open loop: `--rate N` starts calls at a fixed N per second instead (at most `--concurrency`
//! in flight), and `--rate-fraction F` follows each scenario's closed-loop pass with an
//! open-loop pass at F times the calls/s it just reached (`0.5`: latency at half of
//! saturation). An open-loop call's latency is measured from the moment it was due, not from
//! when it started, so a gateway that falls behind shows the queueing (no coordinated
//! omission).
//!
//! Without `--target` it starts the sandbox in this process: the provider simulators and a
//! gateway (configuration from the environment, as `config::load(None)` reads it, so
//! `REDIS_URL` selects the Redis store, `DATABASE_URL` the PostgreSQL one, both together the
//! mixed deployment), both on loopback. The simulators, the gateway and the
//! load generator then share the same CPUs and the same process, so the reported RSS and CPU
//! time cover all three.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use billpay_gateway::{
    config, pb,
    pb::{
        catalog_service_client::CatalogServiceClient,
        customer_service_client::CustomerServiceClient,
        payment_service_client::PaymentServiceClient,
    },
    sandbox::{self, Simulators},
    server,
};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tonic::{transport::Channel, Code, Request, Status};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// Customer of the sandbox test data whose payments always succeed.
const CUSTOMER: &str = "0000000000";
/// Ikeja Electric prepaid token, in the sandbox test data.
const PRODUCT: &str = "90101";
const BILLER: &str = "901";
/// NGN 1,000.00.
const AMOUNT_KOBO: i64 = 100_000;
/// Largest latency the histogram holds, microseconds (one hour); larger values saturate.
const MAX_TRACKED_US: u64 = 3_600_000_000;

#[derive(Parser)]
#[command(
    name = "billpay-load",
    about = "Bounded load generator for the billpay gateway"
)]
struct Args {
    /// Gateway to load, e.g. http://127.0.0.1:50051. Default: start the sandbox (simulators and
    /// a gateway) in this process, on loopback.
    #[arg(long)]
    target: Option<String>,
    /// What to call.
    /// What to call, comma-separated; `baseline` is always measured first.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "list-billers"
    )]
    scenario: Vec<Scenario>,
    /// Concurrent callers, each with one call outstanding.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Total calls to make (the run stops at this count or at --max-seconds, whichever is first).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Longest run, seconds (no call is started after this; calls in flight finish).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_seconds: u64,
    /// Deadline of each call, milliseconds (sent as grpc-timeout).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    deadline_ms: u64,
    /// In-process only: fixed delay of every simulated provider answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    provider_latency_ms: u64,
    /// In-process only: Interswitch's concurrency limit (`limits.max_concurrent_calls`,
    /// default 64). Payments at R/s with L ms of provider time per payment need R * L / 1000
    /// slots; beyond the limit calls queue, which measures the limit, not the gateway.
    #[arg(long)]
    provider_concurrency: Option<u64>,
    /// Open loop: start this many calls per second (at most --concurrency in flight) instead
    /// of keeping --concurrency calls outstanding.
    #[arg(long, conflicts_with = "rate_fraction")]
    rate: Option<f64>,
    /// After each scenario's closed-loop pass, an open-loop pass at this fraction of the
    /// calls/s it reached (0.5 = half of saturation).
    #[arg(long)]
    rate_fraction: Option<f64>,
    /// Redis whose `INFO commandstats` is read around each scenario. Default: `REDIS_URL`
    /// (the in-process gateway's store).
    #[arg(long)]
    redis_url: Option<String>,
    /// PostgreSQL whose `pg_stat_statements` is read around each scenario (when the
    /// extension is installed in that database). Default: `DATABASE_URL`.
    #[arg(long)]
    postgres_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// grpc.health.v1.Health/Check: tonic with no work (the floor).
    Baseline,
    /// CatalogService.ListBillers (Interswitch): a cached catalog read.
    ListBillers,
    /// CatalogService.ListProducts (Interswitch biller 901): a cached catalog read.
    ListProducts,
    /// CustomerService.ValidateCustomer: one provider HTTP call per call.
    Validate,
    /// PaymentService.CreatePayment with a unique request_id per call.
    Pay,
    /// PaymentService.CreatePayment, every call with the same request_id: idempotent replay.
    PaySameKey,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::ListBillers => "list-billers",
            Scenario::ListProducts => "list-products",
            Scenario::Validate => "validate",
            Scenario::Pay => "pay",
            Scenario::PaySameKey => "pay-same-key",
        }
    }
}

/// How calls are started.
#[derive(Clone, Copy)]
enum Pace {
    /// `concurrency` callers, each with one call outstanding.
    Closed { concurrency: u64 },
    /// `per_second` calls started per second, at most `max_in_flight` at once.
    Open { per_second: f64, max_in_flight: u64 },
}

impl Pace {
    fn label(self) -> String {
        match self {
            Pace::Closed { concurrency } => format!("closed loop, {concurrency} callers"),
            Pace::Open {
                per_second,
                max_in_flight,
            } => format!("open loop, {per_second:.1} calls/s, at most {max_in_flight} in flight"),
        }
    }
}

/// Shared by the workers.
struct Plan {
    scenario: Scenario,
    channel: Channel,
    deadline: Duration,
    /// Distinguishes this run's request ids from any earlier run's (a Redis store or a remote
    /// gateway remembers them).
    run_id: String,
    requests: u64,
    max: Duration,
    /// Calls claimed so far (may overshoot `requests` by the number of workers).
    claimed: AtomicU64,
}

/// What one worker saw.
struct Tally {
    latency_us: Histogram<u64>,
    /// By gRPC code (as its number, for ordering): count and the first message seen.
    errors: BTreeMap<i32, (u64, String)>,
    outcomes: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, and values saturate at recording, so this cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (code, (n, first)) in other.errors {
            self.errors.entry(code).or_insert((0, first)).0 += n;
        }
        for (outcome, n) in other.outcomes {
            *self.outcomes.entry(outcome).or_default() += n;
        }
    }

    /// Counts one call: its latency when it succeeded, its code when not.
    fn record(&mut self, result: Result<&'static str, Status>, latency: Duration) {
        match result {
            Ok(outcome) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us.max(1));
                *self.outcomes.entry(outcome).or_default() += 1;
            }
            Err(status) => {
                self.errors
                    .entry(status.code() as i32)
                    .or_insert_with(|| (0, status.message().to_owned()))
                    .0 += 1;
            }
        }
    }

    fn errors(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("billpay-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let rss_at_start = memory_kb("VmRSS");
    let latency = Duration::from_millis(args.provider_latency_ms);
    let (target, sandbox) = match &args.target {
        Some(t) => (t.clone(), None),
        None => {
            let s = InProcess::start(latency, args.provider_concurrency).await?;
            (s.url.clone(), Some(s))
        }
    };
    let redis_url = args
        .redis_url
        .clone()
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()));
    let postgres_url = args
        .postgres_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()));
    let channel = Channel::from_shared(target.clone())
        .map_err(|e| format!("--target {target}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect to {target}: {e}"))?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    let mut scenarios = vec![Scenario::Baseline];
    for s in &args.scenario {
        if !scenarios.contains(s) {
            scenarios.push(*s);
        }
    }
    let first_pace = match args.rate {
        Some(per_second) if per_second > 0.0 => Pace::Open {
            per_second,
            max_in_flight: args.concurrency,
        },
        Some(_) => return Err("--rate must be above 0".into()),
        None => Pace::Closed {
            concurrency: args.concurrency,
        },
    };
    let mut summaries = Vec::new();
    for scenario in scenarios {
        let mut pace = Some(first_pace);
        let mut pass = 0;
        while let Some(this_pace) = pace.take() {
            pass += 1;
            let plan = Arc::new(Plan {
                scenario,
                channel: channel.clone(),
                deadline: Duration::from_millis(args.deadline_ms),
                run_id: format!("{run_id}-{pass}"),
                requests: args.requests,
                max: Duration::from_secs(args.max_seconds),
                claimed: AtomicU64::new(0),
            });

            // One untimed call first: fills the catalog cache, opens the provider connection, and
            // for pay-same-key creates the payment that every timed call then replays.
            call(&plan, u64::MAX).await.map_err(|s| {
                format!(
                    "{}: warm-up call failed: {:?}: {}",
                    scenario.name(),
                    s.code(),
                    s.message()
                )
            })?;

            let provider_calls_before = sandbox.as_ref().map(|s| s.provider_calls());
            let redis_before = match &redis_url {
                Some(url) => Some(redis_commands(url).await?),
                None => None,
            };
            let postgres_before = match &postgres_url {
                Some(url) => postgres_statements(url).await?,
                None => None,
            };
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let total = match this_pace {
                Pace::Closed { concurrency } => {
                    let workers: Vec<_> = (0..concurrency)
                        .map(|_| tokio::spawn(worker(plan.clone(), started)))
                        .collect();
                    let mut total = Tally::new();
                    for w in workers {
                        match w.await {
                            Ok(t) => total.merge(t),
                            Err(e) => return Err(format!("a worker failed: {e}")),
                        }
                    }
                    total
                }
                Pace::Open {
                    per_second,
                    max_in_flight,
                } => open_loop(plan.clone(), started, per_second, max_in_flight).await?,
            };
            let elapsed = started.elapsed();
            let cpu_after = cpu_seconds();
            let redis_after = match &redis_url {
                Some(url) => Some(redis_commands(url).await?),
                None => None,
            };
            let postgres_after = match &postgres_url {
                Some(url) => postgres_statements(url).await?,
                None => None,
            };
            let completed = total.latency_us.len() + total.errors();
            let per_call = |before: u64, after: u64| {
                (completed > 0).then(|| after.saturating_sub(before) as f64 / completed as f64)
            };
            let extra = Extra {
                redis_commands_per_call: redis_before
                    .zip(redis_after)
                    .and_then(|(b, a)| per_call(b, a)),
                postgres_statements_per_call: postgres_before
                    .zip(postgres_after)
                    .and_then(|(b, a)| per_call(b, a)),
                provider_calls_per_call: provider_calls_before
                    .zip(sandbox.as_ref().map(|s| s.provider_calls()))
                    .and_then(|(b, a)| per_call(b, a)),
                provider_latency: latency,
            };

            let summary = report(
                &args,
                scenario,
                this_pace,
                &target,
                sandbox.as_ref(),
                &total,
                elapsed,
                cpu_before.zip(cpu_after),
                rss_at_start,
                &extra,
            );
            if let (Pace::Closed { .. }, Some(fraction)) = (this_pace, args.rate_fraction) {
                let per_second = summary.calls_per_s * fraction;
                if per_second > 0.0 {
                    pace = Some(Pace::Open {
                        per_second,
                        max_in_flight: args.concurrency,
                    });
                }
            }
            summaries.push(summary);
            println!();
        }
    }
    print_ratios(&summaries);
    drop(sandbox);
    Ok(())
}

/// What a scenario measured, for the ratio table.
struct Summary {
    scenario: Scenario,
    /// The scenario's name, with the open-loop rate when it ran in one.
    label: String,
    calls_per_s: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    errors: u64,
    extra_line: String,
}

/// Measurements beside the latency histogram.
struct Extra {
    redis_commands_per_call: Option<f64>,
    /// From `pg_stat_statements`, when the database has it.
    postgres_statements_per_call: Option<f64>,
    provider_calls_per_call: Option<f64>,
    provider_latency: Duration,
}

/// The table of each scenario against the baseline of the same run.
fn print_ratios(summaries: &[Summary]) {
    // The first baseline pass (closed loop) is the floor.
    let Some(base) = summaries.iter().find(|s| s.scenario == Scenario::Baseline) else {
        return;
    };
    let ratio = |v: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", v / b)
        } else {
            "-".to_owned()
        }
    };
    let us = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let lat_ratio = |v: Option<u64>, b: Option<u64>| match (v, b) {
        (Some(v), Some(b)) => ratio(v as f64, b as f64),
        _ => "-".to_owned(),
    };
    println!("ratios to baseline (grpc.health.v1.Health/Check on the same server, same run)");
    println!(
        "{:<22} {:>10} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7}  other",
        "scenario", "calls/s", "ratio", "p50 us", "ratio", "p99 us", "ratio", "errors"
    );
    for s in summaries {
        println!(
            "{:<22} {:>10.1} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7}  {}",
            s.label,
            s.calls_per_s,
            ratio(s.calls_per_s, base.calls_per_s),
            us(s.p50_us),
            lat_ratio(s.p50_us, base.p50_us),
            us(s.p99_us),
            lat_ratio(s.p99_us, base.p99_us),
            s.errors,
            s.extra_line
        );
    }
}

/// Commands Redis has executed so far (sum of `calls` over `INFO commandstats`, without the
/// INFO commands themselves).
async fn redis_commands(url: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis {url}: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis {url}: {e}"))?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("redis {url} INFO commandstats: {e}"))?;
    Ok(info
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter(|line| !line.starts_with("info:"))
        .filter_map(|line| {
            let calls = line.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum())
}

/// SQL statements PostgreSQL has executed so far in the database `url` names (sum of `calls`
/// over its `pg_stat_statements` rows, utility statements such as `BEGIN`/`COMMIT` included,
/// these counting queries excluded), or `None` when the extension is not installed there.
async fn postgres_statements(url: &str) -> Result<Option<u64>, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    let connection = tokio::spawn(connection);
    let installed = client
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .map_err(|e| format!("postgres: {e}"))?
        .get::<_, i64>(0)
        > 0;
    let result = if installed {
        client
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_extension%'",
                &[],
            )
            .await
            .map(|row| Some(row.get::<_, i64>(0) as u64))
            .map_err(|e| format!("postgres pg_stat_statements: {e}"))
    } else {
        Ok(None)
    };
    drop(client);
    let _ = connection.await;
    result
}

/// Starts call `n` at `started + n / per_second` until the request count or the time bound,
/// with at most `max_in_flight` outstanding; each latency counts from when the call was due.
async fn open_loop(
    plan: Arc<Plan>,
    started: Instant,
    per_second: f64,
    max_in_flight: u64,
) -> Result<Tally, String> {
    let slots = Arc::new(tokio::sync::Semaphore::new(
        usize::try_from(max_in_flight).unwrap_or(usize::MAX),
    ));
    let mut calls = tokio::task::JoinSet::new();
    let mut total = Tally::new();
    for n in 0..plan.requests {
        let due = started + Duration::from_secs_f64(n as f64 / per_second);
        if due.duration_since(started) >= plan.max {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let plan = plan.clone();
        calls.spawn(async move {
            let result = call(&plan, n).await;
            drop(slot);
            (result, due.elapsed())
        });
        while let Some(done) = calls.try_join_next() {
            let (result, latency) = done.map_err(|e| format!("a call failed: {e}"))?;
            total.record(result, latency);
        }
    }
    while let Some(done) = calls.join_next().await {
        let (result, latency) = done.map_err(|e| format!("a call failed: {e}"))?;
        total.record(result, latency);
    }
    Ok(total)
}

async fn worker(plan: Arc<Plan>, started: Instant) -> Tally {
    let mut tally = Tally::new();
    loop {
        if started.elapsed() >= plan.max {
            break;
        }
        let n = plan.claimed.fetch_add(1, Ordering::Relaxed);
        if n >= plan.requests {
            break;
        }
        let t = Instant::now();
        let result = call(&plan, n).await;
        tally.record(result, t.elapsed());
    }
    tally
}

/// One call of the scenario; `n` numbers it. Returns what the call answered (for payments,
/// the payment's state).
async fn call(plan: &Plan, n: u64) -> Result<&'static str, Status> {
    let isw = pb::Provider::Interswitch as i32;
    match plan.scenario {
        Scenario::Baseline => {
            let r = HealthClient::new(plan.channel.clone())
                .check(plan.request(HealthCheckRequest {
                    service: String::new(),
                }))
                .await?;
            Ok(if r.get_ref().status == ServingStatus::Serving as i32 {
                "SERVING"
            } else {
                "not SERVING"
            })
        }
        Scenario::ListBillers => {
            let r = CatalogServiceClient::new(plan.channel.clone())
                .list_billers(plan.request(pb::ListBillersRequest {
                    provider: isw,
                    ..Default::default()
                }))
                .await?;
            Ok(if r.get_ref().billers.is_empty() {
                "no billers"
            } else {
                "billers"
            })
        }
        Scenario::ListProducts => {
            let r = CatalogServiceClient::new(plan.channel.clone())
                .list_products(plan.request(pb::ListProductsRequest {
                    provider: isw,
                    biller_id: BILLER.into(),
                    ..Default::default()
                }))
                .await?;
            Ok(if r.get_ref().products.is_empty() {
                "no products"
            } else {
                "products"
            })
        }
        Scenario::Validate => {
            CustomerServiceClient::new(plan.channel.clone())
                .validate_customer(plan.request(pb::ValidateCustomerRequest {
                    provider: isw,
                    product_id: PRODUCT.into(),
                    customer_id: CUSTOMER.into(),
                    ..Default::default()
                }))
                .await?;
            Ok("validated")
        }
        Scenario::Pay | Scenario::PaySameKey => {
            let request_id = if plan.scenario == Scenario::Pay {
                format!("load-{}-{n}", plan.run_id)
            } else {
                format!("load-{}-same", plan.run_id)
            };
            let r = PaymentServiceClient::new(plan.channel.clone())
                .create_payment(plan.request(pb::CreatePaymentRequest {
                    request_id,
                    provider: isw,
                    biller_id: BILLER.into(),
                    product_id: PRODUCT.into(),
                    customer_id: CUSTOMER.into(),
                    amount: Some(pb::Money {
                        currency_code: "NGN".into(),
                        minor_units: AMOUNT_KOBO,
                    }),
                    ..pb::CreatePaymentRequest::default()
                }))
                .await?;
            Ok(r.into_inner()
                .payment
                .and_then(|p| pb::PaymentState::try_from(p.state).ok())
                .map_or("no payment in response", |s| s.as_str_name()))
        }
    }
}

impl Plan {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.set_timeout(self.deadline);
        r
    }
}

/// The sandbox started in this process.
struct InProcess {
    url: String,
    /// Which backend holds the journal and which the caches (`server::store_kind`, `cache_kind`).
    store: String,
    sims: Simulators,
}

impl InProcess {
    async fn start(
        provider_latency: Duration,
        provider_concurrency: Option<u64>,
    ) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("simulators: {e}"))?;
        let sims = Simulators::start_with_latency(listener, provider_latency)
            .map_err(|e| format!("simulators: {e}"))?;
        let mut cfg = config::load(None)?;
        cfg.providers = sandbox::providers_config(&sims.base_url());
        if let (Some(limit), Some(interswitch)) =
            (provider_concurrency, cfg.providers.interswitch.as_mut())
        {
            interswitch.limits.max_concurrent_calls = limit;
        }
        cfg.server.listen = "127.0.0.1:0".into();
        let store = format!(
            "{}, caches: {}",
            server::store_kind(&cfg.store),
            server::cache_kind(&cfg.store)
        );
        let margin = Duration::from_millis(cfg.payments.deadline_margin_ms);
        let (gateway, server_cfg) = server::build_gateway(cfg, true)?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("gateway: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("gateway: {e}"))?;
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = server::run(listener, gateway, server_cfg, margin, never).await {
                eprintln!("billpay-load: in-process gateway stopped: {e}");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            store,
            sims,
        })
    }
}

impl InProcess {
    /// Interswitch calls the simulator has received (every operation the scenarios use).
    fn provider_calls(&self) -> u64 {
        PROVIDER_OPS
            .iter()
            .map(|op| self.sims.calls.get("interswitch", op))
            .sum()
    }
}

/// The simulator's Interswitch operations the scenarios can cause.
const PROVIDER_OPS: [&str; 4] = ["list_billers", "validate_customer", "pay", "query_payment"];

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    scenario: Scenario,
    pace: Pace,
    target: &str,
    sandbox: Option<&InProcess>,
    total: &Tally,
    elapsed: Duration,
    cpu: Option<((f64, f64), (f64, f64))>,
    rss_at_start: Option<u64>,
    extra: &Extra,
) -> Summary {
    let ok = total.latency_us.len();
    let errors = total.errors();
    let completed = ok + errors;
    let secs = elapsed.as_secs_f64();
    let stopped_by = if completed >= args.requests {
        "request count"
    } else {
        "time limit"
    };
    let h = &total.latency_us;

    println!("scenario       {}", scenario.name());
    match sandbox {
        Some(s) => println!(
            "target         in-process sandbox at {target} (store: {}, simulators: {})",
            s.store,
            s.sims.base_url()
        ),
        None => println!("target         {target}"),
    }
    println!("pace           {} (one HTTP/2 connection)", pace.label());
    println!(
        "bounds         {} calls or {} s, deadline {} ms per call; stopped by {stopped_by}",
        args.requests, args.max_seconds, args.deadline_ms
    );
    println!("completed      {completed} (ok {ok}, errors {errors})");
    if total.errors.is_empty() {
        println!("errors         none");
    } else {
        for (code, (n, first)) in &total.errors {
            println!(
                "errors         {:?}: {n} (first message: {first:?})",
                Code::from(*code)
            );
        }
    }
    let outcomes: Vec<String> = total
        .outcomes
        .iter()
        .map(|(o, n)| format!("{o}={n}"))
        .collect();
    println!("answers        {}", outcomes.join(" "));
    println!("elapsed        {secs:.3} s");
    println!(
        "calls/s        {:.1} (ok: {:.1})",
        completed as f64 / secs,
        ok as f64 / secs
    );
    if ok > 0 {
        println!(
            "latency us     p50 {} p90 {} p99 {} max {} (ok calls; mean {:.0})",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.max(),
            h.mean()
        );
    } else {
        println!("latency us     no successful calls");
    }
    let mut extra_line = String::new();
    if let Some(n) = extra.redis_commands_per_call {
        println!(
            "redis          {n:.2} commands per call (INFO commandstats, background work included)"
        );
        extra_line.push_str(&format!("redis cmds/call {n:.2}; "));
    }
    if let Some(n) = extra.postgres_statements_per_call {
        println!(
            "postgres       {n:.2} statements per call (pg_stat_statements, BEGIN/COMMIT and \
             background work included)"
        );
        extra_line.push_str(&format!("pg stmts/call {n:.2}; "));
    }
    if let Some(n) = extra.provider_calls_per_call {
        let provider_us = (n * extra.provider_latency.as_micros() as f64).round() as u64;
        println!(
            "provider       {n:.2} calls per call, {} ms fixed latency each",
            extra.provider_latency.as_millis()
        );
        let calls_provider_per_call = matches!(scenario, Scenario::Pay | Scenario::Validate);
        if ok > 0 && calls_provider_per_call && !extra.provider_latency.is_zero() {
            let added = |q: f64| h.value_at_quantile(q).saturating_sub(provider_us);
            println!(
                "gateway adds   p50 {} p99 {} us (latency minus {provider_us} us of provider time)",
                added(0.50),
                added(0.99)
            );
            extra_line.push_str(&format!(
                "gateway adds p50 {} p99 {} us",
                added(0.50),
                added(0.99)
            ));
        }
    }
    if let Some(s) = sandbox {
        let calls: Vec<String> = PROVIDER_OPS
            .iter()
            .chain(&["rejected_auth"])
            .map(|op| format!("{op}={}", s.sims.calls.get("interswitch", op)))
            .collect();
        println!(
            "simulator      {} (cumulative over the run, warm-ups included)",
            calls.join(" ")
        );
    }
    if let Some(((u0, s0), (u1, s1))) = cpu {
        let (user, system) = (u1 - u0, s1 - s0);
        println!(
            "process cpu    user {user:.2} s, system {system:.2} s = {:.2} cores busy on average",
            (user + system) / secs
        );
    }
    let kb = |v: Option<u64>| v.map_or_else(|| "unknown".to_owned(), |v| format!("{v} kB"));
    println!(
        "process memory VmRSS {} VmHWM {} (VmRSS at start {}){}",
        kb(memory_kb("VmRSS")),
        kb(memory_kb("VmHWM")),
        kb(rss_at_start),
        if sandbox.is_some() {
            "; gateway, simulators and load generator together"
        } else {
            "; load generator only"
        }
    );
    let label = match pace {
        Pace::Closed { .. } => scenario.name().to_owned(),
        Pace::Open { per_second, .. } => format!("{} @{per_second:.0}/s", scenario.name()),
    };
    Summary {
        scenario,
        label,
        calls_per_s: completed as f64 / secs,
        p50_us: (ok > 0).then(|| h.value_at_quantile(0.50)),
        p99_us: (ok > 0).then(|| h.value_at_quantile(0.99)),
        errors,
        extra_line,
    }
}

/// A `kB` line of /proc/self/status (`VmRSS`, `VmHWM`).
fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// User and system CPU time of this process, seconds, from /proc/self/stat (fields 14 and 15,
/// in USER_HZ ticks, 100 per second on Linux).
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so fields 14 and 15 are at indexes 11 and 12.
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}
