//! Scheduled runs: one worker owns every run, one at a time, fed by a capacity-1 trigger
//! channel (start-up, cron ticks), so runs never overlap and ticks that arrive during a run
//! coalesce. A run is the same code path as `pcsync reconcile` ([`crate::reconcile`]); its
//! outcome is published in the shared status for `/healthz` and `/metrics`. Between runs the
//! same worker counts the last run's replication again ([`Recount`]) until it is complete.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::recount::{self, Recount};
use super::status::{LastRun, ReplicationState, RunOutcome, stamp};
use super::tree::{TaskName, panic_point};
use super::{Daemon, log_safe};
use crate::audit;
use crate::config::Settings;
use crate::estate::replication::Mark;
use crate::estate::{self, Replication, WriteServer};
use crate::ldap::Directory;
use crate::lock::{LockError, RunLock};
use crate::mapping::refresh::agent_connection;
use crate::plan::Plan;
use crate::reconcile::{self, ApplyOptions, Blocked, RunEnd, RunError, Stopped};
use crate::schedule::Trigger;

/// Owns every scheduled run, one at a time. Cancellation is noticed between runs; a run in
/// progress receives the token and stops between swaps.
pub(crate) async fn worker(
    daemon: Arc<Daemon>,
    rx: &mut mpsc::Receiver<Trigger>,
    token: CancellationToken,
) {
    // The fingerprint of the last pending plan recorded in the audit log, so an unchanged
    // pending plan is recorded once, not at every tick.
    let mut recorded_pending: Option<String> = None;
    let mut causes = Causes::default();
    // The last run's writes, while some DC does not hold them yet.
    let mut recount: Option<Recount> = None;
    loop {
        // Biased: when a stop and a pending tick are both ready, the stop wins. A count is a
        // few small reads, so a tick waits at most that long behind one.
        let trigger = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            () = Recount::due(recount.as_ref()) => {
                if let Some(r) = recount.take() {
                    // Only reads: a DC slow to answer must not hold up a stop.
                    tokio::select! {
                        _ = token.cancelled() => break,
                        next = r.count(&daemon) => recount = next,
                    }
                }
                continue;
            }
            t = rx.recv() => match t { Some(t) => t, None => break },
        };
        if token.is_cancelled() {
            break;
        }
        panic_point(TaskName::Runs);
        // The settings in force now: a reload reaches the next run.
        let settings = daemon.current();
        let started = crate::clock::system();
        let run_id = audit::new_run_id(started, reconcile::random_u32());
        let span = info_span!("run", run_id = %run_id, trigger = trigger.as_str());
        let mut result = run_once(&daemon, &settings, &token, &mut recorded_pending)
            .instrument(span.clone())
            .await;
        let finished = crate::clock::system();
        span.in_scope(|| log_end(&result, &mut causes));
        // A run that counted replication replaces the recount of an earlier one.
        if let Some(count) = &result.replication {
            recount = result
                .recount
                .take()
                .and_then(|(mark, server)| Recount::after(count, server, mark, finished));
        }
        publish(&daemon, trigger, run_id, (started, finished), result);
    }
}

/// The run's summary line. A blocked or failed run is a warning the first time its cause is
/// seen; the same cause again (a directory down for an hour, a guard that keeps blocking) is
/// logged at debug, so a 1-second cron does not bury everything else. `/healthz` and
/// `/metrics` still show and count every run.
fn log_end(result: &RunResult, causes: &mut Causes) {
    let outcome = result.outcome();
    if succeeded(outcome) {
        if let Some((was, _)) = causes.clear() {
            info!(
                was = was.as_str(),
                "scheduled runs succeed again after failing or being blocked"
            );
        }
        info!(
            outcome = outcome.as_str(),
            applied = result.applied(),
            pending = result.pending,
            "scheduled run finished"
        );
        return;
    }
    let message = result.message().unwrap_or_default();
    if causes.is_new(outcome, &message) {
        warn!(
            outcome = outcome.as_str(),
            message = %log_safe(&message),
            "scheduled run finished"
        );
    } else {
        debug!(
            outcome = outcome.as_str(),
            message = %log_safe(&message),
            "scheduled run finished, for the same cause as the run before"
        );
    }
}

/// The cause of the last unsuccessful run, so the log says each distinct cause once.
#[derive(Debug, Default)]
struct Causes {
    last: Option<(RunOutcome, String)>,
}

impl Causes {
    /// Whether this outcome and message differ from the last unsuccessful run's; remembers
    /// them.
    fn is_new(&mut self, outcome: RunOutcome, message: &str) -> bool {
        let same = self
            .last
            .as_ref()
            .is_some_and(|(o, m)| *o == outcome && m == message);
        if !same {
            self.last = Some((outcome, message.to_string()));
        }
        !same
    }

    /// A run succeeded: the next failure is news again. Returns the cause that ended.
    fn clear(&mut self) -> Option<(RunOutcome, String)> {
        self.last.take()
    }
}

