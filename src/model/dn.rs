//! `Dn`: a distinguished name compared the way AD and OpenLDAP compare the ones pcsync meets.
//!
//! A DN is parsed per RFC 4514 into RDNs of `type=value` pairs: escapes (`\,` `\+` `\"` `\\`
//! `\#` and hex pairs such as AD's tombstone `\0A`) are decoded, spaces around separators are
//! dropped, the attribute types and values are lower-cased, and the pairs of a multi-valued RDN
//! are sorted. Two DNs are equal when those normalised forms are equal, so
//! `CN=Lc Services, CN=Pools,DC=Contoso` equals `cn=lc services,cn=pools,dc=contoso`.
//! Every attribute in the DNs we handle (cn, ou, dc) uses caseIgnoreMatch, which is why values
//! are folded too. The original text is kept for display and for writing back to the server.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a text is not a DN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    /// The text is empty.
    #[error("empty DN")]
    Empty,
    /// An RDN has no `=`.
    #[error("RDN {0:?} has no `=`")]
    MissingEquals(String),
    /// An RDN has an empty attribute type.
    #[error("RDN {0:?} has an empty attribute type")]
    EmptyType(String),
    /// An attribute type with characters outside `A-Za-z0-9-` and numeric OIDs.
    #[error("invalid attribute type {0:?}")]
    BadType(String),
    /// A backslash at the end, or followed by something that is neither special nor hex.
    #[error("bad escape in {0:?}")]
    BadEscape(String),
    /// Hex escapes that do not decode to UTF-8.
    #[error("escaped bytes in {0:?} are not UTF-8")]
    NotUtf8(String),
    /// A `#`-prefixed (BER) value that is not hex.
    #[error("`#` value in {0:?} is not hex")]
    BadHexValue(String),
    /// An empty RDN between two commas.
    #[error("empty RDN")]
    EmptyRdn,
}

/// One `type=value` pair, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Ava {
    /// Lower-cased attribute type.
    kind: String,
    /// Unescaped, lower-cased value (lower-case hex digits for `#` values).
    value: String,
    /// A `#`-prefixed BER value (RFC 4514 §2.4), kept apart from a string value that merely
    /// starts with an escaped `\#`: `cn=#6162` and `cn=\#6162` are different DNs.
    ber: bool,
}

/// A distinguished name with case-insensitive equality.
#[derive(Clone)]
pub struct Dn {
    /// The text as given, trimmed.
    original: String,
    /// RDNs, leaf first; each sorted.
    rdns: Vec<Vec<Ava>>,
    /// The canonical string form of `rdns`; equality, ordering and hashing use it.
    key: String,
}

impl Dn {
    /// Parses an RFC 4514 string.
    pub fn parse(text: &str) -> Result<Dn, DnError> {
        // Not `trim()`: a DN may end in an escaped space (`cn=a\ `).
        let text = trim_end_unescaped(text.trim_start());
        if text.is_empty() {
            return Err(DnError::Empty);
        }
        let mut rdns = Vec::new();
        for rdn_text in split_unescaped(text, &[',', ';']) {
            let mut avas = Vec::new();
            for ava_text in split_unescaped(rdn_text, &['+']) {
                avas.push(parse_ava(ava_text)?);
            }
            avas.sort();
            rdns.push(avas);
        }
        let key = canonical(&rdns);
        Ok(Dn {
            original: text.to_string(),
            rdns,
            key,
        })
    }

    /// Builds `{attr}={value},{parent}`, escaping `value` per RFC 4514.
    pub fn child(parent: &Dn, attr: &str, value: &str) -> Result<Dn, DnError> {
        Dn::parse(&format!(
            "{attr}={},{}",
            escape_value(value),
            parent.original
        ))
    }

    /// The DN as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The canonical lower-cased form used for comparison.
    pub fn normalized(&self) -> &str {
        &self.key
    }

    /// Number of RDNs.
    pub fn depth(&self) -> usize {
        self.rdns.len()
    }

