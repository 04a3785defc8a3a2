//! Building a mapping table from the directory.
//!
//! Every contact with a SIP address in the endpoint container counts, whoever made it (pcsync or
//! an administrator with New-CsPersistentChatEndpoint). Each maps to the configured pool whose
//! `home_server_dn` equals its `msRTCSIP-PrimaryHomeServer`. What cannot be mapped is reported
//! as a finding, never guessed: a contact homed on an unknown pool or on none, a disabled one
//! (`msRTCSIP-UserEnabled: FALSE`), and an address held by more than one contact (all of them are
//! left out when they disagree on the pool; the lowest DN is kept when they agree).
//! [`plan_table`] is the pure part; [`from_directory`] adds the search.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::table::{Entry, MappingTable, TableError};
use crate::config::Settings;
use crate::inventory;
use crate::ldap::{Directory, Error as LdapError};
use crate::model::{DirectoryObject, Enabled, Finding, FindingKind, ObjectKind};

/// A table built from the directory, with what it could not map.
#[derive(Debug)]
pub struct Built {
    /// Version 0; the store gives it its number when published.
    pub table: MappingTable,
    pub findings: Vec<Finding>,
    /// Objects with a SIP address seen in the endpoint container (mapped or not).
    pub endpoints_seen: usize,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The directory could not be read.
    #[error(transparent)]
    Directory(#[from] LdapError),
    /// The entries did not validate (a bug if it happens: `plan_table` removes such entries).
    #[error("mapping table is invalid: {0}")]
    Invalid(#[from] TableError),
}

/// Reads the endpoint container and builds the table.
pub async fn from_directory(
    dir: &mut Directory,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Built, BuildError> {
    let classifier = inventory::classifier(settings);
    let mut findings = Vec::new();
    let mut objects = Vec::new();
    dir.for_each_sip_object(
        "endpoint container",
        &settings.layout.endpoint_container,
        None,
        &classifier,
        &mut findings,
        |o| objects.push(o),
    )
    .await?;
    let mut built = plan_table(objects, settings, now)?;
    findings.append(&mut built.findings);
    built.findings = findings;
    Ok(built)
}

/// The pure part: which objects map where, and the findings for the rest.
pub fn plan_table(
    objects: Vec<DirectoryObject>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Built, BuildError> {
    let mut findings = Vec::new();
    let mut endpoints_seen = 0;
    // Address (normalised) → candidate entries, sorted by DN for a deterministic choice.
    let mut candidates: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for o in objects {
        let Some(uri) = o.sip_uri.clone() else {
            continue; // a malformed address was already reported by the reader
        };
        endpoints_seen += 1;
        let finding = |kind, reason: String| Finding {
            kind,
            dn: o.dn.as_str().to_string(),
            reason,
        };
        if o.kind != ObjectKind::Contact {
            findings.push(finding(
                FindingKind::NotAContact,
                format!("{uri} is a {} in the endpoint container, not a contact; not mapped", o.kind),
            ));
            continue;
        }
        if o.enabled == Enabled::False {
            findings.push(finding(
                FindingKind::Disabled,
                format!("{uri} is disabled (msRTCSIP-UserEnabled FALSE); not mapped"),
            ));
            continue;
        }
        let Some(home) = &o.home_server_dn else {
            findings.push(finding(
                FindingKind::UnknownPool,
                format!("{uri} has no msRTCSIP-PrimaryHomeServer; not mapped"),
            ));
            continue;
        };
        let Some(pool) = settings.pool_by_home_server(home) else {
            findings.push(finding(
                FindingKind::UnknownPool,
                format!("{uri} is homed on {home}, which is no configured pool's home_server_dn; not mapped"),
            ));
            continue;
        };
        candidates
            .entry(uri.normalized().to_string())
            .or_default()
            .push(Entry {
                sip_uri: uri,
                pool: pool.fqdn.clone(),
                dn: o.dn.clone(),
            });
    }
    let mut entries = Vec::with_capacity(candidates.len());
    for (_, mut list) in candidates {
        list.sort_by(|a, b| a.dn.cmp(&b.dn));
        if list.len() > 1 {
            let agree = list.iter().all(|e| e.pool.eq_ignore_ascii_case(&list[0].pool));
            let dns: Vec<&str> = list.iter().map(|e| e.dn.as_str()).collect();
            let uri = list[0].sip_uri.as_str().to_string();
            let reason = if agree {
                format!("{uri} is held by {} contacts ({}); mapped once", list.len(), dns.join("; "))
            } else {
                format!(
                    "{uri} is held by {} contacts on different pools ({}); not mapped",
                    list.len(),
                    dns.join("; ")
                )
            };
            for e in &list {
                findings.push(Finding {
                    kind: FindingKind::DuplicateUri,
                    dn: e.dn.as_str().to_string(),
                    reason: reason.clone(),
                });
            }
            if !agree {
                continue;
            }
        }
        list.truncate(1);
        entries.append(&mut list);
    }
    let pools: Vec<&str> = settings.pools.iter().map(|p| p.fqdn.as_str()).collect();
    let table = MappingTable::new(entries, &pools, 0, now)?;
    findings.sort();
    Ok(Built {
        table,
        findings,
        endpoints_seen,
    })
}
