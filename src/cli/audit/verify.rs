//! `pcsync audit verify`: the whole chain checked, a torn last line moved aside on request.

use crate::audit::{self, Reader};
use crate::cli::report_error;
use crate::exit;
use crate::lock::RunLock;

use super::{Target, write_all};

pub(super) const HELP: &str = "\
Examples:
  pcsync audit verify                 # OK: <records> records in <n> segment(s), head <sha256>
  pcsync audit verify --repair        # move a torn last line to <segment>.corrupt
  pcsync audit verify --expect-head <sha256 from an earlier verify>   # detect truncation

Exit codes:
  0  the log is intact (or was repaired and is now intact)
  1  the log fails verification (edited, deleted, reordered or inserted record, broken seq,
     wrong shape, torn last line, --expect-head not in the chain), or cannot be read; the
     first broken record is named
  3  --repair blocked: another pcsync run holds the lock; nothing was changed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// Move a torn last line (a crash mid-write) to `<segment>.corrupt`, then verify again.
    /// Nothing else is ever changed.
    #[arg(long)]
    pub(super) repair: bool,
    /// A head hash an earlier verify printed (kept elsewhere): it must still be in the chain,
    /// which proves the log was not truncated or rewritten since (the log may have grown).
    #[arg(long, value_name = "SHA256")]
    expect_head: Option<String>,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

pub(super) fn verify(target: &Target, args: &VerifyArgs) -> u8 {
    let mut repaired = None;
    if args.repair {
        let Some(settings) = &target.settings else {
            return report_error(&"--repair needs the configuration (state.dir, for the lock)");
        };
        // No writer may append while the torn line is moved aside.
        let _lock = match RunLock::acquire(&settings.state.dir) {
            Ok(lock) => lock,
            Err(e) => {
                eprintln!("pcsync: blocked: {e}; nothing was changed");
                return exit::BLOCKED;
            }
        };
        match audit::verify(&target.log) {
            Err(audit::Error::Torn { .. }) => match audit::repair_torn(&target.log) {
                Ok(r) => repaired = r,
                Err(e) => return report_error(&e),
            },
            Ok(_) => {}
            Err(e) => {
                return report_error(&format!(
                    "{e}; --repair only moves a torn last line aside, this needs investigation"
                ));
            }
        }
    }
    let result = verify_with_anchor(&target.log, args.expect_head.as_deref());
    let text = match (&result, args.format) {
        (Ok(s), VerifyFormat::Text) => format!(
            "OK: {} record(s) in {} segment(s), head {}\n",
            s.records, s.segments, s.head
        ),
        (Ok(s), VerifyFormat::Json) => format!(
            "{}\n",
            serde_json::json!({
                "ok": true, "records": s.records, "segments": s.segments, "head": s.head,
                "repaired": repaired.as_ref().map(|(p, _)| p.display().to_string()),
            })
        ),
        (Err(e), VerifyFormat::Json) => format!(
            "{}\n",
            serde_json::json!({ "ok": false, "error": e.to_string() })
        ),
        (Err(_), VerifyFormat::Text) => String::new(),
    };
    if let Some((path, bytes)) = &repaired {
        eprintln!(
            "pcsync: moved the torn last line ({bytes} bytes) to {}",
            path.display()
        );
    }
    let code = write_all(&text);
    match result {
        Ok(_) => code,
        Err(e) => {
            eprintln!("pcsync: audit log FAILS verification: {e}");
            exit::ERROR
        }
    }
}

/// Verifies the log; with `anchor`, that hash must also be the hash of one of its lines.
fn verify_with_anchor(
    log: &std::path::Path,
    anchor: Option<&str>,
) -> Result<audit::Summary, String> {
    let Some(anchor) = anchor else {
        return audit::verify(log).map_err(|e| e.to_string());
    };
    let anchor = anchor.trim().to_ascii_lowercase();
    let mut reader = Reader::open(log).map_err(|e| e.to_string())?;
    let mut found = anchor == audit::GENESIS;
    let mut records = 0;
    while let Some(item) = reader.next() {
        item.map_err(|e| e.to_string())?;
        records += 1;
        found |= reader.head() == anchor;
    }
    let summary = audit::Summary {
        records,
        segments: reader.segments().len(),
        head: reader.head().to_string(),
        next_seq: records + 1,
    };
    if !found {
        return Err(format!(
            "audit log {}: the expected head {anchor} is not in the chain: the log was truncated, rewritten or replaced since that head was recorded",
            log.display()
        ));
    }
    Ok(summary)
}
