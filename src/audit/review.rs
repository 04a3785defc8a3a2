//! Reviewing the log: filters, per-run summaries, before/after diffs and the `show` text.
//!
//! Pure functions over [`Record`]s: no I/O and no clock; the CLI passes `now`
//! for relative times and a function that formats times for display (local or UTC).

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};

use super::{Actor, Counts, Event, Outcome, Record, Step};
use crate::model::{AttrValues, Dn, Entry};
use crate::plan::{Action, Change};

/// `--since` / `--until`: RFC 3339 (`2026-11-24T08:00:00Z`, `…+01:00`) or a time before `now`
/// (`30s`, `30m`, `2h`, `7d`, `2w`).
pub(crate) fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 = number.parse().map_err(|_| {
        format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-24T08:00:00Z) or an age (30m, 2h, 7d)"
        )
    })?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (expected s, m, h, d or w)"
            ));
        }
    }
    .ok_or_else(|| format!("{text:?} is too large"))?;
    now.checked_sub_signed(age)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The outcome as shown and filtered: a successful rollback is `rolled-back`.
pub(crate) fn shown_outcome(r: &Record) -> &'static str {
    match (r.event, r.outcome) {
        (Event::Rollback, Outcome::Ok) => "rolled-back",
        (_, o) => outcome_str(o),
    }
}

pub(crate) fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Started => "started",
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Blocked => "blocked",
        Outcome::Skipped => "skipped",
    }
}

pub(crate) fn event_str(e: Event) -> &'static str {
    match e {
        Event::RunStart => "run_start",
        Event::Plan => "plan",
        Event::GuardBlocked => "guard_blocked",
        Event::SwapIntent => "swap_intent",
        Event::BeforeImage => "before_image",
        Event::Step => "step",
        Event::SwapDone => "swap_done",
        Event::Rollback => "rollback",
        Event::Recovery => "recovery",
        Event::Error => "error",
        Event::Replication => "replication",
        Event::RunEnd => "run_end",
    }
}

pub(crate) fn step_str(s: Step) -> &'static str {
    match s {
        Step::DeleteUser => "delete_user",
        Step::DisableUser => "disable_user",
        Step::AddEndpoint => "add_endpoint",
        Step::RepointEndpoint => "repoint_endpoint",
        Step::Verify => "verify",
        Step::RestoreUser => "restore_user",
        Step::DeleteEndpoint => "delete_endpoint",
    }
}

/// Which records to show. Every set criterion must match (AND); several values of one
/// criterion (`--event a --event b`) are alternatives (OR).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub run: Option<String>,
    pub events: Vec<Event>,
    /// Normalised (case-insensitive, canonical spacing) DN.
    pub dn: Option<String>,
    /// Lower-case SIP URI with its `sip:` scheme.
    pub sip: Option<String>,
    /// Shown outcomes (`ok`, `failed`, `blocked`, `rolled-back`, …).
    pub outcomes: Vec<String>,
    /// Only records after this `seq` (a review cursor).
    pub after_seq: Option<u64>,
}

/// A DN as compared by `--dn`: parsed and normalised when it parses, lower-cased otherwise.
pub(crate) fn normalize_dn(text: &str) -> String {
    match Dn::parse(text) {
        Ok(dn) => dn.normalized().to_string(),
        Err(_) => text.trim().to_ascii_lowercase(),
    }
}

/// A SIP URI as compared by `--sip`: lower-case, `sip:` added when missing.
pub(crate) fn normalize_sip(text: &str) -> String {
    let t = text.trim().to_ascii_lowercase();
    if t.starts_with("sip:") {
        t
    } else {
        format!("sip:{t}")
    }
}

