//! Streaming reads of the whole log: every segment, line by line, every record verified.
//!
//! [`Reader`] holds one line (and its parsed record) at a time, so memory stays flat however
//! long the log is. Each record is checked as it is read: shape (JSON, fields, `v`, `time`,
//! `prev`), `seq` (one more than the last, across segments) and `prev` (the SHA-256 of the
//! previous line). The first problem ends the stream with an [`Error::Broken`] naming the file,
//! the line and why (edited, deleted, reordered, inserted, wrong shape), or [`Error::Torn`] for
//! a last line a crash cut off. [`repair_torn`] moves only such a torn line aside.
//!
//! Reading while pcsync writes is safe: the active segment is opened before the sealed ones
//! are listed (a rotation in between is recognised by inode), and a last line that is still
//! growing ends the read instead of being called torn; a reader sees a consistent prefix.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::key::{Keyring, Signed};
use super::{Break, Error, GENESIS, RECORD_FORMAT, Record, segments};
use crate::util::hex;

/// Where a line is: its segment file and 1-based line number in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub path: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.path.display(), self.line)
    }
}

/// One verified record with its exact line (without the newline).
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub record: Record,
    pub line: Vec<u8>,
}

/// One raw line of a segment.
pub(super) struct RawLine {
    /// Index into the segment list.
    pub segment: usize,
    pub line: usize,
    pub bytes: Vec<u8>,
    /// False for a last line without its newline.
    pub terminated: bool,
}

/// Raw lines of every segment, in order.
pub(super) struct Lines {
    segments: Vec<PathBuf>,
    /// The active segment, opened before the sealed ones were listed: a rotation while we
    /// read renames it, and this handle still reads it whole.
    active: Option<File>,
    current: Option<Current>,
    next_segment: usize,
}

/// The segment being read.
struct Current {
    segment: usize,
    reader: BufReader<File>,
    line: usize,
    /// Bytes read so far.
    offset: u64,
}

impl Lines {
    fn new(segments: Vec<PathBuf>, active: Option<File>) -> Lines {
        Lines {
            segments,
            active,
            current: None,
            next_segment: 0,
        }
    }
}

impl Iterator for Lines {
    type Item = Result<RawLine, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let i = self.next_segment;
                let path = self.segments.get(i)?;
                self.next_segment += 1;
                let last = i + 1 == self.segments.len();
                let file = match (last, self.active.take()) {
                    (true, Some(f)) => Ok(f),
                    (false, Some(f)) => {
                        self.active = Some(f);
                        File::open(path)
                    }
                    (_, None) => File::open(path),
                };
                match file {
                    Ok(f) => {
                        self.current = Some(Current {
                            segment: i,
                            reader: BufReader::with_capacity(1 << 16, f),
                            line: 0,
                            offset: 0,
                        })
                    }
                    // Removed since it was listed: the sequence check reports the gap.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Some(Err(Error::Read {
                            path: path.display().to_string(),
                            source,
                        }));
                    }
                }
            }
            let last = self.next_segment == self.segments.len();
            let cur = self.current.as_mut()?;
            let mut bytes = Vec::with_capacity(512);
            match cur.reader.read_until(b'\n', &mut bytes) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(n) => {
                    cur.line += 1;
                    cur.offset += n as u64;
                    let terminated = bytes.last() == Some(&b'\n');
                    if terminated {
                        bytes.pop();
                    } else if last
                        && cur
                            .reader
                            .get_ref()
                            .metadata()
                            .is_ok_and(|m| m.len() > cur.offset)
                    {
                        // A writer is appending this very line: the file grew past it, so it
                        // is not torn. The read ends here (a consistent prefix of the log).
                        self.current = None;
                        return None;
                    }
                    return Some(Ok(RawLine {
                        segment: cur.segment,
                        line: cur.line,
                        bytes,
                        terminated,
                    }));
                }
                Err(source) => {
                    let path = self.segments[cur.segment].display().to_string();
                    self.current = None;
                    return Some(Err(Error::Read { path, source }));
                }
            }
        }
    }
}

