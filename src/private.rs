//! Private files and directories: what pcsync creates in `state.dir` and next to the audit log
//! is for its owner only (files 0600, directories 0700), whatever the umask, because it holds
//! directory data (before-images of deleted users, the SIP table, syncrepl cookies).
//!
//! pcsync never changes the mode of a directory it did not create: an operator may have given
//! a group access on purpose (a log shipper reading the audit directory). Such a directory gets
//! one warning per process naming it and its mode; the files pcsync creates inside are 0600
//! all the same, so the directory mode exposes file names, not contents.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
}
