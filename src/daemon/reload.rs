//! SIGHUP: the configuration is read again, built completely ([`config::load`]: file and
//! environment, validated whole), and only then handed to every worker at once through the
//! settings channel ([`Daemon::settings`]). Each worker takes it at its next step:
//!
//! - the scheduled runs and the table refresh connect with it from their next run or refresh
//!   (new credentials, container, pools, safety; the refresh runs at once);
//! - the cron schedule from its next occurrence;
//! - the watch and the lease reconnect with it now (a new `lease_dn` releases the old lease);
//! - the listeners move when their address changes (the new socket is bound before the old one
//!   closes; a failed bind leaves the old one serving) and take new limits otherwise;
//! - SIP answers (`contact_*`, `server_header`, `rate_limit`) change from the next message.
//!
//! An invalid configuration is logged line by line and the one in force stays.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::Daemon;
use crate::config;
use crate::redirector::server_config;
use crate::schedule::Trigger;

/// Loads the configuration again and, when valid, hands it to every worker.
pub(crate) fn reload(daemon: &Daemon, path: &Path) {
    let new = match config::load(path) {
        Ok(new) => new,
        Err(e) => {
            for line in e.lines() {
                error!("configuration reload rejected: {line}");
            }
            warn!("keeping the configuration in force");
            return;
        }
    };
    let sip = server_config(&new);
    daemon
        .redirector
        .sip
        .configure(&sip.responder, sip.rate_limit);
    daemon.settings.send_replace(Arc::new(new));
    // The table is rebuilt at once with the new settings (pools, container, credentials).
    let _ = daemon.refresh.try_send(Trigger::Reload);
    info!(path = %path.display(), "configuration reloaded");
}
