//! What the daemon knows about itself, and its two renderings: `/healthz` JSON and `/metrics`
//! Prometheus text.
//!
//! One [`Status`] behind a `std::sync::Mutex`, updated by the worker, the watch and the lease
//! task, read by the HTTP handlers. The lock is only ever held to copy or update a few fields,
//! never across an `.await`. The Prometheus registry is built afresh from a snapshot at each
//! scrape, so there is no second copy of any counter to drift.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::redirector::MetricsSnapshot;

pub(crate) use crate::reconcile::RunOutcome;

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

/// How many DCs held the writes of the last run that wrote (Active Directory).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicationState {
    /// DCs holding every write of that run, the write server included.
    pub holding: usize,
    /// DCs of the domain.
    pub total: usize,
    /// `replicated to 2 of 2 DCs`, and which are behind or unreachable.
    pub text: String,
    /// When the run ended.
    pub at: String,
}

impl ReplicationState {
    pub(crate) fn new(r: &crate::estate::Replication, at: DateTime<Utc>) -> ReplicationState {
        ReplicationState {
            holding: r.holding.len(),
            total: r.total(),
            text: r.to_string(),
            at: stamp(at),
        }
    }
}

/// Everything `/healthz` and `/metrics` show, except the redirector's own counters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
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
}

/// The shared status.
pub(crate) struct Shared {
    /// Short critical sections only; never held across `.await`.
    pub status: Mutex<Status>,
}

pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    pub(crate) fn new(now: DateTime<Utc>, instance: String, lease_enabled: bool) -> Shared {
        Shared {
            status: Mutex::new(Status {
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
                replication: None,
            }),
        }
    }

    /// Runs `f` on the status under the lock.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        let mut guard = match self.status.lock() {
            Ok(g) => g,
            // A panic elsewhere while holding the lock left plain data; keep using it.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub(crate) fn snapshot(&self) -> Status {
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
pub(crate) fn health_json(status: &Status, redirector: &MetricsSnapshot) -> serde_json::Value {
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

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn labelled_counter(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, help, family);
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// The `/metrics` body (Prometheus text exposition format).
pub(crate) fn metrics_text(
    status: &Status,
    redirector: &MetricsSnapshot,
) -> Result<String, String> {
    let mut r = Registry::default();
    labelled_counter(
        &mut r,
        "pcsync_runs",
        "Scheduled reconcile runs by outcome.",
        RunOutcome::ALL.iter().map(|o| {
            (
                label("outcome", o.as_str()),
                status.runs.get(o).copied().unwrap_or(0),
            )
        }),
    );
    counter(
        &mut r,
        "pcsync_changes_applied",
        "Swaps applied by scheduled runs.",
        status.changes_applied_total,
    );
    counter(
        &mut r,
        "pcsync_blocked_runs",
        "Scheduled runs a safety guard blocked (nothing written).",
        status.runs.get(&RunOutcome::Blocked).copied().unwrap_or(0),
    );
    gauge(
        &mut r,
        "pcsync_pending_changes",
        "Changes planned and waiting for approval (auto_apply = false).",
        status.pending_changes as i64,
    );
    gauge(
        &mut r,
        "pcsync_last_success_timestamp_seconds",
        "Unix time of the last scheduled run that ended in sync, pending or applied (0: none yet).",
        status.last_success_at.map_or(0, |t| t.timestamp()),
    );
    labelled_counter(
        &mut r,
        "pcsync_sip_requests",
        "SIP requests received, by method.",
        redirector
            .sip
            .requests
            .iter()
            .map(|(m, n)| (label("method", m), *n)),
    );
    labelled_counter(
        &mut r,
        "pcsync_sip_responses",
        "SIP responses sent, by status code.",
        redirector
            .sip
            .responses
            .iter()
            .map(|(code, n)| (label("status", &code.to_string()), *n)),
    );
    let sip = &redirector.sip;
    labelled_counter(
        &mut r,
        "pcsync_sip_dropped",
        "SIP messages or connections dropped without an answer, by reason.",
        [
            ("unanswerable", sip.dropped_unanswerable),
            ("rate_limited", sip.dropped_rate_limited),
            ("connection_cap", sip.dropped_connection_cap),
            ("framing", sip.dropped_framing),
            ("send_failed", sip.send_failed),
        ]
        .map(|(reason, n)| (label("reason", reason), n)),
    );
    gauge(
        &mut r,
        "pcsync_sip_connections",
        "Open SIP TCP and TLS connections.",
        sip.connections_open as i64,
    );
    labelled_counter(
        &mut r,
        "pcsync_sip_reconnects",
        "TCP responses sent on a new connection because the request's was gone (RFC 3261 18.2.2), by result.",
        [
            (label("result", "sent"), sip.reconnects_sent),
            (label("result", "failed"), sip.reconnects_failed),
        ],
    );
    gauge(
        &mut r,
        "pcsync_mapping_table_entries",
        "Entries in the published mapping table.",
        redirector.table_entries as i64,
    );
    gauge(
        &mut r,
        "pcsync_mapping_table_version",
        "Version of the published mapping table.",
        redirector.table_version as i64,
    );
    labelled_counter(
        &mut r,
        "pcsync_mapping_refreshes",
        "Mapping table refreshes by result.",
        [
            (label("result", "ok"), redirector.refresh_ok),
            (label("result", "failed"), redirector.refresh_failed),
        ],
    );
    counter(
        &mut r,
        "pcsync_watch_reconnects",
        "Times the live watch regained the directory after losing it.",
        status.watch.reconnects,
    );
    counter(
        &mut r,
        "pcsync_watch_triggers",
        "Table refreshes the live watch asked for because it saw a change (syncrepl, dirsync, usn-polling).",
        status.watch.triggers,
    );
    let modes = Family::<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
    modes
        .get_or_create(&label("mode", status.watch.mode))
        .set(1);
    r.register(
        "pcsync_watch_mode",
        "The live watch mechanism running (value 1, the mechanism in the label: syncrepl, dirsync, usn-polling, poll, off).",
        modes,
    );
    gauge(
        &mut r,
        "pcsync_directory_up",
        "1 when the directory answered the last attempt, else 0.",
        i64::from(status.directory.state == "up"),
    );
    gauge(
        &mut r,
        "pcsync_lease_writer",
        "1 when this instance holds the writer lease (or runs alone), else 0.",
        i64::from(status.lease.writer),
    );
    let holders = Family::<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
    if let Some(h) = &status.lease.holder {
        holders.get_or_create(&label("holder", h)).set(1);
    }
    r.register(
        "pcsync_lease_holder",
        "The instance holding the writer lease (value 1, the holder in the label).",
        holders,
    );
    if let Some(rep) = &status.replication {
        gauge(
            &mut r,
            "pcsync_replication_dcs_holding",
            "DCs that held the writes of the last run that wrote when it ended (Active Directory).",
            rep.holding as i64,
        );
        gauge(
            &mut r,
            "pcsync_replication_dcs",
            "DCs of the domain, counted after the last run that wrote (Active Directory).",
            rep.total as i64,
        );
    }
    let mut out = String::new();
    encode(&mut out, &r).map_err(|e| format!("cannot encode metrics: {e}"))?;
    Ok(out)
}
