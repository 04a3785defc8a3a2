//! Which protocol features pcsync uses against a given server, decided from its root DSE.
//!
//! pcsync never assumes a feature: OpenLDAP has syncrepl and the assertion control, Active
//! Directory has neither but offers DirSync and uSNChanged. Sending a *critical* control the
//! server does not advertise is not just an error: Samba answers it with an ExtendedResponse
//! that makes ldap3 0.12 drop the connection. So [`Capabilities::detect`] reads
//! `supportedControl` (and AD's `supportedCapabilities`) once per connection, and everything
//! that would send a control asks it first. Pure: no I/O, unit-tested on literal root DSEs.

use std::fmt;

use super::RootDse;

/// Control and capability OIDs pcsync decides on.
pub(crate) mod oid {
    /// RFC 4533 content synchronization (syncrepl).
    pub(crate) const SYNCREPL: &str = "1.3.6.1.4.1.4203.1.9.1.1";
    /// AD DirSync (MS-ADTS 3.1.1.3.4.1.3).
    pub(crate) const DIRSYNC: &str = "1.2.840.113556.1.4.841";
    /// RFC 4528 assertion control.
    pub(crate) const ASSERTION: &str = "1.3.6.1.1.12";
    /// RFC 2696 simple paged results. ldap3 sends it non-critical.
    pub(crate) const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
    /// AD's Show Deleted control: searches and writes see tombstones (tombstone reanimation).
    pub(crate) const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";
    /// `supportedCapabilities` value of an Active Directory (or Samba AD) DC.
    pub(crate) const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";
}

/// How the live watch learns about changes on this server (`pcsync run` runs the one chosen
/// here: `daemon::watch::choose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveWatch {
    /// RFC 4533 refreshAndPersist.
    Syncrepl,
    /// AD DirSync, one cookie per naming context. Needs "Replicating Directory Changes" (or the
    /// object-security flag, which hides tombstones); `Directory::verify_dirsync` checks it.
    DirSync,
    /// Poll for `uSNChanged` above the last seen value (per DC).
    UsnPolling,
    /// No change tracking at all: rebuild the table every `daemon.poll_interval`.
    Rescan,
}

impl LiveWatch {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LiveWatch::Syncrepl => "syncrepl",
            LiveWatch::DirSync => "dirsync",
            LiveWatch::UsnPolling => "usn-polling",
            LiveWatch::Rescan => "rescan",
        }
    }
}

impl fmt::Display for LiveWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a write is made conditional on the value pcsync last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionalWrites {
    /// RFC 4528 assertion control, sent critical.
    Assertion,
    /// Delete the old value and add the new one in one modify: the server refuses the whole
    /// modify (LDAP 16) if the old value is gone. Works everywhere, AD included.
    CompareAndSwap,
}

impl ConditionalWrites {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConditionalWrites::Assertion => "assertion",
            ConditionalWrites::CompareAndSwap => "compare-and-swap",
        }
    }
}

impl fmt::Display for ConditionalWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The features chosen for one server, each with the reason, for `pcsync check` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub watch: LiveWatch,
    pub watch_reason: String,
    pub writes: ConditionalWrites,
    pub writes_reason: String,
    /// Whether searches page (RFC 2696). ldap3 sends the control non-critical, so a server that
    /// ignores it still answers; paging is used only where it is advertised all the same.
    pub paged_results: bool,
    /// The server says it is Active Directory (`supportedCapabilities` 1.2.840.113556.1.4.800).
    pub active_directory: bool,
}

impl Capabilities {
    /// Chooses features from what the root DSE advertises.
    pub(crate) fn detect(dse: &RootDse) -> Capabilities {
        let active_directory = dse
            .supported_capabilities
            .iter()
            .any(|c| c == oid::AD_CAPABILITY);
        let (watch, watch_reason) = if dse.supports_control(oid::SYNCREPL) {
            (
                LiveWatch::Syncrepl,
                format!("server advertises {}", oid::SYNCREPL),
            )
        } else if dse.supports_control(oid::DIRSYNC) {
            (
                LiveWatch::DirSync,
                format!(
                    "no syncrepl {} advertised; DirSync {} advertised; the account's right to \
                     use it is not verified yet",
                    oid::SYNCREPL,
                    oid::DIRSYNC
                ),
            )
        } else if active_directory {
            (
                LiveWatch::UsnPolling,
                format!(
                    "neither syncrepl {} nor DirSync {} advertised; Active Directory has uSNChanged",
                    oid::SYNCREPL,
                    oid::DIRSYNC
                ),
            )
        } else {
            (
                LiveWatch::Rescan,
                format!(
                    "neither syncrepl {} nor DirSync {} advertised and not Active Directory",
                    oid::SYNCREPL,
                    oid::DIRSYNC
                ),
            )
        };
        let (writes, writes_reason) = if dse.supports_control(oid::ASSERTION) {
            (
                ConditionalWrites::Assertion,
                format!("server advertises {}", oid::ASSERTION),
            )
        } else {
            (
                ConditionalWrites::CompareAndSwap,
                format!(
                    "no assertion control {} advertised{}",
                    oid::ASSERTION,
                    if active_directory {
                        "; AD never has it"
                    } else {
                        ""
                    }
                ),
            )
        };
        Capabilities {
            watch,
            watch_reason,
            writes,
            writes_reason,
            paged_results: dse.supports_control(oid::PAGED_RESULTS),
            active_directory,
        }
    }

