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
//!
//! What protects the log beyond its chain lives in sibling modules: [`anchor`] (the head and
//! the open-swap index in `state.dir`, so a deleted, cut or rewritten log is refused), [`key`]
//! (the optional keyed chain), [`redact`] (no secret attribute is ever written), [`salvage`]
//! (reading one run past damage elsewhere); [`files`] names a log and its protection.
pub(crate) mod anchor;
mod cursor;
mod files;
pub(crate) mod key;
pub(crate) mod ldif;
mod read;
pub(crate) mod redact;
pub(crate) mod review;
pub(crate) mod salvage;
pub(crate) mod segments;
#[cfg(test)]
mod tests;
pub use anchor::AnchorBreak;
pub(crate) use cursor::Cursor;
#[cfg(test)]
pub(crate) use cursor::CursorError;
pub use files::LogFiles;
pub(crate) use read::{Reader, Summary, Verified, repair_torn, verify};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::key::{Keyring, Signed};
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
    /// The log does not end where its anchor in `state.dir` says: nothing is appended to it.
    #[error(
        "audit log {path} does not end where its anchor {anchor} says: {why}; nothing is written \
         until it is reviewed and accepted with `pcsync audit verify --reanchor`"
    )]
    Anchor {
        path: String,
        anchor: String,
        why: AnchorBreak,
    },
    /// The anchor file cannot be read or written.
    #[error("audit anchor {path}: {reason}")]
    AnchorFile { path: String, reason: String },
    /// Damage in the log touches the records of a run that is being read on its own.
    #[error(
        "run {run} cannot be read safely: {path} line {line}: {why}; run `pcsync audit verify`"
    )]
    Damaged {
        run: String,
        path: String,
        line: usize,
        why: String,
    },
    /// The key file of a keyed chain cannot be used.
    #[error("audit key file {path}: {reason}")]
    Key { path: String, reason: String },
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
    /// The keyed chain's `mac` is missing, made with an unknown key, or does not match.
    Mac(String),
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
            Break::Mac(why) => write!(f, "{why}"),
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
    /// Clear an endpoint's SIP address before its user comes back (restore).
    ReleaseEndpoint,
    /// Give a released endpoint its SIP address back: its user could not come back (restore).
    ServeEndpoint,
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
    /// With a keyed chain (`[audit] key_file`): `<key id>:<HMAC-SHA-256>` of `seq` and `prev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
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

