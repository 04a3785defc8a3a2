//! The preflight: every precondition of every planned swap, checked against the directory
//! before the first write of a run, so a wrong configuration or an object in the way blocks
//! its own swap instead of failing it halfway.
//!
//! For each swap:
//! - the target pool's `home_server_dn` names an entry (an endpoint homed on nothing serves no
//!   one, and AD refuses the add with LDAP 19);
//! - the endpoint container exists, and the endpoint's DN is free or already holds this URI
//!   (an object there, a contact with another address or an endpoint whose address was
//!   cleared, makes every add fail with LDAP 68);
//! - `legacy_home_server_dn`, when set, names an entry (otherwise the configuration is wrong
//!   and the check it stands for means nothing);
//! - each of these is readable: a read the server refuses is a finding too.
//!
//! That no other object holds the URI is the planner's own check (`uri_in_use`,
//! `duplicate_uri`, ...), over the same scan and the same normalisation
//! ([`crate::model::SipUri::parse_held`]).
//!
//! [`needed`] and [`findings`] are pure; [`preflight`] does the reads in between. A failed
//! precondition becomes a `preflight` finding naming the DN and the reason, and
//! [`Plan::block_swap`] takes that swap (only) out of the plan, so the dry run, `--plan-out` and
//! apply all show the same thing.

use std::collections::{BTreeMap, BTreeSet};

use super::source::Source;
use crate::config::Settings;
use crate::ldap;
use crate::model::{Dn, Entry, Finding, FindingKind, SipUri, attr};
use crate::plan::{Change, Desired, Plan};

/// What reading one DN gave.
#[derive(Debug, Clone)]
pub(crate) enum Read {
    Found(Entry),
    Missing,
    /// The server refused the read (rights, ...): the error's text.
    Unreadable(String),
}

/// One precondition: the DN it reads, and what it is about (for the finding's text).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// The target pool's home server entry.
    Pool { dn: Dn, fqdn: String },
    /// The container the endpoint is added to.
    Container { dn: Dn },
    /// The endpoint's own DN, which must be free or hold the URI.
    EndpointFree { dn: Dn },
    /// The migration's legacy_home_server_dn.
    Legacy { dn: Dn },
}

impl Need {
    fn dn(&self) -> &Dn {
        match self {
            Need::Pool { dn, .. }
            | Need::Container { dn }
            | Need::EndpointFree { dn }
            | Need::Legacy { dn } => dn,
        }
    }
}

/// The preconditions of each swap in the plan, by URI.
fn needs(plan: &Plan, desired: &Desired<'_>) -> BTreeMap<SipUri, Vec<Need>> {
    let mut out: BTreeMap<SipUri, Vec<Need>> = BTreeMap::new();
    for c in &plan.changes {
        let needs = out.entry(c.sip_uri().clone()).or_default();
        let home = |values: &[crate::model::AttrValues]| {
            values
                .iter()
                .find(|a| a.name.is(attr::PRIMARY_HOME_SERVER))
                .and_then(|a| a.texts().next())
                .and_then(|t| Dn::parse(t).ok())
        };
        match c {
            Change::CreateEndpoint(e) => {
                if let Some(dn) = home(&e.entry) {
                    needs.push(Need::Pool {
                        dn,
                        fqdn: e.header.pool.clone(),
                    });
                }
                if let Some(dn) = e.header.dn.parent() {
                    needs.push(Need::Container { dn });
                }
                needs.push(Need::EndpointFree {
                    dn: e.header.dn.clone(),
                });
            }
            Change::RepointEndpoint(p) => {
                if let Some(dn) = home(&p.new_values) {
                    needs.push(Need::Pool {
                        dn,
                        fqdn: p.header.pool.clone(),
                    });
                }
            }
            Change::RetireUser(_) => {}
        }
        if let Some(legacy) = desired
            .migrations
            .iter()
            .find(|m| &m.well_known_uri == c.sip_uri())
            .and_then(|m| m.legacy_home_server_dn.clone())
        {
            needs.push(Need::Legacy { dn: legacy });
        }
    }
    for needs in out.values_mut() {
        let mut seen = BTreeSet::new();
        needs.retain(|n| seen.insert(format!("{n:?}")));
    }
    out
}

