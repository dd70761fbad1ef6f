//! The Redis store passes the same contract as the memory store, against a real redis-server
//! (started here, or the one at `REDIS_URL`).

mod common;

use std::time::Duration;

use billpay_gateway::store::{contract, redis::RedisStore, Store};
use common::redis::RedisServer;

#[tokio::test]
async fn redis_store_passes_the_store_contract() {
    let own = std::env::var("REDIS_URL").is_err().then(RedisServer::start);
    let url = own
        .as_ref()
        .map(RedisServer::url)
        .unwrap_or_else(|| std::env::var("REDIS_URL").unwrap());
    let store = RedisStore::new(&url, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
    contract::run(&store).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_store_error_not_a_hang() {
    let redis = RedisServer::start();
    let url = redis.url();
    drop(redis);
    let store =
        RedisStore::new(&url, Duration::from_millis(300), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    assert!(store.ping().await.is_err());
    assert!(store.set_if_absent("k", b"v", None).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
