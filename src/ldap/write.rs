//! Directory writes for reconcile, restore and the lease: conditional add, delete and modify,
//! and the full read of one entry they depend on. `apply` reaches them through its
//! `DirectoryWriter` trait, whose adapter lives there; this module knows nothing of apply.
//!
//! Every write that depends on what a plan saw is conditional. When the root DSE advertises the
//! Assertion control (RFC 4528, OID 1.3.6.1.1.12; OpenLDAP does) the write carries it, critical,
//! with a filter over the expected values, and a concurrent change gives LDAP 122. Active
//! Directory has no assertion control, and ldap3 loses the connection on an unsupported critical
//! control, so there a delete re-reads and compares the entry immediately before deleting, and a
//! modify deletes the exact old values in the same operation as it adds new ones (LDAP 16 when a
//! value is gone). Objects are never renamed: AD cannot rename in the configuration partition.
//!
//! One write is Active Directory's own: [`Directory::reanimate`] brings a deleted user's
//! tombstone back, so a restore keeps its objectGUID and objectSid.

use std::collections::HashSet;

use ldap3::controls::{Assertion, MakeCritical, RawControl};
use ldap3::{LdapResult, Mod, Scope};

use super::capabilities::oid;
use super::entry::readable;
use super::error::diag;
use super::{Directory, Error};
use crate::model::{AttrValues, Dn, Entry, Modification};

/// OID of the Assertion control (RFC 4528).
pub(super) const ASSERTION_OID: &str = "1.3.6.1.1.12";

impl Directory {
    /// Whether conditional writes use the Assertion control on this server.
    pub fn supports_assertion(&self) -> bool {
        self.root_dse.supports_control(ASSERTION_OID)
    }

    /// Makes conditional writes use the re-read and value-delete method, as on Active
    /// Directory, even though this server advertises the Assertion control (tests use it to
    /// run the AD code path against OpenLDAP).
    pub fn disable_assertion_control(&mut self) {
        self.root_dse
            .supported_controls
            .retain(|c| c != ASSERTION_OID);
    }

    /// The assertion filter for `expect`, when the server supports the control and the filter
    /// is valid (ldap3 panics on an invalid one, so it is parsed first).
    fn assertion(&self, expect: &[AttrValues]) -> Option<String> {
        if !self.supports_assertion() || expect.is_empty() {
            return None;
        }
        let mut filter = String::from("(&");
        for e in expect {
            if e.values.is_empty() {
                filter.push_str(&format!("(!({}=*))", e.name));
            }
            for v in e.texts() {
                filter.push_str(&format!("({}={})", e.name, ldap3::ldap_escape(v)));
            }
        }
        filter.push(')');
        ldap3::parse_filter(&filter).ok().map(|_| filter)
    }

    /// Fails with [`Error::Conflict`] unless `dn` exists and shows `expect`.
    async fn recheck(&mut self, op: &str, dn: &Dn, expect: &[AttrValues]) -> Result<(), Error> {
        let reason = match self.read_entry(dn).await? {
            None => "it no longer exists".to_string(),
            Some(entry) => match entry.check(expect) {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            },
        };
        Err(self.conflict(op, dn.as_str(), format!("{CHANGED}: {reason}"), None))
    }

    fn conflict(&self, op: &str, dn: &str, reason: String, rc: Option<u32>) -> Error {
        Error::Conflict {
            op: op.to_string(),
            dn: dn.to_string(),
            url: self.url.to_string(),
            reason,
            rc,
        }
    }

    /// Maps a write's result: the codes that mean "someone else changed it" (or, for an add,
    /// "the name is taken") become conflicts.
    fn write_result(&self, op: &str, dn: &str, res: LdapResult) -> Result<(), Error> {
        if res.rc == 0 {
            return Ok(());
        }
        match conflict_reason(op, res.rc) {
            Some(reason) => {
                Err(self.conflict(op, dn, format!("{reason}{}", diag(&res.text)), Some(res.rc)))
            }
            None => Err(Error::Operation {
                op: format!("{op} of {dn}"),
                url: self.url.to_string(),
                rc: res.rc,
                text: explained(op, res.rc, &res.matched, &res.text),
            }),
        }
    }
}

/// The server's diagnostic, preceded by what a bare code does not say: LDAP 32 on an add means
/// the new entry's *parent* is missing (the server names the part of the DN it found), on any
/// other write that the entry itself is gone.
fn explained(op: &str, rc: u32, matched: &str, text: &str) -> String {
    if rc != 32 {
        return text.to_string();
    }
    let what = if op == "add" {
        let found = if matched.trim().is_empty() {
            "none of it".to_string()
        } else {
            matched.trim().to_string()
        };
        format!("no such object: the parent entry does not exist (the server found {found})")
    } else {
        "no such object: the entry does not exist".to_string()
    };
    match text.trim() {
        "" => what,
        diag => format!("{what}; {diag}"),
    }
}

