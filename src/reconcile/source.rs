//! [`Source`]: what planning reads from a directory, so one scan path serves a live directory
//! ([`Directory`], or [`Live`] across the domains of a forest) and a captured state
//! ([`Snapshot`], which golden tests replay).
//!
//! The snapshot answers each question the way the server does: a scan returns the objects with
//! a SIP address under each scope and only the attributes asked for; a holder search matches the
//! address the way the attribute's equality rule does (case-insensitively); a read returns every
//! attribute. It never fails.

use std::future::Future;

use crate::config::Settings;
use crate::estate::routed::Routed;
use crate::inventory::{self, ScanStats, UserScope};
use crate::ldap::{self, Directory, SearchStats};
use crate::model::{
    Attributes, Classifier, DirectoryObject, Dn, DnCache, Entry, Finding, Sighting, SipUri, attr,
};

/// What planning reads.
pub(crate) trait Source {
    /// Streams what detection needs ([`Sighting`]: DN text, kind, normalised SIP address) of
    /// every object with a valid SIP address in the endpoint container and under `base_dn` (the
    /// container once); malformed values become findings.
    fn detect(
        &mut self,
        settings: &Settings,
        findings: &mut Vec<Finding>,
        on_sighting: impl FnMut(Sighting<'_>),
    ) -> impl Future<Output = Result<ScanStats, ldap::Error>>;

    /// Streams the objects under `base` (none within `skip`) whose SIP address equals
    /// `normalized_uri`; `what` names the base in errors.
    fn holders_of(
        &mut self,
        what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip: Option<&Dn>,
        classifier: &Classifier,
        on_object: impl FnMut(DirectoryObject),
    ) -> impl Future<Output = Result<(), ldap::Error>>;

    /// The complete entry, or `None` if it does not exist.
    fn read_entry(&mut self, dn: &Dn) -> impl Future<Output = Result<Option<Entry>, ldap::Error>>;

    /// `attrs` of the entry `dn` (constructed ones included, such as AD's effective rights),
    /// or `None` if it does not exist.
    fn read_attributes(
        &mut self,
        dn: &Dn,
        attrs: &[&str],
    ) -> impl Future<Output = Result<Option<Attributes>, ldap::Error>>;

    /// Whether this is Active Directory, which shapes the endpoint pcsync writes (no `sn`).
    fn is_active_directory(&self) -> bool;
}

impl Source for Directory {
    async fn detect(
        &mut self,
        settings: &Settings,
        findings: &mut Vec<Finding>,
        on_sighting: impl FnMut(Sighting<'_>),
    ) -> Result<ScanStats, ldap::Error> {
        inventory::detect(self, settings, findings, on_sighting).await
    }

    async fn holders_of(
        &mut self,
        what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip: Option<&Dn>,
        classifier: &Classifier,
        on_object: impl FnMut(DirectoryObject),
    ) -> Result<(), ldap::Error> {
        self.for_each_holder_of(what, base, normalized_uri, skip, classifier, on_object)
            .await
            .map(|_| ())
    }

    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, ldap::Error> {
        Directory::read_entry(self, dn).await
    }

    async fn read_attributes(
        &mut self,
        dn: &Dn,
        attrs: &[&str],
    ) -> Result<Option<Attributes>, ldap::Error> {
        Directory::read_attributes(self, dn.as_str(), attrs).await
    }

    fn is_active_directory(&self) -> bool {
        self.capabilities().active_directory
    }
}

/// A live directory as planning reads it in a forest: users searched through the Global
/// Catalog in every domain when `directory.global_catalog` is set, and each object re-read in
/// full on a DC of its own domain ([`Routed`]). Without a Global Catalog every read goes to the
/// connection itself, as [`Directory`]'s own [`Source`] does.
pub(crate) struct Live<'a> {
    routed: Routed<'a>,
    base_dn: Dn,
    /// Opened on the first holder search under `base_dn`.
    users: Option<UserScope>,
    settings: &'a Settings,
    /// The primary connection's server, which shapes the endpoint pcsync writes.
    active_directory: bool,
}

impl<'a> Live<'a> {
    pub(crate) async fn new(
        dir: &'a mut Directory,
        settings: &'a Settings,
    ) -> Result<Live<'a>, ldap::Error> {
        let active_directory = dir.capabilities().active_directory;
        Ok(Live {
            active_directory,
            routed: Routed::new(dir, settings).await?,
            base_dn: settings.directory.base_dn.clone(),
            users: None,
            settings,
        })
    }

    /// Ends the connections opened for other domains and the Global Catalog.
    pub(crate) async fn close(self) {
        if let Some(gc) = self.users.and_then(|u| u.global_catalog) {
            gc.close().await;
        }
        self.routed.close().await;
    }
}

