//! `pcsync audit list|show|verify|export`: review the audit log and prove it intact.
//!
//! The I/O edge around src/audit/review.rs: reads the clock (for relative `--since`), the
//! terminal (colour only on a TTY without NO_COLOR) and the review cursors in `state.dir`, and
//! streams the log through [`audit::Reader`], so memory stays flat on any log size. A log that
//! fails verification stops the output at the break with a one-line error (exit 1).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use chrono::{DateTime, Local, Utc};
use sha2::{Digest, Sha256};

use crate::audit::review::{self, Filter, RunRow, Runs};
use crate::audit::{self, Cursor, Event, Reader, Record, Step};
use crate::cli::{Cli, load_settings, report_error};
use crate::config::Settings;
use crate::exit;
use crate::lock::RunLock;
use crate::model::{Dn, SipUri};
use crate::util::hex;

/// Width the table output fits in.
const TABLE_WIDTH: usize = 100;

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
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// One row per event (or per run with --runs), filtered; filters combine with AND.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// A run's plan, each swap's steps with a before/after attribute diff per object, and its
    /// rollbacks and recoveries.
    #[command(after_help = SHOW_HELP)]
    Show(ShowArgs),
    /// Check the hash chain, sequence numbers and record shape of every segment.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Export for auditors: CSV, JSON Lines, or the before-images as LDIF for ldapadd.
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Benchmark data: append N generated records with a valid chain (no fsync).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

const LIST_HELP: &str = "\
Examples:
  pcsync audit list --since 7d --outcome failed
  pcsync audit list --runs --since 2026-11-01T00:00:00Z
  pcsync audit list --sip sip:ocschat@contoso.com --format json | jq .dn
  pcsync audit list --since-last weekly-review     # only what is new since the last review

Exit codes: 0 listed; 1 error, or the log fails verification (output stops at the break).";

const SHOW_HELP: &str = "\
Example:
  pcsync audit show 20261124T080000123Z-1a2b3c4d

Exit codes: 0 shown; 1 error (no such run, unreadable or broken log).";

const VERIFY_HELP: &str = "\
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

const EXPORT_HELP: &str = "\
Examples:
  pcsync audit export --format csv --since 30d > audit.csv
  pcsync audit export --format ldif > before-images.ldif   # restore: ldapadd -f before-images.ldif

Exit codes: 0 exported; 1 error, or the log fails verification.";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// One row per run: started, finished, actor, counts, outcome.
    #[arg(long)]
    runs: bool,
    /// table (fits 100 columns), json (JSON Lines: the records exactly as logged), csv.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ShowFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The run (as reconcile --apply and `audit list --runs` print it).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// text, or json (the run's records as JSON Lines).
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    format: ShowFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Move a torn last line (a crash mid-write) to <segment>.corrupt, then verify again.
    /// Nothing else is ever changed.
    #[arg(long)]
    repair: bool,
    /// A head hash an earlier verify printed (kept elsewhere): it must still be in the chain,
    /// which proves the log was not truncated or rewritten since (the log may have grown).
    #[arg(long, value_name = "SHA256")]
    expect_head: Option<String>,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    Ldif,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// csv, json (JSON Lines), or ldif (the latest before-image of each object pcsync changed,
    /// as add records for ldapadd).
    #[arg(long, value_enum)]
    format: ExportFormat,
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// How many records to append.
    #[arg(long)]
    records: u64,
}

/// Where the log is, and the settings when a configuration was loaded.
struct Target {
    log: PathBuf,
    settings: Option<Settings>,
    max_segment_size: u64,
}

