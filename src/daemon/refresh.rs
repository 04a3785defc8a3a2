//! The table refresh worker: owns every refresh of the mapping table, one at a time, fed by a
//! capacity-1 trigger channel (start-up, the cron schedule, the watch, a reload), so refreshes
//! never overlap and a burst of triggers coalesces into one refresh. Each refresh connects with
//! the settings in force at that moment (a reload's new credentials are used from the next
//! one), builds the table whole, validates and publishes it ([`crate::mapping::refresh`]).

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::tree::{TaskName, panic_point};
use super::{Daemon, log_safe};
use crate::mapping::refresh;
use crate::model::Finding;
use crate::schedule::Trigger;

/// Refreshes on every trigger until `token` is cancelled (noticed between refreshes, and
/// during one: a refresh only reads, so it may be cut short).
pub(crate) async fn worker(
    daemon: Arc<Daemon>,
    triggers: &mut mpsc::Receiver<Trigger>,
    token: CancellationToken,
) {
    // Findings are repeated only when they change, not on every tick.
    let mut reported: Option<Vec<Finding>> = None;
    loop {
        let trigger = tokio::select! {
            _ = token.cancelled() => break,
            t = triggers.recv() => match t { Some(t) => t, None => break },
        };
        panic_point(TaskName::Refresh);
        let settings = daemon.current();
        let store = &daemon.redirector.store;
        let outcome = tokio::select! {
            _ = token.cancelled() => break,
            r = refresh::refresh(store, &settings, Utc::now()) => r,
        };
        let trigger = trigger.as_str();
        match outcome {
            Ok(done) => {
                daemon.status.attempt(TaskName::Refresh, Ok(()), Utc::now());
                if done.changed {
                    info!(
                        trigger,
                        version = done.table.version(),
                        entries = done.table.len(),
                        "published mapping table"
                    );
                } else {
                    debug!(
                        trigger,
                        version = done.table.version(),
                        "mapping table unchanged"
                    );
                }
                if reported.as_ref() != Some(&done.findings) {
                    for f in &done.findings {
                        warn!(kind = %f.kind, dn = %log_safe(&f.dn), "{}", log_safe(&f.reason));
                    }
                    reported = Some(done.findings);
                }
                if let Some(e) = done.cache_error {
                    error!("cannot save the last-known-good mapping table: {e}");
                }
            }
            Err(e) => {
                let message = log_safe(&e.to_string()).into_owned();
                error!(trigger, "{message}");
                daemon
                    .status
                    .attempt(TaskName::Refresh, Err(message), Utc::now());
            }
        }
    }
}
