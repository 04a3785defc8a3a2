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
use crate::ldap::{Directory, Error as LdapError, Search};
use crate::model::{DirectoryObject, Enabled, Finding, FindingKind, ObjectKind, SipUri};

/// A table built from the directory, with what it could not map.
#[derive(Debug)]
pub(crate) struct Built {
    /// Version 0; the store gives it its number when published.
    pub table: MappingTable,
    pub findings: Vec<Finding>,
    /// Objects with a SIP address seen in the endpoint container (mapped or not).
    pub endpoints_seen: usize,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The directory could not be read.
    #[error(transparent)]
    Directory(#[from] LdapError),
    /// The entries did not validate (a bug if it happens: `plan_table` removes such entries).
    #[error("mapping table is invalid: {0}")]
    Invalid(#[from] TableError),
}

/// Reads the endpoint container and builds the table.
pub(crate) async fn from_directory(
    dir: &mut Directory,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Built, BuildError> {
    let classifier = inventory::classifier(settings);
    let mut findings = Vec::new();
    let mut objects = Vec::new();
    let search = Search::sip_objects("endpoint container", &settings.layout.endpoint_container);
    dir.for_each_object(&search, &classifier, &mut findings, |o| objects.push(o))
        .await?;
    let mut built = plan_table(objects, settings, now)?;
    findings.append(&mut built.findings);
    built.findings = findings;
    Ok(built)
}

/// The pure part: which objects map where, and the findings for the rest.
pub(crate) fn plan_table(
    objects: Vec<DirectoryObject>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Built, BuildError> {
    let mut findings = Vec::new();
    let mut endpoints_seen = 0;
    // Address (normalised) → candidate entries, sorted by DN for a deterministic choice.
    let mut candidates: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for o in objects {
        let Some(uri) = &o.sip_uri else {
            continue; // a malformed address was already reported by the reader
        };
        endpoints_seen += 1;
        match candidate(&o, uri, settings) {
            Ok(entry) => candidates
                .entry(entry.sip_uri.normalized().to_string())
                .or_default()
                .push(entry),
            Err(finding) => findings.push(finding),
        }
    }
    let mut entries = Vec::with_capacity(candidates.len());
    for (_, list) in candidates {
        if let Some(entry) = one_per_address(list, &mut findings) {
            entries.push(entry);
        }
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

/// The entry an endpoint object with an address maps to, or the finding saying why it is not
/// mapped: not a contact, disabled, or homed on no configured pool. `uri` is its address.
fn candidate(o: &DirectoryObject, uri: &SipUri, settings: &Settings) -> Result<Entry, Finding> {
    let finding = |kind, reason: String| Finding {
        kind,
        dn: o.dn.as_str().to_string(),
        reason,
    };
    if o.kind != ObjectKind::Contact {
        return Err(finding(
            FindingKind::NotAContact,
            format!(
                "{uri} is a {} in the endpoint container, not a contact; not mapped",
                o.kind
            ),
        ));
    }
    if o.enabled == Enabled::False {
        return Err(finding(
            FindingKind::Disabled,
            format!("{uri} is disabled (msRTCSIP-UserEnabled FALSE); not mapped"),
        ));
    }
    let Some(home) = &o.home_server_dn else {
        return Err(finding(
            FindingKind::UnknownPool,
            format!("{uri} has no msRTCSIP-PrimaryHomeServer; not mapped"),
        ));
    };
    let Some(pool) = settings.pool_by_home_server(home) else {
        return Err(finding(
            FindingKind::UnknownPool,
            format!(
                "{uri} is homed on {home}, which is no configured pool's home_server_dn; not mapped"
            ),
        ));
    };
    Ok(Entry {
        sip_uri: uri.clone(),
        pool: pool.fqdn.clone(),
        dn: o.dn.clone(),
    })
}

/// One entry for an address held by the contacts in `list`: the first by DN when they agree on
/// the pool (a `duplicate_uri` finding each all the same), none when they do not.
fn one_per_address(mut list: Vec<Entry>, findings: &mut Vec<Finding>) -> Option<Entry> {
    list.sort_by(|a, b| a.dn.cmp(&b.dn));
    if list.len() > 1 {
        let agree = list
            .iter()
            .all(|e| e.pool.eq_ignore_ascii_case(&list[0].pool));
        let dns: Vec<&str> = list.iter().map(|e| e.dn.as_str()).collect();
        let uri = list[0].sip_uri.as_str().to_string();
        let reason = if agree {
            format!(
                "{uri} is held by {} contacts ({}); mapped once",
                list.len(),
                dns.join("; ")
            )
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
            return None;
        }
    }
    list.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attributes, Classifier};

    const POOL1: &str = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,DC=contoso,DC=com";
    const POOL2: &str = "cn=lc services,cn=microsoft,cn=1:3,cn=pools,dc=contoso,dc=com";

    fn object(
        cn: &str,
        class: &str,
        uri: &str,
        enabled: Option<&str>,
        home: Option<&str>,
    ) -> DirectoryObject {
        let mut a = Attributes::new();
        a.insert("objectClass", vec![class.as_bytes().to_vec()]);
        a.insert("msRTCSIP-PrimaryUserAddress", vec![uri.as_bytes().to_vec()]);
        if let Some(e) = enabled {
            a.insert("msRTCSIP-UserEnabled", vec![e.as_bytes().to_vec()]);
        }
        if let Some(h) = home {
            a.insert("msRTCSIP-PrimaryHomeServer", vec![h.as_bytes().to_vec()]);
        }
        let classifier = Classifier::new(&["user".into()], &["contact".into()]);
        DirectoryObject::from_attributes(
            &format!("cn={cn},cn=Application Contacts,dc=x"),
            a,
            &classifier,
            &mut vec![],
        )
        .unwrap()
    }

    #[test]
    fn maps_enabled_contacts_on_configured_pools_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::mapping::test_settings(dir.path());
        let objects = vec![
            object(
                "a",
                "contact",
                "sip:PersistentChat@contoso.com",
                Some("TRUE"),
                Some(POOL1),
            ),
            object("b", "contact", "sip:chat2@contoso.com", None, Some(POOL2)),
            object(
                "c",
                "contact",
                "sip:off@contoso.com",
                Some("FALSE"),
                Some(POOL1),
            ),
            object(
                "d",
                "contact",
                "sip:lost@contoso.com",
                Some("TRUE"),
                Some("CN=Lc Services,CN=Microsoft,CN=9:9,CN=Pools,DC=contoso,DC=com"),
            ),
            object(
                "e",
                "contact",
                "sip:homeless@contoso.com",
                Some("TRUE"),
                None,
            ),
            object(
                "f",
                "user",
                "sip:user@contoso.com",
                Some("TRUE"),
                Some(POOL1),
            ),
            object(
                "g1",
                "contact",
                "sip:dup@contoso.com",
                Some("TRUE"),
                Some(POOL1),
            ),
            object(
                "g2",
                "contact",
                "sip:DUP@contoso.com",
                Some("TRUE"),
                Some(POOL1),
            ),
            object(
                "h1",
                "contact",
                "sip:split@contoso.com",
                Some("TRUE"),
                Some(POOL1),
            ),
            object(
                "h2",
                "contact",
                "sip:split@contoso.com",
                Some("TRUE"),
                Some(POOL2),
            ),
        ];
        let built = plan_table(objects, &settings, chrono::DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(built.endpoints_seen, 10);
        let t = &built.table;
        let mapped: Vec<(&str, &str)> = t
            .entries()
            .iter()
            .map(|e| (e.sip_uri.as_str(), e.pool.as_str()))
            .collect();
        assert_eq!(
            mapped,
            [
                ("sip:chat2@contoso.com", "pcpool2.contoso.com"),
                ("sip:dup@contoso.com", "pcpool1.contoso.com"),
                ("sip:PersistentChat@contoso.com", "pcpool1.contoso.com"),
            ]
        );
        assert_eq!(
            t.get(&SipUri::parse("sip:dup@contoso.com").unwrap())
                .unwrap()
                .dn
                .as_str(),
            "cn=g1,cn=Application Contacts,dc=x"
        );
        let kinds: Vec<(FindingKind, &str)> = built
            .findings
            .iter()
            .map(|f| (f.kind, &f.dn[3..5]))
            .collect();
        assert_eq!(
            kinds,
            // Sorted by kind (FindingKind's declaration order), then DN.
            [
                (FindingKind::DuplicateUri, "g1"),
                (FindingKind::DuplicateUri, "g2"),
                (FindingKind::DuplicateUri, "h1"),
                (FindingKind::DuplicateUri, "h2"),
                (FindingKind::UnknownPool, "d,"),
                (FindingKind::UnknownPool, "e,"),
                (FindingKind::Disabled, "c,"),
                (FindingKind::NotAContact, "f,"),
            ]
        );
        assert!(
            built
                .findings
                .iter()
                .any(|f| f.reason.contains("on different pools"))
        );
    }

    use crate::model::SipUri;
}
