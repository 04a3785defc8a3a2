//! `SipUri`: a SIP address as Active Directory stores it in `msRTCSIP-PrimaryUserAddress`.
//!
//! AD compares these values case-insensitively, so equality, ordering and hashing use the
//! lower-cased form, while `as_str` keeps the text exactly as the directory held it. Only the
//! `sip:user@host` shape of a primary user address is accepted: no parameters, headers, port,
//! display name or whitespace. The redirector matches a Request-URI by building a `SipUri` from
//! its user and host parts, which is how "parameters and port are ignored" is implemented.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a text is not a SIP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipUriError {
    /// The value is empty or only whitespace.
    #[error("empty SIP address")]
    Empty,
    /// The value does not start with `sip:`.
    #[error("missing `sip:` scheme")]
    MissingScheme,
    /// There is no `user@` part.
    #[error("missing user part (expected sip:user@domain)")]
    MissingUser,
    /// There is nothing after `@`.
    #[error("missing host part (expected sip:user@domain)")]
    MissingHost,
    /// A character that a primary SIP address never holds.
    #[error("unexpected character {0:?}")]
    BadChar(char),
    /// Longer than any address AD would store.
    #[error("longer than {MAX_SIP_URI_LEN} bytes")]
    TooLong,
}

/// AD's `msRTCSIP-PrimaryUserAddress` has rangeUpper 454; we allow some slack over that.
pub const MAX_SIP_URI_LEN: usize = 512;

/// A `sip:user@host` address, compared case-insensitively.
#[derive(Clone)]
pub struct SipUri {
    /// The text as given, with the scheme normalised to `sip:`.
    original: String,
    /// Lower-cased `original`; the identity of the address.
    key: String,
    /// Byte offset of `@` in both strings (lower-casing ASCII and most text keeps offsets; we
    /// recompute per string to be safe with non-ASCII).
    at_original: usize,
    at_key: usize,
}

impl SipUri {
    /// Parses a primary SIP address. The scheme is matched case-insensitively.
    pub fn parse(text: &str) -> Result<SipUri, SipUriError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SipUriError::Empty);
        }
        if text.len() > MAX_SIP_URI_LEN {
            return Err(SipUriError::TooLong);
        }
        let rest = match text.get(..4) {
            Some(scheme) if scheme.eq_ignore_ascii_case("sip:") => &text[4..],
            _ => return Err(SipUriError::MissingScheme),
        };
        let (user, host) = rest.split_once('@').ok_or(SipUriError::MissingUser)?;
        SipUri::from_parts(user, host)
    }

    /// Builds `sip:{user}@{host}` from parts already split, checking each.
    pub fn from_parts(user: &str, host: &str) -> Result<SipUri, SipUriError> {
        if user.is_empty() {
            return Err(SipUriError::MissingUser);
        }
        if host.is_empty() {
            return Err(SipUriError::MissingHost);
        }
        if let Some(c) = user.chars().find(|c| !is_user_char(*c)) {
            return Err(SipUriError::BadChar(c));
        }
        if let Some(c) = host.chars().find(|c| !is_host_char(*c)) {
            return Err(SipUriError::BadChar(c));
        }
        let original = format!("sip:{user}@{host}");
        if original.len() > MAX_SIP_URI_LEN {
            return Err(SipUriError::TooLong);
        }
        let key = original.to_lowercase();
        let at_original = 4 + user.len();
        let at_key = key.rfind('@').unwrap_or(at_original);
        Ok(SipUri {
            original,
            key,
            at_original,
            at_key,
        })
    }

    /// The address as the directory or config wrote it (scheme normalised to `sip:`).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The lower-cased form used for comparison and as a map key.
    pub fn normalized(&self) -> &str {
        &self.key
    }

    /// The user part as written, e.g. `OCSChat`.
    pub fn user(&self) -> &str {
        &self.original[4..self.at_original]
    }

    /// The host (SIP domain) part as written.
    pub fn host(&self) -> &str {
        &self.original[self.at_original + 1..]
    }

    /// The lower-cased user part.
    pub fn user_normalized(&self) -> &str {
        &self.key[4..self.at_key]
    }

    /// The lower-cased host part.
    pub fn host_normalized(&self) -> &str {
        &self.key[self.at_key + 1..]
    }
}

