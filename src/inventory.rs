//! Reading every SIP-enabled object pcsync cares about, from both places it lives.
//!
//! In AD, users live in the domain naming context (`base_dn`) while legacy endpoint contacts
//! live in the configuration naming context (`endpoint_container`); a subtree search of one never
//! reaches the other. So [`scan`] searches the endpoint container, then `base_dn`, and when the
//! container happens to lie under `base_dn` (a single-tree OpenLDAP layout) skips it the second
//! time so no object is seen twice. Objects are streamed to a callback; nothing is buffered.

use crate::config::Settings;
use crate::ldap::{Directory, Error, Search, SearchStats};
use crate::model::{Classifier, DirectoryObject, Finding, Sighting, attr};

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
    mut on_object: impl FnMut(DirectoryObject),
) -> Result<ScanStats, Error> {
    let classifier = classifier(settings);
    let [endpoints, users] = searches(settings, attr::SEARCHED);
    let endpoint_container = dir
        .for_each_object(&endpoints, &classifier, findings, &mut on_object)
        .await?;
    let base = dir
        .for_each_object(&users, &classifier, findings, &mut on_object)
        .await?;
    Ok(ScanStats {
        endpoint_container,
        base,
    })
}

/// [`scan`] for detection: only each object's kind and SIP address ([`Sighting`]), read in
/// place, so a scan of a large directory costs little more than the search itself.
pub(crate) async fn detect(
    dir: &mut Directory,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    mut on_sighting: impl FnMut(Sighting<'_>),
) -> Result<ScanStats, Error> {
    let classifier = classifier(settings);
    let [endpoints, users] = searches(settings, attr::DETECTION);
    let endpoint_container = dir
        .for_each_sighting(&endpoints, &classifier, findings, &mut on_sighting)
        .await?;
    let base = dir
        .for_each_sighting(&users, &classifier, findings, &mut on_sighting)
        .await?;
    Ok(ScanStats {
        endpoint_container,
        base,
    })
}

/// The two searches of a scan reading `attrs`: the endpoint container, then `base_dn` passing
/// over the container when it lies there.
fn searches<'a>(settings: &'a Settings, attrs: &'static [&'static str]) -> [Search<'a>; 2] {
    let container = &settings.layout.endpoint_container;
    let skip = container
        .is_within(&settings.directory.base_dn)
        .then_some(container);
    [
        Search::sip_objects("endpoint container", container).reading(attrs),
        Search::sip_objects("base DN", &settings.directory.base_dn)
            .reading(attrs)
            .skipping(skip),
    ]
}
