//! One reconcile run, shared by `pcsync reconcile` and the daemon's scheduled runs (`pcsync
//! run`): the I/O edge around the pure planner, and how a run ends.
//!
//! [`compute`] streams the directory through a [`Collector`], confirms duplicate candidates,
//! re-reads the few objects holding a migration URI in full, and plans with the current time.
//! [`audited_apply`] is the whole audited write path: verify the audit chain, finish swaps a
//! crashed run left open, plan (or check a saved plan), guard, apply, record the end. Callers
//! hold the run lock ([`crate::lock`]) around it and render the result themselves; nothing here
//! prints. Every guard block is audited; nothing is written after a guard.
//!
//! A run ends as one [`RunEnd`]; the CLI takes its exit code from it and the agent its status,
//! so neither interprets a result of its own.
//!
//! Planning reads through [`Source`], so [`replay`] runs the very same scan and planner over a
//! captured directory state (the golden tests in tests/fixtures/golden/).

mod preflight;
mod source;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyError, Report};
use crate::audit::{self, Actor, AuditLog, AuditSink, Event, Note, Outcome};
use crate::clock::Clock;
use crate::config::Settings;
use crate::estate::replication::Mark;
use crate::estate::routed::Routed;
use crate::estate::{self, Replication, WriteServer};
use crate::exit;
use crate::inventory;
use crate::ldap::{self, Directory};
use crate::lock::LockError;
use crate::model::{DirectoryObject, Dn, DnCache, Entry};
use crate::plan::{self, Collector, Desired, Observed, Plan, render};
use crate::progress::Progress;
use source::Snapshot;
pub(crate) use source::{Live, Source, holders_everywhere};

/// How a run ended.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// Nothing to write.
    InSync,
    /// The plan was applied; the report says how each swap went.
    Applied(Report),
    /// Changes planned and not applied: a dry run, or the agent without `auto_apply`.
    Pending,
    /// Safety guards stopped the run before any write (audited).
    Blocked(Vec<Blocked>),
    /// An error ended the run (the directory, the audit log, a plan file, the lock).
    Failed(RunError),
}

impl RunEnd {
    /// How a run that only planned ends: in sync, pending, or blocked when a finding blocked a
    /// swap (then exit 3 and outcome `blocked`, even with other changes pending). The dry run
    /// and the agent without `auto_apply` both end this way.
    pub(crate) fn planned(plan: &Plan) -> RunEnd {
        match Blocked::by_findings(plan) {
            Some(b) => RunEnd::Blocked(vec![b]),
            None if plan.is_in_sync() => RunEnd::InSync,
            None => RunEnd::Pending,
        }
    }

    /// The process exit code (see [`crate::exit`]). A failed swap outweighs a blocked one
    /// (exit 1); a blocked swap outweighs success (exit 3).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunEnd::InSync => exit::OK,
            RunEnd::Applied(report) if !report.is_complete() => exit::ERROR,
            RunEnd::Applied(report) if report.blocked.is_some() => exit::BLOCKED,
            RunEnd::Applied(_) => exit::OK,
            RunEnd::Failed(_) => exit::ERROR,
            RunEnd::Pending => exit::PENDING,
            RunEnd::Blocked(_) => exit::BLOCKED,
        }
    }

    /// The status the agent reports (`/healthz`, `/metrics`, the log).
    pub(crate) fn outcome(&self) -> RunOutcome {
        match self {
            RunEnd::InSync => RunOutcome::InSync,
            RunEnd::Applied(report) if !report.is_complete() => RunOutcome::Failed,
            RunEnd::Applied(report) if report.blocked.is_some() => RunOutcome::Blocked,
            RunEnd::Applied(report) if report.swaps == 0 => RunOutcome::InSync,
            RunEnd::Applied(_) => RunOutcome::Applied,
            RunEnd::Pending => RunOutcome::Pending,
            RunEnd::Blocked(_) => RunOutcome::Blocked,
            RunEnd::Failed(_) => RunOutcome::Failed,
        }
    }

    /// Why the run did not succeed, on one line; `None` when it did (or is only pending).
    pub(crate) fn message(&self) -> Option<String> {
        match self {
            RunEnd::InSync | RunEnd::Pending => None,
            RunEnd::Applied(report) if report.is_complete() => report.blocked.clone(),
            RunEnd::Applied(report) => Some(format!(
                "{} swap(s) failed, {} not started: {}{}",
                report.failed,
                report.not_started,
                join(&report.errors),
                report
                    .blocked
                    .as_ref()
                    .map(|b| format!("; {b}"))
                    .unwrap_or_default()
            )),
            RunEnd::Blocked(guards) => Some(join(guards)),
            RunEnd::Failed(e) => Some(e.to_string()),
        }
    }
}

impl From<Stopped> for RunEnd {
    fn from(stopped: Stopped) -> RunEnd {
        match stopped {
            Stopped::Blocked(b) => RunEnd::Blocked(vec![b]),
            Stopped::Failed(e) => RunEnd::Failed(e),
        }
    }
}

