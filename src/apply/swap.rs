//! One swap, journaled: the before-image, each write between a `started` and an `ok`/`failed`
//! record, the read-back of every endpoint written, the rollback when a write after the release
//! fails, and the `swap_done` that closes it.
//!
//! # The order of a swap, and why
//!
//! Microsoft's documented order (delete or disable the user, then New-CsPersistentChatEndpoint)
//! exists so that the URI is never held by two objects at once. pcsync reaches the same end
//! without ever destroying an identity before its replacement is proven:
//!
//! 1. **Release.** The user gives up the URI by a conditional modify of *the same object*: its
//!    msRTCSIP-* values are cleared (what Disable-CsUser does). Nothing holds the URI twice,
//!    and this step is undone by adding the values back, with no change of identity (same
//!    objectGUID/objectSid, group memberships, password).
//! 2. **Add and read back.** The endpoint is added and read back. If the add is refused, or
//!    the endpoint cannot be read back as written, nothing is lost: a refused add gives the
//!    user its values back (the rollback); a wrong read-back leaves the user released, never
//!    deleted, for an administrator to look at.
//! 3. **Delete.** Only with `retire = "delete"`, and only once the endpoint is proven, the
//!    released user is deleted, conditional on its still being released. A refused delete
//!    fails the swap but loses nothing: the endpoint serves the URI, the user stays released.
//!
//! Deleting first (the old order) made every failed add a re-create: on Active Directory a new
//! security principal (new objectGUID and objectSid, no group memberships, no password), and
//! with an object in the endpoint's way, one such re-create per run.
//!
//! A swap that fails ends with a typed [`SwapFailed`] (its URI, the [`SwapFault`], what became
//! of the user), and the run goes on with the next swap. A lost directory or audit log is an
//! [`ApplyError`] instead: the run stops, and a swap the directory dropped stays open for
//! recovery ([`super::recover()`], which reads the same order from what the directory shows).

use std::fmt;
use std::ops::ControlFlow;

use super::failpoint::fail_point;
use super::{ApplyError, DirectoryWriter, WriteError, note, recreate_entry, recreate_hint};
use crate::audit::{AuditSink, Event, Outcome, Step};
use crate::model::{AttrName, AttrValues, Dn, Entry, Modification, SipUri, attr};
use crate::plan::desired::Retire;
use crate::plan::{Change, Header, RepointEndpoint, RetireUser};

/// How a swap ended, when the run goes on.
#[derive(Debug)]
pub(super) enum SwapEnd {
    Done,
    /// Boxed: rare, and large next to `Done`.
    Failed(Box<SwapFailed>),
}

/// A swap that did not complete: its URI, what went wrong, and what became of the user. Renders
/// as the line `reconcile --apply` prints after `FAILED`.
#[derive(Debug, thiserror::Error)]
#[error("{sip_uri}: {fault}{rollback}")]
pub(crate) struct SwapFailed {
    pub sip_uri: SipUri,
    pub fault: SwapFault,
    pub rollback: Rollback,
}

impl SwapFailed {
    fn new(sip_uri: &SipUri, fault: SwapFault) -> SwapFailed {
        SwapFailed {
            sip_uri: sip_uri.clone(),
            fault,
            rollback: Rollback::NotNeeded,
        }
    }

    /// Whether the user was restored from its before-image.
    pub(crate) fn rolled_back(&self) -> bool {
        matches!(self.rollback, Rollback::Restored)
    }
}

