//! Applying a [`Plan`]: each swap journaled in the audit log, conditional writes, rollback.
//!
//! A swap is the set of ready changes for one SIP URI, made in pcsync's order (see [`swap`] for
//! why): release the user (clear its msRTCSIP-* values on the same object), add the endpoint
//! and read it back, then, with `retire = "delete"`, delete the released user. Before the first
//! write the user's complete entry (the before-image) is written to the audit log and fsynced;
//! every write is preceded by a `step started` record and followed by `ok` or `failed`; a swap
//! ends with `swap_done`. If the add fails, the same user gets its values back and a `rollback`
//! is recorded. A run that crashed leaves a `swap_intent` with no end; [`recover()`] finishes
//! such swaps before anything else. All directory access goes through [`DirectoryWriter`], so
//! this module runs against the in-memory fake in its tests and against ldap3 for real
//! ([`writer`]).
//! Failpoints ([`failpoint`]) abort or pause the process after each step, so tests can prove
//! that a crash, or the directory or disk going away, anywhere loses nothing.
//!
//! - [`swap`]: one swap, its typed failure ([`SwapFailed`]) and the rollback;
//! - [`recover`](mod@recover): swaps a crashed run left open;
//! - [`restore`]: `pcsync restore`, undoing a run from the audit log;
//! - [`writer`]: the [`DirectoryWriter`] trait, its [`WriteError`], the ldap3 adapter.

mod failpoint;
mod recover;
mod restore;
mod swap;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

pub(crate) use failpoint::fail_point;
pub use failpoint::{FAILPOINTS, RUN_PLANNED, USER_DELETED};
pub(crate) use recover::{Recovered, recover};
pub(crate) use restore::{RestorePlan, RestoreReport, apply_restore, plan_restore};
pub(crate) use swap::SwapFailed;
pub use writer::{DirectoryWriter, WriteError, WriteSource};

use tokio_util::sync::CancellationToken;

use crate::audit::{self, AuditSink, Counts, Note};
use crate::audit::{Event, Outcome};
use crate::model::{AttrValues, Dn, Entry, Modification, SipUri};
use crate::plan::desired::Retire;
use crate::plan::{Change, Header, Plan};
use swap::{SwapEnd, run_swap};

/// What an apply did.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub swaps: usize,
    pub applied: usize,
    pub failed: usize,
    pub rolled_back: usize,
    /// Swaps not started because shutdown was requested (checked between swaps only).
    pub not_started: usize,
    /// One per failed swap, in order.
    pub errors: Vec<SwapFailed>,
    /// Why swaps of the plan were left out (blocked by findings), on one line; set by the
    /// caller, which knows the plan. The run then exits 3 unless a swap failed.
    pub blocked: Option<String>,
}

impl Report {
    /// Every swap started was done, and none was left out.
    pub(crate) fn is_complete(&self) -> bool {
        self.failed == 0 && self.not_started == 0
    }
}

/// Why applying stopped. A swap the directory refused is not an error here (it is in the
/// report, and the next swap goes ahead); a failed audit write or a lost directory stops
/// everything: nothing may happen unrecorded, and nothing more can happen on a dead connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The audit log cannot be written; no further directory write was attempted.
    #[error("{0}; stopped before the directory write it was to record")]
    Audit(#[from] audit::Error),
    /// The directory went away (connection lost, timeout) in the middle of a swap. The swap
    /// stays open in the audit log (no `swap_done`), so the next run's recovery completes it or
    /// rolls it back from what the directory shows then; no further write was attempted.
    #[error(
        "{source}; stopped in swap {swap} ({sip_uri}), which stays open in the audit log: the next applying run (`pcsync reconcile --apply`, or `pcsync run` with auto_apply) completes it or rolls it back"
    )]
    Lost {
        swap: String,
        sip_uri: SipUri,
        /// Boxed: the error is rare and large, and `ApplyError` travels through every step.
        #[source]
        source: Box<WriteError>,
    },
}

/// The ready changes grouped into swaps (consecutive changes with one SIP URI), in plan order.
pub(crate) fn swaps(plan: &Plan) -> Vec<Vec<Change>> {
    let mut out: Vec<Vec<Change>> = Vec::new();
    for c in plan.ready() {
        match out.last_mut() {
            Some(last) if last[0].sip_uri() == c.sip_uri() => last.push(c.clone()),
            _ => out.push(vec![c.clone()]),
        }
    }
    out
}

