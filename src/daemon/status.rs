//! What the agent knows about itself, and its `/healthz` rendering (the `/metrics` one is
//! [`super::metrics`]).
//!
//! One [`AgentState`] behind a `std::sync::Mutex`, updated by the workers and the supervisor,
//! read by the HTTP handlers. The lock is only ever held to copy or update a few fields, never
//! across an `.await`. Every state that is shown is an enum declared with `shown!`, which
//! names each value once: `/healthz` (serde) and `/metrics` (labels) both render that name.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::redirector::MetricsSnapshot;

pub(crate) use crate::reconcile::RunOutcome;

/// Declares an enum whose values are shown to operators, each with its one name: `as_str`,
/// `Display` and `Serialize` all render it, and `ALL` lists the values in order.
macro_rules! shown {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),*];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

shown! {
    /// The agent's long-lived tasks, as logs, `/healthz` (`workers`) and the failpoints name
    /// them.
    pub(crate) enum TaskName {
        /// The one cron schedule: triggers scheduled runs and table refreshes.
        Cron => "cron",
        /// The scheduled reconcile worker.
        Runs => "scheduled-runs",
        /// The mapping table refresh worker.
        Refresh => "refresh",
        /// The live watch.
        Watch => "watch",
        /// The writer lease loop.
        Lease => "lease",
        /// `/healthz` and `/metrics`.
        Http => "http",
        SipUdp => "sip-udp",
        SipTcp => "sip-tcp",
        SipTls => "sip-tls",
    }
}

shown! {
    /// `/healthz` `status`.
    pub(crate) enum Health {
        /// Every worker is alive and its last attempt succeeded (HTTP 200).
        Ok => "ok",
        /// A worker is dead, restarting, or its last attempt failed (HTTP 503).
        Degraded => "degraded",
    }
}

shown! {
    /// Whether the directory answered the last attempt of any worker.
    pub(crate) enum Reach {
        /// Nothing tried yet.
        Unknown => "unknown",
        Up => "up",
        Down => "down",
    }
}

shown! {
    /// The watch mechanism actually running.
    pub(crate) enum Mechanism {
        /// RFC 4533 refreshAndPersist (OpenLDAP with syncprov).
        Syncrepl => "syncrepl",
        /// DirSync with a cookie (Active Directory, with the replication right).
        DirSync => "dirsync",
        /// uSNChanged polling (Active Directory).
        UsnPolling => "usn-polling",
        /// A refresh (full container rescan) every poll interval.
        Poll => "poll",
        /// No watch.
        Off => "off",
    }
}

shown! {
    /// Where the watch is.
    pub(crate) enum WatchPhase {
        /// Connecting for the first time (or after a reload).
        Starting => "starting",
        /// A syncrepl stream or an AD watch is running on its connection.
        Connected => "connected",
        /// Polling, and the last refresh reached the directory.
        Polling => "ok",
        /// The directory cannot be reached (or the connection went silent): retrying.
        Failing => "failing",
        Off => "off",
    }
}

shown! {
    /// Whether a worker's task is running.
    pub(crate) enum Liveness {
        Running => "running",
        /// It died (panicked or ended unexpectedly) and waits for its restart.
        Restarting => "restarting",
        /// It ended because the agent is stopping.
        Stopped => "stopped",
    }
}

