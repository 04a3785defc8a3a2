//! SIGHUP: the configuration file is read again and, when valid, replaces the one in force.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::Daemon;
use crate::config;

/// Loads the configuration again. A valid one replaces the current one whole (returns the new
/// cron expression when it changed); an invalid one is logged and ignored.
pub(crate) fn reload(daemon: &Daemon, path: &Path) -> Option<String> {
    match config::load(path) {
        Ok(new) => {
            let old = daemon.settings.load_full();
            let cron_changed = old.schedule.cron != new.schedule.cron;
            for (what, same) in [
                (
                    "redirector",
                    format!("{:?}", old.redirector) == format!("{:?}", new.redirector),
                ),
                ("http", old.http.listen == new.http.listen),
                (
                    "pools",
                    format!("{:?}", old.pools) == format!("{:?}", new.pools),
                ),
                (
                    "daemon.lease_dn",
                    old.daemon.lease_dn == new.daemon.lease_dn,
                ),
            ] {
                if !same {
                    warn!(
                        section = what,
                        "changed in the reloaded configuration; takes effect at the next restart"
                    );
                }
            }
            let cron = new.schedule.cron.clone();
            daemon.settings.store(Arc::new(new));
            info!(path = %path.display(), "configuration reloaded");
            cron_changed.then_some(cron)
        }
        Err(e) => {
            for line in e.lines() {
                error!("configuration reload rejected: {line}");
            }
            warn!("keeping the configuration in force");
            None
        }
    }
}
