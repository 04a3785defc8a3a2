//! Kerberos binds (SASL GSSAPI) with a keytab, as estates that forbid simple binds require.
//!
//! The service principal is `ldap/<server name>`, so a URL must name the DC by its DNS name: an
//! IP address is refused before anything is sent. Over ldaps or StartTLS, ldap3 uses Kerberos
//! for authentication only and sends the `tls-server-end-point` channel binding that AD's
//! `LdapEnforceChannelBinding` asks for; over plain `ldap://` it negotiates Kerberos' privacy
//! layer, so the whole session is sealed. MIT Kerberos reads the client keytab from the
//! process environment only ([`CLIENT_KEYTAB_ENV`]); [`process_env`] says what the environment
//! must hold, and the command line starts pcsync again with it when it does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cross_krb5::{Cred, InitiateFlags, K5Cred};
use ldap3::{Ldap, LdapError, LdapResult};

use super::Error;
use super::error::diag;
use crate::blob::{Order, Reader};
use crate::config::LdapUrl;

/// Where MIT Kerberos looks for the client keytab it gets tickets with.
pub(crate) const CLIENT_KEYTAB_ENV: &str = "KRB5_CLIENT_KTNAME";
/// Where MIT Kerberos keeps tickets; pcsync's default keeps them in memory, per process.
pub(crate) const CCACHE_ENV: &str = "KRB5CCNAME";
/// The credential cache pcsync uses unless the environment names one.
const DEFAULT_CCACHE: &str = "MEMORY:pcsync";

/// `directory.auth = "gssapi"`: whose keys, from which keytab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosSettings {
    /// `[directory.kerberos] keytab`, absolute.
    pub keytab: PathBuf,
    /// `[directory.kerberos] principal`, or the keytab's first principal.
    pub principal: String,
}

/// How a connection authenticated, for `pcsync check` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// A simple bind with a DN and password.
    Simple,
    /// Kerberos inside TLS (ldaps or StartTLS), with the channel-binding token.
    GssapiTls,
    /// Kerberos over plain LDAP, the session sealed by Kerberos' privacy layer.
    GssapiSealed,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Simple => "simple bind",
            Mechanism::GssapiTls => {
                "Kerberos (SASL GSSAPI) inside TLS, with tls-server-end-point channel binding"
            }
            Mechanism::GssapiSealed => {
                "Kerberos (SASL GSSAPI) over plain LDAP, the session sealed by Kerberos"
            }
        })
    }
}

/// The environment variables this process must be started with so that MIT Kerberos uses
/// `settings.keytab`, or `None` when `current` (a lookup in the environment) already holds
/// them. The ticket cache stays the administrator's when set, else an in-memory one.
pub(crate) fn process_env(
    settings: &KerberosSettings,
    current: impl Fn(&str) -> Option<String>,
) -> Option<Vec<(&'static str, String)>> {
    let keytab = format!("FILE:{}", settings.keytab.display());
    let mut missing = Vec::new();
    if current(CLIENT_KEYTAB_ENV).as_deref() != Some(keytab.as_str()) {
        missing.push((CLIENT_KEYTAB_ENV, keytab));
    }
    if current(CCACHE_ENV).is_none_or(|v| v.is_empty()) {
        missing.push((CCACHE_ENV, DEFAULT_CCACHE.to_string()));
    }
    (!missing.is_empty()).then_some(missing)
}

/// Refuses a URL whose host is an IP address: the service principal is `ldap/<DNS name>`.
pub(crate) fn require_host_name(url: &LdapUrl) -> Result<(), String> {
    if url.host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{url}: Kerberos needs the server's DNS name, not an IP address (its service \
             principal is ldap/<DNS name>); name the DC, e.g. {}://dc1.contoso.com:{}",
            match url.scheme {
                crate::config::LdapScheme::Ldap => "ldap",
                crate::config::LdapScheme::Ldaps => "ldaps",
            },
            url.port
        ));
    }
    Ok(())
}

