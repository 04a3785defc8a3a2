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

mod change;
mod collect;
pub mod desired;
pub(crate) mod render;
pub(crate) mod shape;
#[cfg(test)]
mod tests;

pub(crate) use change::Status;
pub use change::{Action, Change, CreateEndpoint, Header, RepointEndpoint, RetireUser};
pub(crate) use collect::Collector;
pub(crate) use desired::Desired;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{
    AttrName, AttrValues, DirectoryObject, Dn, Enabled, Entry, Finding, FindingKind, ObjectKind,
    attr,
};
use crate::util::hex;
use desired::{Layout, Migration, Pool, Retire};

/// Version of the plan document (`--format json`, `--plan-out`); see schemas/plan.schema.json.
pub(crate) const PLAN_FORMAT: u32 = 1;

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

impl Summary {
    /// Counts the ready and waiting changes and the findings (`blocked` is counted apart).
    fn count(&mut self, changes: &[Change], findings: usize) {
        self.ready = changes.iter().filter(|c| c.is_ready()).count();
        self.waiting = changes.len() - self.ready;
        self.findings = findings;
    }
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
        self.changes.iter().filter(|c| c.is_ready())
    }

    /// True when nothing is to be written now.
    pub(crate) fn is_in_sync(&self) -> bool {
        self.ready().next().is_none()
    }

    /// Takes the swap for `uri` out of the plan because of `findings` (the preflight's): its
    /// changes are dropped, the findings added, and the summary counts it as blocked. Other
    /// swaps are untouched. Nothing happens when the plan has no change for `uri`.
    pub(crate) fn block_swap(&mut self, uri: &crate::model::SipUri, findings: Vec<Finding>) {
        let before = self.changes.len();
        self.changes.retain(|c| c.sip_uri() != uri);
        if self.changes.len() == before {
            return;
        }
        let mut all: BTreeSet<Finding> = std::mem::take(&mut self.findings).into_iter().collect();
        all.extend(findings);
        self.findings = all.into_iter().collect();
        self.summary.count(&self.changes, self.findings.len());
        self.summary.blocked += 1;
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
            name: AttrName::new(name),
            values: o.attributes.get(name).to_vec(),
        })
        .collect()
}

/// What Disable-CsUser removes: every msRTCSIP-* attribute, with the exact values seen.
fn msrtcsip_attributes(o: &DirectoryObject) -> Vec<AttrValues> {
    o.attributes
        .iter()
        .filter(|(name, values)| name.is_msrtcsip() && !values.is_empty())
        .map(|(name, values)| AttrValues {
            name: name.clone(),
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
    let mut planner = Planner {
        desired,
        now,
        findings: observed.findings.iter().cloned().collect(),
        changes: Vec::new(),
        summary: Summary::default(),
    };
    for (uri, claims) in claims(desired.migrations) {
        let holders = observed.holders.get(&uri).map_or(&[][..], Vec::as_slice);
        planner.migration(&uri, &claims, holders);
    }
    planner.outside_migrations(observed);
    planner.finish(fingerprint(desired, observed))
}

/// The migrations by normalised URI: two claiming one URI are a configuration conflict.
fn claims(migrations: &[Migration]) -> BTreeMap<String, Vec<&Migration>> {
    let mut claims: BTreeMap<String, Vec<&Migration>> = BTreeMap::new();
    for m in migrations {
        claims
            .entry(m.well_known_uri.normalized().to_string())
            .or_default()
            .push(m);
    }
    claims
}

/// The plan as it is being built, one migration at a time.
struct Planner<'a> {
    desired: &'a Desired<'a>,
    now: DateTime<Utc>,
    findings: BTreeSet<Finding>,
    changes: Vec<Change>,
    summary: Summary,
}

/// One migration being planned: its target pool and when it may be applied.
struct Swap<'a> {
    migration: &'a Migration,
    pool: &'a Pool,
    /// The normalised URI.
    uri: &'a str,
    status: Status,
    /// `not_before`, while it lies in the future.
    waiting: Option<DateTime<Utc>>,
}

impl Swap<'_> {
    fn header(&self, dn: &Dn, reason: String) -> Header {
        Header {
            dn: dn.clone(),
            sip_uri: self.migration.well_known_uri.clone(),
            pool: self.pool.fqdn.clone(),
            status: self.status,
            not_before: self.waiting,
            reason,
        }
    }
}

