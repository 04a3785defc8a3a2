//! [`Collector`]: watches the streamed scan and keeps only what planning needs.
//!
//! Per object it keeps nothing unless the object holds a migration's URI (made whole, a handful)
//! or is a suspect (DN and URI); the others cost a hash, with no allocation. Duplicate SIP URIs
//! elsewhere are found with a compact set of fingerprints of the normalised URIs
//! ([`Fingerprints`], about 6 bytes per object); a repeated fingerprint only names a *candidate*
//! URI, which the caller confirms with an exact equality search before anything is reported, so
//! a collision can never produce a false finding.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

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

/// The set of every address seen, kept as a 46-bit fingerprint of its 64-bit hash: the top 14
/// bits choose one of 16,384 parts, each a sorted `Vec` of the next 32 bits. About 6 bytes per
/// object at 1,000,000 objects, where a `HashSet<u64>` (9 bytes a bucket, at most 7/8 full, in a
/// power-of-two table that doubles) took 26 at its peak; an insert moves a few dozen bytes.
/// Two addresses may share a fingerprint (among a million, the chance that any pair does is under
/// 1 %): that only makes a candidate, which the exact search confirms or drops.
pub(crate) struct Fingerprints {
    parts: Vec<Vec<u32>>,
}

impl Fingerprints {
    const PART_BITS: u32 = 14;

    pub(crate) fn new() -> Fingerprints {
        Fingerprints {
            parts: vec![Vec::new(); 1 << Self::PART_BITS],
        }
    }

    /// Adds the fingerprint of `hash`; `false` when it was there already.
    pub(crate) fn insert(&mut self, hash: u64) -> bool {
        // The top PART_BITS bits index `parts`, which has exactly that many entries.
        let part = &mut self.parts[(hash >> (64 - Self::PART_BITS)) as usize];
        let rest = (hash >> (32 - Self::PART_BITS)) as u32;
        match part.binary_search(&rest) {
            Ok(_) => false,
            Err(at) => {
                part.insert(at, rest);
                true
            }
        }
    }
}

/// Accumulates an [`Observed`] from a stream of sightings.
pub(crate) struct Collector {
    /// The migrations' normalised URIs: a handful, so compared in turn rather than hashed.
    migration_uris: Vec<String>,
    /// Fingerprints of every normalised SIP URI seen so far, outside the migrations.
    seen: Fingerprints,
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
            seen: Fingerprints::new(),
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

#[cfg(test)]
mod tests {
    use super::Fingerprints;

    #[test]
    fn a_fingerprint_is_new_once_and_only_its_low_bits_are_dropped() {
        let mut seen = Fingerprints::new();
        let hashes = [
            0,
            1 << 18,
            u64::MAX,
            u64::MAX << 19,
            0x8000_0000_0000_0000,
            0x0004_0000_0000_0000,
        ];
        for h in hashes {
            assert!(seen.insert(h), "{h:#x} is new");
        }
        for h in hashes {
            assert!(!seen.insert(h), "{h:#x} was seen");
        }
        // The lowest 18 bits are not kept: a hash differing only there is a candidate.
        assert!(!seen.insert(0x3_ffff));
        assert!(!seen.insert(u64::MAX >> 46 << 46 | u64::MAX >> 18 << 18 | 7));
    }

    #[test]
    fn many_distinct_hashes_are_all_new() {
        let mut seen = Fingerprints::new();
        // Spread over every part and within parts, as a hash does.
        let spread = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..100_000 {
            assert!(seen.insert(spread(i)), "{i}");
        }
        assert!((0..100_000).all(|i| !seen.insert(spread(i))));
    }
}
