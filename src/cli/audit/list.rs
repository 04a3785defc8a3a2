//! `pcsync audit list`: one row per event, or per run with `--runs`, as a table, JSON Lines or
//! CSV.

use std::borrow::Cow;
use std::io::Write;

use chrono::DateTime;

use crate::audit::review::{self, Filter, RunRow, Runs};
use crate::audit::{self, Cursor, Event, Record, Step, redact};
use crate::cli::report_error;
use crate::model::{Dn, SipUri};

use super::{Display, FilterArgs, Review, Target, finish_review, reviewed_filter, stream};

/// Width the table output fits in.
const TABLE_WIDTH: usize = 100;

pub(super) const HELP: &str = "\
Examples:
  pcsync audit list --since 7d --outcome failed
  pcsync audit list --runs --since 2026-11-01T00:00:00Z
  pcsync audit list --sip sip:ocschat@contoso.com --format json | jq .dn
  pcsync audit list --since-last weekly-review     # only what is new since the last review

Exit codes: 0 listed; 1 error, or the log fails verification (output stops at the break).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    pub(super) filter: FilterArgs,
    /// One row per run: started, finished, actor, counts, outcome.
    #[arg(long)]
    runs: bool,
    /// table (fits 100 columns), json (JSON Lines: the records exactly as logged), csv.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

pub(super) fn list(target: &Target, display: &Display, args: &ListArgs) -> u8 {
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
    finish_review(out, result, review.as_ref())
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

/// The selected records, one per line, in `format`; what `export --format csv|json` prints too.
pub(super) fn list_events(
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
            out.write_all(&json_line(v))?;
            out.write_all(b"\n")
        }
        ListFormat::Csv => writeln!(out, "{}", event_csv(display, &v.record)),
        ListFormat::Table => writeln!(out, "{}", event_row(display, &v.record)),
    })
}

/// A record as logged, byte for byte, unless it holds a secret attribute (a log written before
/// pcsync dropped them): then re-serialised without it, which its hash no longer matches.
fn json_line(v: &audit::Verified) -> Cow<'_, [u8]> {
    if !redact::holds_secrets(&v.record) {
        return Cow::Borrowed(&v.line);
    }
    let mut record = v.record.clone();
    redact::record(&mut record);
    Cow::Owned(serde_json::to_vec(&record).unwrap_or_default())
}

const RUN_CSV_HEADER: &str = "run_id,started,finished,outcome,planned,applied,failed,rolled_back,waiting,findings,bind_dn,host,command";

fn run_line(display: &Display, format: ListFormat, row: &RunRow) -> String {
    match format {
        ListFormat::Json => serde_json::to_string(row).unwrap_or_default(),
        ListFormat::Csv => run_csv(display, row),
        ListFormat::Table => run_row(display, row),
    }
}

fn run_csv(display: &Display, row: &RunRow) -> String {
    [
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
    .join(",")
}

/// The run table: RUN, STARTED, TOOK, ACTOR (the bind DN's first RDN value @ host),
/// P/A/F/RB counts, OUTCOME.
fn run_row(display: &Display, row: &RunRow) -> String {
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
