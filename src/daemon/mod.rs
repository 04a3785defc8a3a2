//! `pcsync run` (the agent) and `pcsync redirect` (the redirector alone): one process, one tree
//! of named, supervised tasks ([`tree`]) under one root [`CancellationToken`], all on one
//! [`TaskTracker`]:
//!
//! ```text
//! root ─┬─ sip-udp, sip-tcp, sip-tls  listeners (listeners.rs): serve the published table
//!       ├─ refresh         rebuilds the table (refresh.rs), on cron, watch and reload triggers
//!       ├─ cron            the one schedule (crate::schedule): triggers refresh and scheduled-runs
//!       ├─ scheduled-runs  reconciles (runs.rs); one run at a time, never cut mid-swap   [run]
//!       │                  and, between runs, recounts replication (recount.rs)
//!       ├─ watch           keeps the table current between ticks (watch/)                [run]
//!       └─ http            /healthz and /metrics (http.rs)                               [run]
//! lease                    the writer lease (lease.rs); its own token, see below         [run]
//! ```
//!
//! Every task reads the configuration from one settings channel ([`Daemon::settings`]); SIGHUP
//! replaces it whole ([`reload`]) and each task takes the new one at its next step. A task that
//! dies is restarted by its supervisor and shown in `/healthz` ([`tree`]).
//!
//! SIGTERM/SIGINT cancel the root: the scheduled run finishes the swap in flight (the executor
//! checks cancellation between swaps, never inside one) and records the run's end; then the
//! lease, whose token is not the root's so that no other instance can start writing while this
//! one still is, is released; then everything gets the rest of `[daemon] grace_period`.

pub(crate) mod backoff;
pub(crate) mod http;
pub(crate) mod lease;
pub(crate) mod listeners;
pub(crate) mod metrics;
pub(crate) mod recount;
pub(crate) mod refresh;
pub(crate) mod reload;
pub(crate) mod runs;
pub(crate) mod status;
pub(crate) mod tree;
pub(crate) mod watch;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::audit;
use crate::config::Settings;
use crate::redirector::Redirector;
use crate::schedule::{self, Trigger};
use crate::shutdown;
use crate::sip;
use listeners::{Bound, Http, SipStream, SipUdp, Transport, bind_at_start, bound_addr};
use status::Shared;
use tree::{GaveUp, TaskName, Tree};

/// Why the agent could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A SIP listener could not bind, or its certificate could not be loaded.
    #[error(transparent)]
    Sip(sip::Error),
    /// The HTTP listener could not bind.
    #[error("cannot listen for HTTP on {addr} (http.listen): {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A worker kept dying.
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
}

/// Which tasks a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `pcsync run`: everything.
    Agent,
    /// `pcsync redirect`: the SIP listeners, the refresh worker and the cron schedule.
    Redirector,
}

/// What every task shares.
pub(crate) struct Daemon {
    /// The configuration in force. Why a watch channel: every task reads the current value at
    /// its next step without a lock, and the long-lived ones (watch, lease, listeners, cron)
    /// can wait for a change. Only [`reload`] sends.
    pub settings: tokio::sync::watch::Sender<Arc<Settings>>,
    pub status: Shared,
    pub redirector: Redirector,
    /// This instance's name (lease holder id, health output).
    pub instance: String,
    /// Triggers of the refresh worker (start-up, cron, the watch, a reload). Capacity 1, so
    /// triggers that arrive during a refresh coalesce into one more.
    pub refresh: mpsc::Sender<Trigger>,
    /// Wakes the lease loop when a worker dies, so the lease is given up at once.
    pub lease_wake: Notify,
    /// Where connection tasks (SIP, HTTP) run, so the shutdown grace period covers them.
    pub tracker: TaskTracker,
}

impl Daemon {
    /// The settings in force now (a copy of the pointer: never hold the channel's read guard
    /// across an `.await`).
    pub(crate) fn current(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.borrow())
    }
}

/// The listeners bound at start-up, before any task runs (an error there ends start-up).
struct Listeners {
    udp: Bound<SipUdp>,
    tcp: Bound<SipStream<false>>,
    tls: Bound<SipStream<true>>,
    http: Bound<Http>,
}

