//! The run lock: `reconcile.lock` in `state.dir`, held with `flock(2)` for the whole run, so two
//! reconciles (or a reconcile and a restore) on one host never overlap. The kernel drops the
//! lock when the process exits, however it exits, so a crashed run never leaves a stale lock.
//! The file holds the holder's PID for humans; its content is never trusted.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another pcsync reconcile or restore is running on this host (lock {path} held{holder})"
    )]
    Busy { path: String, holder: String },
    /// The state directory or lock file cannot be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Held while alive.
#[derive(Debug)]
pub struct RunLock {
    /// Keeping the file open keeps the flock.
    _file: File,
}

impl RunLock {
    /// Takes the lock in `dir` without waiting.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join("reconcile.lock");
        let shown = path.display().to_string();
        let io = |source| LockError::Io {
            path: shown.clone(),
            source,
        };
        crate::private::create_dir(dir).map_err(io)?;
        let mut file = crate::private::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .map(|pid| format!(" by PID {pid}"))
                    .unwrap_or_default();
                return Err(LockError::Busy {
                    path: shown,
                    holder,
                });
            }
            return Err(io(e.into()));
        }
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(&dir.path().join("state")).unwrap();
        let e = RunLock::acquire(&dir.path().join("state")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("another pcsync reconcile or restore is running"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("PID {}", std::process::id()))
        );
        drop(first);
        RunLock::acquire(&dir.path().join("state")).unwrap();
    }
}
