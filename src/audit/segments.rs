//! Segment naming and discovery.
//!
//! For `audit.path` = `DIR/audit.jsonl`, the active segment is that file and the sealed ones are
//! `DIR/audit.000001.jsonl`, `DIR/audit.000002.jsonl`, … (six digits or more, numbered from 1 in
//! the order they were sealed). The log is the sealed segments in number order, then the active
//! one. Other files in the directory are ignored.

use std::path::{Path, PathBuf};

use super::Error;

/// `(stem, extension)` of the active segment: `audit.jsonl` -> (`audit`, `.jsonl`).
fn parts(active: &Path) -> (String, String) {
    let name = active
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

/// The sealed segment numbered `n`.
pub(crate) fn sealed_path(active: &Path, n: u64) -> PathBuf {
    let (stem, ext) = parts(active);
    active.with_file_name(format!("{stem}.{n:06}{ext}"))
}

/// The number of a sealed segment's file name, if it is one of `active`'s.
fn sealed_number(active: &Path, name: &str) -> Option<u64> {
    let (stem, ext) = parts(active);
    let middle = name.strip_prefix(&format!("{stem}."))?.strip_suffix(&ext)?;
    if middle.len() >= 6 && middle.bytes().all(|b| b.is_ascii_digit()) {
        middle.parse().ok()
    } else {
        None
    }
}

/// The sealed segments, oldest first.
pub(crate) fn sealed(active: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let dir = match active.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let read_err = |source| Error::Read {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = sealed_number(active, &name) {
            out.push((n, active.with_file_name(&name)));
        }
    }
    out.sort();
    Ok(out)
}

/// Every segment of the log in order: sealed ones, then the active one if it exists.
pub(crate) fn all(active: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out: Vec<PathBuf> = sealed(active)?.into_iter().map(|(_, p)| p).collect();
    if active.exists() {
        out.push(active.to_path_buf());
    }
    Ok(out)
}

/// The name the active segment gets when it is sealed next.
pub(crate) fn next_sealed(active: &Path) -> Result<PathBuf, Error> {
    let last = sealed(active)?.last().map(|(n, _)| *n).unwrap_or(0);
    Ok(sealed_path(active, last + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_names_sort_and_are_recognised() {
        let active = Path::new("/var/lib/pcsync/audit.jsonl");
        assert_eq!(
            sealed_path(active, 7),
            Path::new("/var/lib/pcsync/audit.000007.jsonl")
        );
        assert_eq!(sealed_number(active, "audit.000007.jsonl"), Some(7));
        assert_eq!(
            sealed_number(active, "audit.1234567.jsonl"),
            Some(1_234_567)
        );
        assert_eq!(sealed_number(active, "audit.jsonl"), None);
        assert_eq!(sealed_number(active, "audit.000007.jsonl.corrupt"), None);
        assert_eq!(sealed_number(active, "audit.7.jsonl"), None);
        assert_eq!(sealed_number(active, "other.000001.jsonl"), None);
        let bare = Path::new("log");
        assert_eq!(sealed_path(bare, 2), Path::new("log.000002"));
        assert_eq!(sealed_number(bare, "log.000002"), Some(2));
    }
}