/// Applies the ready changes of `plan`, swap by swap. A failed swap is rolled back as far as
/// needed and the next swap goes ahead.
pub(crate) async fn apply(
    plan: &Plan,
    run_id: &str,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
    stop: &CancellationToken,
) -> Result<Report, ApplyError> {
    let mut report = Report::default();
    let all = swaps(plan);
    let total = all.len();
    for (i, changes) in all.into_iter().enumerate() {
        report.swaps += 1;
        // Shutdown is honoured here, between swaps: a swap once started always runs to its end
        // (done, failed or rolled back), so a stop never leaves a half swap behind.
        if stop.is_cancelled() {
            report.not_started = total - i;
            tracing::warn!(
                done = i,
                total,
                "shutdown requested: stopping between swaps"
            );
            report.swaps = total;
            break;
        }
        let swap = format!("{run_id}#{}", i + 1);
        let sip_uri = changes[0].sip_uri().clone();
        match run_swap(&swap, &changes, writer, audit).await? {
            SwapEnd::Done => {
                tracing::info!(%swap, %sip_uri, "swap done");
                report.applied += 1;
            }
            SwapEnd::Failed(e) => {
                if e.rolled_back() {
                    tracing::warn!(%swap, %sip_uri, error = %e, "swap rolled back");
                    report.rolled_back += 1;
                } else {
                    tracing::warn!(%swap, %sip_uri, error = %e, "swap failed");
                }
                report.failed += 1;
                report.errors.push(*e);
            }
        }
    }
    Ok(report)
}

/// The parts of a record about one change of swap `swap`: its DN and SIP URI.
fn note(event: Event, outcome: Outcome, swap: &str, h: &Header) -> Note {
    Note::new(event, outcome)
        .swap(swap)
        .dn(&h.dn)
        .sip_uri(&h.sip_uri)
}

/// Attributes that Active Directory maintains itself and refuses on an add (or that are
/// back-links stored on other objects): identity, creation and change stamps, logon counters,
/// the account type, the primary group (`00002035: The primary group isn't settable on add
/// operations`), group memberships. A user re-created from its before-image gets new ones;
/// every other attribute is written back exactly. OpenLDAP returns none of these to `*`.
pub(crate) const SERVER_OWNED_ATTRIBUTES: &[&str] = &[
    "objectGUID",
    "objectSid",
    "sIDHistory",
    "distinguishedName",
    "name",
    "instanceType",
    "whenCreated",
    "whenChanged",
    "uSNCreated",
    "uSNChanged",
    "dSCorePropagationData",
    "primaryGroupID",
    "sAMAccountType",
    "isCriticalSystemObject",
    "pwdLastSet",
    "badPwdCount",
    "badPasswordTime",
    "lastLogon",
    "lastLogoff",
    "lastLogonTimestamp",
    "logonCount",
    "lockoutTime",
    "memberOf",
];

/// The entry that re-creates a deleted user: its before-image without
/// [`SERVER_OWNED_ATTRIBUTES`].
pub(crate) fn recreate_entry(image: &Entry) -> Entry {
    Entry {
        dn: image.dn.clone(),
        attributes: image
            .attributes
            .iter()
            .filter(|a| !SERVER_OWNED_ATTRIBUTES.iter().any(|s| a.name.is(s)))
            .cloned()
            .collect(),
    }
}

/// What to add to the error of re-creating `dn` when the server refused it for lack of rights
/// (LDAP 50): the right that is missing, and where.
pub(crate) fn recreate_hint(e: &WriteError, dn: &Dn) -> String {
    if !matches!(e, WriteError::Denied { .. }) {
        return String::new();
    }
    let parent = dn
        .parent()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "its parent".to_string());
    format!(
        "; the bind account may not create user objects in {parent}: grant it Create Child for \
         user objects there (docs/active-directory.md, section 2), or use retire = \"disable\""
    )
}

/// Puts a retired user back from its before-image: re-created after a delete, its msRTCSIP-*
/// attributes added back (conditional on their still being absent) after a disable.
async fn restore_user(
    writer: &mut impl DirectoryWriter,
    retired: Retire,
    image: &Entry,
) -> Result<(), WriteError> {
    match retired {
        Retire::Disable => {
            let msrtcsip: Vec<AttrValues> = image
                .attributes
                .iter()
                .filter(|a| a.name.is_msrtcsip())
                .cloned()
                .collect();
            add_back(writer, &image.dn, &msrtcsip).await
        }
        Retire::Delete => writer.add(&recreate_entry(image)).await,
    }
}

/// Adds `values` back to the object at `dn`, conditional on their still being absent: a
/// released user's values, on the same object (restore, and a swap's rollback).
async fn add_back(
    writer: &mut impl DirectoryWriter,
    dn: &Dn,
    values: &[AttrValues],
) -> Result<(), WriteError> {
    let mods: Vec<Modification> = values.iter().cloned().map(Modification::Add).collect();
    let absent: Vec<AttrValues> = values.iter().map(|a| AttrValues::absent(&a.name)).collect();
    writer.modify(dn, &mods, &absent).await
}

/// Counts for the `run_end` record.
pub(crate) fn counts(plan: &Plan, report: &Report) -> Counts {
    Counts {
        planned: plan.summary.ready,
        applied: report.applied,
        failed: report.failed,
        rolled_back: report.rolled_back,
        waiting: plan.summary.waiting,
        findings: plan.summary.findings,
    }
}