/// Whether a run did its job: a blocked or failed run needs an operator's eye, and makes the
/// worker's last attempt a failure in `/healthz`.
fn succeeded(outcome: RunOutcome) -> bool {
    !matches!(outcome, RunOutcome::Blocked | RunOutcome::Failed)
}

/// Publishes a finished run in the shared state (`/healthz`, `/metrics`).
fn publish(
    daemon: &Daemon,
    trigger: Trigger,
    run_id: String,
    (started, finished): (DateTime<Utc>, DateTime<Utc>),
    result: RunResult,
) {
    // The run's status, from how it ended (RunEnd::outcome), in this one place.
    let outcome = result.outcome();
    let message = result.message();
    let applied = result.applied();
    let attempt = if succeeded(outcome) {
        Ok(())
    } else {
        Err(message.clone().unwrap_or_default())
    };
    daemon.status.attempt(TaskName::Runs, attempt, finished);
    daemon.status.update(|s| {
        *s.runs.entry(outcome).or_insert(0) += 1;
        s.changes_applied_total += applied;
        if outcome != RunOutcome::Standby {
            s.pending_changes = result.pending;
        }
        if matches!(
            outcome,
            RunOutcome::InSync | RunOutcome::Pending | RunOutcome::Applied
        ) {
            s.last_success_at = Some(finished);
            s.last_success = Some(stamp(finished));
        }
        s.last_run = Some(LastRun {
            run_id: result.audit_run_id.unwrap_or(run_id),
            started_at: stamp(started),
            finished_at: stamp(finished),
            outcome,
            trigger: trigger.as_str().to_string(),
            message,
            changes_applied: applied,
            changes_pending: result.pending,
        });
        if let Some(r) = &result.replication {
            let state = recount::phase(r, std::time::Duration::ZERO);
            s.replication = Some(ReplicationState::new(r, state, finished, finished));
        }
    });
}

/// The result of one scheduled run.
struct RunResult {
    /// How the run ended; `None` when this instance is on standby (not the lease holder).
    end: Option<RunEnd>,
    /// Changes planned and not applied.
    pending: u64,
    /// The run id in the audit log, when the run wrote to it.
    audit_run_id: Option<String>,
    /// How many DCs held the run's writes when it ended (Active Directory, after writes).
    replication: Option<Replication>,
    /// With `replication`: what the run wrote and where, to count again.
    recount: Option<(Mark, WriteServer)>,
}

impl RunResult {
    fn new(end: RunEnd) -> RunResult {
        RunResult {
            end: Some(end),
            pending: 0,
            audit_run_id: None,
            replication: None,
            recount: None,
        }
    }

    fn failed(e: impl Into<RunError>) -> RunResult {
        RunResult::new(RunEnd::Failed(e.into()))
    }

    fn outcome(&self) -> RunOutcome {
        self.end
            .as_ref()
            .map_or(RunOutcome::Standby, RunEnd::outcome)
    }

    fn message(&self) -> Option<String> {
        match &self.end {
            Some(RunEnd::Pending) => Some(format!(
                "{} change(s) pending approval (safety.auto_apply = false): review with `pcsync reconcile`, apply with `pcsync reconcile --apply`",
                self.pending
            )),
            Some(end) => end.message(),
            None => None,
        }
    }

    fn applied(&self) -> u64 {
        match &self.end {
            Some(RunEnd::Applied(report)) => report.applied as u64,
            _ => 0,
        }
    }
}

async fn run_once(
    daemon: &Daemon,
    settings: &Settings,
    token: &CancellationToken,
    recorded_pending: &mut Option<String>,
) -> RunResult {
    if !daemon.status.update(|s| s.lease.writer) {
        debug!("not the lease holder: no run");
        return RunResult {
            end: None,
            pending: 0,
            audit_run_id: None,
            replication: None,
            recount: None,
        };
    }
    // A run may write, so it works on the write server only, never failing over.
    let opened = estate::writer::open_with(&settings.directory, &agent_connection(settings)).await;
    let (mut dir, writer) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            daemon
                .status
                .directory(false, Some(e.to_string()), crate::clock::system());
            return RunResult::failed(e);
        }
    };
    daemon.status.directory(true, None, crate::clock::system());
    let result = run_connected(settings, &mut dir, &writer, token, recorded_pending).await;
    dir.close().await;
    result
}

