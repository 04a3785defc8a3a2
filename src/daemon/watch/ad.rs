//! The Active Directory live watch, on one kept connection: DirSync where the account may use
//! it, uSNChanged polling otherwise.
//!
//! AD has no syncrepl. With **DirSync** (the account has "Replicating Directory Changes",
//! verified by `Directory::verify_dirsync`), every `daemon.poll_interval` one DirSync search of
//! the naming context holding the endpoint container, from the last cookie, returns only what
//! changed since; a refresh is asked for when an object in the container changed or a
//! tombstone appeared (deleted objects keep no container DN, so any deletion in that naming
//! context counts: the configuration NC rarely sees one).
//!
//! With **uSNChanged polling**, every `daemon.poll_interval` this watch reads the DC's
//! `highestCommittedUSN` from the root DSE (one tiny search); only when it moved does it list
//! `(DN, uSNChanged)` of the SIP-enabled objects in the endpoint container (the only base the
//! mapping table is built from), and only when that listing differs from the previous one does
//! it ask the redirector's worker for a refresh (built whole, validated, published). An
//! addition or modification changes a `uSNChanged`; a deletion (or an object losing its SIP
//! address) removes a DN from the listing: so deletions are seen within the same bound without
//! tombstones, the show-deleted control or any right beyond reading the container.
//!
//! Either way the bound is one `poll_interval` plus a refresh. A round that takes longer than
//! `[daemon] watch_timeout` is a connection gone silent, replaced like a lost one. [`UsnTracker`]
//! and [`dirsync_relevant`] are the pure decisions, unit-tested below.

use tracing::{debug, info};

use super::{End, Link, Mechanism, ask_refresh};
use crate::config::Settings;
use crate::daemon::{Daemon, log_safe};
use crate::ldap::{Directory, UsnListing, UsnMark};
use crate::model::{Dn, attr};

/// What one observation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The first listing on this connection or DC: the table is refreshed, since changes may
    /// have happened before it.
    Baseline,
    /// Nothing that the table is built from changed.
    Unchanged,
    /// DirSync returned objects in the container, or tombstones.
    Seen { objects: usize },
    /// Objects appeared, changed or disappeared.
    Changed {
        added: usize,
        modified: usize,
        removed: usize,
    },
}

impl Verdict {
    /// Whether the table must be refreshed.
    pub(crate) fn refresh(&self) -> bool {
        !matches!(self, Verdict::Unchanged)
    }
}

/// The last USN mark and listing seen on the current connection (a new connection starts a
/// new tracker).
#[derive(Debug, Default)]
pub(crate) struct UsnTracker {
    mark: Option<UsnMark>,
    listing: Option<UsnListing>,
}

impl UsnTracker {
    /// Whether this poll must list the container: nothing seen yet, another DC database (USNs
    /// are per database: another DC, or the same DC restored from a backup, which has a new
    /// `invocationId`), or the DC's highest committed USN moved.
    pub(crate) fn needs_listing(&self, mark: &UsnMark) -> bool {
        self.listing.is_none() || self.mark.as_ref() != Some(mark)
    }

    /// The DC database of the last mark (its `invocationId`), empty before any.
    pub(crate) fn database(&self) -> String {
        self.mark.as_ref().map(|m| m.dc.clone()).unwrap_or_default()
    }

    /// Records a mark read *before* `listing` and compares the listing with the previous one.
    pub(crate) fn observe(&mut self, mark: UsnMark, listing: UsnListing) -> Verdict {
        let same_dc = self.mark.as_ref().is_some_and(|m| m.dc == mark.dc);
        let verdict = match (&self.listing, same_dc) {
            (Some(old), true) => diff(old, &listing),
            _ => Verdict::Baseline,
        };
        self.mark = Some(mark);
        self.listing = Some(listing);
        verdict
    }
}

fn diff(old: &UsnListing, new: &UsnListing) -> Verdict {
    let added = new.keys().filter(|dn| !old.contains_key(*dn)).count();
    let removed = old.keys().filter(|dn| !new.contains_key(*dn)).count();
    let modified = new
        .iter()
        .filter(|(dn, usn)| old.get(*dn).is_some_and(|o| o != *usn))
        .count();
    if added + removed + modified == 0 {
        Verdict::Unchanged
    } else {
        Verdict::Changed {
            added,
            modified,
            removed,
        }
    }
}