impl Filter {
    /// Whether the record's time is inside `since..=until`.
    fn in_time(&self, time: &str) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(at) = DateTime::parse_from_rfc3339(time) else {
            return false;
        };
        let at = at.with_timezone(&Utc);
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at <= u)
    }

    /// The criteria that concern what a record is about (event, DN, SIP URI).
    fn subject_matches(&self, r: &Record) -> bool {
        (self.events.is_empty() || self.events.contains(&r.event))
            && self.dn.as_ref().is_none_or(|want| {
                r.dn.as_deref()
                    .is_some_and(|dn| dn.eq_ignore_ascii_case(want) || normalize_dn(dn) == *want)
            })
            && self.sip.as_ref().is_none_or(|want| {
                r.sip_uri
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(want))
            })
    }

    pub(crate) fn matches(&self, r: &Record) -> bool {
        self.after_seq.is_none_or(|s| r.seq > s)
            && self.run.as_ref().is_none_or(|id| r.run_id == *id)
            && (self.outcomes.is_empty() || self.outcomes.iter().any(|o| o == shown_outcome(r)))
            && self.subject_matches(r)
            && self.in_time(&r.time)
    }
}

/// One run, as `audit list --runs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RunRow {
    pub run_id: String,
    pub started: String,
    /// Time of `run_end`; `None` for a run that never ended (a crash).
    pub finished: Option<String>,
    pub actor: Actor,
    /// The `run_start` message (the command).
    pub command: Option<String>,
    pub counts: Counts,
    /// `ok`, `failed`, `blocked`, `rolled-back` (some swap was rolled back) or `incomplete`.
    pub outcome: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Whether any record of the run matched the event/DN/SIP criteria.
    #[serde(skip)]
    subject_matched: bool,
}

/// Folds records into runs. Runs never interleave (one writer holds the run lock), so a run
/// is complete at its `run_end`, or when another run starts (it then never ended: a crash).
#[derive(Debug, Default)]
pub(crate) struct Runs {
    open: Option<RunRow>,
    /// Tallies for a run without `run_end` counts.
    tally: Counts,
}

impl Runs {
    /// Feeds one record; returns a run that is now complete.
    pub(crate) fn observe(&mut self, r: &Record, filter: &Filter) -> Option<RunRow> {
        let mut done = None;
        if self.open.as_ref().is_some_and(|o| o.run_id != r.run_id) {
            done = self.close();
        }
        let row = self.open.get_or_insert_with(|| RunRow {
            run_id: r.run_id.clone(),
            started: r.time.clone(),
            finished: None,
            actor: r.actor.clone(),
            command: None,
            counts: Counts::default(),
            outcome: "incomplete".to_string(),
            first_seq: r.seq,
            last_seq: r.seq,
            subject_matched: false,
        });
        row.last_seq = r.seq;
        row.subject_matched |= filter.subject_matches(r);
        match (r.event, r.outcome) {
            (Event::RunStart, _) => row.command = r.message.clone(),
            (Event::SwapDone, Outcome::Ok) => self.tally.applied += 1,
            (Event::SwapDone, Outcome::Failed) => self.tally.failed += 1,
            (Event::Rollback, Outcome::Ok) => self.tally.rolled_back += 1,
            (Event::Plan, _) => {
                if let Some(p) = &r.plan {
                    self.tally.planned = p.summary.ready;
                    self.tally.waiting = p.summary.waiting;
                    self.tally.findings = p.summary.findings;
                }
            }
            _ => {}
        }
        if r.event == Event::RunEnd {
            row.finished = Some(r.time.clone());
            row.outcome = outcome_str(r.outcome).to_string();
            if let Some(c) = &r.counts {
                self.tally = c.clone();
            }
            return done.or_else(|| self.close());
        }
        done
    }

    fn close(&mut self) -> Option<RunRow> {
        let mut row = self.open.take()?;
        row.counts = std::mem::take(&mut self.tally);
        if row.counts.rolled_back > 0 && row.outcome != "incomplete" {
            row.outcome = "rolled-back".to_string();
        }
        Some(row)
    }

    /// The run still open at the end of the log.
    pub(crate) fn finish(mut self) -> Option<RunRow> {
        self.close()
    }
}

