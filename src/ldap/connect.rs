//! Connecting to a directory server: TCP (or TLS), bind, the root DSE and what it says the
//! server can do.
//!
//! [`Directory::connect`] tries each configured URL in order (several DCs), with TLS from our own
//! rustls config (ring provider, private CA or the system roots), and binds. The root DSE is read
//! once per connection and decides the [`Capabilities`] every later operation asks.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, StdStream};
use tokio::time::Instant;
use tracing::{debug, info};

use super::entry::readable;
use super::error::{self, Attempt};
use super::{
    Capabilities, Directory, Error, LiveWatch, Mechanism, describe, describe_io, dirsync, kerberos,
    naming_context_of,
};
use crate::config::{DirectorySettings, LdapScheme, LdapUrl};
use crate::model::{Dn, attr};

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

/// How long a silent peer may go unnoticed when the caller does not say: the default of
/// `[daemon] watch_timeout`.
pub(crate) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// Choices about the connection itself, as opposed to the directory settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// TCP keepalive on every connection: a peer that stays silent this long (a DC that died,
    /// a network that partitioned without a reset) is declared dead by the kernel, and the
    /// operation or watch waiting on it fails instead of hanging. The kernel probes an idle
    /// connection after half of it, then three times at a sixth of it; a write left
    /// unacknowledged this long fails too (`TCP_USER_TIMEOUT`). Whole seconds, one at least.
    pub keepalive: Duration,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            keepalive: DEFAULT_KEEPALIVE,
        }
    }
}

impl Directory {
    /// [`Directory::connect_with`] the default [`ConnectOptions`].
    pub async fn connect(settings: &DirectorySettings) -> Result<Directory, Error> {
        Directory::connect_with(settings, &ConnectOptions::default()).await
    }

    /// Connects to the first URL that answers, binds, and reads the root DSE.
    ///
    /// A bind failure (wrong password) is returned at once: trying the next DC with the same
    /// credentials would only risk locking the account.
    pub async fn connect_with(
        settings: &DirectorySettings,
        options: &ConnectOptions,
    ) -> Result<Directory, Error> {
        let mut attempts = Vec::new();
        for url in &settings.urls {
            match Directory::connect_one(url, settings, options).await {
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

    /// One server: the transport (TLS as configured), the bind, the root DSE. From the moment
    /// the driver runs it belongs to a `Directory`, whose `Drop` aborts it, so every early
    /// return below leaves no task behind.
    pub(super) async fn connect_one(
        url: &LdapUrl,
        settings: &DirectorySettings,
        options: &ConnectOptions,
    ) -> Result<Directory, ConnectError> {
        check_bind_transport(url, settings)?;
        let (conn, ldap) = open(url, settings, options).await?;
        let mut dir = Directory::start(conn, ldap, url, settings);
        dir.bind(settings).await?;
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

    /// Spawns the connection's driver and wraps both halves; anonymous, with no root DSE yet.
    fn start(
        conn: LdapConnAsync,
        ldap: ldap3::Ldap,
        url: &LdapUrl,
        settings: &DirectorySettings,
    ) -> Directory {
        let driver_url = url.to_string();
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(url = %driver_url, error = %e, "LDAP connection ended");
            }
        });
        Directory {
            ldap,
            url: url.clone(),
            timeout: settings.timeout,
            page_size: settings.page_size,
            bound_as: None,
            mechanism: None,
            root_dse: RootDse::default(),
            capabilities: Capabilities::detect(&RootDse::default()),
            driver,
        }
    }

    /// The Kerberos bind (`auth = "gssapi"`) or the simple bind, when credentials are
    /// configured. Every refusal is fatal: the next DC would refuse the same credentials (and
    /// retrying risks locking the account); only a connection lost on the way tries the next.
    async fn bind(&mut self, settings: &DirectorySettings) -> Result<(), ConnectError> {
        if let Some(keytab) = &settings.kerberos {
            let tls = self.url.scheme == LdapScheme::Ldaps
                || (settings.starttls && self.url.scheme == LdapScheme::Ldap);
            return match kerberos::bind(&mut self.ldap, &self.url, tls, keytab, settings.timeout)
                .await
            {
                Ok(how) => {
                    self.bound_as = Some(keytab.principal.clone());
                    self.mechanism = Some(how);
                    Ok(())
                }
                Err(e @ Error::ConnectionLost { .. }) => {
                    Err(ConnectError::Unreachable(e.to_string()))
                }
                Err(e) => Err(ConnectError::Fatal(e)),
            };
        }
        let Some(bind) = &settings.bind else {
            return Ok(());
        };
        let dn = bind.dn.as_str().to_string();
        let result = self
            .ldap
            .with_timeout(settings.timeout)
            .simple_bind(&dn, bind.password.expose())
            .await
            .map_err(|e| ConnectError::Unreachable(describe(&e)))?;
        let url = self.url.to_string();
        let refused = match result {
            LdapResult { rc: 0, .. } => {
                self.bound_as = Some(dn);
                self.mechanism = Some(Mechanism::Simple);
                return Ok(());
            }
            LdapResult { rc: 49, text, .. } => Error::InvalidCredentials {
                url,
                dn,
                text,
                password: bind.password_source.to_string(),
            },
            LdapResult { rc: 8, text, .. } => Error::StrongAuthRequired { url, dn, text },
            LdapResult { rc, text, .. } => Error::Bind { url, dn, rc, text },
        };
        Err(ConnectError::Fatal(refused))
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
        let Some(e) = readable(&entries).next() else {
            return Ok(RootDse::default());
        };
        let get = |name: &str| e.texts(name).map(str::to_string).collect::<Vec<_>>();
        let first = |name: &str| e.first_text(name).map(str::to_string);
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
    /// On Active Directory the schema naming context is read instead (see
    /// [`Directory::missing_from_schema_nc`]).
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
        let definitions: Vec<String> = readable(&entries)
            .flat_map(|e| e.texts("attributeTypes"))
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
}

#[derive(Debug)]
pub(super) enum ConnectError {
    /// Try the next server.
    Unreachable(String),
    /// Stop: the next server would fail the same way.
    Fatal(Error),
}

/// Refuses a simple bind that would send the password in clear to another host. Checked at
/// config load too; repeated here so no caller can bypass it.
fn check_bind_transport(url: &LdapUrl, settings: &DirectorySettings) -> Result<(), ConnectError> {
    let clear = settings.bind.is_some()
        && url.scheme == LdapScheme::Ldap
        && !settings.starttls
        && !url.is_loopback();
    if !clear {
        return Ok(());
    }
    if !settings.allow_insecure {
        return Err(ConnectError::Fatal(Error::InsecureBind {
            url: url.to_string(),
        }));
    }
    warn_insecure_once(&url.to_string());
    Ok(())
}

/// Opens the transport: TCP with keepalive, then TLS for ldaps:// or StartTLS, with our own
/// rustls config. `settings.timeout` bounds all of it.
async fn open(
    url: &LdapUrl,
    settings: &DirectorySettings,
    options: &ConnectOptions,
) -> Result<(LdapConnAsync, ldap3::Ldap), ConnectError> {
    let shown = url.to_string();
    let starttls = settings.starttls && url.scheme == LdapScheme::Ldap;
    let deadline = Instant::now() + settings.timeout;
    let stream = tcp_stream(url, options, settings.timeout).await?;
    let stream = stream
        .into_std()
        .map_err(|e| ConnectError::Unreachable(describe_io(&e)))?;
    // ldap3 takes the stream as it is and still follows the URL's scheme for TLS and StartTLS
    // (and the host name for the certificate check); the timeout left covers the handshake.
    let mut conn_settings = LdapConnSettings::new()
        .set_std_stream(StdStream::Tcp(stream))
        .set_conn_timeout(deadline.saturating_duration_since(Instant::now()));
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
    LdapConnAsync::with_settings(conn_settings, &shown)
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
        })
}

