//! The domain model: what pcsync knows about a directory object, independent of ldap3.
//!
//! `DirectoryObject` is built from the raw attributes of one search entry by
//! [`DirectoryObject::from_parsed`]. That conversion never fails and never panics: a value
//! that cannot be understood (a SIP address without `sip:`, two values in a single-valued
//! attribute, an unparsable DN) becomes a [`Finding`] naming the DN, and the field is left empty.
//! Attribute names are AD's; object classes come from configuration ([`Classifier`]).

mod dn;
mod entry;
mod guid;
mod listing;
mod sip_uri;

pub(crate) use dn::show_dn_bytes;
pub use dn::{Dn, DnError};
pub use entry::{AttrValues, Entry, Modification};
pub(crate) use guid::Guid;
pub(crate) use listing::{Listing, ValueSource};
pub(crate) use sip_uri::{SipParts, fold_case};
pub use sip_uri::{SipUri, SipUriError};

use std::collections::BTreeMap;
use std::fmt;

/// The attribute names pcsync reads and writes, exactly as AD spells them.
pub(crate) mod attr {
    pub(crate) const OBJECT_CLASS: &str = "objectClass";
    pub(crate) const CN: &str = "cn";
    pub(crate) const DISPLAY_NAME: &str = "displayName";
    pub(crate) const PRIMARY_USER_ADDRESS: &str = "msRTCSIP-PrimaryUserAddress";
    pub(crate) const USER_ENABLED: &str = "msRTCSIP-UserEnabled";
    pub(crate) const PRIMARY_HOME_SERVER: &str = "msRTCSIP-PrimaryHomeServer";
    pub(crate) const TARGET_HOME_SERVER: &str = "msRTCSIP-TargetHomeServer";
    pub(crate) const OWNER_URN: &str = "msRTCSIP-OwnerUrn";
    pub(crate) const OPTION_FLAGS: &str = "msRTCSIP-OptionFlags";
    pub(crate) const LINE: &str = "msRTCSIP-Line";
    pub(crate) const APPLICATION_OPTIONS: &str = "msRTCSIP-ApplicationOptions";

    /// The msRTCSIP attributes `pcsync check` requires the schema to define.
    pub(crate) const REQUIRED_SCHEMA: &[&str] = &[
        PRIMARY_USER_ADDRESS,
        USER_ENABLED,
        PRIMARY_HOME_SERVER,
        OWNER_URN,
    ];

    /// What reconcile's full scan asks for: only what detection needs (the kind and the SIP
    /// address). The few objects that hold a migration's URI are then read in full.
    pub(crate) const DETECTION: &[&str] = &[OBJECT_CLASS, PRIMARY_USER_ADDRESS];

    /// What a directory search asks for. AD does not expand `msRTCSIP-*` wildcards, so every
    /// attribute is named.
    pub(crate) const SEARCHED: &[&str] = &[
        OBJECT_CLASS,
        CN,
        DISPLAY_NAME,
        PRIMARY_USER_ADDRESS,
        USER_ENABLED,
        PRIMARY_HOME_SERVER,
        TARGET_HOME_SERVER,
        OWNER_URN,
        OPTION_FLAGS,
        LINE,
        APPLICATION_OPTIONS,
    ];
}

/// An attribute name, compared case-insensitively as LDAP does; written as given.
#[derive(Clone)]
pub struct AttrName(String);

/// Why a text is not an attribute name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrNameError {
    /// The name is empty.
    #[error("empty attribute name")]
    Empty,
    /// A character no attribute description holds (space, control, non-ASCII).
    #[error("attribute name {0:?} has a character other than printable ASCII")]
    BadChar(String),
}

impl AttrName {
    /// A name as the server or the code spells it (not checked: servers send only valid ones).
    pub fn new(name: &str) -> AttrName {
        AttrName(name.to_string())
    }

