//! Applying a [`Plan`]: each swap journaled in the audit log, conditional writes, rollback.
//!
//! A swap is the set of ready changes for one SIP URI, in Microsoft's order: retire the user,
//! then add the endpoint, then read it back. Before the first write the user's complete entry
//! (the before-image) is written to the audit log and fsynced; every write is preceded by a
//! `step started` record and followed by `ok` or `failed`; a swap ends with `swap_done`. If the
//! add fails, the user is restored from the before-image and a `rollback` is recorded. A run
//! that crashed leaves a `swap_intent` with no end; [`recover`] finishes such swaps before
//! anything else. All directory access goes through [`DirectoryWriter`], so this module runs
//! against the in-memory fake in its tests and against ldap3 (src/ldap/write.rs) for real.
//! Failpoints (`--features failpoints`, see [`fail_point`]) abort or pause the process after
//! each step, so tests can prove that a crash, or the directory or disk going away, anywhere
//! loses nothing.

mod restore;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

pub(crate) use restore::{RestoreKind, RestorePlan, apply_restore, plan_restore};
pub use writer::{DirectoryWriter, WriteError, WriteSource};

use tokio_util::sync::CancellationToken;

use crate::audit::{self, AuditSink, Counts, Event, Note, Outcome, Step, Unfinished};
use crate::config::Retire;
use crate::model::{AttrValues, Entry, Modification, attr};
use crate::plan::{Action, Change, Plan};

/// Names of the failpoints, in the order a swap passes them.
pub const FAILPOINTS: &[&str] = &[
    "swap-before-image-written",
    "swap-user-retired",
    "swap-endpoint-added",
    "swap-endpoint-verified",
];

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub swaps: usize,
    pub applied: usize,
    pub failed: usize,
    pub rolled_back: usize,
    /// Swaps not started because shutdown was requested (checked between swaps only).
    pub not_started: usize,
    /// One line per failed swap.
    pub errors: Vec<String>,
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
        sip_uri: String,
        #[source]
        source: WriteError,
    },
}

/// The point of a run between planning and the first swap (`--features failpoints`): after the
/// plan is recorded, before any directory write. Not in [`FAILPOINTS`]: nothing is open there.
pub const RUN_PLANNED: &str = "run-planned";

