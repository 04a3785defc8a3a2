//! The audit log: append-only, hash-chained JSON Lines, one [`Record`] per event, in segments.
//!
//! Owns `audit.path` and its sealed segments. Every record is written with one `write_all` and
//! `fsync`ed before the directory write it describes, so after a crash the log always knows at
//! least as much as the directory. Each record carries `prev`, the SHA-256 (hex) of the previous
//! record's exact line bytes (without the newline), and `seq`, its position in the whole log;
//! the first record of a log has 64 zeros. Editing, deleting, inserting or reordering any record
//! breaks the chain or the sequence, which [`verify`] and every reader detect. Fields serialise
//! in declaration order, which is the canonical order; the format is versioned (`v`) and
//! described by schemas/audit-record.schema.json. Passwords are never recorded: the actor is
//! the bind DN and the host name. Diagnostics go to tracing, never here.
//!
//! Segments ([`segments`]): `audit.jsonl` is the active one; when appending would take it past
//! `max_segment_size` it is renamed to `audit.000001.jsonl` (then `.000002`, …) and a new active
//! segment starts whose first record chains to the sealed one's last. The writer needs only the
//! active segment (checked on open, so bounded by the size limit); reading streams line by line
//! across all segments with bounded memory. Files are created 0600, directories 0700.
mod cursor;
pub(crate) mod ldif;
mod read;
pub(crate) mod review;
pub(crate) mod segments;
#[cfg(test)]
mod tests;
pub(crate) use cursor::Cursor;
#[cfg(test)]
pub(crate) use cursor::CursorError;
pub(crate) use read::{Reader, Summary, Verified, repair_torn, verify};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Dn, Entry, SipUri};
use crate::plan::{Change, Plan};
use crate::util::hex;

/// Version of the record format.
pub(crate) const RECORD_FORMAT: u32 = 1;
/// `prev` of the first record of a log.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or its directory cannot be opened or created.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing or syncing a record failed; the directory write it describes is not attempted.
    #[error("cannot write audit log {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading the log failed.
    #[error("cannot read audit log {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The log fails verification at `line` of `path`: the first broken record.
    #[error("audit log {path} line {line}: {why}")]
    Broken {
        path: String,
        line: usize,
        why: Break,
    },
    /// The last record was cut off mid-write; pcsync will not chain onto a torn record.
    #[error(
        "audit log {path} line {line}: torn last record (cut off mid-write, e.g. by a crash); \
         `pcsync audit verify --repair` moves it aside to {path}.corrupt"
    )]
    Torn { path: String, line: usize },
    /// A segment name is not the one rotation would give (an unexpected file in the way).
    #[error("cannot rotate audit log {path}: {reason}")]
    Rotate { path: String, reason: String },
}

/// Why a record breaks the log: the reason part of [`Error::Broken`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The line is not a record of this format (JSON, fields, types, `v`, `time`, `prev`).
    Shape(String),
    /// This record's hash does not match `prev` of the next one (`next` names it).
    Edited { next: String },
    /// `seq` jumps forward: records are missing before this line.
    Deleted { expected: u64, found: u64 },
    /// `seq` is out of order and the next record carries the missing one.
    Reordered { expected: u64, found: u64 },
    /// `seq` was changed on this record alone (the next record has the number after the
    /// expected one).
    SeqAltered { expected: u64, found: u64 },
    /// `seq` repeats or goes back: a record was inserted.
    Inserted { expected: u64, found: u64 },
    /// The first record of the log does not start the chain (records before it were removed).
    Genesis,
    /// A sealed segment does not end with a newline.
    Unterminated,
    /// The first record of the active segment does not chain to the newest sealed segment.
    Unchained,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Shape(reason) => write!(f, "not a valid record: {reason}"),
            Break::Edited { next } => write!(
                f,
                "record edited: its SHA-256 does not match `prev` of the next record ({next})"
            ),
            Break::Deleted { expected, found } => write!(
                f,
                "record(s) deleted: seq {found} where {expected} was expected ({} missing)",
                found - expected
            ),
            Break::Reordered { expected, found } => write!(
                f,
                "records reordered: seq {found} where {expected} was expected, and {expected} follows"
            ),
            Break::SeqAltered { expected, found } => write!(
                f,
                "seq altered: {found} where {expected} was expected, and {} follows",
                expected + 1
            ),
            Break::Inserted { expected, found } => write!(
                f,
                "record inserted: seq {found} where {expected} was expected"
            ),
            Break::Genesis => write!(
                f,
                "the first record's `prev` is not the genesis hash (64 zeros): records before it were removed"
            ),
            Break::Unterminated => write!(f, "a sealed segment ends without a newline"),
            Break::Unchained => write!(
                f,
                "`prev` does not match the last record of the previous segment (a segment was edited, removed or replaced)"
            ),
        }
    }
}