    /// The DN one level up, or `None` for a single-RDN DN.
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.len() < 2 {
            return None;
        }
        let rest = split_unescaped(&self.original, &[',', ';'])
            .skip(1)
            .collect::<Vec<_>>()
            .join(",");
        Dn::parse(&rest).ok()
    }

    /// True when `self` equals `ancestor` or lies anywhere below it.
    pub fn is_within(&self, ancestor: &Dn) -> bool {
        let n = ancestor.rdns.len();
        self.rdns.len() >= n && self.rdns[self.rdns.len() - n..] == ancestor.rdns[..]
    }

    /// Whether the DN written as `text` equals `self` or lies below it: [`Dn::is_within`]
    /// without building a `Dn` when the text is plain (ASCII, no escape, quote, `+`, `;` or `#`:
    /// nearly every DN a scan meets), where every `,` separates RDNs and case folding is ASCII's,
    /// so the RDNs compare in place. Other DNs are parsed. Either way a text that is no DN is an
    /// error, the one [`Dn::parse`] gives.
    pub(crate) fn holds(&self, text: &str) -> Result<bool, DnError> {
        let parsed = || Dn::parse(text).map(|dn| dn.is_within(self));
        let Some(count) = plain_rdn_count(text) else {
            return parsed();
        };
        let first_compared = count.checked_sub(self.rdns.len());
        let mut within = first_compared.is_some();
        for (i, rdn) in text.split(',').enumerate() {
            // Each RDN as `Dn::parse` would check it; anything else takes that path for its error.
            let Some((kind, value)) = plain_ava(rdn) else {
                return parsed();
            };
            if !within {
                continue;
            }
            let Some(ava) = first_compared
                .and_then(|first| i.checked_sub(first))
                .and_then(|j| self.rdns.get(j))
            else {
                continue;
            };
            // A plain RDN has one AVA; an ancestor's multi-valued or `#` RDN never matches it.
            within = matches!(ava.as_slice(), [a] if !a.ber
                && a.kind.eq_ignore_ascii_case(kind)
                && a.value.eq_ignore_ascii_case(value));
        }
        Ok(within)
    }

    /// Checks `text` as [`Dn::parse`] does without building a `Dn` when the text is plain (as
    /// [`Dn::holds`] reads it): what a listing of 200,000 objects needs of each DN. Returns the
    /// DN as [`Dn::as_str`] would give it, and the `Dn` itself when the text had to be parsed.
    pub(crate) fn check(text: &str) -> Result<(&str, Option<Dn>), DnError> {
        let trimmed = trim_end_unescaped(text.trim_start());
        if plain_rdn_count(text).is_some() && text.split(',').all(|rdn| plain_ava(rdn).is_some()) {
            return Ok((trimmed, None));
        }
        Dn::parse(text).map(|dn| (trimmed, Some(dn)))
    }

    /// The unescaped value of the leaf RDN's first attribute, as written (case kept).
    pub fn leaf_value(&self) -> Option<String> {
        let first = split_unescaped(&self.original, &[',', ';']).next()?;
        let ava = trim_ava(split_unescaped(first, &['+']).next()?);
        let (_, value) = ava.split_once('=')?;
        // Exactly the escaped value: only unescaped surrounding spaces are dropped, so
        // `leaf_value(child(p, a, v)) == v` for every `v` (the dn fuzz target checks it).
        unescape(value.trim_start()).ok()
    }
}

/// The number of RDNs in `text` when it is plain: ASCII, with no escape, quote, `+`, `;` or `#`
/// (nearly every DN a scan meets), so that every `,` separates RDNs and case folding is ASCII's.
/// `None` for any other text, which only [`Dn::parse`] reads.
fn plain_rdn_count(text: &str) -> Option<usize> {
    let mut count: usize = 1;
    for &b in text.as_bytes() {
        match b {
            b',' => count += 1,
            b'\\' | b'"' | b'+' | b';' | b'#' | 0x80.. => return None,
            _ => {}
        }
    }
    Some(count)
}

