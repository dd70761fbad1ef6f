//! The listener's limits through a real server and raw TCP clients: the advertised HTTP/2
//! MAX_CONCURRENT_STREAMS, a connection that never sends its preface closed within
//! `preface_timeout_ms`, and connections over the total or per-peer limit closed at once while the
//! admitted ones keep being served; with TLS, a stalled handshake closed after
//! `tls_handshake_timeout_ms`, and a completed handshake followed by no HTTP/2 preface, or part
//! of one, closed after `preface_timeout_ms`.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{config::ServerConfig, gateway::PaymentSettings, store::memory::MemoryStore};
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_CONCURRENT_STREAMS.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// Generous bound for "closed": the configured timeouts are a few hundred milliseconds.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

async fn gateway(server: ServerConfig) -> TestGateway {
    TestGateway::start_serving(
        Default::default(),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        server,
    )
    .await
}

/// The settings of the server's first SETTINGS frame, after sending our preface.
async fn server_settings(gw: &TestGateway) -> Vec<(u16, u32)> {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    loop {
        let mut header = [0u8; 9];
        tcp.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        // SETTINGS without ACK.
        if header[3] == 4 && header[4] & 1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
        }
    }
}

/// True when the server closes `stream` (EOF or reset) within [`CLOSED_WITHIN`].
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server wrote to a connection that sent nothing"),
        Err(_) => false,
    }
}

async fn healthy(gw: &TestGateway) {
    HealthClient::new(gw.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
}

#[tokio::test]
async fn the_server_advertises_its_concurrent_stream_limit() {
    let gw = gateway(ServerConfig {
        max_concurrent_streams: 7,
        ..Default::default()
    })
    .await;
    let settings = server_settings(&gw).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 7)),
        "{settings:?}"
    );
    gw.stop().await;
    // The default: 256.
    let gw = gateway(ServerConfig::default()).await;
    let settings = server_settings(&gw).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 256)),
        "{settings:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_its_preface_is_closed() {
    let gw = gateway(ServerConfig {
        preface_timeout_ms: 200,
        ..Default::default()
    })
    .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Part of the preface, then nothing.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(&PREFACE[..10]).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "silent connection still open"
    );
    assert!(closed_by_server(&mut slow).await, "slow preface still open");
    healthy(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_peer_limit_are_closed_and_the_others_served() {
    let gw = gateway(ServerConfig {
        max_connections_per_peer: 2,
        preface_timeout_ms: 600_000,
        ..Default::default()
    })
    .await;
    // The harness's channel holds one place; a half-open connection the other.
    let _held = TcpStream::connect(gw.addr).await.unwrap();
    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_by_server(&mut over).await, "third connection served");
    healthy(&gw).await;
    let metrics = billpay_gateway::metrics::global().render();
    assert!(
        metrics.contains(
            r#"billpay_listener_refused_connections_total{reason="max_connections_per_peer"} 1"#
        ),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn connections_over_the_total_limit_are_closed_and_the_others_served() {
    let gw = gateway(ServerConfig {
        max_connections: 2,
        max_connections_per_peer: 0,
        preface_timeout_ms: 600_000,
        ..Default::default()
    })
    .await;
    let _held = TcpStream::connect(gw.addr).await.unwrap();
    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_by_server(&mut over).await, "third connection served");
    healthy(&gw).await;
    let metrics = billpay_gateway::metrics::global().render();
    assert!(
        metrics
            .contains(r#"billpay_listener_refused_connections_total{reason="max_connections"} 1"#),
        "{metrics}"
    );
    gw.stop().await;
}

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs");

/// A gateway serving TLS (the test server certificate, no client certificates) with `server`'s
/// other settings; its address and the sender that stops it.
async fn tls_gateway(
    server: ServerConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), Box<dyn std::error::Error + Send + Sync>>>,
) {
    let gateway = billpay_gateway::gateway::Gateway::new(
        Default::default(),
        Arc::new(MemoryStore::default()),
        PaymentSettings::default(),
        Default::default(),
        false,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(billpay_gateway::server::run(
        listener,
        gateway,
        ServerConfig {
            shutdown_grace_ms: 0,
            tls: Some(billpay_gateway::config::TlsConfig {
                cert_file: format!("{CERTS}/server.pem"),
                key_file: format!("{CERTS}/server-key.pem"),
                client_ca_file: None,
            }),
            ..server
        },
        Duration::from_millis(250),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

/// A TLS connection to `addr` that completed its handshake (ALPN h2, the test CA trusted) and
/// sent nothing yet.
async fn tls_connection(addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio_rustls::rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, ServerName},
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(format!("{CERTS}/ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake completes")
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed() {
    let (addr, stop, server) = tls_gateway(ServerConfig {
        tls_handshake_timeout_ms: 300,
        ..Default::default()
    })
    .await;
    // A TLS handshake record announcing 512 bytes, of which 19 come: past the first-bytes
    // deadline, then the handshake waits for the rest forever.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    record.extend_from_slice(&[0x01; 19]);
    stalled.write_all(&record).await.unwrap();
    assert!(
        closed_by_server(&mut stalled).await,
        "stalled handshake still open"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

#[tokio::test]
async fn a_tls_connection_that_sends_no_preface_after_its_handshake_is_closed() {
    let (addr, stop, server) = tls_gateway(ServerConfig {
        preface_timeout_ms: 300,
        ..Default::default()
    })
    .await;
    let mut silent = tls_connection(addr).await;
    let mut slow = tls_connection(addr).await;
    slow.write_all(&PREFACE[..10]).await.unwrap();
    slow.flush().await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "silent TLS connection still open"
    );
    assert!(
        closed_by_server(&mut slow).await,
        "slow preface after TLS still open"
    );
    // A client that sends its preface in time is served.
    let mut prompt = tls_connection(addr).await;
    prompt.write_all(PREFACE).await.unwrap();
    prompt
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    prompt.flush().await.unwrap();
    let mut header = [0u8; 9];
    prompt.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "the server's first frame is its SETTINGS");
    drop(prompt);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
