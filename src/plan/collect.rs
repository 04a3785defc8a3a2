//! [`Collector`]: watches the streamed scan and keeps only what planning needs.
//!
//! Per object it keeps nothing unless the object holds a migration's URI (made whole, a handful)
//! or is a suspect (DN and URI); the others cost a hash, with no allocation. Duplicate SIP URIs
//! elsewhere are found with a fixed-size filter of the normalised URIs ([`Fingerprints`], 8 MiB
//! whatever the directory's size); an address the filter has probably seen only names a
//! *candidate* URI, which the caller confirms with an exact equality search before anything is
//! reported, so a false positive can never produce a false finding.

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

/// Every address seen, as a Bloom filter of fixed size: [`Fingerprints::BITS`] bits (8 MiB),
/// [`Fingerprints::PROBES`] bits set per address, so the memory is the same for 1,000 objects
/// as for 10,000,000 (issue #18: RSS flat as the directory grows). An address whose bits are all
/// set already was probably seen; "probably" only makes a *candidate*, which the exact search
/// confirms or drops, so a false positive costs one search and never a false finding. The
/// candidates expected over a whole scan stay small far beyond Lync's scale: about 20 at
/// 1,000,000 SIP-enabled objects, about 0 at 200,000, and some thousands at 5,000,000.
///
/// It replaced a set of 46-bit fingerprints in 16,384 sorted parts (about 6 bytes per object:
/// 17.2 MiB RSS at 1,000,000 users, against 12.3 MiB at 200,000), before that a `HashSet<u64>`
/// (26 bytes per object at its peak).
pub(crate) struct Fingerprints {
    bits: Vec<u64>,
}

impl Fingerprints {
    /// The filter's size in bits, a power of two (2^26 bits: 8 MiB).
    pub(crate) const BITS: u64 = 1 << 26;
    /// Bits set per address.
    pub(crate) const PROBES: u64 = 3;

    pub(crate) fn new() -> Fingerprints {
        Fingerprints {
            bits: vec![0; (Self::BITS / 64) as usize],
        }
    }

    /// The bytes the filter holds: fixed.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.bits.capacity() * std::mem::size_of::<u64>()
    }

    /// Adds the address whose 64-bit hash is `hash`; `false` when it was (probably) there
    /// already. The probes are `h1 + i·h2` of the hash's two halves (Kirsch and Mitzenmacher's
    /// double hashing, as good as independent hashes for a Bloom filter).
    pub(crate) fn insert(&mut self, hash: u64) -> bool {
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let mut new = false;
        for i in 0..Self::PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & (Self::BITS - 1);
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            new |= self.bits[word] & mask == 0;
            self.bits[word] |= mask;
        }
        new
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

    /// Spread over the whole filter, as a hash does.
    fn spread(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 40)
    }

    #[test]
    fn an_address_seen_again_is_always_a_candidate() {
        let mut seen = Fingerprints::new();
        for h in [0, 1, u64::MAX, 0x8000_0000_0000_0000, 12_345] {
            seen.insert(h);
            assert!(!seen.insert(h), "{h:#x} was seen: it must be a candidate");
        }
    }

    #[test]
    fn the_memory_is_the_same_for_a_million_addresses_and_false_candidates_are_few() {
        let mut seen = Fingerprints::new();
        let before = seen.heap_bytes();
        assert_eq!(before, 8 << 20);
        let false_candidates = (0..1_000_000u64)
            .filter(|&i| !seen.insert(spread(i)))
            .count();
        assert_eq!(seen.heap_bytes(), before, "flat: nothing grows per address");
        // Each costs one exact search; a few dozen at a million objects.
        assert!(false_candidates < 200, "{false_candidates}");
        assert!((0..1_000_000u64).all(|i| !seen.insert(spread(i))));
    }
}