impl RunRow {
    /// `--runs` filtering: times apply to the start, `--outcome` to the run's outcome, the
    /// event/DN/SIP criteria to any of its records.
    pub(crate) fn matches(&self, filter: &Filter) -> bool {
        filter.after_seq.is_none_or(|s| self.last_seq > s)
            && filter.run.as_ref().is_none_or(|id| self.run_id == *id)
            && (filter.outcomes.is_empty() || filter.outcomes.contains(&self.outcome))
            && (self.subject_matched
                || (filter.events.is_empty() && filter.dn.is_none() && filter.sip.is_none()))
            && filter.in_time(&self.started)
    }
}

/// One line of an attribute diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiffLine {
    /// `-` removed, `+` added.
    pub sign: char,
    pub name: String,
    pub value: Vec<u8>,
}

impl std::fmt::Display for DiffLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.sign, value_text(&self.name, &self.value))
    }
}

/// `name: value`, or `name:: <base64>` for a value that is not printable text (LDIF's marker).
pub(crate) fn value_text(name: &str, value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{name}: {text}"),
        _ => format!("{name}:: {}", BASE64.encode(value)),
    }
}

/// The attribute values that differ between two states of one object, removals first for
/// each attribute, attributes in the order they first appear. `None` = the object is absent.
pub(crate) fn diff(before: Option<&Entry>, after: Option<&Entry>) -> Vec<DiffLine> {
    let empty: Vec<AttrValues> = Vec::new();
    let b = before.map(|e| &e.attributes).unwrap_or(&empty);
    let a = after.map(|e| &e.attributes).unwrap_or(&empty);
    let mut names: Vec<&str> = Vec::new();
    for attr in b.iter().chain(a.iter()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&attr.name)) {
            names.push(&attr.name);
        }
    }
    let values = |list: &[AttrValues], name: &str| -> Vec<Vec<u8>> {
        list.iter()
            .filter(|x| x.name.eq_ignore_ascii_case(name))
            .flat_map(|x| x.values.iter().cloned())
            .collect()
    };
    let mut out = Vec::new();
    for name in names {
        let old = values(b, name);
        let new = values(a, name);
        for v in old.iter().filter(|v| !new.contains(v)) {
            out.push(DiffLine {
                sign: '-',
                name: name.to_string(),
                value: v.clone(),
            });
        }
        for v in new.iter().filter(|v| !old.contains(v)) {
            out.push(DiffLine {
                sign: '+',
                name: name.to_string(),
                value: v.clone(),
            });
        }
    }
    out
}

/// What one object went through in a run.
#[derive(Debug, Clone, Default)]
struct ObjectState {
    dn: String,
    before: Option<Entry>,
    /// `None`: no write recorded; `Some(None)`: deleted; `Some(Some(e))`: now `e`.
    after: Option<Option<Entry>>,
}

/// `entry` without the values `removed` lists (all values of an attribute listed without any).
fn without(entry: &Entry, removed: &[AttrValues]) -> Entry {
    let mut out = entry.clone();
    for r in removed {
        for a in out
            .attributes
            .iter_mut()
            .filter(|a| a.name.eq_ignore_ascii_case(&r.name))
        {
            if r.values.is_empty() {
                a.values.clear();
            } else {
                a.values.retain(|v| !r.values.contains(v));
            }
        }
    }
    out.attributes.retain(|a| !a.values.is_empty());
    out
}

