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
use crate::util::hex;

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
    let mut scan = Scan {
        files,
        run_id,
        prefix: format!("{run_id}#"),
        damage: Vec::new(),
        found: Vec::new(),
        own: None,
        members: Vec::new(),
    };
    let mut pending: Option<Pending> = None;
    for (index, raw) in lines.enumerate() {
        let raw = raw?;
        let at = position(&segments, raw.segment, raw.line);
        let record = scan.read(index, &at, &raw.bytes, raw.terminated, pending.is_none());
        if let Some(p) = pending.take() {
            scan.settle(p, record.as_ref());
        }
        pending = Some(Pending {
            index,
            at,
            record,
            hash: hex(&Sha256::digest(&raw.bytes)),
        });
    }
    if let Some(p) = pending {
        scan.settle_last(p)?;
    }
    scan.finish()
}

/// What one pass over the log has seen so far.
struct Scan<'a> {
    files: &'a LogFiles,
    run_id: &'a str,
    /// `<run_id>#`: the swaps of the run, also when a later run recovered them.
    prefix: String,
    /// Lines that cannot be trusted: (index, kind, what and why).
    damage: Vec<(usize, Kind, Damage)>,
    /// Records vouched for, with their line index.
    found: Vec<(usize, Record)>,
    /// The run's own block of lines (runs never interleave), vouched for or not.
    own: Option<(usize, usize)>,
    /// Every line of the run or of a later recovery of its swaps, vouched for or not.
    members: Vec<usize>,
}

impl Scan<'_> {
    fn of_run(&self, r: &Record) -> bool {
        r.run_id == self.run_id
            || r.swap
                .as_deref()
                .is_some_and(|s| s.starts_with(&self.prefix))
    }

    /// Parses line `index` (damage when it cannot be read) and notes whether it is the run's.
    fn read(
        &mut self,
        index: usize,
        at: &Position,
        bytes: &[u8],
        terminated: bool,
        first: bool,
    ) -> Option<Record> {
        let record = match read::parse(bytes) {
            Ok(r) if terminated => r,
            Ok(_) => {
                let why = "torn last record (cut off mid-write)";
                self.damage.push((index, Kind::Hiding, damaged(at, why)));
                return None;
            }
            Err(e) => {
                let why = format!("not a valid record: {e}");
                self.damage.push((index, Kind::Hiding, damaged(at, &why)));
                return None;
            }
        };
        if first && (record.seq != 1 || record.prev != GENESIS) {
            let why = "records before it are missing (it does not start the chain)";
            self.damage.push((index, Kind::Hiding, damaged(at, why)));
        }
        if self.of_run(&record) {
            self.members.push(index);
            if record.run_id == self.run_id {
                self.own = Some((self.own.map_or(index, |(first, _)| first), index));
            }
        }
        Some(record)
    }

    /// The run's vouched records, unless damage touches them: damage on one of its lines, or
    /// damage that could hide records right before one of them.
    fn finish(self) -> Result<RunRecords, Error> {
        let Scan {
            damage,
            found,
            own,
            members,
            ..
        } = self;
        let touches = |i: usize, kind: Kind| {
            own.is_some_and(|(first, last)| (first..=last).contains(&i))
                || members.binary_search(&i).is_ok()
                || (kind == Kind::Hiding && members.binary_search(&(i + 1)).is_ok())
        };
        let (touching, elsewhere): (Vec<_>, Vec<_>) = damage
            .into_iter()
            .partition(|(i, kind, _)| !members.is_empty() && touches(*i, *kind));
        if let Some((_, _, d)) = touching.into_iter().next() {
            return Err(Error::Damaged {
                run: self.run_id.to_string(),
                path: d.at.path.display().to_string(),
                line: d.at.line,
                why: d.why,
            });
        }
        let members: std::collections::BTreeSet<usize> = members.into_iter().collect();
        Ok(RunRecords {
            records: found
                .into_iter()
                .filter(|(i, _)| members.contains(i))
                .map(|(_, r)| r)
                .collect(),
            stepped_over: elsewhere.into_iter().map(|(_, _, d)| d).collect(),
        })
    }
    /// Decides whether `next` vouches for the pending line; keeps its record when it does.
    fn settle(&mut self, p: Pending, next: Option<&Record>) {
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
            Some(n) => self.files.keys.as_ref().and_then(|keys| {
                keys.check(Signed::Record, n.seq, &n.prev, n.mac.as_deref())
                    .err()
                    .filter(|_| n.mac.is_some())
                    .map(|e| (Kind::Unvouched, format!("the next record's {e}")))
            }),
        };
        match why {
            Some((kind, why)) => self.damage.push((p.index, kind, damaged(&p.at, &why))),
            None => self.found.push((p.index, record)),
        }
    }

    /// The last line: vouched for by the anchor of an anchored log (or by nothing else).
    fn settle_last(&mut self, p: Pending) -> Result<(), Error> {
        let Some(record) = p.record else {
            return Ok(());
        };
        let anchor = match &self.files.anchor {
            Some(path) => Anchor::load(path)?,
            None => None,
        };
        let vouched = anchor.is_none_or(|a| {
            (a.seq == record.seq && a.head == p.hash)
                || (a.seq + 1 == record.seq && a.head == record.prev)
        });
        if vouched {
            self.found.push((p.index, record));
        } else {
            let why = "the last record is not the anchored one: the log's tail was rewritten";
            self.damage
                .push((p.index, Kind::Unvouched, damaged(&p.at, why)));
        }
        Ok(())
    }
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
