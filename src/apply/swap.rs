//! One swap, journaled: the before-image, each write between a `started` and an `ok`/`failed`
//! record, the read-back of every endpoint written, the rollback when a write after the retire
//! fails, and the `swap_done` that closes it.
//!
//! A swap that fails ends with a typed [`SwapFailed`] (its URI, the [`SwapFault`], what became
//! of the user), and the run goes on with the next swap. A lost directory or audit log is an
//! [`ApplyError`] instead: the run stops, and a swap the directory dropped stays open for
//! recovery.

use std::fmt;
use std::ops::ControlFlow;

use super::failpoint::fail_point;
use super::{ApplyError, DirectoryWriter, WriteError, note, recreate_hint, restore_user};
use crate::audit::{AuditSink, Event, Outcome, Step};
use crate::model::{AttrValues, Dn, Entry, Modification, SipUri, attr};
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
}

/// What became of a retired user when a later write of its swap failed.
#[derive(Debug)]
pub(crate) enum Rollback {
    /// The failure came before the user was touched (or there was no user).
    NotNeeded,
    /// The user was restored from its before-image.
    Restored,
    /// Restoring failed; the before-image stays in the audit log for `pcsync restore`.
    Failed(RollbackFailed),
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rollback::NotNeeded => Ok(()),
            Rollback::Restored => f.write_str("; the user was restored"),
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

/// Runs one swap: the ready changes for one SIP URI, in plan order.
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
    let mut retired = None;
    for c in changes {
        if let ControlFlow::Break(end) = make(swap, c, &mut retired, writer, audit).await? {
            return Ok(end);
        }
    }
    verify_written(swap, changes, writer, audit).await
}

/// The user retired earlier in the swap, with its before-image: what a rollback restores.
type Retired<'c> = Option<(Entry, &'c RetireUser)>;

/// Makes one change between its `started` and `ok`/`failed` records. `Break` when the swap
/// ended there (failed, and rolled back if the user was already retired).
async fn make<'c>(
    swap: &str,
    c: &'c Change,
    retired: &mut Retired<'c>,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<SwapEnd>, ApplyError> {
    let step = step_of(c);
    let result = match c {
        Change::RetireUser(r) => {
            let image = match before_image(swap, c, r, writer, audit).await? {
                ControlFlow::Continue(image) => image,
                ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
            };
            audit.record(note(Event::Step, Outcome::Started, swap, c.header()).step(step))?;
            let result = match r.retire {
                Retire::Disable => writer.modify(c.dn(), &disable_mods(r), &r.expect).await,
                Retire::Delete => writer.delete(c.dn(), &r.expect).await,
            };
            *retired = Some((image, r));
            result
        }
        Change::CreateEndpoint(e) => {
            audit.record(note(Event::Step, Outcome::Started, swap, c.header()).step(step))?;
            writer.add(&e.to_entry()).await
        }
        Change::RepointEndpoint(p) => {
            audit.record(note(Event::Step, Outcome::Started, swap, c.header()).step(step))?;
            writer.modify(c.dn(), &repoint_mods(p), &p.expect).await
        }
    };
    match result {
        Ok(()) => {
            audit.record(note(Event::Step, Outcome::Ok, swap, c.header()).step(step))?;
            if matches!(c, Change::RetireUser(_)) {
                fail_point("swap-user-retired").await;
                fail_point("swap-pause-after-retire").await;
            } else {
                fail_point("swap-endpoint-added").await;
            }
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
            // A failure after the user was retired means the user must come back.
            let end = match retired.take() {
                Some((image, user)) if !matches!(c, Change::RetireUser(_)) => {
                    rollback(swap, user, &image, fault, writer, audit).await?
                }
                _ => {
                    let end = note(Event::SwapDone, Outcome::Failed, swap, c.header());
                    audit.record(end.message(fault.to_string()))?;
                    SwapFailed::new(c.sip_uri(), fault)
                }
            };
            Ok(ControlFlow::Break(SwapEnd::Failed(Box::new(end))))
        }
    }
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

/// Reads back every endpoint the swap wrote, then closes the swap: done, or failed at the
/// first endpoint that does not carry what was written.
async fn verify_written(
    swap: &str,
    changes: &[Change],
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapEnd, ApplyError> {
    for c in changes
        .iter()
        .filter(|c| !matches!(c, Change::RetireUser(_)))
    {
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
                audit.record(
                    note(Event::SwapDone, Outcome::Failed, swap, c.header()).message(message),
                )?;
                return Ok(SwapEnd::Failed(Box::new(SwapFailed::new(
                    c.sip_uri(),
                    fault,
                ))));
            }
        }
    }
    fail_point("swap-endpoint-verified").await;
    if let Some(first) = changes.first() {
        audit.record(note(Event::SwapDone, Outcome::Ok, swap, first.header()))?;
    }
    Ok(SwapEnd::Done)
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

/// The modify that clears the attributes a disable removes, conditional on their exact values.
fn disable_mods(r: &RetireUser) -> Vec<Modification> {
    r.cleared
        .iter()
        .cloned()
        .map(Modification::Delete)
        .collect()
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

/// Puts the retired `user` back from its before-image after `cause` failed its swap, and
/// journals it. Returns the swap's failure with what became of the user; `Err` only when the
/// directory went away again (the swap stays open) or the audit log failed.
pub(super) async fn rollback(
    swap: &str,
    user: &RetireUser,
    image: &Entry,
    cause: SwapFault,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapFailed, ApplyError> {
    let rec = |outcome| note(Event::Rollback, outcome, swap, &user.header).step(Step::RestoreUser);
    audit.record(rec(Outcome::Started))?;
    let rollback = match restore_user(writer, user.retire, image).await {
        Ok(()) => {
            let mut done =
                rec(Outcome::Ok).message(format!("restored from the before-image after: {cause}"));
            done.after = Some(image.clone());
            audit.record(done)?;
            Rollback::Restored
        }
        // The swap stays open: the next run's recovery retries the endpoint, then the rollback.
        Err(e) if e.is_transient() => {
            return Err(lost(audit, swap, &user.header, Step::RestoreUser, e));
        }
        Err(e) => {
            let hint = match user.retire {
                Retire::Disable => String::new(),
                Retire::Delete => recreate_hint(&e, &image.dn),
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
        sip_uri: user.header.sip_uri.clone(),
        fault: cause,
        rollback,
    })
}
