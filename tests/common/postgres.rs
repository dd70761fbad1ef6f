//! A real PostgreSQL for tests: each test gets its own database (`CREATE DATABASE` with a
//! random name, dropped on drop) on the server at `DATABASE_URL`, else on
//! `postgres://postgres@127.0.0.1:5432/postgres` (CI's machine runs PostgreSQL 15 there with
//! trust auth; `scripts/test.sh` starts one when it is missing). Nothing is mocked and nothing
//! is skipped: a test that cannot reach PostgreSQL fails, saying where it looked.
#![allow(dead_code)]

use std::time::Duration;

use billpay_gateway::store::postgres::PostgresStore;

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
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
            "PostgreSQL is not reachable at DATABASE_URL or 127.0.0.1:5432 ({}): these tests \
             need a real PostgreSQL (scripts/test.sh installs and starts one)",
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