    /// DirSync worked on every naming context pcsync reads (`ncs`).
    pub(crate) fn dirsync_verified(mut self, ncs: &[String]) -> Capabilities {
        if self.watch == LiveWatch::DirSync {
            self.watch_reason = format!(
                "no syncrepl {} advertised; DirSync {} advertised and allowed on {}",
                oid::SYNCREPL,
                oid::DIRSYNC,
                ncs.join(", ")
            );
        }
        self
    }

    /// DirSync is advertised but the server refused it on naming context `nc` (the account
    /// lacks "Replicating Directory Changes"): fall back to uSNChanged polling (or a rescan on
    /// a server that is not AD), keeping the server's diagnostic verbatim.
    pub(crate) fn dirsync_refused(mut self, nc: &str, rc: u32, text: &str) -> Capabilities {
        let fallback = if self.active_directory {
            LiveWatch::UsnPolling
        } else {
            LiveWatch::Rescan
        };
        let text = text.trim().replace(['\r', '\n'], " ");
        self.watch = fallback;
        self.watch_reason = format!(
            "DirSync {} advertised but refused on {nc} (LDAP {rc}{}{text}): grant \
             Replicating Directory Changes for DirSync{}",
            oid::DIRSYNC,
            if text.is_empty() { "" } else { ": " },
            if fallback == LiveWatch::UsnPolling {
                "; Active Directory has uSNChanged"
            } else {
                ""
            }
        );
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dse(controls: &[&str], capabilities: &[&str]) -> RootDse {
        RootDse {
            supported_controls: controls.iter().map(|s| (*s).to_string()).collect(),
            supported_capabilities: capabilities.iter().map(|s| (*s).to_string()).collect(),
            ..RootDse::default()
        }
    }

    /// `supportedControl` of slapd 2.5.13 as the test harness configures it (syncprov loaded).
    const SLAPD_CONTROLS: &[&str] = &[
        "1.3.6.1.4.1.4203.1.9.1.1",
        "2.16.840.1.113730.3.4.18",
        "2.16.840.1.113730.3.4.2",
        "1.3.6.1.4.1.4203.1.10.1",
        "1.3.6.1.1.22",
        "1.2.840.113556.1.4.319",
        "1.2.826.0.1.3344810.2.3",
        "1.3.6.1.1.13.2",
        "1.3.6.1.1.13.1",
        "1.3.6.1.1.12",
    ];

    /// `supportedControl` and `supportedCapabilities` of Samba 4.17's AD DC, duplicates removed
    /// (read_root_dse dedups them).
    const SAMBA_CONTROLS: &[&str] = &[
        "1.2.840.113556.1.4.1338",
        "1.2.840.113556.1.4.1339",
        "1.2.840.113556.1.4.1340",
        "1.2.840.113556.1.4.1341",
        "1.2.840.113556.1.4.1413",
        "1.2.840.113556.1.4.1504",
        "1.2.840.113556.1.4.2064",
        "1.2.840.113556.1.4.319",
        "1.2.840.113556.1.4.417",
        "1.2.840.113556.1.4.473",
        "1.2.840.113556.1.4.528",
        "1.2.840.113556.1.4.529",
        "1.2.840.113556.1.4.801",
        "1.2.840.113556.1.4.805",
        "1.2.840.113556.1.4.841",
        "2.16.840.1.113730.3.4.9",
    ];
    const SAMBA_CAPABILITIES: &[&str] = &[
        "1.2.840.113556.1.4.800",
        "1.2.840.113556.1.4.1670",
        "1.2.840.113556.1.4.1791",
        "1.2.840.113556.1.4.1935",
        "1.2.840.113556.1.4.2080",
    ];

    #[test]
    fn slapd_gets_syncrepl_and_assertions() {
        let c = Capabilities::detect(&dse(SLAPD_CONTROLS, &[]));
        assert_eq!(c.watch, LiveWatch::Syncrepl);
        assert_eq!(c.watch_reason, "server advertises 1.3.6.1.4.1.4203.1.9.1.1");
        assert_eq!(c.writes, ConditionalWrites::Assertion);
        assert_eq!(c.writes_reason, "server advertises 1.3.6.1.1.12");
        assert!(c.paged_results);
        assert!(!c.active_directory);
    }

    #[test]
    fn samba_ad_gets_dirsync_and_compare_and_swap() {
        let c = Capabilities::detect(&dse(SAMBA_CONTROLS, SAMBA_CAPABILITIES));
        assert_eq!(c.watch, LiveWatch::DirSync);
        assert!(
            c.watch_reason
                .contains("no syncrepl 1.3.6.1.4.1.4203.1.9.1.1 advertised")
                && c.watch_reason
                    .contains("DirSync 1.2.840.113556.1.4.841 advertised")
                && c.watch_reason.contains("not verified"),
            "{}",
            c.watch_reason
        );
        assert_eq!(c.writes, ConditionalWrites::CompareAndSwap);
        assert_eq!(
            c.writes_reason,
            "no assertion control 1.3.6.1.1.12 advertised; AD never has it"
        );
        assert!(c.paged_results);
        assert!(c.active_directory);
    }

    #[test]
    fn a_refused_dirsync_falls_back_to_usn_polling_with_the_diagnostic() {
        let c = Capabilities::detect(&dse(SAMBA_CONTROLS, SAMBA_CAPABILITIES)).dirsync_refused(
            "DC=contoso,DC=com",
            50,
            "error in module dirsync: insufficient access rights during LDB_SEARCH\n",
        );
        assert_eq!(c.watch, LiveWatch::UsnPolling);
        assert_eq!(
            c.watch_reason,
            "DirSync 1.2.840.113556.1.4.841 advertised but refused on DC=contoso,DC=com \
             (LDAP 50: error in module dirsync: insufficient access rights during LDB_SEARCH): \
             grant Replicating Directory Changes for DirSync; Active Directory has uSNChanged"
        );
        let c = Capabilities::detect(&dse(SAMBA_CONTROLS, SAMBA_CAPABILITIES)).dirsync_verified(&[
            "DC=contoso,DC=com".into(),
            "CN=Configuration,DC=contoso,DC=com".into(),
        ]);
        assert_eq!(c.watch, LiveWatch::DirSync);
        assert!(
            c.watch_reason
                .ends_with("allowed on DC=contoso,DC=com, CN=Configuration,DC=contoso,DC=com"),
            "{}",
            c.watch_reason
        );
    }

    #[test]
    fn ad_without_dirsync_polls_usn_changed() {
        let controls: Vec<&str> = SAMBA_CONTROLS
            .iter()
            .copied()
            .filter(|c| *c != oid::DIRSYNC)
            .collect();
        let c = Capabilities::detect(&dse(&controls, SAMBA_CAPABILITIES));
        assert_eq!(c.watch, LiveWatch::UsnPolling);
        assert!(c.watch_reason.contains("uSNChanged"), "{}", c.watch_reason);
    }

    #[test]
    fn a_bare_server_is_rescanned_and_written_with_compare_and_swap() {
        let c = Capabilities::detect(&RootDse::default());
        assert_eq!(c.watch, LiveWatch::Rescan);
        assert_eq!(c.writes, ConditionalWrites::CompareAndSwap);
        assert_eq!(
            c.writes_reason,
            "no assertion control 1.3.6.1.1.12 advertised"
        );
        assert!(!c.paged_results);
    }

    #[test]
    fn syncrepl_wins_over_dirsync_when_both_are_advertised() {
        let c = Capabilities::detect(&dse(&[oid::DIRSYNC, oid::SYNCREPL], &[]));
        assert_eq!(c.watch, LiveWatch::Syncrepl);
    }

    /// pcsync pages every large search; that is safe against any server only because ldap3
    /// marks the paged-results control non-critical. Pinned here so an ldap3 upgrade that
    /// changes it fails a test instead of a production connection.
    #[test]
    fn ldap3_sends_paged_results_non_critical() {
        let raw: ldap3::controls::RawControl = ldap3::controls::PagedResults {
            size: 500,
            cookie: Vec::new(),
        }
        .into();
        assert_eq!(raw.ctype, oid::PAGED_RESULTS);
        assert!(!raw.crit);
    }
}
