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
use tonic_types::StatusExt;

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

/// An HPACK block for a POST to `path`: literal header fields without indexing.
fn request_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    let literal = |block: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    };
    literal(&mut block, b":path", path.as_bytes());
    literal(&mut block, b":authority", b"localhost");
    literal(&mut block, b"content-type", b"application/grpc");
    literal(&mut block, b"te", b"trailers");
    block
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut out = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

#[tokio::test]
async fn calls_over_the_in_progress_limit_are_refused_at_once_and_health_still_answers() {
    let gw = gateway(ServerConfig {
        max_calls_in_progress: 2,
        ..Default::default()
    })
    .await;
    // Two calls whose request never comes: each holds its place while it waits for its body.
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(PREFACE).await.unwrap();
    raw.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    let path = "/billpay.v1.CatalogService/ListProviders";
    for stream in [1, 3] {
        raw.write_all(&frame(HEADERS, END_HEADERS, stream, &request_headers(path)))
            .await
            .unwrap();
    }
    raw.flush().await.unwrap();

    // Once the server has taken both (it reads the raw connection on its own time), a third
    // call is refused before any work, with the limit and a delay to retry after.
    let mut catalog = gw.catalog();
    let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
    let busy = loop {
        match catalog
            .list_providers(billpay_gateway::pb::ListProvidersRequest::default())
            .await
        {
            Err(status) => break status,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(_) => panic!("two calls held open, and a third was still served"),
        }
    };
    assert_error(&busy, tonic::Code::ResourceExhausted, "SERVER_BUSY");
    assert_eq!(error_meta(&busy, "max_calls").as_deref(), Some("2"));
    assert!(retry_delay(&busy).is_some(), "{busy:?}");
    let documented = error_doc::documented_metadata(error_doc::COMMON_PROTO);
    let sent = busy
        .get_error_details()
        .error_info()
        .unwrap()
        .metadata
        .keys()
        .cloned()
        .collect();
    documented["SERVER_BUSY"].check(&sent).unwrap();
    // Health is not counted.
    healthy(&gw).await;

    // The first held call gets its (empty) request and is answered: its place is free again.
    let mut body = vec![0u8]; // gRPC frame: not compressed, length 0
    body.extend_from_slice(&0u32.to_be_bytes());
    raw.write_all(&frame(DATA, END_STREAM, 1, &body))
        .await
        .unwrap();
    raw.flush().await.unwrap();
    loop {
        let mut header = [0u8; 9];
        raw.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        raw.read_exact(&mut payload).await.unwrap();
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7FFF_FFFF;
        if header[3] == HEADERS && stream == 1 && header[4] & END_STREAM != 0 {
            break; // its trailers: the call is over
        }
    }
    catalog
        .list_providers(billpay_gateway::pb::ListProvidersRequest::default())
        .await
        .expect("a place was freed");
    assert!(
        billpay_gateway::metrics::global().busy_refusals.get() >= 1,
        "the refusal is counted"
    );
    drop(raw);
    gw.stop().await;
}
