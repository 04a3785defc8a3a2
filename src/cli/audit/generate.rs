//! `pcsync audit generate` (hidden): benchmark data.

use crate::cli::report_error;
use crate::exit;

use super::Target;

#[derive(Debug, clap::Args)]
pub(super) struct GenerateArgs {
    /// How many records to append.
    #[arg(long)]
    records: u64,
}

/// Benchmark data: realistic runs (start, plan, one swap with before-image and steps, end)
/// appended through the real writer, rotating at the configured segment size.
pub(super) fn generate(target: &Target, args: &GenerateArgs) -> u8 {
    match crate::audit::generate::append(&target.log, args.records, target.max_segment_size) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
