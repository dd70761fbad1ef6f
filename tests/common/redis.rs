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

/// Where test servers keep their files: `/dev/shm` (memory) where it exists, so that
/// `appendfsync always` costs no disk flush while other builds load the disk; else the
/// temporary directory.
fn data_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a server on a free port that keeps every acknowledged write across a restart
    /// (`appendonly yes`, `appendfsync always`): the posture the gateway accepts by default.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// The same as [`RedisServer::start`].
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    /// Starts a server on a free port that keeps nothing on disk (`appendonly no`, `save ""`):
    /// a restart loses everything. The gateway refuses it for payments unless
    /// `accept_loss_window` is `none`.
    pub fn start_forgetful() -> Self {
        Self::start_with(false)
    }

    /// Starts a persistent server with more `redis-server` arguments (they override the
    /// defaults), for example `["--maxmemory-policy", "allkeys-lru"]` or
    /// `["--appendfsync", "everysec"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with_all(true, args.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(persistent: bool) -> Self {
        Self::start_with_all(persistent, Vec::new())
    }

    fn start_with_all(persistent: bool, extra_args: Vec<String>) -> Self {
        let port = free_port();
        let dir = data_root().join(format!("billpay-redis-{port}-{}", std::process::id()));
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
            // Accepting connections is not enough: while it loads its files Redis answers
            // every command LOADING, so it is up when PING answers PONG.
            if self.pid().is_some() && answers_pong(self.port) {
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

    /// Starts the server again on the same port with its files deleted first: empty, as after
    /// a host whose disk was lost (or a restart without persistence).
    pub fn restart_empty(&self) {
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else if path.extension().is_some_and(|e| e == "rdb") {
                let _ = std::fs::remove_file(&path);
            }
        }
        self.spawn();
    }

    /// `redis-cli -p PORT ARGS...`, its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed with redis-server");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The append-only files of the server (Redis 7: `appendonlydir/*.incr.aof`), the last
    /// one written last.
    pub fn incr_aof(&self) -> PathBuf {
        let dir = self.dir.join("appendonlydir");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .collect();
        files.sort();
        files.pop().expect("an incremental append-only file")
    }

    /// A host crash that took back the last writes Redis had acknowledged but not fsynced
    /// (`appendfsync everysec`): the server must be stopped (`kill`); keeps the first `keep`
    /// bytes of the last append-only file. Restart it with [`RedisServer::restart`].
    pub fn cut_aof_to(&self, keep: u64) {
        assert!(
            self.pid().is_none(),
            "stop the server before cutting its AOF"
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.incr_aof())
            .unwrap();
        file.set_len(keep).unwrap();
        file.sync_all().unwrap();
    }

    /// The length of the last append-only file now.
    pub fn aof_len(&self) -> u64 {
        std::fs::metadata(self.incr_aof()).unwrap().len()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real 3-master Redis Cluster on free loopback ports (`redis-server --cluster-enabled yes`
/// three times, then `redis-cli --cluster create`), each node with `appendonly yes`. The
/// servers are this test's child processes, killed by pid on drop.
pub struct RedisCluster {
    /// Client ports of the masters.
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<std::process::Child>,
}

impl RedisCluster {
    /// Starts the three masters, creates the cluster and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> Self {
        let first = free_port();
        let dir = data_root().join(format!(
            "billpay-redis-cluster-{first}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            ports: Vec::new(),
            dir,
            children: Vec::new(),
        };
        for i in 0..3 {
            let port = if i == 0 { first } else { free_port() };
            // The cluster bus gets its own free port: the default (port + 10000) may not exist.
            let bus = free_port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    cluster
                        .dir
                        .join(format!("nodes-{port}.conf"))
                        .to_str()
                        .unwrap(),
                    "--dir",
                    cluster.dir.to_str().unwrap(),
                    "--appendonly",
                    "yes",
                    // Every write on disk before it is acknowledged: the posture the gateway
                    // accepts by default.
                    "--appendfsync",
                    "always",
                    "--appendfilename",
                    &format!("appendonly-{port}.aof"),
                    "--appenddirname",
                    &format!("aof-{port}"),
                    "--save",
                    "",
                    "--logfile",
                    cluster
                        .dir
                        .join(format!("redis-{port}.log"))
                        .to_str()
                        .unwrap(),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test.sh installs it)");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in &cluster.ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server {port} did not come up"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed with redis-server");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in &cluster.ports {
            while !cluster
                .cli(*port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(
                    Instant::now() < deadline,
                    "cluster node {port} never reported cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// The seed URLs for `REDIS_CLUSTER_URLS`, comma-separated.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis-cli -p PORT ARGS...`, its standard output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed with redis-server");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The port of the master that owns `key`'s slot: the others answer `MOVED`.
    pub fn owner_of(&self, key: &str) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|port| !self.cli(*port, &["EXISTS", key]).contains("MOVED"))
            .unwrap_or_else(|| panic!("no master owns {key}"))
    }

    /// `FLUSHALL` on one master: its shard loses every key (as a restart without persistence
    /// would), the others keep theirs.
    pub fn flush_node(&self, port: u16) {
        assert!(self.cli(port, &["FLUSHALL"]).contains("OK"));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the Redis on `port` answers PING with PONG (not LOADING, not refused).
fn answers_pong(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 5];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG"
}
