//! The write server: the one DC that receives every write of a run, the lease included.
//!
//! `write_server = "pdc"` (the default) asks the first URL that answers which DC is the PDC
//! emulator: `fSMORoleOwner` on the domain head names its nTDSDSA object, whose parent server
//! object carries its `dNSHostName`. `"first"` keeps the first URL that answers, so an operator
//! names the server by listing it first. On a directory that is not Active Directory there is no
//! PDC emulator and "pdc" means the first URL that answers. The write server is connected to on
//! its own, with no fail-over: when it is down, writes stop with an error naming it.

use std::fmt;

use super::Error;
use super::topology::{self, Dc, SITES_ATTRS, SITES_FILTER};
use crate::config::{DirectorySettings, LdapUrl, WriteServerChoice};
use crate::ldap::{ConnectOptions, Directory};
use crate::model::Dn;

/// Why a server is the write server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// It holds the PDC emulator role.
    Pdc,
    /// It is the first configured URL that answered (`write_server = "first"`).
    First,
    /// Not Active Directory: the first configured URL that answered.
    NotActiveDirectory,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Pdc => "PDC emulator, from fSMORoleOwner",
            Source::First => "first URL that answers, write_server = \"first\"",
            Source::NotActiveDirectory => "first URL that answers; no PDC emulator outside AD",
        })
    }
}

/// The server every write of a run goes to, and the DCs of its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteServer {
    /// Its host name as the URL names it (the DC's `dNSHostName` when found as the PDC).
    pub(crate) host: String,
    pub(crate) url: LdapUrl,
    pub(crate) source: Source,
    /// The DCs of the domain (empty outside Active Directory), the write server among them.
    pub(crate) dcs: Vec<Dc>,
}

impl fmt::Display for WriteServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.host, self.source)
    }
}

impl WriteServer {
    /// The DC entry of the write server itself, when it is one of the listed DCs.
    pub(crate) fn dc(&self) -> Option<&Dc> {
        self.dcs
            .iter()
            .find(|dc| dc.host.eq_ignore_ascii_case(&self.host))
    }
}

/// Finds the write server through `dir` (any server that answered) without connecting to it.
pub(crate) async fn find(
    dir: &mut Directory,
    settings: &DirectorySettings,
) -> Result<WriteServer, Error> {
    let here = dir.url().clone();
    let dse = dir.root_dse().clone();
    let (Some(domain), Some(config)) = (
        dse.default_naming_context.clone(),
        dse.configuration_naming_context.clone(),
    ) else {
        return Ok(WriteServer {
            host: here.host.clone(),
            url: here,
            source: Source::NotActiveDirectory,
            dcs: Vec::new(),
        });
    };
    let domain_dn = Dn::parse(&domain).map_err(|e| Error::NoPdc {
        domain: domain.clone(),
        url: here.to_string(),
        reason: format!("defaultNamingContext is not a DN: {e}"),
    })?;
    let dcs = domain_dcs(dir, &domain_dn, &config).await?;
    if settings.write_server == WriteServerChoice::First {
        return Ok(WriteServer {
            host: here.host.clone(),
            url: here,
            source: Source::First,
            dcs,
        });
    }
    let no_pdc = |reason: String| Error::NoPdc {
        domain: domain.clone(),
        url: here.to_string(),
        reason,
    };
    let owner = dir
        .read_attributes(&domain, &["fSMORoleOwner"])
        .await?
        .and_then(|a| a.texts("fSMORoleOwner").next().map(str::to_string))
        .ok_or_else(|| no_pdc(format!("{domain} has no readable fSMORoleOwner")))?;
    let pdc = topology::pdc(&owner, &dcs).map_err(no_pdc)?;
    // The DC that answered may be the PDC emulator itself, reached by an address or a name
    // other than its dNSHostName: then it is kept as it was reached.
    let url = if answering_dsa(dir).await.as_ref() == Some(&pdc.dsa) {
        here
    } else {
        url_for(&pdc.host, settings, &here)
    };
    Ok(WriteServer {
        host: pdc.host.clone(),
        url,
        source: Source::Pdc,
        dcs,
    })
}

/// The nTDSDSA object of the DC behind `dir` (its root DSE's `dsServiceName`), when it says.
pub(crate) async fn answering_dsa(dir: &mut Directory) -> Option<Dn> {
    let root = dir.read_root(&["dsServiceName"]).await.ok()?;
    root.texts("dsServiceName")
        .next()
        .and_then(|t| Dn::parse(t).ok())
}

/// Connects to the first URL that answers, finds the write server through it, and returns a
/// connection to the write server (the same one when it is that server).
pub(crate) async fn open(settings: &DirectorySettings) -> Result<(Directory, WriteServer), Error> {
    open_with(settings, &ConnectOptions::default()).await
}

/// [`open`] with the given [`ConnectOptions`] (the agent's keepalive) on both connections.
pub(crate) async fn open_with(
    settings: &DirectorySettings,
    options: &ConnectOptions,
) -> Result<(Directory, WriteServer), Error> {
    let mut dir = Directory::connect_with(settings, options).await?;
    let server = find(&mut dir, settings).await?;
    if dir.url() == &server.url {
        return Ok((dir, server));
    }
    dir.close().await;
    match Directory::connect_only_with(&server.url, settings, options).await {
        Ok(writer) => Ok((writer, server)),
        Err(source) => Err(Error::WriteServerDown {
            server: server.to_string(),
            source,
        }),
    }
}

/// The DCs holding `domain`, from the configuration naming context `config`.
pub(crate) async fn domain_dcs(
    dir: &mut Directory,
    domain: &Dn,
    config: &str,
) -> Result<Vec<Dc>, Error> {
    let sites = format!("CN=Sites,{config}");
    let entries = dir.find_small(&sites, SITES_FILTER, SITES_ATTRS).await?;
    let (dcs, nameless) = topology::dcs_of_domain(domain, &entries);
    for dsa in nameless {
        tracing::warn!(%dsa, "a DC's server object has no dNSHostName; it is left out");
    }
    Ok(dcs)
}

/// The URL for `host`: the configured one naming it, else the scheme and port of the URL that
/// answered with `host` in place of its host (a DC's `dNSHostName`, which its certificate and
/// its Kerberos service principal name).
pub(crate) fn url_for(host: &str, settings: &DirectorySettings, answered: &LdapUrl) -> LdapUrl {
    settings
        .urls
        .iter()
        .find(|u| u.host.eq_ignore_ascii_case(host))
        .cloned()
        .unwrap_or_else(|| LdapUrl {
            scheme: answered.scheme,
            host: host.to_string(),
            port: answered.port,
        })
}