    /// Checks a name read from a plan or the audit log: printable ASCII, as every attribute
    /// description is (RFC 4512 letters, digits, `-`, `;` options, and AD's `;range=0-*`).
    pub fn parse(text: &str) -> Result<AttrName, AttrNameError> {
        if text.is_empty() {
            return Err(AttrNameError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AttrNameError::BadChar(text.to_string()));
        }
        Ok(AttrName::new(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `name`, compared case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }

    /// Whether this is one of the msRTCSIP-* attributes Lync owns.
    pub(crate) fn is_msrtcsip(&self) -> bool {
        self.0
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("msRTCSIP-"))
    }
}

impl From<&str> for AttrName {
    fn from(name: &str) -> AttrName {
        AttrName::new(name)
    }
}

impl PartialEq for AttrName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for AttrName {}

impl PartialOrd for AttrName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AttrName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .bytes()
            .map(|b| b.to_ascii_lowercase())
            .cmp(other.0.bytes().map(|b| b.to_ascii_lowercase()))
    }
}

impl fmt::Debug for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for AttrName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AttrName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        AttrName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Every attribute of an entry as the server returned it, binary-safe, keyed case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attributes(BTreeMap<AttrName, Vec<Vec<u8>>>);

impl Attributes {
    pub(crate) fn new() -> Attributes {
        Attributes::default()
    }

    /// Appends values to an attribute (merging with values already present under any case).
    pub(crate) fn insert(&mut self, name: &str, values: Vec<Vec<u8>>) {
        match self.0.entry(AttrName::new(name)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(values);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().extend(values),
        }
    }

    /// All values of `name`, or an empty slice.
    pub(crate) fn get(&self, name: &str) -> &[Vec<u8>] {
        // A linear scan: entries have a dozen attributes, and this runs several times per
        // object of a 200,000-object scan, where building a key would allocate each time.
        self.0
            .iter()
            .find(|(k, _)| k.0.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// Values of `name` that are UTF-8, for attributes that are text by syntax.
    pub(crate) fn texts(&self, name: &str) -> impl Iterator<Item = &str> + Clone {
        self.get(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&AttrName, &Vec<Vec<u8>>)> {
        self.0.iter()
    }
}

/// What kind of object an entry is, decided by its objectClass against the configured lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ObjectKind {
    User,
    Contact,
    Other,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::User => "user",
            ObjectKind::Contact => "contact",
            ObjectKind::Other => "other",
        })
    }
}

/// `msRTCSIP-UserEnabled`, which is tri-state in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Enabled {
    /// `TRUE`: enabled for Lync.
    True,
    /// `FALSE`: temporarily disabled; the SIP address stays taken.
    False,
    /// Never enabled, or the value could not be read (a finding says which).
    Absent,
}

impl fmt::Display for Enabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enabled::True => "TRUE",
            Enabled::False => "FALSE",
            Enabled::Absent => "-",
        })
    }
}

/// Decides an object's kind from its objectClass values.
#[derive(Debug, Clone)]
pub(crate) struct Classifier {
    /// Lower-cased objectClass values that make an object a user.
    user_classes: Vec<String>,
    /// Lower-cased objectClass values that make an object a contact.
    contact_classes: Vec<String>,
}

impl Classifier {
    pub(crate) fn new(user_classes: &[String], contact_classes: &[String]) -> Classifier {
        let lower = |v: &[String]| v.iter().map(|c| c.to_ascii_lowercase()).collect();
        Classifier {
            user_classes: lower(user_classes),
            contact_classes: lower(contact_classes),
        }
    }

    /// User wins over contact if an object somehow carries both.
    pub(crate) fn classify<'a>(
        &self,
        classes: impl Iterator<Item = &'a str> + Clone,
    ) -> ObjectKind {
        let has = |list: &[String]| {
            classes
                .clone()
                .any(|c| list.iter().any(|l| l.eq_ignore_ascii_case(c)))
        };
        if has(&self.user_classes) {
            ObjectKind::User
        } else if has(&self.contact_classes) {
            ObjectKind::Contact
        } else {
            ObjectKind::Other
        }
    }
}