/// Verified records of the whole log, streamed. Ends after the first error.
pub(crate) struct Reader {
    /// The segments being read, in order (the line reader holds its own copy).
    segments: Vec<PathBuf>,
    lines: std::iter::Peekable<Lines>,
    prev: String,
    next_seq: u64,
    last: Option<Position>,
    done: bool,
    /// The keyed chain's keys: each record's `mac` is checked from the first record that has
    /// one (records written before the key was set have none).
    keys: Option<Arc<Keyring>>,
    /// Records read so far that carry a `mac` (checked when `keys` is set).
    macs: u64,
}

/// What a complete verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub records: u64,
    pub segments: usize,
    /// SHA-256 of the last line (the genesis hash for an empty log).
    pub head: String,
    /// `seq` the next record will get.
    pub next_seq: u64,
    /// Records that carry a `mac` (a keyed chain); checked when the reader had the key.
    pub macs: u64,
}

impl Reader {
    /// Every segment of the log at `path` (the active segment's path; see [`segment_list`]).
    /// A missing log is empty.
    pub(crate) fn open(path: &Path) -> Result<Reader, Error> {
        let (segments, active) = segment_list(path)?;
        Ok(Reader::over(segments, active, GENESIS.to_string(), 1))
    }

    fn over(segments: Vec<PathBuf>, active: Option<File>, prev: String, next_seq: u64) -> Reader {
        Reader {
            lines: Lines::new(segments.clone(), active).peekable(),
            segments,
            prev,
            next_seq,
            last: None,
            done: false,
            keys: None,
            macs: 0,
        }
    }

    /// Checks the keyed chain with `keys` as well.
    pub(crate) fn with_keys(mut self, keys: Arc<Keyring>) -> Reader {
        self.keys = Some(keys);
        self
    }

    /// Records read so far that carry a `mac`.
    pub(crate) fn macs(&self) -> u64 {
        self.macs
    }

    fn segment_path(&self, i: usize) -> PathBuf {
        self.segments.get(i).cloned().unwrap_or_default()
    }

    /// SHA-256 of the last line verified so far (the genesis hash before the first).
    pub(crate) fn head(&self) -> &str {
        &self.prev
    }

    /// The segments this reader covers, in order.
    pub(crate) fn segments(&self) -> &[PathBuf] {
        &self.segments
    }

    fn is_last_segment(&self, i: usize) -> bool {
        i + 1 >= self.segments.len()
    }

    /// Checks one line; `Ok` carries the record.
    fn check(&mut self, raw: RawLine) -> Result<Verified, Error> {
        let at = Position {
            path: self.segment_path(raw.segment),
            line: raw.line,
        };
        let broken = |why: Break| Error::Broken {
            path: at.path.display().to_string(),
            line: at.line,
            why,
        };
        if !raw.terminated {
            return Err(if self.is_last_segment(raw.segment) {
                Error::Torn {
                    path: at.path.display().to_string(),
                    line: at.line,
                }
            } else {
                broken(Break::Unterminated)
            });
        }
        let record = parse(&raw.bytes).map_err(|e| broken(Break::Shape(e)))?;
        if record.seq != self.next_seq {
            return Err(broken(self.seq_break(record.seq)));
        }
        if record.prev != self.prev {
            return Err(match &self.last {
                None if self.prev == GENESIS => broken(Break::Genesis),
                None => broken(Break::Unchained),
                Some(last) => {
                    let next = if last.path == at.path {
                        format!("line {}", at.line)
                    } else {
                        at.to_string()
                    };
                    Error::Broken {
                        path: last.path.display().to_string(),
                        line: last.line,
                        why: Break::Edited { next },
                    }
                }
            });
        }
        if let Some(keys) = &self.keys
            && (record.mac.is_some() || self.macs > 0)
        {
            keys.check(
                Signed::Record,
                record.seq,
                &record.prev,
                record.mac.as_deref(),
            )
            .map_err(|e| broken(Break::Mac(e.to_string())))?;
        }
        self.macs += u64::from(record.mac.is_some());
        self.prev = hex(&Sha256::digest(&raw.bytes));
        self.next_seq += 1;
        self.last = Some(at);
        Ok(Verified {
            record,
            line: raw.bytes,
        })
    }