/// The objects holding one migration's URI that its swap acts on.
#[derive(Default)]
struct Holders<'o> {
    users: Vec<&'o DirectoryObject>,
    endpoints: Vec<&'o DirectoryObject>,
}

impl<'a> Planner<'a> {
    /// Plans the swap for the migrations claiming `uri` (normally one), held by `holders`.
    fn migration(&mut self, uri: &str, claims: &[&'a Migration], holders: &[DirectoryObject]) {
        let [m] = claims else {
            let pools: Vec<&str> = claims.iter().map(|m| m.target_pool.as_str()).collect();
            self.findings.insert(Finding::new(
                FindingKind::DuplicateMigration,
                "",
                format!(
                    "{uri} is named by {} [[migrations]] entries (target pools {}); none of them is planned",
                    claims.len(),
                    pools.join(", ")
                ),
            ));
            self.summary.blocked += 1;
            return;
        };
        let Some(pool) = self.desired.pool(&m.target_pool) else {
            // Config validation guarantees the pool exists; stay total anyway.
            return;
        };
        let waiting = m.not_before.filter(|t| *t > self.now);
        let swap = Swap {
            migration: m,
            pool,
            uri,
            status: if waiting.is_some() {
                Status::WaitingForCutover
            } else {
                Status::Ready
            },
            waiting,
        };
        let mut blocking = Vec::new();
        let sorted = sort_holders(&swap, holders, self.desired.layout, &mut blocking);
        conflicts(uri, &sorted, &mut blocking);
        if !blocking.is_empty() {
            self.findings.extend(blocking);
            self.summary.blocked += 1;
            return;
        }
        match (sorted.users.first(), sorted.endpoints.first()) {
            (Some(user), None) => {
                self.changes.push(retire(&swap, user, self.desired.retire));
                self.changes.push(create(
                    &swap,
                    self.desired.layout,
                    self.desired.active_directory,
                ));
            }
            (None, None) => self.changes.push(create(
                &swap,
                self.desired.layout,
                self.desired.active_directory,
            )),
            (None, Some(endpoint)) if endpoint.enabled == Enabled::False && !m.enable_endpoint => {
                self.findings.insert(disabled_endpoint(&swap, endpoint));
            }
            (None, Some(endpoint)) => match repoint(&swap, endpoint, self.desired.layout) {
                Some(c) => self.changes.push(c),
                None => self.summary.in_sync += 1,
            },
            // A user and an endpoint together are a conflict, reported above.
            (Some(_), Some(_)) => {}
        }
    }

    /// Suspects and duplicate URIs outside the migrations: reported, never acted on.
    fn outside_migrations(&mut self, observed: &Observed) {
        for (dn, uri) in &observed.suspects {
            self.findings.insert(Finding::new(
                FindingKind::Suspect,
                dn,
                format!(
                    "SIP-enabled user {uri} looks like a Group Chat lookup account but no [[migrations]] entry names it; confirm and add one, or ignore"
                ),
            ));
        }
        for (uri, dns) in &observed.duplicates {
            for dn in dns {
                self.findings.insert(Finding::new(
                    FindingKind::DuplicateUri,
                    dn,
                    format!("{uri} is held by {} objects", dns.len()),
                ));
            }
        }
    }

    fn finish(mut self, fingerprint: String) -> Plan {
        self.summary.count(&self.changes, self.findings.len());
        Plan {
            format: PLAN_FORMAT,
            fingerprint,
            changes: self.changes,
            findings: self.findings.into_iter().collect(),
            summary: self.summary,
        }
    }
}

/// Sorts the holders of a migration's URI into the users the swap retires and the endpoints it
/// keeps; every other holder is in the way, and becomes a blocking finding in `blocking`.
fn sort_holders<'o>(
    swap: &Swap<'_>,
    holders: &'o [DirectoryObject],
    layout: &Layout,
    blocking: &mut Vec<Finding>,
) -> Holders<'o> {
    let uri = swap.uri;
    let container = &layout.endpoint_container;
    let mut sorted = Holders::default();
    for o in holders {
        let dn = o.dn.as_str();
        let block = |kind, reason| Finding::new(kind, dn, reason);
        match o.kind {
            ObjectKind::User => match (&swap.migration.legacy_home_server_dn, &o.home_server_dn) {
                (Some(legacy), Some(home)) if legacy != home => blocking.push(block(
                    FindingKind::UnexpectedHome,
                    format!(
                        "holds {uri} but is homed on {home}, not on legacy_home_server_dn {legacy}; the swap is blocked"
                    ),
                )),
                (Some(legacy), None) => blocking.push(block(
                    FindingKind::UnexpectedHome,
                    format!(
                        "holds {uri} but has no {}, expected legacy_home_server_dn {legacy}; the swap is blocked",
                        attr::PRIMARY_HOME_SERVER
                    ),
                )),
                _ => sorted.users.push(o),
            },
            ObjectKind::Contact if o.dn.is_within(container) => sorted.endpoints.push(o),
            ObjectKind::Contact => blocking.push(block(
                FindingKind::EndpointOutsideContainer,
                format!(
                    "contact holding {uri} lies outside the endpoint container {container}; the swap is blocked"
                ),
            )),
            ObjectKind::Other => blocking.push(block(
                FindingKind::UriInUse,
                format!(
                    "{uri} is held by this object (neither a user nor a contact, enabled {}); a SIP URI stays taken until the object is deleted or the attribute cleared; the swap is blocked",
                    o.enabled
                ),
            )),
        }
    }
    sorted
}