/// What kind of problem a finding reports. Findings are reported, never acted on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FindingKind {
    /// A value that cannot be understood: bad SIP address, bad DN, two values, bad boolean.
    MalformedValue,
    /// A migration's SIP URI is held by an object pcsync will not touch; that swap is blocked.
    UriInUse,
    /// Several objects carry the same SIP URI.
    DuplicateUri,
    /// A contact holding a migration's URI lies outside the endpoint container.
    EndpointOutsideContainer,
    /// The well-known user is homed elsewhere than the migration's legacy_home_server_dn.
    UnexpectedHome,
    /// Two `[[migrations]]` entries name the same SIP URI.
    DuplicateMigration,
    /// A SIP-enabled user that looks like a Group Chat lookup account but no migration names.
    Suspect,
    /// An endpoint contact homed on no configured pool (or on none at all): not mapped.
    UnknownPool,
    /// An endpoint contact with `msRTCSIP-UserEnabled: FALSE`: not mapped.
    Disabled,
    /// An object in the endpoint container that is not a contact: not mapped.
    NotAContact,
    /// An object AD renamed after a replication conflict (`\0ACNF:` in its RDN): two DCs
    /// created the same name before replicating, so one SIP URI may have two holders.
    ConflictObject,
    /// A migration's endpoint contact exists but an administrator disabled it
    /// (`msRTCSIP-UserEnabled: FALSE`): left alone unless the migration says `enable_endpoint`.
    EndpointDisabled,
    /// A precondition of a swap failed against the directory before the first write (a pool DN
    /// that names nothing, an object at the endpoint's DN, ...); that swap is blocked.
    Preflight,
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FindingKind::MalformedValue => "malformed_value",
            FindingKind::UriInUse => "uri_in_use",
            FindingKind::DuplicateUri => "duplicate_uri",
            FindingKind::EndpointOutsideContainer => "endpoint_outside_container",
            FindingKind::UnexpectedHome => "unexpected_home",
            FindingKind::DuplicateMigration => "duplicate_migration",
            FindingKind::Suspect => "suspect",
            FindingKind::UnknownPool => "unknown_pool",
            FindingKind::Disabled => "disabled",
            FindingKind::NotAContact => "not_a_contact",
            FindingKind::ConflictObject => "conflict_object",
            FindingKind::EndpointDisabled => "endpoint_disabled",
            FindingKind::Preflight => "preflight",
        })
    }
}

/// A problem in the directory, reported with the DN at fault and a reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub(crate) kind: FindingKind,
    /// The DN as the server wrote it (kept as text: it may itself be the malformed part).
    pub dn: String,
    pub reason: String,
}

impl Finding {
    pub(crate) fn new(kind: FindingKind, dn: &str, reason: String) -> Finding {
        Finding {
            kind,
            dn: dn.to_string(),
            reason,
        }
    }

    pub(crate) fn malformed(dn: &str, reason: String) -> Finding {
        Finding::new(FindingKind::MalformedValue, dn, reason)
    }

    /// `dn` is a replication conflict's name ([`is_conflict_name`]).
    pub(crate) fn conflict_object(dn: &str) -> Finding {
        Finding::new(
            FindingKind::ConflictObject,
            dn,
            "a replication conflict: two DCs created this name before replicating and AD \
             renamed one (\\0ACNF:<objectGUID>); keep the object that should hold the SIP \
             URI and delete the other"
                .to_string(),
        )
    }
}

/// A SIP-relevant directory object.
#[derive(Debug, Clone)]
pub struct DirectoryObject {
    pub dn: Dn,
    pub(crate) kind: ObjectKind,
    /// `msRTCSIP-PrimaryUserAddress`, when present and valid.
    pub sip_uri: Option<SipUri>,
    pub(crate) enabled: Enabled,
    /// `msRTCSIP-PrimaryHomeServer`, when present and a valid DN.
    pub home_server_dn: Option<Dn>,
    pub owner_urn: Option<String>,
    pub display_name: Option<String>,
    /// Every attribute the search returned, binary-safe.
    pub(crate) attributes: Attributes,
}

impl DirectoryObject {
    /// Interprets one entry. Problems become findings; only an unparsable DN drops the object.
    #[cfg(test)]
    pub(crate) fn from_attributes(
        dn_text: &str,
        attributes: Attributes,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
    ) -> Option<DirectoryObject> {
        let dn = match Dn::parse(dn_text) {
            Ok(dn) => dn,
            Err(e) => {
                findings.push(Finding::malformed(dn_text, format!("DN: {e}")));
                return None;
            }
        };
        Some(DirectoryObject::from_parsed(
            dn,
            attributes,
            classifier,
            &mut DnCache::default(),
            findings,
        ))
    }

