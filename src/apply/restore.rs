//! `pcsync restore`: undo a run from the audit log.
//!
//! For every swap of the run (including steps a later run's recovery finished for it), the swap
//! is undone in its own order backwards, so the URI is never held twice: the endpoint the swap
//! created releases the URI (its address cleared, only while it still carries the swap's URI),
//! the retired user comes back from its before-image, and only then is the endpoint deleted; a
//! user that cannot come back has its endpoint serve the URI again, so a restore never leaves
//! the URI unserved. An endpoint the swap repointed gets its old values back.
//!
//! A deleted user comes back with its identity where the directory allows it: on Active
//! Directory its tombstone is reanimated (same objectGUID and objectSid), then the before-image's
//! attributes and group memberships are put back. Where that is refused, or the directory keeps
//! no tombstones (OpenLDAP), the user is re-created from the before-image, and the restore says
//! loudly that it is a new principal. A DN taken by another object is never written over.
//!
//! An action is pending unless the directory already shows it done, so a restore can be re-run,
//! and it converges. Each write is journaled like a reconcile step. A lost connection or a stop
//! signal ends the restore between two actions, never inside one.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::failpoint::fail_point;
use super::{DirectoryWriter, WriteError, recreate_entry, recreate_hint, restore_user};
use crate::audit::{AuditSink, Event, Note, Outcome, Record, Step};
use crate::model::{AttrValues, Dn, Entry, Modification, SipUri, attr};
use crate::plan::desired::Retire;
use crate::plan::{Change, RepointEndpoint};

/// What a restore action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RestoreKind {
    DeleteEndpoint,
    RecreateUser,
    ReenableUser,
    /// Put an endpoint's old values back after a `repoint_endpoint`.
    RevertRepoint,
}

/// One write of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RestoreAction {
    pub kind: RestoreKind,
    pub dn: Dn,
    pub sip_uri: SipUri,
    /// The swap being undone.
    pub swap: String,
    /// False when the directory already shows the restored state, or the action is skipped.
    pub pending: bool,
    /// Why the action is left undone although the restored state is not there: the line the
    /// plan shows (`skipped delete_endpoint DN: …`), naming the object and the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip)]
    pub image: Option<Entry>,
    /// The repoint a `revert_repoint` undoes.
    #[serde(skip)]
    pub repoint: Option<RepointEndpoint>,
    /// A `delete_endpoint` whose endpoint holds no SIP address any more: an interrupted restore
    /// released it already (see [`apply_restore`]).
    #[serde(skip)]
    pub released: bool,
}

/// The restore plan for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RestorePlan {
    pub run_id: String,
    pub actions: Vec<RestoreAction>,
}

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RestoreReport {
    /// Pending actions attempted.
    pub actions: usize,
    pub applied: usize,
    pub failed: usize,
    /// One line per action carried out.
    pub done: Vec<String>,
    /// One line per failed (or skipped) action, naming its DN.
    pub errors: Vec<String>,
    /// What an administrator must know although the action succeeded: a user that came back
    /// as a new principal, a group membership that could not be put back.
    pub warnings: Vec<String>,
    /// Why the restore ended before its last action (connection lost, stop requested).
    pub stopped: Option<String>,
    /// The pending actions not carried out because the restore stopped, one line each.
    pub not_done: Vec<String>,
}

impl RestorePlan {
    pub(crate) fn pending(&self) -> usize {
        self.actions.iter().filter(|a| a.pending).count()
    }

    /// The SIP URIs the pending actions touch, each once, in plan order.
    pub(crate) fn touched_uris(&self) -> Vec<SipUri> {
        let mut uris: Vec<SipUri> = Vec::new();
        for a in self.actions.iter().filter(|a| a.pending) {
            if !uris
                .iter()
                .any(|u| u.normalized() == a.sip_uri.normalized())
            {
                uris.push(a.sip_uri.clone());
            }
        }
        uris
    }
}

impl RestoreAction {
    /// The journal record of `step` on this action's object, for its swap.
    fn note(&self, step: Step, outcome: Outcome) -> Note {
        Note::new(Event::Step, outcome)
            .dn(&self.dn)
            .sip_uri(&self.sip_uri)
            .swap(&self.swap)
            .step(step)
    }

