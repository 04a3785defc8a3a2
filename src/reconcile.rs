//! One reconcile run, shared by `pcsync reconcile` and the daemon's scheduled runs (`pcsync
//! run`): the I/O edge around the pure planner.
//!
//! [`compute`] streams the directory through a [`Collector`], confirms duplicate candidates,
//! re-reads the few objects holding a migration URI in full, and plans with the current time.
//! [`audited_apply`] is the whole audited write path: verify the audit chain, finish swaps a
//! crashed run left open, plan (or check a saved plan), guard, apply, record the end. Callers
//! hold the run lock ([`crate::lock`]) around it and render the result themselves; nothing here
//! prints. Every guard block is audited; nothing is written after a guard.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, DirectoryWriter};
use crate::audit::{self, Actor, AuditLog, AuditSink, Event, Note, Outcome};
use crate::config::Settings;
use crate::estate::routed::Routed;
use crate::estate::{self, Replication, WriteServer};
use crate::inventory;
use crate::ldap::Directory;
use crate::model::{DirectoryObject, DnCache, attr};
use crate::plan::{self, Collector, Desired, Observed, Plan, render};
use crate::progress::Progress;

/// Why a run ends early: a guard (exit 3, nothing written) or an error (exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Guard(String),
    Error(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Guard(m) | Stop::Error(m) => f.write_str(m),
        }
    }
}

/// What an applying run is asked to do.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyOptions<'a> {
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
}

/// The result of [`audited_apply`].
#[derive(Debug)]
pub(crate) struct Applied {
    pub run_id: String,
    /// Swaps of a crashed run completed or rolled back first.
    pub recovered: Vec<apply::Recovered>,
    /// The plan, unless the run stopped before planning.
    pub plan: Option<Plan>,
    pub report: Option<apply::Report>,
    /// How many DCs held the run's writes when it ended (Active Directory, after writes).
    pub replication: Option<Replication>,
    /// `Err` when a guard or an error ended the run (audited).
    pub end: Result<(), Stop>,
}

