//! `pcsync audit verify`: the whole chain checked (and the keyed chain, with a key), then the
//! log's end against its anchor in `state.dir`; a torn last line moved aside, or a reviewed
//! change accepted, on request.

use std::io::Read;
use std::path::Path;

use crate::audit;
use crate::audit::anchor::{self, Standing};
use crate::cli::report_error;
use crate::exit;
use crate::lock::RunLock;

use super::{Target, write_all};

pub(super) const HELP: &str = "\
Examples:
  pcsync audit verify                 # OK: <records> records in <n> segment(s), head <sha256>
  pcsync audit verify --repair        # move a torn last line to <segment>.corrupt
  pcsync audit verify --expect-head <sha256 from an earlier verify>   # detect truncation
  pcsync audit verify --reanchor      # after review: accept the log as it is now
  pcsync audit verify --log copy.jsonl --key-file audit.key   # an auditor's copy, keyed

With the configuration, the log must also end where its anchor (state.dir/audit-anchor.json)
says; with a key (audit.key_file or --key-file) every record's MAC is checked too.

Exit codes:
  0  the log is intact (or was repaired, or re-anchored, and is now intact)
  1  the log fails verification (edited, deleted, reordered or inserted record, broken seq,
     wrong shape, torn last line, a MAC that does not match, --expect-head not in the chain,
     or a log that does not end at its anchor: deleted, truncated, rewritten), or cannot be
     read; the first broken record is named
  3  --repair or --reanchor blocked: another pcsync run holds the lock; nothing was changed";

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
    /// Accept the log as it is now, after reviewing why it no longer ends at its anchor (a
    /// restored backup, a moved log, a newly set key): the chain must verify, then the anchor
    /// is rewritten at its head, with the open swaps rebuilt from the log.
    #[arg(long, conflicts_with = "repair")]
    pub(super) reanchor: bool,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

/// What a verification found, for the report.
struct Found {
    summary: audit::Summary,
    standing: Standing,
    /// The previous anchor's `(seq, head)` when `--reanchor` replaced it.
    reanchored: Option<Option<(u64, String)>>,
}

pub(super) fn verify(target: &Target, args: &VerifyArgs) -> u8 {
    if args.reanchor && target.files.anchor.is_none() {
        return report_error(
            &"--reanchor anchors audit.path of the configuration in its state.dir; drop --log",
        );
    }
    let mut repaired = None;
    // No writer may append while the log is repaired or re-anchored.
    let _lock = if args.repair || args.reanchor {
        let Some(settings) = &target.settings else {
            return report_error(
                &"--repair and --reanchor need the configuration (state.dir, for the lock)",
            );
        };
        match RunLock::acquire(&settings.state.dir) {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("pcsync: blocked: {e}; nothing was changed");
                return exit::BLOCKED;
            }
        }
    } else {
        None
    };
    if args.repair {
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
    let result = check(target, args);
    if let Some((path, bytes)) = &repaired {
        eprintln!(
            "pcsync: moved the torn last line ({bytes} bytes) to {}",
            path.display()
        );
    }
    if let Ok(Found {
        reanchored: Some(previous),
        summary,
        ..
    }) = &result
    {
        let was = match previous {
            Some((seq, head)) => format!("it said seq {seq}, head {head}"),
            None => "there was none".to_string(),
        };
        eprintln!(
            "pcsync: re-anchored {} at seq {}, head {} ({was})",
            target.log.display(),
            summary.next_seq - 1,
            summary.head
        );
    }
    let text = report(
        target,
        args.format,
        &result,
        repaired.as_ref().map(|r| &r.0),
    );
    let code = write_all(&text);
    match result {
        Ok(_) => code,
        Err(e) => {
            eprintln!("pcsync: audit log FAILS verification: {e}");
            exit::ERROR
        }
    }
}

/// The chain (keyed with a key), `--expect-head`, then the anchor (or `--reanchor`).
fn check(target: &Target, args: &VerifyArgs) -> Result<Found, String> {
    let summary = verify_chain(target, args.expect_head.as_deref())?;
    if args.reanchor {
        let done = anchor::reanchor(&target.files).map_err(|e| e.to_string())?;
        return Ok(Found {
            summary,
            standing: Standing::Anchored { seq: done.now.seq },
            reanchored: Some(done.previous.map(|a| (a.seq, a.head))),
        });
    }
    let standing = anchor::standing(&target.files).map_err(|e| e.to_string())?;
    Ok(Found {
        summary,
        standing,
        reanchored: None,
    })
}

