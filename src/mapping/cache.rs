//! The last-known-good table in `state.dir/mappings.json`, so the redirector can start and serve
//! while the directory is unreachable.
//!
//! Writes are atomic ([`crate::private::write_atomic`]): a reader sees the old table or the new.
//! The file is 0600 and the directory 0700 (the table names internal pools and DNs). Reading a
//! corrupt or foreign file is an error the caller reports before starting empty; it never
//! crashes the server. Entries naming a pool that is no longer configured are dropped on load.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::table::{Entry, MappingTable};
use crate::config::Settings;
use crate::model::{Dn, SipUri};

/// File name inside `state.dir`.
pub(crate) const CACHE_FILE: &str = "mappings.json";
/// Format number written into the file.
const FORMAT: u32 = 1;

/// A cache read or write that failed; each names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// The file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a mapping cache pcsync can read.
    #[error("{path} is not a readable mapping cache: {reason}")]
    Corrupt { path: String, reason: String },
}

/// One entry as written (also the shape of `pcsync mappings --format json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EntryRecord {
    pub sip_uri: String,
    pub pool: String,
    pub dn: String,
}

/// The file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheFile {
    pub format: u32,
    pub version: u64,
    pub built_at: DateTime<Utc>,
    pub entries: Vec<EntryRecord>,
}

impl CacheFile {
    pub(crate) fn from_table(table: &MappingTable) -> CacheFile {
        CacheFile {
            format: FORMAT,
            version: table.version(),
            built_at: table.built_at(),
            entries: table
                .entries()
                .into_iter()
                .map(|e| EntryRecord {
                    sip_uri: e.sip_uri.as_str().to_string(),
                    pool: e.pool.clone(),
                    dn: e.dn.as_str().to_string(),
                })
                .collect(),
        }
    }
}

/// Where the cache lives.
pub(crate) fn path(settings: &Settings) -> PathBuf {
    settings.state.dir.join(CACHE_FILE)
}

/// Writes `table` atomically.
pub(crate) fn save(dir: &Path, table: &MappingTable) -> Result<(), CacheError> {
    let io = |op, path: &Path| {
        let path = path.display().to_string();
        move |source| CacheError::Io { op, path, source }
    };
    crate::private::create_dir(dir).map_err(io("cannot create", dir))?;
    let target = dir.join(CACHE_FILE);
    let mut text = serde_json::to_vec_pretty(&CacheFile::from_table(table)).map_err(|e| {
        CacheError::Corrupt {
            path: target.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    text.push(b'\n');
    crate::private::write_atomic(&target, &text).map_err(io("cannot write", &target))
}

/// Reads the cache. `Ok(None)` when there is none yet. `dropped` receives entries that no longer
/// validate (pool not configured any more, bad address), as one line each.
pub(crate) fn load(
    dir: &Path,
    settings: &Settings,
    dropped: &mut Vec<String>,
) -> Result<Option<MappingTable>, CacheError> {
    let file = dir.join(CACHE_FILE);
    let shown = file.display().to_string();
    let bytes = match fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::Io {
                op: "cannot read",
                path: shown,
                source,
            });
        }
    };
    let corrupt = |reason: String| CacheError::Corrupt {
        path: shown.clone(),
        reason,
    };
    let cache: CacheFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if cache.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (expected {FORMAT})",
            cache.format
        )));
    }
    let mut entries = Vec::with_capacity(cache.entries.len());
    for r in cache.entries {
        let Some(pool) = settings.pool(&r.pool) else {
            dropped.push(format!(
                "{} → {}: pool no longer configured",
                r.sip_uri, r.pool
            ));
            continue;
        };
        match (SipUri::parse(&r.sip_uri), Dn::parse(&r.dn)) {
            (Ok(sip_uri), Ok(dn)) => {
                if entries.iter().any(|e: &Entry| e.sip_uri == sip_uri) {
                    dropped.push(format!("{}: listed twice", r.sip_uri));
                    continue;
                }
                entries.push(Entry {
                    sip_uri,
                    pool: pool.fqdn.clone(),
                    dn,
                });
            }
            _ => dropped.push(format!(
                "{} ({}): unreadable address or DN",
                r.sip_uri, r.dn
            )),
        }
    }
    let pools: Vec<&str> = settings.pools.iter().map(|p| p.fqdn.as_str()).collect();
    MappingTable::new(entries, &pools, cache.version, cache.built_at)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn table(version: u64) -> MappingTable {
        let e = Entry {
            sip_uri: SipUri::parse("sip:persistentchat@contoso.com").unwrap(),
            pool: "pcpool1.contoso.com".into(),
            dn: Dn::parse("cn={4c2f},cn=Application Contacts,dc=x").unwrap(),
        };
        MappingTable::new(vec![e], &["pcpool1.contoso.com"], version, Utc::now()).unwrap()
    }

    #[test]
    fn round_trips_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let settings = crate::mapping::test_settings(&dir);
        save(&dir, &table(4)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CACHE_FILE)), 0o600);
        let mut dropped = vec![];
        let back = load(&dir, &settings, &mut dropped).unwrap().unwrap();
        assert!(dropped.is_empty());
        assert_eq!(back.version(), 4);
        assert!(back.same_entries(&table(4)));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "only the cache file, no temp file"
        );
    }

    #[test]
    fn missing_corrupt_and_stale_caches() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = crate::mapping::test_settings(tmp.path());
        let mut dropped = vec![];
        assert!(load(tmp.path(), &settings, &mut dropped).unwrap().is_none());
        fs::write(tmp.path().join(CACHE_FILE), "{not json").unwrap();
        let e = load(tmp.path(), &settings, &mut dropped).unwrap_err();
        assert!(
            e.to_string().contains("is not a readable mapping cache"),
            "{e}"
        );
        let stale = r#"{"format":1,"version":9,"built_at":"2026-01-01T00:00:00Z","entries":[
            {"sip_uri":"sip:a@x.com","pool":"gone.contoso.com","dn":"cn=a,dc=x"},
            {"sip_uri":"sip:b@x.com","pool":"PCPOOL2.contoso.com","dn":"cn=b,dc=x"}]}"#;
        fs::write(tmp.path().join(CACHE_FILE), stale).unwrap();
        let t = load(tmp.path(), &settings, &mut dropped).unwrap().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.version(), 9);
        assert_eq!(
            dropped,
            ["sip:a@x.com → gone.contoso.com: pool no longer configured"]
        );
    }
}