fn target(cli: &Cli, args: &Args, need_settings: bool) -> Result<Target, u8> {
    if let Some(log) = &args.log
        && !need_settings
    {
        return Ok(Target {
            log: log.clone(),
            settings: None,
            max_segment_size: audit::DEFAULT_MAX_SEGMENT_BYTES,
        });
    }
    let settings = load_settings(cli)?;
    Ok(Target {
        log: args
            .log
            .clone()
            .unwrap_or_else(|| settings.audit.path.clone()),
        max_segment_size: settings.audit.max_segment_size,
        settings: Some(settings),
    })
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let needs_state = match &args.command {
        AuditCommand::List(l) => l.filter.since_last.is_some(),
        AuditCommand::Export(e) => e.filter.since_last.is_some(),
        AuditCommand::Verify(v) => v.repair,
        AuditCommand::Show(_) => false,
        AuditCommand::Generate(_) => false,
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
        AuditCommand::List(l) => list(&target, &display, l),
        AuditCommand::Show(s) => show(&target, &display, s),
        AuditCommand::Verify(v) => verify(&target, v),
        AuditCommand::Export(e) => export(&target, &display, e),
        AuditCommand::Generate(g) => generate(&target, g),
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
    let mut reader = Reader::open(&target.log).map_err(|e| e.to_string())?;
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

fn list(target: &Target, display: &Display, args: &ListArgs) -> u8 {
    let (review, filter) = match reviewed_filter(target, &args.filter) {
        Ok(rf) => rf,
        Err(e) => return report_error(&e),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = if args.runs {
        list_runs(
            target,
            display,
            args.format,
            &filter,
            review.as_ref(),
            &mut out,
        )
    } else {
        list_events(
            target,
            display,
            args.format,
            &filter,
            review.as_ref(),
            &mut out,
        )
    };
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
    match save_cursor(review.as_ref(), &cursor) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}

const EVENT_CSV_HEADER: &str =
    "seq,time,run_id,event,outcome,step,dn,sip_uri,swap,message,bind_dn,host";

fn event_csv(display: &Display, r: &Record) -> String {
    let fields = [
        r.seq.to_string(),
        display.full(&r.time),
        r.run_id.clone(),
        r.event.as_str().to_string(),
        review::shown_outcome(r).to_string(),
        r.step.map(Step::as_str).unwrap_or("").to_string(),
        r.dn.as_ref().map(Dn::to_string).unwrap_or_default(),
        r.sip_uri
            .as_ref()
            .map(SipUri::to_string)
            .unwrap_or_default(),
        r.swap.clone().unwrap_or_default(),
        r.message.clone().unwrap_or_default(),
        r.actor.bind_dn.clone().unwrap_or_default(),
        r.actor.host.clone(),
    ];
    fields
        .iter()
        .map(|f| review::csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// The event table: SEQ, TIME, EVENT (the step name for a step), OUTCOME, then the DN (or
/// SIP URI, or message) in the remaining columns, its middle elided when too long.
fn event_row(display: &Display, r: &Record) -> String {
    const FIXED: usize = 7 + 1 + 20 + 1 + 16 + 1 + 11 + 1;
    let event = match r.step {
        Some(s) if r.event == Event::Step => s.as_str(),
        _ => r.event.as_str(),
    };
    let subject =
        r.dn.as_ref()
            .map(Dn::as_str)
            .or(r.sip_uri.as_ref().map(SipUri::as_str))
            .or(r.message.as_deref())
            .unwrap_or("");
    let subject =
        review::ellipsize_middle(&subject.replace(['\n', '\r'], " "), TABLE_WIDTH - FIXED);
    format!(
        "{:<7} {:<20} {:<16} {} {}",
        r.seq,
        display.short(&r.time),
        event,
        display.outcome(review::shown_outcome(r), 11),
        subject
    )
    .trim_end()
    .to_string()
}

fn list_events(
    target: &Target,
    display: &Display,
    format: ListFormat,
    filter: &Filter,
    review: Option<&Review>,
    out: &mut impl Write,
) -> Result<Cursor, String> {
    let head = match format {
        ListFormat::Table => Some(format!(
            "{:<7} {:<20} {:<16} {:<11} DN / SIP URI / MESSAGE",
            "SEQ",
            if display.utc {
                "TIME (UTC)"
            } else {
                "TIME (local)"
            },
            "EVENT",
            "OUTCOME"
        )),
        ListFormat::Csv => Some(EVENT_CSV_HEADER.to_string()),
        ListFormat::Json => None,
    };
    if let Some(h) = head {
        writeln!(out, "{h}").map_err(|e| format!("cannot write output: {e}"))?;
    }
    stream(target, filter, review, |v| match format {
        ListFormat::Json => {
            out.write_all(&v.line)?;
            out.write_all(b"\n")
        }
        ListFormat::Csv => writeln!(out, "{}", event_csv(display, &v.record)),
        ListFormat::Table => writeln!(out, "{}", event_row(display, &v.record)),
    })
}

const RUN_CSV_HEADER: &str = "run_id,started,finished,outcome,planned,applied,failed,rolled_back,waiting,findings,bind_dn,host,command";

fn run_line(display: &Display, format: ListFormat, row: &RunRow) -> String {
    match format {
        ListFormat::Json => serde_json::to_string(row).unwrap_or_default(),
        ListFormat::Csv => [
            row.run_id.clone(),
            display.full(&row.started),
            row.finished
                .as_deref()
                .map(|f| display.full(f))
                .unwrap_or_default(),
            row.outcome.clone(),
            row.counts.planned.to_string(),
            row.counts.applied.to_string(),
            row.counts.failed.to_string(),
            row.counts.rolled_back.to_string(),
            row.counts.waiting.to_string(),
            row.counts.findings.to_string(),
            row.actor.bind_dn.clone().unwrap_or_default(),
            row.actor.host.clone(),
            row.command.clone().unwrap_or_default(),
        ]
        .iter()
        .map(|f| review::csv_field(f))
        .collect::<Vec<_>>()
        .join(","),
        ListFormat::Table => {
            let took = match (&row.finished, DateTime::parse_from_rfc3339(&row.started)) {
                (Some(end), Ok(start)) => DateTime::parse_from_rfc3339(end)
                    .map(|end| format_duration(end.signed_duration_since(start)))
                    .unwrap_or_default(),
                _ => "-".to_string(),
            };
            let actor = format!(
                "{}@{}",
                row.actor
                    .bind_dn
                    .as_deref()
                    .and_then(|d| d.split(',').next())
                    .and_then(|rdn| rdn.split_once('=').map(|(_, v)| v))
                    .unwrap_or("anonymous"),
                row.actor.host
            );
            let counts = format!(
                "{}/{}/{}/{}",
                row.counts.planned, row.counts.applied, row.counts.failed, row.counts.rolled_back
            );
            format!(
                "{:<29} {:<20} {:>7} {:<16} {:<11} {}",
                row.run_id,
                display.short(&row.started),
                took,
                review::ellipsize_middle(&actor, 16),
                counts,
                display.outcome(&row.outcome, 11)
            )
            .trim_end()
            .to_string()
        }
    }
}

fn format_duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn list_runs(
    target: &Target,
    display: &Display,
    format: ListFormat,
    filter: &Filter,
    review: Option<&Review>,
    out: &mut impl Write,
) -> Result<Cursor, String> {
    match format {
        ListFormat::Table => writeln!(
            out,
            "{:<29} {:<20} {:>7} {:<16} {:<11} OUTCOME",
            "RUN",
            if display.utc {
                "STARTED (UTC)"
            } else {
                "STARTED (local)"
            },
            "TOOK",
            "ACTOR",
            "P/A/F/RB"
        ),
        ListFormat::Csv => writeln!(out, "{RUN_CSV_HEADER}"),
        ListFormat::Json => Ok(()),
    }
    .map_err(|e| format!("cannot write output: {e}"))?;
    // Runs are folded from every record; the filter applies to whole runs.
    let everything = Filter::default();
    let mut runs = Runs::default();
    let emit = |row: RunRow, out: &mut dyn Write| -> std::io::Result<()> {
        if row.matches(filter) {
            writeln!(out, "{}", run_line(display, format, &row))?;
        }
        Ok(())
    };
    let cursor = stream(target, &everything, review, |v| {
        match runs.observe(&v.record, filter) {
            Some(row) => emit(row, out),
            None => Ok(()),
        }
    })?;
    if let Some(row) = runs.finish() {
        emit(row, out).map_err(|e| format!("cannot write output: {e}"))?;
    }
    Ok(cursor)
}

fn show(target: &Target, display: &Display, args: &ShowArgs) -> u8 {
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

fn write_all(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            report_error(&format!("cannot write output: {e}"))
        }
        _ => exit::OK,
    }
}

fn verify(target: &Target, args: &VerifyArgs) -> u8 {
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

fn export(target: &Target, display: &Display, args: &ExportArgs) -> u8 {
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
    match save_cursor(review.as_ref(), &cursor) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}

/// Benchmark data: realistic runs (start, plan, one swap with before-image and steps, end)
/// appended through the real writer, rotating at the configured segment size.
fn generate(target: &Target, args: &GenerateArgs) -> u8 {
    match crate::audit::generate::append(&target.log, args.records, target.max_segment_size) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
