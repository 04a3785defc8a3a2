//! Single values: their types (a URL, a secret, a rate limit) and their parsers, each one
//! string in and one typed value or one message out.
//!
//! Each message reads well after "KEY: " (the issue line names the key and its origin) and
//! quotes the offending text, never a secret. Durations, times and cron expressions have their
//! own module, `time`. Nothing here knows about sections or the environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::time::parse_duration_within;
use crate::model::Dn;

/// A secret string. `Debug` and `Display` print a placeholder; read it with [`Secret::expose`].
/// Two secrets are equal when their values are.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(«redacted»)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

/// Where a password came from, and how long it was: what an administrator needs to find out
/// why the server refused it, without the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswordSource {
    /// `password file /etc/pcsync/bind.pw` or `environment variable PCSYNC_BIND_PASSWORD`.
    origin: String,
    /// The password's length in bytes (UTF-8).
    bytes: usize,
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the first line of {} ({} bytes)",
            self.origin, self.bytes
        )
    }
}

/// `rate_limit = "N/DURATION"`: at most N messages per source IP per DURATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitSettings {
    pub requests: u32,
    pub window: Duration,
}

/// `ldap` or `ldaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LdapScheme {
    Ldap,
    Ldaps,
}

/// One directory server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LdapUrl {
    pub scheme: LdapScheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl LdapUrl {
    pub(crate) fn parse(text: &str) -> Result<LdapUrl, String> {
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(text, "ldaps://") {
            (LdapScheme::Ldaps, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "ldap://") {
            (LdapScheme::Ldap, rest)
        } else {
            return Err(format!("{text:?} is not an ldap:// or ldaps:// URL"));
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        if hostport.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{text:?}: only scheme://host[:port] is supported (no path, query or user info)"
            ));
        }
        let default_port = match scheme {
            LdapScheme::Ldap => 389,
            LdapScheme::Ldaps => 636,
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unclosed `[` in IPv6 address"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').unwrap_or(p), text)?,
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), parse_port(port, text)?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        {
            return Err(format!("{text:?}: invalid host {host:?}"));
        }
        Ok(LdapUrl { scheme, host, port })
    }

    /// True for 127.0.0.0/8, ::1 and `localhost`: the only places a plain-text bind may go.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for LdapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            LdapScheme::Ldap => "ldap",
            LdapScheme::Ldaps => "ldaps",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn parse_port(text: &str, url: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{url:?}: invalid port {text:?}")),
    }
}

pub(super) fn parse_dn(text: &str) -> Result<Dn, String> {
    Dn::parse(text).map_err(|e| format!("{text:?} is not a valid DN: {e}"))
}

/// A DN, or "" for none.
pub(super) fn parse_optional_dn(text: &str) -> Result<Option<Dn>, String> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        parse_dn(text).map(Some)
    }
}

pub(super) fn parse_fqdn(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a host name (expected e.g. pcpool.contoso.com)"
        ))
    }
}

/// `host:port` socket address, or "" for off.
pub(super) fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse::<SocketAddr>().map(Some).map_err(|_| {
        format!("{text:?} is not a socket address (expected IP:PORT such as 127.0.0.1:5060 or [::1]:5060, or \"\" for off)")
    })
}

pub(super) fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        Err("path is empty".to_string())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Smallest and largest `audit.max_segment_size`.
const SEGMENT_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 40);

/// A size in bytes: a bare number, or with a unit `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or
/// `KB`, `MB`, `GB` (powers of 1000).
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 64MiB, 500KB or bytes)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (expected B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(factor)
        .filter(|b| SEGMENT_SIZE_RANGE.contains(b))
        .ok_or_else(|| format!("{text:?} is out of range (1KiB..=1024GiB)"))?;
    Ok(bytes)
}

/// `"off"`, `""`, or `N/DURATION` such as `200/1s`.
pub(super) fn parse_rate_limit(text: &str) -> Result<Option<RateLimitSettings>, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        format!("{text:?} is not a rate limit (expected \"off\" or N/DURATION, e.g. \"200/1s\")")
    };
    let (n, window) = t.split_once('/').ok_or_else(bad)?;
    let requests = n
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(bad)?;
    let window = parse_duration_within(
        window,
        Duration::from_millis(10)..=Duration::from_secs(3600),
    )?;
    Ok(Some(RateLimitSettings { requests, window }))
}

/// A PEM file holding at least one certificate; `what` names it in messages ("CA file").
fn check_pem_certificates(text: &str, what: &str) -> Result<PathBuf, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let path = PathBuf::from(text);
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read {what} {text}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {text} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {text} holds no PEM certificate"));
    }
    Ok(path)
}

pub(super) fn check_ca_file(text: &str) -> Result<PathBuf, String> {
    check_pem_certificates(text, "CA file")
}

pub(super) fn check_pem_certificate(text: &str) -> Result<PathBuf, String> {
    check_pem_certificates(text, "certificate file")
}

pub(super) fn check_pem_key(text: &str) -> Result<PathBuf, String> {
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let path = PathBuf::from(text);
    PrivateKeyDer::from_pem_file(&path)
        .map_err(|e| format!("cannot read a PEM private key from {text}: {e}"))?;
    Ok(path)
}

pub(super) fn read_password_file(path: &Path) -> Result<(Secret, PasswordSource), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    password_from(&text, format!("password file {}", path.display()))
}

/// The password in `text`, a file's contents or a variable's value, from `origin`. One rule for
/// both: the first line, without its line ending (LF or CRLF) and without a leading UTF-8 byte
/// order mark (Notepad writes one); anything after the first line is ignored. Spaces are kept:
/// they may be part of the password.
pub(super) fn password_from(
    text: &str,
    origin: String,
) -> Result<(Secret, PasswordSource), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line = text.split('\n').next().unwrap_or_default();
    let password = line.strip_suffix('\r').unwrap_or(line);
    if password.is_empty() {
        return Err(format!(
            "the first line of {origin} is empty (the password is the first line)"
        ));
    }
    let source = PasswordSource {
        origin,
        bytes: password.len(),
    };
    Ok((Secret::new(password.to_string()), source))
}

/// A list of objectClass names: letters, digits and hyphens, at least one.
pub(super) fn is_attr_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(super) fn parse_owner_urn(text: &str) -> Result<String, String> {
    if text.len() > 4
        && text
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        && !text.contains(char::is_whitespace)
    {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a URN (expected urn:…, e.g. urn:application:persistentchat)"
        ))
    }
}

/// Text of at most `max` bytes with no control characters, trimmed; `what` names it.
fn printable(text: &str, max: usize, what: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > max || t.chars().any(char::is_control) {
        Err(format!(
            "{t:?} is not {what} (1 to {max} characters, no control characters)"
        ))
    } else {
        Ok(t.to_string())
    }
}

pub(super) fn parse_display_name(text: &str) -> Result<String, String> {
    printable(text, 256, "a display name")
}

pub(super) fn parse_instance_id(text: &str) -> Result<String, String> {
    printable(text, 200, "an instance id")
}

pub(super) fn parse_server_header(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a usable Server header (1 to 128 printable ASCII characters)"
        ))
    }
}
