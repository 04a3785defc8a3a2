//! `SipUri`: a SIP address as Active Directory stores it in `msRTCSIP-PrimaryUserAddress`.
//!
//! AD compares these values case-insensitively, so equality, ordering and hashing use the
//! lower-cased form, while `as_str` keeps the text exactly as the directory held it. Only the
//! `sip:user@host` shape of a primary user address is accepted: no parameters, headers,
//! display name or whitespace; a `:port` is dropped (Lync routes it to the same user).
//! [`SipUri::parse_held`] also accepts `sips:` and a bare `user@host`, for deciding who holds
//! an address. The redirector matches a Request-URI by building a `SipUri` from
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
pub(crate) const MAX_SIP_URI_LEN: usize = 512;

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
        let (user, host) = split(text)?;
        SipUri::from_parts(user, without_port(host)?)
    }

    /// Parses an address as a directory object may hold it, for deciding who holds a URI: what
    /// [`SipUri::parse`] accepts, and also `sips:user@host`, a port (`sip:user@host:5061`,
    /// `sip:user@[::1]:5061`) and a bare `user@host`. Lync routes all of these to the same
    /// user, so each is a holder of `sip:user@host`, which is what the result is. This is the
    /// one normalisation planning, recovery, restore and the redirector share (issue #19).
    pub fn parse_held(text: &str) -> Result<SipUri, SipUriError> {
        let (user, host) = split_held(text)?;
        SipUri::from_parts(user, without_port(host)?)
    }

    /// Whether any of `values` (an `msRTCSIP-PrimaryUserAddress` as read) holds this address,
    /// under [`SipUri::parse_held`]'s normalisation.
    pub(crate) fn held_in(&self, values: &[Vec<u8>]) -> bool {
        values.iter().any(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| SipUri::parse_held(t).ok())
                .is_some_and(|u| u == *self)
        })
    }

    /// Builds `sip:{user}@{host}` from parts already split, checking each.
    pub fn from_parts(user: &str, host: &str) -> Result<SipUri, SipUriError> {
        check_parts(user, host)?;
        let original = format!("sip:{user}@{host}");
        let mut key = String::new();
        let at_key = normalize_parts(user, host, &mut key)?;
        // Both forms are bounded, so the normalised form always parses again.
        if original.len() > MAX_SIP_URI_LEN {
            return Err(SipUriError::TooLong);
        }
        Ok(SipUri {
            original,
            key,
            at_original: 4 + user.len(),
            at_key,
        })
    }

    /// Checks `text` as [`SipUri::parse`] does and writes its normalised form into `out`
    /// (cleared first), without allocating once `out` has grown: what a scan of 200,000
    /// addresses needs to compare and hash them. Returns the byte offset of `@` in `out`.
    pub(crate) fn normalize_into(text: &str, out: &mut String) -> Result<usize, SipUriError> {
        let (user, host) = split(text)?;
        let host = without_port(host)?;
        check_parts(user, host)?;
        normalize_parts(user, host, out)
    }

    /// [`SipUri::normalize_into`] under [`SipUri::parse_held`]'s reading (`sips:`, a bare
    /// `user@host`), for a scan that must see every holder of an address.
    pub(crate) fn normalize_held_into(text: &str, out: &mut String) -> Result<usize, SipUriError> {
        let (user, host) = split_held(text)?;
        let host = without_port(host)?;
        check_parts(user, host)?;
        normalize_parts(user, host, out)
    }

    /// What [`SipUri::parse`] checks of `text`, without building one: its user and host parts as
    /// written (`scratch` holds the normalised form while its length is checked, reused from one
    /// address to the next). [`SipParts::to_uri`] then gives the `SipUri` `parse` would.
    pub(crate) fn parts<'t>(
        text: &'t str,
        scratch: &mut String,
    ) -> Result<SipParts<'t>, SipUriError> {
        let (user, host) = split(text)?;
        SipParts::checked(user, without_port(host)?, scratch)
    }

    /// [`SipUri::parts`] under [`SipUri::parse_held`]'s reading (`sips:`, a port, a bare
    /// `user@host`).
    pub(crate) fn held_parts<'t>(
        text: &'t str,
        scratch: &mut String,
    ) -> Result<SipParts<'t>, SipUriError> {
        let (user, host) = split_held(text)?;
        SipParts::checked(user, without_port(host)?, scratch)
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

/// The user and host of a SIP address as written, checked as [`SipUri::from_parts`] checks them:
/// what a listing shows (`sip:user@host`, [`fmt::Display`]) without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SipParts<'a> {
    user: &'a str,
    host: &'a str,
}

