//! A real `nats-server` with JetStream for tests, on a free loopback port, stopped on drop; or
//! the one at `NATS_URL` when that is set (each test then uses its own stream name, so tests
//! sharing a server never see each other's messages). Nothing is mocked: tests that need NATS
//! fail loudly when `nats-server` is missing (`scripts/test.sh` installs it).
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A nats-server process owned by the test (or the shared one at `NATS_URL`).
pub struct NatsServer {
    url: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl NatsServer {
    /// The server at `NATS_URL`, else a new `nats-server -js` on a free loopback port with its
    /// JetStream files in a temporary directory.
    pub fn start() -> Self {
        match std::env::var("NATS_URL") {
            Ok(url) if !url.is_empty() => Self {
                url,
                child: None,
                dir: None,
            },
            _ => Self::start_own(),
        }
    }

    /// Always a server of the test's own (for tests that stop or restart it).
    pub fn start_own() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("billpay-nats-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            url: format!("nats://127.0.0.1:{port}"),
            child: None,
            dir: Some(dir),
        };
        server.spawn(port);
        server
    }

    fn spawn(&mut self, port: u16) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(self.dir.as_ref().expect("a server of the test's own"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (`SIGKILL`); [`NatsServer::restart`] brings it back.
    pub fn kill(&mut self) {
        let child = self.child.as_mut().expect("a server of the test's own");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts a killed server again on the same port with the same JetStream files.
    pub fn restart(&mut self) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        self.spawn(port);
    }

    /// Kills the server (`SIGKILL`) and starts it again on the same port with the same
    /// JetStream files, as a crashed and restarted server would be.
    pub fn kill_and_restart(&mut self) {
        let child = self.child.as_mut().expect("a server of the test's own");
        child.kill().unwrap();
        child.wait().unwrap();
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        self.spawn(port);
    }

    /// The URL for `NATS_URL` / `[events] nats_url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A stream name no other test uses (tests may share the server at `NATS_URL`).
pub fn unique_stream(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
