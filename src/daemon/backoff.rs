//! The one wait between retries: every reconnect loop (the watch, the lease) and the
//! supervisor's restarts wait `reconnect_min`, doubling up to `reconnect_max`, and start again
//! from `reconnect_min` once an attempt succeeds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::DaemonSettings;

/// Doubling waits between `min` and `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// `[daemon] reconnect_min` to `reconnect_max`.
    pub(crate) fn from_settings(daemon: &DaemonSettings) -> Backoff {
        Backoff::new(daemon.reconnect_min, daemon.reconnect_max)
    }

    /// The wait before the next attempt; the one after it doubles, up to the maximum.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// The wait [`Backoff::next_wait`] would return, without taking it.
    pub(crate) fn peek(&self) -> Duration {
        self.next
    }

    /// An attempt succeeded: the next failure waits the minimum again.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// Waits the next wait; `false` when `token` was cancelled meanwhile.
    pub(crate) async fn wait(&mut self, token: &CancellationToken) -> bool {
        let wait = self.next_wait();
        tokio::select! {
            _ = token.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_and_resets_to_the_minimum() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.peek(), ms(100));
        // A maximum below the minimum is the minimum.
        let mut b = Backoff::new(ms(300), ms(100));
        assert_eq!((b.next_wait(), b.next_wait()), (ms(300), ms(300)));
    }

    #[tokio::test]
    async fn a_cancelled_wait_says_so() {
        let token = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        token.cancel();
        assert!(!b.wait(&token).await);
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(1));
        assert!(b.wait(&CancellationToken::new()).await);
    }
}
