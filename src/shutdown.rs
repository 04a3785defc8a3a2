//! Signals → cancellation: one root `CancellationToken`, a child per subsystem,
//! every task on one `TaskTracker`, and a grace period for them to finish.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Resolves on SIGINT or SIGTERM and cancels `root`. If the handlers cannot be installed, the
/// process can still be stopped with SIGKILL; the error is logged.
pub(crate) async fn cancel_on_signal(root: CancellationToken) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install SIGINT/SIGTERM handlers");
        return;
    };
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
