//! Directory errors: one variant per thing an administrator can act on, each rendering as one
//! line that names the server, DN or attribute at fault. LDAP result codes and the server's
//! diagnostic text (AD's `0000202B: ...` included) are kept verbatim.

use std::fmt;

/// A failed directory operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No configured server could be reached; each attempt is listed.
    #[error("no directory server answered: {}", .attempts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unreachable { attempts: Vec<Attempt> },
    /// The server rejected the bind DN or password (LDAP 49). `password` says where the
    /// password came from and its length, never the password.
    #[error("bind as {dn} to {url} failed: invalid credentials (LDAP 49){}; the password was {password}", diag(.text))]
    InvalidCredentials {
        url: String,
        dn: String,
        text: String,
        password: String,
    },
    /// The server refuses simple binds without TLS (AD: LDAP 8, "BindSimple: Transport
    /// encryption required."). Retrying another DC over the same scheme would fail the same way.
    #[error("bind as {dn} to {url} refused: the server requires an encrypted connection (LDAP 8, strongerAuthRequired){}; use ldaps:// or starttls = true", diag(.text))]
    StrongAuthRequired {
        url: String,
        dn: String,
        text: String,
    },
    /// The bind failed for another reason.
    #[error("bind as {dn} to {url} failed: LDAP {rc}{}", diag(.text))]
    Bind {
        url: String,
        dn: String,
        rc: u32,
        text: String,
    },
    /// A Kerberos (SASL GSSAPI) bind failed: no usable keys in the keytab, a KDC or service
    /// principal problem, or the server refused; the reason is MIT Kerberos' or the server's.
    #[error("Kerberos bind as {principal} to {url} failed: {reason}")]
    Kerberos {
        url: String,
        principal: String,
        reason: String,
    },
    /// A plain-text simple bind to a non-loopback host, refused before sending the password.
    #[error(
        "refusing a simple bind over unencrypted {url}: use ldaps://, starttls = true, or allow_insecure = true"
    )]
    InsecureBind { url: String },
    /// The search base does not exist (LDAP 32).
    #[error("{what} {dn} does not exist on {url} (LDAP 32){}", diag(.text))]
    NoSuchBase {
        what: &'static str,
        dn: String,
        url: String,
        text: String,
    },
    /// The server stopped a search at its size limit (LDAP 4); results would be incomplete.
    #[error("search under {base} on {url} hit the server's size limit (LDAP 4): results would be incomplete; raise the limit for the bind DN or check that paging is allowed{}", diag(.text))]
    SizeLimit {
        base: String,
        url: String,
        text: String,
    },
    /// The schema lacks attributes pcsync needs.
    #[error("{url} has no {} attribute{} in its schema: load schemas/msrtcsip.schema (OpenLDAP) or run Lync schema prep (AD)", .missing.join(", "), if .missing.len() == 1 { "" } else { "s" })]
    SchemaMissing { url: String, missing: Vec<String> },
    /// The server did not answer within the configured timeout.
    #[error("{op} on {url} timed out after {secs:.1}s")]
    Timeout { op: String, url: String, secs: f64 },
    /// The connection broke during an operation.
    #[error("connection to {url} lost during {op}: {reason}")]
    ConnectionLost {
        op: String,
        url: String,
        reason: String,
    },
    /// Any other non-success result code.
    #[error("{op} on {url} failed: LDAP {rc}{}", diag(.text))]
    Operation {
        op: String,
        url: String,
        rc: u32,
        text: String,
    },
    /// A conditional write found the entry different from what the plan saw (LDAP 122
    /// assertionFailed, 16 noSuchAttribute on a value delete, 20 on an add of a value, or a
    /// re-read that no longer matches): someone changed it concurrently; or an add found its DN
    /// taken (68), a name clash. Nothing was written; `reason` says which.
    #[error("{op} of {dn} on {url} refused: {reason}")]
    Conflict {
        op: String,
        dn: String,
        url: String,
        reason: String,
        /// The server's result code; `None` when pcsync's own re-read found the change.
        rc: Option<u32>,
    },
    /// The TLS client configuration could not be built (CA file unreadable).
    #[error("TLS setup for {url}: {reason}")]
    Tls { url: String, reason: String },
}

impl Error {
    /// The LDAP result code, when the server sent one.
    pub(crate) fn rc(&self) -> Option<u32> {
        match self {
            Error::InvalidCredentials { .. } => Some(49),
            Error::StrongAuthRequired { .. } => Some(8),
            Error::NoSuchBase { .. } => Some(32),
            Error::SizeLimit { .. } => Some(4),
            Error::Bind { rc, .. } | Error::Operation { rc, .. } => Some(*rc),
            Error::Conflict { rc, .. } => *rc,
            _ => None,
        }
    }

    /// True when retrying later might help (server down, network trouble), as opposed to a
    /// configuration problem that needs an administrator.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::ConnectionLost { .. }
        )
    }
}

/// One failed connection attempt.
#[derive(Debug)]
pub struct Attempt {
    pub url: String,
    pub reason: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.reason)
    }
}

/// Appends the server's diagnostic text, if any, on the same line.
pub(super) fn diag(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        // Keep it one line whatever the server sent.
        format!(": {}", text.replace(['\r', '\n'], " "))
    }
}
