//! The embedded SIP redirect server.
//!
//! - [`message`]: a zero-copy request reader (compact forms, folding, LF-only, IPv6).
//! - [`redirect`]: the pure decision, [`redirect::respond`], over one request and one table.
//! - [`udp`], [`tcp`] (with [`codec`]) and [`tls`]: transports, which are plumbing: read a
//!   message, take one table snapshot, call `respond`, write the bytes, count.
//! - [`limit`]: the optional per-source rate limit; [`metrics`]: the counters.
//! - [`probe`]: the client side of `pcsync probe`.
//!
//! Only this module imports `rsipstack` (its `rsipstack::sip` codec); everything else sees our
//! own types. Nothing here panics on network input: a bad message is answered with 400 when it
//! can be addressed, and dropped and counted otherwise.

pub mod codec;
pub(crate) mod limit;
pub mod message;
pub(crate) mod metrics;
pub(crate) mod probe;
pub mod redirect;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::mapping::store::MappingStore;
use limit::{RateLimit, RateLimiter, Verdict};
use metrics::{DropReason, SipMetrics};
use redirect::{Decision, ResponderConfig, Silence, Source};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A listener could not bind its address.
    #[error("cannot listen for SIP over {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS listener: {0}")]
    Tls(String),
    /// A UDP worker thread could not be started.
    #[error("cannot start a UDP worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// TLS listener settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsListen {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the server needs, from `[redirector]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerConfig {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<TlsListen>,
    pub responder: ResponderConfig,
    pub max_message_size: usize,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    pub udp_workers: usize,
}

/// What every transport shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<MappingStore>,
    pub metrics: Arc<SipMetrics>,
    /// What responses say and the rate limit: replaced whole by [`Shared::configure`] on a
    /// reload; each message reads it once, lock-free, so a message is answered with one
    /// configuration.
    responder: ArcSwap<Responder>,
}

/// The configurable half of answering.
#[derive(Debug)]
struct Responder {
    config: ResponderConfig,
    limit: Option<RateLimit>,
    limiter: Option<RateLimiter>,
}

impl Responder {
    fn new(config: ResponderConfig, limit: Option<RateLimit>) -> Responder {
        Responder {
            config,
            limit,
            limiter: limit.map(RateLimiter::new),
        }
    }
}

impl Shared {
    pub(crate) fn new(
        store: Arc<MappingStore>,
        metrics: Arc<SipMetrics>,
        responder: ResponderConfig,
        rate_limit: Option<RateLimit>,
    ) -> Shared {
        Shared {
            store,
            metrics,
            responder: ArcSwap::from_pointee(Responder::new(responder, rate_limit)),
        }
    }

    /// Answers with `responder` and `rate_limit` from the next message on; `false` when both
    /// are what is in force already (the rate limiter keeps its counts then).
    pub(crate) fn configure(
        &self,
        responder: &ResponderConfig,
        rate_limit: Option<RateLimit>,
    ) -> bool {
        let current = self.responder.load();
        if current.config == *responder && current.limit == rate_limit {
            return false;
        }
        self.responder
            .store(Arc::new(Responder::new(responder.clone(), rate_limit)));
        true
    }

    /// Handles one message: writes the response (if any) into `out`, which is cleared first,
    /// and returns where a datagram response goes (on a stream: where to reconnect if the
    /// connection is gone). `None`: no answer.
    pub(crate) fn handle(
        &self,
        bytes: &[u8],
        source: Source,
        out: &mut Vec<u8>,
    ) -> Option<Option<SocketAddr>> {
        out.clear();
        let responder = self.responder.load();
        if let Some(limiter) = &responder.limiter {
            let verdict = limiter.check(source.addr.ip());
            if verdict != Verdict::Allow {
                self.metrics.dropped(DropReason::RateLimited);
                if verdict == Verdict::FirstDrop && limiter.warning_due() {
                    let limit = limiter.limit();
                    tracing::warn!(
                        source = %source.addr.ip(),
                        requests = limit.requests,
                        window = ?limit.window,
                        "rate limit: a source sent more than the limit; its messages are dropped until the window ends (one such line every 10s at most; pcsync_sip_dropped_total{{reason=\"rate_limited\"}} counts every drop)"
                    );
                }
                return None;
            }
        }
        // One snapshot per request.
        let table = self.store.load();
        let (method, outcome) = redirect::respond(bytes, &table, source);
        if let Some(method) = method {
            self.metrics.request(method);
        }
        match outcome {
            Decision::Reply(response) => {
                self.metrics.response(response.status);
                response.write(out, &responder.config);
                Some(response.destination)
            }
            Decision::Silent(Silence::Ack) => {
                self.metrics.ack_absorbed();
                None
            }
            Decision::Silent(Silence::Unanswerable) => {
                self.metrics.dropped(DropReason::Unanswerable);
                tracing::debug!(%source.addr, len = bytes.len(), "dropped a message no response can be addressed for");
                None
            }
        }
    }
}