/// Runs `role` until SIGTERM/SIGINT, or until a worker has died too often.
pub(crate) async fn run(config_path: PathBuf, settings: Settings, role: Role) -> Result<(), Error> {
    let listeners = bind(&settings, role).await?;
    let tracker = TaskTracker::new();
    let (refresh_tx, refresh_rx) = schedule::channel();
    let instance = settings
        .daemon
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", audit::host_name(), std::process::id()));
    let lease = role == Role::Agent && settings.daemon.lease_dn.is_some();
    let daemon = Arc::new(Daemon {
        status: Shared::new(crate::clock::system(), instance.clone(), lease),
        instance,
        redirector: Redirector::new(&settings, crate::clock::system()),
        settings: tokio::sync::watch::Sender::new(Arc::new(settings)),
        refresh: refresh_tx,
        lease_wake: Notify::new(),
        tracker: tracker.clone(),
    });
    let root = CancellationToken::new();
    let tree = Tree::new(Arc::clone(&daemon), tracker.clone(), root.clone());
    announce(&daemon, &listeners, role);
    let running = spawn(&tree, &daemon, listeners, refresh_rx, role, &root);
    serve_until_stopped(&daemon, &root, &config_path).await;
    stop(&daemon, running, &tracker).await;
    match tree.gave_up() {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Binds every configured listener; nothing runs yet.
async fn bind(settings: &Settings, role: Role) -> Result<Listeners, Error> {
    Ok(Listeners {
        udp: bind_at_start::<SipUdp>(settings).await?,
        tcp: bind_at_start::<SipStream<false>>(settings).await?,
        tls: bind_at_start::<SipStream<true>>(settings).await?,
        http: match role {
            Role::Agent => bind_at_start::<Http>(settings).await?,
            Role::Redirector => None,
        },
    })
}

/// The tasks the stop sequence waits for by name.
struct Running {
    /// The scheduled-run worker's supervisor: the stop waits for it before the lease goes.
    runs: Option<JoinHandle<()>>,
    /// Not a child of root: cancelled only after the scheduled run has ended.
    lease: CancellationToken,
}

/// Starts every task of `role` under supervision.
fn spawn(
    tree: &Tree,
    daemon: &Arc<Daemon>,
    listeners: Listeners,
    refresh_rx: mpsc::Receiver<Trigger>,
    role: Role,
    root: &CancellationToken,
) -> Running {
    listen::<SipUdp>(tree, daemon, listeners.udp, root);
    listen::<SipStream<false>>(tree, daemon, listeners.tcp, root);
    listen::<SipStream<true>>(tree, daemon, listeners.tls, root);
    let _ = daemon.refresh.try_send(Trigger::Startup);
    // The channel outlives a restart of the refresh worker: the receiver is handed from one
    // incarnation to the next. Why a mutex: only one incarnation runs at a time, the lock is
    // held just to take or give back the receiver.
    let refresh_rx = Arc::new(tokio::sync::Mutex::new(refresh_rx));
    let d = Arc::clone(daemon);
    tree.spawn(TaskName::Refresh, root.child_token(), move |token| {
        let (d, rx) = (Arc::clone(&d), Arc::clone(&refresh_rx));
        async move {
            let mut rx = rx.lock().await;
            refresh::worker(d, &mut rx, token).await;
        }
    });
    let mut targets = vec![daemon.refresh.clone()];
    let mut running = Running {
        runs: None,
        lease: CancellationToken::new(),
    };
    if role == Role::Agent {
        let (runs_tx, runs_rx) = schedule::channel();
        let _ = runs_tx.try_send(Trigger::Startup);
        targets.push(runs_tx);
        let runs_rx = Arc::new(tokio::sync::Mutex::new(runs_rx));
        let d = Arc::clone(daemon);
        running.runs = Some(
            tree.spawn(TaskName::Runs, root.child_token(), move |token| {
                let (d, rx) = (Arc::clone(&d), Arc::clone(&runs_rx));
                async move {
                    let mut rx = rx.lock().await;
                    runs::worker(d, &mut rx, token).await;
                }
            }),
        );
        let d = Arc::clone(daemon);
        tree.spawn(TaskName::Watch, root.child_token(), move |token| {
            watch::run(Arc::clone(&d), token)
        });
        let d = Arc::clone(daemon);
        tree.spawn(TaskName::Lease, running.lease.clone(), move |token| {
            lease::run(Arc::clone(&d), token)
        });
        listen::<Http>(tree, daemon, listeners.http, root);
    }
    let d = Arc::clone(daemon);
    tree.spawn(TaskName::Cron, root.child_token(), move |token| {
        let cron_of = |s: &Arc<Settings>| s.schedule.cron.clone();
        schedule::run(d.settings.subscribe(), cron_of, targets.clone(), token)
    });
    running
}

/// Supervises listener `T`, serving what was bound at start-up first; a restart after a death
/// binds again from the settings in force.
fn listen<T: Transport>(
    tree: &Tree,
    daemon: &Arc<Daemon>,
    bound: Bound<T>,
    root: &CancellationToken,
) {
    let d = Arc::clone(daemon);
    let mut first = Some(bound);
    tree.spawn(T::NAME, root.child_token(), move |token| {
        let (d, bound) = (Arc::clone(&d), first.take());
        async move {
            let bound = match bound {
                Some(b) => b,
                None => match bind_at_start::<T>(&d.current()).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(listener = %T::NAME, "{e}");
                        None
                    }
                },
            };
            listeners::keep_listening::<T>(d, bound, token).await;
        }
    });
}

