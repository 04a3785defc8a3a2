//! A per-source rate limit in the spirit of Kamailio's pike module: at most `requests` messages
//! per source IP per `window`; the rest are dropped silently (answering a flood only feeds it).
//!
//! Off by default. The map is behind one mutex held for a few instructions per message; it is
//! trimmed of stale sources when it grows past `MAX_TRACKED_SOURCES`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources remembered before stale ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 100_000;

/// `[redirector] rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// The limiter shared by every transport.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    /// Time origin for window numbers.
    epoch: Instant,
    /// Source → (window number, messages in it).
    seen: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            epoch: Instant::now(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more message from `ip` is allowed now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let window_ms = self.limit.window.as_millis().max(1) as u64;
        let window = now.duration_since(self.epoch).as_millis() as u64 / window_ms;
        let Ok(mut seen) = self.seen.lock() else {
            return true; // a poisoned map must not take the server down
        };
        if seen.len() >= MAX_TRACKED_SOURCES && !seen.contains_key(&ip) {
            seen.retain(|_, (w, _)| *w == window);
        }
        let slot = seen.entry(ip).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.1 <= self.limit.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_source_per_window() {
        let l = RateLimiter::new(RateLimit {
            requests: 3,
            window: Duration::from_secs(1),
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let t0 = l.epoch;
        assert!((0..3).all(|_| l.allow_at(a, t0)));
        assert!(!l.allow_at(a, t0));
        assert!(l.allow_at(b, t0));
        assert!(l.allow_at(a, t0 + Duration::from_millis(1500)));
    }
}
