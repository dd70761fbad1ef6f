//! The WatchPayment load run behind BENCHMARKS.md ("Payment events"): ignored by default, run
//! with `cargo test --release --test events_load -- --ignored --nocapture`. Two replicas (two
//! in-process gateways, each with its own Redis connections) over one redis-server and the
//! in-process simulators: 1,000 watchers on replica A, each on a payment of its own; then
//! changes made on replica B (GetPayment settling a PENDING payment), timed from the moment
//! B's call is sent to the moment A's watcher has the new state; the memory one idle watcher
//! costs (VmRSS of this process, client and server both, before and after opening them).
//! Prints numbers; asserts only that every watcher saw its change.

mod common;

use std::{sync::Arc, time::Duration, time::Instant};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{identity, redis::RedisStore, Store},
};
use common::{redis::RedisServer, *};
use futures_util::{stream, StreamExt};
use tonic::transport::Channel;

const WATCHERS: usize = 1_000;
const CHANGES: usize = 200;
/// Streams per connection, under the server's default `max_concurrent_streams` (256).
const STREAMS_PER_CONNECTION: usize = 200;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn replica(sims: &Simulators, redis: &RedisServer) -> TestGateway {
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::new(&redis.url(), Duration::from_secs(2), Duration::from_secs(2)).unwrap(),
    );
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(store.as_ref(), now, &Default::default())
        .await
        .unwrap();
    let settings = PaymentSettings {
        reconcile_poll_ms: 3_600_000,
        ..PaymentSettings::default()
    };
    TestGateway::start_with(sandbox::providers_config(&sims.base_url()), store, settings).await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run: prints numbers for BENCHMARKS.md"]
async fn thousand_watchers_and_cross_replica_latency() {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let a = replica(&sims, &redis).await;
    let b = replica(&sims, &redis).await;

    // One PENDING payment per watcher: pending forever (idle) or until queried (timed).
    let ids: Vec<String> = stream::iter(0..WATCHERS)
        .map(|i| {
            let b = &b;
            async move {
                let customer = if i < CHANGES {
                    "1111111111"
                } else {
                    "1111111112"
                };
                let request = payment_request(&format!("load-{i}"), "90101", customer, 5_000);
                b.pay(request).await.payment_id
            }
        })
        .buffered(8)
        .collect()
        .await;

    let channels: Vec<Channel> = stream::iter(0..WATCHERS.div_ceil(STREAMS_PER_CONNECTION))
        .then(|_| async {
            Channel::from_shared(format!("http://{}", a.addr))
                .unwrap()
                .connect()
                .await
                .unwrap()
        })
        .collect()
        .await;
    let before = rss_kib();
    let opened = Instant::now();
    let mut watchers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let channel = channels[i / STREAMS_PER_CONNECTION].clone();
        let mut client = pb::payment_service_client::PaymentServiceClient::new(channel);
        let mut stream = client
            .watch_payment(pb::WatchPaymentRequest {
                payment_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(state(&first.payment.unwrap()), pb::PaymentState::Pending);
        watchers.push(stream);
    }
    let open_took = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib();
    println!(
        "{WATCHERS} watchers open on replica A in {open_took:?}; hub holds {}; \
         VmRSS {before} KiB -> {after} KiB: {:.1} KiB per idle watcher (client and server)",
        a.gateway.event_hub().watcher_count(),
        (after.saturating_sub(before)) as f64 / WATCHERS as f64
    );

    // One change at a time, made on B, seen on A.
    let mut latencies = Vec::new();
    let mut get_only = Vec::new();
    for (id, watcher) in ids.iter().zip(watchers.iter_mut()).take(CHANGES) {
        let sent = Instant::now();
        let settle = async {
            let p = b.get(id).await;
            (p, sent.elapsed())
        };
        let seen = async {
            let m = watcher.message().await.unwrap().unwrap();
            (m.payment.unwrap(), sent.elapsed())
        };
        let ((settled, get_took), (seen, seen_after)) = tokio::join!(settle, seen);
        assert_eq!(state(&settled), pb::PaymentState::Succeeded);
        assert_eq!(state(&seen), pb::PaymentState::Succeeded);
        latencies.push(seen_after);
        get_only.push(get_took);
    }
    latencies.sort();
    get_only.sort();
    println!(
        "change on B -> watcher on A ({CHANGES} changes, {WATCHERS} watchers open): \
         p50 {:?} p99 {:?} max {:?}; B's GetPayment round trip alone: p50 {:?} p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        percentile(&get_only, 0.5),
        percentile(&get_only, 0.99),
    );
    drop(watchers);
    a.stop().await;
    b.stop().await;
}
