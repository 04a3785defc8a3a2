//! Small reads for the estate module (write server, DCs, replication, domains): a base read of
//! one entry and a subtree search whose answer fits in memory, both binary-safe, plus a
//! connection to one named server with no fail-over (the write server).

use ldap3::Scope;

use super::connect::ConnectError;
use super::entry::readable;
use super::{ConnectOptions, Directory, Error, error::Attempt};
use crate::config::{DirectorySettings, LdapUrl};
use crate::model::{Attributes, Dn, Guid};

impl Directory {
    /// Connects and binds to `url` only: no other server is tried. For the write server, which
    /// must never fail over.
    pub(crate) async fn connect_only(
        url: &LdapUrl,
        settings: &DirectorySettings,
    ) -> Result<Directory, Error> {
        Directory::connect_only_with(url, settings, &ConnectOptions::default()).await
    }

    /// [`Directory::connect_only`] with the given [`ConnectOptions`] (the agent's keepalive).
    pub(crate) async fn connect_only_with(
        url: &LdapUrl,
        settings: &DirectorySettings,
        options: &ConnectOptions,
    ) -> Result<Directory, Error> {
        match Directory::connect_one(url, settings, options).await {
            Ok(dir) => Ok(dir),
            Err(ConnectError::Unreachable(reason)) => Err(Error::Unreachable {
                attempts: vec![Attempt {
                    url: url.to_string(),
                    reason,
                }],
            }),
            Err(ConnectError::Fatal(e)) => Err(e),
        }
    }

    /// `attrs` of the entry `dn` (a base search); `None` when it does not exist.
    pub(crate) async fn read_attributes(
        &mut self,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Option<Attributes>, Error> {
        let op = format!("reading {dn}");
        match self
            .search_all(dn, Scope::Base, "(objectClass=*)", attrs, &op)
            .await
        {
            Ok(entries) => Ok(readable(&entries).next().map(|e| e.to_attributes())),
            Err(Error::NoSuchBase { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// (DN, `attrs`) of every entry under `base` (subtree) matching `filter`: for the few
    /// objects of the configuration naming context (sites, partitions, schema), never users.
    /// An entry whose DN does not parse is left out (every caller needs the DN).
    pub(crate) async fn find_small(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<(Dn, Attributes)>, Error> {
        let op = format!("search under {base}");
        let entries = self
            .search_all(base, Scope::Subtree, filter, attrs, &op)
            .await?;
        Ok(readable(&entries)
            .filter_map(|e| Some((Dn::parse(&e.dn_shown()).ok()?, e.to_attributes())))
            .collect())
    }

    /// On Active Directory: the attributes of `wanted` that have no attributeSchema object in
    /// the schema naming context (`CN=Schema,<configuration NC>`). One small entry per
    /// attribute instead of the subschema's hundreds of kilobytes in one message, which ldap3
    /// cannot read inside Kerberos sealing when it spans several sealed frames.
    pub(crate) async fn missing_from_schema_nc(
        &mut self,
        config: &str,
        wanted: &[&str],
    ) -> Result<Vec<String>, Error> {
        let found = self
            .schema_entries(config, wanted, &["lDAPDisplayName"])
            .await?;
        Ok(wanted
            .iter()
            .filter(|name| {
                !found.iter().any(|(_, a)| {
                    a.texts("lDAPDisplayName")
                        .any(|n| n.eq_ignore_ascii_case(name))
                })
            })
            .map(|s| (*s).to_string())
            .collect())
    }

    /// `attrs` of the attributeSchema objects of `names` (by lDAPDisplayName) in the schema
    /// naming context under the configuration NC `config`.
    pub(crate) async fn schema_entries(
        &mut self,
        config: &str,
        names: &[&str],
        attrs: &[&str],
    ) -> Result<Vec<(Dn, Attributes)>, Error> {
        let mut filter = String::from("(&(objectClass=attributeSchema)(|");
        for name in names {
            filter.push_str(&format!("(lDAPDisplayName={})", ldap3::ldap_escape(*name)));
        }
        filter.push_str("))");
        self.find_small(&format!("CN=Schema,{config}"), &filter, attrs)
            .await
    }

    /// The `invocationId` of the nTDSDSA object `dsa`, as a GUID string; `None` when it has
    /// none this account may read.
    pub(crate) async fn invocation_id(&mut self, dsa: &str) -> Result<Option<String>, Error> {
        Ok(self
            .read_attributes(dsa, &["invocationId"])
            .await?
            .and_then(|a| {
                a.get("invocationId")
                    .first()
                    .and_then(|v| Guid::from_bytes(v))
            })
            .map(|g| g.to_string()))
    }

    /// The root DSE values `attrs` (e.g. `dsServiceName`, `highestCommittedUSN`), read now.
    pub(crate) async fn read_root(&mut self, attrs: &[&str]) -> Result<Attributes, Error> {
        Ok(self.read_attributes("", attrs).await?.unwrap_or_default())
    }
}
