//! `MappingTable`: an immutable SIP URI → pool FQDN table, built completely and validated before
//! anyone sees it.
//!
//! Keys are the lower-cased `user@host` of the SIP address, which is how AD compares
//! `msRTCSIP-PrimaryUserAddress`. A table is never modified after [`MappingTable::new`]; a refresh
//! builds a new one and the store swaps it in whole. [`MappingTable::lookup`] takes the user and
//! host straight from a Request-URI and does not allocate for ASCII addresses.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::model::{Dn, SipUri, fold_case};

/// One mapped address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The address as the directory holds it.
    pub sip_uri: SipUri,
    /// The configured pool FQDN it is homed on.
    pub pool: String,
    /// The endpoint contact's DN.
    pub dn: Dn,
}

/// Why a set of entries is not a valid table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Two entries have the same SIP address.
    #[error("{uri} is mapped twice ({first} and {second})")]
    DuplicateKey {
        uri: String,
        first: String,
        second: String,
    },
    /// An entry names a pool that is not configured.
    #[error("{uri} ({dn}) maps to {pool}, which is not a configured pool")]
    UnknownPool {
        uri: String,
        dn: String,
        pool: String,
    },
}

/// An immutable, validated mapping table with its version and build time.
#[derive(Clone)]
pub struct MappingTable {
    /// Keyed by lower-cased `user@host` (no scheme).
    by_key: HashMap<Box<str>, Entry>,
    version: u64,
    built_at: DateTime<Utc>,
}

impl fmt::Debug for MappingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappingTable")
            .field("version", &self.version)
            .field("built_at", &self.built_at)
            .field("entries", &self.by_key.len())
            .finish()
    }
}

/// The longest `user@host` looked up without allocating.
const STACK_KEY_LEN: usize = 256;

impl MappingTable {
    /// Validates `entries` (no duplicate addresses, every pool one of `pools`) into a table.
    pub fn new(
        entries: Vec<Entry>,
        pools: &[&str],
        version: u64,
        built_at: DateTime<Utc>,
    ) -> Result<MappingTable, TableError> {
        let mut by_key: HashMap<Box<str>, Entry> = HashMap::with_capacity(entries.len());
        for entry in entries {
            if !pools.iter().any(|p| p.eq_ignore_ascii_case(&entry.pool)) {
                return Err(TableError::UnknownPool {
                    uri: entry.sip_uri.as_str().to_string(),
                    dn: entry.dn.as_str().to_string(),
                    pool: entry.pool,
                });
            }
            let key: Box<str> = key_of(&entry.sip_uri).into();
            if let Some(first) = by_key.get(&key) {
                return Err(TableError::DuplicateKey {
                    uri: entry.sip_uri.as_str().to_string(),
                    first: first.dn.as_str().to_string(),
                    second: entry.dn.as_str().to_string(),
                });
            }
            by_key.insert(key, entry);
        }
        Ok(MappingTable {
            by_key,
            version,
            built_at,
        })
    }

    /// The table a server starts with when it has nothing better: version 0, no entries.
    pub(crate) fn empty(built_at: DateTime<Utc>) -> MappingTable {
        MappingTable {
            by_key: HashMap::new(),
            version: 0,
            built_at,
        }
    }

