//! Planning: from the desired state (configuration) and the observed directory to a [`Plan`].
//!
//! [`plan`] is a pure function: no I/O, no clock (`now` is a parameter), no
//! randomness, and every collection is ordered, so the same inputs always give the same plan,
//! byte for byte. It never fails: whatever it cannot act on safely becomes a [`Finding`], and a
//! finding only ever blocks the swap it concerns. [`Collector`] is the other pure half: it
//! watches the streamed scan and keeps only what planning needs, so memory does not grow with
//! the directory (a 64-bit hash per SIP URI for duplicate detection, nothing else per object).
//!
//! Endpoint names are deterministic: `CN={GUID}` where the GUID is a name-based UUID (RFC 9562
//! version 8, SHA-256 of the normalised SIP URI). The same URI always gives the same DN, so a
//! re-run, a crash recovery or an LDIF export all name the endpoint identically.

mod collect;
pub(crate) mod render;
#[cfg(test)]
mod tests;

pub(crate) use collect::Collector;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Layout, Migration, Pool, Retire, Settings};
use crate::model::{
    AttrValues, DirectoryObject, Dn, Enabled, Entry, Finding, FindingKind, ObjectKind, attr,
};
use crate::util::hex;

/// Version of the plan document (`--format json`, `--plan-out`); see schemas/plan.schema.json.
pub(crate) const PLAN_FORMAT: u32 = 1;

/// What the configuration asks for: the parts of [`Settings`] planning reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Desired<'a> {
    pub migrations: &'a [Migration],
    pub pools: &'a [Pool],
    pub layout: &'a Layout,
    pub retire: Retire,
}

impl<'a> Desired<'a> {
    pub(crate) fn from_settings(s: &'a Settings) -> Desired<'a> {
        Desired {
            migrations: &s.migrations,
            pools: &s.pools,
            layout: &s.layout,
            retire: s.safety.retire,
        }
    }

    fn pool(&self, fqdn: &str) -> Option<&'a Pool> {
        self.pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }
}

/// What the scan kept of the directory (see [`Collector`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Every object holding a migration's SIP URI, keyed by the normalised URI, with its
    /// complete entry in `attributes` (the caller re-reads these few objects in full).
    pub holders: BTreeMap<String, Vec<DirectoryObject>>,
    /// Users that look like Group Chat lookup accounts no migration names: (DN, SIP URI).
    pub suspects: BTreeSet<(String, String)>,
    /// SIP URIs held by several objects (outside the migrations), with every holder's DN.
    pub duplicates: BTreeMap<String, BTreeSet<String>>,
    /// Problems found while reading (malformed values).
    pub findings: Vec<Finding>,
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the well-known user, or clear its msRTCSIP-* attributes (`retire = "disable"`).
    RetireUser,
    /// Add the legacy endpoint contact.
    CreateEndpoint,
    /// The endpoint exists but is homed on the wrong pool (or has the wrong owner or flag).
    RepointEndpoint,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::RetireUser => "retire_user",
            Action::CreateEndpoint => "create_endpoint",
            Action::RepointEndpoint => "repoint_endpoint",
        }
    }
}

/// Whether a change is applied by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Ready,
    /// The migration's `not_before` lies in the future.
    WaitingForCutover,
}

/// One directory write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    pub dn: String,
    pub sip_uri: String,
    /// FQDN of the target pool.
    pub pool: String,
    pub(crate) status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    pub reason: String,
    /// For `retire_user`: delete or disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retire: Option<Retire>,
    /// The values the plan saw; the write is conditional on them (an attribute with no values
    /// means "absent").
    pub expect: Vec<AttrValues>,
    /// `create_endpoint`: the new entry. `repoint_endpoint`: the new values of the attributes
    /// that change. `retire_user` with disable: the attributes (and values) removed.
    pub attributes: Vec<AttrValues>,
}

/// Counts shown in the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub ready: usize,
    pub waiting: usize,
    pub findings: usize,
    /// Migrations whose swap a finding blocked.
    pub blocked: usize,
    /// Migrations already in the desired state.
    pub in_sync: usize,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub format: u32,
    /// SHA-256 (hex) of the desired state and of every observed object the plan depends on.
    pub fingerprint: String,
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
}

impl Plan {
    /// The changes this run applies.
    pub(crate) fn ready(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.status == Status::Ready)
    }

    /// True when nothing is to be written now.
    pub(crate) fn is_in_sync(&self) -> bool {
        self.ready().next().is_none()
    }
}

