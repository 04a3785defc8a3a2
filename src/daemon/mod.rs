//! `pcsync run`: the long-running agent. One process, one root [`CancellationToken`] with a
//! child per subsystem, every task on one [`TaskTracker`]:
//!
//! - the redirector ([`crate::redirector`], unchanged): listeners, table, refresh worker;
//! - the scheduled reconcile worker: a cron tick only `try_send`s on a capacity-1 channel
//!   ([`crate::schedule`]), one worker owns each run, so runs never overlap and ticks that
//!   arrive during a run coalesce;
//! - the live watch ([`watch`]): triggers table refreshes between ticks;
//! - the lease task ([`lease`]): elects the one writer among instances;
//! - the HTTP server ([`http`]): `/healthz`, `/metrics`.
//!
//! SIGTERM/SIGINT cancel the root: the worker finishes the swap in flight (the executor checks
//! cancellation between swaps, never inside one) and records the run's end, then everything
//! gets `[daemon] grace_period` to stop. SIGHUP reloads the configuration: a valid one is used
//! from the next run on; an invalid one is logged, line by line, and the old one stays.

pub(crate) mod http;
pub(crate) mod lease;
pub(crate) mod metrics;
pub(crate) mod reload;
pub(crate) mod runs;
pub(crate) mod status;
pub(crate) mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::audit;
use crate::config::Settings;
use crate::redirector::{self, Redirector};
use crate::schedule::{self, Schedule, Trigger};
use crate::shutdown;
use status::Shared;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Redirector(#[from] redirector::Error),
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error("cannot listen for HTTP on {addr} (http.listen): {source}")]
    Http {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Everything the subsystems share.
pub(crate) struct Daemon {
    /// The configuration in force; replaced whole on a valid SIGHUP reload.
    pub settings: ArcSwap<Settings>,
    pub status: Shared,
    pub redirector: Redirector,
    /// This instance's name (lease holder id, health output).
    pub instance: String,
}

/// What [`start`] set going: the shared state and what the main loop and [`stop`] drive.
struct Started {
    daemon: Arc<Daemon>,
    http: Option<SocketAddr>,
    cron: Option<Schedule>,
    triggers: mpsc::Sender<Trigger>,
    /// The scheduled-run worker: the stop waits for it before releasing the lease.
    worker: tokio::task::JoinHandle<()>,
    /// Not a child of root: the lease is released only after the worker's last swap is done,
    /// so no other instance can start writing while this one still is.
    lease: CancellationToken,
}

/// Runs the agent until SIGTERM/SIGINT.
pub(crate) async fn run(config_path: PathBuf, settings: Settings) -> Result<(), Error> {
    let settings = Arc::new(settings);
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut started = match start(&settings, &root, &tracker).await {
        Ok(s) => s,
        Err(e) => {
            // Whatever started before the failure stops the same way as after a signal.
            root.cancel();
            shutdown::drain(&tracker, settings.daemon.grace_period).await;
            return Err(e);
        }
    };
    announce(&started, &settings);
    serve_until_stopped(&mut started, &root, &config_path).await;
    stop(started, &tracker).await;
    Ok(())
}

/// Binds the listeners (SIP, HTTP) and starts every task; an error leaves the caller to cancel
/// and drain what had started.
async fn start(
    settings: &Arc<Settings>,
    root: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Started, Error> {
    let instance = settings
        .daemon
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", audit::host_name(), std::process::id()));
    let redirector = redirector::start(Arc::clone(settings), &root.child_token(), tracker).await?;
    let daemon = Arc::new(Daemon {
        settings: ArcSwap::new(Arc::clone(settings)),
        status: Shared::new(
            Utc::now(),
            instance.clone(),
            settings.daemon.lease_dn.is_some(),
        ),
        redirector,
        instance,
    });
    let http = match settings.http.listen {
        Some(addr) => {
            let listener = http::bind(addr)
                .await
                .map_err(|source| Error::Http { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            tracker.spawn(http::serve(
                listener,
                Arc::clone(&daemon),
                root.child_token(),
            ));
            Some(bound)
        }
        None => None,
    };
    let (triggers, rx) = schedule::channel();
    let _ = triggers.try_send(Trigger::Startup);
    let cron = Schedule::start(&settings.schedule.cron, triggers.clone()).await?;
    let worker = tracker.spawn(runs::worker(Arc::clone(&daemon), rx, root.child_token()));
    tracker.spawn(watch::run(Arc::clone(&daemon), root.child_token()));
    let lease = CancellationToken::new();
    tracker.spawn(lease::run(Arc::clone(&daemon), lease.clone()));
    Ok(Started {
        daemon,
        http,
        cron: Some(cron),
        triggers,
        worker,
        lease,
    })
}

/// One line saying what listens where.
fn announce(started: &Started, settings: &Settings) {
    let b = &started.daemon.redirector.bound;
    let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    info!(
        udp = %show(b.udp),
        tcp = %show(b.tcp),
        tls = %show(b.tls),
        http = %show(started.http),
        instance = %started.daemon.instance,
        cron = %settings.schedule.cron,
        auto_apply = settings.safety.auto_apply,
        "pcsync run ready"
    );
}

/// Signals: SIGHUP reloads; SIGINT/SIGTERM cancel `root` and end the loop.
async fn serve_until_stopped(started: &mut Started, root: &CancellationToken, config: &Path) {
    let stop = tokio::spawn(shutdown::cancel_on_signal(root.clone()));
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = root.cancelled() => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                if let Some(new_cron) = reload::reload(&started.daemon, config) {
                    if let Some(old) = started.cron.take() {
                        old.stop().await;
                    }
                    match Schedule::start(&new_cron, started.triggers.clone()).await {
                        Ok(s) => started.cron = Some(s),
                        Err(e) => error!("{e}; scheduled runs stop until the next reload"),
                    }
                }
                let _ = started.daemon.redirector.triggers.try_send(Trigger::Manual);
            }
        }
    }
    let _ = stop.await;
}

/// The stop after a signal: the cron first, then the scheduled run gets the grace period to
/// finish its swap in flight, then the lease is released, then every other task drains.
async fn stop(started: Started, tracker: &TaskTracker) {
    if let Some(c) = started.cron {
        c.stop().await;
    }
    let grace = started.daemon.settings.load().daemon.grace_period;
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, started.worker)
        .await
        .is_err()
    {
        warn!("the scheduled run did not finish within the grace period");
    }
    started.lease.cancel();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if shutdown::drain(tracker, left.max(Duration::from_secs(1))).await {
        info!("stopped");
    }
}