/// What a refused conditional write found, by the write and its result code.
const CHANGED: &str = "the entry changed since it was planned";

/// Why a write with result `rc` was refused, when it is a conflict rather than an error. An add
/// refused with 68 met a name clash: some object pcsync did not plan for already has that DN,
/// which is not a change to anything the plan read.
fn conflict_reason(op: &str, rc: u32) -> Option<String> {
    Some(match (op, rc) {
        ("add", 68) => "an entry with this DN already exists (LDAP 68): a name clash with an object the plan did not read, not a concurrent change".to_string(),
        (_, 122) => format!("{CHANGED}: assertion failed (LDAP 122)"),
        (_, 16) => format!("{CHANGED}: an expected value is gone (LDAP 16)"),
        (_, 20) => format!("{CHANGED}: a value already exists (LDAP 20)"),
        (_, 68) => format!("{CHANGED}: the entry already exists (LDAP 68)"),
        _ => return None,
    })
}

fn value_set(a: &AttrValues) -> HashSet<Vec<u8>> {
    a.values.iter().cloned().collect()
}

impl Directory {
    /// The complete entry (every user attribute, binary-safe), or `None` if it does not exist.
    pub async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, Error> {
        let op = format!("reading {dn}");
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .search(dn.as_str(), Scope::Base, "(objectClass=*)", vec!["*"])
            .await
            .map_err(|e| self.op_error(&op, e))?;
        let (entries, res) = (result.0, result.1);
        match res.rc {
            32 => return Ok(None),
            _ => self.check_search_result("entry", dn.as_str(), &op, res)?,
        }
        Ok(readable(&entries).next().map(|e| {
            // The DN as the server spells it, which is what a before-image records; it names the
            // entry just read, so the DN asked for stands in should it not parse.
            let read = Dn::parse(&e.dn_shown()).unwrap_or_else(|_| dn.clone());
            Entry::new(read, &e.to_attributes())
        }))
    }

    /// Adds `entry`; an entry already there is a [`Error::Conflict`] (LDAP 68).
    pub async fn add(&mut self, entry: &Entry) -> Result<(), Error> {
        let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = entry
            .attributes
            .iter()
            .filter(|a| !a.values.is_empty())
            .map(|a| (a.name.as_str().as_bytes().to_vec(), value_set(a)))
            .collect();
        let res = self
            .ldap
            .with_timeout(self.timeout)
            .add(entry.dn.as_str(), attrs)
            .await
            .map_err(|e| self.op_error(&format!("add of {}", entry.dn), e))?;
        self.write_result("add", entry.dn.as_str(), res)
    }

    /// Deletes `dn` if it still shows `expect`, else fails with [`Error::Conflict`].
    pub async fn delete(&mut self, dn: &Dn, expect: &[AttrValues]) -> Result<(), Error> {
        let res = match self.assertion(expect) {
            Some(filter) => {
                self.ldap
                    .with_controls(Assertion { filter }.critical())
                    .with_timeout(self.timeout)
                    .delete(dn.as_str())
                    .await
            }
            None => {
                self.recheck("delete", dn, expect).await?;
                self.ldap
                    .with_timeout(self.timeout)
                    .delete(dn.as_str())
                    .await
            }
        }
        .map_err(|e| self.op_error(&format!("delete of {dn}"), e))?;
        self.write_result("delete", dn.as_str(), res)
    }

    /// Applies `mods` to `dn` in one operation if it still shows `expect`, else fails with
    /// [`Error::Conflict`] (also when a value to delete is gone).
    pub async fn modify(
        &mut self,
        dn: &Dn,
        mods: &[Modification],
        expect: &[AttrValues],
    ) -> Result<(), Error> {
        let mods: Vec<Mod<Vec<u8>>> = mods
            .iter()
            .map(|m| match m {
                Modification::Add(a) => Mod::Add(a.name.as_str().as_bytes().to_vec(), value_set(a)),
                Modification::Delete(a) => {
                    Mod::Delete(a.name.as_str().as_bytes().to_vec(), value_set(a))
                }
            })
            .collect();
        let res = match self.assertion(expect) {
            Some(filter) => {
                self.ldap
                    .with_controls(Assertion { filter }.critical())
                    .with_timeout(self.timeout)
                    .modify(dn.as_str(), mods)
                    .await
            }
            None => {
                self.recheck("modify", dn, expect).await?;
                self.ldap
                    .with_timeout(self.timeout)
                    .modify(dn.as_str(), mods)
                    .await
            }
        }
        .map_err(|e| self.op_error(&format!("modify of {dn}"), e))?;
        self.write_result("modify", dn.as_str(), res)
    }
}

