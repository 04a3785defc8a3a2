//! RFC 4533 refreshAndPersist consumer (syncrepl) on the endpoint container.
//!
//! [`Directory::syncrepl`] sends one search with the Sync Request control (critical, so only
//! where the root DSE advertises it: [`super::Capabilities`] decides) and no other control or
//! adapter: `EntriesOnly` would drop the intermediates that carry the cookie, and a timeout
//! would kill the persist stream. It reports what it sees as [`SyncEvent`]s and returns how the
//! stream ended as a [`SyncEnd`].
//!
//! The persist phase is silent while nothing changes, and a silent network partition looks the
//! same. So every `heartbeat` without a message a cheap search (the root DSE, no attributes) goes
//! over the same connection; its answer is reported as [`SyncEvent::Alive`]. The caller replaces
//! a connection it has heard nothing from (no event, no heartbeat answer) for too long. ldap3's sync parsers panic on malformed BER, so the caller
//! runs this in its own task and treats a panic as a dropped connection.

use ldap3::controls::{
    Control, ControlType, MakeCritical, RefreshMode, SyncInfo, SyncRequest, SyncState,
    parse_syncinfo,
};
use ldap3::{ResultEntry, Scope};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Directory, LiveWatch, SIP_ENABLED_FILTER, describe};
use crate::model::{Dn, attr};

/// LDAP result code e-syncRefreshRequired (RFC 4533 §3.4 / 2.5): the cookie is too old.
pub(crate) const SYNC_REFRESH_REQUIRED: u32 = 4096;

/// The attributes the mapping build reads; asked for so the server checks read access.
const SYNC_ATTRS: &[&str] = &[
    attr::PRIMARY_USER_ADDRESS,
    attr::PRIMARY_HOME_SERVER,
    attr::USER_ENABLED,
    "objectClass",
];

/// What the consumer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncEvent {
    /// An entry was added, modified, deleted, or listed during the refresh phase.
    Changed,
    /// The refresh phase is over: the persist phase follows.
    RefreshDone,
    /// The newest cookie: persist it.
    Cookie(Vec<u8>),
    /// A heartbeat was answered on the stream's connection: it is alive.
    Alive,
}

/// How a syncrepl stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncEnd {
    /// e-syncRefreshRequired (LDAP 4096): drop the cookie and refresh in full.
    RefreshRequired,
    /// The server does not advertise syncrepl (nothing was sent), or refused the control for
    /// this base (LDAP 12: no syncprov on that database).
    Unsupported,
    /// The stream or the connection ended (`reason` is one line): reconnect.
    Lost(String),
    /// The receiver of the events is gone: the watch is stopping.
    Stopped,
}

impl Directory {
    /// Runs a refreshAndPersist search under `base` until it ends; consumes the connection.
    /// `cookie` resumes from where a previous stream stopped; `reload` asks for a full reload
    /// (after LDAP 4096); `heartbeat` is the silence after which the connection is probed.
    pub(crate) async fn syncrepl(
        mut self,
        base: Dn,
        cookie: Option<Vec<u8>>,
        reload: bool,
        heartbeat: Duration,
        events: mpsc::UnboundedSender<SyncEvent>,
    ) -> SyncEnd {
        if self.capabilities.watch != LiveWatch::Syncrepl {
            return SyncEnd::Unsupported;
        }
        let url = self.url.to_string();
        let request = SyncRequest {
            mode: RefreshMode::RefreshAndPersist,
            cookie,
            reload_hint: reload,
        };
        let stream = self
            .ldap
            .with_controls(request.critical())
            .streaming_search(
                base.as_str(),
                Scope::Subtree,
                SIP_ENABLED_FILTER,
                SYNC_ATTRS.to_vec(),
            )
            .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => return SyncEnd::Lost(format!("syncrepl search on {url}: {}", describe(&e))),
        };
        // The probe shares the connection (ldap3 multiplexes operations on one `Ldap`).
        let mut probe = self.ldap.clone();
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = beat.tick() => {
                    if ping(&mut probe, heartbeat).await && events.send(SyncEvent::Alive).is_err() {
                        return SyncEnd::Stopped;
                    }
                    continue;
                }
            };
            // Any message proves the connection alive: the next probe is a whole beat away.
            beat.reset();
            match next {
                Ok(Some(entry)) => {
                    for event in events_of(entry) {
                        if events.send(event).is_err() {
                            // Dropping the connection (its driver) ends the search.
                            return SyncEnd::Stopped;
                        }
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    break Some(SyncEnd::Lost(format!(
                        "syncrepl on {url}: {}",
                        describe(&e)
                    )));
                }
            }
        };
        let result = stream.finish().await;
        if let Some(end) = end {
            return end;
        }
        end_of(result.rc, &result.text, &url)
    }
}