/// The records of run `run_id` and of its swaps (a later run's recovery of them), in log
/// order, as text: header, plan, each swap with its steps and a before/after diff per object,
/// rollbacks, recoveries and errors. `time` formats a record time for display.
pub(crate) fn show(records: &[Record], run_id: &str, time: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let own: Vec<&Record> = records.iter().filter(|r| r.run_id == run_id).collect();
    let Some(first) = own.first() else {
        return out;
    };
    let _ = writeln!(out, "run {run_id}");
    let _ = writeln!(
        out,
        "  started   {}  by {} on {}",
        time(&first.time),
        first.actor.bind_dn.as_deref().unwrap_or("(anonymous)"),
        first.actor.host
    );
    if let Some(cmd) = own
        .iter()
        .find(|r| r.event == Event::RunStart)
        .and_then(|r| r.message.as_deref())
    {
        let _ = writeln!(out, "  command   {cmd}");
    }
    match own.iter().find(|r| r.event == Event::RunEnd) {
        Some(end) => {
            let _ = write!(
                out,
                "  finished  {}  {}",
                time(&end.time),
                outcome_str(end.outcome)
            );
            if let Some(c) = &end.counts {
                let _ = write!(
                    out,
                    " (planned {}, applied {}, failed {}, rolled back {})",
                    c.planned, c.applied, c.failed, c.rolled_back
                );
            }
            if let Some(m) = &end.message {
                let _ = write!(out, ": {m}");
            }
            out.push('\n');
        }
        None => out.push_str("  finished  never: the run did not end (crash or kill)\n"),
    }
    if let Some(plan) = own.iter().find(|r| r.event == Event::Plan) {
        let _ = writeln!(
            out,
            "\nplan: {}",
            plan.message.as_deref().unwrap_or("(no summary)")
        );
        if let Some(p) = &plan.plan {
            for c in &p.changes {
                let _ = writeln!(
                    out,
                    "  {:<17} {:<32} {}",
                    c.action.as_str(),
                    c.sip_uri,
                    c.dn
                );
            }
        }
    }
    for r in own
        .iter()
        .filter(|r| matches!(r.event, Event::GuardBlocked | Event::Error))
    {
        let _ = writeln!(
            out,
            "\n{} {}: {}",
            event_str(r.event),
            time(&r.time),
            r.message.as_deref().unwrap_or("")
        );
    }

    // Swaps: this run's, in order of their intent.
    let prefix = format!("{run_id}#");
    let mut swaps: Vec<&str> = Vec::new();
    for r in records {
        if let Some(s) = r.swap.as_deref()
            && s.starts_with(&prefix)
            && !swaps.contains(&s)
        {
            swaps.push(s);
        }
    }
    for swap in swaps {
        let of_swap: Vec<&Record> = records
            .iter()
            .filter(|r| r.swap.as_deref() == Some(swap))
            .collect();
        show_swap(&mut out, swap, &of_swap, time);
    }
    out
}

