//! The anchor: `state.dir/audit-anchor.json` records where the log ended after every append
//! (the last record's `seq` and SHA-256, how many segments were sealed), and the open-swap
//! index (swaps started and not yet ended, with their changes and before-images).
//!
//! A hash chain proves that what is there was not changed, but not that nothing is missing at
//! the end: a deleted log, a deleted active segment, a cut tail or a rewritten last record all
//! leave a valid chain. The anchor is kept apart from the log and replaced atomically
//! ([`crate::private::write_atomic`]) after each record is fsynced, so on opening the log a
//! writer compares its last line with the anchor and refuses to append to a log that does not
//! end there ([`AnchorBreak`]). It reads only that last line, and the open swaps come from the
//! index: no run reads the whole log any more.
//!
//! A crash between a record's fsync and the anchor's rename leaves the log exactly one record
//! ahead, chained to the anchored head: that is accepted (and the record folded into the
//! index). Without a key, a log with no anchor yet (the first run of this version, or a new
//! `state.dir`) is verified in full once and its head adopted, with a warning; with a key the
//! anchor must carry a valid MAC, so a missing or unsigned anchor needs `pcsync audit verify
//! --reanchor` after review, like any deliberate change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::LogFiles;
use super::key::{Keyring, Signed};
use super::read::{self, Reader};
use super::{Error, GENESIS, OpenSwaps, Unfinished, segments};

/// Version of the anchor file.
const ANCHOR_FORMAT: u32 = 1;

/// The contents of the anchor file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Anchor {
    pub format: u32,
    /// The log it anchors (the active segment, as an absolute path).
    pub log: PathBuf,
    /// Sealed segments when the head was written.
    pub sealed: u64,
    /// `seq` of the last record; 0 for an empty log.
    pub seq: u64,
    /// SHA-256 of the last record's line; the genesis hash for an empty log.
    pub head: String,
    /// With a keyed chain: the MAC of `(seq, head)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Swaps started and not ended, in log order.
    pub open_swaps: Vec<Unfinished>,
}

/// Why a log does not end at its anchored head: the reason part of [`Error::Anchor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorBreak {
    /// The anchor is for another log file.
    OtherLog(PathBuf),
    /// No segment of the log is left.
    LogMissing { anchored: u64 },
    /// The active segment is gone; what is left ends at `last`.
    ActiveMissing { last: u64, anchored: u64 },
    /// The log ends at `last`, before the anchored record.
    Truncated { last: u64, anchored: u64 },
    /// The log's last record has the anchored `seq` but not the anchored hash.
    Rewritten { anchored: u64 },
    /// The log goes on to `last` past the anchored record.
    Extended { last: u64, anchored: u64 },
    /// The anchor's MAC does not verify, or (keyed) it has none.
    Mac(String),
    /// No anchor, and a keyed log is not adopted unreviewed.
    Unanchored,
}

impl std::fmt::Display for AnchorBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorBreak::OtherLog(log) => write!(f, "it anchors the log {}", log.display()),
            AnchorBreak::LogMissing { anchored } => write!(
                f,
                "the log is gone (deleted or moved), though it held records up to seq {anchored}"
            ),
            AnchorBreak::ActiveMissing { last, anchored } => write!(
                f,
                "the active segment is gone: the sealed segments end at seq {last}, the anchor at seq {anchored}"
            ),
            AnchorBreak::Truncated { last, anchored } => write!(
                f,
                "the log ends at seq {last}, the anchor at seq {anchored}: its last records were cut"
            ),
            AnchorBreak::Rewritten { anchored } => write!(
                f,
                "record {anchored} is not the one anchored: the log's tail was rewritten"
            ),
            AnchorBreak::Extended { last, anchored } => write!(
                f,
                "the log goes on to seq {last} past the anchored seq {anchored}: records were added, or the tail rewritten, by something other than this pcsync"
            ),
            AnchorBreak::Mac(why) => write!(f, "the anchor's {why}"),
            AnchorBreak::Unanchored => write!(
                f,
                "there is no anchor, and with [audit] key_file set a log is not adopted unreviewed"
            ),
        }
    }
}

