//! One refresh of the published table: connect, build, guard, publish, save.
//!
//! A failed refresh (directory down, bad data) keeps the old table; so does a refresh that found
//! endpoint contacts but could map none of them while the current table is not empty (a
//! configuration change or a partial directory must not blank the redirector). An empty result
//! replaces a non-empty table only when the search succeeded and the container really holds no
//! endpoint. Callers log the outcome; both kinds of failure are counted in the store.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::build::{self, BuildError};
use super::cache::{self, CacheError};
use super::store::MappingStore;
use super::table::MappingTable;
use crate::config::Settings;
use crate::ldap::{ConnectOptions, Directory};
use crate::model::Finding;

/// Why a refresh kept the old table.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefreshError {
    #[error("mapping refresh failed, keeping table version {kept}: {source}")]
    Build {
        kept: u64,
        #[source]
        source: BuildError,
    },
    /// The directory could not be reached or read.
    #[error("mapping refresh failed, keeping table version {kept}: {source}")]
    Directory {
        kept: u64,
        #[source]
        source: crate::ldap::Error,
    },
    /// Endpoints exist but none could be mapped; the non-empty table is kept.
    #[error(
        "mapping refresh refused, keeping table version {kept} ({entries} entries): the endpoint container holds {seen} endpoint(s) but none maps to a configured pool"
    )]
    SuspiciousEmpty {
        kept: u64,
        entries: usize,
        seen: usize,
    },
}

/// What a successful refresh did.
#[derive(Debug)]
pub(crate) struct Refreshed {
    pub table: Arc<MappingTable>,
    pub changed: bool,
    pub findings: Vec<Finding>,
    /// Set when the table was published but the cache file could not be written.
    pub cache_error: Option<CacheError>,
}

/// Runs one refresh against the directory.
pub(crate) async fn refresh(
    store: &MappingStore,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Refreshed, RefreshError> {
    let kept = store.load().version();
    let result = async {
        let mut dir = Directory::connect_with(&settings.directory, &agent_connection(settings))
            .await
            .map_err(|source| RefreshError::Directory { kept, source })?;
        let built = build::from_directory(&mut dir, settings, now).await;
        dir.close().await;
        built.map_err(|source| RefreshError::Build { kept, source })
    }
    .await;
    let outcome = result.and_then(|built| apply(store, settings, built, now));
    store.count_refresh(outcome.is_ok());
    outcome
}

/// Guards, publishes and saves a built table (the pure-ish half, testable without a directory).
pub(crate) fn apply(
    store: &MappingStore,
    settings: &Settings,
    built: build::Built,
    now: DateTime<Utc>,
) -> Result<Refreshed, RefreshError> {
    let current = store.load_full();
    if built.table.is_empty() && !current.is_empty() && built.endpoints_seen > 0 {
        return Err(RefreshError::SuspiciousEmpty {
            kept: current.version(),
            entries: current.len(),
            seen: built.endpoints_seen,
        });
    }
    let (table, changed) = store.publish(built.table, now);
    let cache_error = if changed || !cache::path(settings).exists() {
        cache::save(&settings.state.dir, &table).err()
    } else {
        None
    };
    Ok(Refreshed {
        table,
        changed,
        findings: built.findings,
        cache_error,
    })
}

/// How the agent's connections are made: TCP keepalive after `[daemon] watch_timeout` of
/// silence, so a peer that vanished without a close fails the operation waiting on it within
/// that time instead of hanging it. Every long-lived worker of `pcsync run` connects this way.
pub(crate) fn agent_connection(settings: &Settings) -> ConnectOptions {
    ConnectOptions {
        keepalive: settings.daemon.watch_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::build::Built;
    use crate::mapping::table::Entry;
    use crate::model::{Dn, SipUri};

    fn built(uris: &[&str], seen: usize) -> Built {
        let entries = uris
            .iter()
            .map(|u| Entry {
                sip_uri: SipUri::parse(u).unwrap(),
                pool: "pcpool1.contoso.com".into(),
                dn: Dn::parse(&format!("cn={u},dc=x").replace(':', "-")).unwrap(),
            })
            .collect();
        Built {
            table: MappingTable::new(entries, &["pcpool1.contoso.com"], 0, Utc::now()).unwrap(),
            findings: vec![],
            endpoints_seen: seen,
        }
    }

    #[test]
    fn an_unexplained_empty_result_keeps_the_table_and_a_real_one_replaces_it() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = crate::mapping::test_settings(tmp.path());
        let store = MappingStore::new(MappingTable::empty(Utc::now()));
        let done = apply(&store, &settings, built(&["sip:a@x.com"], 1), Utc::now()).unwrap();
        assert!(done.changed && done.cache_error.is_none());
        assert!(cache::path(&settings).exists());
        // Endpoints are there but none mapped: refused, old table kept.
        let e = apply(&store, &settings, built(&[], 3), Utc::now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mapping refresh refused, keeping table version 1 (1 entries): the endpoint container holds 3 endpoint(s) but none maps to a configured pool"
        );
        assert_eq!(store.load().len(), 1);
        // The container is really empty: the empty table is published.
        let done = apply(&store, &settings, built(&[], 0), Utc::now()).unwrap();
        assert!(done.changed);
        assert_eq!(store.load().version(), 2);
        assert!(store.load().is_empty());
    }
}
