//! The directory adapter: everything that touches ldap3 lives here.
//!
//! [`Directory::connect`] tries each configured URL in order (several DCs), with TLS from our own
//! rustls config (ring provider, private CA or the system roots), and binds. Searches are paged
//! (RFC 2696) and streamed: entries are handed to a callback one at a time, so memory stays
//! bounded by the page size. Continuation references (AD sends them for other naming contexts)
//! are counted and ignored, never chased. Every search checks its final result code, so a size
//! limit is an error rather than a silently short answer. Nothing here panics on server data.

mod capabilities;
mod dirsync;
mod error;
mod kerberos;
mod lookup;
mod syncrepl;
mod usn;
mod write;

pub(crate) use capabilities::oid;
pub use capabilities::{Capabilities, ConditionalWrites, LiveWatch};
pub(crate) use error::Attempt;
pub use error::Error;
pub use kerberos::KerberosSettings;
pub(crate) use kerberos::{Mechanism, first_principal, process_env, require_host_name};
pub(crate) use syncrepl::{SyncEnd, SyncEvent};
pub(crate) use usn::{UsnListing, UsnMark};

use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{
    LdapConnAsync, LdapConnSettings, LdapError, LdapResult, ResultEntry, Scope, SearchEntry,
};
use tracing::{debug, info};

use crate::config::{DirectorySettings, LdapScheme, LdapUrl};
use crate::model::{Attributes, Classifier, DirectoryObject, Dn, DnCache, Finding, attr};

/// The attribute list every search here passes: a fixed list of names.
type Attrs = &'static [&'static str];

/// Filter for every object that has a SIP address.
pub(crate) const SIP_ENABLED_FILTER: &str = "(msRTCSIP-PrimaryUserAddress=*)";

/// What the root DSE says about a server; read once per connection.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RootDse {
    pub naming_contexts: Vec<String>,
    pub supported_controls: Vec<String>,
    pub supported_extensions: Vec<String>,
    /// AD only: `1.2.840.113556.1.4.800` says "this is Active Directory".
    pub supported_capabilities: Vec<String>,
    pub subschema_subentry: Option<String>,
    pub vendor_name: Option<String>,
    pub vendor_version: Option<String>,
    /// AD only.
    pub default_naming_context: Option<String>,
    /// AD only.
    pub configuration_naming_context: Option<String>,
}

impl RootDse {
    /// Whether the server advertises a control; pcsync never sends a critical control it does
    /// not advertise (ldap3 loses the connection when AD answers one with an ExtendedResponse).
    pub(crate) fn supports_control(&self, oid: &str) -> bool {
        self.supported_controls.iter().any(|c| c == oid)
    }
}

/// Counts from one paged search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Entries handed to the callback.
    pub entries: u64,
    /// Entries skipped by the caller's `skip_within`.
    pub skipped: u64,
    /// Continuation references received and ignored.
    pub references: u64,
}