/// The append-only file: the active segment, rotated when it would pass the size limit, and
/// (anchored) the anchor rewritten after every record.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The anchor file; `None` for an unanchored log.
    anchor: Option<PathBuf>,
    /// Swaps started and not ended, kept in the anchor (only for an anchored log).
    open: OpenSwaps,
    /// Sealed segments, for the anchor.
    sealed: u64,
    keys: Option<Arc<Keyring>>,
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
    /// Where record times come from; the edges pass `clock::system` (library code reads no clock).
    clock: fn() -> DateTime<Utc>,
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the log `files` for one run.
    ///
    /// Anchored, it reads only the anchor and the log's last line, and refuses a log that does
    /// not end at the anchored head ([`Error::Anchor`]) or whose last line is torn; a log with
    /// no anchor yet is verified in full once and its head adopted (with a warning). Unanchored,
    /// it reads the active segment (and the last line of the newest sealed one): its chain and
    /// sequence must be intact and its last line complete. Nothing is appended otherwise.
    pub fn open(
        files: &LogFiles,
        run_id: &str,
        actor: Actor,
        clock: fn() -> DateTime<Utc>,
    ) -> Result<AuditLog, Error> {
        let path = files.path();
        let shown = path.display().to_string();
        let open_err = |source| Error::Open {
            path: shown.clone(),
            source,
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            crate::private::create_dir(dir).map_err(open_err)?;
        }
        let head = match &files.anchor {
            Some(anchor_path) => anchor::head(files, anchor_path)?,
            None => {
                let (hash, next_seq) = read::tail(path)?;
                anchor::Head {
                    seq: next_seq - 1,
                    hash,
                    sealed: segments::sealed(path)?.len() as u64,
                    open: OpenSwaps::default(),
                    stale: false,
                    adopted: false,
                }
            }
        };
        let existed = path.exists();
        let file = open_active(path).map_err(open_err)?;
        if !existed {
            sync_dir(path).map_err(open_err)?;
        }
        let size = file.metadata().map_err(open_err)?.len();
        let log = AuditLog {
            path: path.to_path_buf(),
            file,
            anchor: files.anchor.clone(),
            open: head.open,
            sealed: head.sealed,
            keys: files.keys.clone(),
            size,
            max_segment_bytes: files.max_segment_bytes,
            durable: true,
            run_id: run_id.to_string(),
            actor,
            head: head.hash,
            next_seq: head.seq + 1,
            clock,
        };
        if head.stale {
            log.save_anchor()?;
        }
        if head.adopted
            && let Some(anchor) = &log.anchor
        {
            tracing::warn!(
                "audit log {shown} had no anchor: its {} record(s) verify, and its head (seq {}, {}) is now anchored in {}; from now on a run refuses a log that does not end there",
                head.seq,
                head.seq,
                log.head,
                anchor.display()
            );
        }
        Ok(log)
    }

    /// Writes the anchor for the current head and open swaps (an anchored log only).
    fn save_anchor(&self) -> Result<(), Error> {
        let Some(path) = &self.anchor else {
            return Ok(());
        };
        let anchor = anchor::Anchor::new(
            &self.path,
            (self.next_seq - 1, &self.head, self.sealed),
            self.open.open.clone(),
            self.keys.as_deref(),
        );
        anchor.save(path)
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
        self.sealed += 1;
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
    fn record(&mut self, mut note: Note) -> Result<(), Error> {
        // Secrets never reach the file, whoever built the note.
        for image in [&mut note.before, &mut note.after].into_iter().flatten() {
            redact::entry(image);
        }
        let mac = self
            .keys
            .as_ref()
            .map(|k| k.sign(Signed::Record, self.next_seq, &self.head));
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
            mac,
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
        if self.anchor.is_some() {
            // The record is durable; a crash before the anchor's rename leaves the log one
            // record ahead of it, which the next open accepts.
            self.open.observe(&rec);
            self.save_anchor()?;
        }
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unfinished {
    pub swap: String,
    pub run_id: String,
    pub changes: Vec<Change>,
    /// The user's before-image, if it was recorded.
    pub before: Option<Entry>,
    /// The last other run that wrote a step of this swap: a `pcsync restore` that undid it.
    /// Recovery names it instead of concluding that nothing had been written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<String>,
}

/// Swaps started but never finished, in log order.
pub fn unfinished_swaps<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<Unfinished> {
    let mut open = OpenSwaps::default();
    for r in records {
        open.observe(r);
    }
    open.finish()
}

/// The swaps a crashed run left unfinished in the log `files`, for recovery. Anchored, they
/// come from the anchor's index after the log's last line was checked against it (the anchor
/// and one line are read, whatever the log's size); a log with no anchor yet, or an unanchored
/// one, is read in full. Fails like [`AuditLog::open`] on a log that cannot be trusted.
pub(crate) fn open_swaps(files: &LogFiles) -> Result<Vec<Unfinished>, Error> {
    match &files.anchor {
        Some(anchor_path) => Ok(anchor::head(files, anchor_path)?.open.finish()),
        None => unfinished_in(files.path()),
    }
}

/// The unfinished swaps of the log at `path`, streamed (and verified) with bounded memory.
fn unfinished_in(path: &Path) -> Result<Vec<Unfinished>, Error> {
    let mut open = OpenSwaps::default();
    for item in Reader::open(path)? {
        open.observe(&item?.record);
    }
    Ok(open.finish())
}

/// [`unfinished_swaps`] one record at a time, for a streamed log: keeps only the open swaps.
#[derive(Debug, Default)]
pub(crate) struct OpenSwaps {
    pub(crate) open: Vec<Unfinished>,
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
                undone_by: None,
            }),
            Event::BeforeImage => {
                if let Some(u) = self.open.iter_mut().find(|u| &u.swap == swap) {
                    u.before = r.before.clone();
                }
            }
            // A step of this swap written by another run: a restore undoing it.
            Event::Step if r.outcome == Outcome::Ok => {
                if let Some(u) = self
                    .open
                    .iter_mut()
                    .find(|u| &u.swap == swap && u.run_id != r.run_id)
                {
                    u.undone_by = Some(r.run_id.clone());
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
