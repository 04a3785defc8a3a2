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

pub(crate) mod adwatch;
pub(crate) mod http;
pub(crate) mod lease;
pub(crate) mod status;
pub(crate) mod syncwatch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::audit;
use crate::config::{self, Settings, WatchMode};
use crate::estate::{self, Replication, WriteServer};
use crate::ldap::Directory;
use crate::lock::{LockError, RunLock};
use crate::plan::Plan;
use crate::reconcile::{self, ApplyOptions, Blocked, RunEnd, RunError, Stopped};
use crate::redirector::{self, Redirector};
use crate::schedule::{self, Schedule, Trigger};
use crate::shutdown;
use status::{LastRun, ReplicationState, RunOutcome, Shared, stamp};

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

/// Runs the agent until SIGTERM/SIGINT. Returns the process exit code.
pub(crate) async fn run(config_path: PathBuf, settings: Settings) -> Result<(), Error> {
    let settings = Arc::new(settings);
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let instance = settings
        .daemon
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", audit::host_name(), std::process::id()));

    let redirector =
        match redirector::start(Arc::clone(&settings), &root.child_token(), &tracker).await {
            Ok(r) => r,
            Err(e) => {
                root.cancel();
                shutdown::drain(&tracker, settings.daemon.grace_period).await;
                return Err(e.into());
            }
        };
    let daemon = Arc::new(Daemon {
        settings: ArcSwap::new(Arc::clone(&settings)),
        status: Shared::new(
            Utc::now(),
            instance.clone(),
            settings.daemon.lease_dn.is_some(),
        ),
        redirector,
        instance,
    });

    let http_addr = match settings.http.listen {
        Some(addr) => match http::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                tracker.spawn(http::serve(
                    listener,
                    Arc::clone(&daemon),
                    root.child_token(),
                ));
                Some(bound)
            }
            Err(source) => {
                root.cancel();
                shutdown::drain(&tracker, settings.daemon.grace_period).await;
                return Err(Error::Http { addr, source });
            }
        },
        None => None,
    };

    let (tx, rx) = schedule::channel();
    let _ = tx.try_send(Trigger::Startup);
    let mut cron = match Schedule::start(&settings.schedule.cron, tx.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            root.cancel();
            shutdown::drain(&tracker, settings.daemon.grace_period).await;
            return Err(e.into());
        }
    };
    let worker_task = tracker.spawn(worker(Arc::clone(&daemon), rx, root.child_token()));
    tracker.spawn(watch(Arc::clone(&daemon), root.child_token()));
    // Not a child of root: the lease is released only after the worker's last swap is done,
    // so no other instance can start writing while this one still is.
    let lease_token = CancellationToken::new();
    tracker.spawn(lease_task(Arc::clone(&daemon), lease_token.clone()));

    let b = &daemon.redirector.bound;
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    info!(
        udp = %show(b.udp),
        tcp = %show(b.tcp),
        tls = %show(b.tls),
        http = %show(http_addr),
        instance = %daemon.instance,
        cron = %settings.schedule.cron,
        auto_apply = settings.safety.auto_apply,
        "pcsync run ready"
    );

    // Signals: SIGHUP reloads; SIGINT/SIGTERM end the loop.
    let stop = tokio::spawn(shutdown::cancel_on_signal(root.clone()));
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = root.cancelled() => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                if let Some(new_cron) = reload(&daemon, &config_path) {
                    if let Some(old) = cron.take() {
                        old.stop().await;
                    }
                    match Schedule::start(&new_cron, tx.clone()).await {
                        Ok(s) => cron = Some(s),
                        Err(e) => error!("{e}; scheduled runs stop until the next reload"),
                    }
                }
                let _ = daemon.redirector.triggers.try_send(Trigger::Manual);
            }
        }
    }
    let _ = stop.await;
    if let Some(c) = cron.take() {
        c.stop().await;
    }
    let grace = daemon.settings.load().daemon.grace_period;
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, worker_task)
        .await
        .is_err()
    {
        warn!("the scheduled run did not finish within the grace period");
    }
    lease_token.cancel();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if shutdown::drain(&tracker, left.max(Duration::from_secs(1))).await {
        info!("stopped");
    }
    Ok(())
}

