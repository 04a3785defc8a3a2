//! `Listing`: one object's fields, read in place from wherever its values are held.
//!
//! `pcsync inventory` shows a row per object of a directory of hundreds of thousands: it reads
//! each row straight from the raw entry ([`ValueSource`] for `crate::ldap`'s entry), allocating
//! nothing per object on the common path.
//! [`DirectoryObject::from_parsed`](super::DirectoryObject::from_parsed) reads its fields
//! through the same [`Listing::read`] from owned [`Attributes`], so both see the same values
//! and report the same findings.

use super::{
    Attributes, Classifier, Dn, DnCache, Enabled, Finding, MAX_DISPLAY_NAME_CHARS, ObjectKind,
    SipParts, SipUri, attr, bad_address, single_value_text, truncate,
};

/// An object's values by attribute name: the raw entry as the reader holds it, or owned
/// [`Attributes`].
pub(crate) trait ValueSource<'a>: Copy {
    /// Every value of `name` (compared case-insensitively), in the order the server sent them.
    fn values(self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + Clone + 'a;
}

impl<'a> ValueSource<'a> for &'a Attributes {
    fn values(self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        self.get(name).iter().map(Vec::as_slice)
    }
}

/// What `inventory` shows of one object, borrowed from its values (and the home server's DN from
/// the reader's cache). Each field is checked as
/// [`DirectoryObject`](super::DirectoryObject)'s is: a value that cannot be understood is a
/// finding and the field is left empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing<'a, 'c> {
    /// As [`Dn::as_str`] gives it.
    pub dn: &'a str,
    pub kind: ObjectKind,
    /// `msRTCSIP-PrimaryUserAddress`, when present and valid (or held, see [`SipUri::parse_held`]).
    pub sip_uri: Option<SipParts<'a>>,
    pub enabled: Enabled,
    /// `msRTCSIP-PrimaryHomeServer`, when present and a valid DN.
    pub home_server_dn: Option<&'c Dn>,
    pub owner_urn: Option<&'a str>,
    pub display_name: Option<&'a str>,
}

impl<'a, 'c> Listing<'a, 'c> {
    /// Reads the fields of the object at `dn` (text already checked, [`Dn::check`]) from
    /// `values`. DN-valued attributes are parsed through `cache` (a scan sees the same few pool
    /// DNs over and over); `scratch` is reused from one object to the next.
    pub(crate) fn read(
        dn: &'a str,
        values: impl ValueSource<'a>,
        classifier: &Classifier,
        cache: &'c mut DnCache,
        scratch: &mut String,
        findings: &mut Vec<Finding>,
    ) -> Listing<'a, 'c> {
        let classes = values
            .values(attr::OBJECT_CLASS)
            .filter_map(|v| std::str::from_utf8(v).ok());
        let kind = classifier.classify(classes);
        let mut bad = |reason: String| findings.push(Finding::malformed(dn, reason));
        // In this order, which is the findings' order.
        let sip_uri = match single(values, attr::PRIMARY_USER_ADDRESS, &mut bad) {
            None => None,
            Some(text) => match SipUri::parts(text, scratch) {
                Ok(parts) => Some(parts),
                Err(e) => {
                    bad(bad_address(text, &e));
                    // Still a holder of the address Lync reads in it (`sips:`, a bare
                    // `user@host`): planning must see it, or a swap would add a second holder
                    // of the URI (issue #19).
                    SipUri::held_parts(text, scratch).ok()
                }
            },
        };
        let enabled = match single(values, attr::USER_ENABLED, &mut bad) {
            None => Enabled::Absent,
            Some(v) if v.eq_ignore_ascii_case("TRUE") => Enabled::True,
            Some(v) if v.eq_ignore_ascii_case("FALSE") => Enabled::False,
            Some(v) => {
                bad(format!(
                    "{}: expected TRUE or FALSE, found {:?}",
                    attr::USER_ENABLED,
                    truncate(v)
                ));
                Enabled::Absent
            }
        };
        let home_server_dn = match single(values, attr::PRIMARY_HOME_SERVER, &mut bad) {
            None => None,
            Some(text) => match cache.get(text) {
                Ok(dn) => Some(dn),
                Err(e) => {
                    bad(format!("{}: {e}", attr::PRIMARY_HOME_SERVER));
                    None
                }
            },
        };
        let owner_urn = single(values, attr::OWNER_URN, &mut bad);
        let display_name = single(values, attr::DISPLAY_NAME, &mut bad).filter(|v| {
            let chars = v.chars().count();
            if chars > MAX_DISPLAY_NAME_CHARS {
                bad(format!(
                    "{}: {chars} characters, more than the {MAX_DISPLAY_NAME_CHARS} AD allows: {:?}",
                    attr::DISPLAY_NAME,
                    truncate(v)
                ));
            }
            chars <= MAX_DISPLAY_NAME_CHARS
        });
        Listing {
            dn,
            kind,
            sip_uri,
            enabled,
            home_server_dn,
            owner_urn,
            display_name,
        }
    }
}

/// The one UTF-8 value of the single-valued attribute `name` ([`single_value_text`]).
fn single<'a>(
    values: impl ValueSource<'a>,
    name: &'static str,
    bad: &mut impl FnMut(String),
) -> Option<&'a str> {
    single_value_text(name, values.values(name), bad)
}