/// How long a gated failpoint waits for its release file before going on regardless.
#[cfg(feature = "failpoints")]
const GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A failpoint (`--features failpoints`; a no-op without it). What it does depends on how
/// `FAILPOINTS` configures `name`:
/// - `name=return`: abort the process. An abort, not a panic: nothing unwinds, no destructor
///   runs, exactly like a power cut between two steps.
/// - `name=return(MILLISECONDS)`: wait that long (the shutdown test sends SIGTERM there).
/// - `name=return(DIRECTORY)`: a gate. Create `DIRECTORY/name.reached` (holding the PID), then
///   wait, bounded by `GATE_TIMEOUT`, until `DIRECTORY/name.release` exists; the fault tests
///   stop slapd or fill the disk exactly there.
pub(crate) async fn fail_point(name: &str) {
    #[cfg(feature = "failpoints")]
    match fail::eval(name, |arg| arg) {
        None => {}
        Some(None) => {
            eprintln!("pcsync: failpoint {name}: aborting");
            std::process::abort();
        }
        Some(Some(arg)) => match arg.parse::<u64>() {
            Ok(ms) => {
                eprintln!("pcsync: failpoint {name}: pausing {ms} ms");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Err(_) => gate(name, std::path::Path::new(&arg)).await,
        },
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
async fn gate(name: &str, dir: &std::path::Path) {
    let release = dir.join(format!("{name}.release"));
    eprintln!(
        "pcsync: failpoint {name}: paused until {} exists",
        release.display()
    );
    let _ = std::fs::write(
        dir.join(format!("{name}.reached")),
        std::process::id().to_string(),
    );
    let wait = async {
        while !release.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(GATE_TIMEOUT, wait).await.is_err() {
        eprintln!("pcsync: failpoint {name}: not released within {GATE_TIMEOUT:?}; going on");
    }
}

/// The ready changes grouped into swaps (consecutive changes with one SIP URI), in plan order.
pub(crate) fn swaps(plan: &Plan) -> Vec<Vec<Change>> {
    let mut out: Vec<Vec<Change>> = Vec::new();
    for c in plan.ready() {
        match out.last_mut() {
            Some(last) if last[0].sip_uri.eq_ignore_ascii_case(&c.sip_uri) => last.push(c.clone()),
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
        let sip_uri = changes[0].sip_uri.clone();
        match run_swap(&swap, &changes, writer, audit).await? {
            SwapEnd::Done => {
                tracing::info!(%swap, %sip_uri, "swap done");
                report.applied += 1;
            }
            SwapEnd::Failed(e) => {
                tracing::warn!(%swap, %sip_uri, error = %e, "swap failed");
                report.failed += 1;
                report.errors.push(e);
            }
            SwapEnd::RolledBack(e) => {
                tracing::warn!(%swap, %sip_uri, error = %e, "swap rolled back");
                report.failed += 1;
                report.rolled_back += 1;
                report.errors.push(e);
            }
        }
    }
    Ok(report)
}

enum SwapEnd {
    Done,
    /// Nothing was changed (or the failure left only a verified state); the reason.
    Failed(String),
    /// The user was restored from its before-image; the reason.
    RolledBack(String),
}

fn note(event: Event, outcome: Outcome, swap: &str, c: &Change) -> Note {
    Note::new(event, outcome)
        .swap(swap)
        .dn(&c.dn)
        .sip_uri(&c.sip_uri)
}

fn retire_step(c: &Change) -> Step {
    if c.retire == Some(Retire::Disable) {
        Step::DisableUser
    } else {
        Step::DeleteUser
    }
}

/// The modify that clears the attributes a disable removes, conditional on their exact values.
fn disable_mods(c: &Change) -> Vec<Modification> {
    c.attributes
        .iter()
        .cloned()
        .map(Modification::Delete)
        .collect()
}

/// The modify a repoint makes: old values out, new values in, in one operation.
fn repoint_mods(c: &Change) -> Vec<Modification> {
    let mut mods = Vec::new();
    for new in &c.attributes {
        if let Some(old) = c
            .expect
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&new.name) && !e.values.is_empty())
        {
            mods.push(Modification::Delete(old.clone()));
        }
        mods.push(Modification::Add(new.clone()));
    }
    mods
}

fn endpoint_entry(c: &Change) -> Entry {
    Entry {
        dn: c.dn.clone(),
        attributes: c.attributes.clone(),
    }
}

async fn run_swap(
    swap: &str,
    changes: &[Change],
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapEnd, ApplyError> {
    let first = &changes[0];
    let mut intent = note(Event::SwapIntent, Outcome::Started, swap, first);
    intent.changes = Some(changes.to_vec());
    audit.record(intent)?;

    let mut before: Option<(Entry, &Change)> = None;
    for c in changes {
        let result = match c.action {
            Action::RetireUser => {
                // 1. The complete before-image, durably, before anything is changed.
                let image = match writer.read_entry(&c.dn).await {
                    Ok(Some(image)) => image,
                    Ok(None) => {
                        let e = format!("{} no longer exists", c.dn);
                        return fail_swap(audit, swap, c, retire_step(c), e);
                    }
                    Err(e) if e.is_transient() => return lost(audit, swap, c, retire_step(c), e),
                    Err(e) => return fail_swap(audit, swap, c, retire_step(c), e.to_string()),
                };
                if let Err(reason) = image.check(&c.expect) {
                    let e = format!("{} changed since it was planned: {reason}", c.dn);
                    return fail_swap(audit, swap, c, retire_step(c), e);
                }
                let mut img = note(Event::BeforeImage, Outcome::Ok, swap, c);
                img.before = Some(image.clone());
                audit.record(img)?;
                fail_point("swap-before-image-written").await;
                // 2. Delete or disable, conditional on what the plan saw.
                audit.record(note(Event::Step, Outcome::Started, swap, c).step(retire_step(c)))?;
                let r = if c.retire == Some(Retire::Disable) {
                    writer.modify(&c.dn, &disable_mods(c), &c.expect).await
                } else {
                    writer.delete(&c.dn, &c.expect).await
                };
                before = Some((image, c));
                r.map(|()| retire_step(c)).map_err(|e| (retire_step(c), e))
            }
            Action::CreateEndpoint => {
                // 3. Add the endpoint.
                audit
                    .record(note(Event::Step, Outcome::Started, swap, c).step(Step::AddEndpoint))?;
                writer
                    .add(&endpoint_entry(c))
                    .await
                    .map(|()| Step::AddEndpoint)
                    .map_err(|e| (Step::AddEndpoint, e))
            }
            Action::RepointEndpoint => {
                audit.record(
                    note(Event::Step, Outcome::Started, swap, c).step(Step::RepointEndpoint),
                )?;
                writer
                    .modify(&c.dn, &repoint_mods(c), &c.expect)
                    .await
                    .map(|()| Step::RepointEndpoint)
                    .map_err(|e| (Step::RepointEndpoint, e))
            }
        };
        match result {
            Ok(step) => {
                audit.record(note(Event::Step, Outcome::Ok, swap, c).step(step))?;
                match step {
                    Step::DeleteUser | Step::DisableUser => {
                        fail_point("swap-user-retired").await;
                        fail_point("swap-pause-after-retire").await;
                    }
                    _ => fail_point("swap-endpoint-added").await,
                }
            }
            Err((step, e)) if e.is_transient() => return lost(audit, swap, c, step, e),
            Err((step, e)) => {
                let e = e.to_string();
                let mut failed = note(Event::Step, Outcome::Failed, swap, c).step(step);
                failed.message = Some(e.clone());
                audit.record(failed)?;
                // A failure after the user was retired means the user must come back.
                let after_retire = step != Step::DeleteUser && step != Step::DisableUser;
                return match (after_retire, before.take()) {
                    (true, Some((image, user))) => {
                        rollback(swap, user, &image, &e, writer, audit).await
                    }
                    _ => {
                        let end = note(Event::SwapDone, Outcome::Failed, swap, c).message(&e);
                        audit.record(end)?;
                        Ok(SwapEnd::Failed(format!("{}: {e}", c.sip_uri)))
                    }
                };
            }
        }
    }

    // 4. Read back every endpoint the swap wrote.
    for c in changes.iter().filter(|c| c.action != Action::RetireUser) {
        let verified = match verify(writer, c).await {
            Ok(v) => v,
            Err(e) => return lost(audit, swap, c, Step::Verify, e),
        };
        let mut rec = note(
            Event::Step,
            if verified.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            swap,
            c,
        )
        .step(Step::Verify);
        if let Ok(Some(after)) = &verified {
            rec.after = Some(after.clone());
        }
        if let Err(e) = &verified {
            rec.message = Some(e.clone());
        }
        audit.record(rec)?;
        if let Err(e) = verified {
            let end = note(Event::SwapDone, Outcome::Failed, swap, c).message(&e);
            audit.record(end)?;
            return Ok(SwapEnd::Failed(format!("{}: {e}", c.sip_uri)));
        }
    }
    fail_point("swap-endpoint-verified").await;
    audit.record(note(Event::SwapDone, Outcome::Ok, swap, first))?;
    Ok(SwapEnd::Done)
}

/// The directory went away mid-swap: records the failed step and stops, leaving the swap open
/// (no `swap_done`) for the next run's recovery. No rollback: it would go to the same dead
/// connection, and recovery decides from what the directory shows once it is back.
fn lost(
    audit: &mut impl AuditSink,
    swap: &str,
    c: &Change,
    step: Step,
    e: WriteError,
) -> Result<SwapEnd, ApplyError> {
    audit.record(
        note(Event::Step, Outcome::Failed, swap, c)
            .step(step)
            .message(e.to_string()),
    )?;
    Err(ApplyError::Lost {
        swap: swap.to_string(),
        sip_uri: c.sip_uri.clone(),
        source: e,
    })
}

/// Records a swap that failed before any write, and ends it.
fn fail_swap(
    audit: &mut impl AuditSink,
    swap: &str,
    c: &Change,
    step: Step,
    e: String,
) -> Result<SwapEnd, ApplyError> {
    audit.record(
        note(Event::Step, Outcome::Failed, swap, c)
            .step(step)
            .message(&e),
    )?;
    audit.record(note(Event::SwapDone, Outcome::Failed, swap, c).message(&e))?;
    Ok(SwapEnd::Failed(format!("{}: {e}", c.sip_uri)))
}

/// DN values as a set of parsed DNs, or `None` if one does not parse.
fn as_dns(values: &[Vec<u8>]) -> Option<std::collections::BTreeSet<crate::model::Dn>> {
    values
        .iter()
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| crate::model::Dn::parse(t).ok())
        })
        .collect()
}

/// Reads an endpoint back and checks it carries what the change wrote. The outer `Err` is a
/// lost directory (the caller stops); the inner one a read-back that does not match.
async fn verify(
    writer: &mut impl DirectoryWriter,
    c: &Change,
) -> Result<Result<Option<Entry>, String>, WriteError> {
    match writer.read_entry(&c.dn).await {
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(Err(e.to_string())),
        Ok(None) => Ok(Err(format!("{} is missing after the write", c.dn))),
        Ok(Some(entry)) => Ok(check_read_back(c, entry)),
    }
}

/// Whether the endpoint read back carries what the change wrote.
fn check_read_back(c: &Change, entry: Entry) -> Result<Option<Entry>, String> {
    let wanted: Vec<AttrValues> = c
        .attributes
        .iter()
        .filter(|a| {
            [
                attr::PRIMARY_USER_ADDRESS,
                attr::PRIMARY_HOME_SERVER,
                attr::OWNER_URN,
                attr::USER_ENABLED,
            ]
            .iter()
            .any(|n| a.name.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    // DN values are compared as DNs: AD (and slapd) store the target's canonical form,
    // whatever case and spacing the configuration used.
    let (dns, others): (Vec<AttrValues>, Vec<AttrValues>) = wanted
        .into_iter()
        .partition(|a| a.name.eq_ignore_ascii_case(attr::PRIMARY_HOME_SERVER));
    entry
        .check(&others)
        .map_err(|e| format!("{} read back wrong: {e}", c.dn))?;
    for want in &dns {
        let got = entry.get(&want.name);
        if as_dns(got).is_none() || as_dns(got) != as_dns(&want.values) {
            return Err(format!(
                "{} read back wrong: {} is {:?}, expected {:?}",
                c.dn,
                want.name,
                got.iter()
                    .map(|v| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>(),
                want.texts().collect::<Vec<_>>()
            ));
        }
    }
    Ok(Some(entry))
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
            .filter(|a| {
                !SERVER_OWNED_ATTRIBUTES
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&a.name))
            })
            .cloned()
            .collect(),
    }
}

/// What to add to the error of re-creating `dn` when the server refused it for lack of rights
/// (LDAP 50): the right that is missing, and where.
pub(crate) fn recreate_hint(e: &WriteError, dn: &str) -> String {
    if !matches!(e, WriteError::Denied { .. }) {
        return String::new();
    }
    let parent = crate::model::Dn::parse(dn)
        .ok()
        .and_then(|d| d.parent())
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "its parent".to_string());
    format!(
        "; the bind account may not create user objects in {parent}: grant it Create Child for \
         user objects there (docs/active-directory.md, section 2), or use retire = \"disable\""
    )
}

/// Puts a retired user back from its before-image.
async fn restore_user(
    writer: &mut impl DirectoryWriter,
    retire: Option<Retire>,
    image: &Entry,
) -> Result<(), WriteError> {
    if retire == Some(Retire::Disable) {
        let mods: Vec<Modification> = image
            .attributes
            .iter()
            .filter(|a| {
                a.name
                    .get(..9)
                    .is_some_and(|p| p.eq_ignore_ascii_case("msRTCSIP-"))
            })
            .cloned()
            .map(Modification::Add)
            .collect();
        let absent: Vec<AttrValues> = mods
            .iter()
            .map(|m| match m {
                Modification::Add(a) | Modification::Delete(a) => AttrValues {
                    name: a.name.clone(),
                    values: Vec::new(),
                },
            })
            .collect();
        writer.modify(&image.dn, &mods, &absent).await
    } else {
        writer.add(&recreate_entry(image)).await
    }
}

async fn rollback(
    swap: &str,
    user: &Change,
    image: &Entry,
    cause: &str,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<SwapEnd, ApplyError> {
    audit.record(note(Event::Rollback, Outcome::Started, swap, user).step(Step::RestoreUser))?;
    match restore_user(writer, user.retire, image).await {
        Ok(()) => {
            let mut rec = note(Event::Rollback, Outcome::Ok, swap, user)
                .step(Step::RestoreUser)
                .message(format!("restored from the before-image after: {cause}"));
            rec.after = Some(image.clone());
            audit.record(rec)?;
            Ok(SwapEnd::RolledBack(format!(
                "{}: {cause}; the user was restored",
                user.sip_uri
            )))
        }
        // The swap stays open: the next run's recovery retries the endpoint, then the rollback.
        Err(e) if e.is_transient() => lost(audit, swap, user, Step::RestoreUser, e),
        Err(e) => {
            let hint = if user.retire == Some(Retire::Disable) {
                String::new()
            } else {
                recreate_hint(&e, &image.dn)
            };
            let msg = format!(
                "ROLLBACK FAILED: {e}{hint}; the before-image is in the audit log (swap {swap}); run `pcsync restore`"
            );
            audit.record(
                note(Event::Rollback, Outcome::Failed, swap, user)
                    .step(Step::RestoreUser)
                    .message(&msg),
            )?;
            Ok(SwapEnd::Failed(format!("{}: {cause}; {msg}", user.sip_uri)))
        }
    }
}

/// What recovery did with one unfinished swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub swap: String,
    pub sip_uri: String,
    pub outcome: Outcome,
    pub message: String,
}

/// Completes or rolls back the swaps a crashed run left unfinished, from what the directory
/// shows now: a user that still holds the URI means nothing was written (the next plan redoes
/// the swap); a retired user means the endpoint is added (or, if that fails, the user restored
/// from the before-image); an endpoint already present is verified.
pub(crate) async fn recover(
    unfinished: &[Unfinished],
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Vec<Recovered>, ApplyError> {
    let mut out = Vec::new();
    for u in unfinished {
        if let Some((outcome, message)) = recover_one(u, writer, audit).await? {
            let Some(first) = u.changes.first() else {
                continue;
            };
            audit.record(note(Event::Recovery, outcome, &u.swap, first).message(&message))?;
            out.push(Recovered {
                swap: u.swap.clone(),
                sip_uri: first.sip_uri.clone(),
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
) -> Result<Option<(Outcome, String)>, ApplyError> {
    let Some(first) = u.changes.first() else {
        return Ok(None);
    };
    let retire = u.changes.iter().find(|c| c.action == Action::RetireUser);
    let Some(create) = u
        .changes
        .iter()
        .find(|c| c.action == Action::CreateEndpoint)
    else {
        // A repoint: the next plan redoes it if it did not happen.
        return Ok(Some((
            Outcome::Skipped,
            "no endpoint to create; the next plan covers it".to_string(),
        )));
    };
    if let Some(r) = retire {
        match writer.read_entry(&r.dn).await {
            Ok(Some(e))
                if e.get(attr::PRIMARY_USER_ADDRESS)
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(first.sip_uri.as_bytes())) =>
            {
                return Ok(Some((
                    Outcome::Skipped,
                    "the user still holds the URI, so nothing had been written; the swap is planned afresh"
                        .to_string(),
                )));
            }
            Ok(_) => {}
            Err(e) if e.is_transient() => return Err(still_open(u, first, e)),
            Err(e) => {
                return Ok(Some((
                    Outcome::Failed,
                    format!("cannot read {}: {e}", r.dn),
                )));
            }
        }
    }
    match writer.read_entry(&create.dn).await {
        Ok(Some(_)) => {}
        Err(e) if e.is_transient() => return Err(still_open(u, first, e)),
        Ok(None) => {
            audit.record(
                note(Event::Step, Outcome::Started, &u.swap, create).step(Step::AddEndpoint),
            )?;
            if let Err(e) = writer.add(&endpoint_entry(create)).await {
                if e.is_transient() {
                    return lost(audit, &u.swap, create, Step::AddEndpoint, e).map(|_| None);
                }
                let e = e.to_string();
                audit.record(
                    note(Event::Step, Outcome::Failed, &u.swap, create)
                        .step(Step::AddEndpoint)
                        .message(&e),
                )?;
                return Ok(Some(match (retire, &u.before) {
                    (Some(r), Some(image)) => {
                        match rollback(&u.swap, r, image, &e, writer, audit).await? {
                            SwapEnd::RolledBack(m) => (Outcome::Ok, format!("rolled back: {m}")),
                            SwapEnd::Failed(m) => (Outcome::Failed, m),
                            SwapEnd::Done => (Outcome::Ok, String::new()),
                        }
                    }
                    _ => (Outcome::Failed, e),
                }));
            }
            audit
                .record(note(Event::Step, Outcome::Ok, &u.swap, create).step(Step::AddEndpoint))?;
        }
        Err(e) => {
            return Ok(Some((
                Outcome::Failed,
                format!("cannot read {}: {e}", create.dn),
            )));
        }
    }
    match verify(writer, create).await {
        Err(e) => lost(audit, &u.swap, create, Step::Verify, e).map(|_| None),
        Ok(Ok(after)) => {
            let mut rec = note(Event::Step, Outcome::Ok, &u.swap, create).step(Step::Verify);
            rec.after = after;
            audit.record(rec)?;
            Ok(Some((
                Outcome::Ok,
                format!("completed the swap of run {}", u.run_id),
            )))
        }
        Ok(Err(e)) => Ok(Some((Outcome::Failed, e))),
    }
}

/// The directory went away while recovery was reading: nothing is recorded, the swap stays open
/// for the next run.
fn still_open(u: &Unfinished, first: &Change, e: WriteError) -> ApplyError {
    ApplyError::Lost {
        swap: u.swap.clone(),
        sip_uri: first.sip_uri.clone(),
        source: e,
    }
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