/// The attributes DirSync is asked for: an object comes back when one of them changed. What
/// the table is built from, and `isDeleted` for tombstones.
const DIRSYNC_ATTRS: &[&str] = &[
    attr::OBJECT_CLASS,
    attr::PRIMARY_USER_ADDRESS,
    attr::USER_ENABLED,
    attr::PRIMARY_HOME_SERVER,
    attr::OWNER_URN,
    attr::DISPLAY_NAME,
    "isDeleted",
];

/// Whether an object DirSync returned can change the table: it lies in `container`, or it is
/// a tombstone (`CN=name\0ADEL:guid`, in `CN=Deleted Objects`: where it lived is gone), or
/// its DN does not parse (asking for a refresh is the safe side).
pub(crate) fn dirsync_relevant(dn: &str, container: &Dn) -> bool {
    let lower = dn.to_ascii_lowercase();
    if lower.contains("\\0adel:") || lower.contains("cn=deleted objects,") {
        return true;
    }
    Dn::parse(dn).map_or(true, |d| d.is_within(container))
}

/// What one DirSync round (from the cookie, until `moreResults` is off) found: the first round
/// of a connection is the baseline; later ones found `relevant` objects or none.
pub(crate) fn dirsync_verdict(baseline: bool, relevant: usize) -> Verdict {
    if baseline {
        Verdict::Baseline
    } else if relevant > 0 {
        Verdict::Seen { objects: relevant }
    } else {
        Verdict::Unchanged
    }
}

/// Watches with `mechanism` (DirSync or uSNChanged polling) on `dir` until the connection fails
/// or goes silent. Everything it remembers (the USN listing, the DirSync cookie) lives in this
/// call, so a new connection, after a lost one, starts with a baseline that refreshes the table:
/// changes made while disconnected are not missed, and USNs of another DC are never compared.
pub(crate) async fn watch(
    daemon: &Daemon,
    settings: &Settings,
    dir: &mut Directory,
    mechanism: Mechanism,
    link: &mut Link<'_>,
) -> End {
    link.connected(mechanism);
    info!(
        url = %dir.url(),
        mechanism = mechanism.as_str(),
        interval = ?settings.daemon.poll_interval,
        reason = %dir.capabilities().watch_reason,
        "AD watch connected"
    );
    let container = &settings.layout.endpoint_container;
    let mut poller = match (mechanism, dir.naming_context_of(container)) {
        (Mechanism::DirSync, Some(nc)) => Poller::DirSync {
            nc,
            cookie: Vec::new(),
        },
        (Mechanism::DirSync, None) => {
            info!(container = %container, "the endpoint container is in no naming context the root DSE lists: polling uSNChanged instead");
            link.connected(Mechanism::UsnPolling);
            Poller::Usn(UsnTracker::default())
        }
        _ => Poller::Usn(UsnTracker::default()),
    };
    let silence = settings.daemon.watch_timeout;
    let mut ticker = tokio::time::interval(settings.daemon.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // A round is a few small searches; one that takes longer than watch_timeout is a
        // connection gone silent.
        let round = tokio::time::timeout(silence, poller.round(dir, container)).await;
        let verdict = match round {
            Ok(Ok(v)) => v,
            Ok(Err(end)) => return end,
            Err(_) => {
                return End::Lost(format!(
                    "nothing heard from {} for {silence:?} (watch_timeout): replacing the connection",
                    dir.url()
                ));
            }
        };
        link.heard();
        if let Some(v) = verdict
            && v.refresh()
        {
            ask_refresh(daemon);
        }
    }
}

/// What one connection's AD watch remembers between rounds.
enum Poller {
    DirSync { nc: String, cookie: Vec<u8> },
    Usn(UsnTracker),
}

impl Poller {
    /// One poll: `None` when the USN did not move (nothing was listed).
    async fn round(&mut self, dir: &mut Directory, container: &Dn) -> Result<Option<Verdict>, End> {
        match self {
            Poller::DirSync { nc, cookie } => {
                dirsync_round(dir, nc, cookie, container).await.map(Some)
            }
            Poller::Usn(tracker) => usn_round(dir, tracker, container).await,
        }
    }
}

