//! Counters of the redirect server: plain atomics, so the hot path pays one relaxed increment per
//! count and the daemon's `/metrics` endpoint can render a [`Snapshot`] however it likes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::message::Method;
use super::redirect::ResponseStatus;

/// Methods counted by name; everything else is `other`.
pub(crate) const METHODS: [&str; 12] = [
    "INVITE",
    "ACK",
    "OPTIONS",
    "BYE",
    "CANCEL",
    "REGISTER",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "INFO",
    "REFER",
    "other",
];

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Unreadable, a response, or no usable Via: nothing to address an answer with.
    Unanswerable,
    /// Over the per-source rate limit.
    RateLimited,
    /// A TCP/TLS connection refused at the connection cap.
    ConnectionCap,
    /// A stream message over the size cap or without Content-Length (connection closed).
    Framing,
    /// The response could not be sent (socket error).
    SendFailed,
}

/// Every counter of one server.
#[derive(Debug, Default)]
pub(crate) struct SipMetrics {
    requests: [AtomicU64; METHODS.len()],
    responses: [AtomicU64; ResponseStatus::ALL.len()],
    acks_absorbed: AtomicU64,
    dropped_unanswerable: AtomicU64,
    dropped_rate_limited: AtomicU64,
    dropped_connection_cap: AtomicU64,
    dropped_framing: AtomicU64,
    send_failed: AtomicU64,
    keepalives: AtomicU64,
    connections_open: AtomicU64,
    reconnects_sent: AtomicU64,
    reconnects_failed: AtomicU64,
}

/// A point-in-time copy of [`SipMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Snapshot {
    /// `(method, count)`, every method in [`METHODS`].
    pub requests: Vec<(&'static str, u64)>,
    /// `(status code, count)`.
    pub responses: Vec<(u16, u64)>,
    pub acks_absorbed: u64,
    pub dropped_unanswerable: u64,
    pub dropped_rate_limited: u64,
    pub dropped_connection_cap: u64,
    pub dropped_framing: u64,
    pub send_failed: u64,
    pub keepalives: u64,
    pub connections_open: u64,
    /// Responses sent on a new TCP connection because the request's was gone (§18.2.2).
    pub reconnects_sent: u64,
    /// Such attempts that failed (connect refused or timed out, write failed, over the cap).
    pub reconnects_failed: u64,
}

impl SipMetrics {
    pub(crate) fn request(&self, method: Method<'_>) {
        let i = match method {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Options => 2,
            Method::Bye => 3,
            Method::Cancel => 4,
            Method::Register => 5,
            Method::Message => 6,
            Method::Subscribe => 7,
            Method::Notify => 8,
            Method::Info => 9,
            Method::Refer => 10,
            Method::Other(_) => 11,
        };
        self.requests[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn response(&self, status: ResponseStatus) {
        self.responses[status.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn ack_absorbed(&self) {
        self.acks_absorbed.fetch_add(1, Relaxed);
    }

    pub(crate) fn dropped(&self, why: DropReason) {
        let c = match why {
            DropReason::Unanswerable => &self.dropped_unanswerable,
            DropReason::RateLimited => &self.dropped_rate_limited,
            DropReason::ConnectionCap => &self.dropped_connection_cap,
            DropReason::Framing => &self.dropped_framing,
            DropReason::SendFailed => &self.send_failed,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn keepalive(&self) {
        self.keepalives.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A response went out on a new connection (`true`) or could not (`false`).
    pub(crate) fn reconnect(&self, sent: bool) {
        let c = if sent {
            &self.reconnects_sent
        } else {
            &self.reconnects_failed
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: METHODS
                .iter()
                .zip(&self.requests)
                .map(|(m, c)| (*m, c.load(Relaxed)))
                .collect(),
            responses: ResponseStatus::ALL
                .iter()
                .zip(&self.responses)
                .map(|(s, c)| (s.code(), c.load(Relaxed)))
                .collect(),
            acks_absorbed: self.acks_absorbed.load(Relaxed),
            dropped_unanswerable: self.dropped_unanswerable.load(Relaxed),
            dropped_rate_limited: self.dropped_rate_limited.load(Relaxed),
            dropped_connection_cap: self.dropped_connection_cap.load(Relaxed),
            dropped_framing: self.dropped_framing.load(Relaxed),
            send_failed: self.send_failed.load(Relaxed),
            keepalives: self.keepalives.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            reconnects_sent: self.reconnects_sent.load(Relaxed),
            reconnects_failed: self.reconnects_failed.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_outcomes_are_counted_apart() {
        let m = SipMetrics::default();
        m.reconnect(true);
        m.reconnect(false);
        m.reconnect(false);
        let s = m.snapshot();
        assert_eq!((s.reconnects_sent, s.reconnects_failed), (1, 2));
        assert_eq!(s.send_failed, 0);
    }
}
