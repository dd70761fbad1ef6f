//! The gRPC listener's connection limits, applied before tonic sees a connection: how many
//! connections are open in total and per peer address (over either: closed at once), and how
//! long a new connection may take to send its first bytes before it is closed. In plaintext
//! those are the HTTP/2 preface. With TLS the TLS handshake is done here, not in tonic: the
//! ClientHello's first bytes must come within the preface deadline, the rest of the handshake
//! within the handshake deadline, and then the HTTP/2 preface, decrypted, within the preface
//! deadline again, so a client cannot hold a connection by completing a handshake and going
//! quiet. Each admitted connection holds its places until it closes. Refusals are counted in
//! `billpay_listener_refused_connections_total{reason}`.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{rustls, server::TlsStream};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming, TlsConnectInfo};

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_LEN: usize = 24;
/// How often a connection that sent part of its first bytes is looked at again.
const PARTIAL_RECHECK: Duration = Duration::from_millis(20);

/// The limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections in total (0: unlimited).
    pub max_connections: usize,
    /// Open connections per peer IP address (0: unlimited).
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first 24 bytes; with TLS, also how long
    /// the HTTP/2 preface may take after the handshake.
    pub preface_timeout: Duration,
    /// With TLS: how long the handshake may take after the first bytes.
    pub tls_handshake_timeout: Duration,
}

/// Open connections per peer address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerPlace> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            peers: self.clone(),
            ip,
        })
    }
}

/// One connection's place among its peer's; given back on drop.
struct PeerPlace {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An admitted connection: the TCP stream with its places in the limits.
pub struct Limited {
    stream: TcpStream,
    _total: Option<OwnedSemaphorePermit>,
    _peer: PeerPlace,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// `AsyncWrite` for a wrapper that only reads differently: every write goes to its `stream`.
macro_rules! write_through_to_stream {
    ($wrapper:ty) => {
        impl AsyncWrite for $wrapper {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write(cx, buf)
            }
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_shutdown(cx)
            }
            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }
        }
    };
}

write_through_to_stream!(Limited);

/// An admitted TLS connection, handshake done: the decrypted HTTP/2 preface (read here to
/// bound its wait) is handed back before the rest of the stream.
pub struct TlsLimited {
    preface: [u8; PREFACE_LEN],
    /// Bytes of `preface` already handed back.
    replayed: usize,
    stream: TlsStream<Limited>,
}

impl Connected for TlsLimited {
    /// As tonic's own TLS: the peer's address and its certificates (mTLS identity).
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for TlsLimited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < PREFACE_LEN {
            let rest = &self.preface[self.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

write_through_to_stream!(TlsLimited);

/// The listener's TLS settings from `[server.tls]`'s PEM files, as tonic would build them:
/// ring, TLS 1.2 and 1.3, ALPN `h2`; with a client CA, client certificates from it required.
pub fn tls_server_config(
    tls: &crate::config::TlsConfig,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| format!("[server.tls] cannot read {path}: {e}"))
    };
    let certificates = |path: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(&read(path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("[server.tls] {path}: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("[server.tls] {path}: no certificate"));
        }
        Ok(certs)
    };
    let chain = certificates(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file)?)
        .map_err(|e| format!("[server.tls] {}: no private key: {e}", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[server.tls]: {e}"))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("[server.tls] {ca}: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("[server.tls] {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("[server.tls] {}: {e}", tls.cert_file))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn refused(reason: &'static str) {
    crate::metrics::global()
        .listener_refused
        .get_or_create(&crate::metrics::RefusalLabels {
            reason: reason.to_owned(),
        })
        .inc();
}

/// Waits until `stream` has its first [`PREFACE_LEN`] bytes buffered (peeked, not consumed);
/// false when it closed first.
async fn first_bytes(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE_LEN];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= PREFACE_LEN => return true,
            // Part of it: peek would answer at once again; look later.
            Ok(_) => tokio::time::sleep(PARTIAL_RECHECK).await,
        }
    }
}

/// Waits for `stream`'s first [`PREFACE_LEN`] bytes for up to `limits.preface_timeout`;
/// false (counted when late) when they do not come.
async fn first_bytes_in_time(stream: &TcpStream, limits: Limits) -> bool {
    match tokio::time::timeout(limits.preface_timeout, first_bytes(stream)).await {
        Ok(arrived) => arrived,
        Err(_) => {
            refused("preface_timeout");
            false
        }
    }
}

/// The admitted plaintext connections of `incoming`, as tonic's `serve_with_incoming` takes
/// them, and the accepting task (abort it to close the listener).
pub fn limit(
    incoming: TcpIncoming,
    limits: Limits,
) -> (
    ReceiverStream<Result<Limited, io::Error>>,
    tokio::task::JoinHandle<()>,
) {
    admit_each(incoming, limits, move |conn: Limited| async move {
        first_bytes_in_time(&conn.stream, limits)
            .await
            .then_some(conn)
    })
}

/// [`limit`] with TLS: each connection's handshake (`tls`) and then its HTTP/2 preface within
/// their deadlines (see the module doc).
pub fn limit_tls(
    incoming: TcpIncoming,
    limits: Limits,
    tls: Arc<rustls::ServerConfig>,
) -> (
    ReceiverStream<Result<TlsLimited, io::Error>>,
    tokio::task::JoinHandle<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    admit_each(incoming, limits, move |conn: Limited| {
        let acceptor = acceptor.clone();
        async move {
            if !first_bytes_in_time(&conn.stream, limits).await {
                return None;
            }
            let mut stream =
                match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(conn))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        refused("tls_handshake_timeout");
                        return None;
                    }
                };
            let mut preface = [0u8; PREFACE_LEN];
            match tokio::time::timeout(limits.preface_timeout, stream.read_exact(&mut preface))
                .await
            {
                Ok(Ok(_)) => Some(TlsLimited {
                    preface,
                    replayed: 0,
                    stream,
                }),
                Ok(Err(_)) => None,
                Err(_) => {
                    refused("preface_timeout");
                    None
                }
            }
        }
    })
}