impl<'a> SipParts<'a> {
    /// [`SipUri::from_parts`]'s checks, in its order, with the normalised form in `scratch`.
    fn checked(
        user: &'a str,
        host: &'a str,
        scratch: &mut String,
    ) -> Result<SipParts<'a>, SipUriError> {
        check_parts(user, host)?;
        normalize_parts(user, host, scratch)?;
        if "sip:@".len() + user.len() + host.len() > MAX_SIP_URI_LEN {
            return Err(SipUriError::TooLong);
        }
        Ok(SipParts { user, host })
    }

    /// The address itself. Parts read by [`SipUri::parts`] passed every check `from_parts`
    /// makes, so this is never `None` for them.
    pub(crate) fn to_uri(self) -> Option<SipUri> {
        SipUri::from_parts(self.user, self.host).ok()
    }
}

impl fmt::Display for SipParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sip:{}@{}", self.user, self.host)
    }
}

/// `user` and `host` of `sip:user@host`, trimmed, bounded, scheme checked.
fn split(text: &str) -> Result<(&str, &str), SipUriError> {
    let text = bounded(text)?;
    let rest = strip_scheme(text, "sip:").ok_or(SipUriError::MissingScheme)?;
    rest.split_once('@').ok_or(SipUriError::MissingUser)
}

/// `user` and `host` of `sip:user@host`, `sips:user@host` or a bare `user@host`, trimmed and
/// bounded.
fn split_held(text: &str) -> Result<(&str, &str), SipUriError> {
    let text = bounded(text)?;
    let rest = strip_scheme(text, "sip:")
        .or_else(|| strip_scheme(text, "sips:"))
        .unwrap_or(text);
    rest.split_once('@').ok_or(SipUriError::MissingUser)
}

/// `text` trimmed, neither empty nor longer than a primary address may be.
fn bounded(text: &str) -> Result<&str, SipUriError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SipUriError::Empty);
    }
    if text.len() > MAX_SIP_URI_LEN {
        return Err(SipUriError::TooLong);
    }
    Ok(text)
}

/// What follows `scheme` (matched case-insensitively) at the start of `text`.
fn strip_scheme<'t>(text: &'t str, scheme: &str) -> Option<&'t str> {
    text.get(..scheme.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        .then(|| &text[scheme.len()..])
}

/// The characters a primary address may hold in each part.
fn check_parts(user: &str, host: &str) -> Result<(), SipUriError> {
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
    Ok(())
}

/// Writes `sip:{fold(user)}@{fold(host)}` into `out` (cleared first); the offset of `@`.
fn normalize_parts(user: &str, host: &str, out: &mut String) -> Result<usize, SipUriError> {
    out.clear();
    out.push_str("sip:");
    fold_case_into(user, out);
    let at = out.len();
    out.push('@');
    fold_case_into(host, out);
    if out.len() > MAX_SIP_URI_LEN {
        return Err(SipUriError::TooLong);
    }
    Ok(at)
}

/// `host` without a `:port` suffix (all digits): Lync routes `user@host:5061` to the same user
/// as `user@host`. A bracketed IPv6 literal keeps its colons; any other colon left over is an
/// error.
fn without_port(host: &str) -> Result<&str, SipUriError> {
    let (name, port) = match host.strip_prefix('[') {
        Some(inner) => match inner.find(']') {
            Some(end) => host.split_at(end + 2),
            None => (host, ""),
        },
        None => host.split_at(host.find(':').unwrap_or(host.len())),
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(name),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(name)
        }
        _ => Err(SipUriError::BadChar(':')),
    }
}

/// The case folding behind equality: each character lower-cased on its own, and kept as it is
/// when its lower case is not exactly one character. `str::to_lowercase` is not used because
/// it is context-sensitive (a final `Σ` becomes `ς` or `σ` depending on what precedes it, so
/// `sip:ΑΣ@x` and the Request-URI parts `ΑΣ`, `x` would fold differently) and may expand a
/// character (`İ` becomes `i` plus U+0307, which is no user character), so the normalised form
/// would not parse again. Found by the sip_uri fuzz target.
pub(crate) fn fold_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_case_into(text, &mut out);
    out
}