impl Directory {
    /// Brings the tombstone of the object whose objectGUID is `guid` back to `dn` (AD's
    /// tombstone reanimation, MS-ADTS 3.1.1.5.3.7.3), with its objectGUID and objectSid: finds
    /// it with the Show Deleted control in `CN=Deleted Objects` of `dn`'s naming context, then
    /// deletes `isDeleted` and replaces `distinguishedName` in one modify. `Ok(false)` when there
    /// is nothing to reanimate: the server keeps no tombstones (no Show Deleted control, as on
    /// OpenLDAP), or none with that objectGUID can be read there (purged, or the account may not
    /// list Deleted Objects). A refused modify (no Reanimate-Tombstones right: LDAP 50; `dn`
    /// taken: LDAP 68) is an error.
    pub async fn reanimate(&mut self, guid: &[u8], dn: &Dn) -> Result<bool, Error> {
        if !self.root_dse.supports_control(oid::SHOW_DELETED) {
            return Ok(false);
        }
        let Some(nc) = self.naming_context_of(dn) else {
            return Ok(false);
        };
        let base = format!("CN=Deleted Objects,{nc}");
        let escaped: String = guid.iter().map(|b| format!("\\{b:02x}")).collect();
        let filter = format!("(&(isDeleted=TRUE)(objectGUID={escaped}))");
        let op = format!("searching {base} for the tombstone of {dn}");
        let result = self
            .ldap
            .with_controls(show_deleted())
            .with_timeout(self.timeout)
            .search(&base, Scope::OneLevel, &filter, vec!["1.1"])
            .await
            .map_err(|e| self.op_error(&op, e))?;
        let (entries, res) = (result.0, result.1);
        if res.rc == 32 {
            return Ok(false);
        }
        self.check_search_result("Deleted Objects container", &base, &op, res)?;
        let Some(tombstone) = readable(&entries).next().map(|e| e.dn_shown().into_owned()) else {
            return Ok(false);
        };
        let mods: Vec<Mod<Vec<u8>>> = vec![
            Mod::Delete(b"isDeleted".to_vec(), HashSet::new()),
            Mod::Replace(
                b"distinguishedName".to_vec(),
                HashSet::from([dn.as_str().as_bytes().to_vec()]),
            ),
        ];
        let res = self
            .ldap
            .with_controls(show_deleted())
            .with_timeout(self.timeout)
            .modify(&tombstone, mods)
            .await
            .map_err(|e| self.op_error(&format!("reanimation of {tombstone} as {dn}"), e))?;
        self.write_result("reanimation", &format!("{tombstone} as {dn}"), res)?;
        Ok(true)
    }
}

/// The Show Deleted control, critical: sent only where the root DSE advertises it.
fn show_deleted() -> RawControl {
    RawControl {
        ctype: oid::SHOW_DELETED.to_string(),
        crit: true,
        val: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An add whose DN is taken is a name clash, and says so instead of blaming a concurrent
    /// change; the real conflicts still say the entry changed. See: #19
    #[test]
    fn an_add_refused_with_68_is_a_name_clash() {
        let clash = conflict_reason("add", 68).unwrap();
        assert!(clash.starts_with("an entry with this DN already exists (LDAP 68): a name clash"));
        assert!(!clash.contains("changed since it was planned"), "{clash}");
        for (op, rc) in [
            ("modify", 122),
            ("delete", 122),
            ("modify", 16),
            ("modify", 20),
        ] {
            let reason = conflict_reason(op, rc).unwrap();
            assert!(reason.starts_with(CHANGED), "{op} {rc}: {reason}");
        }
        assert_eq!(conflict_reason("add", 32), None);
        assert_eq!(conflict_reason("modify", 50), None);
    }

    /// LDAP 32 says which object is missing: an add's parent (with what the server found), or
    /// the entry written. With the op's DN in front, the line names both. See: #19
    #[test]
    fn ldap_32_names_what_is_missing() {
        let e = Error::Operation {
            op: "add of CN={e},CN=Application Contacts,DC=x".to_string(),
            url: "ldap://127.0.0.1:1".to_string(),
            rc: 32,
            text: explained("add", 32, "DC=x", ""),
        };
        assert_eq!(
            e.to_string(),
            "add of CN={e},CN=Application Contacts,DC=x on ldap://127.0.0.1:1 failed: LDAP 32: no such object: the parent entry does not exist (the server found DC=x)"
        );
        assert_eq!(
            explained("modify", 32, "", "0000208D: NameErr"),
            "no such object: the entry does not exist; 0000208D: NameErr"
        );
        assert_eq!(explained("modify", 50, "", "denied"), "denied");
    }
}
