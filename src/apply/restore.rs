//! `pcsync restore`: undo a run from the audit log.
//!
//! For every swap of the run (including steps a later run's recovery finished for it), the
//! retired user is re-created from its before-image (delete; without the attributes the server
//! sets itself, see [`super::SERVER_OWNED_ATTRIBUTES`]) or gets its msRTCSIP-* attributes back
//! (disable), then the endpoint the swap created is removed (only while it still carries the
//! swap's SIP URI, and only if the user came back: a restore never leaves the URI unserved). Actions already undone are shown as such and skipped, so a
//! restore can be re-run. Each write is journaled like a reconcile step.

use serde::Serialize;

use super::{DirectoryWriter, WriteError, recreate_hint, restore_user};
use crate::audit::{AuditSink, Event, Note, Outcome, Record, Step};
use crate::model::{AttrValues, Dn, Entry, SipUri, attr};
use crate::plan::Change;
use crate::plan::desired::Retire;

/// What a restore action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RestoreKind {
    DeleteEndpoint,
    RecreateUser,
    ReenableUser,
}

/// One write of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RestoreAction {
    pub kind: RestoreKind,
    pub dn: Dn,
    pub sip_uri: SipUri,
    /// The swap being undone.
    pub swap: String,
    /// False when the directory already shows the restored state.
    pub pending: bool,
    #[serde(skip)]
    pub image: Option<Entry>,
}

/// The restore plan for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RestorePlan {
    pub run_id: String,
    pub actions: Vec<RestoreAction>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub(crate) struct RestoreReport {
    /// Pending actions attempted.
    pub actions: usize,
    pub applied: usize,
    pub failed: usize,
    /// One line per failed (or skipped) action, naming its DN.
    pub errors: Vec<String>,
}

impl RestorePlan {
    pub(crate) fn pending(&self) -> usize {
        self.actions.iter().filter(|a| a.pending).count()
    }
}

/// Builds the restore plan for `run_id` from the (verified) audit records and the directory's
/// current state. `None` when the log has no such run.
pub(crate) async fn plan_restore(
    records: &[Record],
    run_id: &str,
    writer: &mut impl DirectoryWriter,
) -> Result<Option<RestorePlan>, WriteError> {
    if !records.iter().any(|r| r.run_id == run_id) {
        return Ok(None);
    }
    let prefix = format!("{run_id}#");
    let mut swaps: Vec<&str> = Vec::new();
    for r in records {
        if let Some(s) = &r.swap
            && s.starts_with(&prefix)
            && !swaps.contains(&s.as_str())
        {
            swaps.push(s);
        }
    }
    let mut actions = Vec::new();
    for swap in swaps {
        let of_swap: Vec<&Record> = records
            .iter()
            .filter(|r| r.swap.as_deref() == Some(swap))
            .collect();
        actions.extend(undo_swap(swap, &of_swap, writer).await?);
    }
    Ok(Some(RestorePlan {
        run_id: run_id.to_string(),
        actions,
    }))
}

/// What undoes one swap, from its records: the user first, then the endpoint, so that if the
/// user cannot be brought back (a missing right on Active Directory) the endpoint stays and
/// keeps serving the URI. Each action is pending unless the directory already shows it done.
async fn undo_swap(
    swap: &str,
    records: &[&Record],
    writer: &mut impl DirectoryWriter,
) -> Result<Vec<RestoreAction>, WriteError> {
    let Some(intent) = records.iter().find(|r| r.event == Event::SwapIntent) else {
        return Ok(Vec::new());
    };
    // Every intent names its URI; a record without one is not pcsync's, and is passed over.
    let Some(sip_uri) = intent.sip_uri.clone() else {
        return Ok(Vec::new());
    };
    let changes = intent.changes.clone().unwrap_or_default();
    let ok = |step: Step| {
        records
            .iter()
            .any(|r| r.event == Event::Step && r.step == Some(step) && r.outcome == Outcome::Ok)
    };
    let rolled_back = records
        .iter()
        .any(|r| r.event == Event::Rollback && r.outcome == Outcome::Ok);
    let action = |kind, dn: &Dn, pending, image| RestoreAction {
        kind,
        dn: dn.clone(),
        sip_uri: sip_uri.clone(),
        swap: swap.to_string(),
        pending,
        image,
    };
    let mut actions = Vec::new();
    let image = records.iter().find_map(|r| r.before.clone());
    let retired = changes.iter().find_map(|c| match c {
        Change::RetireUser(r) => Some(r.retire),
        _ => None,
    });
    if let (Some(retired), Some(image)) = (retired, image)
        && (ok(Step::DeleteUser) || ok(Step::DisableUser))
        && !rolled_back
    {
        let current = writer.read_entry(&image.dn).await?;
        let (kind, pending) = match retired {
            Retire::Disable => {
                let holds = current
                    .as_ref()
                    .is_some_and(|e| !e.get(attr::PRIMARY_USER_ADDRESS).is_empty());
                (RestoreKind::ReenableUser, !holds)
            }
            Retire::Delete => (RestoreKind::RecreateUser, current.is_none()),
        };
        actions.push(action(kind, &image.dn, pending, Some(image.clone())));
    }
    if let Some(c) = changes
        .iter()
        .find(|c| matches!(c, Change::CreateEndpoint(_)))
        && ok(Step::AddEndpoint)
    {
        let pending = writer.read_entry(c.dn()).await?.is_some_and(|e| {
            e.get(attr::PRIMARY_USER_ADDRESS)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(sip_uri.as_str().as_bytes()))
        });
        actions.push(action(RestoreKind::DeleteEndpoint, c.dn(), pending, None));
    }
    Ok(actions)
}

