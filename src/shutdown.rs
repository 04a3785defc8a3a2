//! Signals → cancellation: one root `CancellationToken`, a child per subsystem,
//! every task on one `TaskTracker`, and a grace period for them to finish.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// A task that cancels `root` on SIGINT or SIGTERM. Its handlers are installed before this
/// returns, so a signal that comes at once is caught, not fatal. If they cannot be installed,
/// the process can still be stopped with SIGKILL; the error is logged.
pub(crate) fn spawn_cancel_on_signal(root: CancellationToken) -> JoinHandle<()> {
    let handlers = handlers();
    tokio::spawn(async move {
        if let Some(handlers) = handlers {
            cancel_when_signalled(handlers, root).await;
        }
    })
}

/// The SIGINT and SIGTERM streams; `None`, logged, when they cannot be installed.
fn handlers() -> Option<(Signal, Signal)> {
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => Some((int, term)),
        _ => {
            warn!("cannot install SIGINT/SIGTERM handlers");
            None
        }
    }
}

async fn cancel_when_signalled((mut int, mut term): (Signal, Signal), root: CancellationToken) {
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = root.cancelled() => return,
    };
    info!(signal = name, "stopping");
    root.cancel();
}

/// Closes `tracker` and waits up to `grace` for its tasks; returns whether all finished.
pub(crate) async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        true
    } else {
        warn!(
            remaining = tracker.len(),
            "tasks did not finish within the grace period"
        );
        false
    }
}