    /// Interprets one entry whose DN the caller already parsed (problems become findings), reusing
    /// `cache` for DN-valued attributes (a scan sees the same few pool DNs over and over; parsing
    /// each once matters on a directory of 200,000 users).
    pub(crate) fn from_parsed(
        dn: Dn,
        attributes: Attributes,
        classifier: &Classifier,
        cache: &mut DnCache,
        findings: &mut Vec<Finding>,
    ) -> DirectoryObject {
        if is_conflict_name(&dn) {
            findings.push(Finding::conflict_object(dn.as_str()));
        }
        let mut scratch = String::new();
        let listing = Listing::read(
            dn.as_str(),
            &attributes,
            classifier,
            cache,
            &mut scratch,
            findings,
        );
        let (kind, enabled) = (listing.kind, listing.enabled);
        let sip_uri = listing.sip_uri.and_then(SipParts::to_uri);
        let home_server_dn = listing.home_server_dn.cloned();
        let owner_urn = listing.owner_urn.map(str::to_string);
        let display_name = listing.display_name.map(str::to_string);
        DirectoryObject {
            dn,
            kind,
            sip_uri,
            enabled,
            home_server_dn,
            owner_urn,
            display_name,
            attributes,
        }
    }
}

/// Whether AD renamed `dn` after a replication conflict: its RDN value ends in a line feed and
/// `CNF:<objectGUID>` (written `\0ACNF:` in the DN).
pub(crate) fn is_conflict_name(dn: &Dn) -> bool {
    dn.leaf_value().is_some_and(|v| v.contains("\nCNF:"))
}

/// What detection needs of one object of a scan, borrowed from the entry the reader holds: its
/// DN as text, its kind and its SIP address, checked and normalised. Reading one allocates
/// nothing, so a scan of 200,000 objects costs what the search costs; the few objects a plan
/// acts on are made whole with [`Sighting::to_object`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sighting<'a> {
    /// As the server wrote it; parsed only when needed.
    pub dn: &'a str,
    pub kind: ObjectKind,
    /// `msRTCSIP-PrimaryUserAddress` as the directory holds it.
    pub sip_uri: &'a str,
    /// Its normalised form, [`SipUri::normalized`].
    pub normalized: &'a str,
    /// The byte offset of `@` in `normalized`.
    at: usize,
}

impl<'a> Sighting<'a> {
    /// Reads an object's kind and SIP address as [`DirectoryObject::from_parsed`] does, with
    /// the same findings for a malformed address; `None` when it has no valid one. The
    /// normalised address is written into `buffer`, reused from one object to the next.
    pub(crate) fn read(
        dn: &'a str,
        classes: impl Iterator<Item = &'a str> + Clone,
        addresses: impl Iterator<Item = &'a [u8]>,
        classifier: &Classifier,
        buffer: &'a mut String,
        findings: &mut Vec<Finding>,
    ) -> Option<Sighting<'a>> {
        // Only a DN whose text says `CNF:` can be a conflict's name: just those are parsed.
        if dn.contains("CNF:") && Dn::parse(dn).is_ok_and(|parsed| is_conflict_name(&parsed)) {
            findings.push(Finding::conflict_object(dn));
        }
        let mut bad = |reason: String| findings.push(Finding::malformed(dn, reason));
        let text = single_value_text(attr::PRIMARY_USER_ADDRESS, addresses, &mut bad)?;
        let at = match SipUri::normalize_into(text, buffer) {
            Ok(at) => at,
            Err(e) => {
                bad(bad_address(text, &e));
                // Still a holder of the address Lync reads in it (`sips:`, a bare `user@host`),
                // as in `DirectoryObject::from_parsed`.
                SipUri::normalize_held_into(text, buffer).ok()?
            }
        };
        Some(Sighting {
            dn,
            kind: classifier.classify(classes),
            sip_uri: text,
            normalized: buffer,
            at,
        })
    }

    /// The normalised user part, e.g. `ocschat`.
    pub(crate) fn user_normalized(self) -> &'a str {
        &self.normalized[4..self.at]
    }

    /// The object itself, with its DN parsed and no attributes beyond what was read: for the
    /// few objects a plan acts on, which the caller then reads in full. A DN that does not
    /// parse is the finding.
    pub(crate) fn to_object(self) -> Result<DirectoryObject, Finding> {
        let dn = Dn::parse(self.dn).map_err(|e| Finding::malformed(self.dn, format!("DN: {e}")))?;
        let sip_uri = SipUri::parse(self.sip_uri)
            .or_else(|e| SipUri::parse_held(self.sip_uri).map_err(|_| e))
            .map_err(|e| Finding::malformed(self.dn, bad_address(self.sip_uri, &e)))?;
        Ok(DirectoryObject {
            dn,
            kind: self.kind,
            sip_uri: Some(sip_uri),
            enabled: Enabled::Absent,
            home_server_dn: None,
            owner_urn: None,
            display_name: None,
            attributes: Attributes::new(),
        })
    }
}

