//! Search result entries read straight from ldap3's raw BER tree.
//!
//! ldap3's `SearchEntry::construct` panics on a DN that is not UTF-8 (one byte rewritten by a
//! proxy is enough) and on any entry of an unexpected shape, and it copies every entry into a
//! `HashMap<String, Vec<String>>`. [`RawEntry`] instead borrows the tree ldap3 already parsed:
//! the DN and the values pcsync asks for are read in place, nothing panics, and a DN or entry
//! that cannot be read is the caller's finding, shown with its bytes escaped.

use std::borrow::Cow;

use ldap3::ResultEntry;
use ldap3::asn1::{PL, StructureTag, TagClass};

use crate::model::{Attributes, Finding, ValueSource, show_dn_bytes};

/// `[APPLICATION 4]`: SearchResultEntry (RFC 4511 §4.5.2).
const SEARCH_RESULT_ENTRY: u64 = 4;

/// One SearchResultEntry, borrowed from ldap3's tree: `objectName` and a well-formed list of
/// `PartialAttribute { type, vals }` (checked once, when made).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry<'a> {
    dn: &'a [u8],
    attributes: &'a [StructureTag],
}

/// An entry whose structure is not a SearchResultEntry's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// The DN, shown with non-UTF-8 bytes escaped, when even that much could be read.
    pub dn: Option<String>,
}

impl Malformed {
    /// The finding that reports this entry.
    pub(crate) fn finding(&self) -> Finding {
        Finding::malformed(
            self.dn.as_deref().unwrap_or("(unreadable DN)"),
            "the server sent an entry that is not a well-formed SearchResultEntry".to_string(),
        )
    }
}

impl<'a> RawEntry<'a> {
    /// Reads `tag` as a SearchResultEntry: `[APPLICATION 4] SEQUENCE { objectName OCTET
    /// STRING, attributes SEQUENCE OF SEQUENCE { type OCTET STRING, vals SET OF OCTET STRING }
    /// }`. Every attribute is checked here, so the accessors below never meet a surprise.
    pub(crate) fn new(tag: &'a StructureTag) -> Result<RawEntry<'a>, Malformed> {
        let unreadable = Malformed { dn: None };
        if tag.class != TagClass::Application || tag.id != SEARCH_RESULT_ENTRY {
            return Err(unreadable);
        }
        let PL::C(parts) = &tag.payload else {
            return Err(unreadable);
        };
        let [name, attributes] = parts.as_slice() else {
            return Err(unreadable);
        };
        let PL::P(dn) = &name.payload else {
            return Err(unreadable);
        };
        let malformed = || Malformed {
            dn: Some(show_dn_bytes(dn).into_owned()),
        };
        let PL::C(attributes) = &attributes.payload else {
            return Err(malformed());
        };
        if !attributes.iter().all(|a| partial_attribute(a).is_some()) {
            return Err(malformed());
        }
        Ok(RawEntry { dn, attributes })
    }

    /// The DN as text, or the finding that reports a DN that is not UTF-8 (its bytes shown
    /// escaped, as RFC 4514 hex pairs).
    pub(crate) fn dn(self) -> Result<&'a str, Finding> {
        std::str::from_utf8(self.dn).map_err(|e| {
            Finding::malformed(
                &show_dn_bytes(self.dn),
                format!(
                    "DN: not UTF-8 (byte {} of {})",
                    e.valid_up_to() + 1,
                    self.dn.len()
                ),
            )
        })
    }

    /// The DN as text, with any bytes that are not UTF-8 escaped: for display and for keys
    /// that must not fail.
    pub(crate) fn dn_shown(self) -> Cow<'a, str> {
        show_dn_bytes(self.dn)
    }

    /// Every attribute: its type and its values, as the server sent them.
    pub(crate) fn attributes(
        self,
    ) -> impl Iterator<Item = (&'a [u8], impl Iterator<Item = &'a [u8]> + Clone)> + 'a {
        self.attributes.iter().filter_map(partial_attribute)
    }

    /// The values of the attribute `name` (compared case-insensitively, as LDAP does; a server
    /// that split one attribute into several has every part read).
    pub(crate) fn values<'n>(
        self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a, 'n> {
        let name = name.as_bytes();
        self.attributes
            .iter()
            .filter_map(partial_attribute)
            .filter(move |(kind, _)| kind.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values)
    }

    /// The values of `name` that are UTF-8, for attributes that are text by syntax.
    pub(crate) fn texts<'n>(
        self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + Clone + use<'a, 'n> {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    /// The first UTF-8 value of `name`.
    pub(crate) fn first_text(self, name: &str) -> Option<&'a str> {
        self.texts(name).next()
    }

    /// Every attribute, owned and binary-safe (an attribute type that is not UTF-8 is kept
    /// with its bytes replaced, so no value is dropped).
    pub(crate) fn to_attributes(self) -> Attributes {
        let mut out = Attributes::new();
        for (kind, values) in self.attributes() {
            out.insert(
                &String::from_utf8_lossy(kind),
                values.map(<[u8]>::to_vec).collect(),
            );
        }
        out
    }
}