/// Several users, several endpoints, or a user and an endpoint at once: the swap cannot tell
/// which object is the real one, so each becomes a blocking finding.
fn conflicts(uri: &str, holders: &Holders<'_>, blocking: &mut Vec<Finding>) {
    for (objects, what) in [
        (&holders.users, "users"),
        (&holders.endpoints, "endpoint contacts"),
    ] {
        if objects.len() > 1 {
            for o in objects {
                blocking.push(Finding::new(
                    FindingKind::DuplicateUri,
                    o.dn.as_str(),
                    format!(
                        "{uri} is held by {} {what}; the swap is blocked",
                        objects.len()
                    ),
                ));
            }
        }
    }
    if let ([user], [endpoint]) = (holders.users.as_slice(), holders.endpoints.as_slice()) {
        for o in [user, endpoint] {
            blocking.push(Finding::new(
                FindingKind::UriInUse,
                o.dn.as_str(),
                format!(
                    "{uri} is held by both the user {} and the endpoint {}; the swap is blocked",
                    user.dn, endpoint.dn
                ),
            ));
        }
    }
}

/// Retires the well-known user, conditional on what the plan saw of it.
fn retire(swap: &Swap<'_>, user: &DirectoryObject, how: Retire) -> Change {
    let reason = format!(
        "leftover Group Chat well-known user (enabled {}, home {})",
        user.enabled,
        user.home_server_dn
            .as_ref()
            .map_or("-".to_string(), Dn::to_string)
    );
    Change::RetireUser(RetireUser {
        header: swap.header(&user.dn, reason),
        retire: how,
        expect: expectation(user, CHECKED),
        cleared: match how {
            Retire::Disable => msrtcsip_attributes(user),
            Retire::Delete => Vec::new(),
        },
    })
}

/// Adds the legacy endpoint contact under its deterministic DN.
fn create(swap: &Swap<'_>, layout: &Layout, active_directory: bool) -> Change {
    let (m, pool) = (swap.migration, swap.pool);
    let dn = endpoint_dn(&layout.endpoint_container, swap.uri);
    let rdn = dn.leaf_value().unwrap_or_default();
    let reason = format!(
        "legacy endpoint contact for {} homed on {}",
        m.well_known_uri, pool.fqdn
    );
    let classes: Vec<&str> = layout
        .endpoint_object_classes
        .iter()
        .map(String::as_str)
        .collect();
    let mut entry = vec![
        AttrValues::text(attr::OBJECT_CLASS, &classes),
        AttrValues::text(attr::CN, &[&rdn]),
    ];
    // RFC 4519's person (OpenLDAP) requires sn. AD's person does not, and
    // New-CsPersistentChatEndpoint leaves it unset there, so pcsync does too.
    if !active_directory && classes.iter().any(|c| c.eq_ignore_ascii_case("person")) {
        entry.push(AttrValues::text("sn", &[&rdn]));
    }
    entry.extend([
        AttrValues::text(attr::DISPLAY_NAME, &[&m.display_name()]),
        AttrValues::text(attr::PRIMARY_USER_ADDRESS, &[m.well_known_uri.as_str()]),
        AttrValues::text(attr::USER_ENABLED, &["TRUE"]),
        AttrValues::text(attr::PRIMARY_HOME_SERVER, &[pool.home_server_dn.as_str()]),
        AttrValues::text(attr::OWNER_URN, &[&layout.owner_urn]),
    ]);
    Change::CreateEndpoint(CreateEndpoint {
        header: swap.header(&dn, reason),
        expect: vec![AttrValues::absent(&AttrName::new(
            attr::PRIMARY_USER_ADDRESS,
        ))],
        entry,
    })
}