/// A TCP connection to `url`'s host and port (each address it resolves to, in turn), with
/// keepalive set from `options`.
async fn tcp_stream(
    url: &LdapUrl,
    options: &ConnectOptions,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let connect = tokio::net::TcpStream::connect((url.host.as_str(), url.port));
    let stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ConnectError::Unreachable(describe_io(&e))),
        Err(_) => return Err(ConnectError::Unreachable("timed out".to_string())),
    };
    set_keepalive(&stream, options.keepalive)
        .map_err(|e| ConnectError::Unreachable(format!("setting TCP keepalive: {e}")))?;
    Ok(stream)
}

/// Keepalive probes after `silence / 2`, then three at `silence / 6`; writes time out after
/// `silence`. See [`ConnectOptions::keepalive`].
fn set_keepalive(stream: &tokio::net::TcpStream, silence: Duration) -> std::io::Result<()> {
    let at_least_a_second = |d: Duration| Duration::from_secs(d.as_secs().max(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(at_least_a_second(silence / 2))
        .with_interval(at_least_a_second(silence / 6))
        .with_retries(3);
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(at_least_a_second(silence)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_has_tcp_keepalive_from_the_options() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = LdapUrl::parse(&format!("ldap://{}", listener.local_addr().unwrap())).unwrap();
        let options = ConnectOptions {
            keepalive: Duration::from_secs(30),
        };
        let stream = tcp_stream(&url, &options, Duration::from_secs(5))
            .await
            .unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        // Probed after 15 s of silence, then every 5 s, dropped after 3 unanswered probes: a
        // dead peer is noticed after 30 s, and an unacknowledged write fails after 30 s too.
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(15)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(30))
        );
        // Never below the kernel's one-second granularity.
        let short = ConnectOptions {
            keepalive: Duration::from_millis(10),
        };
        let stream = tcp_stream(&url, &short, Duration::from_secs(5))
            .await
            .unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(1));
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn a_refused_tcp_connect_says_so_in_the_ldap_wording() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = LdapUrl::parse(&format!("ldap://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let e = tcp_stream(&url, &ConnectOptions::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(&e, ConnectError::Unreachable(r) if r == "connection refused"));
    }

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
    fn tls_config_reports_a_missing_ca_file() {
        let e = tls_config(Some(std::path::Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            e.starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
