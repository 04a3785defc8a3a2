//! [`DirectoryWriter`]: the writes apply, restore and the lease make, and the one read they need
//! to make them safely; [`WriteError`]: what can go wrong with them, in the terms the callers act
//! on (someone else changed the entry, the directory went away, the server refused); and the
//! adapter that puts [`ldap::Directory`]'s conditional writes behind the trait.
//!
//! The trait owns its error type, so `ldap` does not know `apply` exists: the adapter here maps
//! each [`ldap::Error`] once, keeping it as the source (its text is what the audit log records).

use std::future::Future;

use crate::estate::routed::Routed;
use crate::ldap::{self, Directory};
use crate::model::{AttrValues, Dn, Entry, Modification};

/// The source of a [`WriteError`]: the directory's own error (an [`ldap::Error`] for real).
pub type WriteSource = Box<dyn std::error::Error + Send + Sync>;

/// Why a read or write through [`DirectoryWriter`] failed. Every variant keeps the DN and the
/// directory's own error, and renders as that error (one line naming the server and the DN).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The entry is not as the plan saw it: changed or gone. Nothing was written.
    #[error("{source}")]
    Conflict {
        dn: Dn,
        #[source]
        source: WriteSource,
    },
    /// An add found its DN taken (LDAP 68): a name clash with an object the plan did not read,
    /// not a change to anything it read. Nothing was written.
    #[error("{source}")]
    Exists {
        dn: Dn,
        #[source]
        source: WriteSource,
    },
    /// The directory went away (unreachable, timed out, connection lost). Whether a write took
    /// effect is unknown: the caller stops and lets recovery look once the directory is back.
    #[error("{source}")]
    Transient {
        dn: Dn,
        #[source]
        source: WriteSource,
    },
    /// The bind account lacks the right (LDAP 50, insufficientAccessRights). Nothing was written.
    #[error("{source}")]
    Denied {
        dn: Dn,
        #[source]
        source: WriteSource,
    },
    /// The server refused for another reason (schema, constraint, unwilling); `rc` is the LDAP
    /// result code when there was one. Nothing was written.
    #[error("{source}")]
    Refused {
        dn: Dn,
        rc: Option<u32>,
        #[source]
        source: WriteSource,
    },
}

impl WriteError {
    /// Sorts a directory error on `dn` into the variant its callers act on.
    pub(crate) fn from_ldap(dn: &Dn, e: ldap::Error) -> WriteError {
        let dn = dn.clone();
        let rc = e.rc();
        if e.is_transient() {
            WriteError::Transient {
                dn,
                source: Box::new(e),
            }
        } else if rc == Some(ENTRY_ALREADY_EXISTS) {
            // An add whose DN is taken: a name clash, not a change to what the plan read.
            WriteError::Exists {
                dn,
                source: Box::new(e),
            }
        } else if matches!(e, ldap::Error::Conflict { .. }) || rc == Some(NO_SUCH_OBJECT) {
            // A write to an entry that is gone is the same race as one that changed.
            WriteError::Conflict {
                dn,
                source: Box::new(e),
            }
        } else if rc == Some(INSUFFICIENT_ACCESS_RIGHTS) {
            WriteError::Denied {
                dn,
                source: Box::new(e),
            }
        } else {
            WriteError::Refused {
                dn,
                rc,
                source: Box::new(e),
            }
        }
    }

    /// The LDAP result code the directory sent, when it sent one.
    pub(crate) fn rc(&self) -> Option<u32> {
        match self {
            WriteError::Refused { rc, .. } => *rc,
            WriteError::Conflict { source, .. }
            | WriteError::Exists { source, .. }
            | WriteError::Transient { source, .. }
            | WriteError::Denied { source, .. } => source
                .downcast_ref::<ldap::Error>()
                .and_then(ldap::Error::rc),
        }
    }

    /// True when the directory went away: the caller stops instead of writing on.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, WriteError::Transient { .. })
    }

    /// The DN the failed operation was on.
    #[cfg(test)]
    pub(crate) fn dn(&self) -> &Dn {
        match self {
            WriteError::Conflict { dn, .. }
            | WriteError::Exists { dn, .. }
            | WriteError::Transient { dn, .. }
            | WriteError::Denied { dn, .. }
            | WriteError::Refused { dn, .. } => dn,
        }
    }
}

/// LDAP 68, entryAlreadyExists.
const ENTRY_ALREADY_EXISTS: u32 = 68;
/// LDAP 32, noSuchObject.
const NO_SUCH_OBJECT: u32 = 32;
/// LDAP 50, insufficientAccessRights.
const INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;

/// The writes pcsync makes, and the one read it needs to make them safely. `expect` lists the
/// values the plan saw; the write must fail with [`WriteError::Conflict`] if they changed.
pub trait DirectoryWriter {
    /// The complete entry (every user attribute, binary-safe), or `None` if it does not exist.
    fn read_entry(&mut self, dn: &Dn) -> impl Future<Output = Result<Option<Entry>, WriteError>>;
    fn add(&mut self, entry: &Entry) -> impl Future<Output = Result<(), WriteError>>;
    fn delete(
        &mut self,
        dn: &Dn,
        expect: &[AttrValues],
    ) -> impl Future<Output = Result<(), WriteError>>;
    fn modify(
        &mut self,
        dn: &Dn,
        mods: &[Modification],
        expect: &[AttrValues],
    ) -> impl Future<Output = Result<(), WriteError>>;
    /// Brings the deleted object whose objectGUID is `guid` back to `dn` with its identity
    /// (Active Directory's tombstone reanimation). `Ok(false)` when the directory keeps no such
    /// tombstone (OpenLDAP keeps none).
    fn reanimate(&mut self, guid: &[u8], dn: &Dn)
    -> impl Future<Output = Result<bool, WriteError>>;
}

