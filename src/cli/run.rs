//! `pcsync run`: the long-running agent (scheduled reconcile, live watch, redirector, health
//! and metrics, writer lease) until SIGINT or SIGTERM. See [`crate::daemon`].
//!
//! Exit codes: 0 after a graceful stop, 1 when it cannot start (configuration, a listener) or
//! when a worker died more than `[daemon] max_restarts` times within `restart_window`.

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
    match daemon::run(cli.config.clone(), settings, Role::Agent).await {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e),
    }
}