/// Binds `ldap` (connected to `url`, with TLS or not) as `settings.principal`.
pub(super) async fn bind(
    ldap: &mut Ldap,
    url: &LdapUrl,
    tls: bool,
    settings: &KerberosSettings,
    timeout: Duration,
) -> Result<Mechanism, Error> {
    let shown = url.to_string();
    let fail = |reason: String| Error::Kerberos {
        url: shown.clone(),
        principal: settings.principal.clone(),
        reason,
    };
    require_host_name(url).map_err(&fail)?;
    // Reads the keytab and may ask a KDC for a ticket: blocking calls, kept off the runtime.
    let principal = settings.principal.clone();
    let cred = tokio::task::spawn_blocking(move || {
        Cred::client_acquire(InitiateFlags::empty(), Some(&principal))
    })
    .await
    .map_err(|e| fail(format!("acquiring credentials: {e}")))?
    .map_err(|e| {
        fail(format!(
            "no credentials for the keytab's keys: {}",
            one_line(&e)
        ))
    })?;
    let res = ldap
        .with_timeout(timeout)
        .sasl_gssapi_cred_bind(cred, &url.host)
        .await;
    match res {
        Ok(LdapResult { rc: 0, .. }) => Ok(if tls {
            Mechanism::GssapiTls
        } else {
            Mechanism::GssapiSealed
        }),
        Ok(LdapResult { rc, text, .. }) => Err(fail(format!(
            "the server refused the bind: LDAP {rc}{}",
            diag(&text)
        ))),
        Err(LdapError::GssapiOperationError(text)) => Err(fail(one_line(&text))),
        Err(e) => Err(Error::ConnectionLost {
            op: "Kerberos bind".to_string(),
            url: shown,
            reason: e.to_string(),
        }),
    }
}