/// Where an anchored log ends, checked against its anchor: what a writer continues from.
#[derive(Debug)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: String,
    pub sealed: u64,
    pub open: OpenSwaps,
    /// The anchor needs writing now: adopted, or one record behind after a crash.
    pub stale: bool,
    /// There was no anchor: this head is the verified log's, adopted.
    pub adopted: bool,
}

impl Anchor {
    /// The anchor at `path`, or `None` when there is none yet.
    pub(crate) fn load(path: &Path) -> Result<Option<Anchor>, Error> {
        let file_err = |reason: String| Error::AnchorFile {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            // A state.dir that is not a directory holds no anchor either; writing to it fails
            // later, naming it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(file_err(e.to_string())),
        };
        let anchor: Anchor = serde_json::from_slice(&text)
            .map_err(|e| file_err(format!("not an audit anchor: {e}")))?;
        if anchor.format != ANCHOR_FORMAT {
            return Err(file_err(format!(
                "format {} (this pcsync reads {ANCHOR_FORMAT})",
                anchor.format
            )));
        }
        Ok(Some(anchor))
    }

    /// The anchor for the log at `log` ending at record `seq` whose line hashes to `head`,
    /// signed with `keys`.
    pub(crate) fn new(
        log: &Path,
        (seq, head, sealed): (u64, &str, u64),
        open_swaps: Vec<Unfinished>,
        keys: Option<&Keyring>,
    ) -> Anchor {
        Anchor {
            format: ANCHOR_FORMAT,
            log: absolute(log),
            sealed,
            seq,
            head: head.to_string(),
            mac: keys.map(|k| k.sign(Signed::Anchor, seq, head)),
            open_swaps,
        }
    }

    /// Replaces the anchor file atomically (creating `state.dir` if needed).
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let file_err = |e: std::io::Error| Error::AnchorFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private::create_dir(dir).map_err(file_err)?;
        }
        let mut text = serde_json::to_vec(self).map_err(|e| file_err(std::io::Error::other(e)))?;
        text.push(b'\n');
        crate::private::write_atomic(path, &text).map_err(file_err)
    }
}

/// An absolute form of `path` (not resolving links), so a relative `audit.path` names the same
/// log from any working directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Where the anchored log `files` ends, or why it cannot be trusted to continue. Reads the
/// anchor and the log's last line only; a log without an anchor is verified in full and its
/// head adopted (`stale`; the caller writes the anchor). Never writes.
pub(crate) fn head(files: &LogFiles, anchor_path: &Path) -> Result<Head, Error> {
    match Anchor::load(anchor_path)? {
        Some(anchor) => check(files, anchor_path, anchor),
        None => adopt(files, anchor_path),
    }
}

/// The error for the log `files` that does not end where the anchor at `anchor_path` says.
fn broken(files: &LogFiles, anchor_path: &Path, why: AnchorBreak) -> Error {
    Error::Anchor {
        path: files.path().display().to_string(),
        anchor: anchor_path.display().to_string(),
        why,
    }
}