/// A bound connection to one directory server.
pub struct Directory {
    ldap: ldap3::Ldap,
    url: LdapUrl,
    timeout: Duration,
    page_size: u32,
    bound_as: Option<String>,
    /// How the bind authenticated (`None`: anonymous).
    mechanism: Option<Mechanism>,
    root_dse: RootDse,
    /// Chosen from `root_dse` once per connection; nothing sends a control without asking it.
    capabilities: Capabilities,
    /// The connection driver; aborted on drop so a dropped `Directory` leaves no task behind.
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Directory {
    /// Connects to the first URL that answers, binds, and reads the root DSE.
    ///
    /// A bind failure (wrong password) is returned at once: trying the next DC with the same
    /// credentials would only risk locking the account.
    pub async fn connect(settings: &DirectorySettings) -> Result<Directory, Error> {
        let mut attempts = Vec::new();
        for url in &settings.urls {
            match Directory::connect_one(url, settings).await {
                Ok(dir) => return Ok(dir),
                Err(ConnectError::Unreachable(reason)) => {
                    // info, not warn: the caller reports the final error; the daemon logs at info.
                    info!(%url, %reason, "directory server unreachable");
                    attempts.push(Attempt {
                        url: url.to_string(),
                        reason,
                    });
                }
                Err(ConnectError::Fatal(e)) => return Err(e),
            }
        }
        Err(Error::Unreachable { attempts })
    }

    async fn connect_one(
        url: &LdapUrl,
        settings: &DirectorySettings,
    ) -> Result<Directory, ConnectError> {
        let shown = url.to_string();
        let starttls = settings.starttls && url.scheme == LdapScheme::Ldap;
        // Checked at config load too; repeated here so no caller can bypass it.
        if settings.bind.is_some()
            && url.scheme == LdapScheme::Ldap
            && !starttls
            && !url.is_loopback()
            && !settings.allow_insecure
        {
            return Err(ConnectError::Fatal(Error::InsecureBind { url: shown }));
        }
        if settings.bind.is_some()
            && url.scheme == LdapScheme::Ldap
            && !starttls
            && !url.is_loopback()
        {
            warn_insecure_once(&shown);
        }
        let mut conn_settings = LdapConnSettings::new().set_conn_timeout(settings.timeout);
        if url.scheme == LdapScheme::Ldaps || starttls {
            let tls = tls_config(settings.tls_ca_file.as_deref()).map_err(|reason| {
                ConnectError::Fatal(Error::Tls {
                    url: shown.clone(),
                    reason,
                })
            })?;
            conn_settings = conn_settings
                .set_config(Arc::new(tls))
                .set_starttls(starttls);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &shown)
            .await
            .map_err(|e| match &e {
                // The only LDAP result before a bind is the StartTLS answer: say so, and that
                // nothing was sent in clear (ldap3 stops there; there is no plain fallback).
                LdapError::LdapResult { result } if starttls => ConnectError::Unreachable(format!(
                    "StartTLS refused by the server (LDAP {}{}); nothing was sent in clear",
                    result.rc,
                    error::diag(&result.text)
                )),
                _ => ConnectError::Unreachable(describe(&e)),
            })?;
        let driver_url = shown.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(url = %driver_url, error = %e, "LDAP connection ended");
            }
        });

        let mut bound_as = None;
        let mut mechanism = None;
        if let Some(kerberos) = &settings.kerberos {
            let tls = url.scheme == LdapScheme::Ldaps || starttls;
            match kerberos::bind(&mut ldap, url, tls, kerberos, settings.timeout).await {
                Ok(how) => {
                    bound_as = Some(kerberos.principal.clone());
                    mechanism = Some(how);
                }
                Err(e @ Error::ConnectionLost { .. }) => {
                    driver.abort();
                    return Err(ConnectError::Unreachable(e.to_string()));
                }
                Err(e) => {
                    driver.abort();
                    return Err(ConnectError::Fatal(e));
                }
            }
        } else if let Some(bind) = &settings.bind {
            let dn = bind.dn.as_str().to_string();
            let res = ldap
                .with_timeout(settings.timeout)
                .simple_bind(&dn, bind.password.expose())
                .await;
            match res {
                Ok(LdapResult { rc: 0, .. }) => {
                    bound_as = Some(dn);
                    mechanism = Some(Mechanism::Simple);
                }
                Ok(LdapResult { rc: 49, text, .. }) => {
                    driver.abort();
                    return Err(ConnectError::Fatal(Error::InvalidCredentials {
                        url: shown,
                        dn,
                        text,
                    }));
                }
                Ok(LdapResult { rc: 8, text, .. }) => {
                    driver.abort();
                    return Err(ConnectError::Fatal(Error::StrongAuthRequired {
                        url: shown,
                        dn,
                        text,
                    }));
                }
                Ok(LdapResult { rc, text, .. }) => {
                    driver.abort();
                    return Err(ConnectError::Fatal(Error::Bind {
                        url: shown,
                        dn,
                        rc,
                        text,
                    }));
                }
                Err(e) => {
                    driver.abort();
                    return Err(ConnectError::Unreachable(describe(&e)));
                }
            }
        }
        let mut dir = Directory {
            ldap,
            url: url.clone(),
            timeout: settings.timeout,
            page_size: settings.page_size,
            bound_as,
            mechanism,
            root_dse: RootDse::default(),
            capabilities: Capabilities::detect(&RootDse::default()),
            driver,
        };
        dir.root_dse = dir.read_root_dse().await.map_err(|e| {
            if e.is_transient() {
                ConnectError::Unreachable(e.to_string())
            } else {
                ConnectError::Fatal(e)
            }
        })?;
        dir.capabilities = Capabilities::detect(&dir.root_dse);
        debug!(
            url = %dir.url,
            bound_as = ?dir.bound_as,
            watch = %dir.capabilities.watch,
            writes = %dir.capabilities.writes,
            paged = dir.capabilities.paged_results,
            "connected"
        );
        Ok(dir)
    }

    /// The URL of the server this connection reached.
    pub(crate) fn url(&self) -> &LdapUrl {
        &self.url
    }

    /// The DN (simple bind) or Kerberos principal this connection is bound as, if not
    /// anonymous.
    pub(crate) fn bound_as(&self) -> Option<&str> {
        self.bound_as.as_deref()
    }

    /// How the bind authenticated; `None` when anonymous.
    pub(crate) fn mechanism(&self) -> Option<&Mechanism> {
        self.mechanism.as_ref()
    }

    pub fn root_dse(&self) -> &RootDse {
        &self.root_dse
    }

    /// The features chosen for this server from its root DSE.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn read_root_dse(&mut self) -> Result<RootDse, Error> {
        let attrs = [
            "namingContexts",
            "supportedControl",
            "supportedExtension",
            "supportedCapabilities",
            "subschemaSubentry",
            "vendorName",
            "vendorVersion",
            "defaultNamingContext",
            "configurationNamingContext",
        ];
        let entries = self
            .search_all(
                "",
                Scope::Base,
                "(objectClass=*)",
                &attrs,
                "reading the root DSE",
            )
            .await?;
        let Some(e) = entries.into_iter().next() else {
            return Ok(RootDse::default());
        };
        let get = |name: &str| e.attrs.get(name).cloned().unwrap_or_default();
        let first = |name: &str| get(name).into_iter().next();
        let mut controls = get("supportedControl");
        // AD lists some controls twice.
        controls.sort();
        controls.dedup();
        Ok(RootDse {
            naming_contexts: get("namingContexts"),
            supported_controls: controls,
            supported_extensions: get("supportedExtension"),
            supported_capabilities: get("supportedCapabilities"),
            subschema_subentry: first("subschemaSubentry"),
            vendor_name: first("vendorName"),
            vendor_version: first("vendorVersion"),
            default_naming_context: first("defaultNamingContext"),
            configuration_naming_context: first("configurationNamingContext"),
        })
    }

    /// The attributes of `wanted` that the server's schema does not define.
    ///
    /// Matches on the quoted NAME inside each `attributeTypes` value: AD's subschema quotes its
    /// SYNTAX OIDs and omits EQUALITY, so a strict RFC 4512 parser would reject it.
    pub async fn missing_schema_attributes(
        &mut self,
        wanted: &[&str],
    ) -> Result<Vec<String>, Error> {
        if let Some(config) = self.root_dse.configuration_naming_context.clone() {
            return self.missing_from_schema_nc(&config, wanted).await;
        }
        let Some(subschema) = self.root_dse.subschema_subentry.clone() else {
            return Ok(wanted.iter().map(|s| (*s).to_string()).collect());
        };
        let entries = self
            .search_all(
                &subschema,
                Scope::Base,
                "(objectClass=*)",
                &["attributeTypes"],
                "reading the schema",
            )
            .await?;
        let definitions: Vec<String> = entries
            .iter()
            .flat_map(|e| e.attrs.get("attributeTypes").into_iter().flatten())
            .map(|d| d.to_ascii_lowercase())
            .collect();
        Ok(wanted
            .iter()
            .filter(|name| {
                let quoted = format!("'{}'", name.to_ascii_lowercase());
                !definitions.iter().any(|d| d.contains(&quoted))
            })
            .map(|s| (*s).to_string())
            .collect())
    }

    /// Fails with [`Error::SchemaMissing`] unless the msRTCSIP attributes pcsync needs exist.
    pub async fn require_schema(&mut self) -> Result<(), Error> {
        let missing = self
            .missing_schema_attributes(attr::REQUIRED_SCHEMA)
            .await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::SchemaMissing {
                url: self.url.to_string(),
                missing,
            })
        }
    }

    /// Checks that the account may use DirSync on the naming contexts holding `bases`, when
    /// DirSync is the chosen watch, and falls back (uSNChanged polling) where it may not.
    ///
    /// One base-scope DirSync search per naming context, flags 0: without the object-security
    /// flag AD requires "Replicating Directory Changes", the right a watch needs to see
    /// deletions. The control is sent critical only because the server advertised it.
    pub(crate) async fn verify_dirsync(&mut self, bases: &[&Dn]) -> Result<&Capabilities, Error> {
        if self.capabilities.watch != LiveWatch::DirSync {
            return Ok(&self.capabilities);
        }
        let mut ncs: Vec<String> = Vec::new();
        for base in bases {
            let nc = naming_context_of(&self.root_dse.naming_contexts, base)
                .unwrap_or_else(|| base.as_str().to_string());
            if !ncs.iter().any(|n| n.eq_ignore_ascii_case(&nc)) {
                ncs.push(nc);
            }
        }
        for nc in &ncs {
            let op = format!("DirSync probe of {nc}");
            let result = self
                .ldap
                .with_timeout(self.timeout)
                .with_controls(dirsync::control(&[]))
                .search(nc, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .map_err(|e| self.op_error(&op, e))?;
            match result.1 {
                LdapResult { rc: 0, .. } => {}
                // insufficientAccessRights, unwillingToPerform: not for this account.
                LdapResult {
                    rc: rc @ (50 | 53),
                    text,
                    ..
                } => {
                    info!(nc = %nc, rc, text = %text.trim(), "DirSync refused; polling uSNChanged instead");
                    self.capabilities = self.capabilities.clone().dirsync_refused(nc, rc, &text);
                    return Ok(&self.capabilities);
                }
                res => self.check_search_result("naming context", nc, &op, res)?,
            }
        }
        self.capabilities = self.capabilities.clone().dirsync_verified(&ncs);
        Ok(&self.capabilities)
    }

    /// Whether an entry exists (a base-scope search; LDAP 32 means no).
    pub(crate) async fn exists(&mut self, dn: &Dn) -> Result<bool, Error> {
        match self
            .search_all(
                dn.as_str(),
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
                "reading",
            )
            .await
        {
            Ok(entries) => Ok(!entries.is_empty()),
            Err(Error::NoSuchBase { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams every SIP-enabled object under `base` (subtree, paged) to `on_object`.
    ///
    /// Objects within `skip_within` are counted as skipped and not converted: callers use it to
    /// avoid seeing the endpoint container twice when it lies under the users' base.
    /// `what` names the base in errors ("base DN", "endpoint container").
    pub(crate) async fn for_each_sip_object(
        &mut self,
        what: &'static str,
        base: &Dn,
        skip_within: Option<&Dn>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        self.for_each_sip_object_with(
            what,
            base,
            skip_within,
            attr::SEARCHED,
            classifier,
            findings,
            on_object,
        )
        .await
    }

    /// [`Self::for_each_sip_object`] reading only `attrs` (which must include objectClass and
    /// the SIP address): a caller that needs less than [`attr::SEARCHED`] moves less data.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn for_each_sip_object_with(
        &mut self,
        what: &'static str,
        base: &Dn,
        skip_within: Option<&Dn>,
        attrs: &'static [&'static str],
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        self.for_each_object(
            what,
            base,
            SIP_ENABLED_FILTER,
            attrs,
            skip_within,
            classifier,
            findings,
            on_object,
        )
        .await
    }

    /// Streams the objects under `base` whose SIP address equals `normalized_uri` (the server's
    /// equality rule for the attribute is case-insensitive in AD and in our OpenLDAP schema).
    pub(crate) async fn for_each_holder_of(
        &mut self,
        what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip_within: Option<&Dn>,
        classifier: &Classifier,
        on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        // The full scan already reported these objects' malformed values.
        let mut findings = Vec::new();
        let filter = format!(
            "({}={})",
            attr::PRIMARY_USER_ADDRESS,
            ldap3::ldap_escape(normalized_uri)
        );
        self.for_each_object(
            what,
            base,
            &filter,
            attr::SEARCHED,
            skip_within,
            classifier,
            &mut findings,
            on_object,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn for_each_object(
        &mut self,
        what: &'static str,
        base: &Dn,
        filter: &str,
        attrs: &'static [&'static str],
        skip_within: Option<&Dn>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        mut on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        let mut stats = SearchStats::default();
        let mut dn_cache = DnCache::default();
        let op = format!("search under {base}");
        let references = self
            .stream_entries(what, base, filter, attrs, &op, |entry| {
                // Parse the DN once, for the skip test and the object.
                let dn = match Dn::parse(&entry.dn) {
                    Ok(dn) => dn,
                    Err(e) => {
                        stats.entries += 1;
                        findings.push(Finding::malformed(&entry.dn, format!("DN: {e}")));
                        return;
                    }
                };
                if skip_within.is_some_and(|skip| dn.is_within(skip)) {
                    stats.skipped += 1;
                    return;
                }
                stats.entries += 1;
                on_object(DirectoryObject::from_parsed(
                    dn,
                    to_attributes(entry.attrs, entry.bin_attrs),
                    classifier,
                    &mut dn_cache,
                    findings,
                ));
            })
            .await?;
        stats.references = references;
        if stats.references > 0 {
            debug!(%base, references = stats.references, "ignored continuation references");
        }
        Ok(stats)
    }

    /// Streams the entries of a subtree search under `base` (paged where advertised) to
    /// `on_entry`, one at a time; intermediate messages are skipped and continuation references
    /// counted, never chased. Returns the number of references. `what` names the base in errors.
    async fn stream_entries(
        &mut self,
        what: &'static str,
        base: &Dn,
        filter: &str,
        attrs: Attrs,
        op: &str,
        mut on_entry: impl FnMut(SearchEntry),
    ) -> Result<u64, Error> {
        let adapters = self.search_adapters();
        let mut stream = self
            .ldap
            .with_timeout(self.timeout)
            .streaming_search_with(adapters, base.as_str(), Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.op_error(op, e))?;
        let mut references = 0;
        loop {
            let entry: ResultEntry = match stream.next().await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(self.op_error(op, e));
                }
            };
            if entry.is_ref() {
                references += 1;
            } else if !entry.is_intermediate() {
                on_entry(SearchEntry::construct(entry));
            }
        }
        let result = stream.finish().await;
        self.check_search_result(what, base.as_str(), op, result)?;
        Ok(references)
    }

    /// A small unpaged search whose result fits in memory (root DSE, schema, one entry).
    async fn search_all(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        op: &str,
    ) -> Result<Vec<SearchEntry>, Error> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| self.op_error(op, e))?;
        let (entries, res) = (result.0, result.1);
        self.check_search_result("entry", base, op, res)?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect())
    }

    fn check_search_result(
        &self,
        what: &'static str,
        base: &str,
        op: &str,
        res: LdapResult,
    ) -> Result<(), Error> {
        let url = self.url.to_string();
        match res.rc {
            0 => Ok(()),
            // A referral for the base itself: treat as absent here, never chase it.
            10 => Ok(()),
            4 => Err(Error::SizeLimit {
                base: base.to_string(),
                url,
                text: res.text,
            }),
            32 => Err(Error::NoSuchBase {
                what,
                dn: base.to_string(),
                url,
                text: res.text,
            }),
            3 => Err(Error::Timeout {
                op: op.to_string(),
                url,
                secs: self.timeout.as_secs_f64(),
            }),
            rc => Err(Error::Operation {
                op: op.to_string(),
                url,
                rc,
                text: res.text,
            }),
        }
    }

    /// The adapters of a subtree search: paging only where the server advertises it (every AD
    /// and slapd does). ldap3 sends the control non-critical (pinned by a unit test), so even a
    /// wrong guess could not cost the connection; no other control is ever attached to a search.
    fn search_adapters(&self) -> Vec<Box<dyn Adapter<'static, &'static str, Attrs>>> {
        let mut adapters: Vec<Box<dyn Adapter<'static, &'static str, Attrs>>> = Vec::new();
        if self.capabilities.paged_results {
            adapters.push(Box::new(PagedResults::new(self.page_size as i32)));
        }
        adapters
    }

    fn op_error(&self, op: &str, e: LdapError) -> Error {
        let url = self.url.to_string();
        match e {
            LdapError::Timeout { .. } => Error::Timeout {
                op: op.to_string(),
                url,
                secs: self.timeout.as_secs_f64(),
            },
            LdapError::LdapResult { result } => Error::Operation {
                op: op.to_string(),
                url,
                rc: result.rc,
                text: result.text,
            },
            other => Error::ConnectionLost {
                op: op.to_string(),
                url,
                reason: describe(&other),
            },
        }
    }

    /// Ends the session politely; errors are irrelevant at that point.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// The naming context (from the root DSE) that holds `dn`: the longest one it lies within.
