//! Exactly one provider call per request_id across replicas: 500 concurrent CreatePayment calls
//! with one request_id, spread over two gateway processes that share one redis-server and one
//! standalone simulator (`billpay-gateway simulate`). Every caller ends with the same payment;
//! callers that arrive while the call is in flight get ABORTED (REQUEST_IN_FLIGHT) and retry.
//! `scripts/idempotency-race.sh` runs this test and prints the counts; `tests/redis_cluster.rs`
//! runs the same race on a Redis Cluster.

#[path = "common/process.rs"]
mod process;
#[path = "common/race.rs"]
mod race;
#[path = "common/redis.rs"]
mod redis;

use process::Spawned;
use redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_one_provider_call_across_two_replicas() {
    let redis = RedisServer::start();
    let sim = Spawned::simulator();
    let a = Spawned::gateway(&sim, &redis.url());
    let b = Spawned::gateway(&sim, &redis.url());
    race::one_request_id_one_provider_call(&sim, &a, &b, "race-1").await;
}
