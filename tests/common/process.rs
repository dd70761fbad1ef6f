//! The shipped binary as a child process (gateway replicas, the standalone simulator), killed on
//! drop.
#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free loopback address.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A running `billpay-gateway` process.
pub struct Spawned {
    pub addr: String,
    child: Child,
}

impl Spawned {
    /// Runs `billpay-gateway ARGS` with extra environment and waits until `addr` accepts TCP.
    pub fn start(args: &[&str], addr: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_billpay-gateway"));
        command
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_URLS")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn billpay-gateway");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{args:?} did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr: addr.to_owned(),
            child,
        }
    }

    /// `simulate --listen ADDR`.
    pub fn simulator() -> Self {
        let addr = free_addr();
        Self::start(&["simulate", "--listen", &addr], &addr, &[])
    }

    /// `serve --sandbox --sandbox-url SIM` with `REDIS_URL`.
    pub fn gateway(simulator: &Spawned, redis_url: &str) -> Self {
        Self::gateway_with(simulator, &[("REDIS_URL", redis_url)])
    }

    /// `serve --sandbox --sandbox-url SIM` with this environment (the store's, for example
    /// `REDIS_CLUSTER_URLS`).
    pub fn gateway_with(simulator: &Spawned, env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let sim_url = format!("http://{}", simulator.addr);
        Self::start(
            &[
                "serve",
                "--sandbox",
                "--sandbox-url",
                &sim_url,
                "--listen",
                &addr,
            ],
            &addr,
            env,
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
