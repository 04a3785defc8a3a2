//! What the daemon knows about itself, and its `/healthz` rendering (the `/metrics` one is
//! [`super::metrics`]).
//!
//! One [`AgentState`] behind a `std::sync::Mutex`, updated by the worker, the watch and the lease
//! task, read by the HTTP handlers. The lock is only ever held to copy or update a few fields,
//! never across an `.await`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::redirector::MetricsSnapshot;

/// How a scheduled run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunOutcome {
    /// Nothing to do.
    InSync,
    /// Changes planned, waiting for approval (`auto_apply = false`).
    Pending,
    /// Changes applied (every swap done).
    Applied,
    /// A guard stopped it; nothing was written.
    Blocked,
    /// An error (directory, audit log, a failed swap).
    Failed,
    /// Not the lease holder: no run.
    Standby,
}

impl RunOutcome {
    pub(crate) const ALL: [RunOutcome; 6] = [
        RunOutcome::InSync,
        RunOutcome::Pending,
        RunOutcome::Applied,
        RunOutcome::Blocked,
        RunOutcome::Failed,
        RunOutcome::Standby,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunOutcome::InSync => "in_sync",
            RunOutcome::Pending => "pending",
            RunOutcome::Applied => "applied",
            RunOutcome::Blocked => "blocked",
            RunOutcome::Failed => "failed",
            RunOutcome::Standby => "standby",
        }
    }
}

/// The last scheduled run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastRun {
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RunOutcome,
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub changes_applied: u64,
    pub changes_pending: u64,
}

/// The directory connection as last seen by any subsystem.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirectoryState {
    /// `unknown` (nothing tried yet), `up`, `down`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The live watch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WatchState {
    /// The mechanism actually running: `syncrepl`, `dirsync` or `usn-polling` (Active
    /// Directory), `poll` (a rescan every interval) or `off`.
    pub mode: &'static str,
    pub interval_ms: u64,
    /// `starting`, `ok` (poll), `connected` (syncrepl, dirsync, usn-polling), `failing`, `off`.
    pub state: &'static str,
    pub reconnects: u64,
    /// Table refreshes the watch asked for because it saw a change (syncrepl, dirsync,
    /// usn-polling).
    pub triggers: u64,
}

/// The writer lease.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseState {
    /// False: single instance, always the writer.
    pub enabled: bool,
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Whether this instance may write now.
    pub writer: bool,
}

/// Everything `/healthz` and `/metrics` show, except the redirector's own counters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgentState {
    pub started_at: String,
    pub last_run: Option<LastRun>,
    pub last_success: Option<String>,
    #[serde(skip)]
    pub last_success_at: Option<DateTime<Utc>>,
    pub pending_changes: u64,
    #[serde(skip)]
    pub runs: BTreeMap<RunOutcome, u64>,
    #[serde(skip)]
    pub changes_applied_total: u64,
    pub directory: DirectoryState,
    pub watch: WatchState,
    pub lease: LeaseState,
}

/// The shared status.
pub(crate) struct Shared {
    /// Short critical sections only; never held across `.await`.
    pub status: Mutex<AgentState>,
}

pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    pub(crate) fn new(now: DateTime<Utc>, instance: String, lease_enabled: bool) -> Shared {
        Shared {
            status: Mutex::new(AgentState {
                started_at: stamp(now),
                last_run: None,
                last_success: None,
                last_success_at: None,
                pending_changes: 0,
                runs: BTreeMap::new(),
                changes_applied_total: 0,
                directory: DirectoryState {
                    state: "unknown",
                    since: None,
                    last_error: None,
                },
                watch: WatchState {
                    mode: "off",
                    interval_ms: 0,
                    state: "off",
                    reconnects: 0,
                    triggers: 0,
                },
                lease: LeaseState {
                    enabled: lease_enabled,
                    instance,
                    holder: None,
                    expires: None,
                    writer: !lease_enabled,
                },
            }),
        }
    }

    /// Runs `f` on the status under the lock.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut AgentState) -> R) -> R {
        let mut guard = match self.status.lock() {
            Ok(g) => g,
            // A panic elsewhere while holding the lock left plain data; keep using it.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub(crate) fn snapshot(&self) -> AgentState {
        self.update(|s| s.clone())
    }

    /// Records the directory as reachable or not (only transitions change `since`).
    pub(crate) fn directory(&self, up: bool, error: Option<String>, now: DateTime<Utc>) {
        self.update(|s| {
            let state = if up { "up" } else { "down" };
            if s.directory.state != state {
                s.directory.since = Some(stamp(now));
            }
            s.directory.state = state;
            if up {
                s.directory.last_error = None;
            } else if error.is_some() {
                s.directory.last_error = error;
            }
        });
    }
}

/// The `/healthz` body.
pub(crate) fn health_json(status: &AgentState, redirector: &MetricsSnapshot) -> serde_json::Value {
    let mut doc = serde_json::to_value(status).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("status".into(), "ok".into());
        obj.insert(
            "table".into(),
            serde_json::json!({
                "version": redirector.table_version,
                "entries": redirector.table_entries,
                "refresh_ok": redirector.refresh_ok,
                "refresh_failed": redirector.refresh_failed,
            }),
        );
    }
    doc
}
