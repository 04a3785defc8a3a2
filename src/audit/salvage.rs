//! Reading one run past damage elsewhere in the log: `restore --run R` and `audit show R` need
//! R's records (and those of later runs that recovered R's swaps), not the whole log intact.
//!
//! Every line is still checked, but a problem does not end the read: a record counts as intact
//! when it parses and the next record vouches for it (its `prev` is this line's SHA-256, its
//! `seq` the next number, and with a key its `mac` verifies); the last record is vouched for by
//! the anchor. Damage to one of R's records fails the read naming the line, and so do missing
//! records or an unreadable line right before R's first record (they could be R's own); a
//! gap right after R's last record is seen on that record itself. Damage elsewhere is
//! returned, so the caller names what it stepped over.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::anchor::Anchor;
use super::files::LogFiles;
use super::key::Signed;
use super::read::{self, Position};
use super::{Error, GENESIS, Record};
use crate::plan::hex;

/// A line that cannot be trusted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub at: Position,
    pub why: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.why)
    }
}

/// The records of one run, and the damage elsewhere that was stepped over.
#[derive(Debug, Default)]
pub(crate) struct RunRecords {
    pub records: Vec<Record>,
    pub stepped_over: Vec<Damage>,
}

/// Whether damage could hide records: an unreadable line, or records missing after a line.
/// Such damage right before a run's first record could be that run's own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A readable record nothing vouches for (edited, or its successor is damaged).
    Unvouched,
    /// An unreadable line, or a gap in `seq`.
    Hiding,
}

/// A line read, waiting for the next one to vouch for it.
struct Pending {
    index: usize,
    at: Position,
    record: Option<Record>,
    hash: String,
}

/// The records of run `run_id` and of its swaps (`<run_id>#n`), in log order, from the log
/// `files`; empty when the run is not in the log. Fails when damage touches them.
pub(crate) fn run_records(files: &LogFiles, run_id: &str) -> Result<RunRecords, Error> {
    let (segments, lines) = read::raw_lines(files.path())?;
    let prefix = format!("{run_id}#");
    let of_run = |r: &Record| {
        r.run_id == run_id || r.swap.as_deref().is_some_and(|s| s.starts_with(&prefix))
    };
    let mut damage: Vec<(usize, Kind, Damage)> = Vec::new();
    let mut found: Vec<(usize, Record)> = Vec::new();
    // Where the run's readable records are, vouched for or not: the run's own (one block,
    // as runs never interleave) and every line of it or of a later recovery of its swaps.
    let mut own: Option<(usize, usize)> = None;
    let mut members: Vec<usize> = Vec::new();
    let mut pending: Option<Pending> = None;
    for (index, raw) in lines.enumerate() {
        let raw = raw?;
        let at = position(&segments, raw.segment, raw.line);
        let record = match read::parse(&raw.bytes) {
            Ok(r) if raw.terminated => Some(r),
            Ok(_) => {
                let why = "torn last record (cut off mid-write)";
                damage.push((index, Kind::Hiding, damaged(&at, why)));
                None
            }
            Err(e) => {
                let why = format!("not a valid record: {e}");
                damage.push((index, Kind::Hiding, damaged(&at, &why)));
                None
            }
        };
        if let Some(r) = &record
            && pending.is_none()
            && (r.seq != 1 || r.prev != GENESIS)
        {
            let why = "records before it are missing (it does not start the chain)";
            damage.push((index, Kind::Hiding, damaged(&at, why)));
        }
        if let Some(r) = &record
            && of_run(r)
        {
            members.push(index);
            if r.run_id == run_id {
                own = Some((own.map_or(index, |(first, _)| first), index));
            }
        }
        if let Some(p) = pending.take() {
            settle(files, p, record.as_ref(), &mut damage, &mut found);
        }
        pending = Some(Pending {
            index,
            at,
            record,
            hash: hex(&Sha256::digest(&raw.bytes)),
        });
    }
    if let Some(p) = pending {
        settle_last(files, p, &mut damage, &mut found)?;
    }
    if members.is_empty() {
        return Ok(RunRecords {
            records: Vec::new(),
            stepped_over: damage.into_iter().map(|(_, _, d)| d).collect(),
        });
    }
    let touches = |i: usize, kind: Kind| {
        own.is_some_and(|(first, last)| (first..=last).contains(&i))
            || members.binary_search(&i).is_ok()
            || (kind == Kind::Hiding && members.binary_search(&(i + 1)).is_ok())
    };
    let (touching, elsewhere): (Vec<_>, Vec<_>) = damage
        .into_iter()
        .partition(|(i, kind, _)| touches(*i, *kind));
    if let Some((_, _, d)) = touching.into_iter().next() {
        return Err(Error::Damaged {
            run: run_id.to_string(),
            path: d.at.path.display().to_string(),
            line: d.at.line,
            why: d.why,
        });
    }
    Ok(RunRecords {
        records: found
            .into_iter()
            .filter(|(_, r)| of_run(r))
            .map(|(_, r)| r)
            .collect(),
        stepped_over: elsewhere.into_iter().map(|(_, _, d)| d).collect(),
    })
}

fn position(segments: &[PathBuf], segment: usize, line: usize) -> Position {
    Position {
        path: segments.get(segment).cloned().unwrap_or_default(),
        line,
    }
}

fn damaged(at: &Position, why: &str) -> Damage {
    Damage {
        at: at.clone(),
        why: why.to_string(),
    }
}

/// Decides whether `next` vouches for the pending line; keeps its record when it does.
fn settle(
    files: &LogFiles,
    p: Pending,
    next: Option<&Record>,
    damage: &mut Vec<(usize, Kind, Damage)>,
    found: &mut Vec<(usize, Record)>,
) {
    let Some(record) = p.record else { return };
    let why = match next {
        None => Some((
            Kind::Unvouched,
            "the line after it is damaged, so nothing vouches for it".to_string(),
        )),
        Some(n) if n.seq != record.seq + 1 => Some((
            Kind::Hiding,
            format!(
                "record(s) missing after it: the next record has seq {}",
                n.seq
            ),
        )),
        Some(n) if n.prev != p.hash => Some((
            Kind::Unvouched,
            "record edited: its SHA-256 does not match `prev` of the next record".to_string(),
        )),
        Some(n) => files.keys.as_ref().and_then(|keys| {
            keys.check(Signed::Record, n.seq, &n.prev, n.mac.as_deref())
                .err()
                .filter(|_| n.mac.is_some())
                .map(|e| (Kind::Unvouched, format!("the next record's {e}")))
        }),
    };
    match why {
        Some((kind, why)) => damage.push((p.index, kind, damaged(&p.at, &why))),
        None => found.push((p.index, record)),
    }
}

/// The last line: vouched for by the anchor of an anchored log (or by nothing else).
fn settle_last(
    files: &LogFiles,
    p: Pending,
    damage: &mut Vec<(usize, Kind, Damage)>,
    found: &mut Vec<(usize, Record)>,
) -> Result<(), Error> {
    let Some(record) = p.record else {
        return Ok(());
    };
    let anchor = match &files.anchor {
        Some(path) => Anchor::load(path)?,
        None => None,
    };
    let vouched = anchor.is_none_or(|a| {
        (a.seq == record.seq && a.head == p.hash)
            || (a.seq + 1 == record.seq && a.head == record.prev)
    });
    if vouched {
        found.push((p.index, record));
    } else {
        let why = "the last record is not the anchored one: the log's tail was rewritten";
        damage.push((p.index, Kind::Unvouched, damaged(&p.at, why)));
    }
    Ok(())
}
