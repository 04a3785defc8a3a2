//! Cron triggers: the scheduler only *triggers*; one worker owns each run.
//!
//! The tokio-cron-scheduler job body does nothing but `try_send` on a channel of capacity 1, so
//! ticks that arrive while a run is still going coalesce into one pending trigger instead of
//! stacking up (the scheduler itself spawns every activation with no overlap guard). Schedules
//! are evaluated in UTC (timezone jobs drift after DST changes). Used by `pcsync redirect` for
//! mapping refreshes; the daemon reuses it for scheduled reconciles.

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Start-up.
    Startup,
    /// A cron tick.
    Cron,
    /// An operator's request (SIGHUP).
    Manual,
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    #[error("cannot schedule {cron:?}: {source}")]
    Scheduler {
        cron: String,
        #[source]
        source: JobSchedulerError,
    },
}

/// A running cron schedule; dropping it without [`Schedule::stop`] leaves the scheduler's
/// background task to end with the runtime.
pub(crate) struct Schedule {
    scheduler: JobScheduler,
}

/// The channel a worker reads triggers from. Capacity 1: ticks coalesce.
pub(crate) fn channel() -> (mpsc::Sender<Trigger>, mpsc::Receiver<Trigger>) {
    mpsc::channel(1)
}

impl Schedule {
    /// Starts a UTC cron schedule (6 or 7 fields, seconds first; validated at config load) that
    /// sends [`Trigger::Cron`] on `tx`.
    pub(crate) async fn start(
        cron: &str,
        tx: mpsc::Sender<Trigger>,
    ) -> Result<Schedule, ScheduleError> {
        let err = |source| ScheduleError::Scheduler {
            cron: cron.to_string(),
            source,
        };
        let scheduler = JobScheduler::new().await.map_err(err)?;
        let job = Job::new_async(cron, move |_id, _lock| {
            // Full channel = a run is pending already: this tick coalesces into it.
            let _ = tx.try_send(Trigger::Cron);
            Box::pin(async {})
        })
        .map_err(err)?;
        scheduler.add(job).await.map_err(err)?;
        scheduler.start().await.map_err(err)?;
        Ok(Schedule { scheduler })
    }

    /// Stops the scheduler.
    pub(crate) async fn stop(mut self) {
        let _ = self.scheduler.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_coalesce_while_one_is_pending() {
        let (tx, mut rx) = channel();
        assert!(tx.try_send(Trigger::Cron).is_ok());
        assert!(tx.try_send(Trigger::Cron).is_err());
        assert_eq!(rx.try_recv().ok(), Some(Trigger::Cron));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_every_second_schedule_fires() {
        let (tx, mut rx) = channel();
        let s = Schedule::start("* * * * * *", tx).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.ok().flatten(), Some(Trigger::Cron));
        s.stop().await;
    }
}
