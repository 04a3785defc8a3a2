//! `MappingStore`: the one place the current table lives, swapped whole (arc-swap).
//!
//! Readers (the SIP hot path) take one [`MappingStore::load`] per request: lock-free, and the
//! request sees one consistent table for its whole life. The refresher alone calls
//! [`MappingStore::publish`]; version numbers only grow, and a refresh whose entries equal the
//! current table's keeps the current version (nothing changed for clients).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};

use super::table::MappingTable;

/// Counters of the refresher, for the metrics endpoint.
#[derive(Debug, Default)]
pub(crate) struct RefreshMetrics {
    /// Refreshes that published (or confirmed) a table.
    pub ok: AtomicU64,
    /// Refreshes that failed or were refused (kept the old table).
    pub failed: AtomicU64,
}

/// The published table and its refresh counters.
#[derive(Debug)]
pub(crate) struct MappingStore {
    /// The current table; replaced only by `publish`.
    current: ArcSwap<MappingTable>,
    pub refresh: RefreshMetrics,
}

impl MappingStore {
    pub(crate) fn new(initial: MappingTable) -> MappingStore {
        MappingStore {
            current: ArcSwap::from_pointee(initial),
            refresh: RefreshMetrics::default(),
        }
    }

    /// The current table: one call per request.
    pub(crate) fn load(&self) -> Guard<Arc<MappingTable>> {
        self.current.load()
    }

    /// The current table as an owned `Arc` (for holding across `.await`).
    pub(crate) fn load_full(&self) -> Arc<MappingTable> {
        self.current.load_full()
    }

    /// Publishes `table` unless it has the same entries as the current one. A new table gets the
    /// next version number. Returns the table now current and whether it changed.
    pub(crate) fn publish(
        &self,
        table: MappingTable,
        now: DateTime<Utc>,
    ) -> (Arc<MappingTable>, bool) {
        let current = self.current.load_full();
        if current.same_entries(&table) && current.version() > 0 {
            return (current, false);
        }
        let next = Arc::new(table.with_version(current.version() + 1, now));
        // Only the refresher publishes, so no compare-and-swap is needed.
        self.current.store(Arc::clone(&next));
        (next, true)
    }

    /// Counts a refresh outcome.
    pub(crate) fn count_refresh(&self, ok: bool) {
        let c = if ok {
            &self.refresh.ok
        } else {
            &self.refresh.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::table::Entry;
    use crate::model::{Dn, SipUri};

    fn table(uris: &[&str]) -> MappingTable {
        let entries = uris
            .iter()
            .map(|u| Entry {
                sip_uri: SipUri::parse(u).unwrap(),
                pool: "pc1".into(),
                dn: Dn::parse(&format!("cn={},dc=x", &u[4..5])).unwrap(),
            })
            .collect();
        MappingTable::new(entries, &["pc1"], 0, chrono::DateTime::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn versions_grow_only_when_entries_change() {
        let store = MappingStore::new(MappingTable::empty(chrono::DateTime::UNIX_EPOCH));
        let (t, changed) = store.publish(table(&["sip:a@x"]), chrono::DateTime::UNIX_EPOCH);
        assert!(changed);
        assert_eq!(t.version(), 1);
        let (t, changed) = store.publish(table(&["sip:a@x"]), chrono::DateTime::UNIX_EPOCH);
        assert!(!changed);
        assert_eq!(t.version(), 1);
        let (t, changed) =
            store.publish(table(&["sip:a@x", "sip:b@x"]), chrono::DateTime::UNIX_EPOCH);
        assert!(changed);
        assert_eq!(t.version(), 2);
        assert_eq!(store.load().len(), 2);
    }

    #[test]
    fn a_reader_keeps_its_snapshot_across_a_swap() {
        let store = MappingStore::new(MappingTable::empty(chrono::DateTime::UNIX_EPOCH));
        store.publish(table(&["sip:a@x"]), chrono::DateTime::UNIX_EPOCH);
        let snapshot = store.load();
        store.publish(table(&["sip:b@x"]), chrono::DateTime::UNIX_EPOCH);
        assert!(snapshot.lookup("a", "x").is_some());
        assert!(store.load().lookup("a", "x").is_none());
    }
}
