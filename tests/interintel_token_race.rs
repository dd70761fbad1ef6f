//! One OAuth2 token request per credential across replicas: 1,000 concurrent cold calls
//! (GetBalance, InterIntel `biller-float`) spread over two gateway processes that share one
//! redis-server and one standalone simulator (`billpay-gateway simulate`). The simulator counts
//! token requests; exactly one is made, and every call is answered with the token the winner
//! stored. `scripts/token-race.sh` runs this test and prints the counts.

#[path = "common/process.rs"]
mod process;
#[path = "common/redis.rs"]
mod redis;

use billpay_gateway::pb::{self, account_service_client::AccountServiceClient};
use process::Spawned;
use redis::RedisServer;
use tonic::transport::Channel;

const CALLERS: usize = 1_000;

async fn client(addr: &str) -> AccountServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AccountServiceClient::new(channel)
}

async fn sim_calls(sim: &Spawned) -> serde_json::Value {
    reqwest::get(format!("http://{}/_sandbox/calls", sim.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_calls_over_two_replicas_make_one_token_request() {
    let redis = RedisServer::start();
    let sim = Spawned::simulator();
    let a = Spawned::gateway(&sim, &redis.url());
    let b = Spawned::gateway(&sim, &redis.url());
    let clients = [client(&a.addr).await, client(&b.addr).await];

    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let mut c = clients[i % 2].clone();
        callers.push(tokio::spawn(async move {
            c.get_balance(pb::GetBalanceRequest {
                provider: pb::Provider::Interintel as i32,
                product_id: "101".into(),
                ..Default::default()
            })
            .await
        }));
    }
    let mut answered = 0;
    for caller in callers {
        let balances = caller
            .await
            .unwrap()
            .unwrap_or_else(|s| panic!("GetBalance failed: {s:?}"))
            .into_inner()
            .balances;
        assert_eq!(balances[0].available.as_ref().unwrap().currency_code, "KES");
        answered += 1;
    }
    let calls = sim_calls(&sim).await;
    let interintel = &calls["interintel"];
    println!("cold calls: {CALLERS} over 2 gateway replicas sharing one redis");
    println!("answered: {answered}");
    println!(
        "token requests at the simulator: {} (refresh grants: {}, refused tokens: {})",
        interintel["token"],
        interintel["token_refresh"].as_u64().unwrap_or(0),
        interintel["rejected_auth"].as_u64().unwrap_or(0)
    );
    println!("simulator calls: {calls}");
    assert_eq!(answered, CALLERS);
    assert_eq!(interintel["token"], 1, "exactly one token request");
    assert!(interintel.get("token_refresh").is_none(), "no refresh");
    assert!(interintel.get("rejected_auth").is_none(), "no call refused");
    assert_eq!(interintel["get_balance"], CALLERS as u64);
}
