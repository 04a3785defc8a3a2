//! The audit log: append-only, hash-chained JSON Lines, one [`Record`] per event.
//!
//! Owns `audit.path`. Every record is written with one `write_all` and `fsync`ed before the
//! directory write it describes, so after a crash the log always knows at least as much as the
//! directory. Each record carries `prev`, the SHA-256 (hex) of the previous record's exact line
//! bytes (without the newline); the first record of a log has 64 zeros. Editing, deleting or
//! reordering any record breaks the chain, which [`read`] detects. Fields serialise in
//! declaration order, which is the canonical order; the format is versioned (`v`) and described
//! by schemas/audit-record.schema.json. Passwords are never recorded: the actor is the bind DN
//! and the host name. Diagnostics go to tracing, never here.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Entry;
use crate::plan::{Change, Plan, hex};

/// Version of the record format.
pub const RECORD_FORMAT: u32 = 1;
/// `prev` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// A line is not a valid record.
    #[error("audit log {path} line {line}: not a valid record: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
    /// The hash chain is broken: a record was edited, removed or reordered.
    #[error(
        "audit log {path} line {line}: hash chain broken (record edited, removed or reordered)"
    )]
    Chain { path: String, line: usize },
    /// The last record was cut off mid-write; pcsync will not chain onto a torn record.
    #[error("audit log {path} ends in a partial record; inspect and repair it before writing")]
    Torn { path: String },
}

/// Who acted: never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The bind DN, or null for an anonymous bind.
    pub bind_dn: Option<String>,
    pub host: String,
}

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Counts in `run_start` / `run_end`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub planned: usize,
    pub applied: usize,
    pub failed: usize,
    pub rolled_back: usize,
    pub waiting: usize,
    pub findings: usize,
}

/// One line of the audit log. Field order is the canonical serialisation order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub run_id: String,
    pub seq: u64,
    pub time: String,
    pub event: Event,
    pub outcome: Outcome,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_uri: Option<String>,
    /// Identifies one swap across runs: `<run_id>#<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
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

/// The parts of a record the caller chooses; [`AuditLog::append`] fills in the rest.
#[derive(Debug, Clone)]
pub struct Note {
    pub event: Event,
    pub outcome: Outcome,
    pub dn: Option<String>,
    pub sip_uri: Option<String>,
    pub swap: Option<String>,
    pub step: Option<Step>,
    pub message: Option<String>,
    pub counts: Option<Counts>,
    pub plan: Option<Plan>,
    pub changes: Option<Vec<Change>>,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

impl Note {
    pub fn new(event: Event, outcome: Outcome) -> Note {
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

    pub fn dn(mut self, dn: &str) -> Note {
        self.dn = Some(dn.to_string());
        self
    }

    pub fn sip_uri(mut self, uri: &str) -> Note {
        self.sip_uri = Some(uri.to_string());
        self
    }

    pub fn swap(mut self, swap: &str) -> Note {
        self.swap = Some(swap.to_string());
        self
    }

    pub fn step(mut self, step: Step) -> Note {
        self.step = Some(step);
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Note {
        self.message = Some(message.into());
        self
    }
}

/// Where records go. The file sink is [`AuditLog`]; tests use a `Vec`.
pub trait AuditSink {
    /// Appends one record durably (for a file: written and fsynced before this returns).
    fn record(&mut self, note: Note) -> Result<(), Error>;
}

/// The append-only file.
pub struct AuditLog {
    path: PathBuf,
    file: File,
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
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(open_err)?;
        if !existed && let Some(dir) = parent {
            // Make the new file's directory entry durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(open_err)?;
        }
        let (head, next_seq) = match last_line(&mut file).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })? {
            None => (GENESIS.to_string(), 1),
            Some(LastLine::Torn) => return Err(Error::Torn { path: shown }),
            Some(LastLine::Complete(line)) => {
                let rec: Record = serde_json::from_slice(&line).map_err(|e| Error::Malformed {
                    path: shown.clone(),
                    line: 0,
                    reason: e.to_string(),
                })?;
                (hex(&Sha256::digest(&line)), rec.seq + 1)
            }
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            run_id: run_id.to_string(),
            actor,
            head,
            next_seq,
            clock,
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
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
        self.file.write_all(&line).map_err(write_err)?;
        self.file.sync_data().map_err(write_err)?;
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

enum LastLine {
    Complete(Vec<u8>),
    Torn,
}

/// The last line of the file (without its newline), reading backwards from the end.
fn last_line(file: &mut File) -> std::io::Result<Option<LastLine>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        return Ok(Some(LastLine::Torn));
    }
    // Grow a window backwards until it holds the newline before the last line.
    let end = len - 1;
    let mut window: u64 = 4096;
    loop {
        let start = end.saturating_sub(window);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(pos) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(LastLine::Complete(buf[pos + 1..].to_vec())));
        }
        if start == 0 {
            return Ok(Some(LastLine::Complete(buf)));
        }
        window *= 4;
    }
}

/// Reads and verifies the whole log: every line parses and the hash chain is intact.
pub fn read(path: &Path) -> Result<Vec<Record>, Error> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: shown,
                source,
            });
        }
    };
    if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
        return Err(Error::Torn { path: shown });
    }
    let mut prev = GENESIS.to_string();
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_slice(line).map_err(|e| Error::Malformed {
            path: shown.clone(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        if rec.prev != prev {
            return Err(Error::Chain {
                path: shown,
                line: i + 1,
            });
        }
        prev = hex(&Sha256::digest(line));
        out.push(rec);
    }
    Ok(out)
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
pub fn unfinished_swaps(records: &[Record]) -> Vec<Unfinished> {
    let mut open: Vec<Unfinished> = Vec::new();
    for r in records {
        let Some(swap) = &r.swap else { continue };
        match r.event {
            Event::SwapIntent => open.push(Unfinished {
                swap: swap.clone(),
                run_id: r.run_id.clone(),
                changes: r.changes.clone().unwrap_or_default(),
                before: None,
            }),
            Event::BeforeImage => {
                if let Some(u) = open.iter_mut().find(|u| &u.swap == swap) {
                    u.before = r.before.clone();
                }
            }
            Event::SwapDone | Event::Rollback | Event::Recovery
                if r.outcome != Outcome::Started =>
            {
                open.retain(|u| &u.swap != swap);
            }
            _ => {}
        }
    }
    open
}

/// Run ids are sortable and unique: UTC time to the millisecond plus a random suffix.
pub fn new_run_id(now: DateTime<Utc>, random: u32) -> String {
    format!("{}-{random:08x}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// The host name for the actor (`uname -n`).
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests;
