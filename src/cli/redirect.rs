//! `pcsync redirect`: the SIP redirect server alone, until SIGINT or SIGTERM: the same
//! supervised listeners, refresh worker and cron schedule as `pcsync run` ([`crate::daemon`]),
//! without scheduled runs, watch, lease or HTTP.
//!
//! Serves from the last-known-good table at once and refreshes it from the directory at
//! start-up and on the `[schedule] cron` schedule (UTC). SIGHUP reloads the configuration (the
//! table is rebuilt at once, listeners move if their address changed). Exits 0 after a
//! graceful stop, 1 when a listener cannot start or a worker kept dying.

use crate::cli::{Cli, load_settings, report_error};
use crate::daemon::{self, Role};
use crate::exit;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(super) async fn run(cli: &Cli, _args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match daemon::run(cli.config.clone(), settings, Role::Redirector).await {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