/// Loads the configuration again. A valid one replaces the current one whole (returns the new
/// cron expression when it changed); an invalid one is logged and ignored.
fn reload(daemon: &Daemon, path: &std::path::Path) -> Option<String> {
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

// === the scheduled reconcile worker ===

/// Owns every scheduled run, one at a time. Cancellation is noticed between runs; a run in
/// progress receives the token and stops between swaps.
async fn worker(daemon: Arc<Daemon>, mut rx: mpsc::Receiver<Trigger>, token: CancellationToken) {
    // The fingerprint of the last pending plan recorded in the audit log, so an unchanged
    // pending plan is recorded once, not at every tick.
    let mut recorded_pending: Option<String> = None;
    loop {
        // Biased: when a stop and a pending tick are both ready, the stop wins.
        let trigger = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            t = rx.recv() => match t { Some(t) => t, None => break },
        };
        if token.is_cancelled() {
            break;
        }
        let settings = daemon.settings.load_full();
        let started = Utc::now();
        let run_id = audit::new_run_id(started, reconcile::random_u32());
        let span = info_span!("run", run_id = %run_id, trigger = ?trigger);
        let result = run_once(&daemon, &settings, &token, &mut recorded_pending)
            .instrument(span.clone())
            .await;
        let finished = Utc::now();
        // The run's status, from how it ended (RunEnd::outcome), in this one place.
        let outcome = result.outcome();
        let message = result.message();
        let applied = result.applied();
        span.in_scope(|| match outcome {
            RunOutcome::Failed | RunOutcome::Blocked => warn!(
                outcome = outcome.as_str(),
                message = message.as_deref().unwrap_or(""),
                "scheduled run finished"
            ),
            _ => info!(
                outcome = outcome.as_str(),
                applied,
                pending = result.pending,
                "scheduled run finished"
            ),
        });
        daemon.status.update(|s| {
            *s.runs.entry(outcome).or_insert(0) += 1;
            s.changes_applied_total += applied;
            if outcome != RunOutcome::Standby {
                s.pending_changes = result.pending;
            }
            if matches!(
                outcome,
                RunOutcome::InSync | RunOutcome::Pending | RunOutcome::Applied
            ) {
                s.last_success_at = Some(finished);
                s.last_success = Some(stamp(finished));
            }
            s.last_run = Some(LastRun {
                run_id: result.audit_run_id.clone().unwrap_or(run_id),
                started_at: stamp(started),
                finished_at: stamp(finished),
                outcome,
                trigger: format!("{trigger:?}").to_lowercase(),
                message,
                changes_applied: applied,
                changes_pending: result.pending,
            });
            if let Some(r) = &result.replication {
                s.replication = Some(ReplicationState::new(r, finished));
            }
        });
    }
}

/// The result of one scheduled run.
struct RunResult {
    /// How the run ended; `None` when this instance is on standby (not the lease holder).
    end: Option<RunEnd>,
    /// Changes planned and not applied.
    pending: u64,
    /// The run id in the audit log, when the run wrote to it.
    audit_run_id: Option<String>,
    /// How many DCs held the run's writes when it ended (Active Directory, after writes).
    replication: Option<Replication>,
}

impl RunResult {
    fn new(end: RunEnd) -> RunResult {
        RunResult {
            end: Some(end),
            pending: 0,
            audit_run_id: None,
            replication: None,
        }
    }

    fn failed(e: impl Into<RunError>) -> RunResult {
        RunResult::new(RunEnd::Failed(e.into()))
    }

    fn outcome(&self) -> RunOutcome {
        self.end
            .as_ref()
            .map_or(RunOutcome::Standby, RunEnd::outcome)
    }

    fn message(&self) -> Option<String> {
        match &self.end {
            Some(RunEnd::Pending) => Some(format!(
                "{} change(s) pending approval (safety.auto_apply = false): review with `pcsync reconcile`, apply with `pcsync reconcile --apply`",
                self.pending
            )),
            Some(end) => end.message(),
            None => None,
        }
    }

    fn applied(&self) -> u64 {
        match &self.end {
            Some(RunEnd::Applied(report)) => report.applied as u64,
            _ => 0,
        }
    }
}

async fn run_once(
    daemon: &Daemon,
    settings: &Settings,
    token: &CancellationToken,
    recorded_pending: &mut Option<String>,
) -> RunResult {
    if !daemon.status.update(|s| s.lease.writer) {
        debug!("not the lease holder: no run");
        return RunResult {
            end: None,
            pending: 0,
            audit_run_id: None,
            replication: None,
        };
    }
    // A run may write, so it works on the write server only, never failing over.
    let (mut dir, writer) = match estate::writer::open(&settings.directory).await {
        Ok(opened) => opened,
        Err(e) => {
            daemon
                .status
                .directory(false, Some(e.to_string()), Utc::now());
            return RunResult::failed(e);
        }
    };
    daemon.status.directory(true, None, Utc::now());
    let result = run_connected(settings, &mut dir, &writer, token, recorded_pending).await;
    dir.close().await;
    result
}