/// Accepts `incoming` within the connection limits and hands each admitted connection to
/// `admit` (on a task of its own); what it returns is served, `None` is closed.
fn admit_each<T, F, Fut>(
    incoming: TcpIncoming,
    limits: Limits,
    admit: F,
) -> (
    ReceiverStream<Result<T, io::Error>>,
    tokio::task::JoinHandle<()>,
)
where
    T: Send + 'static,
    F: Fn(Limited) -> Fut + Send + 'static,
    Fut: Future<Output = Option<T>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let total =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let peers = Arc::new(Peers::default());
    let accept = tokio::spawn(async move {
        let mut incoming = incoming;
        while let Some(accepted) = incoming.next().await {
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep accepting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let permit = match &total {
                Some(total) => match total.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        refused("max_connections");
                        continue;
                    }
                },
                None => None,
            };
            let Some(ip) = stream.peer_addr().ok().map(|a| a.ip()) else {
                continue;
            };
            let Some(place) = peers.enter(ip, limits.max_connections_per_peer) else {
                refused("max_connections_per_peer");
                continue;
            };
            let admitted = admit(Limited {
                stream,
                _total: permit,
                _peer: place,
            });
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(conn) = admitted.await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    (ReceiverStream::new(rx), accept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsConfig;

    fn certs(name: &str) -> String {
        format!("{}/tests/certs/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn tls_settings_come_from_the_pem_files_and_bad_files_are_named() {
        let good = TlsConfig {
            cert_file: certs("server.pem"),
            key_file: certs("server-key.pem"),
            client_ca_file: Some(certs("ca.pem")),
        };
        let config = tls_server_config(&good).expect("the test certificates");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
        let missing = TlsConfig {
            cert_file: certs("missing.pem"),
            ..good.clone()
        };
        let e = tls_server_config(&missing).unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        // A key where the certificate should be, a certificate where the key should be.
        let swapped = TlsConfig {
            cert_file: certs("server-key.pem"),
            key_file: certs("server.pem"),
            client_ca_file: None,
        };
        let e = tls_server_config(&swapped).unwrap_err();
        assert!(
            e.contains("server-key.pem") && e.contains("no certificate"),
            "{e}"
        );
        let no_key = TlsConfig {
            key_file: certs("server.pem"),
            ..good.clone()
        };
        let e = tls_server_config(&no_key).unwrap_err();
        assert!(e.contains("no private key"), "{e}");
        // A key that is not the certificate's.
        let mismatched = TlsConfig {
            key_file: certs("client-key.pem"),
            ..good.clone()
        };
        assert!(tls_server_config(&mismatched).is_err());
        let bad_ca = TlsConfig {
            client_ca_file: Some(certs("ca-key.pem")),
            ..good
        };
        let e = tls_server_config(&bad_ca).unwrap_err();
        assert!(e.contains("ca-key.pem"), "{e}");
    }
}