fn naming_context_of(naming_contexts: &[String], dn: &Dn) -> Option<String> {
    naming_contexts
        .iter()
        .filter_map(|nc| Dn::parse(nc).ok().map(|parsed| (nc, parsed)))
        .filter(|(_, parsed)| dn == parsed || dn.is_within(parsed))
        .max_by_key(|(nc, _)| nc.len())
        .map(|(nc, _)| nc.clone())
}

enum ConnectError {
    /// Try the next server.
    Unreachable(String),
    /// Stop: the next server would fail the same way.
    Fatal(Error),
}

/// URLs already warned about, so a daemon that reconnects warns once per URL.
static WARNED_INSECURE: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// `allow_insecure` lets the password go in clear text: say so, once per URL per process.
fn warn_insecure_once(url: &str) {
    let first = WARNED_INSECURE
        .lock()
        .map(|mut warned| warned.insert(url.to_string()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            "allow_insecure = true: the bind password is sent in clear text to {url}; use ldaps:// or starttls = true"
        );
    }
}

/// ldap3's error text, reduced to its useful part ("connection refused", "invalid peer
/// certificate: UnknownIssuer").
fn describe(e: &LdapError) -> String {
    match e {
        LdapError::Io { source } => {
            let text = source.to_string();
            match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => text,
            }
        }
        LdapError::Timeout { .. } => "timed out".to_string(),
        other => other.to_string(),
    }
}