/// Carries out the pending actions; each is journaled (`step` started, then ok or failed).
pub(crate) async fn apply_restore(
    plan: &RestorePlan,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<RestoreReport, crate::audit::Error> {
    let mut report = RestoreReport::default();
    // Swaps whose user could not be restored: their endpoint is kept.
    let mut user_failed: Vec<&str> = Vec::new();
    for a in plan.actions.iter().filter(|a| a.pending) {
        report.actions += 1;
        let failure =
            if a.kind == RestoreKind::DeleteEndpoint && user_failed.contains(&a.swap.as_str()) {
                Some(keep_endpoint(a, audit)?)
            } else {
                undo(a, writer, audit).await?.err()
            };
        match failure {
            None => report.applied += 1,
            Some(message) => {
                if a.kind != RestoreKind::DeleteEndpoint {
                    user_failed.push(&a.swap);
                }
                report.failed += 1;
                report.errors.push(message);
            }
        }
    }
    Ok(report)
}

/// Records that the endpoint of a swap whose user could not come back stays; the reason.
fn keep_endpoint(
    a: &RestoreAction,
    audit: &mut impl AuditSink,
) -> Result<String, crate::audit::Error> {
    let e = format!(
        "kept {}: the user of swap {} could not be restored, so the endpoint keeps \
         serving {}",
        a.dn, a.swap, a.sip_uri
    );
    audit.record(
        Note::new(Event::Step, Outcome::Skipped)
            .dn(&a.dn)
            .sip_uri(&a.sip_uri)
            .swap(&a.swap)
            .step(Step::DeleteEndpoint)
            .message(&e),
    )?;
    Ok(e)
}

/// Carries out one action between its `started` and `ok`/`failed` records. The inner `Err` is
/// the failure line for the report, naming the DN.
async fn undo(
    a: &RestoreAction,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Result<(), String>, crate::audit::Error> {
    let step = match a.kind {
        RestoreKind::DeleteEndpoint => Step::DeleteEndpoint,
        _ => Step::RestoreUser,
    };
    let base = |outcome| {
        Note::new(Event::Step, outcome)
            .dn(&a.dn)
            .sip_uri(&a.sip_uri)
            .swap(&a.swap)
            .step(step)
    };
    audit.record(base(Outcome::Started))?;
    let result = match (&a.kind, &a.image) {
        (RestoreKind::DeleteEndpoint, _) => {
            let expect = [AttrValues::text(
                attr::PRIMARY_USER_ADDRESS,
                &[a.sip_uri.as_str()],
            )];
            writer.delete(&a.dn, &expect).await
        }
        (RestoreKind::RecreateUser, Some(image)) => {
            restore_user(writer, Retire::Delete, image).await
        }
        (RestoreKind::ReenableUser, Some(image)) => {
            restore_user(writer, Retire::Disable, image).await
        }
        (_, None) => Ok(()),
    };
    match result {
        Ok(()) => {
            let mut rec = base(Outcome::Ok);
            rec.after = a.image.clone();
            audit.record(rec)?;
            Ok(Ok(()))
        }
        Err(e) => {
            let mut message = e.to_string();
            if a.kind == RestoreKind::RecreateUser {
                message.push_str(&recreate_hint(&e, &a.dn));
            }
            audit.record(base(Outcome::Failed).message(&message))?;
            Ok(Err(format!("{}: {message}", a.dn)))
        }
    }
}