shown! {
    /// How a worker's last attempt (a run, a refresh, a connection, a renewal) went.
    pub(crate) enum Attempt {
        /// None yet, or the worker makes none (cron, listeners).
        None => "none",
        Ok => "ok",
        Failed => "failed",
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

/// The directory connection as last seen by any worker.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirectoryState {
    pub state: Reach,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The live watch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WatchState {
    pub mode: Mechanism,
    pub interval_ms: u64,
    /// `[daemon] watch_timeout`: a connection silent this long is replaced.
    pub timeout_ms: u64,
    pub state: WatchPhase,
    pub reconnects: u64,
    /// Table refreshes the watch asked for because it saw a change (syncrepl, dirsync,
    /// usn-polling).
    pub triggers: u64,
    /// When the watch last heard from the directory (an event, a heartbeat answer, a poll).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_at: Option<String>,
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

shown! {
    /// Where the replication of the last run that wrote stands.
    pub(crate) enum ReplicationPhase {
        /// Some DC does not hold the writes yet: counted again every few seconds.
        Counting => "counting",
        /// Every DC of the domain holds them.
        Replicated => "replicated",
        /// Some DC still did not hold them when counting stopped, a bounded time after the run.
        NotReplicated => "not_replicated",
    }
}

/// How many DCs hold the writes of the last run that wrote (Active Directory), as last
/// counted: right after the writes, then again until every DC holds them or counting stops.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicationState {
    /// DCs holding every write of that run, the write server included.
    pub holding: usize,
    /// DCs of the domain.
    pub total: usize,
    /// `replicated to 2 of 2 DCs`, and which are behind or unreachable.
    pub text: String,
    pub state: ReplicationPhase,
    /// When the run ended.
    pub at: String,
    /// When the DCs were last counted.
    pub counted_at: String,
}

impl ReplicationState {
    pub(crate) fn new(
        r: &crate::estate::Replication,
        state: ReplicationPhase,
        ran: DateTime<Utc>,
        counted: DateTime<Utc>,
    ) -> ReplicationState {
        ReplicationState {
            holding: r.holding.len(),
            total: r.total(),
            text: r.to_string(),
            state,
            at: stamp(ran),
            counted_at: stamp(counted),
        }
    }
}

/// One supervised worker.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkerState {
    pub state: Liveness,
    pub last_attempt: Attempt,
    /// Why the last attempt failed, or how the task died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times the supervisor restarted it.
    pub restarts: u64,
    /// Since when `state` and `last_attempt` hold.
    pub since: String,
}

impl WorkerState {
    /// Alive, and its last attempt did not fail.
    pub(crate) fn healthy(&self) -> bool {
        self.state == Liveness::Running && self.last_attempt != Attempt::Failed
    }
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
    /// After the last run that wrote, on Active Directory; null before.
    pub replication: Option<ReplicationState>,
    pub workers: BTreeMap<TaskName, WorkerState>,
}

impl AgentState {
    pub(crate) fn health(&self) -> Health {
        if self.workers.values().all(WorkerState::healthy) {
            Health::Ok
        } else {
            Health::Degraded
        }
    }

    /// The workers that make the agent degraded, by name.
    pub(crate) fn degraded(&self) -> Vec<TaskName> {
        self.workers
            .iter()
            .filter(|(_, w)| !w.healthy())
            .map(|(name, _)| *name)
            .collect()
    }
}

/// The shared state.
pub(crate) struct Shared {
    /// Short critical sections only; never held across `.await`.
    state: Mutex<AgentState>,
}

pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    pub(crate) fn new(now: DateTime<Utc>, instance: String, lease_enabled: bool) -> Shared {
        Shared {
            state: Mutex::new(AgentState {
                started_at: stamp(now),
                last_run: None,
                last_success: None,
                last_success_at: None,
                pending_changes: 0,
                runs: BTreeMap::new(),
                changes_applied_total: 0,
                directory: DirectoryState {
                    state: Reach::Unknown,
                    since: None,
                    last_error: None,
                },
                watch: WatchState {
                    mode: Mechanism::Off,
                    interval_ms: 0,
                    timeout_ms: 0,
                    state: WatchPhase::Off,
                    reconnects: 0,
                    triggers: 0,
                    last_message_at: None,
                },
                lease: LeaseState {
                    enabled: lease_enabled,
                    instance,
                    holder: None,
                    expires: None,
                    writer: !lease_enabled,
                },
                replication: None,
                workers: BTreeMap::new(),
            }),
        }
    }

    /// Runs `f` on the state under the lock.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut AgentState) -> R) -> R {
        let mut guard = match self.state.lock() {
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
            let state = if up { Reach::Up } else { Reach::Down };
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

    /// Records how `worker`'s last attempt went.
    pub(crate) fn attempt(&self, worker: TaskName, result: Result<(), String>, now: DateTime<Utc>) {
        self.update(|s| {
            let w = worker_entry(s, worker, now);
            let attempt = if result.is_ok() {
                Attempt::Ok
            } else {
                Attempt::Failed
            };
            if w.last_attempt != attempt {
                w.since = stamp(now);
            }
            w.last_attempt = attempt;
            w.error = result.err();
        });
    }

    /// Records that `worker`'s task is running (started or restarted).
    pub(crate) fn running(&self, worker: TaskName, now: DateTime<Utc>) {
        self.liveness(worker, Liveness::Running, None, now);
    }

    /// Records that `worker`'s task died for `reason` and waits for its restart. Writing stops
    /// at once: an instance missing a worker gives the lease up.
    pub(crate) fn died(&self, worker: TaskName, reason: String, now: DateTime<Utc>) {
        self.liveness(worker, Liveness::Restarting, Some(reason), now);
        self.update(|s| {
            if s.lease.enabled {
                s.lease.writer = false;
            }
        });
    }

    /// Records that `worker`'s task ended because the agent is stopping.
    pub(crate) fn stopped(&self, worker: TaskName, now: DateTime<Utc>) {
        self.liveness(worker, Liveness::Stopped, None, now);
    }

    fn liveness(&self, worker: TaskName, to: Liveness, reason: Option<String>, now: DateTime<Utc>) {
        self.update(|s| {
            let w = worker_entry(s, worker, now);
            if w.state != to {
                w.since = stamp(now);
            }
            if to == Liveness::Running && w.state == Liveness::Restarting {
                w.restarts += 1;
            }
            w.state = to;
            if let Some(reason) = reason {
                w.error = Some(reason);
                // A dead worker's last attempt is not known to have succeeded.
                w.last_attempt = Attempt::None;
            }
        });
    }

    /// Whether every worker is alive: the lease is taken or renewed only then.
    pub(crate) fn all_alive(&self) -> bool {
        self.update(|s| s.workers.values().all(|w| w.state == Liveness::Running))
    }
}

fn worker_entry(s: &mut AgentState, worker: TaskName, now: DateTime<Utc>) -> &mut WorkerState {
    s.workers.entry(worker).or_insert_with(|| WorkerState {
        state: Liveness::Running,
        last_attempt: Attempt::None,
        error: None,
        restarts: 0,
        since: stamp(now),
    })
}

/// The `/healthz` body and its HTTP status code: 200 when healthy, 503 when degraded.
pub(crate) fn health_json(
    state: &AgentState,
    redirector: &MetricsSnapshot,
) -> (u16, serde_json::Value) {
    let health = state.health();
    let mut doc = serde_json::to_value(state).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("status".into(), health.as_str().into());
        if health == Health::Degraded {
            let names: Vec<&str> = state.degraded().iter().map(|n| n.as_str()).collect();
            obj.insert("degraded".into(), names.into());
        }
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
    let code = match health {
        Health::Ok => 200,
        Health::Degraded => 503,
    };
    (code, doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Shared {
        Shared::new(crate::clock::system(), "me".into(), true)
    }

    #[test]
    fn healthy_only_when_every_worker_runs_and_its_last_attempt_succeeded() {
        let s = state();
        let now = crate::clock::system();
        s.running(TaskName::Refresh, now);
        s.running(TaskName::Runs, now);
        assert_eq!(s.snapshot().health(), Health::Ok);
        s.attempt(TaskName::Refresh, Err("LDAP 49".into()), now);
        let snap = s.snapshot();
        assert_eq!(snap.health(), Health::Degraded);
        assert_eq!(snap.degraded(), vec![TaskName::Refresh]);
        s.attempt(TaskName::Refresh, Ok(()), now);
        assert_eq!(s.snapshot().health(), Health::Ok);
        s.update(|st| st.lease.writer = true);
        s.died(TaskName::Runs, "panicked: boom".into(), now);
        let snap = s.snapshot();
        assert_eq!(snap.degraded(), vec![TaskName::Runs]);
        assert!(!snap.lease.writer, "a death stops writing at once");
        assert!(!s.all_alive());
        s.running(TaskName::Runs, now);
        let snap = s.snapshot();
        assert_eq!(snap.health(), Health::Ok);
        assert_eq!(snap.workers[&TaskName::Runs].restarts, 1);
    }

    #[test]
    fn the_body_says_degraded_and_names_the_worker_with_503() {
        let s = state();
        let now = crate::clock::system();
        s.running(TaskName::Watch, now);
        s.died(TaskName::Watch, "panicked: boom".into(), now);
        let (code, body) = health_json(&s.snapshot(), &MetricsSnapshot::default());
        assert_eq!(code, 503);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["degraded"][0], "watch");
        assert_eq!(body["workers"]["watch"]["state"], "restarting");
        assert_eq!(body["workers"]["watch"]["error"], "panicked: boom");
    }

    #[test]
    fn shown_names_are_the_ones_documented() {
        assert_eq!(
            RunOutcome::ALL
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>(),
            [
                "in_sync", "pending", "applied", "blocked", "failed", "standby"
            ]
        );
        assert_eq!(Mechanism::UsnPolling.as_str(), "usn-polling");
        assert_eq!(WatchPhase::Polling.as_str(), "ok");
        assert_eq!(
            ReplicationPhase::ALL
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>(),
            ["counting", "replicated", "not_replicated"]
        );
        assert_eq!(
            serde_json::to_value(Reach::Down).unwrap(),
            serde_json::json!("down")
        );
    }
}
