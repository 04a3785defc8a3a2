//! The redirector as one subsystem: the last-known-good table, the SIP listeners, and the
//! worker that refreshes the table from the directory. `pcsync redirect` runs it alone; the
//! daemon embeds the same [`start`].
//!
//! Start-up never waits for the directory: the table comes from the cache (or starts empty, said
//! loudly), the listeners bind, and the first refresh runs in the background. One worker owns
//! every refresh, fed by a capacity-1 trigger channel (start-up, cron ticks, SIGHUP), so refreshes
//! never overlap and shutdown is noticed between them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{ContactTransport, Settings};
use crate::mapping::cache;
use crate::mapping::refresh;
use crate::mapping::store::MappingStore;
use crate::mapping::table::MappingTable;
use crate::schedule::{self, Schedule, ScheduleError, Trigger};
use crate::sip::limit::RateLimit;
use crate::sip::metrics::SipMetrics;
use crate::sip::redirect::ResponderConfig;
use crate::sip::{self, Bound, ServerConfig, Shared, TlsListen};

/// Why the redirector could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Sip(#[from] sip::Error),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// A running redirector.
pub(crate) struct Redirector {
    pub bound: Bound,
    pub store: Arc<MappingStore>,
    pub metrics: Arc<SipMetrics>,
    /// Send [`Trigger::Manual`] here to refresh now (SIGHUP).
    pub triggers: mpsc::Sender<Trigger>,
    schedule: Schedule,
}

/// Everything the metrics endpoint shows about the redirector.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MetricsSnapshot {
    pub sip: crate::sip::metrics::Snapshot,
    pub table_version: u64,
    pub table_entries: usize,
    pub refresh_ok: u64,
    pub refresh_failed: u64,
}

impl Redirector {
    /// Counters, table version and size, refresh outcomes.
    pub(crate) fn metrics(&self) -> MetricsSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let table = self.store.load();
        MetricsSnapshot {
            sip: self.metrics.snapshot(),
            table_version: table.version(),
            table_entries: table.len(),
            refresh_ok: self.store.refresh.ok.load(Relaxed),
            refresh_failed: self.store.refresh.failed.load(Relaxed),
        }
    }

    /// Stops the cron schedule (the tasks stop with the token).
    pub(crate) async fn stop_schedule(self) {
        self.schedule.stop().await;
    }
}

/// The server configuration from `[redirector]`.
pub(crate) fn server_config(settings: &Settings) -> ServerConfig {
    let r = &settings.redirector;
    ServerConfig {
        udp: r.udp,
        tcp: r.tcp,
        tls: r.tls.as_ref().map(|t| TlsListen {
            addr: t.listen,
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        responder: ResponderConfig {
            contact_port: r.contact_port,
            contact_transport: match r.contact_transport {
                ContactTransport::Udp => "udp",
                ContactTransport::Tcp => "tcp",
                ContactTransport::Tls => "tls",
            },
            server: r.server_header.clone(),
        },
        max_message_size: r.max_message_size as usize,
        tcp_max_connections: r.tcp_max_connections as usize,
        tcp_idle_timeout: r.tcp_idle_timeout,
        rate_limit: r.rate_limit.map(|l| RateLimit {
            requests: l.requests,
            window: l.window,
        }),
        udp_workers: r.udp_workers as usize,
    }
}

/// The table to start with: the cache, or empty (with a warning saying why).
pub(crate) fn initial_table(settings: &Settings) -> MappingTable {
    let mut dropped = Vec::new();
    let table = match cache::load(&settings.state.dir, settings, &mut dropped) {
        Ok(Some(t)) => {
            info!(
                version = t.version(),
                entries = t.len(),
                "serving the last-known-good mapping table until the first refresh"
            );
            t
        }
        Ok(None) => {
            warn!(
                path = %cache::path(settings).display(),
                "no cached mapping table: starting empty (every request gets 404) until the first refresh"
            );
            MappingTable::empty(chrono::Utc::now())
        }
        Err(e) => {
            // A warning, not an error: the redirector works, and the first refresh rebuilds
            // the table and replaces the file.
            warn!("{e}; starting with an empty table until the first refresh");
            MappingTable::empty(chrono::Utc::now())
        }
    };
    for d in dropped {
        warn!("cached mapping dropped: {d}");
    }
    table
}

/// Starts listeners, schedule and refresh worker on `tracker`; everything stops with `token`.
pub(crate) async fn start(
    settings: Arc<Settings>,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Redirector, Error> {
    let store = Arc::new(MappingStore::new(initial_table(&settings)));
    let metrics = Arc::new(SipMetrics::default());
    let config = server_config(&settings);
    let shared = Arc::new(Shared::new(
        Arc::clone(&store),
        Arc::clone(&metrics),
        config.responder.clone(),
        config.rate_limit,
    ));
    let bound = sip::start(&config, shared, token, tracker).await?;

    let (tx, rx) = schedule::channel();
    let _ = tx.try_send(Trigger::Startup);
    let schedule = Schedule::start(&settings.schedule.cron, tx.clone()).await?;
    let worker_token = token.child_token();
    let worker_store = Arc::clone(&store);
    tracker.spawn(refresh_worker(settings, worker_store, rx, worker_token));
    Ok(Redirector {
        bound,
        store,
        metrics,
        triggers: tx,
        schedule,
    })
}

/// Owns every refresh; one at a time; stops between refreshes when cancelled.
async fn refresh_worker(
    settings: Arc<Settings>,
    store: Arc<MappingStore>,
    mut rx: mpsc::Receiver<Trigger>,
    token: CancellationToken,
) {
    let mut reported_findings = None;
    loop {
        let trigger = tokio::select! {
            _ = token.cancelled() => break,
            t = rx.recv() => match t { Some(t) => t, None => break },
        };
        let outcome = tokio::select! {
            _ = token.cancelled() => break,
            r = refresh::refresh(&store, &settings, chrono::Utc::now()) => r,
        };
        match outcome {
            Ok(done) => {
                if done.changed {
                    info!(
                        ?trigger,
                        version = done.table.version(),
                        entries = done.table.len(),
                        "published mapping table"
                    );
                } else {
                    tracing::debug!(
                        ?trigger,
                        version = done.table.version(),
                        "mapping table unchanged"
                    );
                }
                // Findings are repeated only when they change, not on every tick.
                if reported_findings.as_ref() != Some(&done.findings) {
                    for f in &done.findings {
                        warn!(kind = %f.kind, dn = %f.dn, "{}", f.reason);
                    }
                    reported_findings = Some(done.findings);
                }
                if let Some(e) = done.cache_error {
                    error!("cannot save the last-known-good mapping table: {e}");
                }
            }
            Err(e) => error!(?trigger, "{e}"),
        }
    }
}