/// Parsed DN-valued attribute values, by their exact text; bounded, so a directory with
/// unusually many distinct values only loses the speed-up, never memory.
#[derive(Debug, Default)]
pub(crate) struct DnCache(std::collections::HashMap<String, Result<Dn, DnError>>);

impl DnCache {
    const MAX_ENTRIES: usize = 256;

    /// The parsed DN `text`, borrowed from the cache: no allocation once it is there.
    pub(crate) fn get(&mut self, text: &str) -> Result<&Dn, DnError> {
        if !self.0.contains_key(text) {
            if self.0.len() >= Self::MAX_ENTRIES {
                self.0.clear();
            }
            self.0.insert(text.to_string(), Dn::parse(text));
        }
        // Present: inserted just above if it was not.
        self.0[text].as_ref().map_err(DnError::clone)
    }
}

/// The one UTF-8 value of a single-valued attribute among `values`; several values, an empty
/// value or bytes that are not UTF-8 are reported through `bad` and read as absent.
fn single_value_text<'a>(
    name: &str,
    mut values: impl Iterator<Item = &'a [u8]>,
    bad: &mut impl FnMut(String),
) -> Option<&'a str> {
    match (values.next(), values.next()) {
        (None, _) => None,
        (Some(one), None) => match std::str::from_utf8(one) {
            Ok("") => {
                bad(format!("{name}: empty value"));
                None
            }
            Ok(text) => Some(text),
            Err(_) => {
                bad(format!("{name}: value is not UTF-8 ({} bytes)", one.len()));
                None
            }
        },
        (Some(_), Some(_)) => {
            bad(format!(
                "{name}: {} values in a single-valued attribute",
                2 + values.count()
            ));
            None
        }
    }
}

/// The finding's reason for a SIP address that does not parse.
fn bad_address(text: &str, e: &SipUriError) -> String {
    format!(
        "{}: {e} in {:?}",
        attr::PRIMARY_USER_ADDRESS,
        truncate(text)
    )
}

/// AD's `displayName` rangeUpper; a longer value is hostile data, reported and not shown.
pub(crate) const MAX_DISPLAY_NAME_CHARS: usize = 256;

