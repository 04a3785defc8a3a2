//! Recovery: finishing the swaps a crashed (or cut-off) run left open, before anything else.
//!
//! What to do is decided from what the directory shows now, never from what the log hoped, and
//! in the order a swap makes its writes (release, add and read back, delete: see
//! [`super::swap`]):
//! - the user still holds the URI: nothing was written, and the next plan redoes the swap;
//! - the user was released: the endpoint is added (or found) and read back, then, with
//!   `retire = "delete"`, the user is deleted; if the add fails, the same object gets its
//!   values back;
//! - the user is gone (deleted by the last step, or by a version that deleted first): the
//!   endpoint is added (or found) and read back; only if that add fails is the user re-created
//!   from its before-image, since nothing else can bring it back.
//!
//! A directory that is still away leaves the swap open for the next run.

use std::ops::ControlFlow;

use super::swap::{PutBack, SwapFault, delete_released, lost, released_values, rollback, verify};
use super::{ApplyError, DirectoryWriter, WriteError, note};
use crate::audit::{AuditSink, Event, Outcome, Step, Unfinished};
use crate::model::{SipUri, attr};
use crate::plan::desired::Retire;
use crate::plan::{Change, CreateEndpoint, RetireUser};

/// What recovery did with one unfinished swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub swap: String,
    pub sip_uri: SipUri,
    pub outcome: Outcome,
    pub message: String,
}

/// How recovery ended one swap: the `recovery` record's outcome and message.
type Ended = (Outcome, String);

