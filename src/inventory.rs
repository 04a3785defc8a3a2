//! Reading every SIP-enabled object pcsync cares about, from both places it lives.
//!
//! In AD, users live in the domain naming context (`base_dn`) while legacy endpoint contacts
//! live in the configuration naming context (`endpoint_container`); a subtree search of one never
//! reaches the other. So [`scan`] searches the endpoint container, then `base_dn`, and when the
//! container happens to lie under `base_dn` (a single-tree OpenLDAP layout) skips it the second
//! time so no object is seen twice. Objects are streamed to a callback; nothing is buffered.
//! [`detect`] is the same scan reading only what detection needs of each object, [`list`] what
//! `inventory` shows of it; both read in place from the raw entry.
//! With `directory.global_catalog` (a forest of several domains) the users of every domain are
//! searched through the Global Catalog instead of `base_dn` alone.

use crate::config::Settings;
use crate::estate::routed;
use crate::ldap::{Directory, Error, Search, SearchStats};
use crate::model::{Classifier, DirectoryObject, Dn, Finding, Listing, Sighting, attr};

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

/// Streams every SIP-enabled object in the endpoint container and under `base_dn` (every
/// domain's, with `directory.global_catalog`).
pub async fn scan(
    dir: &mut Directory,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    mut on_object: impl FnMut(DirectoryObject),
) -> Result<ScanStats, Error> {
    let visit = Visit::<_, fn(Sighting<'_>), fn(Listing<'_, '_>)>::Objects(&mut on_object);
    scan_as(dir, settings, attr::SEARCHED, findings, visit).await
}

/// [`scan`] for detection: only each object's kind and SIP address ([`Sighting`]), read in
/// place, so a scan of a large directory costs little more than the search itself.
pub(crate) async fn detect(
    dir: &mut Directory,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    mut on_sighting: impl FnMut(Sighting<'_>),
) -> Result<ScanStats, Error> {
    let visit = Visit::<fn(DirectoryObject), _, fn(Listing<'_, '_>)>::Sightings(&mut on_sighting);
    scan_as(dir, settings, attr::DETECTION, findings, visit).await
}

/// [`scan`] for `inventory`: each object's [`Listing`], read in place; the same objects and
/// findings as [`scan`], without building a [`DirectoryObject`] per object.
pub(crate) async fn list(
    dir: &mut Directory,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    mut on_listing: impl FnMut(Listing<'_, '_>),
) -> Result<ScanStats, Error> {
    let visit = Visit::<fn(DirectoryObject), fn(Sighting<'_>), _>::Listings(&mut on_listing);
    scan_as(dir, settings, attr::SEARCHED, findings, visit).await
}

/// What a scan hands each object to: the whole object ([`scan`]), its [`Sighting`]
/// ([`detect`]) or its [`Listing`] ([`list`]).
enum Visit<'v, O, S, L> {
    Objects(&'v mut O),
    Sightings(&'v mut S),
    Listings(&'v mut L),
}

impl<O, S, L> Visit<'_, O, S, L>
where
    O: FnMut(DirectoryObject),
    S: FnMut(Sighting<'_>),
    L: FnMut(Listing<'_, '_>),
{
    /// Runs `search` on `conn`, handing each object on.
    async fn search(
        &mut self,
        conn: &mut Directory,
        search: &Search<'_>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
    ) -> Result<SearchStats, Error> {
        match self {
            Visit::Objects(on_object) => {
                conn.for_each_object(search, classifier, findings, &mut **on_object)
                    .await
            }
            Visit::Sightings(on_sighting) => {
                conn.for_each_sighting(search, classifier, findings, &mut **on_sighting)
                    .await
            }
            Visit::Listings(on_listing) => {
                conn.for_each_listing(search, classifier, findings, &mut **on_listing)
                    .await
            }
        }
    }
}

/// Both scopes of a scan reading `attrs`: the endpoint container, then the users, passing over
/// the container when it lies among them. Users are searched under `base_dn` on `dir` itself;
/// with `directory.global_catalog`, under each domain of the forest on the Global Catalog,
/// closed afterwards.
async fn scan_as<O, S, L>(
    dir: &mut Directory,
    settings: &Settings,
    attrs: &'static [&'static str],
    findings: &mut Vec<Finding>,
    mut visit: Visit<'_, O, S, L>,
) -> Result<ScanStats, Error>
where
    O: FnMut(DirectoryObject),
    S: FnMut(Sighting<'_>),
    L: FnMut(Listing<'_, '_>),
{
    let classifier = classifier(settings);
    let container = &settings.layout.endpoint_container;
    let endpoints = Search::sip_objects("endpoint container", container).reading(attrs);
    let endpoint_container = visit.search(dir, &endpoints, &classifier, findings).await?;
    let skip = container
        .is_within(&settings.directory.base_dn)
        .then_some(container);
    let users = |base| {
        Search::sip_objects("base DN", base)
            .reading(attrs)
            .skipping(skip)
    };
    let UserScope {
        global_catalog,
        bases,
    } = user_scope(dir, settings).await?;
    let Some(mut gc) = global_catalog else {
        let base = visit
            .search(
                dir,
                &users(&settings.directory.base_dn),
                &classifier,
                findings,
            )
            .await?;
        return Ok(ScanStats {
            endpoint_container,
            base,
        });
    };
    let mut base = SearchStats::default();
    let mut searched = Ok(());
    for domain in &bases {
        match visit
            .search(&mut gc, &users(domain), &classifier, findings)
            .await
        {
            Ok(one) => {
                base.entries += one.entries;
                base.skipped += one.skipped;
                base.references += one.references;
            }
            Err(e) => {
                searched = Err(e);
                break;
            }
        }
    }
    gc.close().await;
    searched.map(|()| ScanStats {
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
    let config = routed::naming_context(&dir.root_dse().naming_contexts, container)
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