fn show_swap(out: &mut String, swap: &str, records: &[&Record], time: &dyn Fn(&str) -> String) {
    let sip = records
        .iter()
        .find_map(|r| r.sip_uri.as_deref())
        .unwrap_or("");
    let end = records
        .iter()
        .rev()
        .find(|r| {
            matches!(r.event, Event::SwapDone | Event::Rollback | Event::Recovery)
                && r.outcome != Outcome::Started
        })
        .map(|r| shown_outcome(r))
        .unwrap_or("unfinished");
    let _ = writeln!(out, "\nswap {swap} {sip}: {end}");
    let changes: Vec<Change> = records
        .iter()
        .find(|r| r.event == Event::SwapIntent)
        .and_then(|r| r.changes.clone())
        .unwrap_or_default();
    let mut objects: Vec<ObjectState> = Vec::new();
    let object = |objects: &mut Vec<ObjectState>, dn: &str| -> usize {
        match objects.iter().position(|o| o.dn.eq_ignore_ascii_case(dn)) {
            Some(i) => i,
            None => {
                objects.push(ObjectState {
                    dn: dn.to_string(),
                    ..ObjectState::default()
                });
                objects.len() - 1
            }
        }
    };
    for c in &changes {
        let i = object(&mut objects, &c.dn);
        if c.action == Action::RepointEndpoint {
            objects[i].before = Some(Entry {
                dn: c.dn.clone(),
                attributes: c.expect.clone(),
            });
        }
    }
    for r in records {
        let Some(dn) = r.dn.as_deref() else { continue };
        let i = object(&mut objects, dn);
        let change = changes.iter().find(|c| c.dn.eq_ignore_ascii_case(dn));
        let o = &mut objects[i];
        if r.event == Event::Step || matches!(r.event, Event::Rollback | Event::Recovery) {
            let mut line = format!("  {}  {}", time(&r.time), event_str(r.event));
            if let Some(s) = r.step {
                let _ = write!(line, " {}", step_str(s));
            }
            let _ = write!(line, " {}", shown_outcome(r));
            if r.run_id != swap.split('#').next().unwrap_or("") {
                let _ = write!(line, " (run {})", r.run_id);
            }
            if let Some(m) = &r.message {
                let _ = write!(line, ": {m}");
            }
            let _ = writeln!(out, "{line}");
        }
        if r.event == Event::BeforeImage {
            o.before = r.before.clone();
        }
        if r.outcome != Outcome::Ok {
            continue;
        }
        match (r.event, r.step) {
            (Event::Step, Some(Step::DeleteUser | Step::DeleteEndpoint)) => o.after = Some(None),
            (Event::Step, Some(Step::DisableUser)) => {
                if let (Some(before), Some(c)) = (&o.before, change) {
                    o.after = Some(Some(without(before, &c.attributes)));
                }
            }
            (Event::Step, Some(Step::AddEndpoint)) => {
                if let Some(c) = change {
                    o.after = Some(Some(Entry {
                        dn: c.dn.clone(),
                        attributes: c.attributes.clone(),
                    }));
                }
            }
            (Event::Step, Some(Step::RepointEndpoint)) => {
                if let (Some(before), Some(c)) = (&o.before, change) {
                    let mut after = before.clone();
                    for new in &c.attributes {
                        after
                            .attributes
                            .retain(|a| !a.name.eq_ignore_ascii_case(&new.name));
                        after.attributes.push(new.clone());
                    }
                    o.after = Some(Some(after));
                }
            }
            _ => {}
        }
        if let Some(after) = &r.after {
            o.after = Some(Some(after.clone()));
        }
    }
    for o in &objects {
        let (label, lines) = match (&o.before, &o.after) {
            (_, None) => ("no write recorded", Vec::new()),
            (b, Some(None)) => ("deleted", diff(b.as_ref(), None)),
            (None, Some(Some(a))) => ("created", diff(None, Some(a))),
            (Some(b), Some(Some(a))) => {
                let d = diff(Some(b), Some(a));
                (
                    if d.is_empty() {
                        "unchanged"
                    } else {
                        "modified"
                    },
                    d,
                )
            }
        };
        let _ = writeln!(out, "  {}  ({label})", o.dn);
        for l in lines {
            let _ = writeln!(out, "    {l}");
        }
    }
}

/// Fits `text` into `width` characters, replacing its middle with `…` when too long (a DN's
/// both ends are the informative parts).
pub(crate) fn ellipsize_middle(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let keep = width - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// One CSV field (RFC 4180): quoted (quotes doubled) when it holds a comma, quote, CR or LF.
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Latest before-image per object (by normalised DN), in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct BeforeImages {
    order: Vec<String>,
    images: BTreeMap<String, (Entry, String, String)>,
}

impl BeforeImages {
    pub(crate) fn observe(&mut self, r: &Record) {
        if r.event != Event::BeforeImage {
            return;
        }
        let Some(image) = &r.before else { return };
        let key = normalize_dn(&image.dn);
        if !self.images.contains_key(&key) {
            self.order.push(key.clone());
        }
        let swap = r.swap.clone().unwrap_or_else(|| r.run_id.clone());
        self.images
            .insert(key, (image.clone(), swap, r.time.clone()));
    }

    /// `(entry, swap, time)` in order.
    pub(crate) fn into_entries(mut self) -> Vec<(Entry, String, String)> {
        self.order
            .iter()
            .filter_map(|k| self.images.remove(k))
            .collect()
    }
}