    /// `recreate_user CN=… (sip:…)`: how the report names the action.
    fn line(&self) -> String {
        format!(
            "{} {} ({})",
            crate::util::variant_name(&self.kind),
            self.dn,
            self.sip_uri
        )
    }
}

/// Whether `entry` holds `uri` as its primary SIP address, under the one normalisation
/// planning and recovery use ([`SipUri::held_in`]: `sips:`, a port, a bare `user@host`, case
/// and surrounding blanks).
fn holds(entry: &Entry, uri: &SipUri) -> bool {
    uri.held_in(entry.get(attr::PRIMARY_USER_ADDRESS))
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
/// keeps serving the URI. Each action is pending unless the directory already shows it done:
/// a user is back only when the object at its DN holds the URI again (an account someone
/// re-added by hand at that DN is not the user).
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
    let action = |kind, dn: &Dn, pending| RestoreAction {
        kind,
        dn: dn.clone(),
        sip_uri: sip_uri.clone(),
        swap: swap.to_string(),
        pending,
        skipped: None,
        image: None,
        repoint: None,
        released: false,
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
        let back = writer
            .read_entry(&image.dn)
            .await?
            .is_some_and(|e| holds(&e, &sip_uri));
        // A user whose delete never happened (refused, or not reached) was only released: the
        // same object gets its values back, as with `retire = "disable"`.
        let kind = match retired {
            Retire::Delete if ok(Step::DeleteUser) => RestoreKind::RecreateUser,
            Retire::Delete | Retire::Disable => RestoreKind::ReenableUser,
        };
        let mut a = action(kind, &image.dn, !back);
        a.image = Some(image);
        actions.push(a);
    }
    for c in &changes {
        match c {
            Change::CreateEndpoint(_) if ok(Step::AddEndpoint) => {
                let mut a = action(RestoreKind::DeleteEndpoint, c.dn(), false);
                let current = writer.read_entry(c.dn()).await?;
                read_endpoint(&mut a, current);
                actions.push(a);
            }
            Change::RepointEndpoint(p) if ok(Step::RepointEndpoint) => {
                // Pending while the endpoint does not show its old values again.
                let pending = writer
                    .read_entry(c.dn())
                    .await?
                    .is_some_and(|e| e.check(&old_values(p)).is_err());
                let mut a = action(RestoreKind::RevertRepoint, c.dn(), pending);
                a.repoint = Some(p.clone());
                actions.push(a);
            }
            _ => {}
        }
    }
    Ok(actions)
}

/// Sets a `delete_endpoint` from what its DN holds now: pending while the endpoint holds the
/// URI, or holds no address at all (released by an interrupted restore); skipped, with the
/// reason, when it holds another address; done when it is gone.
fn read_endpoint(a: &mut RestoreAction, current: Option<Entry>) {
    let Some(e) = current else { return };
    a.released = e.get(attr::PRIMARY_USER_ADDRESS).is_empty();
    a.pending = a.released || holds(&e, &a.sip_uri);
    if !a.pending {
        a.skipped = Some(changed_address(a, &e));
    }
}

/// The skip line for an endpoint that no longer holds the swap's URI: what it holds now.
fn changed_address(a: &RestoreAction, now: &Entry) -> String {
    let held: Vec<String> = now
        .get(attr::PRIMARY_USER_ADDRESS)
        .iter()
        .map(|v| String::from_utf8_lossy(v).escape_debug().to_string())
        .collect();
    let held = if held.is_empty() {
        "no SIP address".to_string()
    } else {
        held.join(", ")
    };
    format!(
        "skipped {} {}: it holds {held} now, not {}; someone changed it since the swap, so it \
         is left alone",
        crate::util::variant_name(&a.kind),
        a.dn,
        a.sip_uri
    )
}

/// The values a repoint replaced: what the plan saw of each attribute it changed.
fn old_values(p: &RepointEndpoint) -> Vec<AttrValues> {
    p.expect
        .iter()
        .filter(|e| p.new_values.iter().any(|n| n.name == e.name))
        .cloned()
        .collect()
}

