//! `/metrics`: a `prometheus_client` [`Registry`] built once, holding one [`Collector`] that
//! reads the live state at each scrape: the shared status (runs, watch, lease, directory) and
//! the redirector's atomics (SIP counters, table, refreshes). No counter is copied into a second
//! store, so nothing can drift.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Daemon;
use super::status::{AgentState, Reach, RunOutcome};
use crate::redirector::MetricsSnapshot;

/// The registry `/metrics` encodes.
pub(crate) fn registry(daemon: Arc<Daemon>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector { daemon }));
    registry
}

/// The `/metrics` body (Prometheus text exposition format).
pub(crate) fn text(registry: &Registry) -> Result<String, String> {
    let mut out = String::new();
    encode(&mut out, registry).map_err(|e| format!("cannot encode metrics: {e}"))?;
    Ok(out)
}

/// Reads the agent's state at each scrape.
struct AgentCollector {
    daemon: Arc<Daemon>,
}

impl fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentCollector")
    }
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let state = self.daemon.status.snapshot();
        let redirector = self.daemon.redirector.metrics();
        runs(&mut e, &state)?;
        sip(&mut e, &redirector)?;
        table(&mut e, &redirector)?;
        watch(&mut e, &state)?;
        directory_and_lease(&mut e, &state)
    }
}

fn runs(e: &mut DescriptorEncoder, s: &AgentState) -> fmt::Result {
    let count = |o: &RunOutcome| s.runs.get(o).copied().unwrap_or(0);
    counters(
        e,
        "pcsync_runs",
        "Scheduled reconcile runs by outcome.",
        "outcome",
        RunOutcome::ALL.iter().map(|o| (o.as_str(), count(o))),
    )?;
    counter(
        e,
        "pcsync_changes_applied",
        "Swaps applied by scheduled runs.",
        s.changes_applied_total,
    )?;
    counter(
        e,
        "pcsync_blocked_runs",
        "Scheduled runs a safety guard blocked (nothing written).",
        count(&RunOutcome::Blocked),
    )?;
    gauge(
        e,
        "pcsync_pending_changes",
        "Changes planned and waiting for approval (auto_apply = false).",
        s.pending_changes as i64,
    )?;
    gauge(
        e,
        "pcsync_last_success_timestamp_seconds",
        "Unix time of the last scheduled run that ended in sync, pending or applied (0: none yet).",
        s.last_success_at.map_or(0, |t| t.timestamp()),
    )
}

fn sip(e: &mut DescriptorEncoder, r: &MetricsSnapshot) -> fmt::Result {
    let sip = &r.sip;
    counters(
        e,
        "pcsync_sip_requests",
        "SIP requests received, by method.",
        "method",
        sip.requests.iter().copied(),
    )?;
    let codes: Vec<(String, u64)> = sip
        .responses
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    counters(
        e,
        "pcsync_sip_responses",
        "SIP responses sent, by status code.",
        "status",
        codes.iter().map(|(c, n)| (c.as_str(), *n)),
    )?;
    counters(
        e,
        "pcsync_sip_dropped",
        "SIP messages or connections dropped without an answer, by reason.",
        "reason",
        [
            ("unanswerable", sip.dropped_unanswerable),
            ("rate_limited", sip.dropped_rate_limited),
            ("connection_cap", sip.dropped_connection_cap),
            ("framing", sip.dropped_framing),
            ("send_failed", sip.send_failed),
        ],
    )?;
    gauge(
        e,
        "pcsync_sip_connections",
        "Open SIP TCP and TLS connections.",
        sip.connections_open as i64,
    )?;
    counters(
        e,
        "pcsync_sip_reconnects",
        "TCP responses sent on a new connection because the request's was gone (RFC 3261 18.2.2), by result.",
        "result",
        [
            ("sent", sip.reconnects_sent),
            ("failed", sip.reconnects_failed),
        ],
    )
}

fn table(e: &mut DescriptorEncoder, r: &MetricsSnapshot) -> fmt::Result {
    gauge(
        e,
        "pcsync_mapping_table_entries",
        "Entries in the published mapping table.",
        r.table_entries as i64,
    )?;
    gauge(
        e,
        "pcsync_mapping_table_version",
        "Version of the published mapping table.",
        r.table_version as i64,
    )?;
    counters(
        e,
        "pcsync_mapping_refreshes",
        "Mapping table refreshes by result.",
        "result",
        [("ok", r.refresh_ok), ("failed", r.refresh_failed)],
    )
}

fn watch(e: &mut DescriptorEncoder, s: &AgentState) -> fmt::Result {
    counter(
        e,
        "pcsync_watch_reconnects",
        "Times the live watch regained the directory after losing it.",
        s.watch.reconnects,
    )?;
    counter(
        e,
        "pcsync_watch_triggers",
        "Table refreshes the live watch asked for because it saw a change (syncrepl, dirsync, usn-polling).",
        s.watch.triggers,
    )?;
    gauges(
        e,
        "pcsync_watch_mode",
        "The live watch mechanism running (value 1, the mechanism in the label: syncrepl, dirsync, usn-polling, poll, off).",
        "mode",
        [(s.watch.mode.as_str(), 1)],
    )
}

fn directory_and_lease(e: &mut DescriptorEncoder, s: &AgentState) -> fmt::Result {
    gauge(
        e,
        "pcsync_directory_up",
        "1 when the directory answered the last attempt, else 0.",
        i64::from(s.directory.state == Reach::Up),
    )?;
    gauge(
        e,
        "pcsync_lease_writer",
        "1 when this instance holds the writer lease (or runs alone), else 0.",
        i64::from(s.lease.writer),
    )?;
    gauges(
        e,
        "pcsync_lease_holder",
        "The instance holding the writer lease (value 1, the holder in the label).",
        "holder",
        s.lease.holder.as_deref().map(|h| (h, 1)),
    )?;
    let Some(rep) = &s.replication else {
        return Ok(());
    };
    gauge(
        e,
        "pcsync_replication_dcs_holding",
        "DCs holding the writes of the last run that wrote, as last counted (Active Directory).",
        i64::try_from(rep.holding).unwrap_or(i64::MAX),
    )?;
    gauge(
        e,
        "pcsync_replication_dcs",
        "DCs of the domain, counted after the last run that wrote (Active Directory).",
        i64::try_from(rep.total).unwrap_or(i64::MAX),
    )
}

// === encoders of one family ===

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A counter family with one label.
fn counters<'v>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'v str, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// A gauge family with one label.
fn gauges<'v>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'v str, i64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        ConstGauge::new(n).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}