/// Who acted: never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The bind DN, or null for an anonymous bind.
    pub bind_dn: Option<String>,
    pub host: String,
}

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Event {
    RunStart,
    Plan,
    GuardBlocked,
    /// A swap (the changes for one SIP URI) is about to start.
    SwapIntent,
    /// The complete entry of an object before pcsync changes it.
    BeforeImage,
    /// One directory write of a swap: `started` before it, `ok` or `failed` after.
    Step,
    SwapDone,
    Rollback,
    /// A crashed run's unfinished swap was completed or rolled back.
    Recovery,
    Error,
    /// After a run's writes: how many DCs already hold them (`replicated to 2 of 2 DCs`).
    Replication,
    RunEnd,
}

/// The result the record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Started,
    Ok,
    Failed,
    Blocked,
    Skipped,
}

/// Which write a `step` record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Delete the user.
    DeleteUser,
    /// Clear the user's msRTCSIP-* attributes.
    DisableUser,
    AddEndpoint,
    RepointEndpoint,
    /// Read the endpoint back.
    Verify,
    /// Re-create or re-enable a user from its before-image.
    RestoreUser,
    /// Remove an endpoint pcsync created.
    DeleteEndpoint,
}

impl Event {
    /// The name the audit log writes (`swap_intent`).
    pub(crate) fn as_str(self) -> &'static str {
        crate::util::variant_name(&self)
    }
}

impl Outcome {
    /// The name the audit log writes (`ok`).
    pub(crate) fn as_str(self) -> &'static str {
        crate::util::variant_name(&self)
    }
}

impl Step {
    /// The name the audit log writes (`delete_user`).
    pub(crate) fn as_str(self) -> &'static str {
        crate::util::variant_name(&self)
    }
}

/// Counts in `run_start` / `run_end`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub planned: usize,
    pub applied: usize,
    pub failed: usize,
    pub rolled_back: usize,
    pub waiting: usize,
    pub findings: usize,
}

/// One line of the audit log. Field order is the canonical serialisation order. Unknown
/// fields are refused: a record is exactly what this version writes (`v`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    pub run_id: String,
    pub seq: u64,
    pub time: String,
    pub event: Event,
    pub outcome: Outcome,
    pub(crate) actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<Dn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_uri: Option<SipUri>,
    /// Identifies one swap across runs: `<run_id>#<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) counts: Option<Counts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<Plan>,
    /// `swap_intent`: the changes of the swap, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Entry>,
    /// SHA-256 (hex) of the previous record's line.
    pub prev: String,
}

/// The parts of a record the caller chooses; the sink ([`AuditSink::record`]) fills in the
/// rest. Outside the crate (the benchmark generator in examples/) a note is built from its JSON
/// form: the record's own fields, as schemas/audit-record.schema.json documents them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub(crate) event: Event,
    pub(crate) outcome: Outcome,
    pub(crate) dn: Option<Dn>,
    pub(crate) sip_uri: Option<SipUri>,
    pub(crate) swap: Option<String>,
    pub(crate) step: Option<Step>,
    pub(crate) message: Option<String>,
    pub(crate) counts: Option<Counts>,
    pub(crate) plan: Option<Plan>,
    pub(crate) changes: Option<Vec<Change>>,
    pub(crate) before: Option<Entry>,
    pub(crate) after: Option<Entry>,
}

impl Note {
    pub(crate) fn new(event: Event, outcome: Outcome) -> Note {
        Note {
            event,
            outcome,
            dn: None,
            sip_uri: None,
            swap: None,
            step: None,
            message: None,
            counts: None,
            plan: None,
            changes: None,
            before: None,
            after: None,
        }
    }

    pub(crate) fn dn(mut self, dn: &Dn) -> Note {
        self.dn = Some(dn.clone());
        self
    }

    pub(crate) fn sip_uri(mut self, uri: &SipUri) -> Note {
        self.sip_uri = Some(uri.clone());
        self
    }

    pub(crate) fn swap(mut self, swap: &str) -> Note {
        self.swap = Some(swap.to_string());
        self
    }