async fn run_connected(
    settings: &Settings,
    dir: &mut Directory,
    writer: &WriteServer,
    token: &CancellationToken,
    recorded_pending: &mut Option<String>,
) -> RunResult {
    if let Err(e) = dir.require_schema().await {
        return RunResult::failed(e);
    }
    // A run that may write takes the run lock before it scans: a one-shot `pcsync reconcile
    // --apply` (or `restore`) on this host cannot change the directory or the audit log between
    // this scan and the apply, so the plan computed here is the one applied, and the directory
    // is scanned once per run.
    let lock = if settings.safety.auto_apply {
        match RunLock::acquire(&settings.state.dir) {
            Ok(l) => Some(l),
            Err(e @ LockError::Busy { .. }) => {
                return RunResult::new(RunEnd::Blocked(vec![Blocked::Locked(e)]));
            }
            Err(e) => return RunResult::new(RunEnd::Failed(RunError::Lock(e))),
        }
    } else {
        None
    };
    // A cheap look first: most runs find nothing to do and then write nothing, not even to the
    // audit log (a 1-second cron would otherwise add records every second).
    let unfinished = match audit::LogFiles::of(settings).and_then(|f| audit::open_swaps(&f)) {
        Ok(open) => !open.is_empty(),
        Err(e) => return RunResult::failed(e),
    };
    let plan = match reconcile::compute(settings, dir, None, crate::clock::system()).await {
        Ok(plan) => plan,
        Err(Stopped::Failed(e)) => return RunResult::new(RunEnd::Failed(e)),
        Err(Stopped::Blocked(b)) => return blocked_plan(settings, dir, b, lock),
    };
    // Nothing ready to write: in sync, or every swap blocked by a finding (outcome `blocked`,
    // counted in pcsync_blocked_runs_total, not `in_sync`).
    if plan.is_in_sync() && !unfinished {
        *recorded_pending = None;
        return RunResult::new(RunEnd::planned(&plan));
    }
    if lock.is_none() {
        return pending(settings, dir, &plan, recorded_pending);
    }
    let origin = format!("pcsync run (scheduled, auto_apply); write server {writer}");
    let opts = ApplyOptions {
        origin: &origin,
        computed: Some(&plan),
        write_server: Some(writer),
        wait_replication: None,
        saved_plan: None,
        plan_out: None,
        max_changes: None,
        progress: None,
        clock: crate::clock::system,
    };
    let run = match reconcile::audited_apply(settings, dir, &opts, token).await {
        Ok(run) => run,
        Err(e) => return RunResult::failed(e),
    };
    let mut result = RunResult::new(run.end);
    if let Some(plan) = &run.plan
        && result.outcome() == RunOutcome::Blocked
    {
        result.pending = plan.summary.ready as u64;
    }
    result.audit_run_id = run.run_id;
    result.recount = run.replication_mark.map(|mark| (mark, writer.clone()));
    result.replication = run.replication;
    *recorded_pending = None;
    result
}

/// `auto_apply = false`: record the pending plan (once per distinct plan) and report it.
fn pending(
    settings: &Settings,
    dir: &Directory,
    plan: &Plan,
    recorded: &mut Option<String>,
) -> RunResult {
    let mut result = RunResult::new(RunEnd::Pending);
    result.pending = plan.summary.ready as u64;
    if recorded.as_deref() == Some(plan.fingerprint.as_str()) {
        return result;
    }
    // Appending to the audit log needs the run lock, like any writer of it.
    let _lock = match RunLock::acquire(&settings.state.dir) {
        Ok(l) => l,
        Err(e) => {
            warn!("pending plan not recorded this time: {e}");
            return result;
        }
    };
    match reconcile::record_pending(settings, dir.bound_as(), plan, crate::clock::system) {
        Ok(id) => {
            info!(audit_run_id = %id, pending = result.pending, "pending plan recorded in the audit log");
            *recorded = Some(plan.fingerprint.clone());
            result.audit_run_id = Some(id);
        }
        Err(e) => result.end = Some(RunEnd::Failed(e.into())),
    }
    result
}

/// A guard stopped planning (an empty search): audited like any guard block.
/// `held` is the run lock when the run already holds it.
fn blocked_plan(
    settings: &Settings,
    dir: &Directory,
    guard: Blocked,
    held: Option<RunLock>,
) -> RunResult {
    let reason = guard.to_string();
    let mut result = RunResult::new(RunEnd::Blocked(vec![guard]));
    match held.map_or_else(|| RunLock::acquire(&settings.state.dir), Ok) {
        Ok(_lock) => {
            match reconcile::record_blocked(settings, dir.bound_as(), &reason, crate::clock::system)
            {
                Ok(id) => result.audit_run_id = Some(id),
                Err(e) => warn!("cannot audit the blocked run: {e}"),
            }
        }
        Err(e) => warn!("blocked run not audited this time: {e}"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_distinct_cause_is_news_once_until_a_run_succeeds() {
        let mut causes = Causes::default();
        assert!(causes.is_new(RunOutcome::Failed, "directory down"));
        assert!(!causes.is_new(RunOutcome::Failed, "directory down"));
        assert!(causes.is_new(RunOutcome::Failed, "audit log full"));
        assert!(causes.is_new(RunOutcome::Blocked, "audit log full"));
        assert!(!causes.is_new(RunOutcome::Blocked, "audit log full"));
        assert_eq!(
            causes.clear(),
            Some((RunOutcome::Blocked, "audit log full".to_string()))
        );
        assert!(causes.is_new(RunOutcome::Blocked, "audit log full"));
    }
}
