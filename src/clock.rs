//! The wall clock, read in one place.
//!
//! Library code reads no clock: the planner, the audit log, the mapping table and a reconcile
//! run are handed `now` or a [`Clock`], so a test fixes time and a run sees one consistent
//! time. Only the edges read the wall clock, through [`system`]: the command line, the agent's
//! runtime (its status times, its runs) and the cron trigger. clippy.toml's disallowed-methods
//! refuses `Utc::now` and `SystemTime::now` everywhere else, and tests/it/architecture.rs checks
//! that only those edges import this module.

use chrono::{DateTime, Utc};

/// Where times come from: [`system`] in the program, a fixed function in tests.
pub(crate) type Clock = fn() -> DateTime<Utc>;

/// The current time in UTC.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place the wall clock is read; everything else is handed it"
)]
pub(crate) fn system() -> DateTime<Utc> {
    Utc::now()
}