impl<'a> ValueSource<'a> for RawEntry<'a> {
    fn values(self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        RawEntry::values(self, name)
    }
}

/// The entries among a search's results that can be read: references, intermediate messages
/// and malformed entries are left out.
pub(crate) fn readable(results: &[ResultEntry]) -> impl Iterator<Item = RawEntry<'_>> {
    results.iter().filter_map(|e| RawEntry::new(&e.0).ok())
}

/// `PartialAttribute ::= SEQUENCE { type OCTET STRING, vals SET OF OCTET STRING }`: the type
/// and the values, or `None` when `tag` is not that.
fn partial_attribute(tag: &StructureTag) -> Option<(&[u8], impl Iterator<Item = &[u8]> + Clone)> {
    let PL::C(parts) = &tag.payload else {
        return None;
    };
    let [kind, values] = parts.as_slice() else {
        return None;
    };
    let (PL::P(kind), PL::C(values)) = (&kind.payload, &values.payload) else {
        return None;
    };
    if values.iter().any(|v| !matches!(v.payload, PL::P(_))) {
        return None;
    }
    Some((
        kind.as_slice(),
        values.iter().filter_map(|v| match &v.payload {
            PL::P(bytes) => Some(bytes.as_slice()),
            PL::C(_) => None,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ldap3::asn1::{ASNTag, OctetString, Sequence, Set, Tag, parse_tag, write};

    fn octets(bytes: &[u8]) -> Tag {
        Tag::OctetString(OctetString {
            inner: bytes.to_vec(),
            ..Default::default()
        })
    }

    fn attribute(name: &str, values: &[&[u8]]) -> Tag {
        Tag::Sequence(Sequence {
            inner: vec![
                octets(name.as_bytes()),
                Tag::Set(Set {
                    inner: values.iter().map(|v| octets(v)).collect(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
    }

    /// The BER a server sends for a SearchResultEntry, parsed back as ldap3's connection task
    /// parses it: what pcsync receives.
    fn entry(dn: &[u8], attributes: Vec<Tag>) -> StructureTag {
        let tag = Tag::Sequence(Sequence {
            class: TagClass::Application,
            id: SEARCH_RESULT_ENTRY,
            inner: vec![
                octets(dn),
                Tag::Sequence(Sequence {
                    inner: attributes,
                    ..Default::default()
                }),
            ],
        });
        let mut ber = BytesMut::new();
        write::encode_into(&mut ber, tag.into_structure()).unwrap();
        let (rest, parsed) = parse_tag(&ber).unwrap();
        assert!(rest.is_empty());
        parsed
    }

    #[test]
    fn reads_the_dn_and_the_values_asked_for_in_place() {
        let tag = entry(
            b"CN=Ann,OU=Users,DC=contoso,DC=com",
            vec![
                attribute("objectClass", &[b"top", b"user"]),
                attribute("msRTCSIP-PrimaryUserAddress", &[b"sip:ann@contoso.com"]),
                attribute("objectSid", &[&[0x01, 0x05, 0xff]]),
            ],
        );
        let e = RawEntry::new(&tag).unwrap();
        assert_eq!(e.dn().unwrap(), "CN=Ann,OU=Users,DC=contoso,DC=com");
        assert_eq!(e.texts("OBJECTCLASS").collect::<Vec<_>>(), ["top", "user"]);
        assert_eq!(
            e.first_text("msrtcsip-primaryuseraddress"),
            Some("sip:ann@contoso.com")
        );
        assert_eq!(
            e.values("objectSid").collect::<Vec<_>>(),
            [&[1, 5, 0xff][..]]
        );
        assert_eq!(e.values("displayName").count(), 0);
        let owned = e.to_attributes();
        assert_eq!(owned.get("objectsid"), &[vec![1, 5, 0xff]]);
        assert_eq!(owned.get("objectClass").len(), 2);
    }

    // Issue 17: a DN that is not UTF-8 (one byte rewritten on the way) panicked inside
    // ldap3's SearchEntry::construct. Here it is a finding showing the bytes escaped.
    #[test]
    fn a_dn_that_is_not_utf8_is_a_finding_with_its_bytes_escaped() {
        let tag = entry(
            b"CN=Caf\xe9,OU=Users,DC=contoso,DC=com",
            vec![attribute("objectClass", &[b"user"])],
        );
        let e = RawEntry::new(&tag).unwrap();
        let finding = e.dn().unwrap_err();
        assert_eq!(finding.dn, r"CN=Caf\E9,OU=Users,DC=contoso,DC=com");
        assert_eq!(finding.reason, "DN: not UTF-8 (byte 7 of 34)");
        assert_eq!(e.dn_shown(), r"CN=Caf\E9,OU=Users,DC=contoso,DC=com");
        // The rest of the entry is still readable.
        assert_eq!(e.texts("objectClass").collect::<Vec<_>>(), ["user"]);
    }

    #[test]
    fn a_value_that_is_not_utf8_is_kept_as_bytes_and_left_out_of_texts() {
        let tag = entry(
            b"CN=Bob,DC=contoso,DC=com",
            vec![attribute(
                "msRTCSIP-PrimaryUserAddress",
                &[b"sip:b\xffb@contoso.com"],
            )],
        );
        let e = RawEntry::new(&tag).unwrap();
        assert_eq!(
            e.values("msRTCSIP-PrimaryUserAddress").collect::<Vec<_>>(),
            [&b"sip:b\xffb@contoso.com"[..]]
        );
        assert_eq!(e.texts("msRTCSIP-PrimaryUserAddress").count(), 0);
        assert_eq!(
            e.to_attributes().get("msRTCSIP-PrimaryUserAddress"),
            &[b"sip:b\xffb@contoso.com".to_vec()]
        );
    }

    #[test]
    fn an_attribute_sent_in_two_parts_is_read_whole() {
        let tag = entry(
            b"CN=Cy,DC=contoso,DC=com",
            vec![
                attribute("objectClass", &[b"top"]),
                attribute("cn", &[b"Cy"]),
                attribute("OBJECTCLASS", &[b"user"]),
            ],
        );
        let e = RawEntry::new(&tag).unwrap();
        assert_eq!(e.texts("objectclass").collect::<Vec<_>>(), ["top", "user"]);
        assert_eq!(e.to_attributes().get("objectClass").len(), 2);
    }

    #[test]
    fn entries_of_the_wrong_shape_are_malformed_never_a_panic() {
        let dn = || octets(b"CN=X,DC=y");
        let shapes = [
            // A reference or another message, not an entry.
            Tag::Sequence(Sequence {
                class: TagClass::Application,
                id: 19,
                inner: vec![octets(b"ldap://elsewhere/")],
            }),
            // No attribute list.
            Tag::Sequence(Sequence {
                class: TagClass::Application,
                id: SEARCH_RESULT_ENTRY,
                inner: vec![dn()],
            }),
            // The DN constructed instead of an octet string.
            Tag::Sequence(Sequence {
                class: TagClass::Application,
                id: SEARCH_RESULT_ENTRY,
                inner: vec![
                    Tag::Sequence(Sequence::default()),
                    Tag::Sequence(Sequence::default()),
                ],
            }),
            // An attribute without values.
            Tag::Sequence(Sequence {
                class: TagClass::Application,
                id: SEARCH_RESULT_ENTRY,
                inner: vec![
                    dn(),
                    Tag::Sequence(Sequence {
                        inner: vec![Tag::Sequence(Sequence {
                            inner: vec![octets(b"cn")],
                            ..Default::default()
                        })],
                        ..Default::default()
                    }),
                ],
            }),
            // A value that is constructed.
            Tag::Sequence(Sequence {
                class: TagClass::Application,
                id: SEARCH_RESULT_ENTRY,
                inner: vec![
                    dn(),
                    Tag::Sequence(Sequence {
                        inner: vec![Tag::Sequence(Sequence {
                            inner: vec![
                                octets(b"cn"),
                                Tag::Set(Set {
                                    inner: vec![Tag::Sequence(Sequence::default())],
                                    ..Default::default()
                                }),
                            ],
                            ..Default::default()
                        })],
                        ..Default::default()
                    }),
                ],
            }),
        ];
        let expected_dn = [None, None, None, Some("CN=X,DC=y"), Some("CN=X,DC=y")];
        for (shape, dn) in shapes.into_iter().zip(expected_dn) {
            let tag = shape.into_structure();
            let e = RawEntry::new(&tag).unwrap_err();
            assert_eq!(e.dn.as_deref(), dn, "{tag:?}");
            assert_eq!(e.finding().dn, dn.unwrap_or("(unreadable DN)"));
        }
    }
}
