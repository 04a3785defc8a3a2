//! [`Collector`]: watches the streamed scan and keeps only what planning needs.
//!
//! Per object it keeps nothing unless the object holds a migration's URI (kept whole, a handful)
//! or is a suspect (DN and URI). Duplicate SIP URIs elsewhere are found with a set of 64-bit
//! hashes of the normalised URIs (about 10 bytes per object); a repeated hash only names a
//! *candidate* URI, which the caller confirms with an exact equality search before anything is
//! reported, so a hash collision can never produce a false finding.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use super::{Desired, Observed};
use crate::model::{DirectoryObject, Finding, ObjectKind};

/// User parts of SIP URIs that Group Chat lookup accounts use by convention (Microsoft recommends
/// `OCSChat`; UCMA samples use `lyncchat`). Matched exactly: `ocschat.fan` is not a suspect.
pub(crate) const SUSPECT_USER_PARTS: &[&str] = &[
    "ocschat",
    "groupchat",
    "lyncchat",
    "gcchat",
    "chatlookup",
    "gclookup",
    "ocsgroupchat",
    "lyncgroupchat",
];

/// Accumulates an [`Observed`] from a stream of objects.
pub(crate) struct Collector {
    migration_uris: HashSet<String>,
    /// Hashes of every normalised SIP URI seen so far, outside the migrations.
    seen: HashSet<u64>,
    /// URIs whose hash was seen twice: duplicate candidates to confirm exactly.
    candidates: BTreeSet<String>,
    observed: Observed,
}

impl Collector {
    pub(crate) fn new(desired: &Desired<'_>) -> Collector {
        Collector {
            migration_uris: desired
                .migrations
                .iter()
                .map(|m| m.well_known_uri.normalized().to_string())
                .collect(),
            seen: HashSet::new(),
            candidates: BTreeSet::new(),
            observed: Observed::default(),
        }
    }

    /// Looks at one object of the scan.
    pub(crate) fn observe(&mut self, o: DirectoryObject) {
        let Some(uri) = &o.sip_uri else { return };
        let normalized = uri.normalized();
        if self.migration_uris.contains(normalized) {
            let key = normalized.to_string();
            self.observed.holders.entry(key).or_default().push(o);
            return;
        }
        let mut h = std::hash::DefaultHasher::new();
        normalized.hash(&mut h);
        if !self.seen.insert(h.finish()) {
            self.candidates.insert(normalized.to_string());
        }
        if o.kind == ObjectKind::User
            && SUSPECT_USER_PARTS
                .iter()
                .any(|s| uri.user_normalized() == *s)
        {
            self.observed
                .suspects
                .insert((o.dn.as_str().to_string(), uri.as_str().to_string()));
        }
    }

    /// URIs that may be duplicated; confirm each with an exact search ([`Self::confirm`]).
    pub(crate) fn duplicate_candidates(&self) -> impl Iterator<Item = &str> {
        self.candidates.iter().map(String::as_str)
    }

    /// Records the exact holders of a candidate URI; two or more make a duplicate.
    pub(crate) fn confirm(&mut self, normalized_uri: &str, holder_dns: BTreeSet<String>) {
        if holder_dns.len() > 1 {
            self.observed
                .duplicates
                .insert(normalized_uri.to_string(), holder_dns);
        }
    }

    /// Ends the scan: the observed state and the findings the reader produced.
    pub(crate) fn finish(mut self, findings: Vec<Finding>) -> Observed {
        self.observed.findings = findings;
        self.observed
    }

    /// Replaces a holder's attributes with its complete entry (read separately).
    pub(crate) fn holders_mut(&mut self) -> &mut BTreeMap<String, Vec<DirectoryObject>> {
        &mut self.observed.holders
    }
}