/// Runs one audited apply against `dir`. `stop` is checked between swaps, never inside one.
/// `Err` only when the audit log cannot be read or opened (then nothing was written).
pub(crate) async fn audited_apply(
    settings: &Settings,
    dir: &mut Directory,
    opts: &ApplyOptions<'_>,
    stop: &CancellationToken,
) -> Result<Applied, audit::Error> {
    let run_id = audit::new_run_id(Utc::now(), random_u32());
    let actor = Actor {
        bind_dn: dir.bound_as().map(str::to_string),
        host: audit::host_name(),
    };
    // Verify the whole chain (streamed) before appending to it, and learn about crashed swaps.
    let unfinished = audit::unfinished_in(&settings.audit.path)?;
    let mut log = AuditLog::open(&settings.audit.path, &run_id, actor, Utc::now)?
        .with_max_segment_size(settings.audit.max_segment_size);
    let limit = opts
        .max_changes
        .unwrap_or(settings.safety.max_changes_per_run);
    let start = Note::new(Event::RunStart, Outcome::Started).message(format!(
        "{}{}; max_changes {limit}; conditional writes via {}",
        opts.origin,
        opts.saved_plan
            .map(|p| format!(" --plan {}", p.display()))
            .unwrap_or_default(),
        if dir.supports_assertion() {
            "the Assertion control"
        } else {
            "re-read and value deletes"
        }
    ));
    log.record(start)?;
    let mut out = Applied {
        run_id,
        recovered: Vec::new(),
        plan: None,
        report: None,
        replication: None,
        end: Ok(()),
    };
    let result = apply_inner(
        settings,
        dir,
        &mut log,
        &unfinished,
        limit,
        opts,
        stop,
        &mut out,
    )
    .await;
    match result {
        Ok(()) => {}
        Err(Stop::Guard(msg)) => {
            let rec = Note::new(Event::GuardBlocked, Outcome::Blocked).message(&msg);
            let end = Note::new(Event::RunEnd, Outcome::Blocked).message("nothing was written");
            log.record(rec)?;
            log.record(end)?;
            out.end = Err(Stop::Guard(msg));
        }
        Err(Stop::Error(msg)) => {
            let rec = Note::new(Event::Error, Outcome::Failed).message(&msg);
            let end = Note::new(Event::RunEnd, Outcome::Failed);
            let _ = log.record(rec).and_then(|()| log.record(end));
            out.end = Err(Stop::Error(msg));
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn apply_inner(
    settings: &Settings,
    dir: &mut Directory,
    log: &mut AuditLog,
    unfinished: &[audit::Unfinished],
    limit: u32,
    opts: &ApplyOptions<'_>,
    stop: &CancellationToken,
    out: &mut Applied,
) -> Result<(), Stop> {
    let audit_err = |e: apply::ApplyError| Stop::Error(e.to_string());
    // A crashed run's unfinished swaps come first.
    if !unfinished.is_empty() {
        let mut routed = Routed::new(dir, settings)
            .await
            .map_err(|e| Stop::Error(e.to_string()))?;
        let recovered = apply::recover(unfinished, &mut routed, log).await;
        routed.close().await;
        out.recovered = recovered.map_err(audit_err)?;
    }
    let fresh = compute(settings, dir, opts.progress).await?;
    let plan = match opts.saved_plan {
        None => fresh,
        Some(path) => {
            let saved = load_plan(path).map_err(Stop::Error)?;
            if saved.fingerprint != fresh.fingerprint {
                return Err(Stop::Guard(format!(
                    "the directory or the configuration changed since {} was saved (fingerprint {} now {}); compute a new plan",
                    path.display(),
                    short(&saved.fingerprint),
                    short(&fresh.fingerprint)
                )));
            }
            saved
        }
    };
    if let Some(path) = opts.plan_out {
        save_plan(path, &plan).map_err(Stop::Error)?;
    }
    let ready = plan.summary.ready;
    let mut rec = Note::new(Event::Plan, Outcome::Ok).message(render::summary_line(&plan));
    rec.plan = Some(plan.clone());
    log.record(rec).map_err(|e| Stop::Error(e.to_string()))?;
    out.plan = Some(plan);
    if ready > limit as usize {
        return Err(Stop::Guard(format!(
            "{ready} change(s) exceed safety.max_changes_per_run = {limit}; review the plan and rerun with --max-changes {ready}"
        )));
    }
    let Some(plan) = out.plan.as_ref() else {
        return Ok(());
    };
    let run_id = log.run_id().to_string();
    apply::fail_point(apply::RUN_PLANNED).await;
    // Each object is written on its own domain's write server, endpoints on the primary one.
    let mut routed = Routed::new(dir, settings)
        .await
        .map_err(|e| Stop::Error(e.to_string()))?;
    let report = apply::apply(plan, &run_id, &mut routed, log, stop).await;
    routed.close().await;
    let report = report.map_err(audit_err)?;
    if let Some(server) = opts.write_server
        && report.applied > 0
    {
        out.replication = replication(settings, dir, server, opts.wait_replication, log).await?;
    }
    let mut end = Note::new(
        Event::RunEnd,
        if report.failed == 0 && report.not_started == 0 {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    );
    if report.not_started > 0 {
        end = end.message(format!(
            "run aborted by shutdown after {} of {} swap(s); {} not started",
            report.swaps - report.not_started,
            report.swaps,
            report.not_started
        ));
    }
    end.counts = Some(apply::counts(plan, &report));
    log.record(end).map_err(|e| Stop::Error(e.to_string()))?;
    out.report = Some(report);
    Ok(())
}

/// Counts (and with `wait`, waits for) the DCs holding this run's writes, and records it. A
/// count that cannot be made is recorded and logged, never a failed run: the writes are done.
async fn replication(
    settings: &Settings,
    dir: &mut Directory,
    server: &WriteServer,
    wait: Option<std::time::Duration>,
    log: &mut AuditLog,
) -> Result<Option<Replication>, Stop> {
    let record =
        |log: &mut AuditLog, note: Note| log.record(note).map_err(|e| Stop::Error(e.to_string()));
    let written = [
        &settings.directory.base_dn,
        &settings.layout.endpoint_container,
    ];
    let ncs = estate::replication::naming_contexts(&dir.root_dse().naming_contexts, &written);
    let mark = match estate::replication::mark(dir, server, ncs).await {
        Ok(Some(mark)) => mark,
        Ok(None) => return Ok(None),
        Err(e) => {
            record(
                log,
                Note::new(Event::Replication, Outcome::Failed).message(e.to_string()),
            )?;
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
    record(
        log,
        Note::new(Event::Replication, outcome).message(counted.to_string()),
    )?;
    Ok(Some(counted))
}

/// Records a plan the daemon may not apply (`auto_apply = false`): `run_start`, `plan`, and a
/// `run_end` with outcome `skipped` saying the changes wait for `pcsync reconcile --apply`.
/// Returns the run id.
pub(crate) fn record_pending(
    settings: &Settings,
    bind_dn: Option<&str>,
    plan: &Plan,
) -> Result<String, audit::Error> {
    let run_id = audit::new_run_id(Utc::now(), random_u32());
    let actor = Actor {
        bind_dn: bind_dn.map(str::to_string),
        host: audit::host_name(),
    };
    // Opening checks the log's tail (chain, seq, no torn line) before anything is appended.
    let mut log = AuditLog::open(&settings.audit.path, &run_id, actor, Utc::now)?
        .with_max_segment_size(settings.audit.max_segment_size);
    log.record(
        Note::new(Event::RunStart, Outcome::Started)
            .message("pcsync run: scheduled plan (safety.auto_apply = false)"),
    )?;
    let mut rec = Note::new(Event::Plan, Outcome::Ok).message(render::summary_line(plan));
    rec.plan = Some(plan.clone());
    log.record(rec)?;
    log.record(Note::new(Event::RunEnd, Outcome::Skipped).message(format!(
        "{} change(s) pending approval; nothing was written (approve with `pcsync reconcile --apply`)",
        plan.summary.ready
    )))?;
    Ok(run_id)
}

/// Records a run a guard stopped before it could plan (the daemon's scheduled runs):
/// `run_start`, `guard_blocked`, `run_end` blocked. Returns the run id.
pub(crate) fn record_blocked(
    settings: &Settings,
    bind_dn: Option<&str>,
    reason: &str,
) -> Result<String, audit::Error> {
    let run_id = audit::new_run_id(Utc::now(), random_u32());
    let actor = Actor {
        bind_dn: bind_dn.map(str::to_string),
        host: audit::host_name(),
    };
    let mut log = AuditLog::open(&settings.audit.path, &run_id, actor, Utc::now)?
        .with_max_segment_size(settings.audit.max_segment_size);
    log.record(Note::new(Event::RunStart, Outcome::Started).message("pcsync run: scheduled"))?;
    log.record(Note::new(Event::GuardBlocked, Outcome::Blocked).message(reason))?;
    log.record(Note::new(Event::RunEnd, Outcome::Blocked).message("nothing was written"))?;
    Ok(run_id)
}

/// Scans the directory and plans. Failed searches are errors; an empty one is a guard.
pub(crate) async fn compute(
    settings: &Settings,
    dir: &mut Directory,
    progress: Option<&Progress>,
) -> Result<Plan, Stop> {
    let desired = Desired::from_settings(settings);
    let observed = observe(settings, &desired, dir, progress).await?;
    Ok(plan::plan(&desired, &observed, Utc::now()))
}

async fn observe(
    settings: &Settings,
    desired: &Desired<'_>,
    dir: &mut Directory,
    progress: Option<&Progress>,
) -> Result<Observed, Stop> {
    let mut collector = Collector::new(desired);
    let mut findings = Vec::new();
    // Only objectClass and the SIP address of every object: that is all detection needs, and
    // it halves what a 200,000-user scan moves (docs/benchmarks.md).
    let stats = inventory::scan_with(dir, settings, attr::DETECTION, &mut findings, |o| {
        if let Some(p) = progress {
            p.tick();
        }
        collector.observe(o)
    })
    .await;
    if let Some(p) = progress {
        p.finish();
    }
    let stats = stats.map_err(|e| Stop::Error(e.to_string()))?;
    if stats.base.entries == 0 {
        return Err(Stop::Guard(format!(
            "the search under base_dn {} returned no SIP-enabled objects; refusing to plan against an empty or unreadable directory",
            settings.directory.base_dn
        )));
    }
    // Confirm duplicate candidates with exact searches (a hash repeat is only a hint).
    let classifier = inventory::classifier(settings);
    let container = &settings.layout.endpoint_container;
    let skip = container
        .is_within(&settings.directory.base_dn)
        .then_some(container);
    let candidates: Vec<String> = collector
        .duplicate_candidates()
        .map(str::to_string)
        .collect();
    let fail = |e: crate::ldap::Error| Stop::Error(e.to_string());
    // Users: under base_dn, or in every domain through the Global Catalog.
    let mut scope = inventory::user_scope(dir, settings).await.map_err(fail)?;
    for uri in candidates {
        let mut dns = std::collections::BTreeSet::new();
        let mut holder = |o: DirectoryObject| {
            if o.sip_uri.as_ref().is_some_and(|u| u.normalized() == uri) {
                dns.insert(o.dn.as_str().to_string());
            }
        };
        dir.for_each_holder_of(
            "endpoint container",
            container,
            &uri,
            None,
            &classifier,
            &mut holder,
        )
        .await
        .map_err(fail)?;
        for base in &scope.bases {
            let conn = match scope.global_catalog.as_mut() {
                Some(gc) => gc,
                None => &mut *dir,
            };
            conn.for_each_holder_of("base DN", base, &uri, skip, &classifier, &mut holder)
                .await
                .map_err(fail)?;
        }
        collector.confirm(&uri, dns);
    }
    if let Some(gc) = scope.global_catalog.take() {
        gc.close().await;
    }
    // The few objects holding a migration URI: read every attribute and interpret them afresh
    // (home server, enabled flag, owner; before-images, disable lists and the fingerprint need
    // the complete entry). An object deleted in between simply drops out.
    // Each from a DC of its own domain (the Global Catalog holds only some attributes).
    let mut routed = Routed::new(dir, settings)
        .await
        .map_err(|e| Stop::Error(e.to_string()))?;
    let mut dn_cache = DnCache::default();
    for objects in collector.holders_mut().values_mut() {
        let mut kept = Vec::with_capacity(objects.len());
        for o in std::mem::take(objects) {
            match routed.read_entry(o.dn.as_str()).await {
                Ok(Some(entry)) => kept.push(DirectoryObject::from_parsed(
                    o.dn,
                    entry.to_attributes(),
                    &classifier,
                    &mut dn_cache,
                    &mut findings,
                )),
                Ok(None) => {}
                Err(e) => return Err(Stop::Error(e.to_string())),
            }
        }
        *objects = kept;
    }
    routed.close().await;
    Ok(collector.finish(findings))
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// Writes the plan document atomically (temp file, fsync, rename).
pub(crate) fn save_plan(path: &Path, plan: &Plan) -> Result<(), String> {
    let text = serde_json::to_string_pretty(plan).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write plan file {}: {e}", path.display()))
}

fn load_plan(path: &Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan file {}: {e}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .map_err(|e| format!("plan file {} is not a pcsync plan: {e}", path.display()))?;
    if plan.format != plan::PLAN_FORMAT {
        return Err(format!(
            "plan file {} has format {}, this pcsync reads format {}",
            path.display(),
            plan.format,
            plan::PLAN_FORMAT
        ));
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