/// uSNChanged: the DC's mark first, the container listing only when it moved.
async fn usn_round(
    dir: &mut Directory,
    tracker: &mut UsnTracker,
    container: &Dn,
) -> Result<Option<Verdict>, End> {
    // The mark first: a change after it moves the next mark, so none falls between.
    let mark = match dir.usn_mark().await {
        Ok(Some(mark)) => mark,
        Ok(None) => {
            info!("the root DSE has no highestCommittedUSN: the watch polls instead");
            return Err(End::Unsupported);
        }
        Err(e) => return Err(End::Lost(e.to_string())),
    };
    if !tracker.needs_listing(&mark) {
        return Ok(None);
    }
    let highest = mark.highest;
    let listing = dir
        .usn_listing(container)
        .await
        .map_err(|e| End::Lost(e.to_string()))?;
    let entries = listing.len();
    let verdict = tracker.observe(mark, listing);
    match &verdict {
        Verdict::Unchanged => debug!(
            highest,
            entries, "uSNChanged watch: the DC changed, the endpoint container did not"
        ),
        // Once per connection or DC database: which database the marks now come from.
        Verdict::Baseline => info!(
            database = %log_safe(&tracker.database()),
            highest,
            entries,
            "uSNChanged watch: baseline"
        ),
        Verdict::Seen { .. } => {}
        Verdict::Changed {
            added,
            modified,
            removed,
        } => info!(
            highest,
            added, modified, removed, "uSNChanged watch: endpoint container changed"
        ),
    }
    Ok(Some(verdict))
}

