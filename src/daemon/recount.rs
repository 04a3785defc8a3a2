//! Counting a scheduled run's replication again after the run (Active Directory).
//!
//! A run counts the DCs holding its writes once, right after them, when the other DCs rarely
//! hold them yet. The runs worker then keeps a [`Recount`] and, between runs, counts again after
//! [`RECOUNT_EVERY`] (then twice as long each time, up to a minute) until every DC of the domain
//! holds the writes, or until [`RECOUNT_FOR`] has passed since the run: then `/healthz` says
//! `not_replicated` with the last count, and counting stops. Each count is published for `/healthz` and `/metrics`. A later run that writes
//! replaces the recount with its own (its writes come after the earlier run's). Counting only
//! reads, on connections of its own; it never blocks a run for longer than one count.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Daemon;
use super::status::{ReplicationPhase, ReplicationState};
use crate::estate::replication::{Mark, Replicas};
use crate::estate::{Replication, WriteServer};

/// How soon after the run the DCs are counted again while some does not hold the writes; each
/// further count waits twice as long as the one before, up to [`RECOUNT_AT_MOST_EVERY`], so a DC
/// that is down is asked about 20 times in [`RECOUNT_FOR`], not every 2 s.
pub(crate) const RECOUNT_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between two counts.
pub(crate) const RECOUNT_AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// How long after the run counting goes on; AD's intra-site replication takes seconds, and
/// between sites the default schedule is 180 minutes, which this does not wait out.
pub(crate) const RECOUNT_FOR: Duration = Duration::from_secs(15 * 60);

/// Where a count taken `elapsed` after the run leaves its replication.
pub(crate) fn phase(count: &Replication, elapsed: Duration) -> ReplicationPhase {
    if count.holding.len() == count.total() {
        ReplicationPhase::Replicated
    } else if elapsed >= RECOUNT_FOR {
        ReplicationPhase::NotReplicated
    } else {
        ReplicationPhase::Counting
    }
}

/// The wait before count number `done + 1` after the run: [`RECOUNT_EVERY`], doubled after
/// each count, at most [`RECOUNT_AT_MOST_EVERY`].
pub(crate) fn delay(done: u32) -> Duration {
    RECOUNT_EVERY
        .saturating_mul(1u32.checked_shl(done).unwrap_or(u32::MAX))
        .min(RECOUNT_AT_MOST_EVERY)
}

/// The writes of the last run that wrote, still to be counted again.
pub(crate) struct Recount {
    server: WriteServer,
    mark: Mark,
    /// When the run ended (shown), and the same instant on the monotonic clock (the bound).
    ran: DateTime<Utc>,
    ran_at: Instant,
    /// When to count next.
    next: Instant,
    /// Counts made since the run.
    done: u32,
}

impl Recount {
    /// The recount after a run whose count, right after its writes, is `count`; `None` when
    /// that count is already final.
    pub(crate) fn after(
        count: &Replication,
        server: WriteServer,
        mark: Mark,
        ran: DateTime<Utc>,
    ) -> Option<Recount> {
        if phase(count, Duration::ZERO) != ReplicationPhase::Counting {
            return None;
        }
        let now = Instant::now();
        Some(Recount {
            server,
            mark,
            ran,
            ran_at: now,
            next: now + delay(0),
            done: 0,
        })
    }

    /// Waits until the next count is due; forever without a recount.
    pub(crate) async fn due(this: Option<&Recount>) {
        match this {
            Some(r) => tokio::time::sleep_until(r.next).await,
            None => std::future::pending().await,
        }
    }

    /// Counts the DCs again and publishes the count; the recount goes on only while some DC
    /// does not hold the writes and [`RECOUNT_FOR`] has not passed.
    pub(crate) async fn count(mut self, daemon: &Daemon) -> Option<Recount> {
        let settings = daemon.current();
        let mut replicas = Replicas::new(&settings.directory, &self.server);
        let count = replicas.count(&self.mark).await;
        replicas.close().await;
        let state = phase(&count, self.ran_at.elapsed());
        let counted = crate::clock::system();
        daemon.status.update(|s| {
            s.replication = Some(ReplicationState::new(&count, state, self.ran, counted));
        });
        match state {
            ReplicationPhase::Counting => {
                self.done += 1;
                self.next = Instant::now() + delay(self.done);
                Some(self)
            }
            ReplicationPhase::Replicated => {
                info!(replication = %count, "the last run's writes reached every DC");
                None
            }
            ReplicationPhase::NotReplicated => {
                warn!(
                    replication = %count,
                    after = ?RECOUNT_FOR,
                    "the last run's writes are not yet on every DC; no longer counting"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(holding: &[&str], behind: &[&str], unreachable: &[&str]) -> Replication {
        let names = |n: &[&str]| n.iter().map(|h| (*h).to_string()).collect::<Vec<_>>();
        Replication {
            holding: names(holding),
            behind: names(behind),
            unreachable: unreachable
                .iter()
                .map(|h| ((*h).to_string(), "connection refused".to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_wait_between_counts_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (0..8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(u32::MAX), RECOUNT_AT_MOST_EVERY);
        // A DC that stays down is asked about 20 times in the 15 minutes, not 450.
        let mut asked = 0;
        let mut waited = Duration::ZERO;
        while waited < RECOUNT_FOR {
            waited += delay(asked);
            asked += 1;
        }
        assert!((15..=25).contains(&asked), "{asked}");
    }

    /// See: #20. Counted once right after the writes, "1 of 2" would stay forever.
    #[test]
    fn counting_goes_on_until_every_dc_holds_the_writes_or_the_bound_passes() {
        let right_after = count(&["dc1"], &["dc2"], &[]);
        assert_eq!(
            phase(&right_after, Duration::ZERO),
            ReplicationPhase::Counting
        );
        assert_eq!(
            phase(&right_after, RECOUNT_FOR - Duration::from_secs(1)),
            ReplicationPhase::Counting
        );
        assert_eq!(
            phase(&count(&["dc1", "dc2"], &[], &[]), Duration::from_secs(4)),
            ReplicationPhase::Replicated
        );
        assert_eq!(
            phase(&right_after, RECOUNT_FOR),
            ReplicationPhase::NotReplicated
        );
        // A DC that cannot be asked does not hold the writes as far as anyone knows.
        let down = count(&["dc1"], &[], &["dc2"]);
        assert_eq!(phase(&down, Duration::ZERO), ReplicationPhase::Counting);
        assert_eq!(phase(&down, RECOUNT_FOR), ReplicationPhase::NotReplicated);
        // One DC: the write server holds its own writes.
        assert_eq!(
            phase(&count(&["dc1"], &[], &[]), Duration::ZERO),
            ReplicationPhase::Replicated
        );
    }
}