/// `a; b; c`.
fn join(items: &[impl std::fmt::Display]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a run ended, as the agent counts it (`pcsync_runs_total{outcome}`, `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunOutcome {
    /// Nothing to do.
    InSync,
    /// Changes planned, waiting for approval (`auto_apply = false`).
    Pending,
    /// Changes applied (every swap done).
    Applied,
    /// A guard stopped it; nothing was written.
    Blocked,
    /// An error (directory, audit log, a failed swap).
    Failed,
    /// The agent did not run: another instance holds the writer lease.
    Standby,
}

impl RunOutcome {
    pub(crate) const ALL: [RunOutcome; 6] = [
        RunOutcome::InSync,
        RunOutcome::Pending,
        RunOutcome::Applied,
        RunOutcome::Blocked,
        RunOutcome::Failed,
        RunOutcome::Standby,
    ];

    /// The name `/healthz` and `/metrics` show (`in_sync`).
    pub(crate) fn as_str(self) -> &'static str {
        crate::util::variant_name(&self)
    }
}

/// A safety guard that stopped a run before any write. Each names what to do about it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Blocked {
    /// The scan found no SIP-enabled object: a wrong base DN or missing read rights would
    /// otherwise look like every well-known user gone.
    #[error(
        "the search under base_dn {base_dn} returned no SIP-enabled objects; refusing to plan against an empty or unreadable directory"
    )]
    EmptyDirectory { base_dn: Dn },
    /// `--plan FILE` was computed from another directory state or configuration.
    #[error(
        "the directory or the configuration changed since {} was saved (fingerprint {} now {}); compute a new plan",
        path.display(), short(saved), short(fresh)
    )]
    StalePlan {
        path: PathBuf,
        saved: String,
        fresh: String,
    },
    /// `--plan FILE` carries changes other than those planned now (the file was edited, or
    /// written by something else), though its fingerprint matches.
    #[error(
        "{} does not hold the changes planned now ({difference}); nothing was written: compute a new plan with --plan-out and review it",
        path.display()
    )]
    EditedPlan { path: PathBuf, difference: String },
    /// More changes than `safety.max_changes_per_run` (or `--max-changes`) allows.
    #[error(
        "{ready} change(s) exceed safety.max_changes_per_run = {limit}; review the plan and rerun with --max-changes {ready}"
    )]
    TooManyChanges { ready: usize, limit: u32 },
    /// Another run on this host holds the run lock.
    #[error(transparent)]
    Locked(LockError),
    /// Findings (or the preflight) blocked some swaps: those were not written; the others
    /// were planned (and, with `--apply`, applied) as usual.
    #[error(
        "{swaps} swap(s) blocked by findings ({kinds}); nothing was written for them; see the plan's findings"
    )]
    Findings { swaps: usize, kinds: String },
}

impl Blocked {
    /// The swaps findings blocked in `plan`, if any; `kinds` lists the kinds of its findings
    /// that block (not `suspect` or the mapping's own kinds, which block nothing).
    pub(crate) fn by_findings(plan: &Plan) -> Option<Blocked> {
        if plan.summary.blocked == 0 {
            return None;
        }
        let kinds: std::collections::BTreeSet<String> = plan
            .findings
            .iter()
            .map(|f| f.kind.to_string())
            .filter(|k| k != "suspect")
            .collect();
        Some(Blocked::Findings {
            swaps: plan.summary.blocked,
            kinds: kinds.into_iter().collect::<Vec<_>>().join(", "),
        })
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// A search or read failed (the error names the server and the DN).
    #[error(transparent)]
    Directory(#[from] ldap::Error),
    /// The audit log cannot be read, verified or written.
    #[error(transparent)]
    Audit(#[from] audit::Error),
    /// Applying stopped: the audit log failed, or the directory went away mid-swap.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A plan file cannot be read or written.
    #[error(transparent)]
    PlanFile(#[from] PlanFileError),
    /// The run lock cannot be taken at all (state.dir unwritable).
    #[error(transparent)]
    Lock(LockError),
    /// The write server cannot be found or reached (writes never fail over).
    #[error(transparent)]
    Estate(#[from] estate::Error),
}

/// What stopped a run early: a guard, or an error. Becomes the run's [`RunEnd`].
#[derive(Debug)]
pub(crate) enum Stopped {
    Blocked(Blocked),
    Failed(RunError),
}

impl From<Blocked> for Stopped {
    fn from(b: Blocked) -> Stopped {
        Stopped::Blocked(b)
    }
}

impl<E: Into<RunError>> From<E> for Stopped {
    fn from(e: E) -> Stopped {
        Stopped::Failed(e.into())
    }
}

/// A plan file (`--plan-out`, `--plan`) that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanFileError {
    #[error("cannot write plan file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read plan file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plan file {} is not a pcsync plan: {source}", path.display())]
    NotAPlan {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "plan file {} has format {found}, this pcsync reads format {}",
        path.display(), plan::PLAN_FORMAT
    )]
    Format { path: PathBuf, found: u32 },
}

/// What an applying run is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct ApplyOptions<'a> {
    /// Where the run's times come from (plan, run id, audit records).
    pub clock: Clock,
    /// Apply exactly this saved plan (refused when stale).
    pub saved_plan: Option<&'a Path>,
    /// Save the plan applied here.
    pub plan_out: Option<&'a Path>,
    /// Overrides `safety.max_changes_per_run` for this run.
    pub max_changes: Option<u32>,
    /// Who started the run, for the `run_start` record (`reconcile --apply`, `pcsync run`).
    pub origin: &'a str,
    /// Counts the objects the scan reads (a terminal progress line for the CLI).
    pub progress: Option<&'a Progress>,
    /// The write server `dir` is connected to: after the writes, the run counts the DCs that
    /// hold them (Active Directory only).
    pub write_server: Option<&'a WriteServer>,
    /// With `write_server`: wait up to this long for every reachable DC to hold the writes.
    pub wait_replication: Option<std::time::Duration>,
    /// A plan the caller computed on this connection while holding the run lock (the agent's
    /// scheduled run): applied instead of scanning the directory a second time, unless swaps of
    /// a crashed run were open (recovering them changes what the scan saw).
    pub computed: Option<&'a Plan>,
}

/// The result of [`audited_apply`].
#[derive(Debug)]
pub(crate) struct Applied {
    /// The audit log's run id; `None` for a run in sync, which records nothing.
    pub run_id: Option<String>,
    /// Swaps of a crashed run completed or rolled back first.
    pub recovered: Vec<apply::Recovered>,
    /// The plan, unless the run stopped before planning.
    pub plan: Option<Plan>,
    /// How many DCs held the run's writes when it ended (Active Directory, after writes).
    pub replication: Option<Replication>,
    /// What the run wrote as replication sees it, with `replication`: to count again later.
    pub replication_mark: Option<Mark>,
    /// How the run ended: `Applied`, `Blocked` or `Failed` (each audited).
    pub end: RunEnd,
}

/// Runs one audited apply against `dir`. `stop` is checked between swaps, never inside one.
/// `Err` only when the audit log cannot be read or opened (then nothing was written).
///
/// A run with nothing to do (no swap left open by a crashed run, no saved plan, a plan in
/// sync) appends nothing to the audit log, like the agent's scheduled runs: with a short cron
/// the log would otherwise grow by three records a run that tell nobody anything. It ends
/// [`RunEnd::InSync`] with no run id.
pub(crate) async fn audited_apply(
    settings: &Settings,
    dir: &mut Directory,
    opts: &ApplyOptions<'_>,
    stop: &CancellationToken,
) -> Result<Applied, audit::Error> {
    // Check the log against its anchor before appending to it, and learn about crashed swaps.
    let files = audit::LogFiles::of(settings)?;
    let unfinished = audit::open_swaps(&files)?;
    // Recovery writes before planning, and a saved plan is checked against a fresh scan inside
    // the run: only a plain run can be planned before the log is opened.
    let mut precomputed = None;
    if unfinished.is_empty() && opts.saved_plan.is_none() {
        let planned = match opts.computed {
            Some(plan) => Ok(plan.clone()),
            None => compute(settings, dir, opts.progress, (opts.clock)()).await,
        };
        // In sync with no swap blocked: a blocked swap is recorded like any guard block.
        if let Ok(plan) = &planned
            && matches!(RunEnd::planned(plan), RunEnd::InSync)
        {
            let saved = match opts.plan_out {
                Some(path) => save_plan(path, plan),
                None => Ok(()),
            };
            return Ok(Applied {
                run_id: None,
                recovered: Vec::new(),
                plan: planned.ok(),
                replication: None,
                replication_mark: None,
                end: saved.map_or_else(|e| RunEnd::Failed(e.into()), |()| RunEnd::InSync),
            });
        }
        precomputed = Some(planned);
    }
    let mut run = AuditedRun {
        precomputed,
        settings,
        opts,
        limit: opts
            .max_changes
            .unwrap_or(settings.safety.max_changes_per_run),
        log: open_log(&files, dir.bound_as(), opts.clock)?,
        recovered: Vec::new(),
        plan: None,
        replication: None,
    };
    run.log.record(run.start_note(dir.supports_assertion()))?;
    let result = run.steps(dir, &unfinished, stop).await;
    let end = run.end(result)?;
    Ok(Applied {
        run_id: Some(run.log.run_id().to_string()),
        recovered: run.recovered,
        plan: run.plan,
        replication: run.replication.as_ref().map(|(r, _)| r.clone()),
        replication_mark: run.replication.map(|(_, mark)| mark),
        end,
    })
}

/// An audited run in progress: what it was asked, where it records, what it found so far.
struct AuditedRun<'a> {
    settings: &'a Settings,
    opts: &'a ApplyOptions<'a>,
    /// The change threshold in force.
    limit: u32,
    log: AuditLog,
    recovered: Vec<apply::Recovered>,
    plan: Option<Plan>,
    /// The count after the writes, and the mark it was counted against.
    replication: Option<(Replication, Mark)>,
    /// The plan (or what stopped it) when it was computed before the log was opened.
    precomputed: Option<Result<Plan, Stopped>>,
}

impl AuditedRun<'_> {
    fn start_note(&self, assertion: bool) -> Note {
        Note::new(Event::RunStart, Outcome::Started).message(format!(
            "{}{}; max_changes {}; conditional writes via {}",
            self.opts.origin,
            self.opts
                .saved_plan
                .map(|p| format!(" --plan {}", p.display()))
                .unwrap_or_default(),
            self.limit,
            if assertion {
                "the Assertion control"
            } else {
                "re-read and value deletes"
            }
        ))
    }

    /// Recovery, the plan, the guards, the apply and its `run_end`.
    async fn steps(
        &mut self,
        dir: &mut Directory,
        unfinished: &[audit::Unfinished],
        stop: &CancellationToken,
    ) -> Result<Report, Stopped> {
        // A crashed run's unfinished swaps come first.
        // Each object is written on its own domain's write server, endpoints on the primary one.
        if !unfinished.is_empty() {
            let mut routed = Routed::new(dir, self.settings).await?;
            let recovered = apply::recover(unfinished, &mut routed, &mut self.log).await;
            routed.close().await;
            self.recovered = recovered?;
        }
        let computed = self.opts.computed.filter(|_| unfinished.is_empty());
        let planned = self.planned(dir, computed).await?;
        let plan = self.plan.insert(planned);
        let ready = plan.summary.ready;
        if ready > self.limit as usize {
            let limit = self.limit;
            return Err(Blocked::TooManyChanges { ready, limit }.into());
        }
        let run_id = self.log.run_id().to_string();
        apply::fail_point(apply::RUN_PLANNED).await;
        let mut routed = Routed::new(dir, self.settings).await?;
        let report = apply::apply(plan, &run_id, &mut routed, &mut self.log, stop).await;
        routed.close().await;
        let mut report = report?;
        report.blocked = Blocked::by_findings(plan).map(|b| b.to_string());
        if let Some(server) = self.opts.write_server
            && report.applied > 0
        {
            let wait = self.opts.wait_replication;
            let counted = replication(self.settings, wait, &mut self.log, dir, server).await?;
            self.replication = counted;
        }
        self.log.record(end_note(plan, &report))?;
        Ok(report)
    }

    /// Computes the plan (or takes the one planned before the log was opened, or the one the
    /// caller `computed`, or checks the saved one against a fresh scan), saves and records it.
    async fn planned(
        &mut self,
        dir: &mut Directory,
        computed: Option<&Plan>,
    ) -> Result<Plan, Stopped> {
        let fresh = match (self.precomputed.take(), computed) {
            (Some(planned), _) => planned?,
            (None, Some(plan)) => plan.clone(),
            (None, None) => {
                compute(self.settings, dir, self.opts.progress, (self.opts.clock)()).await?
            }
        };
        let plan = match self.opts.saved_plan {
            None => fresh,
            Some(path) => {
                let saved = load_plan(path)?;
                if saved.fingerprint != fresh.fingerprint {
                    return Err(Blocked::StalePlan {
                        path: path.to_path_buf(),
                        saved: saved.fingerprint,
                        fresh: fresh.fingerprint,
                    }
                    .into());
                }
                // The fingerprint covers the inputs, not the file's changes: an edited change
                // list with the fingerprint kept would otherwise be applied as written.
                if let Some(difference) = first_difference(&saved.changes, &fresh.changes) {
                    return Err(Blocked::EditedPlan {
                        path: path.to_path_buf(),
                        difference,
                    }
                    .into());
                }
                fresh
            }
        };
        if let Some(path) = self.opts.plan_out {
            save_plan(path, &plan)?;
        }
        record_plan(&mut self.log, &self.settings.state.dir, &plan)?;
        Ok(plan)
    }

    /// Records how the run ended, unless the apply already did (`run_end` after the report).
    fn end(&mut self, result: Result<Report, Stopped>) -> Result<RunEnd, audit::Error> {
        match result {
            Ok(report) => Ok(RunEnd::Applied(report)),
            Err(Stopped::Blocked(b)) => {
                let rec = Note::new(Event::GuardBlocked, Outcome::Blocked).message(b.to_string());
                self.log.record(rec)?;
                self.log.record(
                    Note::new(Event::RunEnd, Outcome::Blocked).message("nothing was written"),
                )?;
                Ok(RunEnd::Blocked(vec![b]))
            }
            Err(Stopped::Failed(e)) => {
                // Best effort: the error may be the audit log itself.
                let rec = Note::new(Event::Error, Outcome::Failed).message(e.to_string());
                let _ = self
                    .log
                    .record(rec)
                    .and_then(|()| self.log.record(Note::new(Event::RunEnd, Outcome::Failed)));
                Ok(RunEnd::Failed(e))
            }
        }
    }
}

/// Counts (and with `wait_replication`, waits for) the DCs holding this run's writes, and
/// records it; with the mark counted against, so a caller may count again later. A count that
/// cannot be made is recorded and logged, never a failed run: the writes are done.
async fn replication(
    settings: &Settings,
    wait: Option<std::time::Duration>,
    log: &mut AuditLog,
    dir: &mut Directory,
    server: &WriteServer,
) -> Result<Option<(Replication, Mark)>, audit::Error> {
    let written = [
        &settings.directory.base_dn,
        &settings.layout.endpoint_container,
    ];
    let ncs = estate::replication::naming_contexts(&dir.root_dse().naming_contexts, &written);
    let mark = match estate::replication::mark(dir, server, ncs).await {
        Ok(Some(mark)) => mark,
        Ok(None) => return Ok(None),
        Err(e) => {
            log.record(Note::new(Event::Replication, Outcome::Failed).message(e.to_string()))?;
            return Ok(None);
        }
    };
    let mut replicas = estate::replication::Replicas::new(&settings.directory, server);
    let counted = match wait {
        Some(patience) => replicas.wait(&mark, patience).await,
        None => replicas.count(&mark).await,
    };
    replicas.close().await;
    let outcome = if counted.reachable_complete() || wait.is_none() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    log.record(Note::new(Event::Replication, outcome).message(counted.to_string()))?;
    Ok(Some((counted, mark)))
}

/// The `run_end` of an apply: its counts, and how far a shutdown let it get.
fn end_note(plan: &Plan, report: &Report) -> Note {
    let mut end = Note::new(
        Event::RunEnd,
        if report.is_complete() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    );
    let mut message = Vec::new();
    if report.not_started > 0 {
        message.push(format!(
            "run aborted by shutdown after {} of {} swap(s); {} not started",
            report.swaps - report.not_started,
            report.swaps,
            report.not_started
        ));
    }
    message.extend(report.blocked.clone());
    if !message.is_empty() {
        end = end.message(message.join("; "));
    }
    end.counts = Some(apply::counts(plan, report));
    end
}

/// Opens the audit log `files` for a new run as the bound account on this host. Opening checks
/// the log's end against its anchor before anything is appended.
fn open_log(
    files: &audit::LogFiles,
    bind_dn: Option<&str>,
    clock: Clock,
) -> Result<AuditLog, audit::Error> {
    let run_id = audit::new_run_id(clock(), random_u32());
    let actor = Actor {
        bind_dn: bind_dn.map(str::to_string),
        host: audit::host_name(),
    };
    AuditLog::open(files, &run_id, actor, clock)
}

/// Records a plan the daemon may not apply (`auto_apply = false`): `run_start`, `plan`, and a
/// `run_end` with outcome `skipped` saying the changes wait for `pcsync reconcile --apply`.
/// Returns the run id.
pub(crate) fn record_pending(
    settings: &Settings,
    bind_dn: Option<&str>,
    plan: &Plan,
    clock: Clock,
) -> Result<String, audit::Error> {
    let mut log = open_log(&audit::LogFiles::of(settings)?, bind_dn, clock)?;
    log.record(
        Note::new(Event::RunStart, Outcome::Started)
            .message("pcsync run: scheduled plan (safety.auto_apply = false)"),
    )?;
    record_plan(&mut log, &settings.state.dir, plan)?;
    log.record(Note::new(Event::RunEnd, Outcome::Skipped).message(format!(
        "{} change(s) pending approval; nothing was written (approve with `pcsync reconcile --apply`)",
        plan.summary.ready
    )))?;
    Ok(log.run_id().to_string())
}

/// Where the last recorded set of findings is remembered: `<sha256> <run id>`.
const FINDINGS_FILE: &str = "plan-findings";

/// SHA-256 (hex) of the findings as the plan document lists them.
fn findings_digest(findings: &[crate::model::Finding]) -> String {
    // Serialising plain structs of strings cannot fail.
    let bytes = serde_json::to_vec(findings).unwrap_or_default();
    crate::util::hex(&Sha256::digest(&bytes))
}

/// Records the `plan` note. Its findings are listed only when they differ from the set the last
/// plan record listed (remembered in `state_dir`): 30,000 suspects are otherwise megabytes in
/// every run's record. An unchanged set is recorded as its hash and the run that lists it; the
/// count stays in the summary. When the memory cannot be read or written, the list is recorded
/// in full, which costs space and never loses it.
fn record_plan(log: &mut AuditLog, state_dir: &Path, plan: &Plan) -> Result<(), audit::Error> {
    let (note, listed) = plan_note(state_dir, plan, log.run_id());
    log.record(note)?;
    if let Some(mark) = listed {
        // Best effort: a lost mark only means the next run lists the findings again.
        let _ = crate::private::write_atomic(&state_dir.join(FINDINGS_FILE), mark.as_bytes());
    }
    Ok(())
}

/// The `plan` note for `plan` in run `run_id`, and the mark to remember when it lists findings.
fn plan_note(state_dir: &Path, plan: &Plan, run_id: &str) -> (Note, Option<String>) {
    let digest = findings_digest(&plan.findings);
    let last = std::fs::read_to_string(state_dir.join(FINDINGS_FILE)).unwrap_or_default();
    let unchanged_since = last
        .split_once(' ')
        .filter(|(hash, _)| *hash == digest)
        .map(|(_, run)| run.trim().to_string());
    let mut recorded = plan.clone();
    let mut message = render::summary_line(plan);
    let listed = match unchanged_since {
        Some(run) if !plan.findings.is_empty() => {
            recorded.findings.clear();
            let _ = write!(
                message,
                "; the {} finding(s) are unchanged since run {run} (sha256 {}), whose plan record lists them",
                plan.findings.len(),
                short(&digest)
            );
            None
        }
        _ if plan.findings.is_empty() => None,
        _ => {
            let _ = write!(message, "; findings sha256 {}", short(&digest));
            Some(format!("{digest} {run_id}\n"))
        }
    };
    let mut note = Note::new(Event::Plan, Outcome::Ok).message(message);
    note.plan = Some(recorded);
    (note, listed)
}

/// Records a run a guard stopped before it could plan (the daemon's scheduled runs):
/// `run_start`, `guard_blocked`, `run_end` blocked. Returns the run id.
pub(crate) fn record_blocked(
    settings: &Settings,
    bind_dn: Option<&str>,
    reason: &str,
    clock: Clock,
) -> Result<String, audit::Error> {
    let mut log = open_log(&audit::LogFiles::of(settings)?, bind_dn, clock)?;
    log.record(Note::new(Event::RunStart, Outcome::Started).message("pcsync run: scheduled"))?;
    log.record(Note::new(Event::GuardBlocked, Outcome::Blocked).message(reason))?;
    log.record(Note::new(Event::RunEnd, Outcome::Blocked).message("nothing was written"))?;
    Ok(log.run_id().to_string())
}

/// Scans the directory, plans at `now`, and runs the preflight ([`preflight`]) of every swap.
/// Failed searches are errors; an empty one is a guard.
pub(crate) async fn compute(
    settings: &Settings,
    dir: &mut Directory,
    progress: Option<&Progress>,
    now: DateTime<Utc>,
) -> Result<Plan, Stopped> {
    // Users of every domain through the Global Catalog, each re-read on its own domain, when
    // `global_catalog` is set; otherwise exactly the connection's own reads.
    let mut live = Live::new(dir, settings).await?;
    let planned = async {
        let mut plan = compute_at(settings, &mut live, progress, now).await?;
        // Against the live directory only: a replayed snapshot holds the SIP objects, not the
        // pool and container entries the preflight reads.
        preflight::preflight(settings, &mut live, &mut plan).await?;
        Ok(plan)
    }
    .await;
    live.close().await;
    planned
}

/// Plans against a captured directory state at `now`: the same scan, duplicate confirmation,
/// full re-read and planner as [`compute`], over `entries` (every attribute of every object
/// with a SIP address, in both scopes) instead of a server. Returns the plan document as
/// `--plan-out` writes it, or the guard or error that stopped it. For the golden tests
/// (tests/fixtures/golden/), and for replaying a state an administrator captured.
pub fn replay(
    settings: &Settings,
    entries: Vec<Entry>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let mut snapshot = Snapshot::new(entries);
    // A snapshot answers at once: the future is ready on its first poll.
    let planned = compute_at(settings, &mut snapshot, None, now).now_or_never();
    match planned {
        Some(Ok(plan)) => plan_document(&plan).map_err(|e| e.to_string()),
        Some(Err(stopped)) => Err(RunEnd::from(stopped).message().unwrap_or_default()),
        None => Err("replaying the snapshot did not complete at once".to_string()),
    }
}

async fn compute_at(
    settings: &Settings,
    source: &mut impl Source,
    progress: Option<&Progress>,
    now: DateTime<Utc>,
) -> Result<Plan, Stopped> {
    let desired = Desired {
        active_directory: source.is_active_directory(),
        ..settings.desired()
    };
    let observed = observe(settings, &desired, source, progress).await?;
    Ok(plan::plan(&desired, &observed, now))
}

/// The scan, then exact searches for its duplicate candidates, then a full read of every
/// object holding a migration's URI.
async fn observe(
    settings: &Settings,
    desired: &Desired<'_>,
    source: &mut impl Source,
    progress: Option<&Progress>,
) -> Result<Observed, Stopped> {
    let mut collector = Collector::new(desired);
    let mut findings = Vec::new();
    // Only objectClass and the SIP address of every object: that is all detection needs, and
    // it halves what a 200,000-user scan moves (docs/benchmarks.md).
    let stats = source
        .detect(settings, &mut findings, |o| {
            if let Some(p) = progress {
                p.tick();
            }
            collector.observe(o)
        })
        .await;
    if let Some(p) = progress {
        p.finish();
    }
    if stats?.base.entries == 0 {
        return Err(Blocked::EmptyDirectory {
            base_dn: settings.directory.base_dn.clone(),
        }
        .into());
    }
    confirm_duplicates(settings, source, &mut collector).await?;
    read_holders(settings, source, &mut collector, &mut findings).await?;
    Ok(collector.finish(findings))
}

/// Confirms duplicate candidates with exact searches (a hash repeat is only a hint).
async fn confirm_duplicates(
    settings: &Settings,
    source: &mut impl Source,
    collector: &mut Collector,
) -> Result<(), ldap::Error> {
    let classifier = inventory::classifier(settings);
    let candidates: Vec<String> = collector
        .duplicate_candidates()
        .map(str::to_string)
        .collect();
    for uri in candidates {
        let mut dns = std::collections::BTreeSet::new();
        holders_everywhere(settings, source, &uri, &classifier, |o| {
            if o.sip_uri.as_ref().is_some_and(|u| u.normalized() == uri) {
                dns.insert(o.dn.as_str().to_string());
            }
        })
        .await?;
        collector.confirm(&uri, dns);
    }
    Ok(())
}

/// The few objects holding a migration URI: reads every attribute and interprets them afresh
/// (home server, enabled flag, owner; before-images, disable lists and the fingerprint need the
/// complete entry). An object deleted in between simply drops out.
async fn read_holders(
    settings: &Settings,
    source: &mut impl Source,
    collector: &mut Collector,
    findings: &mut Vec<crate::model::Finding>,
) -> Result<(), ldap::Error> {
    let classifier = inventory::classifier(settings);
    let mut dn_cache = DnCache::default();
    let mut read = Vec::new();
    for objects in collector.holders_mut().values_mut() {
        let mut kept = Vec::with_capacity(objects.len());
        for o in std::mem::take(objects) {
            if let Some(entry) = source.read_entry(&o.dn).await? {
                kept.push(DirectoryObject::from_parsed(
                    o.dn,
                    entry.to_attributes(),
                    &classifier,
                    &mut dn_cache,
                    &mut read,
                ));
            }
        }
        *objects = kept;
    }
    // Detection already reported each holder whose name is a replication conflict's.
    findings.extend(
        read.into_iter()
            .filter(|f| f.kind != crate::model::FindingKind::ConflictObject),
    );
    Ok(())
}

/// Where a saved plan's changes first differ from the changes planned now, compared field by
/// field (every field of the plan document's change objects); `None` when they are equal.
fn first_difference(saved: &[plan::Change], fresh: &[plan::Change]) -> Option<String> {
    let name = |c: &plan::Change| format!("{} {}", c.action().as_str(), c.dn());
    for (i, (s, f)) in saved.iter().zip(fresh).enumerate() {
        if s == f {
            continue;
        }
        let (Ok(serde_json::Value::Object(sv)), Ok(serde_json::Value::Object(fv))) =
            (serde_json::to_value(s), serde_json::to_value(f))
        else {
            return Some(format!("change {} ({}) differs", i + 1, name(s)));
        };
        let field = sv
            .iter()
            .find(|(k, v)| fv.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .or_else(|| fv.keys().find(|k| !sv.contains_key(*k)).cloned())
            .unwrap_or_default();
        return Some(format!(
            "change {} ({}): field `{field}` differs from the fresh plan's ({})",
            i + 1,
            name(s),
            name(f)
        ));
    }
    match saved.len().cmp(&fresh.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(format!(
            "change {} ({}) is not in the fresh plan, which has {} change(s)",
            fresh.len() + 1,
            name(&saved[fresh.len()]),
            fresh.len()
        )),
        std::cmp::Ordering::Less => Some(format!(
            "the fresh plan has {} change(s), the file {}; change {} ({}) is missing",
            fresh.len(),
            saved.len(),
            saved.len() + 1,
            name(&fresh[saved.len()])
        )),
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// The plan file's text: pretty JSON, fields in the schema's order, and a final newline.
fn plan_document(plan: &Plan) -> Result<String, serde_json::Error> {
    Ok(format!("{}\n", serde_json::to_string_pretty(plan)?))
}

/// Writes the plan document atomically, 0600 ([`crate::private::write_atomic`]).
pub(crate) fn save_plan(path: &Path, plan: &Plan) -> Result<(), PlanFileError> {
    let write_err = |source| PlanFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = plan_document(plan).map_err(|e| write_err(e.into()))?;
    crate::private::write_atomic(path, text.as_bytes()).map_err(write_err)
}

fn load_plan(path: &Path) -> Result<Plan, PlanFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let plan: Plan = serde_json::from_str(&text).map_err(|source| PlanFileError::NotAPlan {
        path: path.to_path_buf(),
        source,
    })?;
    if plan.format != plan::PLAN_FORMAT {
        return Err(PlanFileError::Format {
            path: path.to_path_buf(),
            found: plan.format,
        });
    }
    Ok(plan)
}

/// 32 random bits for a run id, from the standard library's per-process random hash keys.
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(swaps: usize, applied: usize, failed: usize, not_started: usize) -> Report {
        Report {
            swaps,
            applied,
            failed,
            not_started,
            ..Report::default()
        }
    }

    /// The exit code and the agent's status come from one place, and agree.
    #[test]
    fn each_end_has_one_exit_code_and_one_outcome() {
        let base_dn = Dn::parse("dc=contoso,dc=com").unwrap();
        let cases = [
            (RunEnd::InSync, exit::OK, RunOutcome::InSync, None),
            (
                RunEnd::Applied(report(0, 0, 0, 0)),
                exit::OK,
                RunOutcome::InSync,
                None,
            ),
            (
                RunEnd::Applied(report(2, 2, 0, 0)),
                exit::OK,
                RunOutcome::Applied,
                None,
            ),
            (
                RunEnd::Applied(report(2, 1, 1, 0)),
                exit::ERROR,
                RunOutcome::Failed,
                Some("1 swap(s) failed, 0 not started: "),
            ),
            (
                RunEnd::Applied(report(3, 1, 0, 2)),
                exit::ERROR,
                RunOutcome::Failed,
                Some("0 swap(s) failed, 2 not started: "),
            ),
            (RunEnd::Pending, exit::PENDING, RunOutcome::Pending, None),
            (
                RunEnd::Blocked(vec![
                    Blocked::TooManyChanges { ready: 4, limit: 2 },
                    Blocked::EmptyDirectory { base_dn },
                ]),
                exit::BLOCKED,
                RunOutcome::Blocked,
                Some(
                    "4 change(s) exceed safety.max_changes_per_run = 2; review the plan and rerun with --max-changes 4; the search under base_dn dc=contoso,dc=com returned no SIP-enabled objects",
                ),
            ),
            (
                RunEnd::Failed(RunError::PlanFile(PlanFileError::Format {
                    path: PathBuf::from("/tmp/p.json"),
                    found: 9,
                })),
                exit::ERROR,
                RunOutcome::Failed,
                Some("plan file /tmp/p.json has format 9, this pcsync reads format 1"),
            ),
        ];
        for (end, code, outcome, message) in cases {
            assert_eq!(end.exit_code(), code, "{end:?}");
            assert_eq!(end.outcome(), outcome, "{end:?}");
            match (end.message(), message) {
                (None, None) => {}
                (Some(got), Some(want)) => assert!(got.starts_with(want), "{got}"),
                (got, want) => panic!("{end:?}: message {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn outcome_names_are_the_serialised_ones() {
        for o in RunOutcome::ALL {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        assert_eq!(RunOutcome::InSync.as_str(), "in_sync");
    }

    fn plan_finding(i: usize) -> crate::model::Finding {
        crate::model::Finding::new(
            crate::model::FindingKind::Suspect,
            &format!("cn=u{i},dc=x"),
            "looks like a lookup account".into(),
        )
    }

    /// The plan record lists the findings once per distinct set: a rerun with the same set
    /// records their hash and the run that lists them; a changed set is listed again. See: #19
    #[test]
    fn the_plan_record_lists_findings_only_when_they_change() {
        let state = tempfile::tempdir().unwrap();
        let mut plan = Plan {
            format: plan::PLAN_FORMAT,
            fingerprint: "f".repeat(64),
            changes: Vec::new(),
            findings: (0..3).map(plan_finding).collect(),
            summary: plan::Summary {
                findings: 3,
                ..Default::default()
            },
        };
        let record = |plan: &Plan, run: &str| {
            let (note, mark) = plan_note(state.path(), plan, run);
            if let Some(mark) = mark {
                std::fs::write(state.path().join(FINDINGS_FILE), mark).unwrap();
            }
            (note.plan.unwrap().findings.len(), note.message.unwrap())
        };
        let (listed, message) = record(&plan, "run-1");
        assert_eq!(listed, 3);
        assert!(message.contains("; findings sha256 "), "{message}");
        let (listed, message) = record(&plan, "run-2");
        assert_eq!(listed, 0);
        assert!(
            message.contains("the 3 finding(s) are unchanged since run run-1 (sha256 "),
            "{message}"
        );
        assert!(
            message.starts_with("in sync: no changes; 0 swap(s) blocked; 3 finding(s)"),
            "{message}"
        );
        plan.findings.push(plan_finding(3));
        plan.summary.findings = 4;
        let (listed, _) = record(&plan, "run-3");
        assert_eq!(listed, 4);
        let (listed, message) = record(&plan, "run-4");
        assert_eq!(listed, 0);
        assert!(message.contains("since run run-3"), "{message}");
        // No findings: nothing to list, nothing to remember.
        plan.findings.clear();
        let (note, mark) = plan_note(state.path(), &plan, "run-5");
        assert!(note.plan.unwrap().findings.is_empty());
        assert_eq!(mark, None);
    }

    /// A saved plan is applied only when its changes equal the fresh plan's, field by field;
    /// the first difference is named.
    #[test]
    fn a_saved_plan_must_hold_exactly_the_changes_planned_now() {
        let change = |dn: &str, reason: &str| -> plan::Change {
            serde_json::from_str(&format!(
                r#"{{"action":"retire_user","dn":"{dn}","sip_uri":"sip:a@x","pool":"p","status":"ready","reason":"{reason}","expect":[],"attributes":[]}}"#
            ))
            .unwrap()
        };
        let fresh = vec![change("cn=a,dc=x", "r")];
        assert_eq!(first_difference(&fresh, &fresh), None);
        let e = first_difference(&[change("cn=a,dc=x", "edited")], &fresh).unwrap();
        assert_eq!(
            e,
            "change 1 (retire_user cn=a,dc=x): field `reason` differs from the fresh plan's (retire_user cn=a,dc=x)"
        );
        let e = first_difference(&[change("cn=other,dc=x", "r")], &fresh).unwrap();
        assert!(e.contains("field `dn` differs"), "{e}");
        let added = vec![change("cn=a,dc=x", "r"), change("cn=victim,dc=x", "r")];
        let e = first_difference(&added, &fresh).unwrap();
        assert_eq!(
            e,
            "change 2 (retire_user cn=victim,dc=x) is not in the fresh plan, which has 1 change(s)"
        );
        let e = first_difference(&[], &fresh).unwrap();
        assert!(
            e.contains("change 1 (retire_user cn=a,dc=x) is missing"),
            "{e}"
        );
    }

    /// A plan file that cannot be used names the file and why.
    #[test]
    fn plan_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = load_plan(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read plan file {}", missing.display())),
            "{e}"
        );
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, "{\"format\": 1}").unwrap();
        let e = load_plan(&junk).unwrap_err().to_string();
        assert!(e.contains("is not a pcsync plan: missing field"), "{e}");
        let e = save_plan(
            &dir.path().join("no/such/dir/p.json"),
            &Plan {
                format: plan::PLAN_FORMAT,
                fingerprint: String::new(),
                changes: Vec::new(),
                findings: Vec::new(),
                summary: plan::Summary::default(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("cannot write plan file "), "{e}");
    }
}