    /// The same entries under another version number and build time.
    pub(crate) fn with_version(mut self, version: u64, built_at: DateTime<Utc>) -> MappingTable {
        self.version = version;
        self.built_at = built_at;
        self
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn built_at(&self) -> DateTime<Utc> {
        self.built_at
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The entry for a SIP address's user and host, compared case-insensitively.
    pub fn lookup(&self, user: &str, host: &str) -> Option<&Entry> {
        let len = user.len() + 1 + host.len();
        if len <= STACK_KEY_LEN && user.is_ascii() && host.is_ascii() {
            let mut buf = [0u8; STACK_KEY_LEN];
            buf[..user.len()].copy_from_slice(user.as_bytes());
            buf[user.len()] = b'@';
            buf[user.len() + 1..len].copy_from_slice(host.as_bytes());
            buf[..len].make_ascii_lowercase();
            let key = std::str::from_utf8(&buf[..len]).ok()?;
            self.by_key.get(key)
        } else {
            // The same folding as `SipUri`'s key, part by part.
            let key = format!("{}@{}", fold_case(user), fold_case(host));
            self.by_key.get(key.as_str())
        }
    }

    /// The entry for a SIP address.
    pub fn get(&self, uri: &SipUri) -> Option<&Entry> {
        self.by_key.get(key_of(uri))
    }

    /// Entries sorted by SIP address (for display and the cache file).
    pub(crate) fn entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.by_key.values().collect();
        v.sort_by(|a, b| a.sip_uri.cmp(&b.sip_uri));
        v
    }

    /// Whether both tables map the same addresses to the same pools and DNs.
    pub(crate) fn same_entries(&self, other: &MappingTable) -> bool {
        self.by_key.len() == other.by_key.len()
            && self.by_key.iter().all(|(k, e)| {
                other
                    .by_key
                    .get(k)
                    .is_some_and(|o| o.pool.eq_ignore_ascii_case(&e.pool) && o.dn == e.dn)
            })
    }
}

/// `sip:User@Host` → `user@host` (lower-cased, as `SipUri::normalized`).
fn key_of(uri: &SipUri) -> &str {
    &uri.normalized()[4..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str, pool: &str, dn: &str) -> Entry {
        Entry {
            sip_uri: SipUri::parse(uri).unwrap(),
            pool: pool.to_string(),
            dn: Dn::parse(dn).unwrap(),
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn lookups_ignore_case_of_user_and_host() {
        let t = MappingTable::new(
            vec![entry(
                "sip:OCSChat@Contoso.com",
                "pc1.contoso.com",
                "cn=a,dc=x",
            )],
            &["PC1.contoso.com"],
            3,
            at(),
        )
        .unwrap();
        assert_eq!(t.version(), 3);
        assert_eq!(
            t.lookup("ocschat", "CONTOSO.COM").unwrap().pool,
            "pc1.contoso.com"
        );
        assert!(t.lookup("ocschat", "fabrikam.com").is_none());
        assert!(t.lookup("other", "contoso.com").is_none());
        let long = "x".repeat(300);
        assert!(t.lookup(&long, "contoso.com").is_none());
        assert!(t.lookup("ÖCSchat", "contoso.com").is_none());
    }

    #[test]
    fn non_ascii_users_match_as_ad_lowercases_them() {
        let t = MappingTable::new(
            vec![entry("sip:Jürgen@contoso.com", "pc1", "cn=a,dc=x")],
            &["pc1"],
            1,
            at(),
        )
        .unwrap();
        assert!(t.lookup("JÜRGEN", "contoso.com").is_some());
    }

    #[test]
    fn duplicates_and_unknown_pools_are_rejected() {
        let e = MappingTable::new(
            vec![
                entry("sip:a@x.com", "pc1", "cn=one,dc=x"),
                entry("sip:A@X.com", "pc1", "cn=two,dc=x"),
            ],
            &["pc1"],
            1,
            at(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sip:A@X.com is mapped twice (cn=one,dc=x and cn=two,dc=x)"
        );
        let e = MappingTable::new(
            vec![entry("sip:a@x.com", "pc9", "cn=one,dc=x")],
            &["pc1"],
            1,
            at(),
        )
        .unwrap_err();
        assert!(matches!(e, TableError::UnknownPool { .. }));
    }

    #[test]
    fn same_entries_compares_content_not_version() {
        let a = MappingTable::new(
            vec![entry("sip:a@x.com", "pc1", "cn=one,dc=x")],
            &["pc1"],
            1,
            at(),
        )
        .unwrap();
        let b = a.clone().with_version(2, at());
        assert!(a.same_entries(&b));
        let c = MappingTable::new(
            vec![entry("sip:a@x.com", "pc1", "cn=two,dc=x")],
            &["pc1"],
            1,
            at(),
        )
        .unwrap();
        assert!(!a.same_entries(&c));
        assert!(!a.same_entries(&MappingTable::empty(at())));
    }
}
