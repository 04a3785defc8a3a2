//! Reading every SIP-enabled object pcsync cares about, from both places it lives.
//!
//! In AD, users live in the domain naming context (`base_dn`) while legacy endpoint contacts
//! live in the configuration naming context (`endpoint_container`); a subtree search of one never
//! reaches the other. So [`scan`] searches the endpoint container, then `base_dn`, and when the
//! container happens to lie under `base_dn` (a single-tree OpenLDAP layout) skips it the second
//! time so no object is seen twice. Objects are streamed to a callback; nothing is buffered.
//! With `directory.global_catalog` (a forest of several domains) the users of every domain are
//! searched through the Global Catalog instead of `base_dn` alone.

use crate::config::Settings;
use crate::estate::routed;
use crate::ldap::{Directory, Error, Search, SearchStats};
use crate::model::{Classifier, DirectoryObject, Dn, Finding, attr};

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
    let scope = user_scope(dir, settings).await?;
    let (mut global_catalog, bases) = (scope.global_catalog, scope.bases);
    let mut base = SearchStats::default();
    for b in &bases {
        let conn = match global_catalog.as_mut() {
            Some(gc) => gc,
            None => &mut *dir,
        };
        let users = Search::sip_objects("base DN", b)
            .reading(attrs)
            .skipping(skip);
        let one = conn
            .for_each_object(&users, &classifier, findings, &mut on_object)
            .await?;
        base.entries += one.entries;
        base.skipped += one.skipped;
        base.references += one.references;
    }
    if let Some(gc) = global_catalog {
        gc.close().await;
    }
    Ok(ScanStats {
        endpoint_container,
        base,
    })
}

/// Where users are searched: `base_dn` on the connection itself; or, with
/// `directory.global_catalog`, every domain of the forest (the crossRef objects of the
/// configuration naming context) through the Global Catalog.
pub(crate) struct UserScope {
    pub(crate) global_catalog: Option<Directory>,
    pub(crate) bases: Vec<Dn>,
}

pub(crate) async fn user_scope(
    dir: &mut Directory,
    settings: &Settings,
) -> Result<UserScope, Error> {
    let Some(gc_url) = &settings.directory.global_catalog else {
        return Ok(UserScope {
            global_catalog: None,
            bases: vec![settings.directory.base_dn.clone()],
        });
    };
    let container = &settings.layout.endpoint_container;
    let config = routed::naming_context_of(&dir.root_dse().naming_contexts, container)
        .unwrap_or_else(|| container.clone());
    let forest = routed::read_forest(dir, config.as_str()).await?;
    if forest.domains().is_empty() {
        return Err(Error::NoSuchBase {
            what: "a domain crossRef (global_catalog needs one per domain) under",
            dn: format!("CN=Partitions,{config}"),
            url: dir.url().to_string(),
            text: String::new(),
        });
    }
    let global_catalog = Directory::connect_only(gc_url, &settings.directory).await?;
    Ok(UserScope {
        global_catalog: Some(global_catalog),
        bases: forest.domains().iter().map(|d| d.nc.clone()).collect(),
    })
}
