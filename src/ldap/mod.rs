//! The directory adapter: everything that touches ldap3 lives here.
//!
//! - `connect`: [`Directory::connect`] tries each configured URL in order (several DCs) over TCP
//!   with keepalive, with TLS from our own rustls config (ring provider, private CA or the system
//!   roots), binds, and reads the root DSE, which decides the [`Capabilities`].
//! - `search`: paged (RFC 2696), streamed searches; entries reach a callback one at a time, so
//!   memory stays bounded by the page size. Continuation references (AD sends them for other
//!   naming contexts) are counted and ignored, never chased, and every search checks its final
//!   result code, so a size limit is an error rather than a silently short answer.
//! - `entry`: entries read in place from ldap3's raw BER; a DN or value that is not UTF-8, or an
//!   entry of the wrong shape, becomes a finding. Nothing here panics on server data.
//! - `kerberos`: the SASL GSSAPI bind with a keytab; `lookup`: small binary-safe reads and a
//!   connection to one named server with no fail-over, for the estate module.
//! - `write`: conditional writes; `dirsync`, `syncrepl` and `usn`: the three change feeds.

mod capabilities;
mod connect;
mod dirsync;
mod entry;
mod error;
mod kerberos;
mod lookup;
mod search;
mod syncrepl;
mod usn;
mod write;

pub(crate) use capabilities::oid;
pub use capabilities::{Capabilities, ConditionalWrites, LiveWatch};
pub use connect::{ConnectOptions, RootDse};
pub use error::Error;
pub(crate) use kerberos::{Mechanism, process_env};
pub(crate) use search::Search;
pub use search::SearchStats;
pub(crate) use syncrepl::{SyncEnd, SyncEvent};
pub(crate) use usn::{UsnListing, UsnMark};

use std::time::Duration;

use ldap3::LdapError;

use crate::config::LdapUrl;
use crate::model::Dn;

/// Filter for every object that has a SIP address.
pub(crate) const SIP_ENABLED_FILTER: &str = "(msRTCSIP-PrimaryUserAddress=*)";

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
pub(crate) fn naming_context_of(naming_contexts: &[String], dn: &Dn) -> Option<String> {
    naming_contexts
        .iter()
        .filter_map(|nc| Dn::parse(nc).ok().map(|parsed| (nc, parsed)))
        .filter(|(_, parsed)| dn == parsed || dn.is_within(parsed))
        .max_by_key(|(nc, _)| nc.len())
        .map(|(nc, _)| nc.clone())
}

/// ldap3's error text, reduced to its useful part ("connection refused", "invalid peer
/// certificate: UnknownIssuer").
fn describe(e: &LdapError) -> String {
    match e {
        LdapError::Io { source } => describe_io(source),
        LdapError::Timeout { .. } => "timed out".to_string(),
        other => other.to_string(),
    }
}

/// An I/O error as [`describe`] words it.
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::error::Attempt;
    use super::*;

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
    fn errors_render_as_one_line_naming_the_culprit() {
        let e = Error::InvalidCredentials {
            url: "ldap://127.0.0.1:389".into(),
            dn: "cn=admin,dc=contoso,dc=com".into(),
            text:
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 52e\n"
                    .into(),
            password: "the first line of password file /etc/pcsync/bind.pw (12 bytes)".into(),
        };
        assert_eq!(
            e.to_string(),
            "bind as cn=admin,dc=contoso,dc=com to ldap://127.0.0.1:389 failed: invalid credentials (LDAP 49): 80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 52e; the password was the first line of password file /etc/pcsync/bind.pw (12 bytes)"
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