/// The modify that undoes a repoint: the new values out, the old ones in, in one operation
/// (refused if the new values are gone: someone changed the endpoint since).
fn revert_mods(p: &RepointEndpoint) -> Vec<Modification> {
    let mut mods = Vec::new();
    for new in p.new_values.iter().filter(|n| !n.values.is_empty()) {
        mods.push(Modification::Delete(new.clone()));
    }
    for old in old_values(p).into_iter().filter(|o| !o.values.is_empty()) {
        mods.push(Modification::Add(old));
    }
    mods
}

/// Carries out the pending actions; each is journaled (`step` started, then ok or failed).
/// A lost directory, or `stop` (SIGINT/SIGTERM), ends the restore after the action in flight;
/// the report then says what was and was not done.
pub(crate) async fn apply_restore(
    plan: &RestorePlan,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
    stop: &CancellationToken,
) -> Result<RestoreReport, crate::audit::Error> {
    let mut report = RestoreReport::default();
    // Swaps whose user could not be restored: their endpoint is kept.
    let mut user_failed: Vec<&str> = Vec::new();
    // Swaps whose endpoint this restore released (cleared its address) before its user came
    // back.
    let mut released: Vec<&str> = Vec::new();
    let pending: Vec<&RestoreAction> = plan.actions.iter().filter(|a| a.pending).collect();
    for (i, a) in pending.iter().enumerate() {
        if stop.is_cancelled() {
            report.stopped = Some("stop requested (SIGINT or SIGTERM)".to_string());
            report.not_done = pending[i..].iter().map(|a| a.line()).collect();
            break;
        }
        report.actions += 1;
        // The endpoint this user action replaces, if it still serves the URI.
        let endpoint = pending
            .iter()
            .find(|e| e.kind == RestoreKind::DeleteEndpoint && e.swap == a.swap && !e.released);
        let undone = match a.kind {
            RestoreKind::DeleteEndpoint if user_failed.contains(&a.swap.as_str()) => {
                Undone::Failed(keep_endpoint(a, audit)?)
            }
            RestoreKind::DeleteEndpoint => {
                let was_released = a.released || released.contains(&a.swap.as_str());
                undo_endpoint(a, was_released, writer, audit).await?
            }
            RestoreKind::RecreateUser | RestoreKind::ReenableUser => match endpoint {
                Some(e) => {
                    let undone = handover(a, e, writer, audit).await?;
                    if !matches!(undone, Undone::Failed(_)) {
                        released.push(&a.swap);
                    }
                    undone
                }
                None => undo(a, writer, audit).await?,
            },
            RestoreKind::RevertRepoint => undo(a, writer, audit).await?,
        };
        match undone {
            Undone::Done(warnings) => {
                report.applied += 1;
                report.done.push(a.line());
                report.warnings.extend(warnings);
            }
            Undone::Failed(message) => {
                if matches!(
                    a.kind,
                    RestoreKind::RecreateUser | RestoreKind::ReenableUser
                ) {
                    user_failed.push(&a.swap);
                }
                report.failed += 1;
                report.errors.push(message);
            }
            Undone::Lost(message) => {
                report.failed += 1;
                report.errors.push(message.clone());
                report.stopped = Some(format!("the directory went away: {message}"));
                // Whether the write in flight took effect is unknown: a rerun reads the
                // directory and redoes only what is not done.
                report.not_done = pending[i..].iter().map(|a| a.line()).collect();
                break;
            }
        }
    }
    Ok(report)
}

/// How one action ended.
enum Undone {
    /// Done; with what the administrator must know (a new principal, a group not written).
    Done(Vec<String>),
    /// Refused; the line for the report, naming the DN.
    Failed(String),
    /// The directory went away: the restore stops.
    Lost(String),
}

