//! `pcsync audit show RUN_ID`: one run's plan, swaps, steps and per-object diffs.

use crate::audit::{self, review};
use crate::cli::report_error;

use super::{Display, Target, write_all};

pub(super) const HELP: &str = "\
Example:
  pcsync audit show 20261124T080000123Z-1a2b3c4d

Only the run's own records must verify: damage elsewhere in the log is named on stderr and
stepped over. Secret attributes (password hashes and the like) are never shown.

Exit codes: 0 shown; 1 error (no such run, its records damaged, an unreadable log).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ShowFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// The run (as reconcile --apply and `audit list --runs` print it).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// text, or json (the run's records as JSON Lines).
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    format: ShowFormat,
}

pub(super) fn show(target: &Target, display: &Display, args: &ShowArgs) -> u8 {
    // Only this run's records must verify; damage elsewhere in the log is named, not fatal.
    let mut records = match audit::salvage::run_records(&target.files, &args.run_id) {
        Ok(r) => {
            for d in &r.stepped_over {
                eprintln!(
                    "pcsync: warning: the audit log is damaged outside run {}: {d}; run `pcsync audit verify`",
                    args.run_id
                );
            }
            r.records
        }
        Err(e) => return report_error(&e),
    };
    // A log written before pcsync dropped secret attributes may still hold some.
    for r in &mut records {
        audit::redact::record(r);
    }
    if !records.iter().any(|r| r.run_id == args.run_id) {
        return report_error(&format!(
            "run {} is not in the audit log {}",
            args.run_id,
            target.log.display()
        ));
    }
    let text = match args.format {
        ShowFormat::Text => review::show(&records, &args.run_id, &|t| display.full(t)),
        ShowFormat::Json => records
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .map(|l| l + "\n")
            .collect(),
    };
    write_all(&text)
}