    /// Why `found` is not the `seq` expected next. The next record tells the cases apart: it
    /// carries the expected number when this one is out of place (reordered) or extra
    /// (inserted), the one after when only this record's number was changed, and neither when
    /// records are missing.
    fn seq_break(&mut self, found: u64) -> Break {
        let expected = self.next_seq;
        let next_seq = match self.lines.peek() {
            Some(Ok(next)) => parse(&next.bytes).ok().map(|r| r.seq),
            _ => None,
        };
        if next_seq == Some(expected + 1) {
            Break::SeqAltered { expected, found }
        } else if found > expected {
            if next_seq == Some(expected) {
                Break::Reordered { expected, found }
            } else {
                Break::Deleted { expected, found }
            }
        } else {
            Break::Inserted { expected, found }
        }
    }

    /// Reads to the end; the summary of an intact log.
    pub(crate) fn summary(mut self) -> Result<Summary, Error> {
        let mut records = 0;
        for item in self.by_ref() {
            item?;
            records += 1;
        }
        Ok(Summary {
            records,
            segments: self.segments.len(),
            head: self.prev,
            next_seq: self.next_seq,
            macs: self.macs,
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Verified, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = match self.lines.next()? {
            Ok(raw) => self.check(raw),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

/// Every segment of the log at `path`, in order, and the active one already open.
///
/// The active segment is opened first and the sealed ones listed after, leaving out the one
/// that is the same file (it was sealed in between), so a concurrent rotation neither hides
/// nor repeats records.
fn segment_list(path: &Path) -> Result<(Vec<PathBuf>, Option<File>), Error> {
    use std::os::unix::fs::MetadataExt;
    let active = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let id = active
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| (m.dev(), m.ino()));
    let mut list: Vec<PathBuf> = segments::sealed(path)?
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| {
            let same = std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
            id.is_none() || same != id
        })
        .collect();
    if active.is_some() {
        list.push(path.to_path_buf());
    }
    Ok((list, active))
}

/// The raw lines of every segment of the log at `path` (unverified), and the segment paths
/// their `segment` indexes.
pub(super) fn raw_lines(path: &Path) -> Result<(Vec<PathBuf>, Lines), Error> {
    let (segments, active) = segment_list(path)?;
    Ok((segments.clone(), Lines::new(segments, active)))
}

/// Parses and shape-checks one line.
pub(super) fn parse(bytes: &[u8]) -> Result<Record, String> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if record.v != RECORD_FORMAT {
        return Err(format!(
            "format v {} (this pcsync reads {RECORD_FORMAT})",
            record.v
        ));
    }
    if record.prev.len() != 64
        || !record
            .prev
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("`prev` is not 64 lower-case hex digits".to_string());
    }
    if chrono::DateTime::parse_from_rfc3339(&record.time).is_err() {
        return Err(format!("`time` {:?} is not RFC 3339", record.time));
    }
    if record.seq == 0 {
        return Err("`seq` is 0 (the first record is 1)".to_string());
    }
    Ok(record)
}

/// Verifies the whole log.
pub(crate) fn verify(path: &Path) -> Result<Summary, Error> {
    Reader::open(path)?.summary()
}

/// `(head, next_seq)` for appending: the active segment verified (bounded by the segment size
/// limit), chained to the last line of the newest sealed segment.
pub(super) fn tail(path: &Path) -> Result<(String, u64), Error> {
    let (mut head, mut next_seq) = (GENESIS.to_string(), 1);
    if let Some((_, last)) = segments::sealed(path)?.pop() {
        let shown = last.display().to_string();
        let read_err = |source| Error::Read {
            path: shown.clone(),
            source,
        };
        let mut file = File::open(&last).map_err(read_err)?;
        match last_line(&mut file).map_err(read_err)? {
            None => {}
            Some((_, false)) => {
                return Err(Error::Broken {
                    path: shown,
                    line: 0,
                    why: Break::Unterminated,
                });
            }
            Some((line, true)) => {
                let rec = parse(&line).map_err(|e| Error::Broken {
                    path: shown.clone(),
                    line: 0,
                    why: Break::Shape(e),
                })?;
                head = hex(&Sha256::digest(&line));
                next_seq = rec.seq + 1;
            }
        }
    }
    if !path.exists() {
        return Ok((head, next_seq));
    }
    let summary = Reader::over(vec![path.to_path_buf()], None, head, next_seq).summary()?;
    Ok((summary.head, summary.next_seq))
}

/// The last record of a log and the SHA-256 of its line.
pub(super) struct LastRecord {
    pub record: Record,
    pub hash: String,
}

/// The last record of the log at `path`: the last line of the active segment, or of the newest
/// sealed one when the active segment is missing or empty. Reads one line, whatever the log's
/// size. A last line without its newline is [`Error::Torn`] (or a sealed segment's
/// [`Break::Unterminated`]).
pub(super) fn last_record(path: &Path) -> Result<Option<LastRecord>, Error> {
    let mut segments = segments::all(path)?;
    while let Some(segment) = segments.pop() {
        let shown = segment.display().to_string();
        let read_err = |source| Error::Read {
            path: shown.clone(),
            source,
        };
        let mut file = match File::open(&segment) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(e)),
        };
        let Some((line, terminated)) = last_line(&mut file).map_err(read_err)? else {
            continue;
        };
        // The line number only for the error; counting reads the segment once.
        let line_number = || {
            let count = std::fs::read(&segment)
                .map(|b| b.iter().filter(|c| **c == b'\n').count())
                .unwrap_or(0);
            count + usize::from(!terminated)
        };
        if !terminated {
            return Err(if segment == path {
                Error::Torn {
                    path: shown,
                    line: line_number(),
                }
            } else {
                Error::Broken {
                    path: shown,
                    line: line_number(),
                    why: Break::Unterminated,
                }
            });
        }
        let record = parse(&line).map_err(|e| Error::Broken {
            path: shown.clone(),
            line: line_number(),
            why: Break::Shape(e),
        })?;
        return Ok(Some(LastRecord {
            record,
            hash: hex(&Sha256::digest(&line)),
        }));
    }
    Ok(None)
}