/// Completes or rolls back each unfinished swap, and records a `recovery` for each it closed.
pub(crate) async fn recover(
    unfinished: &[Unfinished],
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Vec<Recovered>, ApplyError> {
    let mut out = Vec::new();
    for u in unfinished {
        let Some(first) = u.changes.first() else {
            continue;
        };
        if let Some((outcome, message)) = recover_one(u, writer, audit).await? {
            let rec = note(Event::Recovery, outcome, &u.swap, first.header());
            audit.record(rec.message(&message))?;
            out.push(Recovered {
                swap: u.swap.clone(),
                sip_uri: first.sip_uri().clone(),
                outcome,
                message,
            });
        }
    }
    Ok(out)
}

async fn recover_one(
    u: &Unfinished,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Option<Ended>, ApplyError> {
    let Some(first) = u.changes.first() else {
        return Ok(None);
    };
    let retire = u.changes.iter().find_map(|c| match c {
        Change::RetireUser(r) => Some(r),
        _ => None,
    });
    let Some(create) = u.changes.iter().find_map(|c| match c {
        Change::CreateEndpoint(e) => Some(e),
        _ => None,
    }) else {
        // A repoint: the next plan redoes it if it did not happen.
        return Ok(Some((
            Outcome::Skipped,
            "no endpoint to create; the next plan covers it".to_string(),
        )));
    };
    let user = match retire {
        Some(r) => match user_state(u, r, first.sip_uri(), writer).await? {
            ControlFlow::Continue(state) => Some((r, state)),
            ControlFlow::Break(end) => return Ok(Some(end)),
        },
        None => None,
    };
    if let ControlFlow::Break(end) =
        ensure_endpoint(u, user.as_ref(), create, writer, audit).await?
    {
        return Ok(end);
    }
    let c = Change::CreateEndpoint(create.clone());
    match verify(writer, &c).await {
        Err(e) => return Err(lost(audit, &u.swap, c.header(), Step::Verify, e)),
        Ok(Ok(after)) => {
            let mut rec = note(Event::Step, Outcome::Ok, &u.swap, c.header()).step(Step::Verify);
            rec.after = Some(after);
            audit.record(rec)?;
        }
        Ok(Err(fault)) => return Ok(Some((Outcome::Failed, fault.to_string()))),
    }
    // The endpoint is proven: only now may a released user be deleted.
    if let Some((r, UserState::Released)) = user
        && r.retire == Retire::Delete
        && let Err(fault) = delete_released(&u.swap, &r.header, writer, audit).await?
    {
        return Ok(Some((Outcome::Failed, fault.to_string())));
    }
    Ok(Some((
        Outcome::Ok,
        format!("completed the swap of run {}", u.run_id),
    )))
}

/// What became of the user of an open swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserState {
    /// It exists and holds the URI no more: step 1 was done.
    Released,
    /// It no longer exists.
    Gone,
}

/// `Break` when the user still holds the URI (nothing had been written: the swap is planned
/// afresh) or cannot be read; otherwise whether it was released or is gone. "Holds" uses the
/// one normalisation planning uses ([`SipUri::held_in`]).
async fn user_state(
    u: &Unfinished,
    r: &RetireUser,
    sip_uri: &SipUri,
    writer: &mut impl DirectoryWriter,
) -> Result<ControlFlow<Ended, UserState>, ApplyError> {
    match writer.read_entry(&r.header.dn).await {
        Ok(Some(e)) if sip_uri.held_in(e.get(attr::PRIMARY_USER_ADDRESS)) => {
            let why = match &u.undone_by {
                Some(run) => format!(
                    "the user holds the URI again: the swap was undone by restore run {run}; \
                     nothing is left to finish, and the next plan decides afresh"
                ),
                None => "the user still holds the URI, so nothing had been written; the swap is \
                         planned afresh"
                    .to_string(),
            };
            Ok(ControlFlow::Break((Outcome::Skipped, why)))
        }
        Ok(Some(_)) => Ok(ControlFlow::Continue(UserState::Released)),
        Ok(None) => Ok(ControlFlow::Continue(UserState::Gone)),
        Err(e) if e.is_transient() => Err(still_open(u, sip_uri, e)),
        Err(e) => Ok(ControlFlow::Break((
            Outcome::Failed,
            format!("cannot read {}: {e}", r.header.dn),
        ))),
    }
}

/// Adds the endpoint unless it is there already. `Break` when recovery ended there: the add
/// failed (and the user was put back: its values if released, re-created if gone), or the
/// endpoint cannot be read.
async fn ensure_endpoint(
    u: &Unfinished,
    user: Option<&(&RetireUser, UserState)>,
    create: &CreateEndpoint,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<ControlFlow<Option<Ended>>, ApplyError> {
    let h = &create.header;
    match writer.read_entry(&h.dn).await {
        Ok(Some(_)) => return Ok(ControlFlow::Continue(())),
        Err(e) if e.is_transient() => return Err(still_open(u, &h.sip_uri, e)),
        Err(e) => {
            let ended = (Outcome::Failed, format!("cannot read {}: {e}", h.dn));
            return Ok(ControlFlow::Break(Some(ended)));
        }
        Ok(None) => {}
    }
    audit.record(note(Event::Step, Outcome::Started, &u.swap, h).step(Step::AddEndpoint))?;
    let e = match writer.add(&create.to_entry()).await {
        Ok(()) => {
            audit.record(note(Event::Step, Outcome::Ok, &u.swap, h).step(Step::AddEndpoint))?;
            return Ok(ControlFlow::Continue(()));
        }
        Err(e) if e.is_transient() => return Err(lost(audit, &u.swap, h, Step::AddEndpoint, e)),
        Err(e) => e,
    };
    let fault = SwapFault::Refused(e);
    audit.record(
        note(Event::Step, Outcome::Failed, &u.swap, h)
            .step(Step::AddEndpoint)
            .message(fault.to_string()),
    )?;
    let ended = match (user, &u.before) {
        (Some((r, state)), Some(image)) => {
            let put_back = match state {
                UserState::Released => PutBack::Values(released_values(r, image)),
                UserState::Gone => PutBack::Recreate,
            };
            let failed =
                rollback(&u.swap, &r.header, image, &put_back, fault, writer, audit).await?;
            if failed.rolled_back() {
                (Outcome::Ok, format!("rolled back: {failed}"))
            } else {
                (Outcome::Failed, failed.to_string())
            }
        }
        _ => (Outcome::Failed, fault.to_string()),
    };
    Ok(ControlFlow::Break(Some(ended)))
}

/// The directory went away while recovery was reading: nothing is recorded, the swap stays open
/// for the next run.
fn still_open(u: &Unfinished, sip_uri: &SipUri, e: WriteError) -> ApplyError {
    ApplyError::Lost {
        swap: u.swap.clone(),
        sip_uri: sip_uri.clone(),
        source: Box::new(e),
    }
}