/// An endpoint an administrator disabled: reported, and left alone (no repoint either), since
/// re-enabling it is the administrator's call (`enable_endpoint = true` on the migration).
fn disabled_endpoint(swap: &Swap<'_>, endpoint: &DirectoryObject) -> Finding {
    Finding::new(
        FindingKind::EndpointDisabled,
        endpoint.dn.as_str(),
        format!(
            "endpoint contact for {} has {}: FALSE, so an administrator disabled it; pcsync leaves it alone (set enable_endpoint = true on the migration to re-enable and home it on {})",
            swap.migration.well_known_uri,
            attr::USER_ENABLED,
            swap.pool.fqdn
        ),
    )
}

/// Fixes what differs on an existing endpoint (home, owner, enabled flag); `None` when it is
/// already as wanted. The reason says, per attribute, what it is and why it changes.
fn repoint(swap: &Swap<'_>, endpoint: &DirectoryObject, layout: &Layout) -> Option<Change> {
    let home = swap.pool.home_server_dn.as_str();
    let mut new_values = Vec::new();
    let mut why = Vec::new();
    let home_ok = endpoint.home_server_dn.as_ref() == Some(&swap.pool.home_server_dn);
    if !home_ok {
        new_values.push(AttrValues::text(attr::PRIMARY_HOME_SERVER, &[home]));
        why.push(format!(
            "is homed on {}, not on pool {}",
            endpoint
                .home_server_dn
                .as_ref()
                .map_or("nothing".to_string(), Dn::to_string),
            swap.pool.fqdn
        ));
    }
    let owner_ok = endpoint
        .owner_urn
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(&layout.owner_urn));
    if !owner_ok {
        new_values.push(AttrValues::text(attr::OWNER_URN, &[&layout.owner_urn]));
        why.push(format!(
            "has {} {}, not {}",
            attr::OWNER_URN,
            endpoint.owner_urn.as_deref().unwrap_or("unset"),
            layout.owner_urn
        ));
    }
    if endpoint.enabled != Enabled::True {
        new_values.push(AttrValues::text(attr::USER_ENABLED, &["TRUE"]));
        why.push(if endpoint.enabled == Enabled::False {
            "is disabled, and the migration says enable_endpoint = true".to_string()
        } else {
            format!("has no {}: TRUE", attr::USER_ENABLED)
        });
    }
    if new_values.is_empty() {
        return None;
    }
    let reason = format!("endpoint exists but {}", why.join("; "));
    Some(Change::RepointEndpoint(RepointEndpoint {
        header: swap.header(&endpoint.dn, reason),
        expect: expectation(endpoint, ENDPOINT_CHECKED),
        new_values,
    }))
}

/// `dn` in its canonical lower-cased form (which always parses again), as the fingerprint
/// records it.
fn normalized_dn(dn: &Dn) -> Dn {
    Dn::parse(dn.normalized()).unwrap_or_else(|_| dn.clone())
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
        // Left out when false, so fingerprints of plans saved before the option existed hold.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        enable_endpoint: bool,
    }
    #[derive(Serialize)]
    struct Canonical<'a> {
        migrations: Vec<CanonicalMigration>,
        pools: Vec<(String, String)>,
        container: &'a str,
        classes: &'a [String],
        owner_urn: &'a str,
        retire: Retire,
        // Left out on OpenLDAP, so fingerprints of plans saved before it existed hold.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        active_directory: bool,
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
                enable_endpoint: m.enable_endpoint,
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
        active_directory: desired.active_directory,
        holders: observed
            .holders
            .iter()
            .map(|(uri, objects)| {
                let mut entries: Vec<Entry> = objects
                    .iter()
                    .map(|o| Entry::new(normalized_dn(&o.dn), &o.attributes))
                    .collect();
                entries.sort_by(|a, b| a.dn.as_str().cmp(b.dn.as_str()));
                (uri.as_str(), entries)
            })
            .collect(),
        duplicates: &observed.duplicates,
    };
    // Serialising plain structs, vectors and strings cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}