/// The DN of the endpoint pcsync creates for `uri` (normalised) in `container`.
pub(crate) fn endpoint_dn(container: &Dn, normalized_uri: &str) -> Dn {
    let rdn = format!("{{{}}}", endpoint_guid(normalized_uri));
    // The value has only hex digits, dashes and braces, which need no escaping, so
    // Dn::child cannot fail; fall back to the container rather than panic.
    Dn::child(container, "CN", &rdn).unwrap_or_else(|_| container.clone())
}

/// A name-based UUID (RFC 9562 version 8) from SHA-256 of the normalised SIP URI. Version 5
/// would need SHA-1, which nothing else in pcsync uses; v8 exists for exactly this purpose.
pub(crate) fn endpoint_guid(normalized_uri: &str) -> String {
    let digest = Sha256::digest(format!("pcsync:legacy-endpoint:{normalized_uri}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The attribute values the plan saw on `o` that the conditional write checks.
fn expectation(o: &DirectoryObject, names: &[&str]) -> Vec<AttrValues> {
    names
        .iter()
        .map(|name| AttrValues {
            name: (*name).to_string(),
            values: o.attributes.get(name).to_vec(),
        })
        .collect()
}

/// What Disable-CsUser removes: every msRTCSIP-* attribute, with the exact values seen.
fn msrtcsip_attributes(o: &DirectoryObject) -> Vec<AttrValues> {
    o.attributes
        .iter()
        .filter(|(name, values)| {
            name.as_str()
                .get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case("msRTCSIP-"))
                && !values.is_empty()
        })
        .map(|(name, values)| AttrValues {
            name: name.as_str().to_string(),
            values: values.clone(),
        })
        .collect()
}

const CHECKED: &[&str] = &[
    attr::PRIMARY_USER_ADDRESS,
    attr::USER_ENABLED,
    attr::PRIMARY_HOME_SERVER,
];
const ENDPOINT_CHECKED: &[&str] = &[
    attr::PRIMARY_USER_ADDRESS,
    attr::USER_ENABLED,
    attr::PRIMARY_HOME_SERVER,
    attr::OWNER_URN,
];

/// Computes the plan. Pure: see the module docs.
pub(crate) fn plan(desired: &Desired<'_>, observed: &Observed, now: DateTime<Utc>) -> Plan {
    let mut findings: BTreeSet<Finding> = observed.findings.iter().cloned().collect();
    let mut changes = Vec::new();
    let mut summary = Summary::default();
    let container = &desired.layout.endpoint_container;

    // Two migrations claiming one URI: neither is planned.
    let mut claims: BTreeMap<String, Vec<&Migration>> = BTreeMap::new();
    for m in desired.migrations {
        claims
            .entry(m.well_known_uri.normalized().to_string())
            .or_default()
            .push(m);
    }

    for (uri, ms) in &claims {
        let holders: &[DirectoryObject] = observed.holders.get(uri).map_or(&[], Vec::as_slice);
        if ms.len() > 1 {
            let pools: Vec<&str> = ms.iter().map(|m| m.target_pool.as_str()).collect();
            findings.insert(Finding::new(
                FindingKind::DuplicateMigration,
                "",
                format!(
                    "{uri} is named by {} [[migrations]] entries (target pools {}); none of them is planned",
                    ms.len(),
                    pools.join(", ")
                ),
            ));
            summary.blocked += 1;
            continue;
        }
        let m = ms[0];
        let Some(pool) = desired.pool(&m.target_pool) else {
            // Config validation guarantees the pool exists; stay total anyway.
            continue;
        };
        let waiting = m.not_before.filter(|t| *t > now);
        let status = if waiting.is_some() {
            Status::WaitingForCutover
        } else {
            Status::Ready
        };
        let mut blocked = false;
        let mut block = |kind: FindingKind, dn: &str, reason: String| {
            findings.insert(Finding::new(kind, dn, reason));
            blocked = true;
        };

        let mut users = Vec::new();
        let mut endpoints = Vec::new();
        for o in holders {
            let dn = o.dn.as_str();
            match o.kind {
                ObjectKind::User => match (&m.legacy_home_server_dn, &o.home_server_dn) {
                    (Some(legacy), Some(home)) if legacy != home => block(
                        FindingKind::UnexpectedHome,
                        dn,
                        format!(
                            "holds {uri} but is homed on {home}, not on legacy_home_server_dn {legacy}; the swap is blocked"
                        ),
                    ),
                    (Some(legacy), None) => block(
                        FindingKind::UnexpectedHome,
                        dn,
                        format!(
                            "holds {uri} but has no {}, expected legacy_home_server_dn {legacy}; the swap is blocked",
                            attr::PRIMARY_HOME_SERVER
                        ),
                    ),
                    _ => users.push(o),
                },
                ObjectKind::Contact if o.dn.is_within(container) => endpoints.push(o),
                ObjectKind::Contact => block(
                    FindingKind::EndpointOutsideContainer,
                    dn,
                    format!(
                        "contact holding {uri} lies outside the endpoint container {container}; the swap is blocked"
                    ),
                ),
                ObjectKind::Other => block(
                    FindingKind::UriInUse,
                    dn,
                    format!(
                        "{uri} is held by this object (neither a user nor a contact, enabled {}); a SIP URI stays taken until the object is deleted or the attribute cleared; the swap is blocked",
                        o.enabled
                    ),
                ),
            }
        }
        if users.len() > 1 {
            for u in &users {
                block(
                    FindingKind::DuplicateUri,
                    u.dn.as_str(),
                    format!(
                        "{uri} is held by {} users; the swap is blocked",
                        users.len()
                    ),
                );
            }
        }
        if endpoints.len() > 1 {
            for e in &endpoints {
                block(
                    FindingKind::DuplicateUri,
                    e.dn.as_str(),
                    format!(
                        "{uri} is held by {} endpoint contacts; the swap is blocked",
                        endpoints.len()
                    ),
                );
            }
        }
        if let ([user], [endpoint]) = (users.as_slice(), endpoints.as_slice()) {
            for o in [user, endpoint] {
                block(
                    FindingKind::UriInUse,
                    o.dn.as_str(),
                    format!(
                        "{uri} is held by both the user {} and the endpoint {}; the swap is blocked",
                        user.dn, endpoint.dn
                    ),
                );
            }
        }
        if blocked {
            summary.blocked += 1;
            continue;
        }

        let base = |action: Action, dn: &str, reason: String| Change {
            action,
            dn: dn.to_string(),
            sip_uri: m.well_known_uri.as_str().to_string(),
            pool: pool.fqdn.clone(),
            status,
            not_before: waiting,
            reason,
            retire: None,
            expect: Vec::new(),
            attributes: Vec::new(),
        };
        match (users.first(), endpoints.first()) {
            (Some(user), None) => {
                let mut retire = base(
                    Action::RetireUser,
                    user.dn.as_str(),
                    format!(
                        "leftover Group Chat well-known user (enabled {}, home {})",
                        user.enabled,
                        user.home_server_dn
                            .as_ref()
                            .map_or("-".to_string(), Dn::to_string)
                    ),
                );
                retire.retire = Some(desired.retire);
                retire.expect = expectation(user, CHECKED);
                if desired.retire == Retire::Disable {
                    retire.attributes = msrtcsip_attributes(user);
                }
                changes.push(retire);
                changes.push(create(desired, m, pool, uri, base));
            }
            (None, None) => changes.push(create(desired, m, pool, uri, base)),
            (None, Some(endpoint)) => {
                let wanted = [
                    (attr::PRIMARY_HOME_SERVER, pool.home_server_dn.as_str()),
                    (attr::OWNER_URN, desired.layout.owner_urn.as_str()),
                    (attr::USER_ENABLED, "TRUE"),
                ];
                let ok = |name: &str, value: &str| match name {
                    attr::PRIMARY_HOME_SERVER => endpoint
                        .home_server_dn
                        .as_ref()
                        .is_some_and(|h| Dn::parse(value).is_ok_and(|v| &v == h)),
                    attr::USER_ENABLED => endpoint.enabled == Enabled::True,
                    _ => endpoint
                        .owner_urn
                        .as_deref()
                        .is_some_and(|o| o.eq_ignore_ascii_case(value)),
                };
                let fix: Vec<AttrValues> = wanted
                    .iter()
                    .filter(|(name, value)| !ok(name, value))
                    .map(|(name, value)| AttrValues::text(name, &[value]))
                    .collect();
                if fix.is_empty() {
                    summary.in_sync += 1;
                } else {
                    let names: Vec<&str> = fix.iter().map(|a| a.name.as_str()).collect();
                    let mut c = base(
                        Action::RepointEndpoint,
                        endpoint.dn.as_str(),
                        format!(
                            "endpoint exists but {} differ{} from the target pool's",
                            names.join(", "),
                            if names.len() == 1 { "s" } else { "" }
                        ),
                    );
                    c.expect = expectation(endpoint, ENDPOINT_CHECKED);
                    c.attributes = fix;
                    changes.push(c);
                }
            }
            // Reported above as a conflict.
            (Some(_), Some(_)) => {}
        }
    }

    // Suspects and duplicates outside the migrations.
    for (dn, uri) in &observed.suspects {
        findings.insert(Finding::new(
            FindingKind::Suspect,
            dn,
            format!(
                "SIP-enabled user {uri} looks like a Group Chat lookup account but no [[migrations]] entry names it; confirm and add one, or ignore"
            ),
        ));
    }
    for (uri, dns) in &observed.duplicates {
        for dn in dns {
            findings.insert(Finding::new(
                FindingKind::DuplicateUri,
                dn,
                format!("{uri} is held by {} objects", dns.len()),
            ));
        }
    }

    summary.ready = changes.iter().filter(|c| c.status == Status::Ready).count();
    summary.waiting = changes.len() - summary.ready;
    summary.findings = findings.len();
    Plan {
        format: PLAN_FORMAT,
        fingerprint: fingerprint(desired, observed),
        changes,
        findings: findings.into_iter().collect(),
        summary,
    }
}

fn create(
    desired: &Desired<'_>,
    m: &Migration,
    pool: &Pool,
    uri: &str,
    base: impl Fn(Action, &str, String) -> Change,
) -> Change {
    let dn = endpoint_dn(&desired.layout.endpoint_container, uri);
    let rdn = dn.leaf_value().unwrap_or_default();
    let mut c = base(
        Action::CreateEndpoint,
        dn.as_str(),
        format!(
            "legacy endpoint contact for {} homed on {}",
            m.well_known_uri, pool.fqdn
        ),
    );
    let classes: Vec<&str> = desired
        .layout
        .endpoint_object_classes
        .iter()
        .map(String::as_str)
        .collect();
    let mut attributes = vec![
        AttrValues::text(attr::OBJECT_CLASS, &classes),
        AttrValues::text(attr::CN, &[&rdn]),
    ];
    // RFC 4519's person (OpenLDAP) requires sn; AD's accepts it. New-CsPersistentChatEndpoint
    // leaves it unset on AD, where it is harmless either way.
    if classes.iter().any(|c| c.eq_ignore_ascii_case("person")) {
        attributes.push(AttrValues::text("sn", &[&rdn]));
    }
    attributes.extend([
        AttrValues::text(attr::DISPLAY_NAME, &[&m.display_name()]),
        AttrValues::text(attr::PRIMARY_USER_ADDRESS, &[m.well_known_uri.as_str()]),
        AttrValues::text(attr::USER_ENABLED, &["TRUE"]),
        AttrValues::text(attr::PRIMARY_HOME_SERVER, &[pool.home_server_dn.as_str()]),
        AttrValues::text(attr::OWNER_URN, &[&desired.layout.owner_urn]),
    ]);
    c.expect = vec![AttrValues {
        name: attr::PRIMARY_USER_ADDRESS.to_string(),
        values: Vec::new(),
    }];
    c.attributes = attributes;
    c
}

/// SHA-256 over a canonical rendering of the desired state and every observed object the plan
/// depends on. A saved plan is applied only if a fresh scan gives the same fingerprint.
fn fingerprint(desired: &Desired<'_>, observed: &Observed) -> String {
    #[derive(Serialize)]
    struct CanonicalMigration {
        uri: String,
        pool: String,
        legacy: Option<String>,
        not_before: Option<String>,
        display_name: String,
    }
    #[derive(Serialize)]
    struct Canonical<'a> {
        migrations: Vec<CanonicalMigration>,
        pools: Vec<(String, String)>,
        container: &'a str,
        classes: &'a [String],
        owner_urn: &'a str,
        retire: Retire,
        holders: Vec<(&'a str, Vec<Entry>)>,
        duplicates: &'a BTreeMap<String, BTreeSet<String>>,
    }
    let canonical = Canonical {
        migrations: desired
            .migrations
            .iter()
            .map(|m| CanonicalMigration {
                uri: m.well_known_uri.as_str().to_string(),
                pool: m.target_pool.clone(),
                legacy: m.legacy_home_server_dn.as_ref().map(Dn::to_string),
                not_before: m.not_before.map(|t| t.to_rfc3339()),
                display_name: m.display_name(),
            })
            .collect(),
        pools: desired
            .pools
            .iter()
            .map(|p| (p.fqdn.clone(), p.home_server_dn.to_string()))
            .collect(),
        container: desired.layout.endpoint_container.as_str(),
        classes: &desired.layout.endpoint_object_classes,
        owner_urn: &desired.layout.owner_urn,
        retire: desired.retire,
        holders: observed
            .holders
            .iter()
            .map(|(uri, objects)| {
                let mut entries: Vec<Entry> = objects
                    .iter()
                    .map(|o| Entry::new(o.dn.normalized(), &o.attributes))
                    .collect();
                entries.sort_by(|a, b| a.dn.cmp(&b.dn));
                (uri.as_str(), entries)
            })
            .collect(),
        duplicates: &observed.duplicates,
    };
    // Serialising plain structs, vectors and strings cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}