/// One line saying what listens where.
fn announce(daemon: &Daemon, l: &Listeners, role: Role) {
    let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    let settings = daemon.settings.borrow();
    let (udp, tcp, tls) = (
        bound_addr::<SipUdp>(&l.udp),
        bound_addr::<SipStream<false>>(&l.tcp),
        bound_addr::<SipStream<true>>(&l.tls),
    );
    match role {
        Role::Agent => info!(
            udp = %show(udp),
            tcp = %show(tcp),
            tls = %show(tls),
            http = %show(bound_addr::<Http>(&l.http)),
            instance = %daemon.instance,
            cron = %settings.schedule.cron,
            auto_apply = settings.safety.auto_apply,
            "pcsync run ready"
        ),
        Role::Redirector => info!(
            udp = %show(udp),
            tcp = %show(tcp),
            tls = %show(tls),
            version = daemon.redirector.store.load().version(),
            "redirect server ready"
        ),
    }
}

/// Signals: SIGHUP reloads; SIGINT/SIGTERM (or a supervisor giving up) cancel `root`.
async fn serve_until_stopped(daemon: &Daemon, root: &CancellationToken, config: &Path) {
    let stop = shutdown::spawn_cancel_on_signal(root.clone());
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = root.cancelled() => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                reload::reload(daemon, config);
            }
        }
    }
    let _ = stop.await;
}

/// The stop: the scheduled run gets the grace period to finish its swap in flight, then the
/// lease is released, then every other task drains.
async fn stop(daemon: &Daemon, running: Running, tracker: &TaskTracker) {
    let grace = daemon.settings.borrow().daemon.grace_period;
    let deadline = tokio::time::Instant::now() + grace;
    if let Some(runs) = running.runs
        && tokio::time::timeout_at(deadline, runs).await.is_err()
    {
        tracing::warn!("the scheduled run did not finish within the grace period");
    }
    running.lease.cancel();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if shutdown::drain(tracker, left.max(Duration::from_secs(1))).await {
        info!("stopped");
    }
}

/// `text` (a DN, a reason or message holding one) fit for one log line: control characters,
/// a raw newline above all, are written as RFC 4514 `\XX` hex pairs, so a value read from the
/// directory can never end a text log line and forge the next one. The JSON log format escapes
/// them anyway.
pub(crate) fn log_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_safe_escapes_control_characters_only() {
        assert_eq!(log_safe("cn=a,dc=x"), "cn=a,dc=x");
        assert!(matches!(log_safe("cn=é,dc=x"), Cow::Borrowed(_)));
        assert_eq!(
            log_safe("cn=evil\n2026-11-24T08:00:00Z  INFO forged,dc=x"),
            "cn=evil\\0A2026-11-24T08:00:00Z  INFO forged,dc=x"
        );
        assert_eq!(log_safe("a\rb\u{1b}[31mc\u{85}"), "a\\0Db\\1B[31mc\\C2\\85");
    }
}