/// A rustls client config with the ring provider (the only one in our build) and either the
/// private CA from `ca_file` or the system's roots.
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A malformed system certificate should not stop the others from working.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (set directory.tls_ca_file)".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// ldap3 splits values into UTF-8 `attrs` and binary `bin_attrs`; we keep both as bytes.
fn to_attributes(
    attrs: std::collections::HashMap<String, Vec<String>>,
    bin_attrs: std::collections::HashMap<String, Vec<Vec<u8>>>,
) -> Attributes {
    let mut out = Attributes::new();
    for (name, values) in attrs {
        out.insert(&name, values.into_iter().map(String::into_bytes).collect());
    }
    for (name, values) in bin_attrs {
        out.insert(&name, values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_builds_with_the_ring_provider_from_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["test-ca".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        tls_config(Some(&path)).unwrap();
    }

    #[test]
    fn the_naming_context_of_a_dn_is_the_longest_that_holds_it() {
        let ncs: Vec<String> = [
            "DC=contoso,DC=com",
            "CN=Configuration,DC=contoso,DC=com",
            "CN=Schema,CN=Configuration,DC=contoso,DC=com",
        ]
        .map(String::from)
        .to_vec();
        let of = |dn: &str| naming_context_of(&ncs, &Dn::parse(dn).unwrap());
        assert_eq!(
            of("CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com")
                .as_deref(),
            Some("CN=Configuration,DC=contoso,DC=com")
        );
        assert_eq!(
            of("dc=contoso,dc=com").as_deref(),
            Some("DC=contoso,DC=com")
        );
        assert_eq!(
            of("OU=People,DC=contoso,DC=com").as_deref(),
            Some("DC=contoso,DC=com")
        );
        assert_eq!(of("DC=fabrikam,DC=com"), None);
    }

    #[test]
    fn the_dirsync_probe_value_is_the_ber_of_an_empty_request() {
        // 30 08 (SEQUENCE, 8 bytes) 02 01 00 (flags 0) 02 01 00 (maxBytes 0) 04 00 (cookie "").
        let probe = dirsync::request_value(&[]);
        assert_eq!(probe[1] as usize, probe.len() - 2);
    }

    #[test]
    fn tls_config_reports_a_missing_ca_file() {
        let e = tls_config(Some(std::path::Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            e.starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn errors_render_as_one_line_naming_the_culprit() {
        let e = Error::InvalidCredentials {
            url: "ldap://127.0.0.1:389".into(),
            dn: "cn=admin,dc=contoso,dc=com".into(),
            text:
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 52e\n"
                    .into(),
        };
        assert_eq!(
            e.to_string(),
            "bind as cn=admin,dc=contoso,dc=com to ldap://127.0.0.1:389 failed: invalid credentials (LDAP 49): 80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 52e"
        );
        let e = Error::NoSuchBase {
            what: "base DN",
            dn: "dc=wrong,dc=com".into(),
            url: "ldap://127.0.0.1:389".into(),
            text: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "base DN dc=wrong,dc=com does not exist on ldap://127.0.0.1:389 (LDAP 32)"
        );
        let e = Error::Unreachable {
            attempts: vec![
                Attempt {
                    url: "ldap://127.0.0.1:1".into(),
                    reason: "connection refused".into(),
                },
                Attempt {
                    url: "ldaps://[::1]:2".into(),
                    reason: "timed out".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "no directory server answered: ldap://127.0.0.1:1: connection refused; ldaps://[::1]:2: timed out"
        );
        assert!(!e.to_string().contains('\n'));
        let e = Error::StrongAuthRequired {
            url: "ldap://127.0.0.1:389".into(),
            dn: "CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com".into(),
            text: "BindSimple: Transport encryption required.".into(),
        };
        assert_eq!(
            e.to_string(),
            "bind as CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com to ldap://127.0.0.1:389 refused: the server requires an encrypted connection (LDAP 8, strongerAuthRequired): BindSimple: Transport encryption required.; use ldaps:// or starttls = true"
        );
        assert_eq!(e.rc(), Some(8));
    }
}
