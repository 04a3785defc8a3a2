//! The live watch: keeps the mapping table current between scheduled runs, with the cheapest
//! mechanism the server allows. [`Mechanism`] names the ones there are and [`choose`] picks one
//! from `[daemon] watch` and what the server offers; [`syncrepl`] and [`ad`] run the two that
//! keep a connection of their own; polling (a refresh every interval) is here.

pub(crate) mod ad;
pub(crate) mod syncrepl;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Daemon;
use crate::config::{Settings, WatchMode};
use crate::ldap::LiveWatch;
use crate::schedule::Trigger;

/// The watch mechanism actually run, as `/healthz` (`watch.mode`) and `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// RFC 4533 refreshAndPersist ([`syncrepl`]).
    Syncrepl,
    /// DirSync with a cookie ([`ad`]).
    DirSync,
    /// uSNChanged polling ([`ad`]).
    UsnPolling,
    /// A refresh (full container rescan) every poll interval.
    Poll,
    /// No watch.
    Off,
}

impl Mechanism {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mechanism::Syncrepl => "syncrepl",
            Mechanism::DirSync => "dirsync",
            Mechanism::UsnPolling => "usn-polling",
            Mechanism::Poll => "poll",
            Mechanism::Off => "off",
        }
    }
}

/// The mechanism for `mode` on a server whose capabilities chose `offered` (DirSync already
/// verified or refused by `Directory::verify_dirsync`).
pub(crate) fn choose(mode: WatchMode, offered: LiveWatch) -> Mechanism {
    match (mode, offered) {
        (WatchMode::Off, _) => Mechanism::Off,
        (WatchMode::Poll, _) => Mechanism::Poll,
        (WatchMode::Auto, LiveWatch::Syncrepl) => Mechanism::Syncrepl,
        (WatchMode::Auto, LiveWatch::DirSync) => Mechanism::DirSync,
        (WatchMode::Auto, LiveWatch::UsnPolling) => Mechanism::UsnPolling,
        (WatchMode::Auto, LiveWatch::Rescan) => Mechanism::Poll,
    }
}

/// Keeps the table current between ticks, with the cheapest mechanism the server allows
/// ([`ad::choose`]); `/healthz` `watch.mode` and `/metrics` `pcsync_watch_mode` say which:
///
/// - `syncrepl` ([`syncrepl`], `watch = "auto"` where advertised): a refresh per change,
///   within a second;
/// - `dirsync` / `usn-polling` ([`ad`], `watch = "auto"` on Active Directory, DirSync
///   where the account has the right): every `poll_interval` one small search (a DirSync from
///   the cookie, or a root DSE read and a container listing only when the DC's USN moved), a
///   refresh only when the endpoint container changed;
/// - `poll` (`watch = "poll"`, or a server with neither): a refresh (a whole endpoint-container
///   rescan, built, validated and published by the redirector's own worker; a version changes
///   only when entries do) every `poll_interval`. The refresh outcomes tell whether the
///   directory is reachable; regaining it counts as a reconnect.
pub(crate) async fn run(daemon: Arc<Daemon>, token: CancellationToken) {
    use std::sync::atomic::Ordering::Relaxed;
    let settings = daemon.settings.load_full();
    let mode = settings.daemon.watch;
    let interval = settings.daemon.poll_interval;
    let (mechanism, state) = if mode == WatchMode::Off {
        (Mechanism::Off, "off")
    } else {
        (Mechanism::Poll, "starting")
    };
    daemon.status.update(|s| {
        s.watch.mode = mechanism.as_str();
        s.watch.interval_ms = interval.as_millis() as u64;
        s.watch.state = state;
    });
    if mode == WatchMode::Off {
        return;
    }
    if mode == WatchMode::Auto {
        daemon
            .status
            .update(|s| s.watch.mode = Mechanism::Syncrepl.as_str());
        match syncrepl::run(Arc::clone(&daemon), token.clone()).await {
            syncrepl::WatchEnd::Stopped => return,
            syncrepl::WatchEnd::Unsupported => {}
        }
        // adwatch names the mechanism (dirsync or usn-polling) once it has connected.
        daemon
            .status
            .update(|s| s.watch.mode = Mechanism::UsnPolling.as_str());
        match ad::run(Arc::clone(&daemon), token.clone()).await {
            ad::WatchEnd::Stopped => return,
            ad::WatchEnd::Unsupported => {
                info!(
                    "neither syncrepl (not advertised, or LDAP 12: no syncprov on the database) nor uSNChanged (not Active Directory): the watch polls instead"
                );
                daemon
                    .status
                    .update(|s| s.watch.mode = Mechanism::Poll.as_str());
            }
        }
    }
    let counters = &daemon.redirector.store.refresh;
    let mut last = (counters.ok.load(Relaxed), counters.failed.load(Relaxed));
    let mut was_failing = false;
    // While the directory is unreachable, attempts back off from reconnect_min to
    // reconnect_max (doubling) instead of hammering it every poll.
    let (backoff_min, backoff_max) = (settings.daemon.reconnect_min, settings.daemon.reconnect_max);
    let mut backoff = backoff_min;
    let mut next_attempt = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = (counters.ok.load(Relaxed), counters.failed.load(Relaxed));
        let (ok, failed) = (now.0 > last.0, now.1 > last.1);
        last = now;
        if ok || failed {
            // The latest outcome wins when both moved.
            let failing = failed && !ok;
            if was_failing && !failing {
                info!("directory reachable again: watch resumed");
                daemon.status.update(|s| s.watch.reconnects += 1);
            } else if failing && !was_failing {
                warn!(
                    "watch: directory unreachable, serving the current table; retrying every {interval:?}"
                );
            }
            was_failing = failing;
            if failing {
                next_attempt = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(backoff_max);
            } else {
                backoff = backoff_min;
            }
            daemon.status.update(|s| {
                s.watch.state = if failing { "failing" } else { "ok" };
            });
            daemon.status.directory(!failing, None, Utc::now());
        }
        if tokio::time::Instant::now() < next_attempt {
            continue;
        }
        // Full = a refresh is pending already; this poll coalesces into it.
        let _ = daemon.redirector.triggers.try_send(Trigger::Manual);
    }
}

