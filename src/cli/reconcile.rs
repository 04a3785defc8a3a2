//! `pcsync reconcile`: scan, plan, print; with `--apply`, carry the plan out.
//!
//! The I/O edge around the pure planner: it takes the run lock (apply only), finishes any swap
//! a crashed run left open, streams the directory through a [`Collector`], confirms duplicate
//! candidates and re-reads the few objects holding a migration URI in full, then calls
//! [`plan::plan`] with the current time. Guards (thresholds, empty search, stale saved plan)
//! are checked before any write; every guard block is audited and exits 3.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::apply::{self, DirectoryWriter};
use crate::audit::{self, Actor, AuditLog, AuditSink, Event, Note, Outcome};
use crate::cli::{Cli, load_settings, report_error};
use crate::config::Settings;
use crate::exit;
use crate::inventory;
use crate::ldap::Directory;
use crate::lock::RunLock;
use crate::model::{DirectoryObject, DnCache, attr};
use crate::plan::{self, Collector, Desired, Observed, Plan, render};

/// Output format of `reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Ldif,
    Powershell,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Carry the plan out. Without it, reconcile only prints the plan (a dry run).
    #[arg(long)]
    apply: bool,

    /// Output format of the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,

    /// Save the plan, with the fingerprint of the directory state it was computed from.
    #[arg(long, value_name = "FILE")]
    plan_out: Option<PathBuf>,

    /// With --apply: apply exactly this saved plan; refused (exit 3, nothing written) if the
    /// directory or the configuration changed since it was saved.
    #[arg(long, value_name = "FILE", requires = "apply")]
    plan: Option<PathBuf>,

    /// Raise safety.max_changes_per_run for this run.
    #[arg(long, value_name = "N")]
    max_changes: Option<u32>,
}

/// Why a run ends early with exit 3 (a guard) or 1 (an error); both are audited when applying.
enum Stop {
    Guard(String),
    Error(String),
}

pub async fn run(cli: &Cli, args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _lock = match lock_for_apply(args.apply, &settings) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let mut dir = match Directory::connect(&settings.directory).await {
        Ok(dir) => dir,
        Err(e) => return report_error(&e),
    };
    if let Err(e) = dir.require_schema().await {
        return report_error(&e);
    }
    let code = if args.apply {
        apply_run(args, &settings, &mut dir).await
    } else {
        dry_run(args, &settings, &mut dir).await
    };
    dir.close().await;
    code
}