/// Whether the server answers a root DSE read on this connection within `timeout`.
async fn ping(ldap: &mut ldap3::Ldap, timeout: Duration) -> bool {
    let answer = ldap
        .with_timeout(timeout)
        .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await;
    matches!(answer, Ok(result) if result.1.rc == 0)
}

/// How a finished search ends the stream.
fn end_of(rc: u32, text: &str, url: &str) -> SyncEnd {
    match rc {
        SYNC_REFRESH_REQUIRED => SyncEnd::RefreshRequired,
        // unavailableCriticalExtension: the control is advertised (module loaded) but this
        // database has no syncprov overlay.
        12 => SyncEnd::Unsupported,
        0 => SyncEnd::Lost(format!(
            "syncrepl on {url}: the server ended the persist search"
        )),
        rc if text.is_empty() => SyncEnd::Lost(format!("syncrepl on {url}: LDAP {rc}")),
        rc => SyncEnd::Lost(format!("syncrepl on {url}: LDAP {rc}: {text}")),
    }
}

/// The events one message carries. Panics on malformed BER (inside ldap3).
fn events_of(entry: ResultEntry) -> Vec<SyncEvent> {
    if entry.is_ref() {
        return Vec::new();
    }
    if entry.is_intermediate() {
        return events_of_info(parse_syncinfo(entry));
    }
    let state = entry.1.iter().find_map(|c| match c {
        Control(Some(ControlType::SyncState), raw) => Some(raw.parse::<SyncState>()),
        _ => None,
    });
    let mut out = Vec::new();
    if let Some(cookie) = state.and_then(|s| s.cookie) {
        out.push(SyncEvent::Cookie(cookie));
    }
    out.push(SyncEvent::Changed);
    out
}

/// The events of a Sync Info intermediate message.
fn events_of_info(info: SyncInfo) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    let (cookie, done, changed) = match info {
        SyncInfo::NewCookie(c) => (Some(c), false, false),
        SyncInfo::RefreshDelete {
            cookie,
            refresh_done,
        }
        | SyncInfo::RefreshPresent {
            cookie,
            refresh_done,
        } => (cookie, refresh_done, false),
        // A set of entryUUIDs deleted (or present): the table may have changed.
        SyncInfo::SyncIdSet { cookie, .. } => (cookie, false, true),
    };
    if let Some(c) = cookie {
        out.push(SyncEvent::Cookie(c));
    }
    if changed {
        out.push(SyncEvent::Changed);
    }
    if done {
        out.push(SyncEvent::RefreshDone);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_done_markers_carry_the_cookie_first() {
        let info = SyncInfo::RefreshPresent {
            cookie: Some(b"rid=001,csn=1".to_vec()),
            refresh_done: true,
        };
        assert_eq!(
            events_of_info(info),
            vec![
                SyncEvent::Cookie(b"rid=001,csn=1".to_vec()),
                SyncEvent::RefreshDone
            ]
        );
        let info = SyncInfo::RefreshDelete {
            cookie: None,
            refresh_done: false,
        };
        assert!(events_of_info(info).is_empty());
    }

    #[test]
    fn a_new_cookie_is_only_a_cookie_and_an_id_set_is_a_change() {
        assert_eq!(
            events_of_info(SyncInfo::NewCookie(b"c".to_vec())),
            vec![SyncEvent::Cookie(b"c".to_vec())]
        );
        let ids = SyncInfo::SyncIdSet {
            cookie: None,
            refresh_deletes: true,
            sync_uuids: Default::default(),
        };
        assert_eq!(events_of_info(ids), vec![SyncEvent::Changed]);
    }

    #[test]
    fn result_codes_map_to_how_the_stream_ends() {
        assert_eq!(end_of(4096, "", "ldap://x"), SyncEnd::RefreshRequired);
        assert_eq!(end_of(12, "", "ldap://x"), SyncEnd::Unsupported);
        assert!(matches!(end_of(0, "", "ldap://x"), SyncEnd::Lost(m) if m.contains("ended")));
        assert!(
            matches!(end_of(52, "unavailable", "ldap://x"), SyncEnd::Lost(m) if m.contains("LDAP 52: unavailable"))
        );
    }
}
