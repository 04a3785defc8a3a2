//! Private files and directories: what pcsync creates in `state.dir` and next to the audit log
//! is for its owner only (files 0600, directories 0700), whatever the umask, because it holds
//! directory data (before-images of deleted users, the SIP table, syncrepl cookies).
//!
//! pcsync never changes the mode of a directory it did not create: an operator may have given
//! a group access on purpose (a log shipper reading the audit directory). Such a directory gets
//! one warning per process naming it and its mode; the files pcsync creates inside are 0600
//! all the same, so the directory mode exposes file names, not contents.
//!
//! [`write_atomic`] is the one way pcsync replaces a small state file (a plan, the mapping
//! cache, the syncrepl cookie, a review cursor): a reader sees the old file or the new one,
//! never a part of one, and the new one is durable once the call returns.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every directory pcsync creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file pcsync creates in its state and audit directories.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Directories already warned about, so a daemon that saves its cache every minute warns once.
static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Creates `dir` and any missing parents with mode 0700 (the umask cannot widen it). An
/// existing directory is left as it is, with a warning if group or others can use it.
pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        warn_if_open(dir);
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file with mode 0600 (an existing file keeps its mode).
pub(crate) fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Numbers the temp files of one process, so two writers of one file never share a temp file.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically and durably: a new temp file (0600, created
/// exclusively, so a stale file of the same name cannot lend it a wider mode) in the same
/// directory, written and fsynced, renamed over `path`, then the directory fsynced so the
/// rename itself survives a crash. The directory must exist. On an error the temp file is
/// removed and `path` is unchanged.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = file_options().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    File::open(dir).and_then(|d| d.sync_all())
}

/// Logs once per process when `dir` is accessible to group or others.
pub(crate) fn warn_if_open(dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    let first = WARNED
        .lock()
        .map(|mut warned| warned.insert(dir.to_path_buf()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            "{} is accessible to group or others (mode {mode:o}); pcsync keeps its own files there at 0600; if only pcsync uses it, run `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_directories_and_files_are_private_and_existing_ones_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir(&deep).unwrap();
        for dir in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&tmp.path().join(dir)), 0o700, "{dir}");
        }
        let file = deep.join("f");
        file_options().write(true).create(true).open(&file).unwrap();
        assert_eq!(mode(&file), 0o600);

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o755, "an existing directory keeps its mode");
    }

    #[test]
    fn write_atomic_replaces_the_file_private_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        // An existing file with a wide mode is replaced by a 0600 one.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(mode(&path), 0o600);
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temp file is left behind");
        // A missing directory is an error and creates nothing.
        let missing = tmp.path().join("missing/state.json");
        assert!(write_atomic(&missing, b"x").is_err());
        assert!(!tmp.path().join("missing").exists());
    }
}
