//! [`Collector`]: watches the streamed scan and keeps only what planning needs.
//!
//! Per object it keeps nothing unless the object holds a migration's URI (made whole, a handful)
//! or is a suspect (DN and URI); the others cost a hash, with no allocation. Duplicate SIP URIs elsewhere are found with a set of 64-bit
//! hashes of the normalised URIs (about 10 bytes per object); a repeated hash only names a
//! *candidate* URI, which the caller confirms with an exact equality search before anything is
//! reported, so a hash collision can never produce a false finding.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::{Desired, Observed};
use crate::model::{DirectoryObject, Finding, ObjectKind, Sighting, SipUri};

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

/// The [`Hasher`] of a set of 64-bit hashes: each key is its own hash.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is meant; anything else still hashes, if poorly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Accumulates an [`Observed`] from a stream of sightings.
pub(crate) struct Collector {
    /// The migrations' normalised URIs: a handful, so compared in turn rather than hashed.
    migration_uris: Vec<String>,
    /// Hashes of every normalised SIP URI seen so far, outside the migrations. They are hashes
    /// already, so the set uses them as they are instead of hashing them a second time.
    seen: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// URIs whose hash was seen twice: duplicate candidates to confirm exactly.
    candidates: BTreeSet<String>,
    /// Holders whose DN does not parse: reported, not planned for.
    findings: Vec<Finding>,
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
            seen: HashSet::default(),
            candidates: BTreeSet::new(),
            findings: Vec::new(),
            observed: Observed::default(),
        }
    }

    /// Looks at one object of the scan. Only a holder of a migration's URI (a handful) or a
    /// suspect is made into more than a hash.
    pub(crate) fn observe(&mut self, s: Sighting<'_>) {
        if self.migration_uris.iter().any(|m| m == s.normalized) {
            match s.to_object() {
                Ok(o) => self
                    .observed
                    .holders
                    .entry(s.normalized.to_string())
                    .or_default()
                    .push(o),
                Err(finding) => self.findings.push(finding),
            }
            return;
        }
        let mut h = std::hash::DefaultHasher::new();
        s.normalized.hash(&mut h);
        if !self.seen.insert(h.finish()) {
            self.candidates.insert(s.normalized.to_string());
        }
        if s.kind == ObjectKind::User
            && SUSPECT_USER_PARTS.contains(&s.user_normalized())
            && let Ok(uri) = SipUri::parse(s.sip_uri)
        {
            self.observed
                .suspects
                .insert((s.dn.to_string(), uri.as_str().to_string()));
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
    pub(crate) fn finish(mut self, mut findings: Vec<Finding>) -> Observed {
        findings.append(&mut self.findings);
        self.observed.findings = findings;
        self.observed
    }

    /// Replaces a holder's attributes with its complete entry (read separately).
    pub(crate) fn holders_mut(&mut self) -> &mut BTreeMap<String, Vec<DirectoryObject>> {
        &mut self.observed.holders
    }
}