/// Verifies every record; with `expected`, that hash must also be the hash of one of its lines.
fn verify_chain(target: &Target, expected: Option<&str>) -> Result<audit::Summary, String> {
    let expected = expected.map(|h| h.trim().to_ascii_lowercase());
    let mut reader = target.reader().map_err(|e| e.to_string())?;
    let mut found = expected.as_deref().is_none_or(|h| h == audit::GENESIS);
    let mut records = 0;
    while let Some(item) = reader.next() {
        item.map_err(|e| with_crlf_hint(e).to_string())?;
        records += 1;
        found |= expected.as_deref() == Some(reader.head());
    }
    if !found {
        return Err(format!(
            "audit log {}: the expected head {} is not in the chain: the log was truncated, rewritten or replaced since that head was recorded",
            target.log.display(),
            expected.unwrap_or_default()
        ));
    }
    Ok(audit::Summary {
        records,
        segments: reader.segments().len(),
        head: reader.head().to_string(),
        next_seq: records + 1,
        macs: reader.macs(),
    })
}

/// A copy with Windows line endings breaks at its first line: every line then ends in `\r`,
/// which JSON ignores but the hash does not. Says so, and how to convert it back.
fn with_crlf_hint(e: audit::Error) -> String {
    if let audit::Error::Broken { path, line: 1, .. } = &e
        && first_line_ends_in_cr(Path::new(path))
    {
        return format!(
            "{e}; the file has Windows (CRLF) line endings, so no line hashes as pcsync wrote it: convert it back with `sed -i 's/\\r$//' {path}` (or dos2unix) and verify again"
        );
    }
    e.to_string()
}

fn first_line_ends_in_cr(path: &Path) -> bool {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_end(&mut head));
    read.is_ok()
        && head
            .split(|b| *b == b'\n')
            .next()
            .is_some_and(|l| l.ends_with(b"\r") && head.contains(&b'\n'))
}

/// The report on stdout: the summary line, then the anchor and the keyed chain (text), or one
/// JSON object.
fn report(
    target: &Target,
    format: VerifyFormat,
    result: &Result<Found, String>,
    repaired: Option<&std::path::PathBuf>,
) -> String {
    let keyed = target.files.keys.is_some();
    match (result, format) {
        (Ok(f), VerifyFormat::Text) => {
            let s = &f.summary;
            let mut text = format!(
                "OK: {} record(s) in {} segment(s), head {}\n",
                s.records, s.segments, s.head
            );
            text.push_str(&format!("anchor: {}\n", standing_text(&f.standing)));
            if keyed || s.macs > 0 {
                text.push_str(&format!("keyed: {}\n", keyed_text(s, keyed)));
            }
            text
        }
        (Ok(f), VerifyFormat::Json) => {
            let s = &f.summary;
            let (anchor, anchored_seq) = match &f.standing {
                Standing::Anchored { seq } => ("matches", Some(*seq)),
                Standing::OneAhead { seq } => ("one_ahead", Some(*seq)),
                Standing::NoAnchor => ("none", None),
                Standing::NotChecked => ("not_checked", None),
            };
            format!(
                "{}\n",
                serde_json::json!({
                    "ok": true, "records": s.records, "segments": s.segments, "head": s.head,
                    "repaired": repaired.map(|p| p.display().to_string()),
                    "anchor": anchor, "anchored_seq": anchored_seq,
                    "reanchored": f.reanchored.is_some(),
                    "macs": s.macs, "macs_checked": keyed,
                })
            )
        }
        (Err(e), VerifyFormat::Json) => format!(
            "{}\n",
            serde_json::json!({ "ok": false, "error": e.to_string() })
        ),
        (Err(_), VerifyFormat::Text) => String::new(),
    }
}

fn standing_text(standing: &Standing) -> String {
    match standing {
        Standing::Anchored { seq } => format!("the log ends at its anchored head (seq {seq})"),
        Standing::OneAhead { seq } => format!(
            "anchored at seq {seq}, one record behind the log (a run stopped between writing a record and its anchor); the next run moves it"
        ),
        Standing::NoAnchor => {
            "none yet; the next run that writes (or --reanchor) anchors this head".to_string()
        }
        Standing::NotChecked => "not checked (a copy read with --log)".to_string(),
    }
}

fn keyed_text(s: &audit::Summary, keyed: bool) -> String {
    match (keyed, s.macs) {
        (true, 0) => "no record carries a MAC yet".to_string(),
        (true, n) => format!("{n} record(s) carry a MAC; all verify with the key"),
        (false, n) => format!(
            "{n} record(s) carry a MAC, not checked: give the key with --key-file (or audit.key_file)"
        ),
    }
}
