//! A real PostgreSQL for tests: each test gets its own database (`CREATE DATABASE` with a
//! random name, dropped on drop) on the server at `DATABASE_URL`; else on
//! `postgres://postgres@127.0.0.1:5432/postgres` when that answers (CI's machine runs
//! PostgreSQL 15 there with trust auth); else on a server of the test binary's own, started
//! once per test binary (initdb + pg_ctl in a temporary directory, on a free loopback port, as
//! user `postgres` when running as root) and stopped when the test binary exits, however it
//! exits. `BILLPAY_TEST_PG_OWN=1` skips 127.0.0.1:5432 and starts the binary's own. Nothing is
//! mocked and nothing is skipped: a test that cannot get a PostgreSQL fails, saying why.
#![allow(dead_code)]

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use billpay_gateway::store::postgres::PostgresStore;

/// The server tests create their databases on.
pub fn admin_url() -> String {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        return url;
    }
    let own = std::env::var("BILLPAY_TEST_PG_OWN").is_ok_and(|v| v == "1");
    let default = "127.0.0.1:5432".parse().unwrap();
    if !own && std::net::TcpStream::connect_timeout(&default, Duration::from_secs(1)).is_ok() {
        return "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
    }
    static OWN: OnceLock<String> = OnceLock::new();
    OWN.get_or_init(start_own_server).clone()
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`, else
/// the one on PATH (`None`: found by PATH lookup).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Shell text that runs `script` as user postgres when running as root (PostgreSQL refuses
/// root), else as this user.
fn as_postgres_text(script: &str) -> String {
    if is_root() {
        format!("su postgres -s /bin/sh -c {}", shell_quote(script))
    } else {
        script.to_owned()
    }
}

fn as_postgres(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", &as_postgres_text(script)]);
    command
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts this test binary's own PostgreSQL (see [`start_server`]); its admin URL.
fn start_own_server() -> String {
    let server = start_server(|_| {});
    format!("postgres://postgres@127.0.0.1:{}/postgres", server.port)
}

/// A PostgreSQL of the test binary's own.
pub struct OwnServer {
    pub port: u16,
    /// Its directory; the cluster is in `data/`, the log in `log`.
    pub dir: PathBuf,
}

/// Starts a PostgreSQL in a new temporary directory on a free loopback port (trust auth, user
/// postgres, on 127.0.0.1 and 127.0.0.2), after `configure` has had the data directory (to add
/// settings and files: they are given to user postgres), with a watchdog that stops it and
/// removes the directory once this process is gone: the watchdog waits for the end of a pipe
/// only this process holds, which the kernel closes at exit (normal end, panic, abort or kill
/// alike), so no exit hook is needed.
pub fn start_server(configure: impl FnOnce(&std::path::Path)) -> OwnServer {
    let bin = postgres_bin();
    let tool = |name: &str| match &bin {
        Some(bin) => bin.join(name).display().to_string(),
        None => name.to_owned(),
    };
    let dir =
        std::env::temp_dir().join(format!("billpay-test-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let give_to_postgres = || {
        if is_root() {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:", &dir.display().to_string()]);
            run(chown, "chown the test PostgreSQL directory to postgres");
        }
    };
    give_to_postgres();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    run(
        as_postgres(&format!(
            "'{}' -D '{d}/data' -A trust -U postgres --no-sync >/dev/null",
            tool("initdb")
        )),
        "initdb (is PostgreSQL installed? scripts/test.sh installs it)",
    );
    configure(&dir.join("data"));
    give_to_postgres();
    run(
        as_postgres(&format!(
            "'{}' -D '{d}/data' -l '{d}/log' -w -o \"-p {port} -k '{d}' \
             -c listen_addresses=127.0.0.1,127.0.0.2 -c max_connections=300\" start >/dev/null",
            tool("pg_ctl")
        )),
        "pg_ctl start",
    );
    let stop_script = format!(
        "read _ignored; {}; rm -rf '{d}'",
        as_postgres_text(&format!(
            "'{}' -D '{d}/data' -m immediate stop >/dev/null 2>&1",
            tool("pg_ctl")
        ))
    );
    let watchdog = Command::new("sh")
        .args(["-c", &stop_script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test PostgreSQL's watchdog");
    // Kept with its stdin open, never written, never waited for: its `read` returns when this
    // process ends and the kernel closes the pipe.
    static WATCHDOGS: std::sync::Mutex<Vec<std::process::Child>> =
        std::sync::Mutex::new(Vec::new());
    WATCHDOGS.lock().unwrap().push(watchdog);
    let _ = std::io::stderr()
        .write_all(format!("test PostgreSQL: 127.0.0.1:{port} in {d}\n").as_bytes());
    OwnServer { port, dir }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `url` with its database name replaced by `dbname`.
pub fn with_database(url: &str, dbname: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{dbname}{query}")
}

async fn admin() -> tokio_postgres::Client {
    let url = admin_url();
    let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(pair)) => pair,
        outcome => panic!(
            "PostgreSQL is not reachable (DATABASE_URL, else 127.0.0.1:5432, else the test \
             binary's own) ({}): these tests need a real PostgreSQL (scripts/test.sh installs \
             it)",
            match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "connect timed out".to_owned(),
            }
        ),
    };
    tokio::spawn(connection);
    client
}

/// A database of its own, dropped (connections and all) when this is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates an empty database (no schema).
    pub async fn create() -> Self {
        let name = format!("billpay_test_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Self {
            url: with_database(&admin_url(), &name),
            name,
        }
    }

    /// A store on this database, without applying the schema.
    pub fn store(&self) -> PostgresStore {
        PostgresStore::new(&self.url, Duration::from_secs(5), Duration::from_secs(5), 8).unwrap()
    }

    /// A store on this database with the schema applied.
    pub async fn migrated_store(&self) -> PostgresStore {
        let store = self.store();
        store.migrate().await.unwrap();
        store
    }

    /// A plain connection, for checking rows as `psql` would see them.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // On a thread of its own: drop may run inside a runtime that is shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = admin()
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}
