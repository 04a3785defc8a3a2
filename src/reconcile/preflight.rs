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
//! - each of these is readable: a read the server refuses is a finding too;
//! - on Active Directory, the bind account may write what the swap writes, read from the
//!   rights AD computes for it (`allowedAttributesEffective` on the user for the msRTCSIP-*
//!   values the release clears, and on an endpoint a repoint changes;
//!   `allowedChildClassesEffective` on the container for the endpoint's `contact`). No such
//!   attribute tells whether the account may *delete* the user, and OpenLDAP computes none of
//!   them: there a refused write is caught as it happens, and the swap's order (release, add and
//!   read back, delete last) means it loses nothing.
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
use crate::model::{Attributes, Dn, Entry, Finding, FindingKind, SipUri, attr};
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

/// Adds `need` unless the swap has it already (two changes of a swap may read the same DN).
fn add(needs: &mut Vec<Need>, need: Need) {
    if !needs.contains(&need) {
        needs.push(need);
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
                    add(
                        needs,
                        Need::Pool {
                            dn,
                            fqdn: e.header.pool.clone(),
                        },
                    );
                }
                if let Some(dn) = e.header.dn.parent() {
                    add(needs, Need::Container { dn });
                }
                add(
                    needs,
                    Need::EndpointFree {
                        dn: e.header.dn.clone(),
                    },
                );
            }
            Change::RepointEndpoint(p) => {
                if let Some(dn) = home(&p.new_values) {
                    add(
                        needs,
                        Need::Pool {
                            dn,
                            fqdn: p.header.pool.clone(),
                        },
                    );
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
            add(needs, Need::Legacy { dn: legacy });
        }
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

/// AD's constructed attributes that list what the bound account may write on an object and
/// create under it.
const EFFECTIVE: [&str; 2] = ["allowedAttributesEffective", "allowedChildClassesEffective"];

/// A right the account needs for a swap, as AD's effective rights show it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Right {
    /// Write these attributes of the object (the release of a user; a repoint).
    Write { dn: Dn, attrs: Vec<String> },
    /// Create objects of this class under the container (the endpoint's add).
    Create { dn: Dn, class: &'static str },
}

impl Right {
    fn dn(&self) -> &Dn {
        match self {
            Right::Write { dn, .. } | Right::Create { dn, .. } => dn,
        }
    }
}

/// The rights each swap of the plan needs, by URI.
fn rights(plan: &Plan) -> BTreeMap<SipUri, Vec<Right>> {
    let mut out: BTreeMap<SipUri, Vec<Right>> = BTreeMap::new();
    for c in &plan.changes {
        let right = match c {
            Change::RetireUser(r) => {
                // What the release clears: the values listed (disable), or every msRTCSIP-*
                // value the plan saw (delete), the address always.
                let mut attrs = vec![attr::PRIMARY_USER_ADDRESS.to_string()];
                for a in r.cleared.iter().chain(&r.expect) {
                    if a.name.is_msrtcsip() && !attrs.iter().any(|n| a.name.is(n)) {
                        attrs.push(a.name.as_str().to_string());
                    }
                }
                Right::Write {
                    dn: r.header.dn.clone(),
                    attrs,
                }
            }
            Change::CreateEndpoint(e) => match e.header.dn.parent() {
                Some(dn) => Right::Create {
                    dn,
                    class: "contact",
                },
                None => continue,
            },
            Change::RepointEndpoint(p) => Right::Write {
                dn: p.header.dn.clone(),
                attrs: p
                    .new_values
                    .iter()
                    .map(|a| a.name.as_str().to_string())
                    .collect(),
            },
        };
        out.entry(c.sip_uri().clone()).or_default().push(right);
    }
    out
}

/// The rights the account lacks for each swap, by URI, from the effective rights read on each
/// DN (`None`: not read, the object's existence is the other checks' business). Pure.
fn missing_rights(
    plan: &Plan,
    effective: &BTreeMap<Dn, Attributes>,
) -> BTreeMap<SipUri, Vec<Finding>> {
    let blocked = "; the swap is blocked, nothing was written for it";
    let mut out: BTreeMap<SipUri, Vec<Finding>> = BTreeMap::new();
    for (uri, rights) in rights(plan) {
        for right in rights {
            let Some(granted) = effective.get(right.dn()) else {
                continue;
            };
            let has =
                |list: &str, name: &str| granted.texts(list).any(|g| g.eq_ignore_ascii_case(name));
            let reason = match &right {
                Right::Write { dn, attrs } => {
                    let missing: Vec<&str> = attrs
                        .iter()
                        .map(String::as_str)
                        .filter(|a| !has(EFFECTIVE[0], a))
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    format!(
                        "the bind account may not write {} on {dn} (not in its \
                         allowedAttributesEffective) for {uri}: grant it Write Property on \
                         them (docs/active-directory.md){blocked}",
                        missing.join(", ")
                    )
                }
                Right::Create { dn, class } => {
                    if has(EFFECTIVE[1], class) {
                        continue;
                    }
                    format!(
                        "the bind account may not create {class} objects in {dn} (not in its \
                         allowedChildClassesEffective) for {uri}: grant it Create Child for \
                         {class} there (docs/active-directory.md){blocked}"
                    )
                }
            };
            out.entry(uri.clone()).or_default().push(Finding::new(
                FindingKind::Preflight,
                right.dn().as_str(),
                reason,
            ));
        }
    }
    out
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
    let mut failed = findings(plan, &desired, &reads);
    if source.is_active_directory() {
        let mut effective = BTreeMap::new();
        let dns: BTreeSet<Dn> = rights(plan)
            .into_values()
            .flatten()
            .map(|r| r.dn().clone())
            .collect();
        for dn in dns {
            match source.read_attributes(&dn, &EFFECTIVE).await {
                Ok(Some(granted)) => {
                    effective.insert(dn, granted);
                }
                // Gone or unreadable: the reads above already said so.
                Ok(None) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(_) => {}
            }
        }
        for (uri, missing) in missing_rights(plan, &effective) {
            failed.entry(uri).or_default().extend(missing);
        }
    }
    for (uri, failed) in failed {
        plan.block_swap(&uri, failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrValues;
    use crate::plan::desired::Retire;
    use crate::plan::{Header, RepointEndpoint, RetireUser, Status, Summary};

    const USER: &str = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";
    const ENDPOINT: &str = "CN={e},CN=Application Contacts,DC=contoso,DC=com";

    fn header(dn: &str, uri: &str) -> Header {
        Header {
            dn: Dn::parse(dn).unwrap(),
            sip_uri: SipUri::parse(uri).unwrap(),
            pool: "pcpool.contoso.com".into(),
            status: Status::Ready,
            not_before: None,
            reason: String::new(),
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            format: 1,
            fingerprint: String::new(),
            changes,
            findings: Vec::new(),
            summary: Summary::default(),
        }
    }

    fn granted(attributes: &[&str]) -> Attributes {
        let mut a = Attributes::new();
        a.insert(
            EFFECTIVE[0],
            attributes.iter().map(|n| n.as_bytes().to_vec()).collect(),
        );
        a
    }

    #[test]
    fn a_right_the_account_lacks_blocks_that_swap_naming_the_dn_and_attributes() {
        let retire = Change::RetireUser(RetireUser {
            header: header(USER, "sip:ocschat@contoso.com"),
            retire: Retire::Delete,
            expect: vec![
                AttrValues::text(attr::PRIMARY_USER_ADDRESS, &["sip:ocschat@contoso.com"]),
                AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
            ],
            cleared: Vec::new(),
        });
        let repoint = Change::RepointEndpoint(RepointEndpoint {
            header: header(ENDPOINT, "sip:room@contoso.com"),
            expect: Vec::new(),
            new_values: vec![AttrValues::text(
                attr::PRIMARY_HOME_SERVER,
                &["CN=1:2,DC=x"],
            )],
        });
        let plan = plan(vec![retire, repoint]);
        let mut effective = BTreeMap::new();
        effective.insert(
            Dn::parse(USER).unwrap(),
            granted(&["msrtcsip-primaryuseraddress"]),
        );
        effective.insert(
            Dn::parse(ENDPOINT).unwrap(),
            granted(&[attr::PRIMARY_HOME_SERVER]),
        );
        let missing = missing_rights(&plan, &effective);
        assert_eq!(missing.len(), 1, "{missing:?}");
        let found = &missing[&SipUri::parse("sip:ocschat@contoso.com").unwrap()];
        assert_eq!(found[0].dn, USER);
        assert!(
            found[0]
                .reason
                .contains(&format!("may not write msRTCSIP-UserEnabled on {USER}")),
            "{:?}",
            found[0]
        );
        // Not read (OpenLDAP computes no effective rights): nothing is claimed.
        assert!(missing_rights(&plan, &BTreeMap::new()).is_empty());
    }
}