async fn run_connected(
    settings: &Settings,
    dir: &mut Directory,
    writer: &WriteServer,
    token: &CancellationToken,
    recorded_pending: &mut Option<String>,
) -> RunResult {
    if let Err(e) = dir.require_schema().await {
        return RunResult::failed(e);
    }
    // A cheap look first: most runs find nothing to do and then write nothing, not even to the
    // audit log (a 1-second cron would otherwise add records every second).
    let unfinished = match audit::unfinished_in(&settings.audit.path) {
        Ok(open) => !open.is_empty(),
        Err(e) => return RunResult::failed(e),
    };
    let plan = match reconcile::compute(settings, dir, None).await {
        Ok(plan) => plan,
        Err(Stopped::Failed(e)) => return RunResult::new(RunEnd::Failed(e)),
        Err(Stopped::Blocked(b)) => return blocked_plan(settings, dir, b),
    };
    if plan.is_in_sync() && !unfinished {
        *recorded_pending = None;
        return RunResult::new(RunEnd::InSync);
    }
    if !settings.safety.auto_apply {
        return pending(settings, dir, &plan, recorded_pending);
    }
    // Writes from here on: the run lock keeps a one-shot `pcsync reconcile --apply` (or
    // `restore`) on this host out, and this run out of theirs.
    let _lock = match RunLock::acquire(&settings.state.dir) {
        Ok(l) => l,
        Err(e @ LockError::Busy { .. }) => {
            return RunResult::new(RunEnd::Blocked(vec![Blocked::Locked(e)]));
        }
        Err(e) => return RunResult::new(RunEnd::Failed(RunError::Lock(e))),
    };
    let origin = format!("pcsync run (scheduled, auto_apply); write server {writer}");
    let opts = ApplyOptions {
        origin: &origin,
        write_server: Some(writer),
        ..ApplyOptions::default()
    };
    let run = match reconcile::audited_apply(settings, dir, &opts, token).await {
        Ok(run) => run,
        Err(e) => return RunResult::failed(e),
    };
    let mut result = RunResult::new(run.end);
    if let Some(plan) = &run.plan
        && result.outcome() == RunOutcome::Blocked
    {
        result.pending = plan.summary.ready as u64;
    }
    result.audit_run_id = Some(run.run_id);
    result.replication = run.replication;
    *recorded_pending = None;
    result
}

/// `auto_apply = false`: record the pending plan (once per distinct plan) and report it.
fn pending(
    settings: &Settings,
    dir: &Directory,
    plan: &Plan,
    recorded: &mut Option<String>,
) -> RunResult {
    let mut result = RunResult::new(RunEnd::Pending);
    result.pending = plan.summary.ready as u64;
    if recorded.as_deref() == Some(plan.fingerprint.as_str()) {
        return result;
    }
    // Appending to the audit log needs the run lock, like any writer of it.
    let _lock = match RunLock::acquire(&settings.state.dir) {
        Ok(l) => l,
        Err(e) => {
            warn!("pending plan not recorded this time: {e}");
            return result;
        }
    };
    match reconcile::record_pending(settings, dir.bound_as(), plan) {
        Ok(id) => {
            info!(audit_run_id = %id, pending = result.pending, "pending plan recorded in the audit log");
            *recorded = Some(plan.fingerprint.clone());
            result.audit_run_id = Some(id);
        }
        Err(e) => result.end = Some(RunEnd::Failed(e.into())),
    }
    result
}

/// A guard stopped planning (an empty search): audited like any guard block.
fn blocked_plan(settings: &Settings, dir: &Directory, guard: Blocked) -> RunResult {
    let reason = guard.to_string();
    let mut result = RunResult::new(RunEnd::Blocked(vec![guard]));
    match RunLock::acquire(&settings.state.dir) {
        Ok(_lock) => match reconcile::record_blocked(settings, dir.bound_as(), &reason) {
            Ok(id) => result.audit_run_id = Some(id),
            Err(e) => warn!("cannot audit the blocked run: {e}"),
        },
        Err(e) => warn!("blocked run not audited this time: {e}"),
    }
    result
}

// === the live watch ===

