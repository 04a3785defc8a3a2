//! The live watch: keeps the mapping table current between scheduled runs, with the cheapest
//! mechanism the server allows. [`Mechanism`] names them; [`choose`] picks one, in this one
//! place, from `[daemon] watch` and what the server offers on each connection:
//!
//! - `syncrepl` ([`syncrepl`], OpenLDAP with syncprov): a refresh per change, within a second;
//! - `dirsync` / `usn-polling` ([`ad`], Active Directory): every `poll_interval` one small search
//!   (a DirSync from the cookie, or a root DSE read and a container listing only when the DC's
//!   USN moved), a refresh only when the endpoint container changed;
//! - `poll` ([`poll`]; `watch = "poll"`, or a server with neither): a refresh (a whole
//!   endpoint-container rescan, built, validated and published by the refresh worker; a version
//!   changes only when entries do) every `poll_interval`.
//!
//! Every mechanism that keeps a connection must hear from the directory at least every
//! `[daemon] watch_timeout` (an event, a heartbeat answer, a poll's answer); a connection silent
//! that long is replaced, so a frozen network path (no packets, no close) costs at most one
//! `watch_timeout` plus a reconnect. A reload restarts the watch with the new settings (new
//! credentials, container, mode), on a new connection.

pub(crate) mod ad;
pub(crate) mod poll;
pub(crate) mod syncrepl;

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Daemon;
use super::backoff::Backoff;
pub(crate) use super::status::Mechanism;
use super::status::{WatchPhase, stamp};
use super::tree::TaskName;
use crate::config::{Settings, WatchMode};
use crate::ldap::{Directory, LiveWatch};
use crate::mapping::refresh::agent_connection;
use crate::schedule::Trigger;

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

/// How a watch on one connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The agent is stopping.
    Stopped,
    /// The mechanism turned out not to work on this server (syncrepl refused with LDAP 12, no
    /// USN on the root DSE): the watch polls from now on.
    Unsupported,
    /// Reconnect at once (syncrepl after LDAP 4096: a full refresh is due).
    Again,
    /// The connection failed, or went silent: reconnect after the backoff.
    Lost(String),
}

/// Runs the watch until `token` is cancelled; a reload restarts it with the new settings.
pub(crate) async fn run(daemon: Arc<Daemon>, token: CancellationToken) {
    let mut settings = daemon.settings.subscribe();
    loop {
        let current = settings.borrow_and_update().clone();
        tokio::select! {
            _ = token.cancelled() => return,
            () = watch_with(&daemon, &current, &token) => return,
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                info!("watch: configuration reloaded; reconnecting with it");
            }
        }
    }
}

/// The watch with one configuration, until cancelled.
async fn watch_with(daemon: &Arc<Daemon>, settings: &Settings, token: &CancellationToken) {
    let d = &settings.daemon;
    daemon.status.update(|s| {
        s.watch.interval_ms = d.poll_interval.as_millis() as u64;
        s.watch.timeout_ms = d.watch_timeout.as_millis() as u64;
    });
    match d.watch {
        WatchMode::Off => {
            show(daemon, Mechanism::Off, WatchPhase::Off);
            token.cancelled().await;
        }
        WatchMode::Poll => poll::run(daemon, settings, token).await,
        WatchMode::Auto => {
            show(daemon, Mechanism::Poll, WatchPhase::Starting);
            if connected(daemon, settings, token).await == End::Unsupported {
                info!(
                    "neither syncrepl (not advertised, or LDAP 12: no syncprov on the database) nor uSNChanged (not Active Directory): the watch polls instead"
                );
                poll::run(daemon, settings, token).await;
            }
        }
    }
}