    pub(crate) fn step(mut self, step: Step) -> Note {
        self.step = Some(step);
        self
    }

    pub(crate) fn message(mut self, message: impl Into<String>) -> Note {
        self.message = Some(message.into());
        self
    }
}

/// Where records go. The file sink is [`AuditLog`]; tests use a `Vec`.
pub trait AuditSink {
    /// Appends one record durably (for a file: written and fsynced before this returns).
    fn record(&mut self, note: Note) -> Result<(), Error>;
}

/// Default `audit.max_segment_size`.
pub(crate) use crate::config::DEFAULT_MAX_SEGMENT_BYTES;

/// The append-only file: the active segment, rotated when it would pass the size limit.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// Bytes in the active segment, to decide rotation without a stat per record.
    size: u64,
    max_segment_bytes: u64,
    /// false only for the benchmark generator: skips `fsync`, never for real runs.
    durable: bool,
    run_id: String,
    actor: Actor,
    /// Hash of the last line, the `prev` of the next record.
    head: String,
    next_seq: u64,
    /// Where record times come from; the CLI passes `Utc::now` (library code reads no clock).
    clock: fn() -> DateTime<Utc>,
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the log at `path` for one run.
    ///
    /// Reads only the active segment (and the last line of the newest sealed one): its chain
    /// and sequence must be intact and its last line complete, or nothing is appended (a torn
    /// or edited tail is refused here; `pcsync audit verify` checks the whole log).
    pub fn open(
        path: &Path,
        run_id: &str,
        actor: Actor,
        clock: fn() -> DateTime<Utc>,
    ) -> Result<AuditLog, Error> {
        let shown = path.display().to_string();
        let open_err = |source| Error::Open {
            path: shown.clone(),
            source,
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            crate::private::create_dir(dir).map_err(open_err)?;
        }
        let (head, next_seq) = read::tail(path)?;
        let existed = path.exists();
        let file = open_active(path).map_err(open_err)?;
        if !existed {
            sync_dir(path).map_err(open_err)?;
        }
        let size = file.metadata().map_err(open_err)?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            size,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            durable: true,
            run_id: run_id.to_string(),
            actor,
            head,
            next_seq,
            clock,
        })
    }

    /// Sets the size past which the active segment is sealed (`audit.max_segment_size`).
    pub fn with_max_segment_size(mut self, bytes: u64) -> AuditLog {
        self.max_segment_bytes = bytes.max(1);
        self
    }

    /// Starts a new run on the open log (a long-running process keeps one log open).
    pub fn set_run(&mut self, run_id: &str) {
        self.run_id = run_id.to_string();
    }

    /// Benchmark data generation only (examples/audit_generate.rs): skip `fsync`, so a
    /// million records take seconds. Never for real runs.
    #[doc(hidden)]
    pub fn without_fsync(mut self) -> AuditLog {
        self.durable = false;
        self
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Seals the active segment (renamed to the next `audit.NNNNNN.jsonl`) and starts a new
    /// one. The rename is atomic, so after a crash either name holds the complete segment; a
    /// missing active segment is recreated by the next open.
    fn rotate(&mut self) -> Result<(), Error> {
        let shown = self.path.display().to_string();
        let sealed = segments::next_sealed(&self.path)?;
        if sealed.exists() {
            return Err(Error::Rotate {
                path: shown,
                reason: format!("{} already exists", sealed.display()),
            });
        }
        let write_err = |source| Error::Write {
            path: shown.clone(),
            source,
        };
        std::fs::rename(&self.path, &sealed).map_err(write_err)?;
        self.file = open_active(&self.path).map_err(write_err)?;
        sync_dir(&self.path).map_err(write_err)?;
        self.size = 0;
        tracing::info!(sealed = %sealed.display(), "audit log segment sealed");
        Ok(())
    }
}

/// Opens (creating 0600) the active segment for appending.
fn open_active(path: &Path) -> std::io::Result<File> {
    crate::private::file_options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// Makes a new or renamed file's directory entry durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all())
}

