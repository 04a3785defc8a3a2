//! Writes and re-reads routed to the domain of each object, for forests with several domains
//! (`directory.global_catalog` set).
//!
//! An object found through the Global Catalog may live in another domain than the one pcsync
//! is connected to; only a DC of its own domain can read it in full or change it. [`Routed`]
//! picks the connection per DN: objects of the configured domain, and everything in the
//! configuration naming context (Application Contacts, where endpoints are written), go to the
//! primary write server; an object of another domain (by the crossRef objects, see
//! [`super::forest`]) goes to that domain's write server, found and connected on first use at
//! its `dnsRoot` with the scheme and port of the primary connection, and never failing over.

use super::forest::{Domain, Forest, PARTITIONS_ATTRS, PARTITIONS_FILTER};
use super::writer::{self, Source};
use crate::config::{DirectorySettings, LdapUrl, Settings};
use crate::ldap::{Directory, Error};
use crate::model::{Dn, Entry};

/// The domains of the forest, from the crossRef objects under `CN=Partitions` of the
/// configuration naming context `config`.
pub(crate) async fn read_forest(dir: &mut Directory, config: &str) -> Result<Forest, Error> {
    let entries = dir
        .find_small(
            &format!("CN=Partitions,{config}"),
            PARTITIONS_FILTER,
            PARTITIONS_ATTRS,
        )
        .await?;
    Ok(Forest::from_cross_refs(&entries))
}

/// The naming context that holds `dn` ([`crate::ldap::naming_context_of`]), as a DN.
pub(crate) fn naming_context(naming_contexts: &[String], dn: &Dn) -> Option<Dn> {
    crate::ldap::naming_context_of(naming_contexts, dn).and_then(|nc| Dn::parse(&nc).ok())
}

/// A [`DirectoryWriter`](crate::apply::DirectoryWriter) over the primary write server and, on demand, other domains'.
pub(crate) struct Routed<'a> {
    primary: &'a mut Directory,
    settings: &'a DirectorySettings,
    forest: Forest,
    /// The primary connection's domain and configuration naming context.
    home: Option<Dn>,
    config: Option<Dn>,
    /// Write servers of other domains, by naming context, opened on first use.
    others: Vec<(Dn, Directory)>,
}

impl<'a> Routed<'a> {
    /// Routes through `primary`, the write server of the configured domain. Without
    /// `directory.global_catalog` there is one domain and every object goes to `primary`;
    /// with it, the forest's domains are read from the configuration naming context (the
    /// one holding the endpoint container).
    pub(crate) async fn new(
        primary: &'a mut Directory,
        settings: &'a Settings,
    ) -> Result<Routed<'a>, Error> {
        let ncs = primary.root_dse().naming_contexts.clone();
        let home = naming_context(&ncs, &settings.directory.base_dn);
        let config = naming_context(&ncs, &settings.layout.endpoint_container);
        let forest = match (&settings.directory.global_catalog, &config) {
            (Some(_), Some(config)) => read_forest(primary, config.as_str()).await?,
            _ => Forest::default(),
        };
        Ok(Routed {
            primary,
            settings: &settings.directory,
            forest,
            home,
            config,
            others: Vec::new(),
        })
    }

    /// The domain of `dn` when it is not the primary connection's, else `None`.
    fn foreign_domain(&self, dn: &Dn) -> Option<Domain> {
        if self
            .config
            .as_ref()
            .is_some_and(|c| dn == c || dn.is_within(c))
        {
            return None;
        }
        let domain = self.forest.domain_of(dn)?;
        (Some(&domain.nc) != self.home.as_ref()).then(|| domain.clone())
    }

    /// The connection for `dn`.
    pub(crate) async fn for_dn(&mut self, dn: &Dn) -> Result<&mut Directory, Error> {
        let Some(domain) = self.foreign_domain(dn) else {
            return Ok(self.primary);
        };
        let known = self.others.iter().position(|(nc, _)| *nc == domain.nc);
        let at = match known {
            Some(at) => at,
            None => {
                let dir = open_domain(&domain, self.primary.url(), self.settings).await?;
                self.others.push((domain.nc.clone(), dir));
                self.others.len() - 1
            }
        };
        Ok(&mut self.others[at].1)
    }

    /// The primary write server's connection (the configured domain and the configuration
    /// naming context).
    pub(crate) fn primary(&mut self) -> &mut Directory {
        self.primary
    }

    /// The complete entry `dn`, read on a DC of its own domain; `None` when it does not exist.
    pub(crate) async fn read(&mut self, dn: &Dn) -> Result<Option<Entry>, Error> {
        self.for_dn(dn).await?.read_entry(dn).await
    }

    /// Ends the connections to other domains.
    pub(crate) async fn close(self) {
        for (_, dir) in self.others {
            dir.close().await;
        }
    }
}

/// Connects to `domain`'s write server: its `dnsRoot` (same scheme and port as `answered`)
/// answers, tells which DC is its PDC emulator (or, with `write_server = "first"`, is used
/// itself), and that DC is connected to with no fail-over.
async fn open_domain(
    domain: &Domain,
    answered: &LdapUrl,
    settings: &DirectorySettings,
) -> Result<Directory, Error> {
    let url = LdapUrl {
        scheme: answered.scheme,
        host: domain.dns_root.clone(),
        port: answered.port,
    };
    let mut dir = Directory::connect_only(&url, settings).await?;
    let server = writer::find(&mut dir, settings)
        .await
        .map_err(|e| lost(&url, &domain.dns_root, e.to_string()))?;
    if server.url == url || server.source != Source::Pdc {
        return Ok(dir);
    }
    dir.close().await;
    Directory::connect_only(&server.url, settings)
        .await
        .map_err(|e| {
            lost(
                &server.url,
                &domain.dns_root,
                format!("write server {server} is unreachable: {e}; writes never fail over"),
            )
        })
}

fn lost(url: &LdapUrl, domain: &str, reason: String) -> Error {
    Error::ConnectionLost {
        op: format!("opening the write server of {domain}"),
        url: url.to_string(),
        reason,
    }
}