/// The real directory: its conditional writes (src/ldap/write.rs), errors sorted once here.
impl DirectoryWriter for Directory {
    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, WriteError> {
        Directory::read_entry(self, dn)
            .await
            .map_err(|e| WriteError::from_ldap(dn, e))
    }

    async fn add(&mut self, entry: &Entry) -> Result<(), WriteError> {
        Directory::add(self, entry)
            .await
            .map_err(|e| WriteError::from_ldap(&entry.dn, e))
    }

    async fn delete(&mut self, dn: &Dn, expect: &[AttrValues]) -> Result<(), WriteError> {
        Directory::delete(self, dn, expect)
            .await
            .map_err(|e| WriteError::from_ldap(dn, e))
    }

    async fn modify(
        &mut self,
        dn: &Dn,
        mods: &[Modification],
        expect: &[AttrValues],
    ) -> Result<(), WriteError> {
        Directory::modify(self, dn, mods, expect)
            .await
            .map_err(|e| WriteError::from_ldap(dn, e))
    }

    async fn reanimate(&mut self, guid: &[u8], dn: &Dn) -> Result<bool, WriteError> {
        Directory::reanimate(self, guid, dn)
            .await
            .map_err(|e| WriteError::from_ldap(dn, e))
    }
}

/// Writes routed to each object's domain (several domains in a forest, see
/// [`crate::estate::routed`]): the same conditional writes, on the right domain's write server.
impl DirectoryWriter for Routed<'_> {
    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, WriteError> {
        self.read(dn)
            .await
            .map_err(|e| WriteError::from_ldap(dn, e))
    }

    async fn add(&mut self, entry: &Entry) -> Result<(), WriteError> {
        let dir = writer_for(self, &entry.dn).await?;
        DirectoryWriter::add(dir, entry).await
    }

    async fn delete(&mut self, dn: &Dn, expect: &[AttrValues]) -> Result<(), WriteError> {
        let dir = writer_for(self, dn).await?;
        DirectoryWriter::delete(dir, dn, expect).await
    }

    async fn modify(
        &mut self,
        dn: &Dn,
        mods: &[Modification],
        expect: &[AttrValues],
    ) -> Result<(), WriteError> {
        let dir = writer_for(self, dn).await?;
        DirectoryWriter::modify(dir, dn, mods, expect).await
    }

    /// On the write server of `dn`'s domain, whose Deleted Objects container keeps the tombstone.
    async fn reanimate(&mut self, guid: &[u8], dn: &Dn) -> Result<bool, WriteError> {
        let dir = writer_for(self, dn).await?;
        DirectoryWriter::reanimate(dir, guid, dn).await
    }
}

/// The connection of `dn`'s domain's write server, its opening error sorted like a write's.
async fn writer_for<'r>(
    routed: &'r mut Routed<'_>,
    dn: &Dn,
) -> Result<&'r mut Directory, WriteError> {
    routed
        .for_dn(dn)
        .await
        .map_err(|e| WriteError::from_ldap(dn, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(rc: u32) -> ldap::Error {
        ldap::Error::Operation {
            op: "delete of cn=u,dc=x".into(),
            url: "ldap://127.0.0.1:389".into(),
            rc,
            text: String::new(),
        }
    }

    #[test]
    fn directory_errors_are_sorted_by_what_the_caller_does_and_keep_their_text() {
        let conflict = ldap::Error::Conflict {
            op: "delete".into(),
            dn: "cn=u,dc=x".into(),
            url: "ldap://127.0.0.1:389".into(),
            reason: "assertion failed (LDAP 122)".into(),
            rc: Some(122),
        };
        let text = conflict.to_string();
        let dn = Dn::parse("cn=u,dc=x").unwrap();
        let e = WriteError::from_ldap(&dn, conflict);
        assert!(matches!(e, WriteError::Conflict { .. }), "{e:?}");
        assert_eq!(e.to_string(), text);
        assert_eq!(e.dn(), &dn);

        // An add's DN taken is a name clash, not a change to what the plan read.
        let clash = ldap::Error::Conflict {
            op: "add".into(),
            dn: "cn=u,dc=x".into(),
            url: "ldap://127.0.0.1:389".into(),
            reason: "an entry with this DN already exists (LDAP 68): a name clash".into(),
            rc: Some(68),
        };
        let e = WriteError::from_ldap(&dn, clash);
        assert!(matches!(e, WriteError::Exists { .. }), "{e:?}");

        let lost = ldap::Error::ConnectionLost {
            op: "delete of cn=u,dc=x".into(),
            url: "ldap://127.0.0.1:389".into(),
            reason: "end of stream".into(),
        };
        assert!(WriteError::from_ldap(&dn, lost).is_transient());
        assert!(matches!(
            WriteError::from_ldap(&dn, operation(32)),
            WriteError::Conflict { .. }
        ));
        assert!(matches!(
            WriteError::from_ldap(&dn, operation(50)),
            WriteError::Denied { .. }
        ));
        let refused = WriteError::from_ldap(&dn, operation(65));
        assert!(
            matches!(refused, WriteError::Refused { rc: Some(65), .. }),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            "delete of cn=u,dc=x on ldap://127.0.0.1:389 failed: LDAP 65"
        );
    }
}
