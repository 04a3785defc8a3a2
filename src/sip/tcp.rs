//! SIP over TCP and TLS: an accept loop with a connection cap, and one task per connection that
//! frames messages with [`SipCodec`], answers each on the same connection, replies `\r\n` to
//! CRLF keep-alive pings, and closes after `idle_timeout` without a message.
//!
//! RFC 3261 §18.2.2: a response goes back on the request's connection. If writing it fails
//! because that connection is gone, a TCP listener opens a new connection to the request's
//! source IP (`received`) and Via sent-by port (default 5060) and sends it there, once: no retry,
//! `RECONNECT_TIMEOUT` for connect and write together, at most `MAX_RECONNECTS` at a time (over
//! that the response is dropped), each outcome counted. The normal path is untouched: the
//! fallback runs only after a failed write. TLS does not reconnect: a TLS client (Lync, Group
//! Chat) does not run a TLS server with a certificate the redirector could verify at its
//! address, and an unverified TLS connection would hand the answer to whoever holds the port;
//! the client's transaction times out and it sends the request again on a new connection.
//!
//! The cap is a `Semaphore` (mini-redis `MAX_CONNECTIONS`): a connection over the cap is closed
//! at once and counted, rather than queued, so a flood cannot pin memory. A framing error (size
//! cap, missing Content-Length) closes the connection: the stream cannot be resynchronised.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::codec::{Frame, SipCodec};
use super::metrics::Drop;
use super::redirect::Source;
use super::{Error, Shared};

/// Stream limits from `[redirector]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// How long a §18.2.2 reconnect may take, connect and write together.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most §18.2.2 reconnects in flight per listener.
const MAX_RECONNECTS: usize = 32;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn bind(addr: SocketAddr, transport: &'static str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        transport,
        addr,
        source,
    })
}

/// Accepts until cancelled; each connection runs on `tracker` with a child token.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    limits: Limits,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let transport = if tls.is_some() { "TLS" } else { "TCP" };
    if let Ok(local) = listener.local_addr() {
        info!(%local, "SIP {transport} listener started");
    }
    // Why a semaphore: one permit per open connection; dropping the permit with the task
    // frees the slot even if the task ends by error.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let reconnects = tls
        .is_none()
        .then(|| Arc::new(Semaphore::new(MAX_RECONNECTS)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    debug!(error = %e, "{transport} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.metrics.dropped(Drop::ConnectionCap);
            debug!(%peer, "{transport} connection refused: connection cap reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, token, tls) = (Arc::clone(&shared), token.child_token(), tls.clone());
        let (reconnects, spawner) = (reconnects.clone(), tracker.clone());
        tracker.spawn(async move {
            shared.metrics.connection_opened();
            match tls {
                None => {
                    let fallback = reconnects.map(|cap| Fallback {
                        cap,
                        tracker: spawner,
                        shared: Arc::clone(&shared),
                    });
                    connection(stream, peer, &shared, limits, &token, fallback).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            connection(tls_stream, peer, &shared, limits, &token, None).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            shared.metrics.connection_closed();
            drop(permit);
        });
    }
}

/// Serves one connection until the peer closes, it idles out, framing fails, or shutdown.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    shared: &Shared,
    limits: Limits,
    token: &CancellationToken,
    fallback: Option<Fallback>,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, SipCodec::new(limits.max_message_size));
    let mut out = Vec::with_capacity(2048);
    let source = Source {
        addr: peer,
        datagram: false,
    };
    loop {
        let next = tokio::select! {
            _ = token.cancelled() => break,
            next = tokio::time::timeout(limits.idle_timeout, frames.next()) => next,
        };
        let frame = match next {
            Err(_) => {
                debug!(%peer, "closing idle connection");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                shared.metrics.dropped(Drop::Framing);
                debug!(%peer, error = %e, "closing connection: framing error");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let (reply, destination): (&[u8], _) = match frame {
            Frame::KeepAlive => {
                shared.metrics.keepalive();
                (b"\r\n", None)
            }
            Frame::Message(bytes) => match shared.handle(&bytes, source, &mut out) {
                Some(destination) => (&out, destination),
                None => continue,
            },
        };
        if let Err(e) = write.write_all(reply).await {
            shared.metrics.dropped(Drop::SendFailed);
            debug!(%peer, error = %e, "write failed; closing");
            if let (Some(fallback), Some(to)) = (&fallback, destination) {
                fallback.send(to, reply.to_vec());
            }
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// What a TCP connection needs to send a response on a new connection (§18.2.2).
struct Fallback {
    cap: Arc<Semaphore>,
    tracker: TaskTracker,
    shared: Arc<Shared>,
}

impl Fallback {
    /// Sends `response` to `to` on a new connection, once, in the background; over the cap it
    /// is dropped. Every outcome is counted.
    fn send(&self, to: SocketAddr, response: Vec<u8>) {
        let Ok(permit) = Arc::clone(&self.cap).try_acquire_owned() else {
            self.shared.metrics.reconnect(false);
            debug!(%to, "response dropped: reconnect cap reached");
            return;
        };
        let shared = Arc::clone(&self.shared);
        self.tracker.spawn(async move {
            let sent = tokio::time::timeout(RECONNECT_TIMEOUT, async {
                let mut stream = TcpStream::connect(to).await?;
                stream.write_all(&response).await?;
                stream.shutdown().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {
                    shared.metrics.reconnect(true);
                    debug!(%to, "response sent on a new connection (RFC 3261 §18.2.2)");
                }
                Ok(Err(e)) => {
                    shared.metrics.reconnect(false);
                    debug!(%to, error = %e, "reconnect for a response failed");
                }
                Err(_) => {
                    shared.metrics.reconnect(false);
                    debug!(%to, "reconnect for a response timed out");
                }
            }
            drop(permit);
        });
    }
}
