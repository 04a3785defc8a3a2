//! `pcsync restore --run RUN_ID [--apply]`: undo a reconcile run from the audit log.
//!
//! Shows the restore plan first (like reconcile); `--apply` carries it out under the run lock,
//! journaled in the audit log as a run of its own, then checks its result: every SIP URI it
//! touched must be held by exactly one enabled object. SIGINT/SIGTERM stop it after the action
//! in flight, like a lost connection; either way it says what was and was not done.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, RestorePlan, RestoreReport};
use crate::audit::{self, Actor, AuditLog, AuditSink, Event, Note, Outcome};
use crate::cli::reconcile::lock_for_apply;
use crate::cli::{Cli, Format, load_settings, report_error};
use crate::config::Settings;
use crate::estate::{self, routed::Routed};
use crate::exit;
use crate::ldap::{self, Directory};
use crate::model::SipUri;
use crate::reconcile::{Live, holders_everywhere, random_u32};
use crate::shutdown;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run to undo (its run_id in the audit log, as reconcile --apply prints it).
    #[arg(long = "run", value_name = "RUN_ID")]
    run_id: String,

    /// Carry the restore out. Without it, only show what would be done.
    #[arg(long)]
    apply: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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
    let files = match audit::LogFiles::of(&settings) {
        Ok(f) => f,
        Err(e) => return report_error(&e),
    };
    // Only this run's records must verify; damage elsewhere in the log is named, not fatal.
    let records = match audit::salvage::run_records(&files, &args.run_id) {
        Ok(r) => {
            for d in &r.stepped_over {
                eprintln!(
                    "pcsync: warning: the audit log is damaged outside run {}, which restore does not need: {d}; run `pcsync audit verify`",
                    args.run_id
                );
            }
            r.records
        }
        Err(e) => return report_error(&e),
    };
    // Like reconcile: every write goes to the one write server, which never fails over; a
    // dry run reads from the first URL that answers.
    let opened = if args.apply {
        estate::writer::open(&settings.directory)
            .await
            .map(|(dir, _)| dir)
            .map_err(|e| e.to_string())
    } else {
        Directory::connect(&settings.directory)
            .await
            .map_err(|e| e.to_string())
    };
    let mut dir = match opened {
        Ok(dir) => dir,
        Err(e) => return report_error(&e),
    };
    let plan = match plan_routed(&settings, &records, &args.run_id, &mut dir).await {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            dir.close().await;
            return report_error(&format!(
                "run {} is not in the audit log {}",
                args.run_id,
                settings.audit.path.display()
            ));
        }
        Err(e) => {
            dir.close().await;
            return report_error(&e);
        }
    };
    print(args.format, &plan);
    let code = if args.apply && plan.pending() == 0 {
        // A restore with nothing to do writes nothing, not even a run in the audit log (#19).
        print_nothing_to_do(args.format, &plan);
        exit::OK
    } else if !args.apply {
        if plan.pending() == 0 {
            exit::OK
        } else {
            exit::PENDING
        }
    } else {
        let run_id = audit::new_run_id(crate::clock::system(), random_u32());
        let actor = Actor {
            bind_dn: dir.bound_as().map(str::to_string),
            host: audit::host_name(),
        };
        match AuditLog::open(&files, &run_id, actor, crate::clock::system) {
            Err(e) => report_error(&e),
            Ok(mut log) => apply_restore(&settings, &plan, &mut dir, &mut log, args.format).await,
        }
    };
    dir.close().await;
    code
}

/// The restore plan of `run_id`, each object read on a DC of its own domain ([`Routed`]).
async fn plan_routed(
    settings: &Settings,
    records: &[audit::Record],
    run_id: &str,
    dir: &mut Directory,
) -> Result<Option<RestorePlan>, String> {
    let mut routed = Routed::new(dir, settings)
        .await
        .map_err(|e| e.to_string())?;
    let plan = apply::plan_restore(records, run_id, &mut routed).await;
    routed.close().await;
    plan.map_err(|e| e.to_string())
}

