//! Polling: a refresh every `poll_interval`, through the refresh worker (which connects anew
//! each time, so there is no connection here to go silent). The refresh outcomes tell whether
//! the directory is reachable; regaining it counts as a reconnect. While it is unreachable,
//! attempts back off from `reconnect_min` to `reconnect_max` instead of asking every interval.

use std::sync::atomic::Ordering::Relaxed;

use chrono::Utc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Mechanism, show};
use crate::config::Settings;
use crate::daemon::Daemon;
use crate::daemon::backoff::Backoff;
use crate::daemon::status::{WatchPhase, stamp};
use crate::daemon::tree::TaskName;
use crate::schedule::Trigger;

/// Polls until cancelled.
pub(crate) async fn run(daemon: &Daemon, settings: &Settings, token: &CancellationToken) {
    let interval = settings.daemon.poll_interval;
    show(daemon, Mechanism::Poll, WatchPhase::Starting);
    let counters = &daemon.redirector.store.refresh;
    let mut last = (counters.ok.load(Relaxed), counters.failed.load(Relaxed));
    let mut was_failing = false;
    let mut backoff = Backoff::from_settings(&settings.daemon);
    let mut next_attempt = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
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
                    "watch: directory unreachable, serving the current table; retrying every {interval:?} or less often"
                );
            }
            was_failing = failing;
            if failing {
                next_attempt = Instant::now() + backoff.next_wait();
            } else {
                backoff.reset();
            }
            record(daemon, failing);
        }
        if Instant::now() < next_attempt {
            continue;
        }
        // Full = a refresh is pending already; this poll coalesces into it.
        let _ = daemon.refresh.try_send(Trigger::Watch);
    }
}

/// What the latest refresh outcome says about the watch and the directory.
fn record(daemon: &Daemon, failing: bool) {
    let now = Utc::now();
    daemon.status.update(|s| {
        s.watch.state = if failing {
            WatchPhase::Failing
        } else {
            WatchPhase::Polling
        };
        if !failing {
            s.watch.last_message_at = Some(stamp(now));
        }
    });
    daemon.status.directory(!failing, None, now);
    let attempt = if failing {
        Err("the directory could not be reached by the last refresh".to_string())
    } else {
        Ok(())
    };
    daemon.status.attempt(TaskName::Watch, attempt, now);
}
