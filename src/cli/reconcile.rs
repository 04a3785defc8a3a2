//! `pcsync reconcile`: scan, plan, print; with `--apply`, carry the plan out.
//!
//! The I/O edge around the pure planner: it takes the run lock (apply only), finishes any swap
//! a crashed run left open, streams the directory through a [`Collector`](crate::plan::Collector), confirms duplicate
//! candidates and re-reads the few objects holding a migration URI in full, then calls
//! [`plan::plan`](crate::plan::plan) with the current time, then the preflight. Guards (thresholds, empty search,
//! stale or edited saved plan) are checked before any write; every guard block is audited and
//! exits 3, and so does a run in which findings blocked a swap (dry run or apply).

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::apply;
use crate::audit;
use crate::cli::{Cli, load_settings, report_error};
use crate::config::Settings;
use crate::estate::{self, Replication, WriteServer};
use crate::exit;
use crate::ldap::Directory;
use crate::lock::{LockError, RunLock};
use crate::plan::render::FindingsShown;
use crate::plan::{Plan, render};
use crate::progress::Progress;
use crate::reconcile::{self, ApplyOptions, RunEnd};
use crate::shutdown;

/// Output format of `reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PlanFormat {
    Text,
    Json,
    Ldif,
    Powershell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Carry the plan out. Without it, reconcile only prints the plan (a dry run). On SIGINT or
    /// SIGTERM the swap in flight is finished, then the run stops and says so (exit 1).
    #[arg(long)]
    apply: bool,

    /// Output format of the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,

    /// Save the plan, with the fingerprint of the directory state it was computed from.
    #[arg(long, value_name = "FILE")]
    plan_out: Option<PathBuf>,

    /// With --apply: apply exactly this saved plan; refused (exit 3, nothing written) if the
    /// directory or the configuration changed since it was saved, or if its changes differ
    /// from the changes planned now (an edited file).
    #[arg(long, value_name = "FILE", requires = "apply")]
    plan: Option<PathBuf>,

    /// Raise safety.max_changes_per_run for this run.
    #[arg(long, value_name = "N")]
    max_changes: Option<u32>,

    /// With --format text: list the first N findings of each kind after a count per kind, or
    /// `all` of them. --format json always has every finding.
    #[arg(long, value_name = "N|all", default_value = "20")]
    findings: FindingsShown,

    /// With --apply on Active Directory: after the writes, wait up to DURATION (e.g. 30s, 5m)
    /// until every reachable DC holds them; exit 1 if one still does not.
    #[arg(long, value_name = "DURATION", requires = "apply", value_parser = parse_wait)]
    wait_replication: Option<std::time::Duration>,
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration_within(
        text,
        std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(24 * 3600),
    )
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _lock = match lock_for_apply(args.apply, &settings) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    // Every write goes to the one write server, which never fails over; a dry run reads from
    // the first URL that answers.
    let (mut dir, writer) = if args.apply {
        match estate::writer::open(&settings.directory).await {
            Ok((dir, writer)) => (dir, Some(writer)),
            Err(e) => return report_error(&e),
        }
    } else {
        match Directory::connect(&settings.directory).await {
            Ok(dir) => (dir, None),
            Err(e) => return report_error(&e),
        }
    };
    if let Err(e) = dir.require_schema().await {
        return report_error(&e);
    }
    let code = if let Some(writer) = &writer {
        apply_run(args, &settings, &mut dir, writer, cli.quiet).await
    } else {
        dry_run(args, &settings, &mut dir, cli.quiet).await
    };
    dir.close().await;
    code
}

async fn dry_run(args: &Args, settings: &Settings, dir: &mut Directory, quiet: bool) -> u8 {
    let progress = Progress::new(quiet);
    warn_unfinished(settings);
    let end = match reconcile::compute(settings, dir, Some(&progress), crate::clock::system()).await
    {
        Ok(plan) => match show_dry_run(args, &plan) {
            Ok(()) => RunEnd::planned(&plan),
            Err(e) => return report_error(&e),
        },
        Err(stopped) => RunEnd::from(stopped),
    };
    match &end {
        RunEnd::Blocked(guards) => {
            for b in guards {
                eprintln!("pcsync: blocked: {b}");
            }
        }
        RunEnd::Failed(e) => eprintln!("pcsync: error: {e}"),
        _ => {}
    }
    end.exit_code()
}