/// RFC 3261 `user` characters (unreserved, escaped and user-unreserved), minus nothing: a primary
/// address never needs more. Non-ASCII letters are allowed because AD stores them.
fn is_user_char(c: char) -> bool {
    c.is_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

/// Host names, IPv4 and bracketed IPv6 literals.
fn is_host_char(c: char) -> bool {
    c.is_alphanumeric() || "-.[]:".contains(c)
}

impl PartialEq for SipUri {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SipUri {}

impl Hash for SipUri {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for SipUri {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SipUri {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl fmt::Debug for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SipUri({:?})", self.original)
    }
}

impl std::str::FromStr for SipUri {
    type Err = SipUriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipUri::parse(s)
    }
}

impl serde::Serialize for SipUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.original)
    }
}

impl<'de> serde::Deserialize<'de> for SipUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SipUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn compares_case_insensitively_and_keeps_original_text() {
        let a = SipUri::parse("sip:OCSChat@Contoso.COM").unwrap();
        let b = SipUri::parse("SIP:ocschat@contoso.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "sip:OCSChat@Contoso.COM");
        assert_eq!(b.as_str(), "sip:ocschat@contoso.com");
        assert_eq!(a.normalized(), "sip:ocschat@contoso.com");
        let set: HashSet<_> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn splits_user_and_host() {
        let u = SipUri::parse("sip:OCSChat@Contoso.COM").unwrap();
        assert_eq!(u.user(), "OCSChat");
        assert_eq!(u.host(), "Contoso.COM");
        assert_eq!(u.user_normalized(), "ocschat");
        assert_eq!(u.host_normalized(), "contoso.com");
    }

    #[test]
    fn rejects_malformed_values_with_a_reason() {
        let cases = [
            ("", SipUriError::Empty),
            ("   ", SipUriError::Empty),
            ("ocschat@contoso.com", SipUriError::MissingScheme),
            ("sips:ocschat@contoso.com", SipUriError::MissingScheme),
            ("tel:+15551234", SipUriError::MissingScheme),
            ("sip:contoso.com", SipUriError::MissingUser),
            ("sip:@contoso.com", SipUriError::MissingUser),
            ("sip:ocschat@", SipUriError::MissingHost),
            ("sip:ocs chat@contoso.com", SipUriError::BadChar(' ')),
            ("sip:ocschat@contoso.com>", SipUriError::BadChar('>')),
            ("sip:a@b@c", SipUriError::BadChar('@')),
        ];
        for (text, want) in cases {
            assert_eq!(SipUri::parse(text).unwrap_err(), want, "{text:?}");
        }
        let long = format!("sip:{}@contoso.com", "a".repeat(600));
        assert_eq!(SipUri::parse(&long).unwrap_err(), SipUriError::TooLong);
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            SipUri::parse("ocschat@contoso.com")
                .unwrap_err()
                .to_string(),
            "missing `sip:` scheme"
        );
        assert_eq!(
            SipUri::parse("sip:contoso.com").unwrap_err().to_string(),
            "missing user part (expected sip:user@domain)"
        );
    }

    #[test]
    fn accepts_ipv6_hosts_and_non_ascii_users() {
        let u = SipUri::parse("sip:chat@[::1]").unwrap();
        assert_eq!(u.host(), "[::1]");
        let n = SipUri::parse("sip:Ünïcode@Contoso.com").unwrap();
        assert_eq!(n, SipUri::parse("sip:ünïcode@contoso.com").unwrap());
        assert_eq!(n.user_normalized(), "ünïcode");
    }

    #[test]
    fn from_parts_matches_parse() {
        assert_eq!(
            SipUri::from_parts("OCSCHAT", "contoso.com").unwrap(),
            SipUri::parse("sip:ocschat@CONTOSO.com").unwrap()
        );
    }

    #[test]
    fn orders_by_normalized_form() {
        let mut v = [
            SipUri::parse("sip:b@x").unwrap(),
            SipUri::parse("sip:A@x").unwrap(),
        ];
        v.sort();
        assert_eq!(v[0].as_str(), "sip:A@x");
    }
}