/// GSSAPI messages span lines ("Unspecified GSS failure ... \n Server not found ..."): keep
/// them on one.
fn one_line(text: &impl std::fmt::Display) -> String {
    text.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first principal in the keytab at `path` (`name/instance@REALM`).
pub(crate) fn first_principal(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    keytab_principals(&bytes)
        .map_err(|e| format!("{}: not a keytab: {e}", path.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: the keytab holds no keys", path.display()))
}

/// Every principal of a keytab, in file order, each once. The MIT format: `0x05`, a version
/// (1: native byte order with the realm counted among the components; 2: big-endian), then
/// entries, each a signed 32-bit length (negative: a hole to skip) and the entry.
pub(crate) fn keytab_principals(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut r = Reader::new(bytes);
    if r.u8()? != 5 {
        return Err("it does not start with 0x05".to_string());
    }
    let version = r.u8()?;
    // Version 1 is in the writer's byte order; every platform we run on is little-endian.
    let order = match version {
        1 => Order::Little,
        2 => Order::Big,
        v => return Err(format!("unknown keytab version {v}")),
    };
    let mut principals: Vec<String> = Vec::new();
    while !r.is_done() {
        let size = r.u32(order)? as i32;
        if size < 0 {
            r.skip(size.unsigned_abs() as usize)?;
            continue;
        }
        let end = r.position() + size as usize;
        let mut count = r.u16(order)? as usize;
        if version == 1 {
            count = count.saturating_sub(1);
        }
        let realm = counted(&mut r, order)?;
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            parts.push(counted(&mut r, order)?);
        }
        let principal = format!("{}@{realm}", parts.join("/"));
        if !principals.contains(&principal) {
            principals.push(principal);
        }
        r.seek(end)
            .map_err(|_| "an entry runs past the end of the file".to_string())?;
    }
    Ok(principals)
}

/// A name component: a 16-bit length and that many bytes of UTF-8.
fn counted(r: &mut Reader<'_>, order: Order) -> Result<String, String> {
    let len = r.u16(order)? as usize;
    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 keytab entry for `parts@realm` with one dummy key.
    fn entry(realm: &str, parts: &[&str]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend((parts.len() as u16).to_be_bytes());
        for s in std::iter::once(&realm).chain(parts) {
            e.extend((s.len() as u16).to_be_bytes());
            e.extend(s.as_bytes());
        }
        e.extend(1u32.to_be_bytes()); // name type
        e.extend(0u32.to_be_bytes()); // timestamp
        e.push(2); // kvno
        e.extend(18u16.to_be_bytes()); // aes256
        e.extend(4u16.to_be_bytes());
        e.extend([1, 2, 3, 4]);
        let mut framed = (e.len() as i32).to_be_bytes().to_vec();
        framed.extend(e);
        framed
    }

    #[test]
    fn the_keytab_principals_are_read_in_order_once_each() {
        let mut keytab = vec![5, 2];
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        // A hole left by a removed entry.
        keytab.extend((-3i32).to_be_bytes());
        keytab.extend([0, 0, 0]);
        keytab.extend(entry("CONTOSO.COM", &["HTTP", "web.contoso.com"]));
        assert_eq!(
            keytab_principals(&keytab).unwrap(),
            ["svc-pcsync@CONTOSO.COM", "HTTP/web.contoso.com@CONTOSO.COM"]
        );
    }

    #[test]
    fn a_damaged_keytab_is_an_error_not_a_panic() {
        assert!(keytab_principals(b"").is_err());
        assert!(
            keytab_principals(b"\x05\x09")
                .unwrap_err()
                .contains("version 9")
        );
        let mut keytab = vec![5, 2];
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        for cut in 3..keytab.len() {
            // Every truncation either parses the entries before it or says where it broke.
            let _ = keytab_principals(&keytab[..cut]);
        }
        keytab[5] = 0xff; // a length far past the end
        assert!(keytab_principals(&keytab).is_err());
        assert_eq!(keytab_principals(&[5, 2]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_ip_address_is_refused_naming_the_fix() {
        let url = LdapUrl::parse("ldaps://127.0.0.2:636").unwrap();
        assert_eq!(
            require_host_name(&url).unwrap_err(),
            "ldaps://127.0.0.2:636: Kerberos needs the server's DNS name, not an IP address \
             (its service principal is ldap/<DNS name>); name the DC, e.g. \
             ldaps://dc1.contoso.com:636"
        );
        assert!(require_host_name(&LdapUrl::parse("ldap://[::1]").unwrap()).is_err());
        assert!(require_host_name(&LdapUrl::parse("ldap://dc2.contoso.com").unwrap()).is_ok());
    }

    #[test]
    fn the_environment_is_asked_for_only_when_it_differs() {
        let settings = KerberosSettings {
            keytab: PathBuf::from("/etc/pcsync/pcsync.keytab"),
            principal: "svc-pcsync@CONTOSO.COM".into(),
        };
        let empty = |_: &str| None;
        assert_eq!(
            process_env(&settings, empty).unwrap(),
            [
                (
                    CLIENT_KEYTAB_ENV,
                    "FILE:/etc/pcsync/pcsync.keytab".to_string()
                ),
                (CCACHE_ENV, DEFAULT_CCACHE.to_string())
            ]
        );
        let set = |k: &str| match k {
            CLIENT_KEYTAB_ENV => Some("FILE:/etc/pcsync/pcsync.keytab".to_string()),
            CCACHE_ENV => Some("FILE:/run/pcsync/ccache".to_string()),
            _ => None,
        };
        assert_eq!(process_env(&settings, set), None);
        let other = |k: &str| match k {
            CLIENT_KEYTAB_ENV => Some("FILE:/tmp/other.keytab".to_string()),
            CCACHE_ENV => Some("FILE:/run/pcsync/ccache".to_string()),
            _ => None,
        };
        assert_eq!(
            process_env(&settings, other).unwrap(),
            [(
                CLIENT_KEYTAB_ENV,
                "FILE:/etc/pcsync/pcsync.keytab".to_string()
            )]
        );
    }
}
