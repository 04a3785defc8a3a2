//! `pcsync restore --run RUN_ID [--apply]`: undo a reconcile run from the audit log.
//!
//! Shows the restore plan first (like reconcile); `--apply` carries it out under the run lock,
//! journaled in the audit log as a run of its own.

use chrono::Utc;

use crate::apply::{self, RestoreKind, RestorePlan};
use crate::audit::{self, Actor, AuditLog, AuditSink, Event, Note, Outcome};
use crate::cli::reconcile::lock_for_apply;
use crate::cli::{Cli, Format, load_settings, report_error};
use crate::exit;
use crate::ldap::Directory;
use crate::reconcile::random_u32;

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
    let mut dir = match Directory::connect(&settings.directory).await {
        Ok(dir) => dir,
        Err(e) => return report_error(&e),
    };
    let plan = match apply::plan_restore(&records, &args.run_id, &mut dir).await {
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
    let code = if !args.apply {
        if plan.pending() == 0 {
            exit::OK
        } else {
            exit::PENDING
        }
    } else {
        let run_id = audit::new_run_id(Utc::now(), random_u32());
        let actor = Actor {
            bind_dn: dir.bound_as().map(str::to_string),
            host: audit::host_name(),
        };
        match AuditLog::open(&files, &run_id, actor, Utc::now) {
            Err(e) => report_error(&e),
            Ok(mut log) => apply_restore(&plan, &mut dir, &mut log).await,
        }
    };
    dir.close().await;
    code
}

async fn apply_restore(plan: &RestorePlan, dir: &mut Directory, log: &mut AuditLog) -> u8 {
    let start = Note::new(Event::RunStart, Outcome::Started)
        .message(format!("restore --run {} --apply", plan.run_id));
    if let Err(e) = log.record(start) {
        return report_error(&e);
    }
    let report = match apply::apply_restore(plan, dir, log).await {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    let mut end = Note::new(
        Event::RunEnd,
        if report.failed == 0 {
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
    if let Err(e) = log.record(end) {
        return report_error(&e);
    }
    for e in &report.errors {
        println!("FAILED {e}");
    }
    println!(
        "restored {} of {} action(s) of run {} (restore run {})",
        report.applied,
        report.actions,
        plan.run_id,
        log.run_id()
    );
    if report.failed == 0 {
        exit::OK
    } else {
        exit::ERROR
    }
}

fn print(format: Format, plan: &RestorePlan) {
    match format {
        Format::Json => println!("{}", serde_json::to_string(plan).unwrap_or_default()),
        Format::Text => {
            println!("{:<16} {:<8} {:<32} DN", "ACTION", "STATUS", "SIP URI");
            for a in &plan.actions {
                let kind = match a.kind {
                    RestoreKind::DeleteEndpoint => "delete_endpoint",
                    RestoreKind::RecreateUser => "recreate_user",
                    RestoreKind::ReenableUser => "reenable_user",
                };
                let status = if a.pending { "pending" } else { "done" };
                println!("{kind:<16} {status:<8} {:<32} {}", a.sip_uri, a.dn);
            }
            println!(
                "{} action(s) pending to undo run {}",
                plan.pending(),
                plan.run_id
            );
        }
    }
}
