//! `pcsync audit export --format csv|json|ldif`: the filtered records for auditors, or the
//! latest before-image of each object as LDIF for ldapadd.

use std::io::Write;

use crate::audit::{self, review};

use super::list::{ListFormat, list_events};
use super::{Display, FilterArgs, Target, finish_review, reviewed_filter, stream};
use crate::cli::report_error;

pub(super) const HELP: &str = "\
Examples:
  pcsync audit export --format csv --since 30d > audit.csv
  pcsync audit export --format ldif > before-images.ldif   # restore: ldapadd -f before-images.ldif

Exit codes: 0 exported; 1 error, or the log fails verification.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    Ldif,
}

#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    pub(super) filter: FilterArgs,
    /// csv, json (JSON Lines), or ldif (the latest before-image of each object pcsync changed,
    /// as add records for ldapadd).
    #[arg(long, value_enum)]
    format: ExportFormat,
}

pub(super) fn export(target: &Target, display: &Display, args: &ExportArgs) -> u8 {
    let (review, filter) = match reviewed_filter(target, &args.filter) {
        Ok(rf) => rf,
        Err(e) => return report_error(&e),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = match args.format {
        ExportFormat::Csv => list_events(
            target,
            display,
            ListFormat::Csv,
            &filter,
            review.as_ref(),
            &mut out,
        ),
        ExportFormat::Json => list_events(
            target,
            display,
            ListFormat::Json,
            &filter,
            review.as_ref(),
            &mut out,
        ),
        ExportFormat::Ldif => {
            let mut images = review::BeforeImages::default();
            stream(target, &filter, review.as_ref(), |v| {
                images.observe(&v.record);
                Ok(())
            })
            .and_then(|cursor| {
                let mut text = audit::ldif::header();
                for (entry, swap, time) in images.into_entries() {
                    text.push_str(&audit::ldif::entry(
                        &format!("before-image of swap {swap}\n# at {}", display.full(&time)),
                        &entry,
                    ));
                }
                out.write_all(text.as_bytes())
                    .map_err(|e| format!("cannot write output: {e}"))?;
                Ok(cursor)
            })
        }
    };
    finish_review(out, result, review.as_ref())
}