/// A dry run still tells about swaps a crashed run left open: only `--apply` finishes them.
fn warn_unfinished(settings: &Settings) {
    match audit::LogFiles::of(settings).and_then(|f| audit::open_swaps(&f)) {
        Ok(open) if !open.is_empty() => eprintln!(
            "pcsync: warning: {} swap(s) of an interrupted run (crash or lost directory) are unfinished ({}); `pcsync reconcile --apply` completes or rolls them back first",
            open.len(),
            open.iter()
                .map(|u| u.swap.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        Err(e) => eprintln!("pcsync: warning: {e}"),
    }
}

/// Saves (`--plan-out`) and prints the plan of a dry run.
fn show_dry_run(args: &Args, plan: &Plan) -> Result<(), String> {
    if let Some(path) = &args.plan_out {
        reconcile::save_plan(path, plan).map_err(|e| e.to_string())?;
    }
    print_plan(args, plan, None, None)
}

async fn apply_run(
    args: &Args,
    settings: &Settings,
    dir: &mut Directory,
    writer: &WriteServer,
    quiet: bool,
) -> u8 {
    let progress = Progress::new(quiet);
    let origin = format!("reconcile --apply; write server {writer}");
    let opts = ApplyOptions {
        saved_plan: args.plan.as_deref(),
        plan_out: args.plan_out.as_deref(),
        max_changes: args.max_changes,
        origin: &origin,
        progress: Some(&progress),
        write_server: Some(writer),
        wait_replication: args.wait_replication,
        computed: None,
        clock: crate::clock::system,
    };
    // SIGINT (Ctrl-C) or SIGTERM cancels `stop`, which the executor checks between swaps only:
    // the swap in flight runs to its end (done, failed or rolled back), then the run stops and
    // says so. Without this a signal ended the process mid-swap (issue #16, case 9).
    let stop = CancellationToken::new();
    let signals = shutdown::spawn_cancel_on_signal(stop.clone());
    let result = reconcile::audited_apply(settings, dir, &opts, &stop).await;
    signals.abort();
    let run = match result {
        Ok(run) => run,
        Err(e) => return report_error(&e),
    };
    for r in &run.recovered {
        eprintln!(
            "pcsync: recovered swap {} ({}): {:?}: {}",
            r.swap, r.sip_uri, r.outcome, r.message
        );
    }
    let run_id = run.run_id.as_deref().unwrap_or("-");
    match (&run.end, &run.plan) {
        (RunEnd::Blocked(guards), _) => {
            for b in guards {
                eprintln!("pcsync: blocked: {b}; nothing was written (run {run_id})");
            }
        }
        (RunEnd::InSync, Some(plan)) => {
            if let Err(e) = print_plan(args, plan, None, None) {
                return report_error(&e);
            }
            if args.format == PlanFormat::Text {
                println!("nothing to apply; a run in sync is not recorded in the audit log");
            }
        }
        (RunEnd::Failed(e), _) => {
            report_error(e);
        }
        (RunEnd::Applied(report), Some(plan)) => {
            if let Some(code) =
                show_applied(args, settings, &run, report, plan, stop.is_cancelled())
            {
                return code;
            }
        }
        _ => return report_error(&"the run ended without a plan"),
    }
    run.end.exit_code()
}

/// Prints how an applied run went: the plan with each swap's result, the summary line, the
/// replication count, the next Lync steps, and what a signal or a blocked swap left undone.
/// `Some(code)` when that, not the run's own end, decides the exit code.
fn show_applied(
    args: &Args,
    settings: &Settings,
    run: &reconcile::Applied,
    report: &apply::Report,
    plan: &Plan,
    stopped: bool,
) -> Option<u8> {
    let run_id = run.run_id.as_deref().unwrap_or("-");
    if let Err(e) = print_plan(args, plan, Some(report), run.replication.as_ref()) {
        return Some(report_error(&e));
    }
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
            run_id,
            settings.audit.path.display()
        );
        if let Some(r) = &run.replication {
            println!("{r}");
        }
        let steps = render::next_steps(plan);
        if report.applied > 0 && !steps.is_empty() {
            println!(
                "next: Lync reads AD through its User Replicator on its own schedule; in the Lync Server Management Shell on a Front End server of each pool run:"
            );
            for step in steps {
                println!("  {step}");
            }
        }
    }
    if stopped {
        eprintln!(
            "pcsync: stopped by a signal: the swap in flight was finished; {} of {} swap(s) not started (run `pcsync reconcile --apply` again for them; run {})",
            report.not_started,
            report.swaps,
            run.run_id.as_deref().unwrap_or("not recorded")
        );
    }
    if let Some(blocked) = &report.blocked {
        eprintln!(
            "pcsync: blocked: {blocked} (run {})",
            run.run_id.as_deref().unwrap_or("not recorded")
        );
    }
    if args.wait_replication.is_some()
        && let Some(r) = run.replication.as_ref().filter(|r| !r.reachable_complete())
    {
        eprintln!(
            "pcsync: error: applied, but not every reachable DC holds the writes after \
             --wait-replication: {r}"
        );
        return Some(exit::ERROR);
    }
    None
}

fn print_plan(
    args: &Args,
    plan: &Plan,
    report: Option<&apply::Report>,
    replication: Option<&Replication>,
) -> Result<(), String> {
    let text = match args.format {
        PlanFormat::Text => render::text(plan, args.findings),
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
                        "errors": r.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "replication": replication.map(|r| serde_json::json!({
                            "holding": r.holding.len(),
                            "total": r.total(),
                            "text": r.to_string(),
                        })),
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

/// The run lock when `apply` is set (a dry run writes nothing and takes none); exit 3 when
/// another run holds it, 1 when it cannot be taken at all (state.dir unwritable).
pub(crate) fn lock_for_apply(apply: bool, settings: &Settings) -> Result<Option<RunLock>, u8> {
    if !apply {
        return Ok(None);
    }
    RunLock::acquire(&settings.state.dir)
        .map(Some)
        .map_err(|e| match e {
            LockError::Busy { .. } => {
                // Not audited: appending needs this very lock (two writers would fork the
                // hash chain), and the run holding it is the one writing the log.
                eprintln!(
                    "pcsync: blocked: {e}; nothing was written; not recorded in the audit log, which the run holding the lock writes"
                );
                exit::BLOCKED
            }
            LockError::Io { .. } => {
                eprintln!("pcsync: error: {e} (state.dir); nothing was written");
                exit::ERROR
            }
        })
}