async fn dry_run(args: &Args, settings: &Settings, dir: &mut Directory) -> u8 {
    match audit::unfinished_in(&settings.audit.path) {
        Ok(open) => {
            if !open.is_empty() {
                eprintln!(
                    "pcsync: warning: {} swap(s) of a crashed run are unfinished ({}); `pcsync reconcile --apply` completes or rolls them back first",
                    open.len(),
                    open.iter()
                        .map(|u| u.swap.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Err(e) => eprintln!("pcsync: warning: {e}"),
    }
    let plan = match compute(settings, dir).await {
        Ok(plan) => plan,
        Err(Stop::Guard(msg)) => {
            eprintln!("pcsync: blocked: {msg}");
            return exit::BLOCKED;
        }
        Err(Stop::Error(msg)) => return report_error(&msg),
    };
    if let Some(path) = &args.plan_out
        && let Err(e) = save_plan(path, &plan)
    {
        return report_error(&e);
    }
    if let Err(e) = print_plan(args.format, &plan, None) {
        return report_error(&e);
    }
    if plan.is_in_sync() {
        exit::OK
    } else {
        exit::PENDING
    }
}

async fn apply_run(args: &Args, settings: &Settings, dir: &mut Directory) -> u8 {
    let now = Utc::now();
    let run_id = audit::new_run_id(now, random_u32());
    let actor = Actor {
        bind_dn: dir.bound_as().map(str::to_string),
        host: audit::host_name(),
    };
    // Verify the whole chain (streamed) before appending to it, and learn about crashed swaps.
    let unfinished = match audit::unfinished_in(&settings.audit.path) {
        Ok(u) => u,
        Err(e) => return report_error(&e),
    };
    let mut log = match AuditLog::open(&settings.audit.path, &run_id, actor, Utc::now) {
        Ok(log) => log.with_max_segment_size(settings.audit.max_segment_size),
        Err(e) => return report_error(&e),
    };
    let limit = args
        .max_changes
        .unwrap_or(settings.safety.max_changes_per_run);
    let start = Note::new(Event::RunStart, Outcome::Started).message(format!(
        "reconcile --apply{}; max_changes {limit}; conditional writes via {}",
        args.plan
            .as_ref()
            .map(|p| format!(" --plan {}", p.display()))
            .unwrap_or_default(),
        if dir.supports_assertion() {
            "the Assertion control"
        } else {
            "re-read and value deletes"
        }
    ));
    if let Err(e) = log.record(start) {
        return report_error(&e);
    }
    match apply_inner(args, settings, dir, &mut log, &unfinished, limit).await {
        Ok(code) => code,
        Err(Stop::Guard(msg)) => {
            let rec = Note::new(Event::GuardBlocked, Outcome::Blocked).message(&msg);
            let end = Note::new(Event::RunEnd, Outcome::Blocked).message("nothing was written");
            if let Err(e) = log.record(rec).and_then(|()| log.record(end)) {
                return report_error(&e);
            }
            eprintln!("pcsync: blocked: {msg}; nothing was written (run {run_id})");
            exit::BLOCKED
        }
        Err(Stop::Error(msg)) => {
            let rec = Note::new(Event::Error, Outcome::Failed).message(&msg);
            let end = Note::new(Event::RunEnd, Outcome::Failed);
            let _ = log.record(rec).and_then(|()| log.record(end));
            report_error(&msg)
        }
    }
}

async fn apply_inner(
    args: &Args,
    settings: &Settings,
    dir: &mut Directory,
    log: &mut AuditLog,
    unfinished: &[audit::Unfinished],
    limit: u32,
) -> Result<u8, Stop> {
    let audit_err = |e: apply::ApplyError| Stop::Error(e.to_string());
    // A crashed run's unfinished swaps come first.
    if !unfinished.is_empty() {
        let recovered = apply::recover(unfinished, dir, log)
            .await
            .map_err(audit_err)?;
        for r in &recovered {
            eprintln!(
                "pcsync: recovered swap {} ({}): {:?}: {}",
                r.swap, r.sip_uri, r.outcome, r.message
            );
        }
    }
    let fresh = compute(settings, dir).await?;
    let plan = match &args.plan {
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
    if let Some(path) = &args.plan_out {
        save_plan(path, &plan).map_err(Stop::Error)?;
    }
    let ready = plan.summary.ready;
    let mut rec = Note::new(Event::Plan, Outcome::Ok).message(render::summary_line(&plan));
    rec.plan = Some(plan.clone());
    log.record(rec).map_err(|e| Stop::Error(e.to_string()))?;
    if ready > limit as usize {
        return Err(Stop::Guard(format!(
            "{ready} change(s) exceed safety.max_changes_per_run = {limit}; review the plan and rerun with --max-changes {ready}"
        )));
    }
    let report = apply::apply(&plan, log.run_id().to_string().as_str(), dir, log)
        .await
        .map_err(audit_err)?;
    let mut end = Note::new(
        Event::RunEnd,
        if report.failed == 0 {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    );
    end.counts = Some(apply::counts(&plan, &report));
    log.record(end).map_err(|e| Stop::Error(e.to_string()))?;
    print_plan(args.format, &plan, Some(&report)).map_err(Stop::Error)?;
    if args.format == PlanFormat::Text {
        for e in &report.errors {
            println!("FAILED {e}");
        }
        println!(
            "applied {} of {} swap(s); {} failed, {} rolled back (run {}, audit {})",
            report.applied,
            report.swaps,
            report.failed,
            report.rolled_back,
            log.run_id(),
            log.path().display()
        );
    }
    Ok(if report.failed == 0 {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// Scans the directory and plans. Failed searches are errors; an empty one is a guard.
async fn compute(settings: &Settings, dir: &mut Directory) -> Result<Plan, Stop> {
    let desired = Desired::from_settings(settings);
    let observed = observe(settings, &desired, dir).await?;
    Ok(plan::plan(&desired, &observed, Utc::now()))
}

async fn observe(
    settings: &Settings,
    desired: &Desired<'_>,
    dir: &mut Directory,
) -> Result<Observed, Stop> {
    let mut collector = Collector::new(desired);
    let mut findings = Vec::new();
    // Only objectClass and the SIP address of every object: that is all detection needs, and
    // it halves what a 200,000-user scan moves (docs/benchmarks.md).
    let stats = inventory::scan_with(dir, settings, attr::DETECTION, &mut findings, |o| {
        collector.observe(o)
    })
    .await
    .map_err(|e| Stop::Error(e.to_string()))?;
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
    for uri in candidates {
        let mut dns = std::collections::BTreeSet::new();
        for (what, base, skip) in [
            ("endpoint container", container, None),
            ("base DN", &settings.directory.base_dn, skip),
        ] {
            dir.for_each_holder_of(what, base, &uri, skip, &classifier, |o| {
                if o.sip_uri.as_ref().is_some_and(|u| u.normalized() == uri) {
                    dns.insert(o.dn.as_str().to_string());
                }
            })
            .await
            .map_err(|e| Stop::Error(e.to_string()))?;
        }
        collector.confirm(&uri, dns);
    }
    // The few objects holding a migration URI: read every attribute and interpret them afresh
    // (home server, enabled flag, owner; before-images, disable lists and the fingerprint need
    // the complete entry). An object deleted in between simply drops out.
    let mut dn_cache = DnCache::default();
    for objects in collector.holders_mut().values_mut() {
        let mut kept = Vec::with_capacity(objects.len());
        for o in std::mem::take(objects) {
            match dir.read_entry(o.dn.as_str()).await {
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
    Ok(collector.finish(findings))
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

fn print_plan(
    format: PlanFormat,
    plan: &Plan,
    report: Option<&apply::Report>,
) -> Result<(), String> {
    let text = match format {
        PlanFormat::Text => render::text(plan),
        PlanFormat::Ldif => render::ldif(plan),
        PlanFormat::Powershell => render::powershell(plan),
        PlanFormat::Json => {
            let mut doc = serde_json::to_value(plan).map_err(|e| e.to_string())?;
            if let (Some(r), Some(obj)) = (report, doc.as_object_mut()) {
                obj.insert(
                    "result".to_string(),
                    serde_json::json!({
                        "swaps": r.swaps,
                        "applied": r.applied,
                        "failed": r.failed,
                        "rolled_back": r.rolled_back,
                        "errors": r.errors,
                    }),
                );
            }
            format!("{doc}\n")
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes the plan document atomically (temp file, fsync, rename).
fn save_plan(path: &Path, plan: &Plan) -> Result<(), String> {
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

/// The run lock when `apply` is set (a dry run writes nothing and takes none); exit 3 when
/// another run holds it.
pub(crate) fn lock_for_apply(apply: bool, settings: &Settings) -> Result<Option<RunLock>, u8> {
    if !apply {
        return Ok(None);
    }
    RunLock::acquire(&settings.state.dir)
        .map(Some)
        .map_err(|e| {
            eprintln!("pcsync: blocked: {e}; nothing was written");
            exit::BLOCKED
        })
}

/// 32 random bits for the run id, from the standard library's per-process random hash keys.
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}
