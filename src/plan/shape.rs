//! The endpoint-shape comparison behind `pcsync check`'s `endpoint-shape` line.
//!
//! New-CsPersistentChatEndpoint's exact attribute values are not public; the best evidence at
//! hand is an endpoint contact Lync (or an administrator with Lync's cmdlets) made itself. For
//! such a contact, homed on a migration's target pool, this compares the attributes that say
//! what kind of object it is (objectClass, msRTCSIP-OwnerUrn, msRTCSIP-ApplicationOptions,
//! msRTCSIP-OptionFlags) with what pcsync's `create_endpoint` would write for that pool. Pure.

use std::collections::BTreeSet;

use super::{Desired, Swap, create, endpoint_dn};
use crate::model::{DirectoryObject, attr};

/// The attributes compared, in the order differences are reported.
pub(crate) const COMPARED: [&str; 4] = [
    attr::OBJECT_CLASS,
    attr::OWNER_URN,
    attr::APPLICATION_OPTIONS,
    attr::OPTION_FLAGS,
];

/// What `check` learns from one endpoint contact pcsync did not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Not an endpoint to compare with: outside the container, made by pcsync (its
    /// deterministic DN), or homed on no migration's target pool.
    NotEvidence,
    /// Homed on a target pool; each difference names the attribute, Lync's values and
    /// pcsync's.
    Compared { differences: Vec<String> },
}

/// Compares `o` with the endpoint pcsync would create on the pool it is homed on.
pub(crate) fn compare(desired: &Desired<'_>, o: &DirectoryObject) -> Shape {
    let layout = desired.layout;
    let (Some(uri), Some(home)) = (&o.sip_uri, &o.home_server_dn) else {
        return Shape::NotEvidence;
    };
    // The cheap tests first: this runs for every contact of a scan, and few are homed on a
    // target pool; the endpoint's DN (a SHA-256) is worked out only for those.
    if !o.dn.is_within(&layout.endpoint_container) {
        return Shape::NotEvidence;
    }
    let Some(pool) = desired.pools.iter().find(|p| &p.home_server_dn == home) else {
        return Shape::NotEvidence;
    };
    let Some(migration) = desired
        .migrations
        .iter()
        .find(|m| m.target_pool.eq_ignore_ascii_case(&pool.fqdn))
    else {
        return Shape::NotEvidence;
    };
    if o.dn == endpoint_dn(&layout.endpoint_container, uri.normalized()) {
        return Shape::NotEvidence;
    }
    let swap = Swap {
        migration,
        pool,
        uri: migration.well_known_uri.normalized(),
        status: super::Status::Ready,
        waiting: None,
    };
    let super::Change::CreateEndpoint(ours) = create(&swap, layout, desired.active_directory)
    else {
        return Shape::NotEvidence;
    };
    let differences = COMPARED
        .iter()
        .filter_map(|name| {
            let theirs = o.attributes.get(name);
            let written = ours
                .entry
                .iter()
                .find(|a| a.name.is(name))
                .map_or(&[][..], |a| a.values.as_slice());
            (!same(name, theirs, written)).then(|| {
                format!(
                    "{name}: Lync's has {}, pcsync writes {}",
                    shown(theirs),
                    shown(written)
                )
            })
        })
        .collect();
    Shape::Compared { differences }
}

/// Equal as sets; objectClass and the owner URN case-insensitively, as the server compares them.
fn same(name: &str, a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    let fold = |values: &[Vec<u8>]| -> BTreeSet<Vec<u8>> {
        values
            .iter()
            .map(|v| {
                if name == attr::OBJECT_CLASS || name == attr::OWNER_URN {
                    v.to_ascii_lowercase()
                } else {
                    v.clone()
                }
            })
            .collect()
    };
    fold(a) == fold(b)
}

/// `none`, or the values joined by commas.
fn shown(values: &[Vec<u8>]) -> String {
    if values.is_empty() {
        return "none".to_string();
    }
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v))
        .collect::<Vec<_>>()
        .join(", ")
}
