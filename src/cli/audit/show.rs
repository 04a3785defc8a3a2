//! `pcsync audit show RUN_ID`: one run's plan, swaps, steps and per-object diffs.

use crate::audit::{self, review};
use crate::cli::report_error;

use super::{Display, Target, write_all};

pub(super) const HELP: &str = "\
Example:
  pcsync audit show 20261124T080000123Z-1a2b3c4d

Exit codes: 0 shown; 1 error (no such run, unreadable or broken log).";

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
    let records = match audit::records_of_run(&target.log, &args.run_id) {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
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
