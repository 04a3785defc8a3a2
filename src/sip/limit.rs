//! A per-source rate limit in the spirit of Kamailio's pike module: at most `requests` messages
//! per source IP per `window` (fixed windows counted from start-up); the rest are dropped
//! silently (answering a flood only feeds it) and counted, and the first drop of a source in a
//! window is reported by a warning, at most one every `WARN_INTERVAL` for all sources together.
//!
//! Off by default. The map is behind one mutex held for a few instructions per message. When it
//! holds `MAX_TRACKED_SOURCES` sources, sources not seen in the current window are forgotten, at
//! most once per window (so a flood from many addresses cannot make every message scan the map);
//! if every tracked source is still current, a new source is let through untracked until the
//! next window. A per-source limit stops a few heavy senders; no per-source limit stops a flood
//! spread over that many addresses, and locking out every new client would be worse.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sources remembered before stale ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 100_000;
/// Least time between two "source over the limit" warnings.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// `last_warning_ms` before the first warning.
const NEVER: u64 = u64::MAX;

/// `[redirector] rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// What the limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Over the limit: the first such message of this source in this window.
    FirstDrop,
    /// Over the limit, again.
    Drop,
}

/// The limiter shared by every transport.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    max_sources: usize,
    /// Time origin for window numbers.
    epoch: Instant,
    /// Why a mutex: every transport's workers count into the same map; it is held only for one
    /// lookup and increment (and, at most once per window, one trim).
    sources: Mutex<Sources>,
    /// Milliseconds since `epoch` of the last warning (`NEVER`): an atomic so that deciding
    /// whether to warn takes no lock.
    last_warning_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Sources {
    /// Source → (window number, messages in it).
    seen: HashMap<IpAddr, (u64, u32)>,
    /// The window in which the map was last trimmed.
    trimmed_in: Option<u64>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_max_sources(limit, MAX_TRACKED_SOURCES)
    }

    fn with_max_sources(limit: RateLimit, max_sources: usize) -> RateLimiter {
        RateLimiter {
            limit,
            max_sources,
            epoch: Instant::now(),
            sources: Mutex::new(Sources::default()),
            last_warning_ms: AtomicU64::new(NEVER),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one message from `ip` and says whether it may be answered.
    pub(crate) fn check(&self, ip: IpAddr) -> Verdict {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Verdict {
        let window_ms = self.limit.window.as_millis().max(1) as u64;
        let window = now.duration_since(self.epoch).as_millis() as u64 / window_ms;
        let Ok(mut sources) = self.sources.lock() else {
            return Verdict::Allow; // a poisoned map must not take the server down
        };
        let sources = &mut *sources;
        if sources.seen.len() >= self.max_sources && !sources.seen.contains_key(&ip) {
            if sources.trimmed_in != Some(window) {
                sources.seen.retain(|_, (w, _)| *w == window);
                sources.trimmed_in = Some(window);
            }
            if sources.seen.len() >= self.max_sources {
                return Verdict::Allow;
            }
        }
        let slot = sources.seen.entry(ip).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        match slot.1.checked_sub(self.limit.requests) {
            None | Some(0) => Verdict::Allow,
            Some(1) => Verdict::FirstDrop,
            Some(_) => Verdict::Drop,
        }
    }

    /// Whether a warning may be logged now (then the next one waits `WARN_INTERVAL`).
    pub(crate) fn warning_due(&self) -> bool {
        self.warning_due_at(Instant::now())
    }

    fn warning_due_at(&self, now: Instant) -> bool {
        let now_ms = now.duration_since(self.epoch).as_millis() as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == NEVER || now_ms.saturating_sub(last) >= WARN_INTERVAL.as_millis() as u64;
        // One winner among workers racing for the same warning.
        due && self
            .last_warning_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().map(|s| s.seen.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, window_ms: u64, max_sources: usize) -> RateLimiter {
        RateLimiter::with_max_sources(
            RateLimit {
                requests,
                window: Duration::from_millis(window_ms),
            },
            max_sources,
        )
    }

    #[test]
    fn limits_each_source_per_window() {
        let l = limiter(3, 1000, MAX_TRACKED_SOURCES);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let t0 = l.epoch;
        assert!((0..3).all(|_| l.check_at(a, t0) == Verdict::Allow));
        assert_eq!(l.check_at(a, t0), Verdict::FirstDrop);
        assert_eq!(l.check_at(a, t0), Verdict::Drop);
        assert_eq!(l.check_at(b, t0), Verdict::Allow);
        assert_eq!(
            l.check_at(a, t0 + Duration::from_millis(1500)),
            Verdict::Allow
        );
    }

    #[test]
    fn a_full_map_is_trimmed_once_per_window_and_new_sources_pass_untracked() {
        let l = limiter(1, 1000, 4);
        let t0 = l.epoch;
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        for i in 0..4 {
            assert_eq!(l.check_at(ip(i), t0), Verdict::Allow);
        }
        // Full of current sources: a new one is not tracked, so never limited in this window.
        assert_eq!(l.check_at(ip(9), t0), Verdict::Allow);
        assert_eq!(l.check_at(ip(9), t0), Verdict::Allow);
        assert_eq!(l.tracked(), 4);
        // Tracked sources are still limited.
        assert_eq!(l.check_at(ip(0), t0), Verdict::FirstDrop);
        // Next window: the stale sources are forgotten and the new one is tracked again.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(l.check_at(ip(9), t1), Verdict::Allow);
        assert_eq!(l.tracked(), 1);
        assert_eq!(l.check_at(ip(9), t1), Verdict::FirstDrop);
    }

    #[test]
    fn warnings_are_spaced() {
        let l = limiter(1, 1000, 4);
        let t0 = l.epoch;
        assert!(l.warning_due_at(t0));
        assert!(!l.warning_due_at(t0 + Duration::from_secs(9)));
        assert!(l.warning_due_at(t0 + WARN_INTERVAL));
        assert!(!l.warning_due_at(t0 + WARN_INTERVAL));
    }
}
