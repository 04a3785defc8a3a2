//! `pcsync audit list|show|verify|export`: review the audit log and prove it intact.
//!
//! The I/O edge around src/audit/review.rs: reads the clock (for relative `--since`), the
//! terminal (colour only on a TTY without NO_COLOR) and the review cursors in `state.dir`, and
//! streams the log through [`audit::Reader`], so memory stays flat on any log size. A log that
//! fails verification stops the output at the break with a one-line error (exit 1). One file
//! per subcommand; this one holds the clap definitions and what they share (where the log is,
//! how times are shown, the filters and review cursors of `list` and `export`).

mod export;
mod list;
mod show;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use chrono::{DateTime, Local, Utc};
use sha2::{Digest, Sha256};

use crate::audit::key::Keyring;
use crate::audit::review::{self, Filter};
use crate::audit::{self, Cursor, Event, LogFiles, Reader};
use crate::cli::{Cli, load_settings, report_error};
use crate::config::Settings;
use crate::exit;
use crate::util::hex;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: AuditCommand,

    /// Read this log (the active segment's path; sealed segments are found next to it) instead
    /// of audit.path from the configuration; no configuration is needed then.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Show times in UTC instead of local time.
    #[arg(long, global = true)]
    utc: bool,

    /// Check the keyed chain with this key file (default: audit.key_file of the
    /// configuration, unless --log is given).
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// One row per event (or per run with --runs), filtered; filters combine with AND.
    #[command(after_help = list::HELP)]
    List(list::ListArgs),
    /// A run's plan, each swap's steps with a before/after attribute diff per object, and its
    /// rollbacks and recoveries.
    #[command(after_help = show::HELP)]
    Show(show::ShowArgs),
    /// Check the hash chain, sequence numbers and record shape of every segment.
    #[command(after_help = verify::HELP)]
    Verify(verify::VerifyArgs),
    /// Export for auditors: CSV, JSON Lines, or the before-images as LDIF for ldapadd.
    #[command(after_help = export::HELP)]
    Export(export::ExportArgs),
}

/// Filters shared by list and export.
#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// Only records at or after T: RFC 3339 (2026-11-24T08:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only records at or before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Only this run.
    #[arg(long = "run", value_name = "RUN_ID")]
    run: Option<String>,
    /// Only these events (repeatable).
    #[arg(long = "event", value_enum, value_name = "E")]
    events: Vec<Event>,
    /// Only records about this object (case-insensitive DN).
    #[arg(long, value_name = "DN")]
    dn: Option<String>,
    /// Only records about this SIP URI (case-insensitive; `sip:` optional).
    #[arg(long, value_name = "URI")]
    sip: Option<String>,
    /// Only these outcomes (repeatable).
    #[arg(long = "outcome", value_enum, value_name = "O")]
    outcomes: Vec<OutcomeArg>,
    /// Only records new since the last review with this cursor name; the cursor (in
    /// state.dir/audit-cursors/) then moves to the end of the log.
    #[arg(long, value_name = "NAME")]
    since_last: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutcomeArg {
    Started,
    Ok,
    Failed,
    Blocked,
    Skipped,
    RolledBack,
}

impl OutcomeArg {
    fn as_str(self) -> &'static str {
        match self {
            OutcomeArg::Started => "started",
            OutcomeArg::Ok => "ok",
            OutcomeArg::Failed => "failed",
            OutcomeArg::Blocked => "blocked",
            OutcomeArg::Skipped => "skipped",
            OutcomeArg::RolledBack => "rolled-back",
        }
    }
}

/// Where the log is and what protects it, and the settings when a configuration was loaded.
struct Target {
    log: PathBuf,
    /// The configured log (anchored, keyed as configured), or with `--log` a copy nothing
    /// anchors (keyed with `--key-file`).
    files: LogFiles,
    settings: Option<Settings>,
}