/// Keeps hostile values from flooding a report line.
fn truncate(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head}… ({} bytes)", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::new(
            &["user".into(), "inetOrgPerson".into()],
            &["contact".into()],
        )
    }

    fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
        let mut a = Attributes::new();
        for (name, values) in pairs {
            a.insert(name, values.iter().map(|v| v.as_bytes().to_vec()).collect());
        }
        a
    }

    #[test]
    fn reads_a_well_formed_user() {
        let mut findings = vec![];
        let o = DirectoryObject::from_attributes(
            "CN=OCS Chat,OU=Users,DC=contoso,DC=com",
            attrs(&[
                (
                    "objectClass",
                    &["top", "person", "organizationalPerson", "User"],
                ),
                ("msRTCSIP-PrimaryUserAddress", &["sip:OCSChat@contoso.com"]),
                ("msrtcsip-userenabled", &["TRUE"]),
                (
                    "msRTCSIP-PrimaryHomeServer",
                    &["CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,DC=x"],
                ),
                ("displayName", &["OCS Chat"]),
            ]),
            &classifier(),
            &mut findings,
        )
        .unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(o.kind, ObjectKind::User);
        assert_eq!(o.sip_uri.unwrap().normalized(), "sip:ocschat@contoso.com");
        assert_eq!(o.enabled, Enabled::True);
        assert_eq!(
            o.home_server_dn.unwrap(),
            Dn::parse("cn=lc services,cn=microsoft,cn=1:1,cn=pools,dc=x").unwrap()
        );
        assert_eq!(o.display_name.as_deref(), Some("OCS Chat"));
        assert_eq!(
            o.attributes.get("MSRTCSIP-USERENABLED"),
            &[b"TRUE".to_vec()]
        );
    }

    #[test]
    fn classifies_by_configured_classes() {
        let c = classifier();
        assert_eq!(
            c.classify(["top", "contact"].into_iter()),
            ObjectKind::Contact
        );
        assert_eq!(c.classify(["inetorgperson"].into_iter()), ObjectKind::User);
        assert_eq!(c.classify(["device"].into_iter()), ObjectKind::Other);
    }

    #[test]
    fn malformed_values_become_findings_not_panics() {
        let mut findings = vec![];
        let o = DirectoryObject::from_attributes(
            "cn=bad,dc=x",
            attrs(&[
                ("objectClass", &["user"]),
                ("msRTCSIP-PrimaryUserAddress", &["ocschat@contoso.com"]),
                ("msRTCSIP-UserEnabled", &["yes"]),
                ("msRTCSIP-PrimaryHomeServer", &["not a dn"]),
                ("msRTCSIP-OwnerUrn", &["a", "b"]),
            ]),
            &classifier(),
            &mut findings,
        )
        .unwrap();
        // Reported, and still read as the address Lync routes to it.
        assert_eq!(
            o.sip_uri.as_ref().map(SipUri::as_str),
            Some("sip:ocschat@contoso.com")
        );
        assert_eq!(o.enabled, Enabled::Absent);
        assert!(o.home_server_dn.is_none());
        assert!(o.owner_urn.is_none());
        let reasons: Vec<_> = findings.iter().map(|f| f.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "msRTCSIP-PrimaryUserAddress: missing `sip:` scheme in \"ocschat@contoso.com\"",
                "msRTCSIP-UserEnabled: expected TRUE or FALSE, found \"yes\"",
                "msRTCSIP-PrimaryHomeServer: RDN \"not a dn\" has no `=`",
                "msRTCSIP-OwnerUrn: 2 values in a single-valued attribute",
            ]
        );
        assert!(
            findings
                .iter()
                .all(|f| f.dn == "cn=bad,dc=x" && f.kind == FindingKind::MalformedValue)
        );
    }

    #[test]
    fn two_sip_addresses_empty_and_binary_values_are_findings() {
        let mut findings = vec![];
        let mut a = attrs(&[("msRTCSIP-PrimaryUserAddress", &["sip:a@x", "sip:b@x"])]);
        a.insert("displayName", vec![vec![0xff, 0xfe]]);
        a.insert("msRTCSIP-OwnerUrn", vec![vec![]]);
        let o = DirectoryObject::from_attributes("cn=two,dc=x", a, &classifier(), &mut findings)
            .unwrap();
        assert!(o.sip_uri.is_none());
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(findings[0].reason.contains("2 values"));
        assert!(
            findings[1]
                .reason
                .contains("msRTCSIP-OwnerUrn: empty value")
        );
        assert!(
            findings[2]
                .reason
                .contains("displayName: value is not UTF-8")
        );
    }

    #[test]
    fn a_sighting_reports_hostile_addresses_as_reading_the_whole_object_does() {
        let long = format!("sip:{}@x", "x".repeat(100_000));
        let cases: [&[&[u8]]; 5] = [
            &[b"sip:a@x", b"sip:b@x"],
            &[b""],
            &[&[0xff, 0xfe]],
            &[b"no scheme@x"],
            &[long.as_bytes()],
        ];
        for values in cases {
            let mut whole = vec![];
            let mut a = Attributes::new();
            a.insert(
                attr::PRIMARY_USER_ADDRESS,
                values.iter().map(|v| v.to_vec()).collect(),
            );
            let o = DirectoryObject::from_attributes("cn=h,dc=x", a, &classifier(), &mut whole)
                .unwrap();
            assert!(o.sip_uri.is_none());
            let mut read = vec![];
            let mut buffer = String::new();
            let sighting = Sighting::read(
                "cn=h,dc=x",
                ["user"].into_iter(),
                values.iter().copied(),
                &classifier(),
                &mut buffer,
                &mut read,
            );
            assert!(sighting.is_none(), "{values:?}");
            assert_eq!(read.len(), 1, "{read:?}");
            assert_eq!(read, whole);
            assert!(read[0].reason.len() < 300, "{}", read[0].reason);
        }
    }

    #[test]
    fn a_sighting_whose_dn_does_not_parse_is_a_finding_when_made_whole() {
        let mut buffer = String::new();
        let sighting = Sighting::read(
            "garbage",
            ["user"].into_iter(),
            [b"sip:ocschat@x".as_slice()].into_iter(),
            &classifier(),
            &mut buffer,
            &mut vec![],
        )
        .unwrap();
        assert_eq!(sighting.user_normalized(), "ocschat");
        let finding = sighting.to_object().unwrap_err();
        assert_eq!(finding.dn, "garbage");
        assert!(finding.reason.starts_with("DN: "), "{}", finding.reason);
    }

    #[test]
    fn an_unparsable_dn_drops_the_object_with_a_finding() {
        let mut findings = vec![];
        let o = DirectoryObject::from_attributes(
            "garbage",
            Attributes::new(),
            &classifier(),
            &mut findings,
        );
        assert!(o.is_none());
        assert_eq!(findings[0].dn, "garbage");
    }

    #[test]
    fn long_values_are_truncated_in_reasons() {
        let mut findings = vec![];
        let long = "x".repeat(100_000);
        DirectoryObject::from_attributes(
            "cn=long,dc=x",
            attrs(&[("msRTCSIP-PrimaryUserAddress", &[long.as_str()])]),
            &classifier(),
            &mut findings,
        );
        assert!(findings[0].reason.len() < 300, "{}", findings[0].reason);
    }

    // See: #20. Two DCs that each created CN={guid} before replicating leave AD keeping both,
    // the second renamed with `\0ACNF:<objectGUID>`: a finding naming it, and still an object.
    #[test]
    fn a_replication_conflict_name_is_a_finding_with_its_dn() {
        let cnf = "CN={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17}\\0ACNF:5e7d1c2b-0a9f-4b3e-8d6c-1f2e3a4b5c6d,CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
        let mut findings = vec![];
        let o = DirectoryObject::from_attributes(
            cnf,
            attrs(&[
                ("objectClass", &["contact"]),
                ("msRTCSIP-PrimaryUserAddress", &["sip:ocschat@contoso.com"]),
            ]),
            &classifier(),
            &mut findings,
        )
        .unwrap();
        assert_eq!(o.kind, ObjectKind::Contact);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].kind, FindingKind::ConflictObject);
        assert_eq!(findings[0].dn, cnf);
        assert!(findings[0].reason.starts_with("a replication conflict"));
        // Detection's reading of the object reports it the same way, and still sees it.
        let mut read = vec![];
        let mut buffer = String::new();
        let sighting = Sighting::read(
            cnf,
            ["contact"].into_iter(),
            [b"sip:ocschat@contoso.com".as_slice()].into_iter(),
            &classifier(),
            &mut buffer,
            &mut read,
        );
        assert_eq!(sighting.map(|s| s.dn), Some(cnf));
        assert_eq!(read, findings);
        // A CNF-looking text that is not the conflict suffix is no conflict.
        for dn in [
            "CN=CNF:x,DC=contoso,DC=com",
            "CN=a\\0ADEL:x,CN=Deleted Objects,DC=contoso,DC=com",
        ] {
            assert!(!is_conflict_name(&Dn::parse(dn).unwrap()), "{dn}");
            let mut read = vec![];
            let mut buffer = String::new();
            Sighting::read(
                dn,
                ["contact"].into_iter(),
                [b"sip:ocschat@contoso.com".as_slice()].into_iter(),
                &classifier(),
                &mut buffer,
                &mut read,
            );
            assert!(read.is_empty(), "{dn}: {read:?}");
        }
    }

    // Issue 8, hostile directory data: a 100 KiB displayName is a finding, not a 100 KiB row.
    #[test]
    fn an_over_long_display_name_is_a_finding_and_not_shown() {
        let mut findings = vec![];
        let long = "D".repeat(100 * 1024);
        let o = DirectoryObject::from_attributes(
            "cn=long,dc=x",
            attrs(&[("displayName", &[long.as_str()])]),
            &classifier(),
            &mut findings,
        )
        .unwrap();
        assert_eq!(o.display_name, None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].dn, "cn=long,dc=x");
        assert!(
            findings[0]
                .reason
                .starts_with("displayName: 102400 characters")
        );
        assert!(findings[0].reason.len() < 300, "{}", findings[0].reason);
    }
}