/// The last line of a file (without its newline) and whether it ended in one.
fn last_line(file: &mut File) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    let terminated = last[0] == b'\n';
    let end = if terminated { len - 1 } else { len };
    // Grow a window backwards until it holds the newline before the last line.
    let mut window: u64 = 4096;
    loop {
        let start = end.saturating_sub(window);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(pos) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(Some((buf[pos + 1..].to_vec(), terminated)));
        }
        if start == 0 {
            return Ok(Some((buf, terminated)));
        }
        window *= 4;
    }
}

/// Moves a torn last line (no newline: a crash mid-write) of the newest segment to
/// `<segment>.corrupt` (appended, fsynced) and cuts the segment back to its last complete line.
/// Returns the `.corrupt` file, or `None` when the log does not end in a torn line. Nothing is
/// ever dropped: the bytes are in the `.corrupt` file before the segment is shortened.
pub(crate) fn repair_torn(path: &Path) -> Result<Option<(PathBuf, usize)>, Error> {
    let Some(segment) = segments::all(path)?.pop() else {
        return Ok(None);
    };
    let shown = segment.display().to_string();
    let io = |source| Error::Write {
        path: shown.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .map_err(io)?;
    let Some((torn, false)) = last_line(&mut file).map_err(io)? else {
        return Ok(None);
    };
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    let keep = len - torn.len() as u64;
    let mut corrupt_name = segment.clone().into_os_string();
    corrupt_name.push(".corrupt");
    let corrupt = PathBuf::from(corrupt_name);
    let mut out = crate::private::file_options()
        .append(true)
        .create(true)
        .open(&corrupt)
        .map_err(io)?;
    out.write_all(&torn).map_err(io)?;
    out.write_all(b"\n").map_err(io)?;
    out.sync_all().map_err(io)?;
    file.set_len(keep).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Some((corrupt, torn.len())))
}