/// DirSync from the cookie until `moreResults` is off.
async fn dirsync_round(
    dir: &mut Directory,
    nc: &str,
    cookie: &mut Vec<u8>,
    container: &Dn,
) -> Result<Verdict, End> {
    let baseline = cookie.is_empty();
    let mut objects = 0;
    // The first few, for the log.
    let mut seen: Vec<String> = Vec::new();
    loop {
        let page = dir
            .dirsync(nc, cookie, DIRSYNC_ATTRS)
            .await
            .map_err(|e| End::Lost(e.to_string()))?;
        for dn in page.dns {
            if dirsync_relevant(&dn, container) {
                objects += 1;
                if seen.len() < 5 {
                    seen.push(log_safe(&dn).into_owned());
                }
            }
        }
        *cookie = page.cookie;
        if !page.more || cookie.is_empty() {
            break;
        }
    }
    let verdict = dirsync_verdict(baseline, objects);
    match verdict {
        Verdict::Baseline => debug!(nc = %nc, "DirSync watch: baseline"),
        Verdict::Seen { objects } => {
            info!(nc = %nc, objects, dns = ?seen, "DirSync watch: endpoint container changed")
        }
        _ => {}
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(dc: &str, highest: u64) -> UsnMark {
        UsnMark {
            dc: dc.to_string(),
            highest,
        }
    }

    fn listing(items: &[(&str, u64)]) -> UsnListing {
        items
            .iter()
            .map(|(dn, u)| ((*dn).to_string(), *u))
            .collect()
    }

    /// The invocationIds of two DC databases, as `Directory::usn_mark` names them.
    const DC1: &str = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const DC2: &str = "0a9b8c7d-6e5f-4a3b-9c1d-2e3f4a5b6c7d";
    /// DC1 restored from a backup: the same nTDSDSA object, a new invocationId.
    const DC1_RESTORED: &str = "d4c3b2a1-0f9e-4d8c-b7a6-958473625140";

    /// See: #20. A DC restored from a backup keeps its name and its nTDSDSA object, and its
    /// USNs restart from the backup's: its highest committed USN may come back to exactly the
    /// value of the last mark while the container's objects carry other writes than those
    /// listed. Keyed on the invocationId, the old mark and listing are not trusted: the
    /// container is listed and the verdict is a new baseline, which rebuilds the whole table.
    #[test]
    fn a_dc_restored_from_backup_is_a_new_baseline_even_at_the_same_usn() {
        let mut t = UsnTracker::default();
        t.observe(mark(DC1, 100), listing(&[("cn=a", 90), ("cn=b", 95)]));
        assert!(!t.needs_listing(&mark(DC1, 100)));
        assert!(
            t.needs_listing(&mark(DC1_RESTORED, 100)),
            "a new invocationId at the same USN is listed"
        );
        // After the restore cn=b was written again up to the same USNs: a diff would see
        // nothing, the baseline rebuilds anyway.
        let v = t.observe(
            mark(DC1_RESTORED, 100),
            listing(&[("cn=a", 90), ("cn=b", 95)]),
        );
        assert_eq!(v, Verdict::Baseline);
        assert!(v.refresh());
        assert_eq!(t.database(), DC1_RESTORED);
        // From then on, marks of the restored database are compared with each other.
        assert!(!t.needs_listing(&mark(DC1_RESTORED, 100)));
        assert_eq!(
            t.observe(
                mark(DC1_RESTORED, 101),
                listing(&[("cn=a", 90), ("cn=b", 95)])
            ),
            Verdict::Unchanged
        );
    }

    #[test]
    fn the_container_is_listed_only_when_the_usn_moves_or_the_dc_changes() {
        let mut t = UsnTracker::default();
        assert!(t.needs_listing(&mark(DC1, 100)), "nothing seen yet");
        assert_eq!(
            t.observe(mark(DC1, 100), listing(&[("cn=a", 90)])),
            Verdict::Baseline
        );
        assert!(
            !t.needs_listing(&mark(DC1, 100)),
            "nothing written anywhere"
        );
        assert!(t.needs_listing(&mark(DC1, 101)), "something written");
        assert!(t.needs_listing(&mark(DC1, 99)), "a DC restored from backup");
        assert!(t.needs_listing(&mark(DC2, 100)), "another DC, other USNs");
    }

    #[test]
    fn additions_modifications_and_deletions_refresh_other_writes_do_not() {
        let mut t = UsnTracker::default();
        t.observe(mark(DC1, 100), listing(&[("cn=a", 90), ("cn=b", 95)]));
        // A user elsewhere changed: the DC's USN moved, the container did not.
        let v = t.observe(mark(DC1, 105), listing(&[("cn=a", 90), ("cn=b", 95)]));
        assert_eq!(v, Verdict::Unchanged);
        assert!(!v.refresh());
        let v = t.observe(
            mark(DC1, 106),
            listing(&[("cn=a", 90), ("cn=b", 95), ("cn=c", 106)]),
        );
        assert_eq!(
            v,
            Verdict::Changed {
                added: 1,
                modified: 0,
                removed: 0
            }
        );
        // The pool of b changed.
        let v = t.observe(
            mark(DC1, 107),
            listing(&[("cn=a", 90), ("cn=b", 107), ("cn=c", 106)]),
        );
        assert_eq!(
            v,
            Verdict::Changed {
                added: 0,
                modified: 1,
                removed: 0
            }
        );
        // a deleted (a tombstone elsewhere, unseen) or stripped of its SIP address.
        let v = t.observe(mark(DC1, 108), listing(&[("cn=b", 107), ("cn=c", 106)]));
        assert_eq!(
            v,
            Verdict::Changed {
                added: 0,
                modified: 0,
                removed: 1
            }
        );
        assert!(v.refresh());
    }

    #[test]
    fn a_new_dc_or_a_new_connection_starts_a_new_baseline_which_refreshes() {
        let mut t = UsnTracker::default();
        t.observe(mark(DC1, 100), listing(&[("cn=a", 90)]));
        // Same entries, but the USNs of another DC cannot be compared with DC1's.
        let v = t.observe(mark(DC2, 5000), listing(&[("cn=a", 4000)]));
        assert_eq!(v, Verdict::Baseline);
        assert!(v.refresh());
        // A new connection (after a lost one) starts a new tracker: its first listing is a
        // baseline too, even on the same DC with nothing changed.
        let mut t = UsnTracker::default();
        assert!(t.needs_listing(&mark(DC2, 5000)));
        assert_eq!(
            t.observe(mark(DC2, 5000), listing(&[("cn=a", 4000)])),
            Verdict::Baseline
        );
    }

    #[test]
    fn a_dirsync_round_refreshes_at_the_baseline_and_when_it_saw_something() {
        assert_eq!(dirsync_verdict(true, 0), Verdict::Baseline);
        assert!(dirsync_verdict(true, 0).refresh());
        assert_eq!(dirsync_verdict(false, 2), Verdict::Seen { objects: 2 });
        assert!(dirsync_verdict(false, 2).refresh());
        assert_eq!(dirsync_verdict(false, 0), Verdict::Unchanged);
        assert!(!dirsync_verdict(false, 0).refresh());
    }

    #[test]
    fn dirsync_refreshes_for_the_container_and_tombstones_only() {
        let container = Dn::parse(
            "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
        )
        .unwrap();
        let relevant = |dn: &str| dirsync_relevant(dn, &container);
        assert!(relevant(
            "CN={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
        ));
        assert!(relevant(
            "cn=x,cn=application contacts,cn=rtc service,cn=services,cn=configuration,dc=contoso,dc=com"
        ));
        // As Samba and AD name a deleted contact.
        assert!(relevant(
            "CN=x\\0ADEL:5e1d2c3b-0a9f-4e8d-b7c6-a5b4c3d2e1f0,CN=Deleted Objects,CN=Configuration,DC=contoso,DC=com"
        ));
        assert!(relevant("not a DN"));
        assert!(!relevant(
            "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
        ));
        assert!(!relevant("CN=Configuration,DC=contoso,DC=com"));
        assert!(!relevant("CN=Sites,CN=Configuration,DC=contoso,DC=com"));
    }
}