impl AuditSink for AuditLog {
    fn record(&mut self, note: Note) -> Result<(), Error> {
        let rec = Record {
            v: RECORD_FORMAT,
            run_id: self.run_id.clone(),
            seq: self.next_seq,
            time: (self.clock)().to_rfc3339_opts(SecondsFormat::Millis, true),
            event: note.event,
            outcome: note.outcome,
            actor: self.actor.clone(),
            dn: note.dn,
            sip_uri: note.sip_uri,
            swap: note.swap,
            step: note.step,
            message: note.message,
            counts: note.counts,
            plan: note.plan,
            changes: note.changes,
            before: note.before,
            after: note.after,
            prev: self.head.clone(),
        };
        let write_err = |source| Error::Write {
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| write_err(std::io::Error::other(e)))?;
        let hash = hex(&Sha256::digest(&line));
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_segment_bytes {
            self.rotate()?;
        }
        let write_err = |source| Error::Write {
            path: self.path.display().to_string(),
            source,
        };
        let written = self.file.write_all(&line).and_then(|()| {
            if self.durable {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A full disk or a file size limit can cut the line short. Cut the file back to the
            // last whole record (shrinking needs no space), so the log stays verifiable and the
            // next run appends to it without a repair. If even that fails, the next open
            // reports the torn line.
            let _ = self
                .file
                .set_len(self.size)
                .and_then(|()| self.file.sync_data());
            return Err(write_err(e));
        }
        self.size += line.len() as u64;
        self.head = hash;
        self.next_seq += 1;
        Ok(())
    }
}

/// In-memory sink for tests.
impl AuditSink for Vec<Note> {
    fn record(&mut self, note: Note) -> Result<(), Error> {
        self.push(note);
        Ok(())
    }
}

/// Reads and verifies the whole log (every segment) into memory. Prefer [`Reader`], which
/// streams; this is for small logs and tests.
pub fn read(path: &Path) -> Result<Vec<Record>, Error> {
    Reader::open(path)?.map(|r| r.map(|v| v.record)).collect()
}

/// A swap whose run ended (crashed) before `swap_done` or a completed rollback.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub swap: String,
    pub run_id: String,
    pub changes: Vec<Change>,
    /// The user's before-image, if it was recorded.
    pub before: Option<Entry>,
}

/// Swaps started but never finished, in log order.
pub fn unfinished_swaps<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<Unfinished> {
    let mut open = OpenSwaps::default();
    for r in records {
        open.observe(r);
    }
    open.finish()
}

/// The unfinished swaps of the log at `path`, streamed (and verified) with bounded memory.
pub(crate) fn unfinished_in(path: &Path) -> Result<Vec<Unfinished>, Error> {
    let mut open = OpenSwaps::default();
    for item in Reader::open(path)? {
        open.observe(&item?.record);
    }
    Ok(open.finish())
}

/// The records of run `run_id` and of its swaps (`<run_id>#n`, also when a later run
/// recovered them), streamed from the log at `path`; empty when the run is not in the log.
pub(crate) fn records_of_run(path: &Path, run_id: &str) -> Result<Vec<Record>, Error> {
    let prefix = format!("{run_id}#");
    let mut out = Vec::new();
    for item in Reader::open(path)? {
        let record = item?.record;
        if record.run_id == run_id
            || record
                .swap
                .as_deref()
                .is_some_and(|s| s.starts_with(&prefix))
        {
            out.push(record);
        }
    }
    Ok(out)
}

/// [`unfinished_swaps`] one record at a time, for a streamed log: keeps only the open swaps.
#[derive(Debug, Default)]
pub(crate) struct OpenSwaps {
    open: Vec<Unfinished>,
}

impl OpenSwaps {
    pub(crate) fn observe(&mut self, r: &Record) {
        let Some(swap) = &r.swap else { return };
        match r.event {
            Event::SwapIntent => self.open.push(Unfinished {
                swap: swap.clone(),
                run_id: r.run_id.clone(),
                changes: r.changes.clone().unwrap_or_default(),
                before: None,
            }),
            Event::BeforeImage => {
                if let Some(u) = self.open.iter_mut().find(|u| &u.swap == swap) {
                    u.before = r.before.clone();
                }
            }
            Event::SwapDone | Event::Rollback | Event::Recovery
                if r.outcome != Outcome::Started =>
            {
                self.open.retain(|u| &u.swap != swap);
            }
            _ => {}
        }
    }

    pub(crate) fn finish(self) -> Vec<Unfinished> {
        self.open
    }
}

/// Run ids are sortable and unique: UTC time to the millisecond plus a random suffix.
pub(crate) fn new_run_id(now: DateTime<Utc>, random: u32) -> String {
    format!("{}-{random:08x}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// The host name for the actor (`uname -n`).
pub(crate) fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
