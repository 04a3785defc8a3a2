//! Kerberos binds (SASL GSSAPI) with a keytab, as estates that forbid simple binds require.
//!
//! The service principal is `ldap/<server name>`, so a URL must name the DC by its DNS name: an
//! IP address is refused before anything is sent. Over ldaps or StartTLS, ldap3 uses Kerberos
//! for authentication only and sends the `tls-server-end-point` channel binding that AD's
//! `LdapEnforceChannelBinding` asks for; over plain `ldap://` it negotiates Kerberos' privacy
//! layer, so the whole session is sealed. MIT Kerberos reads the client keytab from the
//! process environment only ([`CLIENT_KEYTAB_ENV`]); [`process_env`] says what the environment
//! must hold, and the command line starts pcsync again with it when it does not.

use std::time::Duration;

use cross_krb5::{Cred, InitiateFlags, K5Cred};
use ldap3::{Ldap, LdapError, LdapResult};

use super::Error;
use super::error::diag;
use crate::config::{KerberosSettings, LdapUrl, require_host_name};

/// Where MIT Kerberos looks for the client keytab it gets tickets with.
pub(crate) const CLIENT_KEYTAB_ENV: &str = "KRB5_CLIENT_KTNAME";
/// Where MIT Kerberos keeps tickets; pcsync's default keeps them in memory, per process.
pub(crate) const CCACHE_ENV: &str = "KRB5CCNAME";
/// The credential cache pcsync uses unless the environment names one.
const DEFAULT_CCACHE: &str = "MEMORY:pcsync";

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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

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
