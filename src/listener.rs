//! The gRPC listener's connection limits, applied before tonic sees a connection: how many
//! connections are open in total and per peer address (over either: closed at once), and how
//! long a new connection may take to send its first bytes (the HTTP/2 preface in plaintext, the
//! TLS ClientHello's first bytes with TLS; tonic's handshake timeout then bounds the rest of the
//! handshake) before it is closed. Each admitted connection holds its places until it closes.
//! Refusals are counted in `billpay_listener_refused_connections_total{reason}`.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

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
    /// How long a new connection may take to send its first 24 bytes.
    pub preface_timeout: Duration,
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

impl AsyncWrite for Limited {
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
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

/// The admitted connections of `incoming`, as tonic's `serve_with_incoming` takes them, and
/// the accepting task (abort it to close the listener).
pub fn limit(
    incoming: TcpIncoming,
    limits: Limits,
) -> (
    ReceiverStream<Result<Limited, io::Error>>,
    tokio::task::JoinHandle<()>,
) {
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
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.preface_timeout, first_bytes(&stream)).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {
                        refused("preface_timeout");
                        return;
                    }
                }
                let _ = tx
                    .send(Ok(Limited {
                        stream,
                        _total: permit,
                        _peer: place,
                    }))
                    .await;
            });
        }
    });
    (ReceiverStream::new(rx), accept)
}
