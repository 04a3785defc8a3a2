//! Named review cursors: `state.dir/audit-cursors/NAME.json` holds the `seq` and line hash of
//! the last record a reviewer saw, so `--since-last NAME` shows only what is new since.
//!
//! A cursor is written atomically ([`crate::private::write_atomic`]; 0600 in a 0700 directory) and only
//! after the review's output was written. Its hash lets the next review notice a log that was
//! rewritten underneath it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a cursor could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CursorError {
    /// The name would not be a plain file name.
    #[error("review cursor name {0:?} is invalid: use letters, digits, '.', '_' and '-' (1 to 64)")]
    Name(String),
    /// Reading or writing the cursor file failed.
    #[error("review cursor {path}: {reason}")]
    File { path: String, reason: String },
}

/// The last record a named review saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub seq: u64,
    /// SHA-256 of that record's line.
    pub hash: String,
}

impl Cursor {
    fn path(state_dir: &Path, name: &str) -> Result<PathBuf, CursorError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(CursorError::Name(name.to_string()));
        }
        Ok(state_dir.join("audit-cursors").join(format!("{name}.json")))
    }

    /// The cursor named `name`, or `None` when that review never ran.
    pub(crate) fn load(state_dir: &Path, name: &str) -> Result<Option<Cursor>, CursorError> {
        let path = Cursor::path(state_dir, name)?;
        let file_err = |reason: String| CursorError::File {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| file_err(format!("not a cursor: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_err(e.to_string())),
        }
    }

    /// Saves the cursor atomically.
    pub(crate) fn save(&self, state_dir: &Path, name: &str) -> Result<(), CursorError> {
        let path = Cursor::path(state_dir, name)?;
        let file_err = |e: std::io::Error| CursorError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir).map_err(file_err)?;
        }
        let mut text =
            serde_json::to_string(self).map_err(|e| file_err(std::io::Error::other(e)))?;
        text.push('\n');
        crate::private::write_atomic(&path, text.as_bytes()).map_err(file_err)
    }
}