/// Every DN the preflight of `plan` reads, each once.
pub(crate) fn needed(plan: &Plan, desired: &Desired<'_>) -> BTreeSet<Dn> {
    needs(plan, desired)
        .values()
        .flatten()
        .map(|n| n.dn().clone())
        .collect()
}

/// The failed preconditions of each swap, by URI, from what reading each [`needed`] DN gave.
/// Pure. A DN missing from `reads` counts as unreadable.
pub(crate) fn findings(
    plan: &Plan,
    desired: &Desired<'_>,
    reads: &BTreeMap<Dn, Read>,
) -> BTreeMap<SipUri, Vec<Finding>> {
    let mut out = BTreeMap::new();
    for (uri, needs) in needs(plan, desired) {
        let failed: Vec<Finding> = needs
            .iter()
            .filter_map(|n| failure(&uri, n, reads.get(n.dn())))
            .collect();
        if !failed.is_empty() {
            out.insert(uri, failed);
        }
    }
    out
}

/// The finding for a precondition that does not hold, or `None`.
fn failure(uri: &SipUri, need: &Need, read: Option<&Read>) -> Option<Finding> {
    let dn = need.dn();
    let blocked = "; the swap is blocked, nothing was written for it";
    let reason = match (need, read) {
        (_, None) => format!("was not read{blocked}"),
        (_, Some(Read::Unreadable(e))) => format!("cannot be read for {uri}: {e}{blocked}"),
        (Need::Pool { fqdn, .. }, Some(Read::Missing)) => format!(
            "home_server_dn of pool {fqdn} names no entry: the endpoint for {uri} would be homed on nothing; fix [[pools]] home_server_dn{blocked}"
        ),
        (Need::Container { .. }, Some(Read::Missing)) => format!(
            "the endpoint container for {uri} does not exist; fix endpoint_container or create it{blocked}"
        ),
        (Need::Legacy { .. }, Some(Read::Missing)) => format!(
            "legacy_home_server_dn of the migration for {uri} names no entry; fix [[migrations]] legacy_home_server_dn{blocked}"
        ),
        (Need::EndpointFree { .. }, Some(Read::Found(e)))
            if !uri.held_in(e.get(attr::PRIMARY_USER_ADDRESS)) =>
        {
            let holds = e.get(attr::PRIMARY_USER_ADDRESS);
            let what = match holds.first() {
                Some(v) => format!("holding {}", String::from_utf8_lossy(v)),
                None => "holding no SIP address".to_string(),
            };
            format!(
                "already exists ({what}) at the DN of the endpoint for {uri}; move or delete that object, then rerun{blocked}"
            )
        }
        _ => return None,
    };
    Some(Finding::new(FindingKind::Preflight, dn.as_str(), reason))
}

/// Reads what the preflight needs and blocks each swap whose preconditions fail. `Err` only
/// when the directory went away (the run stops); a refused read is a finding.
pub(crate) async fn preflight(
    settings: &Settings,
    source: &mut impl Source,
    plan: &mut Plan,
) -> Result<(), ldap::Error> {
    let desired = settings.desired();
    let mut reads = BTreeMap::new();
    for dn in needed(plan, &desired) {
        let read = match source.read_entry(&dn).await {
            Ok(Some(e)) => Read::Found(e),
            Ok(None) => Read::Missing,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => Read::Unreadable(e.to_string()),
        };
        reads.insert(dn, read);
    }
    for (uri, failed) in findings(plan, &desired, &reads) {
        plan.block_swap(&uri, failed);
    }
    Ok(())
}