/// Why a swap stopped short. The text is what the audit log records for the failed step and the
/// swap's end; each names the DN at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SwapFault {
    /// The user to retire is gone since planning; nothing was written.
    #[error("{dn} no longer exists")]
    Gone { dn: Dn },
    /// The object no longer shows what the plan saw; nothing was written.
    #[error("{dn} changed since it was planned: {reason}")]
    Changed { dn: Dn, reason: String },
    /// The directory refused a read or write (and stayed reachable).
    #[error(transparent)]
    Refused(#[from] WriteError),
    /// The endpoint just written cannot be found.
    #[error("{dn} is missing after the write")]
    Missing { dn: Dn },
    /// The endpoint read back does not carry what was written.
    #[error("{dn} read back wrong: {reason}")]
    ReadBack { dn: Dn, reason: String },
    /// The endpoint is proven, but the released user could not be deleted.
    #[error(
        "the endpoint serves the URI, but {dn} was released but not deleted: {source}; it holds no msRTCSIP-* values, so nothing is lost: delete it by hand, or use retire = \"disable\""
    )]
    NotDeleted {
        dn: Dn,
        /// Boxed: keeps `SwapFault` small on the paths where nothing failed.
        #[source]
        source: Box<WriteError>,
    },
}

/// What became of the user when a later step of its swap failed.
#[derive(Debug)]
pub(crate) enum Rollback {
    /// The failure came before the user was touched, or after the endpoint was proven (or there
    /// was no user).
    NotNeeded,
    /// The user was given its values back (or, if it was gone, re-created from its
    /// before-image).
    Restored,
    /// The endpoint was written but not proven: the user stays released (not deleted), its
    /// values in the before-image.
    Released { dn: Dn },
    /// Restoring failed; the before-image stays in the audit log for `pcsync restore`.
    Failed(RollbackFailed),
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rollback::NotNeeded => Ok(()),
            Rollback::Restored => f.write_str("; the user was restored"),
            Rollback::Released { dn } => write!(
                f,
                "; {dn} stays released (its msRTCSIP-* values are in the before-image), not deleted"
            ),
            Rollback::Failed(e) => write!(f, "; {e}"),
        }
    }
}

/// The user could not be put back. Names the swap whose before-image `pcsync restore` uses, and
/// on a refused re-create (LDAP 50) the right the bind account lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "ROLLBACK FAILED: {source}{hint}; the before-image is in the audit log (swap {swap}); run `pcsync restore`"
)]
pub(crate) struct RollbackFailed {
    pub swap: String,
    pub source: WriteError,
    /// Empty, or what to grant where (see [`recreate_hint`]).
    hint: String,
}

/// How a user is put back after its swap failed.
#[derive(Debug, Clone)]
pub(super) enum PutBack {
    /// The user was released: these values (what the release cleared) are added back to the
    /// same object, conditional on their still being absent. Its identity never changes.
    Values(Vec<AttrValues>),
    /// The object is gone (deleted by a version that deleted first, or by someone else): the
    /// only way back is to re-create it from the before-image, as a new object.
    Recreate,
}

/// The user released in this swap: its before-image, its change, and the values cleared.
struct Released<'c> {
    image: Entry,
    user: &'c RetireUser,
    cleared: Vec<AttrValues>,
}

