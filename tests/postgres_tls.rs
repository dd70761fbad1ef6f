//! TLS to PostgreSQL with a real server: a PostgreSQL of the test's own with `ssl=on`, the
//! test CA's server certificate (tests/certs: for `localhost` and 127.0.0.1) and a
//! `pg_hba.conf` that refuses every connection without TLS, so a store that works there
//! spoke TLS. The URL's `sslmode` and `sslrootcert` decide what is checked: `verify-full`
//! accepts the right CA and host, refuses another CA and a host the certificate does not
//! name (127.0.0.2); `verify-ca` accepts that host; `require` encrypts without checking;
//! `disable` is refused by the server. The shipped binary's `store init` works over
//! `verify-full` too.

mod common;

use std::time::Duration;

use billpay_gateway::store::{postgres::PostgresStore, Store};
use common::postgres::{start_server, OwnServer};

fn cert(name: &str) -> String {
    format!("{}/tests/certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A PostgreSQL that speaks only TLS, with the test CA's server certificate.
fn tls_server() -> OwnServer {
    start_server(|data| {
        for (from, to) in [
            ("server.pem", "server.crt"),
            ("server-key.pem", "server.key"),
        ] {
            std::fs::copy(cert(from), data.join(to)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.0/8 trust\n\
             hostnossl all all 127.0.0.0/8 reject\n",
        )
        .unwrap();
    })
}

fn store(url: &str) -> PostgresStore {
    PostgresStore::new(url, Duration::from_secs(5), Duration::from_secs(5), 2).unwrap()
}

/// Whether a store at `url` gets through to the server (its migrate runs a statement).
async fn connects(url: &str) -> Result<(), String> {
    store(url).migrate().await.map(|_| ()).map_err(|e| e.0)
}

#[tokio::test]
async fn sslmode_in_the_url_decides_what_is_checked_and_only_tls_gets_through() {
    let server = tls_server();
    let port = server.port;
    let ca = cert("ca.pem");
    let other_ca = cert("other-ca.pem");
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");

    // verify-full with the right CA, by name and by address: a working store.
    for host in ["localhost", "127.0.0.1"] {
        let s = store(&url(host, &format!("sslmode=verify-full&sslrootcert={ca}")));
        s.migrate().await.unwrap_or_else(|e| panic!("{host}: {e}"));
        s.set("tls-key", b"over tls", None).await.unwrap();
        assert_eq!(
            s.get("tls-key").await.unwrap().as_deref(),
            Some(&b"over tls"[..])
        );
    }
    // Another CA, or a host the certificate does not name: refused.
    let e = connects(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    ))
    .await
    .expect_err("a server signed by another CA is refused");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = connects(&url(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect_err("a certificate that does not name the host is refused");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // verify-ca checks the chain only: that host is fine, another CA still is not.
    connects(&url(
        "127.0.0.2",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    connects(&url(
        "127.0.0.2",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    ))
    .await
    .expect_err("verify-ca still checks the chain");
    // require (and the default, prefer) encrypt without checking, as libpq.
    connects(&url("127.0.0.2", "sslmode=require"))
        .await
        .unwrap();
    connects(&format!("postgres://postgres@localhost:{port}/postgres"))
        .await
        .unwrap();
    // Plaintext: the server refuses it (pg_hba), so the connections above were TLS.
    let e = connects(&url("localhost", "sslmode=disable"))
        .await
        .expect_err("plaintext is refused by this server");
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");

    // The shipped binary, as an operator runs it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .args(["store", "init"])
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env(
            "DATABASE_URL",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        )
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("store identity:"),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
