//! [`Change`]: one directory write of a plan, as an enum with one variant per action.
//!
//! In JSON (the plan document, `--plan-out` files, the audit log's `plan` and `swap_intent`
//! records) a change is one flat object tagged on `action`: the [`Header`] fields, then what the
//! action needs. Field names and order are those of schemas/plan.schema.json, so a document
//! reads the same whichever version wrote it; reading one back validates every DN, SIP URI and
//! attribute name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::desired::Retire;
use crate::model::{AttrValues, Dn, Entry, SipUri};

/// One directory write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    /// Delete the well-known user, or clear its msRTCSIP-* attributes (`retire = "disable"`).
    RetireUser(RetireUser),
    /// Add the legacy endpoint contact.
    CreateEndpoint(CreateEndpoint),
    /// The endpoint exists but is homed on the wrong pool (or has the wrong owner or flag).
    RepointEndpoint(RepointEndpoint),
}

/// What every change carries: the object, the URI its swap is about, the target pool, when and
/// why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub dn: Dn,
    pub sip_uri: SipUri,
    /// FQDN of the target pool.
    pub pool: String,
    pub(crate) status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    pub reason: String,
}

/// Retires the well-known user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireUser {
    #[serde(flatten)]
    pub header: Header,
    /// Delete the user, or clear its msRTCSIP-* attributes. Absent means delete, the only way
    /// there was before `retire` existed.
    #[serde(default = "delete")]
    pub(crate) retire: Retire,
    /// The values the plan saw; the delete or modify is conditional on them.
    pub expect: Vec<AttrValues>,
    /// With `retire = "disable"`: the attributes cleared, with the exact values seen; empty for
    /// a delete.
    #[serde(rename = "attributes")]
    pub cleared: Vec<AttrValues>,
}

fn delete() -> Retire {
    Retire::Delete
}

/// Adds the legacy endpoint contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateEndpoint {
    #[serde(flatten)]
    pub header: Header,
    /// What the plan saw: no `msRTCSIP-PrimaryUserAddress` at the new DN.
    pub expect: Vec<AttrValues>,
    /// Every attribute of the new entry.
    #[serde(rename = "attributes")]
    pub entry: Vec<AttrValues>,
}

impl CreateEndpoint {
    /// The entry to add.
    pub(crate) fn to_entry(&self) -> Entry {
        Entry {
            dn: self.header.dn.clone(),
            attributes: self.entry.clone(),
        }
    }
}

/// Fixes an endpoint's home, owner or enabled flag in one modify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepointEndpoint {
    #[serde(flatten)]
    pub header: Header,
    /// The values the plan saw; the modify is conditional on them, and deletes the old ones.
    pub expect: Vec<AttrValues>,
    /// The new values of the attributes that change.
    #[serde(rename = "attributes")]
    pub new_values: Vec<AttrValues>,
}

/// What a change does: the `action` of its JSON, without the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RetireUser,
    CreateEndpoint,
    RepointEndpoint,
}

impl Action {
    /// The name the plan document writes (`retire_user`).
    pub(crate) fn as_str(self) -> &'static str {
        crate::util::variant_name(&self)
    }
}

/// Whether a change is applied by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Ready,
    /// The migration's `not_before` lies in the future.
    WaitingForCutover,
}

impl Change {
    pub fn header(&self) -> &Header {
        match self {
            Change::RetireUser(c) => &c.header,
            Change::CreateEndpoint(c) => &c.header,
            Change::RepointEndpoint(c) => &c.header,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Change::RetireUser(_) => Action::RetireUser,
            Change::CreateEndpoint(_) => Action::CreateEndpoint,
            Change::RepointEndpoint(_) => Action::RepointEndpoint,
        }
    }

    /// The DN written.
    pub fn dn(&self) -> &Dn {
        &self.header().dn
    }

    /// The SIP URI of the swap this change belongs to.
    pub fn sip_uri(&self) -> &SipUri {
        &self.header().sip_uri
    }

    /// What the JSON calls `attributes`: the attributes a disable clears, the new entry, or the
    /// new values of a repoint.
    pub(crate) fn attributes(&self) -> &[AttrValues] {
        match self {
            Change::RetireUser(c) => &c.cleared,
            Change::CreateEndpoint(c) => &c.entry,
            Change::RepointEndpoint(c) => &c.new_values,
        }
    }

    /// Whether this run applies it (not waiting for a cutover time).
    pub(crate) fn is_ready(&self) -> bool {
        self.header().status == Status::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change written by the version before `Change` became an enum, byte for byte: it loads,
    /// and is written back identically.
    #[test]
    fn the_json_of_each_action_is_unchanged() {
        for json in [
            r#"{"action":"retire_user","dn":"CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com","sip_uri":"sip:ocschat@contoso.com","pool":"pcpool1.contoso.com","status":"ready","reason":"leftover","retire":"disable","expect":[{"name":"msRTCSIP-UserEnabled","values":["TRUE"]}],"attributes":[{"name":"msRTCSIP-OptionFlags","values":["256"]}]}"#,
            r#"{"action":"create_endpoint","dn":"CN={e},CN=Application Contacts,DC=contoso,DC=com","sip_uri":"sip:ocschat@contoso.com","pool":"pcpool1.contoso.com","status":"waiting_for_cutover","not_before":"2030-01-01T00:00:00Z","reason":"legacy endpoint","expect":[{"name":"msRTCSIP-PrimaryUserAddress","values":[]}],"attributes":[{"name":"cn","values":["{e}"]},{"name":"objectSid","values":[{"base64":"AQX/"}]}]}"#,
            r#"{"action":"repoint_endpoint","dn":"CN={e},CN=Application Contacts,DC=contoso,DC=com","sip_uri":"sip:ocschat@contoso.com","pool":"pcpool2.contoso.com","status":"ready","reason":"endpoint exists","expect":[],"attributes":[{"name":"msRTCSIP-PrimaryHomeServer","values":["CN=Lc Services,DC=contoso,DC=com"]}]}"#,
        ] {
            let change: Change = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&change).unwrap(), json);
        }
    }

    #[test]
    fn a_retire_without_retire_is_a_delete_and_bad_values_are_refused() {
        let old = r#"{"action":"retire_user","dn":"cn=u,dc=x","sip_uri":"sip:a@x","pool":"p","status":"ready","reason":"","expect":[],"attributes":[]}"#;
        let Change::RetireUser(r) = serde_json::from_str(old).unwrap() else {
            panic!("not a retire");
        };
        assert_eq!(r.retire, Retire::Delete);
        for (bad, why) in [
            (old.replace("cn=u,dc=x", "no dn"), "has no `=`"),
            (old.replace("sip:a@x", "a@x"), "missing `sip:` scheme"),
            (old.replace("retire_user", "rename_user"), "unknown variant"),
        ] {
            let e = serde_json::from_str::<Change>(&bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