/// Runs one swap: the ready changes for one SIP URI, in the order the module docs give.
pub(super) async fn run_swap(
    swap: &str,
    changes: &[Change],
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapEnd, ApplyError> {
    let Some(first) = changes.first() else {
        return Ok(SwapEnd::Done);
    };
    let mut intent = note(Event::SwapIntent, Outcome::Started, swap, first.header());
    intent.changes = Some(changes.to_vec());
    audit.record(intent)?;
    let user = changes.iter().find_map(|c| match c {
        Change::RetireUser(r) => Some(r),
        _ => None,
    });
    let endpoints: Vec<&Change> = changes
        .iter()
        .filter(|c| !matches!(c, Change::RetireUser(_)))
        .collect();
    let released = match user {
        Some(r) => match release(swap, r, writer, audit).await? {
            ControlFlow::Continue(released) => Some(released),
            ControlFlow::Break(end) => return Ok(end),
        },
        None => None,
    };
    for c in &endpoints {
        if let ControlFlow::Break(end) =
            write_endpoint(swap, c, released.as_ref(), writer, audit).await?
        {
            return Ok(end);
        }
    }
    if let ControlFlow::Break(end) =
        verify_written(swap, &endpoints, released.as_ref(), writer, audit).await?
    {
        return Ok(end);
    }
    if let Some(r) = &released
        && r.user.retire == Retire::Delete
        && let Err(fault) = delete_released(swap, &r.user.header, writer, audit).await?
    {
        return fail_after_proof(audit, swap, r.user, fault).map(SwapEnd::Failed);
    }
    audit.record(note(Event::SwapDone, Outcome::Ok, swap, first.header()))?;
    Ok(SwapEnd::Done)
}

/// Step 1: the before-image, then the conditional modify that clears the user's msRTCSIP-*
/// values. `Break` when the swap ended there, nothing written.
async fn release<'c>(
    swap: &str,
    r: &'c RetireUser,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<SwapEnd, Released<'c>>, ApplyError> {
    let c = Change::RetireUser(r.clone());
    let image = match before_image(swap, &c, r, writer, audit).await? {
        ControlFlow::Continue(image) => image,
        ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
    };
    let cleared = released_values(r, &image);
    let h = &r.header;
    audit.record(note(Event::Step, Outcome::Started, swap, h).step(Step::DisableUser))?;
    let mods: Vec<Modification> = cleared.iter().cloned().map(Modification::Delete).collect();
    match writer.modify(&h.dn, &mods, &r.expect).await {
        Ok(()) => {
            let mut ok = note(Event::Step, Outcome::Ok, swap, h).step(Step::DisableUser);
            ok.after = Some(without(&image, &cleared));
            audit.record(ok)?;
            fail_point("swap-user-retired").await;
            fail_point("swap-pause-after-retire").await;
            Ok(ControlFlow::Continue(Released {
                image,
                user: r,
                cleared,
            }))
        }
        Err(e) if e.is_transient() => Err(lost(audit, swap, h, Step::DisableUser, e)),
        Err(e) => fail_swap(audit, swap, &c, Step::DisableUser, SwapFault::Refused(e))
            .map(ControlFlow::Break),
    }
}

/// What the release clears: with `retire = "disable"` the values the plan lists (what a saved
/// plan showed the administrator); with `retire = "delete"` every msRTCSIP-* value of the
/// before-image (all of which the delete would remove anyway). The rollback adds back exactly
/// these.
pub(super) fn released_values(r: &RetireUser, image: &Entry) -> Vec<AttrValues> {
    match r.retire {
        Retire::Disable => r.cleared.clone(),
        Retire::Delete => image
            .attributes
            .iter()
            .filter(|a| a.name.is_msrtcsip() && !a.values.is_empty())
            .cloned()
            .collect(),
    }
}

/// `image` without the `cleared` values: what the user looks like once released.
fn without(image: &Entry, cleared: &[AttrValues]) -> Entry {
    let mut out = image.clone();
    for c in cleared {
        for a in out.attributes.iter_mut().filter(|a| a.name == c.name) {
            a.values.retain(|v| !c.values.contains(v));
        }
    }
    out.attributes.retain(|a| !a.values.is_empty());
    out
}

/// Step 2: adds (or repoints) one endpoint between its `started` and `ok`/`failed` records.
/// `Break` when the swap ended there: failed, and the released user given its values back.
async fn write_endpoint(
    swap: &str,
    c: &Change,
    released: Option<&Released<'_>>,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<SwapEnd>, ApplyError> {
    let step = step_of(c);
    audit.record(note(Event::Step, Outcome::Started, swap, c.header()).step(step))?;
    let result = match c {
        Change::CreateEndpoint(e) => writer.add(&e.to_entry()).await,
        Change::RepointEndpoint(p) => writer.modify(c.dn(), &repoint_mods(p), &p.expect).await,
        // Not an endpoint change; `run_swap` never passes one.
        Change::RetireUser(_) => Ok(()),
    };
    match result {
        Ok(()) => {
            audit.record(note(Event::Step, Outcome::Ok, swap, c.header()).step(step))?;
            fail_point("swap-endpoint-added").await;
            Ok(ControlFlow::Continue(()))
        }
        Err(e) if e.is_transient() => Err(lost(audit, swap, c.header(), step, e)),
        Err(e) => {
            let fault = SwapFault::Refused(e);
            audit.record(
                note(Event::Step, Outcome::Failed, swap, c.header())
                    .step(step)
                    .message(fault.to_string()),
            )?;
            let end = match released {
                Some(r) => {
                    let put_back = PutBack::Values(r.cleared.clone());
                    rollback(
                        swap,
                        &r.user.header,
                        &r.image,
                        &put_back,
                        fault,
                        writer,
                        audit,
                    )
                    .await?
                }
                None => {
                    let end = note(Event::SwapDone, Outcome::Failed, swap, c.header());
                    audit.record(end.message(fault.to_string()))?;
                    SwapFailed::new(c.sip_uri(), fault)
                }
            };
            Ok(ControlFlow::Break(SwapEnd::Failed(Box::new(end))))
        }
    }
}

/// Step 3 (with `retire = "delete"`): deletes the released user, conditional on its holding no
/// SIP address. The inner `Err` is a refusal (the swap fails, nothing is lost); the outer one a
/// lost directory or audit log.
pub(super) async fn delete_released(
    swap: &str,
    user: &Header,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Result<(), SwapFault>, ApplyError> {
    audit.record(note(Event::Step, Outcome::Started, swap, user).step(Step::DeleteUser))?;
    let released = [AttrValues::absent(&AttrName::new(
        attr::PRIMARY_USER_ADDRESS,
    ))];
    match writer.delete(&user.dn, &released).await {
        Ok(()) => {
            audit.record(note(Event::Step, Outcome::Ok, swap, user).step(Step::DeleteUser))?;
            fail_point(super::failpoint::USER_DELETED).await;
            Ok(Ok(()))
        }
        Err(e) if e.is_transient() => Err(lost(audit, swap, user, Step::DeleteUser, e)),
        Err(e) => {
            let fault = SwapFault::NotDeleted {
                dn: user.dn.clone(),
                source: Box::new(e),
            };
            let rec = note(Event::Step, Outcome::Failed, swap, user).step(Step::DeleteUser);
            audit.record(rec.message(fault.to_string()))?;
            Ok(Err(fault))
        }
    }
}

/// Ends a swap that failed after its endpoint was written: the user stays as it is (released,
/// never deleted unproven).
fn fail_after_proof(
    audit: &mut impl AuditSink,
    swap: &str,
    user: &RetireUser,
    fault: SwapFault,
) -> Result<Box<SwapFailed>, ApplyError> {
    let end = note(Event::SwapDone, Outcome::Failed, swap, &user.header);
    audit.record(end.message(fault.to_string()))?;
    let rollback = match fault {
        SwapFault::NotDeleted { .. } => Rollback::NotNeeded,
        _ => Rollback::Released {
            dn: user.header.dn.clone(),
        },
    };
    Ok(Box::new(SwapFailed {
        sip_uri: user.header.sip_uri.clone(),
        fault,
        rollback,
    }))
}

/// Reads the user's complete entry, checks it still shows what the plan saw, and records it
/// durably before anything is changed. `Break` when the swap ended there, nothing written.
async fn before_image(
    swap: &str,
    c: &Change,
    r: &RetireUser,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<SwapEnd, Entry>, ApplyError> {
    let step = step_of(c);
    let dn = c.dn();
    let image = match writer.read_entry(dn).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            let fault = SwapFault::Gone { dn: dn.clone() };
            return fail_swap(audit, swap, c, step, fault).map(ControlFlow::Break);
        }
        Err(e) if e.is_transient() => return Err(lost(audit, swap, c.header(), step, e)),
        Err(e) => {
            return fail_swap(audit, swap, c, step, SwapFault::Refused(e)).map(ControlFlow::Break);
        }
    };
    if let Err(reason) = image.check(&r.expect) {
        let fault = SwapFault::Changed {
            dn: dn.clone(),
            reason,
        };
        return fail_swap(audit, swap, c, step, fault).map(ControlFlow::Break);
    }
    let mut img = note(Event::BeforeImage, Outcome::Ok, swap, c.header());
    img.before = Some(image.clone());
    audit.record(img)?;
    fail_point("swap-before-image-written").await;
    Ok(ControlFlow::Continue(image))
}

/// Reads back every endpoint the swap wrote. `Break` when one does not carry what was written:
/// the swap ends failed there, and a released user stays released (never deleted unproven).
async fn verify_written(
    swap: &str,
    endpoints: &[&Change],
    released: Option<&Released<'_>>,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<SwapEnd>, ApplyError> {
    for c in endpoints {
        let verified = match verify(writer, c).await {
            Ok(v) => v,
            Err(e) => return Err(lost(audit, swap, c.header(), Step::Verify, e)),
        };
        match verified {
            Ok(after) => {
                let mut rec = note(Event::Step, Outcome::Ok, swap, c.header()).step(Step::Verify);
                rec.after = Some(after);
                audit.record(rec)?;
            }
            Err(fault) => {
                let message = fault.to_string();
                let rec = note(Event::Step, Outcome::Failed, swap, c.header()).step(Step::Verify);
                audit.record(rec.message(&message))?;
                let failed = match released {
                    Some(r) => fail_after_proof(audit, swap, r.user, fault)?,
                    None => {
                        let end = note(Event::SwapDone, Outcome::Failed, swap, c.header());
                        audit.record(end.message(message))?;
                        Box::new(SwapFailed::new(c.sip_uri(), fault))
                    }
                };
                return Ok(ControlFlow::Break(SwapEnd::Failed(failed)));
            }
        }
    }
    fail_point("swap-endpoint-verified").await;
    Ok(ControlFlow::Continue(()))
}

/// The `step` a change is journaled as.
fn step_of(c: &Change) -> Step {
    match c {
        Change::RetireUser(r) if r.retire == Retire::Disable => Step::DisableUser,
        Change::RetireUser(_) => Step::DeleteUser,
        Change::CreateEndpoint(_) => Step::AddEndpoint,
        Change::RepointEndpoint(_) => Step::RepointEndpoint,
    }
}

/// The modify a repoint makes: old values out, new values in, in one operation.
fn repoint_mods(p: &RepointEndpoint) -> Vec<Modification> {
    let mut mods = Vec::new();
    for new in &p.new_values {
        if let Some(old) = p
            .expect
            .iter()
            .find(|e| e.name == new.name && !e.values.is_empty())
        {
            mods.push(Modification::Delete(old.clone()));
        }
        mods.push(Modification::Add(new.clone()));
    }
    mods
}

/// The directory went away mid-swap: records the failed step and returns the error that stops
/// the run, leaving the swap open (no `swap_done`) for the next run's recovery. No rollback: it
/// would go to the same dead connection, and recovery decides from what the directory shows once
/// it is back.
pub(super) fn lost(
    audit: &mut impl AuditSink,
    swap: &str,
    h: &Header,
    step: Step,
    e: WriteError,
) -> ApplyError {
    let rec = note(Event::Step, Outcome::Failed, swap, h)
        .step(step)
        .message(e.to_string());
    if let Err(audit) = audit.record(rec) {
        return ApplyError::Audit(audit);
    }
    ApplyError::Lost {
        swap: swap.to_string(),
        sip_uri: h.sip_uri.clone(),
        source: Box::new(e),
    }
}

/// Records a swap that failed before any write, and ends it.
fn fail_swap(
    audit: &mut impl AuditSink,
    swap: &str,
    c: &Change,
    step: Step,
    fault: SwapFault,
) -> Result<SwapEnd, ApplyError> {
    let message = fault.to_string();
    audit.record(
        note(Event::Step, Outcome::Failed, swap, c.header())
            .step(step)
            .message(&message),
    )?;
    audit.record(note(Event::SwapDone, Outcome::Failed, swap, c.header()).message(message))?;
    Ok(SwapEnd::Failed(Box::new(SwapFailed::new(
        c.sip_uri(),
        fault,
    ))))
}

/// Reads an endpoint back and checks it carries what the change wrote. The outer `Err` is a
/// lost directory (the caller stops); the inner one a read-back that does not match.
pub(super) async fn verify(
    writer: &mut impl DirectoryWriter,
    c: &Change,
) -> Result<Result<Entry, SwapFault>, WriteError> {
    match writer.read_entry(c.dn()).await {
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(Err(SwapFault::Refused(e))),
        Ok(None) => Ok(Err(SwapFault::Missing { dn: c.dn().clone() })),
        Ok(Some(entry)) => Ok(check_read_back(c, entry)),
    }
}

/// Whether the endpoint read back carries what the change wrote.
fn check_read_back(c: &Change, entry: Entry) -> Result<Entry, SwapFault> {
    let wanted: Vec<AttrValues> = c
        .attributes()
        .iter()
        .filter(|a| {
            [
                attr::PRIMARY_USER_ADDRESS,
                attr::PRIMARY_HOME_SERVER,
                attr::OWNER_URN,
                attr::USER_ENABLED,
            ]
            .iter()
            .any(|n| a.name.is(n))
        })
        .cloned()
        .collect();
    let wrong = |reason| SwapFault::ReadBack {
        dn: c.dn().clone(),
        reason,
    };
    // DN values are compared as DNs: AD (and slapd) store the target's canonical form,
    // whatever case and spacing the configuration used.
    let (dns, others): (Vec<AttrValues>, Vec<AttrValues>) = wanted
        .into_iter()
        .partition(|a| a.name.is(attr::PRIMARY_HOME_SERVER));
    entry.check(&others).map_err(wrong)?;
    for want in &dns {
        let got = entry.get(want.name.as_str());
        if as_dns(got).is_none() || as_dns(got) != as_dns(&want.values) {
            return Err(wrong(format!(
                "{} is {:?}, expected {:?}",
                want.name,
                got.iter()
                    .map(|v| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>(),
                want.texts().collect::<Vec<_>>()
            )));
        }
    }
    Ok(entry)
}

/// DN values as a set of parsed DNs, or `None` if one does not parse.
fn as_dns(values: &[Vec<u8>]) -> Option<std::collections::BTreeSet<Dn>> {
    values
        .iter()
        .map(|v| std::str::from_utf8(v).ok().and_then(|t| Dn::parse(t).ok()))
        .collect()
}

/// Puts the user back after `cause` failed its swap ([`PutBack`]: its values on the same
/// object, or a re-create when it is gone), and journals it. Returns the swap's failure with
/// what became of the user; `Err` only when the directory went away again (the swap stays
/// open) or the audit log failed.
pub(super) async fn rollback(
    swap: &str,
    user: &Header,
    image: &Entry,
    put_back: &PutBack,
    cause: SwapFault,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapFailed, ApplyError> {
    let rec = |outcome| note(Event::Rollback, outcome, swap, user).step(Step::RestoreUser);
    audit.record(rec(Outcome::Started))?;
    let result = match put_back {
        PutBack::Values(values) => super::add_back(writer, &image.dn, values).await,
        PutBack::Recreate => writer.add(&recreate_entry(image)).await,
    };
    let rollback = match result {
        Ok(()) => {
            let mut done =
                rec(Outcome::Ok).message(format!("restored from the before-image after: {cause}"));
            done.after = Some(image.clone());
            audit.record(done)?;
            Rollback::Restored
        }
        // The swap stays open: the next run's recovery retries the endpoint, then the rollback.
        Err(e) if e.is_transient() => {
            return Err(lost(audit, swap, user, Step::RestoreUser, e));
        }
        Err(e) => {
            let hint = match put_back {
                PutBack::Values(_) => String::new(),
                PutBack::Recreate => recreate_hint(&e, &image.dn),
            };
            let failed = RollbackFailed {
                swap: swap.to_string(),
                source: e,
                hint,
            };
            audit.record(rec(Outcome::Failed).message(failed.to_string()))?;
            Rollback::Failed(failed)
        }
    };
    Ok(SwapFailed {
        sip_uri: user.sip_uri.clone(),
        fault: cause,
        rollback,
    })
}