/// File descriptors kept besides SIP connections: listeners, logs, state and audit files, LDAP,
/// the HTTP listener and its clients, TCP reconnects.
const FD_RESERVE: u64 = 128;

/// Makes room for `connections` open connections under the open-file limit: a connection cap the
/// limit cannot hold is not a cap (past the limit `accept` fails, and new connections wait in
/// the kernel's backlog instead of being refused). Raises the soft limit up to the hard one when
/// needed (as Go's runtime does); if that is not enough, says so once at start-up.
pub(crate) fn ensure_fd_limit(connections: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if connections == 0 {
        return;
    }
    let need = connections + FD_RESERVE;
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return; // unlimited
    };
    if soft >= need {
        return;
    }
    let target = limit.maximum.map_or(need, |hard| hard.min(need));
    let mut have = soft;
    if target > soft {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                have = target;
                tracing::info!(
                    from = soft,
                    to = target,
                    "raised the open-file limit (soft) for the SIP connection cap"
                );
            }
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    if have < need {
        tracing::warn!(
            limit = have,
            needed = need,
            "the open-file limit is too low for tcp_max_connections: past about {} connections new ones will wait unaccepted instead of being refused; raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower tcp_max_connections",
            have.saturating_sub(FD_RESERVE)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::table::{Entry, MappingTable};
    use crate::model::{Dn, SipUri};

    fn shared(rate_limit: Option<RateLimit>) -> Shared {
        let entry = Entry {
            sip_uri: SipUri::parse("sip:persistentchat@contoso.com").unwrap(),
            pool: "pcpool1.contoso.com".into(),
            dn: Dn::parse("cn=x,dc=contoso,dc=com").unwrap(),
        };
        let table = MappingTable::new(vec![entry], &["pcpool1.contoso.com"], 1, chrono::Utc::now())
            .unwrap();
        Shared::new(
            Arc::new(MappingStore::new(table)),
            Arc::new(SipMetrics::default()),
            ResponderConfig {
                contact_port: 5061,
                contact_transport: "tls",
                server: "t".into(),
            },
            rate_limit,
        )
    }

    fn msg(method: &str) -> String {
        format!(
            "{method} sip:persistentchat@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:persistentchat@contoso.com>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\r\n"
        )
    }

    const SRC: Source = Source {
        addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5070),
        datagram: true,
    };

    #[test]
    fn handle_counts_requests_responses_and_drops() {
        let s = shared(None);
        let mut out = Vec::new();
        assert_eq!(
            s.handle(msg("INVITE").as_bytes(), SRC, &mut out),
            Some(Some(SRC.addr))
        );
        assert!(out.starts_with(b"SIP/2.0 302 "));
        assert_eq!(s.handle(msg("ACK").as_bytes(), SRC, &mut out), None);
        assert_eq!(s.handle(b"garbage", SRC, &mut out), None);
        assert_eq!(
            s.handle(msg("BYE").as_bytes(), SRC, &mut out),
            Some(Some(SRC.addr))
        );
        let snap = s.metrics.snapshot();
        let count = |m: &str| snap.requests.iter().find(|(n, _)| *n == m).unwrap().1;
        assert_eq!((count("INVITE"), count("ACK"), count("BYE")), (1, 1, 1));
        let status = |c: u16| snap.responses.iter().find(|(n, _)| *n == c).unwrap().1;
        assert_eq!((status(302), status(405)), (1, 1));
        assert_eq!(snap.acks_absorbed, 1);
        assert_eq!(snap.dropped_unanswerable, 1);
    }

    #[test]
    fn the_rate_limit_drops_and_counts() {
        let s = shared(Some(RateLimit {
            requests: 2,
            window: Duration::from_secs(3600),
        }));
        let mut out = Vec::new();
        let answered = (0..5)
            .filter(|_| s.handle(msg("OPTIONS").as_bytes(), SRC, &mut out).is_some())
            .count();
        assert_eq!(answered, 2);
        assert_eq!(s.metrics.snapshot().dropped_rate_limited, 3);
    }
}
