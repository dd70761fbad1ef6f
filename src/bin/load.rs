//! `billpay-load`: a bounded, closed-loop load generator for the billpay gateway.
//!
//! What it measures: how many calls per second one gateway answers, and with what latency, on
//! four paths of different cost:
//!
//! * `list-billers`: a catalog read served from the gateway's cache (the store, no provider call);
//! * `validate`: `ValidateCustomer`, one signed HTTP call to the provider (simulator) per call;
//! * `pay`: `CreatePayment` with a fresh `request_id` each time: the idempotency claim and the
//!   payment journal in the store, plus a validation and a payment call to the provider;
//! * `pay-same-key`: `CreatePayment` with one `request_id` shared by every call: the idempotent
//!   replay path (one store read, no provider call).
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
//! Without `--target` it starts the sandbox in this process: the provider simulators and a
//! gateway (configuration from the environment, as `config::load(None)` reads it, so
//! `REDIS_URL` selects the Redis store), both on loopback. The simulators, the gateway and the
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
    #[arg(long, value_enum, default_value_t = Scenario::ListBillers)]
    scenario: Scenario,
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// CatalogService.ListBillers (Interswitch): a cached catalog read.
    ListBillers,
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
            Scenario::ListBillers => "list-billers",
            Scenario::Validate => "validate",
            Scenario::Pay => "pay",
            Scenario::PaySameKey => "pay-same-key",
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
    let (target, sandbox) = match &args.target {
        Some(t) => (t.clone(), None),
        None => {
            let s = InProcess::start().await?;
            (s.url.clone(), Some(s))
        }
    };
    let channel = Channel::from_shared(target.clone())
        .map_err(|e| format!("--target {target}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect to {target}: {e}"))?;

    let plan = Arc::new(Plan {
        scenario: args.scenario,
        channel,
        deadline: Duration::from_millis(args.deadline_ms),
        run_id: uuid::Uuid::new_v4().simple().to_string(),
        requests: args.requests,
        max: Duration::from_secs(args.max_seconds),
        claimed: AtomicU64::new(0),
    });

    // One untimed call first: fills the catalog cache, opens the provider connection, and for
    // pay-same-key creates the payment that every timed call then replays.
    call(&plan, u64::MAX)
        .await
        .map_err(|s| format!("warm-up call failed: {:?}: {}", s.code(), s.message()))?;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(plan.clone(), started)))
        .collect();
    let mut total = Tally::new();
    for w in workers {
        match w.await {
            Ok(t) => total.merge(t),
            Err(e) => return Err(format!("a worker failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds();

    report(
        &args,
        &target,
        sandbox.as_ref(),
        &total,
        elapsed,
        cpu_before.zip(cpu_after),
        rss_at_start,
    );
    drop(sandbox);
    Ok(())
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
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok(outcome) => {
                tally.latency_us.saturating_record(us.max(1));
                *tally.outcomes.entry(outcome).or_default() += 1;
            }
            Err(status) => {
                tally
                    .errors
                    .entry(status.code() as i32)
                    .or_insert_with(|| (0, status.message().to_owned()))
                    .0 += 1;
            }
        }
    }
    tally
}

/// One call of the scenario; `n` numbers it. Returns what the call answered (for payments,
/// the payment's state).
async fn call(plan: &Plan, n: u64) -> Result<&'static str, Status> {
    let isw = pb::Provider::Interswitch as i32;
    match plan.scenario {
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
        Scenario::Validate => {
            CustomerServiceClient::new(plan.channel.clone())
                .validate_customer(plan.request(pb::ValidateCustomerRequest {
                    provider: isw,
                    product_id: PRODUCT.into(),
                    customer_id: CUSTOMER.into(),
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
    store: &'static str,
    sims: Simulators,
}

impl InProcess {
    async fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("simulators: {e}"))?;
        let sims = Simulators::start(listener).map_err(|e| format!("simulators: {e}"))?;
        let mut cfg = config::load(None)?;
        cfg.providers = sandbox::providers_config(&sims.base_url());
        cfg.server.listen = "127.0.0.1:0".into();
        let store = if cfg.store.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        };
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

fn report(
    args: &Args,
    target: &str,
    sandbox: Option<&InProcess>,
    total: &Tally,
    elapsed: Duration,
    cpu: Option<((f64, f64), (f64, f64))>,
    rss_at_start: Option<u64>,
) {
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

    println!("scenario       {}", args.scenario.name());
    match sandbox {
        Some(s) => println!(
            "target         in-process sandbox at {target} (store: {}, simulators: {})",
            s.store,
            s.sims.base_url()
        ),
        None => println!("target         {target}"),
    }
    println!(
        "concurrency    {} (one HTTP/2 connection)",
        args.concurrency
    );
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
    if let Some(s) = sandbox {
        let ops = [
            "list_billers",
            "validate_customer",
            "pay",
            "query_payment",
            "rejected_auth",
        ];
        let calls: Vec<String> = ops
            .iter()
            .map(|op| format!("{op}={}", s.sims.calls.get("interswitch", op)))
            .collect();
        println!("simulator      {} (warm-up included)", calls.join(" "));
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