impl Source for Live<'_> {
    /// [`inventory::detect`] from the primary connection: through the Global Catalog in every
    /// domain when one is configured, else exactly [`Directory`]'s own detection.
    async fn detect(
        &mut self,
        settings: &Settings,
        findings: &mut Vec<Finding>,
        on_sighting: impl FnMut(Sighting<'_>),
    ) -> Result<ScanStats, ldap::Error> {
        inventory::detect(self.routed.primary(), settings, findings, on_sighting).await
    }

    async fn holders_of(
        &mut self,
        what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip: Option<&Dn>,
        classifier: &Classifier,
        mut on_object: impl FnMut(DirectoryObject),
    ) -> Result<(), ldap::Error> {
        if *base != self.base_dn || self.settings.directory.global_catalog.is_none() {
            return self
                .routed
                .primary()
                .for_each_holder_of(what, base, normalized_uri, skip, classifier, on_object)
                .await
                .map(|_| ());
        }
        if self.users.is_none() {
            let scope = inventory::user_scope(self.routed.primary(), self.settings).await?;
            self.users = Some(scope);
        }
        let Some(UserScope {
            global_catalog: Some(gc),
            bases,
        }) = self.users.as_mut()
        else {
            return Ok(());
        };
        for domain in bases.iter() {
            gc.for_each_holder_of(
                what,
                domain,
                normalized_uri,
                skip,
                classifier,
                &mut on_object,
            )
            .await?;
        }
        Ok(())
    }

    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, ldap::Error> {
        self.routed.read(dn).await
    }

    async fn read_attributes(
        &mut self,
        dn: &Dn,
        attrs: &[&str],
    ) -> Result<Option<Attributes>, ldap::Error> {
        self.routed
            .for_dn(dn)
            .await?
            .read_attributes(dn.as_str(), attrs)
            .await
    }

    fn is_active_directory(&self) -> bool {
        self.active_directory
    }
}

/// The two places SIP objects live, each with what to leave out of it: the endpoint container,
/// then `base_dn` without the container when the container lies under it (a single-tree layout),
/// so no object is seen twice.
pub(crate) fn scopes(settings: &Settings) -> [(&'static str, &Dn, Option<&Dn>); 2] {
    let container = &settings.layout.endpoint_container;
    let base = &settings.directory.base_dn;
    let skip = container.is_within(base).then_some(container);
    [
        ("endpoint container", container, None),
        ("base DN", base, skip),
    ]
}

/// Every object holding `normalized_uri` in both [`scopes`] (each once), through `source`.
pub(crate) async fn holders_everywhere(
    settings: &Settings,
    source: &mut impl Source,
    normalized_uri: &str,
    classifier: &Classifier,
    mut on_object: impl FnMut(DirectoryObject),
) -> Result<(), ldap::Error> {
    for (what, base, skip) in scopes(settings) {
        source
            .holders_of(what, base, normalized_uri, skip, classifier, &mut on_object)
            .await?;
    }
    Ok(())
}

/// A captured directory state: every entry (all user attributes) of both scopes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    entries: Vec<Entry>,
}

impl Snapshot {
    pub(crate) fn new(entries: Vec<Entry>) -> Snapshot {
        Snapshot { entries }
    }

    /// The entries under `base` but not within `skip`, in capture order.
    fn under<'a>(
        &'a self,
        base: &'a Dn,
        skip: Option<&'a Dn>,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.dn.is_within(base) && !skip.is_some_and(|s| e.dn.is_within(s)))
    }
}

/// `entry` as a search asking for `attrs` returns it.
fn projected(entry: &Entry, attrs: &[&str]) -> Attributes {
    let mut out = Attributes::new();
    for a in entry
        .attributes
        .iter()
        .filter(|a| attrs.iter().any(|n| a.name.is(n)))
    {
        out.insert(a.name.as_str(), a.values.clone());
    }
    out
}

impl Source for Snapshot {
    async fn detect(
        &mut self,
        settings: &Settings,
        findings: &mut Vec<Finding>,
        mut on_sighting: impl FnMut(Sighting<'_>),
    ) -> Result<ScanStats, ldap::Error> {
        let classifier = inventory::classifier(settings);
        let mut buffer = String::new();
        let mut stats = [SearchStats::default(), SearchStats::default()];
        for ((_, base, skip), stats) in scopes(settings).into_iter().zip(&mut stats) {
            for e in self
                .under(base, skip)
                .filter(|e| !e.get(attr::PRIMARY_USER_ADDRESS).is_empty())
            {
                stats.entries += 1;
                let classes = e
                    .get(attr::OBJECT_CLASS)
                    .iter()
                    .filter_map(|v| std::str::from_utf8(v).ok());
                let addresses = e.get(attr::PRIMARY_USER_ADDRESS).iter().map(Vec::as_slice);
                if let Some(sighting) = Sighting::read(
                    e.dn.as_str(),
                    classes,
                    addresses,
                    &classifier,
                    &mut buffer,
                    findings,
                ) {
                    on_sighting(sighting);
                }
            }
        }
        let [endpoint_container, base] = stats;
        Ok(ScanStats {
            endpoint_container,
            base,
        })
    }

    async fn holders_of(
        &mut self,
        _what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip: Option<&Dn>,
        classifier: &Classifier,
        mut on_object: impl FnMut(DirectoryObject),
    ) -> Result<(), ldap::Error> {
        let holds = |e: &&Entry| {
            e.get(attr::PRIMARY_USER_ADDRESS).iter().any(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| SipUri::parse_held(t).ok())
                    .is_some_and(|u| u.normalized() == normalized_uri)
            })
        };
        let mut cache = DnCache::default();
        for e in self.under(base, skip).filter(holds) {
            on_object(DirectoryObject::from_parsed(
                e.dn.clone(),
                projected(e, attr::SEARCHED),
                classifier,
                &mut cache,
                // The scan already reported these objects' malformed values.
                &mut Vec::new(),
            ));
        }
        Ok(())
    }

    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, ldap::Error> {
        Ok(self.entries.iter().find(|e| &e.dn == dn).cloned())
    }

    async fn read_attributes(
        &mut self,
        dn: &Dn,
        attrs: &[&str],
    ) -> Result<Option<Attributes>, ldap::Error> {
        Ok(self
            .entries
            .iter()
            .find(|e| &e.dn == dn)
            .map(|e| projected(e, attrs)))
    }

    /// The golden states are captured from slapd.
    fn is_active_directory(&self) -> bool {
        false
    }
}