/// The attribute type and value of one RDN of a plain text ([`plain_rdn_count`]), trimmed, when
/// [`Dn::parse`] accepts it; `None` when it does not, so that the caller parses it for the error.
fn plain_ava(rdn: &str) -> Option<(&str, &str)> {
    let eq = rdn.bytes().position(|b| b == b'=')?;
    let kind = rdn[..eq].trim();
    let valid = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| (kind, rdn[eq + 1..].trim()))
}

/// Splits on unescaped separator characters, honouring backslash escapes and quoted strings.
fn split_unescaped<'a>(text: &'a str, seps: &'a [char]) -> impl Iterator<Item = &'a str> + 'a {
    let mut start = 0;
    let mut escaped = false;
    let mut quoted = false;
    let mut done = false;
    let mut chars = text.char_indices();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        for (i, c) in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = !quoted;
            } else if !quoted && seps.contains(&c) {
                let part = &text[start..i];
                start = i + c.len_utf8();
                return Some(part);
            }
        }
        done = true;
        Some(&text[start..])
    })
}

/// Trims leading spaces and trailing spaces that are not escaped (`\ ` keeps one).
fn trim_ava(text: &str) -> &str {
    trim_end_unescaped(text.trim_start())
}

/// Trims trailing white space, keeping the first character of it when a backslash escapes it.
/// (Found by the dn fuzz target: `Dn::parse` used `trim()`, so a normalised DN whose last value
/// ends in an escaped space lost the space and no longer parsed.)
fn trim_end_unescaped(text: &str) -> &str {
    let end = text.trim_end();
    let backslashes = end.len() - end.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        let escaped = text[end.len()..].chars().next().map_or(0, char::len_utf8);
        &text[..end.len() + escaped]
    } else {
        end
    }
}

fn parse_ava(text: &str) -> Result<Ava, DnError> {
    let trimmed = trim_ava(text);
    if trimmed.is_empty() {
        return Err(DnError::EmptyRdn);
    }
    let (kind, value) = trimmed
        .split_once('=')
        .ok_or_else(|| DnError::MissingEquals(trimmed.to_string()))?;
    let kind = kind.trim();
    if kind.is_empty() {
        return Err(DnError::EmptyType(trimmed.to_string()));
    }
    if !kind
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(DnError::BadType(kind.to_string()));
    }
    let value = value.trim_start();
    let ber = value.starts_with('#');
    let value = if let Some(hex) = value.strip_prefix('#') {
        let hex = hex.trim_end();
        if hex.is_empty() || hex.len() % 2 != 0 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DnError::BadHexValue(trimmed.to_string()));
        }
        hex.to_ascii_lowercase()
    } else if !value.contains(['\\', '"']) {
        // Fast path (nearly every DN a scan sees): nothing to unescape, so no escaped space
        // either; one allocation instead of three.
        value.trim_end().to_lowercase()
    } else {
        trim_unescaped_end(
            &unescape(value).map_err(|e| match e {
                UnescapeError::Escape => DnError::BadEscape(trimmed.to_string()),
                UnescapeError::Utf8 => DnError::NotUtf8(trimmed.to_string()),
            })?,
            value,
        )
        .to_lowercase()
    };
    Ok(Ava {
        kind: kind.to_ascii_lowercase(),
        value,
        ber,
    })
}

/// Trailing spaces are insignificant unless escaped (`\ `): compare the raw text's ending.
/// `raw` has had its unescaped trailing spaces removed already ([`trim_ava`]), so a space at its
/// end is an escaped one. (Testing for a trailing backslash instead mistook an escaped `\\` for
/// `\ `: found by the dn fuzz target.)
fn trim_unescaped_end(unescaped: &str, raw: &str) -> String {
    if raw.ends_with(' ') {
        // `...\ ` : the last space was escaped; keep exactly one.
        format!("{} ", unescaped.trim_end())
    } else {
        unescaped.trim_end().to_string()
    }
}

enum UnescapeError {
    Escape,
    Utf8,
}

