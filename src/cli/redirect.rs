//! `pcsync redirect`: the SIP redirect server alone, until SIGINT or SIGTERM.
//!
//! Serves from the last-known-good table at once and refreshes it from the directory at
//! start-up, on the `[schedule] cron` schedule (UTC) and on SIGHUP. Exits 0 after a graceful
//! stop, 1 when a listener cannot start.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::cli::{Cli, load_settings, report_error};
use crate::exit;
use crate::redirector;
use crate::schedule::Trigger;
use crate::shutdown;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(super) async fn run(cli: &Cli, _args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => Arc::new(s),
        Err(code) => return code,
    };
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let redirector = match redirector::start(Arc::clone(&settings), &root, &tracker).await {
        Ok(r) => r,
        Err(e) => {
            root.cancel();
            shutdown::drain(&tracker, shutdown::GRACE_PERIOD).await;
            return report_error(&e);
        }
    };
    let b = &redirector.bound;
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    info!(
        udp = %show(b.udp),
        tcp = %show(b.tcp),
        tls = %show(b.tls),
        version = redirector.store.load().version(),
        "redirect server ready"
    );
    // SIGHUP: refresh now (coalesces with a pending refresh).
    let hup_token = root.child_token();
    let triggers = redirector.triggers.clone();
    tracker.spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = hup_token.cancelled() => break,
                s = hup.recv() => {
                    if s.is_none() { break; }
                    let _ = triggers.try_send(Trigger::Manual);
                }
            }
        }
    });
    shutdown::cancel_on_signal(root.clone()).await;
    redirector.stop_schedule().await;
    shutdown::drain(&tracker, shutdown::GRACE_PERIOD).await;
    exit::OK
}
