//! The supervised task tree: every long-lived task of the agent has a [`TaskName`] and runs
//! under [`Tree::spawn`], which notices when it ends.
//!
//! A task ends normally only when its token is cancelled (the agent is stopping). Any other end
//! is a death: a panic (the message is logged with the task's name) or a return nobody asked
//! for. The supervisor then
//! 1. logs it and marks the worker `restarting` (so `/healthz` answers 503 `degraded`, naming
//!    it);
//! 2. stops this instance writing at once and wakes the lease loop, which gives the writer lease
//!    up so a standby instance takes over (an instance missing a worker must not keep the lease
//!    while doing nothing);
//! 3. restarts the task after the [`Backoff`] wait (`reconnect_min`, doubling up to
//!    `reconnect_max`; back to the minimum once the task has lived longer than the maximum);
//! 4. gives up after `[daemon] max_restarts` deaths of one task within `restart_window`: it
//!    records why and cancels the root, so the agent stops like on SIGTERM and exits 1, and the
//!    service manager (systemd `Restart=on-failure`) starts a fresh process.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::Daemon;
use super::backoff::Backoff;
pub(crate) use super::status::TaskName;

/// Why the agent gave up: a task died more often than the restart policy allows.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "worker {task} died {deaths} times within {window:?} ([daemon] max_restarts = {max_restarts}), last: {reason}; stopping so the service manager restarts pcsync"
)]
pub(crate) struct GaveUp {
    pub task: TaskName,
    pub deaths: usize,
    pub max_restarts: u32,
    pub window: Duration,
    pub reason: String,
}

/// Spawns and supervises the agent's tasks; cheap to clone.
#[derive(Clone)]
pub(crate) struct Tree {
    daemon: Arc<Daemon>,
    tracker: TaskTracker,
    root: CancellationToken,
    /// Set once, by the first task that exhausts its restarts; read by `run` after the stop.
    /// A mutex because any supervisor may set it; held only to copy or store.
    gave_up: Arc<Mutex<Option<GaveUp>>>,
}

impl Tree {
    pub(crate) fn new(daemon: Arc<Daemon>, tracker: TaskTracker, root: CancellationToken) -> Tree {
        Tree {
            daemon,
            tracker,
            root,
            gave_up: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `name` under supervision until `token` is cancelled. `work` makes the task from its
    /// token, once at start and again for every restart. The handle ends when the task has
    /// stopped for good.
    pub(crate) fn spawn<F, Fut>(
        &self,
        name: TaskName,
        token: CancellationToken,
        work: F,
    ) -> JoinHandle<()>
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker
            .spawn(self.clone().supervise(name, token, work))
    }

    /// Why the agent gave up, if it did.
    pub(crate) fn gave_up(&self) -> Option<GaveUp> {
        match self.gave_up.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn supervise<F, Fut>(self, name: TaskName, token: CancellationToken, mut work: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let status = &self.daemon.status;
        let mut backoff = Backoff::from_settings(&self.daemon.settings.borrow().daemon);
        let mut deaths: VecDeque<Instant> = VecDeque::new();
        loop {
            status.running(name, Utc::now());
            let started = Instant::now();
            let joined = self.tracker.spawn(work(token.clone())).await;
            if token.is_cancelled() {
                status.stopped(name, Utc::now());
                return;
            }
            let reason = death(joined);
            error!(worker = %name, "worker {name} {reason}");
            status.died(name, reason.clone(), Utc::now());
            // The lease loop gives the lease up now rather than at its next renewal.
            self.daemon.lease_wake.notify_one();

            let settings = self.daemon.settings.borrow().clone();
            let policy = &settings.daemon;
            let now = Instant::now();
            deaths.push_back(now);
            while deaths
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.restart_window)
            {
                deaths.pop_front();
            }
            if deaths.len() > policy.max_restarts as usize {
                self.give_up(GaveUp {
                    task: name,
                    deaths: deaths.len(),
                    max_restarts: policy.max_restarts,
                    window: policy.restart_window,
                    reason,
                });
                return;
            }
            // A task that lived longer than the longest wait was healthy in between: its next
            // restart waits the minimum again.
            if started.elapsed() > policy.reconnect_max {
                backoff = Backoff::from_settings(policy);
            }
            let wait = backoff.peek();
            warn!(
                worker = %name,
                "restarting worker {name} in {wait:?} (restart {} of {} allowed within {:?})",
                deaths.len(),
                policy.max_restarts,
                policy.restart_window
            );
            if !backoff.wait(&token).await {
                status.stopped(name, Utc::now());
                return;
            }
        }
    }

    fn give_up(&self, why: GaveUp) {
        error!("{why}");
        let mut slot = match self.gave_up.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if slot.is_none() {
            *slot = Some(why);
        }
        drop(slot);
        self.root.cancel();
    }
}

/// How a task that was not asked to stop ended, in words: its panic message, or that it
/// returned.
fn death(joined: Result<(), JoinError>) -> String {
    match joined {
        Ok(()) => "ended unexpectedly".to_string(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text payload".to_string());
            format!("panicked: {message}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

/// A failpoint that panics the task it is in (`--features failpoints`; a no-op without it):
/// `FAILPOINTS="panic-in-refresh=1*return"` kills the refresh worker once. The supervision tests
/// kill workers this way, independently of any bug.
pub(crate) fn panic_point(task: TaskName) {
    #[cfg(feature = "failpoints")]
    {
        let name = format!("panic-in-{task}");
        if fail::eval(&name, |_| ()).is_some() {
            panic!("failpoint {name}");
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = task;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_told_with_its_message_and_a_return_as_unexpected() {
        let panicked = tokio::spawn(async {
            if true {
                panic!("index out of bounds");
            }
        })
        .await;
        assert_eq!(death(panicked), "panicked: index out of bounds");
        let formatted = tokio::spawn(async {
            if true {
                panic!("bad {}", 42);
            }
        })
        .await;
        assert_eq!(death(formatted), "panicked: bad 42");
        assert_eq!(death(Ok(())), "ended unexpectedly");
    }
}