async fn apply_restore(
    settings: &Settings,
    plan: &RestorePlan,
    dir: &mut Directory,
    log: &mut AuditLog,
    format: Format,
) -> u8 {
    let start = Note::new(Event::RunStart, Outcome::Started)
        .message(format!("restore --run {} --apply", plan.run_id));
    if let Err(e) = log.record(start) {
        return report_error(&e);
    }
    // SIGINT/SIGTERM from here on end the restore after the action in flight.
    let stop = CancellationToken::new();
    let signals = shutdown::spawn_cancel_on_signal(stop.clone());
    // Each user goes back on its own domain's write server, endpoints on the primary one.
    let applied = match Routed::new(dir, settings).await {
        Ok(mut routed) => {
            let applied = apply::apply_restore(plan, &mut routed, log, &stop).await;
            routed.close().await;
            applied.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let report = match applied {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    // The result check reads the directory; after a lost connection there is nothing to read.
    let unserved = if report.stopped.is_some() {
        Vec::new()
    } else {
        match unserved(settings, dir, &plan.touched_uris()).await {
            Ok(u) => u,
            Err(e) => vec![format!("cannot check the result: {e}")],
        }
    };
    signals.abort();
    let complete = report.failed == 0 && report.stopped.is_none() && unserved.is_empty();
    let mut end = Note::new(
        Event::RunEnd,
        if complete {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    );
    end.counts = Some(audit::Counts {
        planned: plan.pending(),
        applied: report.applied,
        failed: report.failed,
        ..audit::Counts::default()
    });
    let mut problems: Vec<String> = unserved.clone();
    problems.extend(report.stopped.iter().cloned());
    if !problems.is_empty() {
        end = end.message(problems.join("; "));
    }
    if let Err(e) = log.record(end) {
        return report_error(&e);
    }
    match format {
        Format::Json => print_json(plan, log.run_id(), &report, &unserved),
        Format::Text => print_report(plan, log.run_id(), &report, &unserved),
    }
    if complete { exit::OK } else { exit::ERROR }
}

/// Each URI in `uris` that is not held by exactly one object with msRTCSIP-UserEnabled TRUE,
/// as one line naming it and its holders. Users are searched as planning does: through the
/// Global Catalog in every domain when one is configured.
async fn unserved(
    settings: &Settings,
    dir: &mut Directory,
    uris: &[SipUri],
) -> Result<Vec<String>, ldap::Error> {
    let mut live = Live::new(dir, settings).await?;
    let lines = unserved_in(settings, &mut live, uris).await;
    live.close().await;
    lines
}

async fn unserved_in(
    settings: &Settings,
    live: &mut Live<'_>,
    uris: &[SipUri],
) -> Result<Vec<String>, ldap::Error> {
    let classifier = crate::inventory::classifier(settings);
    let mut lines = Vec::new();
    for uri in uris {
        let mut enabled = Vec::new();
        holders_everywhere(settings, live, uri.normalized(), &classifier, |o| {
            let same = o.sip_uri.as_ref().is_some_and(|u| u == uri);
            if same && o.enabled == crate::model::Enabled::True {
                enabled.push(o.dn.to_string());
            }
        })
        .await?;
        match enabled.len() {
            1 => {}
            0 => lines.push(format!(
                "UNSERVED {uri}: no enabled object holds it after the restore"
            )),
            _ => lines.push(format!(
                "HELD TWICE {uri}: {} enabled objects hold it after the restore: {}",
                enabled.len(),
                enabled.join("; ")
            )),
        }
    }
    Ok(lines)
}

fn print_report(
    plan: &RestorePlan,
    restore_run: &str,
    report: &RestoreReport,
    unserved: &[String],
) {
    for e in &report.errors {
        println!("FAILED {e}");
    }
    for w in &report.warnings {
        println!("WARNING {w}");
    }
    for u in unserved {
        println!("{u}");
    }
    if let Some(why) = &report.stopped {
        println!("STOPPED {why}");
        for d in &report.done {
            println!("  done     {d}");
        }
        for n in &report.not_done {
            println!("  not done {n}");
        }
        println!(
            "  run `pcsync restore --run {} --apply` again to finish: it redoes only what the \
             directory does not show done",
            plan.run_id
        );
    }
    println!(
        "restored {} of {} action(s) of run {} (restore run {restore_run})",
        report.applied,
        plan.pending(),
        plan.run_id,
    );
}

/// What `--apply` prints when no action is pending: no run was recorded.
fn print_nothing_to_do(format: Format, plan: &RestorePlan) {
    let skipped = plan.actions.iter().filter(|a| a.skipped.is_some()).count();
    match format {
        Format::Json => {
            let outcome = ApplyResult {
                run_id: &plan.run_id,
                restore_run: None,
                report: &RestoreReport::default(),
                unserved: &[],
            };
            println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
        }
        Format::Text if skipped > 0 => println!(
            "nothing left to restore for run {}: {skipped} action(s) skipped (see above); no run \
             recorded",
            plan.run_id
        ),
        Format::Text => println!(
            "nothing to restore: run {} is already undone; no run recorded",
            plan.run_id
        ),
    }
}

/// The result of `--apply --format json`: one line after the plan. `restore_run` is null when
/// nothing was pending and no run was recorded.
#[derive(Serialize)]
struct ApplyResult<'a> {
    run_id: &'a str,
    restore_run: Option<&'a str>,
    #[serde(flatten)]
    report: &'a RestoreReport,
    unserved: &'a [String],
}

fn print_json(plan: &RestorePlan, restore_run: &str, report: &RestoreReport, unserved: &[String]) {
    let outcome = ApplyResult {
        run_id: &plan.run_id,
        restore_run: Some(restore_run),
        report,
        unserved,
    };
    println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
}

fn print(format: Format, plan: &RestorePlan) {
    match format {
        Format::Json => println!("{}", serde_json::to_string(plan).unwrap_or_default()),
        Format::Text => {
            println!("{:<16} {:<8} {:<32} DN", "ACTION", "STATUS", "SIP URI");
            for a in &plan.actions {
                let kind = crate::util::variant_name(&a.kind);
                let status = match (a.pending, &a.skipped) {
                    (true, _) => "pending",
                    (false, Some(_)) => "skipped",
                    (false, None) => "done",
                };
                println!("{kind:<16} {status:<8} {:<32} {}", a.sip_uri, a.dn);
            }
            for why in plan.actions.iter().filter_map(|a| a.skipped.as_ref()) {
                println!("{why}");
            }
            println!(
                "{} action(s) pending to undo run {}",
                plan.pending(),
                plan.run_id
            );
        }
    }
}
