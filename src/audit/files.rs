//! Where one audit log lives and what protects it: the active segment's path, the anchor file
//! in `state.dir` ([`super::anchor`]), the key of a keyed chain ([`super::key`]) and the size at
//! which segments are sealed. Every writer and every reader that must trust the log's end
//! takes a [`LogFiles`], so no run can forget the anchor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::key::Keyring;
use super::{DEFAULT_MAX_SEGMENT_BYTES, Error};
use crate::config::Settings;

/// The anchor's file name in `state.dir` ([`super::anchor`]).
pub(crate) const ANCHOR_FILE: &str = "audit-anchor.json";

/// One audit log and its protection.
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// The active segment (`audit.path`); sealed segments lie next to it.
    pub(crate) path: PathBuf,
    /// The anchor file; `None` for a log nothing anchors (benchmark data, an auditor's copy
    /// read with `--log`).
    pub(crate) anchor: Option<PathBuf>,
    /// The keyed chain's keys (`[audit] key_file`).
    pub(crate) keys: Option<Arc<Keyring>>,
    pub(crate) max_segment_bytes: u64,
}

impl LogFiles {
    /// The configured log: `audit.path`, anchored in `state.dir`, keyed when `audit.key_file`
    /// is set (the key file is read here; an error names it).
    pub(crate) fn of(settings: &Settings) -> Result<LogFiles, Error> {
        let files = LogFiles::anchored(&settings.audit.path, &settings.state.dir)
            .with_max_segment_size(settings.audit.max_segment_size);
        match &settings.audit.key_file {
            Some(path) => Ok(files.with_keys(Keyring::load(path)?)),
            None => Ok(files),
        }
    }

    /// A log no anchor protects: written by the benchmark generator, read as a copy.
    pub fn unanchored(path: &Path) -> LogFiles {
        LogFiles {
            path: path.to_path_buf(),
            anchor: None,
            keys: None,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
        }
    }

    /// A log anchored in `state_dir`.
    pub(crate) fn anchored(path: &Path, state_dir: &Path) -> LogFiles {
        LogFiles {
            anchor: Some(state_dir.join(ANCHOR_FILE)),
            ..LogFiles::unanchored(path)
        }
    }

    /// Sets the size past which the active segment is sealed (`audit.max_segment_size`).
    pub fn with_max_segment_size(mut self, bytes: u64) -> LogFiles {
        self.max_segment_bytes = bytes.max(1);
        self
    }

    /// Keys the chain.
    pub(crate) fn with_keys(mut self, keys: Keyring) -> LogFiles {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// The active segment's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