/// Keeps the table current between ticks, with the cheapest mechanism the server allows
/// ([`adwatch::choose`]); `/healthz` `watch.mode` and `/metrics` `pcsync_watch_mode` say which:
///
/// - `syncrepl` ([`syncwatch`], `watch = "auto"` where advertised): a refresh per change,
///   within a second;
/// - `dirsync` / `usn-polling` ([`adwatch`], `watch = "auto"` on Active Directory, DirSync
///   where the account has the right): every `poll_interval` one small search (a DirSync from
///   the cookie, or a root DSE read and a container listing only when the DC's USN moved), a
///   refresh only when the endpoint container changed;
/// - `poll` (`watch = "poll"`, or a server with neither): a refresh (a whole endpoint-container
///   rescan, built, validated and published by the redirector's own worker; a version changes
///   only when entries do) every `poll_interval`. The refresh outcomes tell whether the
///   directory is reachable; regaining it counts as a reconnect.
async fn watch(daemon: Arc<Daemon>, token: CancellationToken) {
    use adwatch::Mechanism;
    use std::sync::atomic::Ordering::Relaxed;
    let settings = daemon.settings.load_full();
    let mode = settings.daemon.watch;
    let interval = settings.daemon.poll_interval;
    let (mechanism, state) = if mode == WatchMode::Off {
        (Mechanism::Off, "off")
    } else {
        (Mechanism::Poll, "starting")
    };
    daemon.status.update(|s| {
        s.watch.mode = mechanism.as_str();
        s.watch.interval_ms = interval.as_millis() as u64;
        s.watch.state = state;
    });
    if mode == WatchMode::Off {
        return;
    }
    if mode == WatchMode::Auto {
        daemon
            .status
            .update(|s| s.watch.mode = Mechanism::Syncrepl.as_str());
        match syncwatch::run(Arc::clone(&daemon), token.clone()).await {
            syncwatch::Outcome::Stopped => return,
            syncwatch::Outcome::Unsupported => {}
        }
        // adwatch names the mechanism (dirsync or usn-polling) once it has connected.
        daemon
            .status
            .update(|s| s.watch.mode = Mechanism::UsnPolling.as_str());
        match adwatch::run(Arc::clone(&daemon), token.clone()).await {
            adwatch::Outcome::Stopped => return,
            adwatch::Outcome::Unsupported => {
                info!(
                    "neither syncrepl (not advertised, or LDAP 12: no syncprov on the database) nor uSNChanged (not Active Directory): the watch polls instead"
                );
                daemon
                    .status
                    .update(|s| s.watch.mode = Mechanism::Poll.as_str());
            }
        }
    }
    let counters = &daemon.redirector.store.refresh;
    let mut last = (counters.ok.load(Relaxed), counters.failed.load(Relaxed));
    let mut was_failing = false;
    // While the directory is unreachable, attempts back off from reconnect_min to
    // reconnect_max (doubling) instead of hammering it every poll.
    let (backoff_min, backoff_max) = (settings.daemon.reconnect_min, settings.daemon.reconnect_max);
    let mut backoff = backoff_min;
    let mut next_attempt = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = (counters.ok.load(Relaxed), counters.failed.load(Relaxed));
        let (ok, failed) = (now.0 > last.0, now.1 > last.1);
        last = now;
        if ok || failed {
            // The latest outcome wins when both moved.
            let failing = failed && !ok;
            if was_failing && !failing {
                info!("directory reachable again: watch resumed");
                daemon.status.update(|s| s.watch.reconnects += 1);
            } else if failing && !was_failing {
                warn!(
                    "watch: directory unreachable, serving the current table; retrying every {interval:?}"
                );
            }
            was_failing = failing;
            if failing {
                next_attempt = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(backoff_max);
            } else {
                backoff = backoff_min;
            }
            daemon.status.update(|s| {
                s.watch.state = if failing { "failing" } else { "ok" };
            });
            daemon.status.directory(!failing, None, Utc::now());
        }
        if tokio::time::Instant::now() < next_attempt {
            continue;
        }
        // Full = a refresh is pending already; this poll coalesces into it.
        let _ = daemon.redirector.triggers.try_send(Trigger::Manual);
    }
}

/// Reconnect bookkeeping of a watch that keeps its own connection (syncrepl, the AD watch):
/// one warning per outage (then debug), `watch.state` and the directory state, a wait that
/// doubles from `reconnect_min` to `reconnect_max`, and the reconnect count.
pub(crate) struct Reconnect {
    /// Names the watch in the log ("syncrepl watch", "AD watch").
    name: &'static str,
    failing: bool,
    backoff: Duration,
    min: Duration,
    max: Duration,
}