/// Brings the user of `a` back while its swap's endpoint `e` still serves the URI, so the URI
/// is never held twice: the mirror of the swap's own order (docs/operations.md). The endpoint
/// releases the URI first (a conditional modify that clears its address, reversible with no
/// change of identity), then the user comes back; if it cannot, the endpoint gets its address
/// back and keeps serving. The endpoint is deleted afterwards, by its own action.
async fn handover(
    a: &RestoreAction,
    e: &RestoreAction,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Undone, crate::audit::Error> {
    match endpoint_step(e, Step::ReleaseEndpoint, writer, audit).await? {
        Undone::Done(_) => {}
        Undone::Failed(why) => {
            return Ok(Undone::Failed(format!(
                "{}: not brought back, because its endpoint could not release {} first (the \
                 URI would be held twice): {why}",
                a.dn, a.sip_uri
            )));
        }
        lost @ Undone::Lost(_) => return Ok(lost),
    }
    let undone = undo(a, writer, audit).await?;
    let Undone::Failed(why) = &undone else {
        return Ok(undone);
    };
    Ok(
        match endpoint_step(e, Step::ServeEndpoint, writer, audit).await? {
            Undone::Done(_) => Undone::Failed(why.clone()),
            Undone::Failed(serve_why) => Undone::Failed(format!(
                "{why}; and giving {} its address back failed, so {} is UNSERVED: {serve_why}",
                e.dn, e.sip_uri
            )),
            lost @ Undone::Lost(_) => lost,
        },
    )
}

/// Deletes the endpoint of a swap whose user is back: released first (by this restore or an
/// interrupted one), it is deleted while it holds no address; one whose user was back before
/// this restore began is deleted as it stands.
async fn undo_endpoint(
    a: &RestoreAction,
    was_released: bool,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Undone, crate::audit::Error> {
    if !was_released {
        return undo(a, writer, audit).await;
    }
    fail_point("restore-step-started").await;
    endpoint_step(a, Step::DeleteEndpoint, writer, audit).await
}

/// One conditional write on the endpoint of `e` between its `started` and `ok`/`failed`
/// records: `release_endpoint` clears its address (while it holds the URI), `serve_endpoint`
/// puts it back (while it holds none), `delete_endpoint` deletes it (while it holds none).
async fn endpoint_step(
    e: &RestoreAction,
    step: Step,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Undone, crate::audit::Error> {
    let address = AttrValues::text(attr::PRIMARY_USER_ADDRESS, &[e.sip_uri.as_str()]);
    let none = [AttrValues::absent(&crate::model::AttrName::new(
        attr::PRIMARY_USER_ADDRESS,
    ))];
    let base = |outcome| e.note(step, outcome);
    audit.record(base(Outcome::Started))?;
    let written = match step {
        Step::ReleaseEndpoint => {
            let clear = [Modification::Delete(address.clone())];
            writer.modify(&e.dn, &clear, &[address]).await
        }
        Step::ServeEndpoint => {
            let serve = [Modification::Add(address)];
            writer.modify(&e.dn, &serve, &none).await
        }
        _ => writer.delete(&e.dn, &none).await,
    };
    step_end(e, step, written.map(|()| Vec::new()), None, audit)
}

/// Records how a step of `a` ended (`ok`, with `after` and any warnings, or `failed`) and what
/// it means for the restore: a transient error ends it.
fn step_end(
    a: &RestoreAction,
    step: Step,
    result: Result<Vec<String>, WriteError>,
    after: Option<Entry>,
    audit: &mut impl AuditSink,
) -> Result<Undone, crate::audit::Error> {
    match result {
        Ok(warnings) => {
            let mut rec = a.note(step, Outcome::Ok);
            if !warnings.is_empty() {
                rec = rec.message(warnings.join("; "));
            }
            rec.after = after;
            audit.record(rec)?;
            Ok(Undone::Done(warnings))
        }
        Err(e) => {
            let mut message = e.to_string();
            if a.kind == RestoreKind::RecreateUser && step == Step::RestoreUser {
                message.push_str(&recreate_hint(&e, &a.dn));
            }
            audit.record(a.note(step, Outcome::Failed).message(&message))?;
            let line = format!("{}: {message}", a.dn);
            Ok(if e.is_transient() {
                Undone::Lost(line)
            } else {
                Undone::Failed(line)
            })
        }
    }
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
    audit.record(a.note(Step::DeleteEndpoint, Outcome::Skipped).message(&e))?;
    Ok(e)
}

/// Carries out one action between its `started` and `ok`/`failed` records.
async fn undo(
    a: &RestoreAction,
    writer: &mut impl DirectoryWriter,
    audit: &mut impl AuditSink,
) -> Result<Undone, crate::audit::Error> {
    let step = match a.kind {
        RestoreKind::DeleteEndpoint => Step::DeleteEndpoint,
        RestoreKind::RevertRepoint => Step::RepointEndpoint,
        RestoreKind::RecreateUser | RestoreKind::ReenableUser => Step::RestoreUser,
    };
    let base = |outcome| a.note(step, outcome);
    audit.record(base(Outcome::Started))?;
    fail_point("restore-step-started").await;
    let result = match (&a.kind, &a.image, &a.repoint) {
        (RestoreKind::DeleteEndpoint, _, _) => {
            let expect = [AttrValues::text(
                attr::PRIMARY_USER_ADDRESS,
                &[a.sip_uri.as_str()],
            )];
            writer.delete(&a.dn, &expect).await.map(|()| Vec::new())
        }
        (RestoreKind::RecreateUser, Some(image), _) => bring_back(writer, image, &a.sip_uri).await,
        (RestoreKind::ReenableUser, Some(image), _) => reenable(writer, image, &a.sip_uri).await,
        (RestoreKind::RevertRepoint, _, Some(p)) => writer
            .modify(&a.dn, &revert_mods(p), &p.new_values)
            .await
            .map(|()| Vec::new()),
        // An action is planned with what it needs; nothing to write without it.
        _ => Ok(Vec::new()),
    };
    step_end(a, step, result, a.image.clone(), audit)
}

/// Gives a released user (still there, its msRTCSIP-* values cleared) its values back, on the
/// same object. An object at its DN with another objectGUID is not the user and is never
/// written over; a user deleted since (by hand) is brought back as [`bring_back`] does.
async fn reenable(
    writer: &mut impl DirectoryWriter,
    image: &Entry,
    sip_uri: &SipUri,
) -> Result<Vec<String>, WriteError> {
    let guid = image.get("objectGUID").first();
    match writer.read_entry(&image.dn).await? {
        None => bring_back(writer, image, sip_uri).await,
        Some(current) if guid.is_some() && current.get("objectGUID").first() != guid => {
            Err(taken(&image.dn, sip_uri))
        }
        Some(_) => restore_user(writer, Retire::Disable, image)
            .await
            .map(|()| Vec::new()),
    }
}

/// The refusal for a DN that holds another object than the user.
fn taken(dn: &Dn, sip_uri: &SipUri) -> WriteError {
    WriteError::Conflict {
        dn: dn.clone(),
        source: format!(
            "{dn} is taken by another object that does not hold {sip_uri} (an account re-added \
             by hand?); it is not written over: move or delete it, then run the restore again"
        )
        .into(),
    }
}

/// Brings a deleted user back from its before-image, keeping its identity where the directory
/// allows it, and puts back its group memberships. Returns what the administrator must be told:
/// a new principal, a group not written.
///
/// - Nothing at the DN: reanimate the tombstone with the image's objectGUID (Active Directory),
///   else re-create the user from the image (a new principal).
/// - The same object at the DN (reanimated by an earlier, interrupted restore): go on with it.
/// - Another object at the DN (an account re-added by hand): refused; it is never written over.
///
/// Then the image's attributes are written back onto the object where they differ, in one
/// modify, and the user is added back to each group of its `memberOf`.
async fn bring_back(
    writer: &mut impl DirectoryWriter,
    image: &Entry,
    sip_uri: &SipUri,
) -> Result<Vec<String>, WriteError> {
    let dn = &image.dn;
    let guid = image.get("objectGUID").first();
    let mut warnings = Vec::new();
    // The object that keeps the user's identity, whose attributes are then put back; `None`
    // when the user was re-created (the add wrote every attribute it may).
    let kept = match writer.read_entry(dn).await? {
        Some(current) => {
            if guid.is_none() || current.get("objectGUID").first() != guid {
                return Err(taken(dn, sip_uri));
            }
            Some(current)
        }
        None => match reanimate(writer, guid, dn).await? {
            Ok(()) => Some(
                writer
                    .read_entry(dn)
                    .await?
                    .ok_or_else(|| WriteError::Conflict {
                        dn: dn.clone(),
                        source: format!("{dn} is missing right after its reanimation").into(),
                    })?,
            ),
            Err(why) => {
                writer.add(&recreate_entry(image)).await?;
                warnings.push(new_principal(dn, guid.is_some(), &why));
                None
            }
        },
    };
    if let Some(current) = kept {
        let mods = attribute_mods(image, &current);
        if !mods.is_empty() {
            writer.modify(dn, &mods, &[]).await?;
        }
    }
    let groups = image.get("memberOf").iter();
    for group in groups.filter_map(|g| std::str::from_utf8(g).ok()) {
        warnings.extend(rejoin(writer, dn, group).await?);
    }
    Ok(warnings)
}

/// Reanimates the tombstone with objectGUID `guid` at `dn`. The inner `Err` says why there was
/// none to reanimate, or why it was refused (the user is then re-created); the outer one is a
/// lost directory.
async fn reanimate(
    writer: &mut impl DirectoryWriter,
    guid: Option<&Vec<u8>>,
    dn: &Dn,
) -> Result<Result<(), String>, WriteError> {
    let Some(guid) = guid else {
        // OpenLDAP returns no objectGUID, and keeps no tombstones.
        return Ok(Err(
            "its before-image has no objectGUID: the directory keeps no tombstones".to_string(),
        ));
    };
    match writer.reanimate(guid, dn).await {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Ok(Err(format!(
            "no tombstone with objectGUID {} could be read in Deleted Objects",
            crate::util::hex(guid)
        ))),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(Err(format!("reanimating its tombstone was refused: {e}"))),
    }
}

/// The loud line for a user re-created instead of reanimated.
fn new_principal(dn: &Dn, had_guid: bool, why: &str) -> String {
    if had_guid {
        format!(
            "NEW PRINCIPAL: {dn} was re-created with a new objectGUID and objectSid ({why}); \
             ACLs and references that name the old SID no longer apply to it"
        )
    } else {
        format!(
            "NEW PRINCIPAL: {dn} was re-created from its before-image with a new entryUUID \
             ({why})"
        )
    }
}

/// Adds `dn` back to `group`. A membership already there is fine; a group the account may not
/// write, or that is gone, is a warning: the user itself is back.
async fn rejoin(
    writer: &mut impl DirectoryWriter,
    dn: &Dn,
    group: &str,
) -> Result<Option<String>, WriteError> {
    let Ok(group_dn) = Dn::parse(group) else {
        return Ok(Some(format!(
            "group membership in {group:?} not put back: not a DN"
        )));
    };
    let add = [Modification::Add(AttrValues::text(
        "member",
        &[dn.as_str()],
    ))];
    match writer.modify(&group_dn, &add, &[]).await {
        Ok(()) => Ok(None),
        Err(e) if e.is_transient() => Err(e),
        // LDAP 20: the value is there already.
        Err(e) if e.rc() == Some(20) => Ok(None),
        Err(e) => Ok(Some(format!(
            "group membership of {dn} in {group_dn} not put back: {e}"
        ))),
    }
}

/// The modify that makes `current` show the image's attributes again (those a client may
/// write, see [`recreate_entry`]): for each that differs, its current values out and the
/// image's in. Attributes the image does not have are left alone.
fn attribute_mods(image: &Entry, current: &Entry) -> Vec<Modification> {
    let mut mods = Vec::new();
    for a in recreate_entry(image).attributes {
        if a.name.is("objectClass") {
            continue;
        }
        let now = current.get(a.name.as_str());
        let same = now.len() == a.values.len() && a.values.iter().all(|v| now.contains(v));
        if same {
            continue;
        }
        if !now.is_empty() {
            mods.push(Modification::Delete(AttrValues {
                name: a.name.clone(),
                values: now.to_vec(),
            }));
        }
        mods.push(Modification::Add(a));
    }
    mods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Header, Status};

    const USER: &str = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";

    fn entry(attributes: Vec<AttrValues>) -> Entry {
        Entry {
            dn: Dn::parse(USER).unwrap(),
            attributes,
        }
    }

    #[test]
    fn a_user_holds_the_uri_as_the_planner_compares_it() {
        let uri = SipUri::parse("sip:ocschat@contoso.com").unwrap();
        let spaced = entry(vec![AttrValues::text(
            attr::PRIMARY_USER_ADDRESS,
            &[" SIP:OCSChat@Contoso.com "],
        )]);
        assert!(holds(&spaced, &uri));
        for variant in [
            "sips:ocschat@contoso.com",
            "sip:ocschat@contoso.com:5061",
            "ocschat@contoso.com",
        ] {
            let e = entry(vec![AttrValues::text(
                attr::PRIMARY_USER_ADDRESS,
                &[variant],
            )]);
            assert!(holds(&e, &uri), "{variant} holds {uri} for Lync");
        }
        let plain = entry(vec![AttrValues::text("cn", &["OCSChat"])]);
        assert!(
            !holds(&plain, &uri),
            "an account without the URI is not the user"
        );
    }

    #[test]
    fn only_attributes_that_differ_and_a_client_may_write_are_put_back() {
        let image = entry(vec![
            AttrValues::text("objectClass", &["top", "user"]),
            AttrValues::text("objectGUID", &["guid"]),
            AttrValues::text("memberOf", &["CN=G,DC=contoso,DC=com"]),
            AttrValues::text("displayName", &["Group Chat Lookup"]),
            AttrValues::text("sAMAccountName", &["OCSChat"]),
            AttrValues::text(attr::PRIMARY_USER_ADDRESS, &["sip:ocschat@contoso.com"]),
        ]);
        // What a tombstone keeps: identity, account name, and a value that changed.
        let reanimated = entry(vec![
            AttrValues::text("objectClass", &["top", "user"]),
            AttrValues::text("objectGUID", &["guid"]),
            AttrValues::text("sAMAccountName", &["OCSChat"]),
            AttrValues::text("displayName", &["stale"]),
            AttrValues::text(
                "lastKnownParent",
                &["OU=Service Accounts,DC=contoso,DC=com"],
            ),
        ]);
        assert_eq!(
            attribute_mods(&image, &reanimated),
            vec![
                Modification::Delete(AttrValues::text("displayName", &["stale"])),
                Modification::Add(AttrValues::text("displayName", &["Group Chat Lookup"])),
                Modification::Add(AttrValues::text(
                    attr::PRIMARY_USER_ADDRESS,
                    &["sip:ocschat@contoso.com"]
                )),
            ]
        );
        assert!(attribute_mods(&image, &image).is_empty());
    }

    #[test]
    fn a_repoint_is_reverted_by_taking_its_new_values_out_and_the_old_ones_in() {
        let old = AttrValues::text(attr::PRIMARY_HOME_SERVER, &["CN=1:3,DC=x"]);
        let new = AttrValues::text(attr::PRIMARY_HOME_SERVER, &["CN=1:2,DC=x"]);
        let p = RepointEndpoint {
            header: Header {
                dn: Dn::parse("CN={e},DC=x").unwrap(),
                sip_uri: SipUri::parse("sip:ocschat@contoso.com").unwrap(),
                pool: "pcpool1.contoso.com".into(),
                status: Status::Ready,
                not_before: None,
                reason: String::new(),
            },
            expect: vec![
                old.clone(),
                AttrValues::text(attr::PRIMARY_USER_ADDRESS, &["sip:ocschat@contoso.com"]),
            ],
            new_values: vec![new.clone()],
        };
        assert_eq!(old_values(&p), vec![old.clone()]);
        assert_eq!(
            revert_mods(&p),
            vec![Modification::Delete(new), Modification::Add(old)]
        );
    }
}
