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
//! The cap is a `Semaphore` (mini-redis `MAX_CONNECTIONS`): a connection over the cap is accepted
//! and closed at once without reading from it (the client sees end-of-stream, or a reset if it
//! had already sent something), counted (`connection_cap`), and reported by a warning at most
//! every `CAP_WARN_INTERVAL`; it is not left unaccepted, where it would wait in the kernel's
//! backlog until the client gives up, nor queued, so a flood cannot pin memory. Connections
//! already open are not disturbed. A framing error (size cap, missing Content-Length) closes the
//! connection: the stream cannot be resynchronised.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::codec::{Frame, SipCodec};
use super::metrics::DropReason;
use super::redirect::Source;
use super::{Error, Shared};

/// Stream limits from `[redirector]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
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

/// Least time between two warnings that the connection cap refused connections.
const CAP_WARN_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) async fn bind(addr: SocketAddr, transport: &'static str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        transport,
        addr,
        source,
    })
}

/// Accepts until cancelled (or until the caller drops this future to rebind: connections
/// already open run on `tracker` with a child of `token` and are not disturbed).
pub(crate) async fn serve(
    listener: &TcpListener,
    tls: Option<&TlsAcceptor>,
    shared: &Arc<Shared>,
    limits: Limits,
    token: &CancellationToken,
    tracker: &TaskTracker,
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
    let mut refusals = Refusals::default();
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
            shared.metrics.dropped(DropReason::ConnectionCap);
            debug!(%peer, "{transport} connection refused: connection cap reached");
            drop(stream);
            if let Some(refused) = refusals.count(Instant::now()) {
                warn!(
                    cap = limits.max_connections,
                    refused,
                    "{transport} connection cap reached: refused {refused} new connection(s) since the last warning (open ones are still served; raise tcp_max_connections if this is legitimate load)"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, token, tls) = (Arc::clone(shared), token.child_token(), tls.cloned());
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

/// Connections refused at the cap since the last warning, so a flood logs one line per
/// `CAP_WARN_INTERVAL` rather than one per connection.
#[derive(Debug, Default)]
struct Refusals {
    since_warning: u64,
    last_warning: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal; returns the number to report when a warning is due.
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.since_warning += 1;
        let due = self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= CAP_WARN_INTERVAL);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.since_warning))
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
                shared.metrics.dropped(DropReason::Framing);
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
            shared.metrics.dropped(DropReason::SendFailed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_refusals_warn_at_once_then_at_most_every_interval_with_the_count() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.count(t0), Some(1));
        assert_eq!(r.count(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.count(t0 + Duration::from_secs(9)), None);
        assert_eq!(r.count(t0 + CAP_WARN_INTERVAL), Some(3));
        assert_eq!(r.count(t0 + CAP_WARN_INTERVAL * 3), Some(1));
    }
}