/// [`fold_case`], appending to `out`; ASCII, nearly every address, a byte at a time.
fn fold_case_into(text: &str, out: &mut String) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        return;
    }
    for c in text.chars() {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) => out.push(l),
            _ => out.push(c),
        }
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

    /// Issue #16 case 5 and #19's address variants: every spelling Lync treats as the same
    /// address is a holder of it; a different address or port-like junk is not.
    #[test]
    fn parse_held_treats_every_spelling_of_one_address_as_that_address() {
        let want = SipUri::parse("sip:ocschat@contoso.com").unwrap();
        for text in [
            "sip:ocschat@contoso.com",
            "sip:ocschat@contoso.com ",
            "  SIP:OCSChat@Contoso.COM",
            "sips:ocschat@contoso.com",
            "SIPS:ocschat@contoso.com",
            "sip:ocschat@contoso.com:5061",
            "sips:OCSCHAT@contoso.com:5061",
            "ocschat@contoso.com",
            "OCSChat@Contoso.com:5060",
        ] {
            let got = SipUri::parse_held(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(got, want, "{text:?}");
            assert_eq!(got.normalized(), "sip:ocschat@contoso.com", "{text:?}");
            assert!(want.held_in(&[text.as_bytes().to_vec()]), "{text:?}");
        }
        let v6 = SipUri::parse_held("sip:chat@[::1]:5061").unwrap();
        assert_eq!(v6.host(), "[::1]");
        assert_eq!(SipUri::parse_held("chat@[::1]").unwrap().host(), "[::1]");
        for (text, err) in [
            ("", SipUriError::Empty),
            ("contoso.com", SipUriError::MissingUser),
            ("tel:+15551234", SipUriError::MissingUser),
            ("sip:ocschat@contoso.com:50a1", SipUriError::BadChar(':')),
            ("sip:ocschat@contoso.com:", SipUriError::BadChar(':')),
        ] {
            assert_eq!(SipUri::parse_held(text).unwrap_err(), err, "{text:?}");
        }
        for other in ["sip:ocschat2@contoso.com", "sip:ocschat@fabrikam.com", ""] {
            assert!(!want.held_in(&[other.as_bytes().to_vec()]), "{other:?}");
        }
    }

    #[test]
    fn from_parts_matches_parse() {
        assert_eq!(
            SipUri::from_parts("OCSCHAT", "contoso.com").unwrap(),
            SipUri::parse("sip:ocschat@CONTOSO.com").unwrap()
        );
    }

    #[test]
    fn normalize_into_agrees_with_parse_and_reuses_its_buffer() {
        let mut out = String::new();
        for text in [
            "sip:OCSChat@Contoso.COM",
            " SIP:ΑΣ@x.gr ",
            "sip:İ@x.tr",
            "ocschat@contoso.com",
            "sip:@x",
            "sip:a b@x",
            "",
        ] {
            match (SipUri::parse(text), SipUri::normalize_into(text, &mut out)) {
                (Ok(uri), Ok(at)) => {
                    assert_eq!(out, uri.normalized(), "{text:?}");
                    assert_eq!(&out[4..at], uri.user_normalized(), "{text:?}");
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{text:?}"),
                (a, b) => panic!("{text:?}: parse {a:?}, normalize_into {b:?}"),
            }
        }
        let long = format!("sip:{}@x", "Ⱥ".repeat(200));
        assert_eq!(
            SipUri::normalize_into(&long, &mut out),
            Err(SipUriError::TooLong)
        );
        let capacity = out.capacity();
        SipUri::normalize_into("sip:short@x", &mut out).unwrap();
        assert_eq!(out.capacity(), capacity);
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

    // Found by the sip_uri fuzz target (issue 8, bad input): `İ` lower-cases to `i` + U+0307,
    // which is no user character, so the normalised form of a valid address did not parse; and
    // `str::to_lowercase` folds a final `Σ` by context, so the redirector's `lookup(user, host)`
    // and the table key disagreed.
    #[test]
    fn fuzz_regression_normalised_form_parses_and_folding_ignores_context() {
        let u = SipUri::parse("sip:İ@x.tr").unwrap();
        let n = SipUri::parse(u.normalized()).unwrap();
        assert_eq!(n, u);
        assert_eq!(n.normalized(), u.normalized());
        let sigma = SipUri::parse("sip:ΑΣ@x.gr").unwrap();
        assert_eq!(sigma.user_normalized(), "ασ");
        assert_eq!(fold_case("ΑΣ"), "ασ");
        // Lower-casing that grows the text (Ⱥ is 2 bytes, ⱥ 3) is bounded too.
        let long = format!("sip:{}@x", "Ⱥ".repeat(200));
        assert_eq!(SipUri::parse(&long).unwrap_err(), SipUriError::TooLong);
    }

    mod properties {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};

        use proptest::prelude::*;

        use super::*;

        fn hash(u: &SipUri) -> u64 {
            let mut h = DefaultHasher::new();
            u.hash(&mut h);
            h.finish()
        }

        /// A user or host part: mostly valid characters, with case variants and non-ASCII.
        fn part() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9._ÄÖÜäöüßİıΣσςΑΩǅⱥȺ-]{1,12}"
        }

        /// A host part (no `_`).
        fn host() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9.ÄÖÜäöüßİıΣσςΑΩǅⱥȺ-]{1,12}"
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Normalising a normalised URI changes nothing.
            #[test]
            fn normalising_is_idempotent(user in part(), host in host()) {
                let u = SipUri::from_parts(&user, &host).unwrap();
                let n = SipUri::parse(u.normalized()).unwrap();
                prop_assert_eq!(n.normalized(), u.normalized());
                prop_assert_eq!(n.as_str(), u.normalized());
                prop_assert_eq!(&n, &u);
            }

            /// The scan's allocation-free normalisation is the same as `SipUri`'s.
            #[test]
            fn normalize_into_is_parse(user in part(), host in host()) {
                let text = format!("sip:{user}@{host}");
                let mut out = String::new();
                match SipUri::parse(&text) {
                    Ok(uri) => {
                        let at = SipUri::normalize_into(&text, &mut out).unwrap();
                        prop_assert_eq!(out.as_str(), uri.normalized());
                        prop_assert_eq!(&out[4..at], uri.user_normalized());
                    }
                    Err(e) => prop_assert_eq!(SipUri::normalize_into(&text, &mut out), Err(e)),
                }
            }

            /// A listing's allocation-free reading shows what `parse` and `parse_held` would give,
            /// and fails where they fail, with their error.
            #[test]
            fn parts_are_parse(user in part(), host in host(), scheme in 0usize..4, port in proptest::option::of(1u16..), pad in "[ :]{0,2}", long in any::<bool>()) {
                let scheme = ["sip:", "SIPS:", "", "tel:"][scheme];
                let user = if long { user.repeat(40) } else { user };
                let mut text = format!("{pad}{scheme}{user}@{host}");
                if let Some(p) = port {
                    text.push_str(&format!(":{p}"));
                }
                let mut scratch = String::new();
                let shown = |parts: SipParts<'_>| (parts.to_string(), parts.to_uri());
                let uri = |u: SipUri| (u.as_str().to_string(), Some(u));
                prop_assert_eq!(SipUri::parts(&text, &mut scratch).map(shown), SipUri::parse(&text).map(uri));
                prop_assert_eq!(SipUri::held_parts(&text, &mut scratch).map(shown), SipUri::parse_held(&text).map(uri));
            }

            /// Equality is case-insensitive and agrees with Hash and Ord.
            #[test]
            fn equality_is_case_insensitive_and_consistent(user in part(), host in host(), other in part(), flips in proptest::collection::vec(any::<bool>(), 24)) {
                let a = SipUri::from_parts(&user, &host).unwrap();
                // The same address with the case of some ASCII letters flipped.
                let flip = |s: &str| -> String {
                    s.chars().zip(flips.iter().cycle()).map(|(c, f)| if *f && c.is_ascii() { if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() } } else { c }).collect()
                };
                let b = SipUri::from_parts(&flip(&user), &flip(&host)).unwrap();
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a.cmp(&b), Ordering::Equal);
                prop_assert_eq!(hash(&a), hash(&b));
                let c = SipUri::from_parts(&other, &host).unwrap();
                prop_assert_eq!(a == c, a.cmp(&c) == Ordering::Equal);
                prop_assert_eq!(a == c, a.normalized() == c.normalized());
                if a == c {
                    prop_assert_eq!(hash(&a), hash(&c));
                }
                prop_assert_eq!(a.cmp(&c), c.cmp(&a).reverse());
            }

            /// Every variant of an address (scheme sip/sips/none in any case, a port, spaces
            /// around it, case flips) normalises to the same URI, and `parse` and `parse_held`
            /// agree on whatever `parse` accepts.
            #[test]
            fn every_variant_of_an_address_is_held_by_it(user in "[a-zA-Z0-9._-]{1,12}", host in "[a-zA-Z0-9.-]{1,12}", scheme in 0usize..5, port in proptest::option::of(1u16..), upper in any::<bool>(), pad in "[ ]{0,2}") {
                let base = SipUri::from_parts(&user, &host).unwrap();
                let scheme = ["sip:", "SIP:", "sips:", "Sips:", ""][scheme];
                let mut text = format!("{pad}{scheme}{user}@{host}");
                if let Some(p) = port {
                    text.push_str(&format!(":{p}"));
                }
                text.push_str(&pad);
                if upper {
                    text = text.to_ascii_uppercase();
                }
                let held = SipUri::parse_held(&text).unwrap();
                prop_assert_eq!(&held, &base);
                prop_assert!(base.held_in(&[text.clone().into_bytes()]));
                if let Ok(strict) = SipUri::parse(&text) {
                    prop_assert_eq!(strict, held);
                }
            }
        }
    }
}
