//! Reading every SIP-enabled object pcsync cares about, from both places it lives.
//!
//! In AD, users live in the domain naming context (`base_dn`) while legacy endpoint contacts
//! live in the configuration naming context (`endpoint_container`); a subtree search of one never
//! reaches the other. So [`scan`] searches the endpoint container, then `base_dn`, and when the
//! container happens to lie under `base_dn` (a single-tree OpenLDAP layout) skips it the second
//! time so no object is seen twice. Objects are streamed to a callback; nothing is buffered.

use crate::config::Settings;
use crate::ldap::{Directory, Error, SearchStats};
use crate::model::{Classifier, DirectoryObject, Finding};

/// Counts from one scan of both scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub endpoint_container: SearchStats,
    pub base: SearchStats,
}

impl ScanStats {
    /// Entries read from the directory, over both scopes.
    pub fn entries(&self) -> u64 {
        self.endpoint_container.entries + self.base.entries
    }
}

/// The classifier built from `[directory.layout]`.
pub fn classifier(settings: &Settings) -> Classifier {
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
    let container = &settings.layout.endpoint_container;
    let endpoint_container = dir
        .for_each_sip_object(
            "endpoint container",
            container,
            None,
            &classifier,
            findings,
            &mut on_object,
        )
        .await?;
    let skip = container
        .is_within(&settings.directory.base_dn)
        .then_some(container);
    let base = dir
        .for_each_sip_object(
            "base DN",
            &settings.directory.base_dn,
            skip,
            &classifier,
            findings,
            &mut on_object,
        )
        .await?;
    Ok(ScanStats {
        endpoint_container,
        base,
    })
}
