//! Single values: their types (a URL, a secret, a rate limit) and their parsers, each one
//! string in and one typed value or one message out.
//!
//! Each message reads well after "KEY: " (the issue line names the key and its origin) and
//! quotes the offending text, never a secret. The duration grammar here is the only one in
//! pcsync: configuration keys and command-line arguments (`probe --timeout`, `audit list
//! --since 7d`) both use it. Nothing here knows about sections or the environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::Dn;

pub(crate) use crate::schedule::DEFAULT_CRON;

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

/// pcsync's one duration grammar, for configuration keys and command-line arguments alike: a
/// whole number and a unit, `ms`, `s`, `m`, `h`, `d` or `w` (`500ms`, `10s`, `7d`); a bare
/// number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 500ms, 10s, 5m, 1h)"))?;
    let seconds = |factor: u64| Duration::from_secs(n.saturating_mul(factor));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        "d" => Ok(seconds(86_400)),
        "w" => Ok(seconds(7 * 86_400)),
        u => Err(format!(
            "{text:?}: unknown unit {u:?} (expected ms, s, m, h, d or w)"
        )),
    }
}

/// [`parse_duration`], refused outside `range`.
pub(crate) fn parse_duration_within(
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !range.contains(&d) {
        return Err(format!(
            "{text:?} is out of range ({:?}..={:?})",
            range.start(),
            range.end()
        ));
    }
    Ok(d)
}

/// A point in time given on the command line (`--since`, `--until`): RFC 3339
/// (`2026-11-24T08:00:00Z`, `…+01:00`) or an age before `now` in the duration grammar (`30m`,
/// `2h`, `7d`).
pub(crate) fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-24T08:00:00Z) or an age (30m, 2h, 7d)"
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let age = chrono::Duration::from_std(parse_duration(t)?).map_err(|_| too_large())?;
    now.checked_sub_signed(age).ok_or_else(too_large)
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

pub(super) fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!("password file {} is empty", path.display()));
    }
    Ok(Secret::new(password.to_string()))
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

pub(super) fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-05T22:00:00Z): {e}"))
}

/// Checks a cron expression the way the scheduler will read it ([`crate::schedule::Cron`]).
pub(crate) fn validate_cron(text: &str) -> Result<(), String> {
    crate::schedule::Cron::parse(text).map(|_| ())
}