/// Compares the log's last line with `anchor`.
fn check(files: &LogFiles, anchor_path: &Path, anchor: Anchor) -> Result<Head, Error> {
    let broken = |why| broken(files, anchor_path, why);
    let anchored = anchor.seq;
    if anchor.log != absolute(files.path()) {
        return Err(broken(AnchorBreak::OtherLog(anchor.log.clone())));
    }
    if let Some(keys) = &files.keys {
        keys.check(
            Signed::Anchor,
            anchor.seq,
            &anchor.head,
            anchor.mac.as_deref(),
        )
        .map_err(|e| broken(AnchorBreak::Mac(e.to_string())))?;
    }
    let sealed = segments::sealed(files.path())?.len() as u64;
    let last = read::last_record(files.path())?;
    let (seq, hash) = match &last {
        Some(l) => (l.record.seq, l.hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    let mut head = Head {
        seq,
        hash,
        sealed,
        open: OpenSwaps {
            open: anchor.open_swaps.clone(),
        },
        stale: false,
        adopted: false,
    };
    if seq == anchor.seq && head.hash == anchor.head {
        return Ok(head);
    }
    match last {
        // A crash between the record's fsync and the anchor's rename: one record more,
        // chained to the anchored head.
        Some(l) if seq == anchor.seq + 1 && l.record.prev == anchor.head => {
            if let Some(keys) = &files.keys {
                keys.check(Signed::Record, seq, &l.record.prev, l.record.mac.as_deref())
                    .map_err(|e| broken(AnchorBreak::Mac(format!("next record's {e}"))))?;
            }
            head.open.observe(&l.record);
            head.stale = true;
            Ok(head)
        }
        None => Err(broken(AnchorBreak::LogMissing { anchored })),
        Some(_) if seq < anchored && !files.path().exists() => {
            Err(broken(AnchorBreak::ActiveMissing {
                last: seq,
                anchored,
            }))
        }
        Some(_) if seq < anchored => Err(broken(AnchorBreak::Truncated {
            last: seq,
            anchored,
        })),
        Some(_) if seq == anchored => Err(broken(AnchorBreak::Rewritten { anchored })),
        Some(_) => Err(broken(AnchorBreak::Extended {
            last: seq,
            anchored,
        })),
    }
}

/// No anchor yet: the whole log is verified (keyed if a key is set), its open swaps collected,
/// and its head adopted. With a key, a non-empty log is not adopted silently: nothing could
/// tell a reviewed log from one rewritten and stripped of its anchor.
fn adopt(files: &LogFiles, anchor_path: &Path) -> Result<Head, Error> {
    let head = scan(files)?;
    if head.adopted && files.keys.is_some() {
        return Err(broken(files, anchor_path, AnchorBreak::Unanchored));
    }
    Ok(head)
}

/// The whole log verified (keyed if a key is set): where it ends and its open swaps, as a head
/// to adopt (`adopted` and `stale` when it has records).
fn scan(files: &LogFiles) -> Result<Head, Error> {
    let mut reader = Reader::open(files.path())?;
    if let Some(keys) = &files.keys {
        reader = reader.with_keys(keys.clone());
    }
    let mut open = OpenSwaps::default();
    let mut seq = 0;
    for item in reader.by_ref() {
        let v = item?;
        seq = v.record.seq;
        open.observe(&v.record);
    }
    Ok(Head {
        seq,
        hash: reader.head().to_string(),
        sealed: segments::sealed(files.path())?.len() as u64,
        open,
        stale: seq > 0,
        adopted: seq > 0,
    })
}

/// How a verified log stands with its anchor, for `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The log ends at the anchored head.
    Anchored { seq: u64 },
    /// One record past it: a run was interrupted between a record and its anchor.
    OneAhead { seq: u64 },
    /// No anchor yet.
    NoAnchor,
    /// The log is not anchored here (a copy read with `--log`).
    NotChecked,
}

/// Checks the log `files` against its anchor (reading the anchor and the last line); a log
/// that does not end there is [`Error::Anchor`].
pub(crate) fn standing(files: &LogFiles) -> Result<Standing, Error> {
    let Some(anchor_path) = &files.anchor else {
        return Ok(Standing::NotChecked);
    };
    let Some(anchor) = Anchor::load(anchor_path)? else {
        return Ok(Standing::NoAnchor);
    };
    let seq = anchor.seq;
    let head = check(files, anchor_path, anchor)?;
    Ok(if head.stale {
        Standing::OneAhead { seq }
    } else {
        Standing::Anchored { seq }
    })
}

/// The anchor replaced by `reanchor`, and the new one.
#[derive(Debug)]
pub(crate) struct Reanchored {
    pub previous: Option<Anchor>,
    pub now: Anchor,
}

/// Accepts the log `files` as it is now: verifies it in full (keyed if a key is set), rebuilds
/// the open-swap index from it and writes a new anchor at its head. For a deliberate change
/// after review (a restored backup, a moved log, a newly set key); the caller holds the run lock.
pub(crate) fn reanchor(files: &LogFiles) -> Result<Reanchored, Error> {
    let anchor_path = files.anchor.as_deref().ok_or_else(|| Error::AnchorFile {
        path: files.path().display().to_string(),
        reason: "this log is not anchored in a state.dir".to_string(),
    })?;
    let previous = Anchor::load(anchor_path).ok().flatten();
    let head = scan(files)?;
    let now = Anchor::new(
        files.path(),
        (head.seq, &head.hash, head.sealed),
        head.open.finish(),
        files.keys.as_deref(),
    );
    now.save(anchor_path)?;
    Ok(Reanchored { previous, now })
}
