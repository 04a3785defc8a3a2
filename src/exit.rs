//! Process exit codes: part of pcsync's interface, documented in the README and in `--help`.

/// In sync, or applied completely; for `check`, every check passed.
pub(crate) const OK: u8 = 0;
/// An error: bad configuration, directory unreachable, a failed check.
pub(crate) const ERROR: u8 = 1;
/// A dry run found changes to make.
pub(crate) const PENDING: u8 = 2;
/// A safety guard blocked the run (nothing was written), or findings blocked at least one swap
/// (that swap was not written; the others were planned or applied).
pub(crate) const BLOCKED: u8 = 3;

/// The table shown at the end of `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0  in sync, or applied completely (check: all checks passed)
  1  error (configuration, directory, or a failed check)
  2  changes pending (dry run)
  3  blocked: a safety guard stopped the run (nothing was written), or findings
     blocked at least one swap, in the dry run or apply (what was blocked was not written)";