/// Reconnect bookkeeping of a watch that keeps its own connection (syncrepl, the AD watch):
/// one warning per outage (then debug), `watch.state` and the directory state, a wait that
/// doubles from `reconnect_min` to `reconnect_max`, and the reconnect count.
pub(crate) struct Reconnect {
    /// Names the watch in the log ("syncrepl watch", "AD watch").
    name: &'static str,
    failing: bool,
    backoff: Duration,
    min: Duration,
    max: Duration,
}

impl Reconnect {
    pub(crate) fn new(name: &'static str, settings: &Settings) -> Reconnect {
        Reconnect {
            name,
            failing: false,
            backoff: settings.daemon.reconnect_min,
            min: settings.daemon.reconnect_min,
            max: settings.daemon.reconnect_max,
        }
    }

    /// The watch is connected (again): counts a reconnect after an outage, resets the wait.
    pub(crate) fn connected(&mut self, daemon: &Daemon) {
        if self.failing {
            info!("directory reachable again: {} resumed", self.name);
            daemon.status.update(|s| s.watch.reconnects += 1);
        }
        self.failing = false;
        self.backoff = self.min;
        daemon.status.update(|s| s.watch.state = "connected");
        daemon.status.directory(true, None, Utc::now());
    }

    /// The connection was lost (or never made) for `reason`.
    pub(crate) fn lost(&mut self, daemon: &Daemon, reason: String) {
        if !self.failing {
            warn!(
                "{}: {reason}; serving the current table, reconnecting in {:?}",
                self.name, self.backoff
            );
        } else {
            debug!("{}: {reason}", self.name);
        }
        self.failing = true;
        daemon.status.update(|s| s.watch.state = "failing");
        daemon.status.directory(false, Some(reason), Utc::now());
    }

    /// Waits before the next attempt; `false` when cancelled meanwhile.
    pub(crate) async fn wait(&mut self, token: &CancellationToken) -> bool {
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(self.backoff) => {}
        }
        self.backoff = (self.backoff * 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mechanism_follows_the_mode_and_what_the_server_offers() {
        use LiveWatch::*;
        assert_eq!(choose(WatchMode::Auto, Syncrepl), Mechanism::Syncrepl);
        assert_eq!(choose(WatchMode::Auto, DirSync), Mechanism::DirSync);
        assert_eq!(choose(WatchMode::Auto, UsnPolling), Mechanism::UsnPolling);
        assert_eq!(choose(WatchMode::Auto, Rescan), Mechanism::Poll);
        for offered in [Syncrepl, DirSync, UsnPolling, Rescan] {
            assert_eq!(choose(WatchMode::Poll, offered), Mechanism::Poll);
            assert_eq!(choose(WatchMode::Off, offered), Mechanism::Off);
        }
        assert_eq!(Mechanism::UsnPolling.as_str(), "usn-polling");
        assert_eq!(Mechanism::DirSync.as_str(), "dirsync");
    }
}