/// One connection at a time, the mechanism chosen on each, until cancelled (`Stopped`) or the
/// server offers nothing better than polling (`Unsupported`).
async fn connected(daemon: &Arc<Daemon>, settings: &Settings, token: &CancellationToken) -> End {
    let mut link = Link::new(daemon, settings);
    let mut sync = syncrepl::Syncrepl::new(settings);
    loop {
        let attempt = async {
            let mut dir =
                match Directory::connect_with(&settings.directory, &agent_connection(settings))
                    .await
                {
                    Ok(d) => d,
                    Err(e) => return End::Lost(e.to_string()),
                };
            let offered = match offered(&mut dir, settings).await {
                Ok(o) => o,
                Err(e) => return End::Lost(e),
            };
            match choose(WatchMode::Auto, offered) {
                Mechanism::Syncrepl => sync.watch(daemon, settings, dir, &mut link).await,
                m @ (Mechanism::DirSync | Mechanism::UsnPolling) => {
                    let end = ad::watch(daemon, settings, &mut dir, m, &mut link).await;
                    dir.close().await;
                    end
                }
                Mechanism::Poll | Mechanism::Off => {
                    dir.close().await;
                    End::Unsupported
                }
            }
        };
        let end = tokio::select! {
            _ = token.cancelled() => End::Stopped,
            end = attempt => end,
        };
        match end {
            End::Stopped | End::Unsupported => return end,
            End::Again => continue,
            End::Lost(reason) => link.lost(reason),
        }
        if !link.wait(token).await {
            return End::Stopped;
        }
    }
}

/// What the server offers for watching, DirSync verified on Active Directory.
async fn offered(dir: &mut Directory, settings: &Settings) -> Result<LiveWatch, String> {
    if dir.capabilities().watch == LiveWatch::Syncrepl {
        return Ok(LiveWatch::Syncrepl);
    }
    let bases = [
        &settings.directory.base_dn,
        &settings.layout.endpoint_container,
    ];
    match dir.verify_dirsync(&bases).await {
        Ok(caps) => Ok(caps.watch),
        Err(e) => Err(e.to_string()),
    }
}

fn show(daemon: &Daemon, mode: Mechanism, state: WatchPhase) {
    daemon.status.update(|s| {
        s.watch.mode = mode;
        s.watch.state = state;
    });
}

/// Asks the refresh worker for a refresh because the watch saw a change, and counts it.
pub(crate) fn ask_refresh(daemon: &Daemon) {
    daemon.status.update(|s| s.watch.triggers += 1);
    // Full = a refresh is pending already; this change coalesces into it.
    let _ = daemon.refresh.try_send(Trigger::Watch);
}

/// The bookkeeping of a watch that keeps its own connection: one warning per outage (then
/// debug), the watch's state and the directory's in `/healthz`, the time it last heard from
/// the directory, the reconnect count, and the [`Backoff`] between attempts.
pub(crate) struct Link<'a> {
    daemon: &'a Daemon,
    failing: bool,
    backoff: Backoff,
}

impl<'a> Link<'a> {
    pub(crate) fn new(daemon: &'a Daemon, settings: &Settings) -> Link<'a> {
        Link {
            daemon,
            failing: false,
            backoff: Backoff::from_settings(&settings.daemon),
        }
    }

    /// The watch runs `mechanism` on a new connection: counts a reconnect after an outage.
    pub(crate) fn connected(&mut self, mechanism: Mechanism) {
        if self.failing {
            info!("directory reachable again: watch ({mechanism}) resumed");
            self.daemon.status.update(|s| s.watch.reconnects += 1);
        }
        self.failing = false;
        self.backoff.reset();
        show(self.daemon, mechanism, WatchPhase::Connected);
        let now = Utc::now();
        self.daemon.status.directory(true, None, now);
        self.daemon.status.attempt(TaskName::Watch, Ok(()), now);
        self.heard();
    }

    /// The directory answered on the watch's connection.
    pub(crate) fn heard(&self) {
        let now = stamp(Utc::now());
        self.daemon
            .status
            .update(|s| s.watch.last_message_at = Some(now));
    }

    /// The connection was lost, went silent, or could not be made, for `reason`.
    pub(crate) fn lost(&mut self, reason: String) {
        if self.failing {
            debug!("watch: {reason}");
        } else {
            warn!(
                "watch: {reason}; serving the current table, reconnecting in {:?}",
                self.backoff.peek()
            );
        }
        self.failing = true;
        self.daemon
            .status
            .update(|s| s.watch.state = WatchPhase::Failing);
        let now = Utc::now();
        self.daemon
            .status
            .directory(false, Some(reason.clone()), now);
        self.daemon
            .status
            .attempt(TaskName::Watch, Err(reason), now);
    }

    /// Waits before the next attempt; `false` when cancelled meanwhile.
    pub(crate) async fn wait(&mut self, token: &CancellationToken) -> bool {
        self.backoff.wait(token).await
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
