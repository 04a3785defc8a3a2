//! The health and metrics listener on `[http] listen`: `GET /healthz` (JSON; 200 when every
//! worker is alive and its last attempt succeeded, else 503 `degraded`) and `GET /metrics`
//! (Prometheus text format 0.0.4). HTTP/1.1 over hyper, one request per connection, no TLS
//! (bind it to loopback or a management network).
//!
//! A monitoring port must answer even while someone holds connections open on it, and must
//! never take the file descriptors the directory and SIP connections need. So:
//! - at most `[http] max_connections` are open. A new connection over the cap closes the oldest
//!   one that has not yet sent its request (an idle or half-sent one), so a thousand half-open
//!   connections cannot lock the monitoring out; when every open connection is mid-request the
//!   new one is closed instead;
//! - a connection must send a whole request header within `header_timeout` of opening;
//! - the request must be answered within `request_timeout` of opening, or the connection is
//!   closed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Daemon;
use super::metrics;
use super::status::health_json;
use crate::config::HttpSettings;

/// `[http]`: where to listen and the connection limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listen {
    pub addr: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Listen {
    /// `None` when `[http] listen = ""`.
    pub(crate) fn of(http: &HttpSettings) -> Option<Listen> {
        http.listen.map(|addr| Listen {
            addr,
            max_connections: http.max_connections as usize,
            header_timeout: http.header_timeout,
            request_timeout: http.request_timeout,
        })
    }
}

/// Accepts until `token` is cancelled (or until the caller drops this future to rebind).
pub(crate) async fn serve(
    listener: &TcpListener,
    daemon: &Arc<Daemon>,
    limits: &Listen,
    token: &CancellationToken,
) {
    if let Ok(local) = listener.local_addr() {
        info!(%local, "HTTP listener started");
    }
    let registry = Arc::new(metrics::registry(Arc::clone(daemon)));
    let slots = Arc::new(Slots::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.open() else {
            debug!(%peer, "HTTP connection refused: every open connection is mid-request");
            continue;
        };
        let (daemon, registry, limits) =
            (Arc::clone(daemon), Arc::clone(&registry), limits.clone());
        let token = token.child_token();
        daemon.tracker.clone().spawn(async move {
            connection(stream, peer, &daemon, &registry, &limits, &slot, &token).await;
        });
    }
}

/// Serves one request on `stream`, within the limits.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    daemon: &Arc<Daemon>,
    registry: &Arc<Registry>,
    limits: &Listen,
    slot: &SlotGuard,
    token: &CancellationToken,
) {
    let waiting = Arc::clone(&slot.waiting);
    let (daemon, registry) = (Arc::clone(daemon), Arc::clone(registry));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // The header is in: this connection no longer makes way for new ones.
        waiting.store(false, Ordering::Relaxed);
        let response = respond(&daemon, &registry, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        // The header deadline is this module's own (it counts from the connection's opening).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let header_deadline = async {
        tokio::time::sleep(limits.header_timeout).await;
        if !slot.waiting.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = conn => {}
        _ = header_deadline => {
            debug!(%peer, timeout = ?limits.header_timeout, "HTTP connection closed: no request header in time");
        }
        _ = tokio::time::sleep(limits.request_timeout) => {
            debug!(%peer, timeout = ?limits.request_timeout, "HTTP connection closed: request not done in time");
        }
        _ = slot.evicted.cancelled() => {
            debug!(%peer, "HTTP connection closed to make room for a new one (connection cap)");
        }
        _ = token.cancelled() => {}
    }
}

/// The answer to one request.
fn respond(daemon: &Daemon, registry: &Registry, req: &Request<Incoming>) -> Response<String> {
    let path = req.uri().path();
    if path != "/healthz" && path != "/metrics" {
        return plain(StatusCode::NOT_FOUND, String::new(), None);
    }
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, String::new(), None);
    }
    if path == "/healthz" {
        let (code, body) = health_json(&daemon.status.snapshot(), &daemon.redirector.metrics());
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return plain(code, body.to_string(), Some("application/json"));
    }
    match metrics::text(registry) {
        Ok(text) => plain(
            StatusCode::OK,
            text,
            Some("text/plain; version=0.0.4; charset=utf-8"),
        ),
        Err(e) => {
            warn!("{e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, e, None)
        }
    }
}

fn plain(code: StatusCode, body: String, content_type: Option<&'static str>) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    if let Some(t) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    response
}

// === the connection cap ===

/// The open connections, oldest first.
struct Slots {
    cap: usize,
    next_id: AtomicU64,
    /// Why a mutex: the accept loop adds, every connection's task removes its own on the way
    /// out; held for a scan of at most `cap` entries, never across an `.await`.
    open: Mutex<VecDeque<Slot>>,
}

/// One open connection, as the cap sees it.
struct Slot {
    id: u64,
    /// Still waiting for its request header: may be closed to make room.
    waiting: Arc<AtomicBool>,
    evicted: CancellationToken,
}

/// A connection's place under the cap, given back when its task ends.
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    waiting: Arc<AtomicBool>,
    evicted: CancellationToken,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(VecDeque::new()),
        }
    }

    /// A place for a new connection: at the cap, the oldest one still waiting for its request
    /// is closed to make room; `None` when every open one is mid-request.
    fn open(self: &Arc<Slots>) -> Option<SlotGuard> {
        let mut open = match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if open.len() >= self.cap {
            let oldest_idle = open
                .iter()
                .position(|s| s.waiting.load(Ordering::Relaxed))?;
            if let Some(slot) = open.remove(oldest_idle) {
                slot.evicted.cancel();
            }
        }
        let slot = Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            waiting: Arc::new(AtomicBool::new(true)),
            evicted: CancellationToken::new(),
        };
        let guard = SlotGuard {
            slots: Arc::clone(self),
            id: slot.id,
            waiting: Arc::clone(&slot.waiting),
            evicted: slot.evicted.clone(),
        };
        open.push_back(slot);
        Some(guard)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = match self.slots.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.retain(|s| s.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let slots = Arc::new(Slots::new(2));
        let a = slots.open().unwrap();
        let b = slots.open().unwrap();
        // a sent its request: b is the oldest still waiting, and is closed for c.
        a.waiting.store(false, Ordering::Relaxed);
        let c = slots.open().unwrap();
        assert!(!a.evicted.is_cancelled());
        assert!(b.evicted.is_cancelled());
        // a and c are both mid-request now: a new connection is refused, none is closed.
        c.waiting.store(false, Ordering::Relaxed);
        assert!(slots.open().is_none());
        assert!(!a.evicted.is_cancelled() && !c.evicted.is_cancelled());
        // A connection that ends gives its place back.
        drop(a);
        let d = slots.open().unwrap();
        assert!(!d.evicted.is_cancelled());
        drop(b);
        assert_eq!(slots.open.lock().unwrap().len(), 2);
    }
}
