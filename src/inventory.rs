//! Reading every SIP-enabled object pcsync cares about, from both places it lives.
//!
//! In AD, users live in the domain naming context (`base_dn`) while legacy endpoint contacts
//! live in the configuration naming context (`endpoint_container`); a subtree search of one never
//! reaches the other. So [`scan`] searches the endpoint container, then `base_dn`, and when the
//! container happens to lie under `base_dn` (a single-tree OpenLDAP layout) skips it the second
//! time so no object is seen twice. Objects are streamed to a callback; nothing is buffered.

use crate::config::Settings;
use crate::ldap::{Directory, Error, Search, SearchStats};
use crate::model::{Classifier, DirectoryObject, Finding, attr};

/// Counts from one scan of both scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub endpoint_container: SearchStats,
    pub base: SearchStats,
}

/// The classifier built from `[directory.layout]`.
pub(crate) fn classifier(settings: &Settings) -> Classifier {
    Classifier::new(
        &settings.layout.user_classes,
        &settings.layout.contact_classes,
    )
}

/// Streams every SIP-enabled object in the endpoint container and under `base_dn`.
pub async fn scan(
    dir: &mut Directory,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    on_object: impl FnMut(DirectoryObject),
) -> Result<ScanStats, Error> {
    scan_with(dir, settings, attr::SEARCHED, findings, on_object).await
}

/// [`scan`] reading only `attrs` (objectClass and the SIP address at least).
pub(crate) async fn scan_with(
    dir: &mut Directory,
    settings: &Settings,
    attrs: &'static [&'static str],
    findings: &mut Vec<Finding>,
    mut on_object: impl FnMut(DirectoryObject),
) -> Result<ScanStats, Error> {
    let classifier = classifier(settings);
    let container = &settings.layout.endpoint_container;
    let endpoints = Search::sip_objects("endpoint container", container).reading(attrs);
    let endpoint_container = dir
        .for_each_object(&endpoints, &classifier, findings, &mut on_object)
        .await?;
    let skip = container
        .is_within(&settings.directory.base_dn)
        .then_some(container);
    let users = Search::sip_objects("base DN", &settings.directory.base_dn)
        .reading(attrs)
        .skipping(skip);
    let base = dir
        .for_each_object(&users, &classifier, findings, &mut on_object)
        .await?;
    Ok(ScanStats {
        endpoint_container,
        base,
    })
}