/// Decodes RFC 4514 escapes and strips the quotes of a quoted (RFC 1779) value.
fn unescape(value: &str) -> Result<String, UnescapeError> {
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let mut bytes = Vec::with_capacity(value.len());
    let mut iter = value.bytes().peekable();
    while let Some(b) = iter.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let first = iter.next().ok_or(UnescapeError::Escape)?;
        if first.is_ascii_hexdigit() && iter.peek().is_some_and(|n| n.is_ascii_hexdigit()) {
            let second = iter.next().ok_or(UnescapeError::Escape)?;
            let hex = [first, second];
            let text = std::str::from_utf8(&hex).map_err(|_| UnescapeError::Escape)?;
            bytes.push(u8::from_str_radix(text, 16).map_err(|_| UnescapeError::Escape)?);
        } else if b",+\"\\<>;= #".contains(&first) || first >= 0x80 {
            bytes.push(first);
        } else {
            return Err(UnescapeError::Escape);
        }
    }
    String::from_utf8(bytes).map_err(|_| UnescapeError::Utf8)
}

/// A DN's bytes as text: UTF-8 as it is, every other byte as an RFC 4514 hex pair (`\E9`), so
/// a DN that reached us broken can still be shown, and told apart from its neighbours.
pub(crate) fn show_dn_bytes(bytes: &[u8]) -> Cow<'_, str> {
    use std::fmt::Write;
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// Escapes an attribute value for use in a DN string (RFC 4514 §2.4).
pub(crate) fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    escape_into(&mut out, value);
    out
}

/// [`escape_value`], appending to `out`.
fn escape_into(out: &mut String, value: &str) {
    use std::fmt::Write;
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            // Other leading or trailing white space would be trimmed by a parser: hex-escape it.
            c if (i == 0 || i == last) && c.is_whitespace() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

fn canonical(rdns: &[Vec<Ava>]) -> String {
    let mut out = String::with_capacity(
        rdns.iter()
            .flatten()
            .map(|a| a.kind.len() + a.value.len() + 2)
            .sum(),
    );
    for (i, avas) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, a) in avas.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&a.kind);
            out.push('=');
            if a.ber {
                out.push('#');
                out.push_str(&a.value);
            } else {
                escape_into(&mut out, &a.value);
            }
        }
    }
    out
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Dn {}

impl Hash for Dn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for Dn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn({:?})", self.original)
    }
}

impl std::str::FromStr for Dn {
    type Err = DnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dn::parse(s)
    }
}

impl serde::Serialize for Dn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.original)
    }
}

