//! `Entry` and `AttrValues`: a complete directory entry as pcsync stores it in plans and in the
//! audit log's before-images, binary-safe and sufficient to re-create the object; and
//! `Modification`, one attribute change of a modify.
//!
//! In JSON a value is a string when it is UTF-8, and `{"base64": "..."}` otherwise (AD's
//! objectSid, msRTCSIP-OriginatorSid, thumbnailPhoto), so an image round-trips byte for byte.
//! Attributes keep the order of [`super::Attributes`] (case-insensitive name order), so the same
//! entry always serialises to the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{AttrName, Attributes, Dn};

/// One attribute and its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrValues {
    pub name: AttrName,
    #[serde(serialize_with = "ser_values", deserialize_with = "de_values")]
    pub values: Vec<Vec<u8>>,
}

impl AttrValues {
    /// An attribute with text values.
    pub fn text(name: &str, values: &[&str]) -> AttrValues {
        AttrValues {
            name: AttrName::new(name),
            values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        }
    }

    /// The attribute with no values: in an expectation, "absent".
    pub fn absent(name: &AttrName) -> AttrValues {
        AttrValues {
            name: name.clone(),
            values: Vec::new(),
        }
    }

    /// The values that are UTF-8.
    pub(crate) fn texts(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
    }
}

/// One attribute change of a modify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    Add(AttrValues),
    /// Delete these values (all values when the list is empty).
    Delete(AttrValues),
}

/// A whole entry: its DN and every user attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dn: Dn,
    pub attributes: Vec<AttrValues>,
}

impl Entry {
    pub(crate) fn new(dn: Dn, attributes: &Attributes) -> Entry {
        Entry {
            dn,
            attributes: attributes
                .iter()
                .map(|(name, values)| AttrValues {
                    name: name.clone(),
                    values: values.clone(),
                })
                .collect(),
        }
    }

    /// The values of `name` (case-insensitive), or an empty slice.
    pub fn get(&self, name: &str) -> &[Vec<u8>] {
        self.attributes
            .iter()
            .find(|a| a.name.is(name))
            .map(|a| a.values.as_slice())
            .unwrap_or(&[])
    }

    /// Whether this entry still shows the values a plan saw: for each expected attribute, the
    /// same set of values (compared case-insensitively, as every attribute pcsync checks is),
    /// or none when the expectation has no values. `Err` names the first difference.
    pub(crate) fn check(&self, expect: &[AttrValues]) -> Result<(), String> {
        let fold = |values: &[Vec<u8>]| -> std::collections::BTreeSet<Vec<u8>> {
            values.iter().map(|v| v.to_ascii_lowercase()).collect()
        };
        for e in expect {
            let now = self.get(e.name.as_str());
            if fold(now) != fold(&e.values) {
                let show = |v: &[Vec<u8>]| {
                    if v.is_empty() {
                        "absent".to_string()
                    } else {
                        v.iter()
                            .map(|x| format!("{:?}", String::from_utf8_lossy(x)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                return Err(format!(
                    "{} is {} now, the plan saw {}",
                    e.name,
                    show(now),
                    show(&e.values)
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn to_attributes(&self) -> Attributes {
        let mut out = Attributes::new();
        for a in &self.attributes {
            out.insert(a.name.as_str(), a.values.clone());
        }
        out
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Text(String),
    Binary { base64: String },
}

fn ser_values<S: Serializer>(values: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        match std::str::from_utf8(v) {
            Ok(text) => seq.serialize_element(&JsonValue::Text(text.to_string()))?,
            Err(_) => seq.serialize_element(&JsonValue::Binary {
                base64: BASE64.encode(v),
            })?,
        }
    }
    seq.end()
}

fn de_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    let raw: Vec<JsonValue> = Vec::deserialize(d)?;
    raw.into_iter()
        .map(|v| match v {
            JsonValue::Text(t) => Ok(t.into_bytes()),
            JsonValue::Binary { base64 } => BASE64
                .decode(base64.as_bytes())
                .map_err(serde::de::Error::custom),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_round_trip_through_json() {
        let mut attrs = Attributes::new();
        attrs.insert("cn", vec![b"OCSChat".to_vec()]);
        attrs.insert("objectSid", vec![vec![1, 5, 0, 0, 0xff, 0xfe, 0]]);
        let e = Entry::new(Dn::parse("cn=OCSChat,dc=x").unwrap(), &attrs);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#"{"name":"cn","values":["OCSChat"]}"#),
            "{json}"
        );
        assert!(json.contains(r#"{"base64":"AQUAAP/+AA=="}"#), "{json}");
        let back: Entry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_attributes(), attrs);
        assert_eq!(back.get("OBJECTSID"), &[vec![1, 5, 0, 0, 0xff, 0xfe, 0]]);
    }

    /// A plan or audit record read back is checked: a DN that does not parse, or an attribute
    /// name no server sends, is refused with the reason.
    #[test]
    fn deserialising_validates_the_dn_and_attribute_names() {
        let ok =
            r#"{"dn":"CN=OCSChat, DC=x","attributes":[{"name":"member;range=0-*","values":[]}]}"#;
        let e: Entry = serde_json::from_str(ok).unwrap();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            ok,
            "written back as read"
        );
        let bad_dn = r#"{"dn":"not a dn","attributes":[]}"#;
        let err = serde_json::from_str::<Entry>(bad_dn).unwrap_err();
        assert!(err.to_string().contains("has no `=`"), "{err}");
        let bad_name = r#"{"dn":"cn=x","attributes":[{"name":"display name","values":[]}]}"#;
        let err = serde_json::from_str::<Entry>(bad_name).unwrap_err();
        assert!(err.to_string().contains("printable ASCII"), "{err}");
    }
}
