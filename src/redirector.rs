//! The redirector's shared state: the published table (starting from the last-known-good
//! cache), the SIP counters, and what every SIP transport shares. `pcsync redirect` and
//! `pcsync run` both build one; the tasks that serve and refresh it are the daemon's
//! ([`crate::daemon`]).
//!
//! Start-up never waits for the directory: the table comes from the cache (or starts empty, said
//! loudly), and the first refresh runs in the background.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{ContactTransport, Settings};
use crate::mapping::cache;
use crate::mapping::store::MappingStore;
use crate::mapping::table::MappingTable;
use crate::sip::limit::RateLimit;
use crate::sip::metrics::SipMetrics;
use crate::sip::redirect::ResponderConfig;
use crate::sip::{ServerConfig, Shared, TlsListen};

/// The redirector's state.
pub(crate) struct Redirector {
    pub store: Arc<MappingStore>,
    pub metrics: Arc<SipMetrics>,
    /// What the SIP transports share (table, counters, responder configuration).
    pub sip: Arc<Shared>,
}

/// Everything the metrics endpoint shows about the redirector.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct MetricsSnapshot {
    pub sip: crate::sip::metrics::Snapshot,
    pub table_version: u64,
    pub table_entries: usize,
    pub refresh_ok: u64,
    pub refresh_failed: u64,
}

impl Redirector {
    /// The state to serve `settings` with: the cached table, zeroed counters.
    pub(crate) fn new(settings: &Settings) -> Redirector {
        let store = Arc::new(MappingStore::new(initial_table(settings)));
        let metrics = Arc::new(SipMetrics::default());
        let config = server_config(settings);
        let sip = Arc::new(Shared::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            config.responder,
            config.rate_limit,
        ));
        Redirector {
            store,
            metrics,
            sip,
        }
    }

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