impl<'de> serde::Deserialize<'de> for Dn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Dn::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_agrees_with_parsing_then_is_within() {
        let container = Dn::parse(
            "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
        )
        .unwrap();
        let multi = Dn::parse("cn=a+sn=b,dc=x").unwrap();
        let ber = Dn::parse("cn=#6162,dc=x").unwrap();
        let texts = [
            "CN={4c2f},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
            "cn={4c2f}, cn=application contacts ,cn=RTC Service,CN=Services,CN=Configuration,DC=CONTOSO,dc=com",
            "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
            "CN=Ann Lee 000123,OU=Site07,OU=EMEA,OU=Users,DC=contoso,DC=com",
            "CN=Lee\\2C Ann 000016,OU=Site16,OU=EMEA,OU=Users,DC=contoso,DC=com",
            "CN=x,CN=Application Contacts\\,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
            "CN=Müller,CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
            "DC=com",
            "cn=b,cn=a+sn=b,dc=x",
            "cn=b,sn=b+cn=a,dc=x",
            "cn=b,cn=a,dc=x",
            "cn=c,cn=#6162,dc=x",
            "cn=c,cn=\\#6162,dc=x",
            "cn=c,cn=ab,dc=x",
            // Not DNs: the same error either way.
            "",
            "garbage,CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
            "cn=a,,dc=x",
            "c n=a,dc=x",
            "=a,dc=x",
            "cn=a\\",
        ];
        for ancestor in [&container, &multi, &ber] {
            for text in texts {
                assert_eq!(
                    ancestor.holds(text),
                    Dn::parse(text).map(|dn| dn.is_within(ancestor)),
                    "{ancestor:?} holds {text:?}"
                );
            }
        }
        assert_eq!(container.holds(texts[0]), Ok(true));
        assert_eq!(container.holds(texts[1]), Ok(true));
        assert_eq!(container.holds(texts[3]), Ok(false));
    }

    /// `check`'s verdict and text are `parse`'s, whichever way it reads the DN.
    #[test]
    fn check_agrees_with_parsing() {
        let texts = [
            "CN=Ann Lee 000123,OU=Site07,OU=EMEA,OU=Users,DC=contoso,DC=com",
            "  cn = ann , dc=x  ",
            "CN=Lee\\, Ann 000016,OU=Site16,DC=contoso,DC=com",
            "CN=a\\ ,DC=x ",
            "CN=Müller,DC=x",
            "CN=x\\0ACNF:4c2f,DC=x",
            "cn=a+sn=b,dc=x",
            "cn=#6162,dc=x",
            "",
            "   ",
            "cn=a,,dc=x",
            "c n=a,dc=x",
            "=a,dc=x",
            "cn=a\\",
            "cn",
        ];
        for text in texts {
            let parsed = Dn::parse(text);
            match Dn::check(text) {
                Ok((shown, dn)) => {
                    let parsed = parsed.unwrap();
                    assert_eq!(shown, parsed.as_str(), "{text:?}");
                    assert!(dn.is_none_or(|dn| dn == parsed), "{text:?}");
                }
                Err(e) => assert_eq!(Err(e), parsed.map(|_| ()), "{text:?}"),
            }
        }
        assert!(matches!(Dn::check(texts[0]), Ok((_, None))));
        assert!(matches!(Dn::check(texts[2]), Ok((_, Some(_)))));
    }

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    #[test]
    fn equality_ignores_case_and_spaces_around_separators() {
        assert_eq!(
            dn("CN=Lc Services, CN=Pools,DC=Contoso,DC=com"),
            dn("cn=lc services,cn=pools,dc=contoso,dc=com")
        );
        assert_ne!(dn("cn=a,dc=x"), dn("cn=b,dc=x"));
        assert_eq!(dn(" cn = a , dc = x ").normalized(), "cn=a,dc=x");
    }

    #[test]
    fn keeps_original_text_for_display() {
        let d = dn("CN={33E5014B-DCBA},CN=Application Contacts,DC=contoso");
        assert_eq!(
            d.to_string(),
            "CN={33E5014B-DCBA},CN=Application Contacts,DC=contoso"
        );
        assert_eq!(d.leaf_value().unwrap(), "{33E5014B-DCBA}");
    }

    #[test]
    fn decodes_escapes_the_same_whatever_the_spelling() {
        // A comma written as `\,` and as `\2C` is the same DN.
        assert_eq!(dn(r"cn=Smith\, John,dc=x"), dn(r"cn=smith\2c john,dc=x"));
        assert_eq!(dn(r#"cn="Smith, John",dc=x"#), dn(r"cn=Smith\, John,dc=x"));
        assert_eq!(dn(r"cn=a\+b,dc=x").depth(), 2);
        assert_eq!(dn(r"cn=\#hash,dc=x").leaf_value().unwrap(), "#hash");
        assert_eq!(
            dn(r"cn=back\\slash,dc=x").leaf_value().unwrap(),
            r"back\slash"
        );
        assert_eq!(dn(r#"cn=quote\"d,dc=x"#).leaf_value().unwrap(), "quote\"d");
    }

    #[test]
    fn handles_ad_tombstone_rdns() {
        let d = dn(
            r"CN=ocschat\0ADEL:5f2c9a34-1111-2222-3333-444455556666,CN=Deleted Objects,DC=contoso,DC=com",
        );
        assert!(d.leaf_value().unwrap().contains("\nDEL:"));
        assert_eq!(d.depth(), 4);
    }

    #[test]
    fn multi_valued_rdn_order_does_not_matter() {
        assert_eq!(dn("cn=a+uid=b,dc=x"), dn("UID=B+CN=A,dc=x"));
    }

    #[test]
    fn hex_values_compare_case_insensitively() {
        assert_eq!(dn("cn=#04024869,dc=x"), dn("CN=#04024869,DC=X"));
        assert!(matches!(
            Dn::parse("cn=#0g,dc=x"),
            Err(DnError::BadHexValue(_))
        ));
    }

    #[test]
    fn non_ascii_values() {
        assert_eq!(dn("cn=Ünïcode,dc=x"), dn("CN=ünïcode,DC=x"));
        assert_eq!(dn(r"cn=\C3\9Cn,dc=x"), dn("cn=Ün,dc=x"));
    }

    #[test]
    fn parent_and_within() {
        let container = dn(
            "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
        );
        let ep = dn(
            "cn={1},cn=application contacts,cn=rtc service,cn=services,cn=configuration,dc=contoso,dc=com",
        );
        assert_eq!(ep.parent().unwrap(), container);
        assert!(ep.is_within(&container));
        assert!(container.is_within(&container));
        assert!(!container.is_within(&ep));
        assert!(!dn("cn=x,dc=fabrikam,dc=com").is_within(&dn("dc=contoso,dc=com")));
        assert!(dn("dc=com").parent().is_none());
        assert_eq!(dn(r"cn=a\,b,dc=x").parent().unwrap(), dn("dc=x"));
    }

    #[test]
    fn child_escapes_the_value() {
        let parent = dn("ou=Users,dc=x");
        let c = Dn::child(&parent, "cn", "Smith, John + #1").unwrap();
        assert_eq!(c.as_str(), r"cn=Smith\, John \+ #1,ou=Users,dc=x");
        assert_eq!(c.leaf_value().unwrap(), "Smith, John + #1");
        let h = Dn::child(&parent, "cn", "#lead ").unwrap();
        assert_eq!(h.leaf_value().unwrap(), "#lead ");
    }

    #[test]
    fn rejects_malformed_dns_with_a_reason() {
        assert_eq!(Dn::parse("").unwrap_err(), DnError::Empty);
        assert!(matches!(Dn::parse("cn"), Err(DnError::MissingEquals(_))));
        assert!(matches!(Dn::parse("=x,dc=y"), Err(DnError::EmptyType(_))));
        assert!(matches!(Dn::parse("c n=x"), Err(DnError::BadType(_))));
        assert!(matches!(Dn::parse(r"cn=x\"), Err(DnError::BadEscape(_))));
        assert!(matches!(Dn::parse(r"cn=x\q"), Err(DnError::BadEscape(_))));
        assert!(matches!(
            Dn::parse(r"cn=\FF\FE,dc=x"),
            Err(DnError::NotUtf8(_))
        ));
        assert_eq!(Dn::parse("cn=a,,dc=x").unwrap_err(), DnError::EmptyRdn);
        assert_eq!(
            Dn::parse("cn").unwrap_err().to_string(),
            "RDN \"cn\" has no `=`"
        );
    }

    // Found by the dn fuzz target (issue 8, bad input): a string value starting with an escaped
    // `\#` and a BER `#hex` value shared one canonical form, so two different DNs compared
    // equal and the normalised form did not parse again.
    #[test]
    fn fuzz_regression_escaped_hash_is_not_a_ber_value() {
        let text = dn(r"cn=\#ab,dc=x");
        let ber = dn("cn=#ab,dc=x");
        assert_ne!(text, ber);
        assert_eq!(text.normalized(), r"cn=\#ab,dc=x");
        assert_eq!(dn(text.normalized()), text);
        assert_eq!(dn(ber.normalized()), ber);
        assert_eq!(dn(r"cn=\#hash,dc=x").leaf_value().as_deref(), Some("#hash"));
    }

    // Found by the dn fuzz target: a value ending in an escaped backslash gained a space in its
    // normalised form, which then did not parse.
    #[test]
    fn fuzz_regression_trailing_escaped_backslash() {
        let d = dn(r"CN=OCSChat Legacy \\,DC=x");
        assert_eq!(d.normalized(), r"cn=ocschat legacy \\,dc=x");
        assert_eq!(dn(d.normalized()), d);
        assert_eq!(d.leaf_value().as_deref(), Some(r"OCSChat Legacy \"));
        assert_eq!(dn(r"cn=a\ ,dc=x").normalized(), r"cn=a\ ,dc=x");
    }

    // Found by the dn fuzz target: a DN whose last value ends in an escaped space.
    #[test]
    fn fuzz_regression_escaped_space_at_the_very_end() {
        let d = dn("cn=x+sn=b\\ ");
        assert_eq!(d.normalized(), "cn=x+sn=b\\ ");
        assert_eq!(dn(d.normalized()), d);
        assert_eq!(dn("cn=a\\  ").leaf_value().as_deref(), Some("a "));
        assert_eq!(dn("cn=a\\\\ ").leaf_value().as_deref(), Some("a\\"));
    }

    // Found by the dn fuzz target: trailing spaces and other white space did not survive
    // child → leaf_value ("a  " came back as "a ").
    #[test]
    fn fuzz_regression_escaped_values_round_trip_exactly() {
        let parent = dn("dc=contoso,dc=com");
        for value in [
            "a  ",
            "  ",
            " lead",
            "tail\u{3000}",
            "\u{a0}x",
            "OCSChat, Legacy + Old",
            "#1",
            "\\\"q\"",
        ] {
            let child = Dn::child(&parent, "cn", value).unwrap();
            assert_eq!(child.leaf_value().as_deref(), Some(value), "{child}");
            assert_eq!(child.parent().as_ref(), Some(&parent));
            assert_eq!(dn(child.normalized()), child);
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any value escapes into an RDN that gives it back, and normalising is idempotent.
            #[test]
            fn escape_round_trips_and_normalising_is_idempotent(value in "\\PC{0,12}", upper in any::<bool>()) {
                let parent = dn(if upper { "OU=Ünits,DC=Contoso,DC=com" } else { "ou=ünits,dc=contoso,dc=com" });
                let child = Dn::child(&parent, "CN", &value).unwrap();
                prop_assert_eq!(child.leaf_value(), Some(value));
                let norm = dn(child.normalized());
                prop_assert_eq!(&norm, &child);
                prop_assert_eq!(norm.normalized(), child.normalized());
                prop_assert!(child.is_within(&parent));
            }

            /// The listing's in-place check gives what parsing would, DN or not.
            #[test]
            fn check_is_parse(text in "[a-zA-Z =,+\\\\#\"Ä;\n]{0,24}") {
                let parsed = Dn::parse(&text);
                match Dn::check(&text) {
                    Ok((shown, _)) => prop_assert_eq!(Ok(shown), parsed.as_ref().map(Dn::as_str)),
                    Err(e) => prop_assert_eq!(Err(&e), parsed.as_ref().map(|_| ())),
                }
            }

            /// The scan's in-place containment test gives what parsing would, DN or not.
            #[test]
            fn holds_is_parse_then_is_within(
                leaf in "[a-zA-Z =,+\\\\#\"Ä;]{0,10}",
                middle in prop::sample::select(vec!["OU=Site07", "ou=site07 ", "CN=Application Contacts", " cn = application contacts", "OU=Other"]),
                tail in prop::sample::select(vec!["DC=contoso,DC=com", "dc=CONTOSO, dc=com", "DC=fabrikam,DC=com", "DC=com"]),
            ) {
                let text = format!("{leaf},{middle},{tail}");
                for ancestor in ["CN=Application Contacts,DC=contoso,DC=com", "OU=Site07,DC=contoso,DC=com", "DC=com"] {
                    let ancestor = dn(ancestor);
                    prop_assert_eq!(
                        ancestor.holds(&text),
                        Dn::parse(&text).map(|d| d.is_within(&ancestor)),
                        "{} holds {:?}", ancestor, text
                    );
                }
            }
        }
    }
}
