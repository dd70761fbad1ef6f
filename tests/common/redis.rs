//! A real `redis-server` for tests, on a free loopback port, stopped on drop. Nothing is mocked:
//! tests that need Redis fail loudly when `redis-server` is missing (`scripts/test.sh`
//! installs it).
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

/// A redis-server process owned by the test.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    /// Append-only file with fsync on every write: a killed server restarts with everything it
    /// acknowledged. Without it a restart comes back empty (data lost).
    persistent: bool,
    /// More `redis-server` arguments.
    extra_args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a server on a free port that keeps nothing on disk: a restart loses everything.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server on a free port that keeps every acknowledged write across a restart
    /// (`appendonly yes`, `appendfsync always`).
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    /// Starts a server with more `redis-server` arguments, for example
    /// `["--maxmemory-policy", "allkeys-lru"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with_all(false, args.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(persistent: bool) -> Self {
        Self::start_with_all(persistent, Vec::new())
    }

    fn start_with_all(persistent: bool, extra_args: Vec<String>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("billpay-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = Self {
            port,
            dir,
            persistent,
            extra_args,
        };
        server.spawn();
        server
    }

    /// The URL for `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    fn spawn(&self) {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--daemonize",
                "yes",
                "--dir",
                self.dir.to_str().unwrap(),
                "--pidfile",
                self.pid_file().to_str().unwrap(),
                "--logfile",
                self.dir.join("redis.log").to_str().unwrap(),
            ])
            .args(&self.extra_args)
            .status()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        assert!(status.success(), "redis-server failed to start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.pid().is_some()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown) and waits until it is gone.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                assert!(Instant::now() < deadline, "redis-server did not die");
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_file(self.pid_file());
        }
    }

    /// Starts the server again on the same port: empty unless it is persistent.
    pub fn restart(&self) {
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
