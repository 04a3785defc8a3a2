//! Recovery: finishing the swaps a crashed (or cut-off) run left open, before anything else.
//!
//! What to do is decided from what the directory shows now, never from what the log hoped: a
//! user that still holds the URI means nothing was written (the next plan redoes the swap); a
//! retired user means the endpoint is added (or, if that fails, the user restored from the
//! before-image); an endpoint already present is verified. A directory that is still away
//! leaves the swap open for the next run.

use std::ops::ControlFlow;

use super::swap::{SwapFault, lost, rollback, verify};
use super::{ApplyError, DirectoryWriter, WriteError, note};
use crate::audit::{AuditSink, Event, Outcome, Step, Unfinished};
use crate::model::{SipUri, attr};
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
    if let Some(r) = retire
        && let ControlFlow::Break(end) = user_untouched(u, r, first.sip_uri(), writer).await?
    {
        return Ok(Some(end));
    }
    if let ControlFlow::Break(end) = ensure_endpoint(u, retire, create, writer, audit).await? {
        return Ok(end);
    }
    let c = Change::CreateEndpoint(create.clone());
    match verify(writer, &c).await {
        Err(e) => Err(lost(audit, &u.swap, c.header(), Step::Verify, e)),
        Ok(Ok(after)) => {
            let mut rec = note(Event::Step, Outcome::Ok, &u.swap, c.header()).step(Step::Verify);
            rec.after = Some(after);
            audit.record(rec)?;
            Ok(Some((
                Outcome::Ok,
                format!("completed the swap of run {}", u.run_id),
            )))
        }
        Ok(Err(fault)) => Ok(Some((Outcome::Failed, fault.to_string()))),
    }
}

/// `Break` when the user still holds the URI (nothing had been written: the swap is planned
/// afresh) or cannot be read; `Continue` when it was retired.
async fn user_untouched(
    u: &Unfinished,
    r: &RetireUser,
    sip_uri: &SipUri,
    writer: &mut impl DirectoryWriter,
) -> Result<ControlFlow<Ended>, ApplyError> {
    match writer.read_entry(&r.header.dn).await {
        Ok(Some(e))
            if e.get(attr::PRIMARY_USER_ADDRESS)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(sip_uri.as_str().as_bytes())) =>
        {
            Ok(ControlFlow::Break((
                Outcome::Skipped,
                "the user still holds the URI, so nothing had been written; the swap is planned afresh"
                    .to_string(),
            )))
        }
        Ok(_) => Ok(ControlFlow::Continue(())),
        Err(e) if e.is_transient() => Err(still_open(u, sip_uri, e)),
        Err(e) => Ok(ControlFlow::Break((
            Outcome::Failed,
            format!("cannot read {}: {e}", r.header.dn),
        ))),
    }
}

/// Adds the endpoint unless it is there already. `Break` when recovery ended there: the add
/// failed (and the user was rolled back if it had been retired), or the endpoint cannot be read.
async fn ensure_endpoint(
    u: &Unfinished,
    retire: Option<&RetireUser>,
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
    let ended = match (retire, &u.before) {
        (Some(r), Some(image)) => {
            let failed = rollback(&u.swap, r, image, fault, writer, audit).await?;
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
