//! Reviewing the log: filters, per-run summaries, before/after diffs and the `show` text.
//!
//! Pure functions over [`Record`]s: no I/O and no clock; the CLI passes `now`
//! for relative times and a function that formats times for display (local or UTC).

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use super::{Actor, Counts, Event, Outcome, Record, Step};
use crate::model::{AttrValues, Dn, Entry, SipUri};
use crate::plan::Change;

/// `--since` / `--until`: the time grammar is the configuration's, shared with every command.
pub(crate) use crate::config::parse_time;

/// The outcome as shown and filtered: a successful rollback is `rolled-back`.
pub(crate) fn shown_outcome(r: &Record) -> &'static str {
    match (r.event, r.outcome) {
        (Event::Rollback, Outcome::Ok) => "rolled-back",
        (_, o) => o.as_str(),
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
                r.dn.as_ref().is_some_and(|dn| {
                    dn.as_str().eq_ignore_ascii_case(want) || dn.normalized() == want
                })
            })
            && self.sip.as_ref().is_none_or(|want| {
                r.sip_uri
                    .as_ref()
                    .is_some_and(|u| u.as_str().eq_ignore_ascii_case(want))
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
            row.outcome = r.outcome.as_str().to_string();
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
        if !names.iter().any(|n| attr.name.is(n)) {
            names.push(attr.name.as_str());
        }
    }
    let values = |list: &[AttrValues], name: &str| -> Vec<Vec<u8>> {
        list.iter()
            .filter(|x| x.name.is(name))
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
        for a in out.attributes.iter_mut().filter(|a| a.name == r.name) {
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
    if own.is_empty() {
        return out;
    }
    show_header(&mut out, run_id, &own, time);
    show_plan(&mut out, &own);
    for r in own
        .iter()
        .filter(|r| matches!(r.event, Event::GuardBlocked | Event::Error))
    {
        let _ = writeln!(
            out,
            "\n{} {}: {}",
            r.event.as_str(),
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

/// `run ID`, who started it and when, the command, and how it finished (or that it never did).
fn show_header(out: &mut String, run_id: &str, own: &[&Record], time: &dyn Fn(&str) -> String) {
    let Some(first) = own.first() else { return };
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
                end.outcome.as_str()
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
}

/// The plan's summary line and one line per change.
fn show_plan(out: &mut String, own: &[&Record]) {
    let Some(plan) = own.iter().find(|r| r.event == Event::Plan) else {
        return;
    };
    let _ = writeln!(
        out,
        "\nplan: {}",
        plan.message.as_deref().unwrap_or("(no summary)")
    );
    for c in plan.plan.iter().flat_map(|p| &p.changes) {
        let _ = writeln!(
            out,
            "  {:<17} {:<32} {}",
            c.action().as_str(),
            c.sip_uri().as_str(),
            c.dn()
        );
    }
}

/// One swap: its outcome, each step as it happened, then per object a before/after diff.
fn show_swap(out: &mut String, swap: &str, records: &[&Record], time: &dyn Fn(&str) -> String) {
    let sip = records
        .iter()
        .find_map(|r| r.sip_uri.as_ref().map(SipUri::as_str))
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
    let mut objects = SwapObjects::from_changes(&changes);
    // Only records about an object are shown: the steps of a swap each name the DN written.
    for r in records {
        let Some(dn) = r.dn.as_ref() else { continue };
        if let Some(line) = step_line(r, swap, time) {
            let _ = writeln!(out, "{line}");
        }
        let change = changes.iter().find(|c| c.dn() == dn);
        objects.get(dn).observe(r, change);
    }
    for o in &objects.0 {
        o.write_diff(out);
    }
}

/// A step, rollback or recovery as one line: time, event, step, outcome, the run that did it
/// when another run recovered the swap, and the message. `None` for other records.
fn step_line(r: &Record, swap: &str, time: &dyn Fn(&str) -> String) -> Option<String> {
    if !matches!(r.event, Event::Step | Event::Rollback | Event::Recovery) {
        return None;
    }
    let mut line = format!("  {}  {}", time(&r.time), r.event.as_str());
    if let Some(s) = r.step {
        let _ = write!(line, " {}", s.as_str());
    }
    let _ = write!(line, " {}", shown_outcome(r));
    if r.run_id != swap.split('#').next().unwrap_or("") {
        let _ = write!(line, " (run {})", r.run_id);
    }
    if let Some(m) = &r.message {
        let _ = write!(line, ": {m}");
    }
    Some(line)
}

/// The objects a swap touched, in order of first mention.
struct SwapObjects(Vec<ObjectState>);

impl SwapObjects {
    /// One object per change; a repointed endpoint's known state before is what the plan
    /// expected of it (no before-image is taken of an endpoint).
    fn from_changes(changes: &[Change]) -> SwapObjects {
        let mut objects = SwapObjects(Vec::new());
        for c in changes {
            let o = objects.get(c.dn());
            if let Change::RepointEndpoint(r) = c {
                o.before = Some(Entry {
                    dn: c.dn().clone(),
                    attributes: r.expect.clone(),
                });
            }
        }
        objects
    }

    /// The object named `dn` (case-insensitive), added when new.
    fn get(&mut self, dn: &Dn) -> &mut ObjectState {
        let i = match self
            .0
            .iter()
            .position(|o| o.dn.eq_ignore_ascii_case(dn.as_str()))
        {
            Some(i) => i,
            None => {
                self.0.push(ObjectState {
                    dn: dn.as_str().to_string(),
                    ..ObjectState::default()
                });
                self.0.len() - 1
            }
        };
        &mut self.0[i]
    }
}

impl ObjectState {
    /// Follows one record about this object: its before-image, or what a successful write
    /// made of it (`change` is the planned change for this DN).
    fn observe(&mut self, r: &Record, change: Option<&Change>) {
        if r.event == Event::BeforeImage {
            self.before = r.before.clone();
        }
        if r.outcome != Outcome::Ok {
            return;
        }
        match (r.event, r.step, change) {
            (Event::Step, Some(Step::DeleteUser | Step::DeleteEndpoint), _) => {
                self.after = Some(None)
            }
            (Event::Step, Some(Step::DisableUser), Some(c)) => {
                if let Some(before) = &self.before {
                    self.after = Some(Some(without(before, c.attributes())));
                }
            }
            (Event::Step, Some(Step::AddEndpoint), Some(c)) => {
                self.after = Some(Some(Entry {
                    dn: c.dn().clone(),
                    attributes: c.attributes().to_vec(),
                }));
            }
            (Event::Step, Some(Step::RepointEndpoint), Some(c)) => {
                if let Some(before) = &self.before {
                    let mut after = before.clone();
                    for new in c.attributes() {
                        after.attributes.retain(|a| a.name != new.name);
                        after.attributes.push(new.clone());
                    }
                    self.after = Some(Some(after));
                }
            }
            _ => {}
        }
        if let Some(after) = &r.after {
            self.after = Some(Some(after.clone()));
        }
    }

    /// `  DN  (deleted|created|modified|unchanged|no write recorded)` and its diff lines.
    fn write_diff(&self, out: &mut String) {
        let (label, lines) = match (&self.before, &self.after) {
            (_, None) => ("no write recorded", Vec::new()),
            (b, Some(None)) => ("deleted", diff(b.as_ref(), None)),
            (None, Some(Some(a))) => ("created", diff(None, Some(a))),
            (Some(b), Some(Some(a))) => {
                let d = diff(Some(b), Some(a));
                let label = if d.is_empty() {
                    "unchanged"
                } else {
                    "modified"
                };
                (label, d)
            }
        };
        let _ = writeln!(out, "  {}  ({label})", self.dn);
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
        // A log written before pcsync dropped secret attributes may still hold some.
        let mut image = image.clone();
        super::redact::entry(&mut image);
        let key = image.dn.normalized().to_string();
        if !self.images.contains_key(&key) {
            self.order.push(key.clone());
        }
        let swap = r.swap.clone().unwrap_or_else(|| r.run_id.clone());
        self.images.insert(key, (image, swap, r.time.clone()));
    }

    /// `(entry, swap, time)` in order.
    pub(crate) fn into_entries(mut self) -> Vec<(Entry, String, String)> {
        self.order
            .iter()
            .filter_map(|k| self.images.remove(k))
            .collect()
    }
}