fn target(cli: &Cli, args: &Args, need_settings: bool) -> Result<Target, u8> {
    let settings = match (&args.log, need_settings) {
        (Some(_), false) => None,
        _ => Some(load_settings(cli)?),
    };
    let files = match (&args.log, &settings) {
        (Some(log), _) => LogFiles::unanchored(log),
        (None, Some(s)) => LogFiles::of(s).map_err(|e| report_error(&e))?,
        (None, None) => return Err(report_error(&"no audit log: give --log FILE")),
    };
    let files = match &args.key_file {
        Some(path) => files.with_keys(Keyring::load(path).map_err(|e| report_error(&e))?),
        None => files,
    };
    Ok(Target {
        log: files.path().to_path_buf(),
        files,
        settings,
    })
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let needs_state = match &args.command {
        AuditCommand::List(l) => l.filter.since_last.is_some(),
        AuditCommand::Export(e) => e.filter.since_last.is_some(),
        AuditCommand::Verify(v) => v.repair || v.reanchor,
        AuditCommand::Show(_) => false,
    };
    let target = match target(cli, args, needs_state) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let display = Display {
        utc: args.utc,
        colour: std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    match &args.command {
        AuditCommand::List(l) => list::list(&target, &display, l),
        AuditCommand::Show(s) => show::show(&target, &display, s),
        AuditCommand::Verify(v) => verify::verify(&target, v),
        AuditCommand::Export(e) => export::export(&target, &display, e),
    }
}

impl Target {
    /// A verifying reader over the whole log, checking the keyed chain when there is a key.
    fn reader(&self) -> Result<Reader, audit::Error> {
        let reader = Reader::open(&self.log)?;
        Ok(match &self.files.keys {
            Some(keys) => reader.with_keys(keys.clone()),
            None => reader,
        })
    }
}

/// How times and outcomes are shown.
struct Display {
    utc: bool,
    colour: bool,
}

impl Display {
    /// `2026-11-24 09:00:00` in local time, or with `Z` in UTC (table cells: 19-20 columns).
    fn short(&self, time: &str) -> String {
        match DateTime::parse_from_rfc3339(time) {
            Ok(t) if self.utc => t
                .with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string(),
            Ok(t) => t
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            Err(_) => time.to_string(),
        }
    }

    /// RFC 3339 with milliseconds, in UTC (`Z`) or with the local offset.
    fn full(&self, time: &str) -> String {
        match DateTime::parse_from_rfc3339(time) {
            Ok(t) if self.utc => t
                .with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            Ok(t) => t
                .with_timezone(&Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            Err(_) => time.to_string(),
        }
    }

    /// An outcome cell padded to `width`, coloured on a terminal.
    fn outcome(&self, outcome: &str, width: usize) -> String {
        let cell = format!("{outcome:<width$}");
        if !self.colour {
            return cell;
        }
        let code = match outcome {
            "ok" => "32",
            "failed" | "incomplete" => "31",
            "blocked" | "rolled-back" => "33",
            _ => return cell,
        };
        format!("\x1b[{code}m{cell}\x1b[0m")
    }
}

/// Builds the library filter from the flags; `now` for relative times; the cursor's `seq`.
fn build_filter(
    f: &FilterArgs,
    now: DateTime<Utc>,
    after_seq: Option<u64>,
) -> Result<Filter, String> {
    let time = |flag: &str, t: &Option<String>| {
        t.as_deref()
            .map(|t| review::parse_time(t, now).map_err(|e| format!("--{flag}: {e}")))
            .transpose()
    };
    Ok(Filter {
        since: time("since", &f.since)?,
        until: time("until", &f.until)?,
        run: f.run.clone(),
        events: f.events.clone(),
        dn: f.dn.as_deref().map(review::normalize_dn),
        sip: f.sip.as_deref().map(review::normalize_sip),
        outcomes: f.outcomes.iter().map(|o| o.as_str().to_string()).collect(),
        after_seq,
    })
}

/// The review cursor named by --since-last, and where cursors live.
struct Review {
    name: String,
    state_dir: PathBuf,
    previous: Option<Cursor>,
}

/// The review cursor of `--since-last` (if any) and the filter that starts after it: what
/// `list` and `export` both select.
fn reviewed_filter(target: &Target, f: &FilterArgs) -> Result<(Option<Review>, Filter), String> {
    let review = review_cursor(target, f)?;
    let after = review
        .as_ref()
        .and_then(|r| r.previous.as_ref().map(|c| c.seq));
    let filter = build_filter(f, Utc::now(), after)?;
    Ok((review, filter))
}

fn review_cursor(target: &Target, f: &FilterArgs) -> Result<Option<Review>, String> {
    let Some(name) = &f.since_last else {
        return Ok(None);
    };
    let state_dir = target
        .settings
        .as_ref()
        .map(|s| s.state.dir.clone())
        .ok_or("--since-last needs the configuration (state.dir)")?;
    let previous = Cursor::load(&state_dir, name).map_err(|e| e.to_string())?;
    Ok(Some(Review {
        name: name.clone(),
        state_dir,
        previous,
    }))
}

/// Streams the filtered records to `emit`; checks the cursor's record on the way; returns
/// the cursor for the end of the log.
fn stream(
    target: &Target,
    filter: &Filter,
    review: Option<&Review>,
    mut emit: impl FnMut(&audit::Verified) -> std::io::Result<()>,
) -> Result<Cursor, String> {
    let mut reader = target.reader().map_err(|e| e.to_string())?;
    let mut last_seq = 0;
    let check = review.and_then(|r| r.previous.as_ref().map(|c| (r, c)));
    let mut cursor_seen = false;
    for item in reader.by_ref() {
        let v = item.map_err(|e| format!("{e}; run `pcsync audit verify` for details"))?;
        last_seq = v.record.seq;
        if let Some((r, c)) = check
            && v.record.seq == c.seq
        {
            cursor_seen = true;
            if hex(&Sha256::digest(&v.line)) != c.hash {
                eprintln!(
                    "pcsync: warning: record {} changed since review {:?} saw it; run `pcsync audit verify`",
                    c.seq, r.name
                );
            }
        }
        if filter.matches(&v.record) {
            match emit(&v) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => return Err(format!("cannot write output: {e}")),
                Ok(()) => {}
            }
        }
    }
    if let Some((r, c)) = check
        && !cursor_seen
    {
        eprintln!(
            "pcsync: warning: the log has no record {} that review {:?} last saw; it was truncated or replaced",
            c.seq, r.name
        );
    }
    Ok(Cursor {
        seq: last_seq,
        hash: reader.head().to_string(),
    })
}

fn save_cursor(review: Option<&Review>, cursor: &Cursor) -> Result<(), String> {
    match review {
        Some(r) => cursor
            .save(&r.state_dir, &r.name)
            .map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

fn write_all(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            report_error(&format!("cannot write output: {e}"))
        }
        _ => exit::OK,
    }
}

/// Ends a `list` or `export`: flushes the output (a closed pipe is not an error), then moves
/// the review cursor, only after everything was written.
fn finish_review(
    mut out: impl Write,
    result: Result<Cursor, String>,
    review: Option<&Review>,
) -> u8 {
    let flushed = out.flush();
    let cursor = match result {
        Ok(c) => c,
        Err(e) => return report_error(&e),
    };
    if let Err(e) = flushed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return report_error(&format!("cannot write output: {e}"));
    }
    match save_cursor(review, &cursor) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