impl Reconnect {
    pub(crate) fn new(name: &'static str, settings: &Settings) -> Reconnect {
        Reconnect {
            name,
            failing: false,
            backoff: settings.daemon.reconnect_min,
            min: settings.daemon.reconnect_min,
            max: settings.daemon.reconnect_max,
        }
    }

    /// The watch is connected (again): counts a reconnect after an outage, resets the wait.
    pub(crate) fn connected(&mut self, daemon: &Daemon) {
        if self.failing {
            info!("directory reachable again: {} resumed", self.name);
            daemon.status.update(|s| s.watch.reconnects += 1);
        }
        self.failing = false;
        self.backoff = self.min;
        daemon.status.update(|s| s.watch.state = "connected");
        daemon.status.directory(true, None, Utc::now());
    }

    /// The connection was lost (or never made) for `reason`.
    pub(crate) fn lost(&mut self, daemon: &Daemon, reason: String) {
        if !self.failing {
            warn!(
                "{}: {reason}; serving the current table, reconnecting in {:?}",
                self.name, self.backoff
            );
        } else {
            debug!("{}: {reason}", self.name);
        }
        self.failing = true;
        daemon.status.update(|s| s.watch.state = "failing");
        daemon.status.directory(false, Some(reason), Utc::now());
    }

    /// Waits before the next attempt; `false` when cancelled meanwhile.
    pub(crate) async fn wait(&mut self, token: &CancellationToken) -> bool {
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(self.backoff) => {}
        }
        self.backoff = (self.backoff * 2).min(self.max);
        true
    }
}

// === the writer lease ===

async fn lease_task(daemon: Arc<Daemon>, token: CancellationToken) {
    let settings = daemon.settings.load_full();
    let Some(dn) = settings.daemon.lease_dn.clone() else {
        return;
    };
    let duration = settings.daemon.lease_duration;
    let renew = settings.daemon.lease_renew;
    let mut dir: Option<Directory> = None;
    let mut ticker = tokio::time::interval(renew);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if dir.is_none() {
            // The lease lives on the write server like every other write: two instances that
            // each swapped it on a different DC would both win until replication.
            match estate::writer::open(&settings.directory).await {
                Ok((d, _)) => dir = Some(d),
                Err(e) => {
                    lease_lost(&daemon, &format!("lease: {e}"));
                    continue;
                }
            }
        }
        let Some(d) = dir.as_mut() else { continue };
        let now = Utc::now();
        match lease::tick(d, &dn, &daemon.instance, now, duration).await {
            Ok(seen) => {
                let was = daemon.status.update(|s| s.lease.writer);
                let writer = seen.mine && seen.lease.as_ref().is_some_and(|l| l.expires > now);
                if writer != was {
                    info!(writer, holder = ?seen.lease.as_ref().map(|l| &l.holder), "lease changed hands");
                }
                daemon.status.update(|s| {
                    s.lease.writer = writer;
                    s.lease.holder = seen.lease.as_ref().map(|l| l.holder.clone());
                    s.lease.expires = seen.lease.as_ref().map(|l| stamp(l.expires));
                });
            }
            Err(e) => {
                lease_lost(&daemon, &format!("lease {dn}: {e}"));
                if let Some(d) = dir.take() {
                    d.close().await;
                }
            }
        }
    }
    // Hand the lease over at once rather than letting it expire.
    if let Some(d) = dir.as_mut()
        && daemon.status.update(|s| s.lease.writer)
    {
        let released = tokio::time::timeout(
            Duration::from_secs(2),
            lease::release(d, &dn, &daemon.instance, Utc::now()),
        )
        .await;
        if let Ok(Err(e)) = released {
            warn!("cannot release lease {dn}: {e}");
        }
        daemon.status.update(|s| s.lease.writer = false);
    }
    if let Some(d) = dir {
        d.close().await;
    }
}

/// Without a renewed lease this instance stops writing; it keeps serving redirects.
fn lease_lost(daemon: &Daemon, msg: &str) {
    let was = daemon.status.update(|s| {
        let was = s.lease.writer;
        // Writing stops as soon as the lease cannot be confirmed, even if it has time left.
        s.lease.writer = false;
        was
    });
    if was {
        warn!("{msg}; no longer the writer");
    } else {
        debug!("{msg}");
    }
}
