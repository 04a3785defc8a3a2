//! The cron schedule: it only *triggers*; one worker owns each run.
//!
//! One schedule per process ([`run`]) sends [`Trigger::Cron`] to every target (the agent: the
//! scheduled-run worker and the table refresh worker; `pcsync redirect`: the refresh worker)
//! with `try_send` on channels of capacity 1, so ticks that arrive while a run is still going
//! coalesce into one pending trigger instead of stacking up. Occurrences are computed in UTC
//! (local-time schedules drift across DST changes); the next one is computed after each tick,
//! so a late wake-up fires once, never twice. A reloaded configuration with another expression
//! takes effect from its next occurrence.
//!
//! It also owns the cron grammar ([`Cron::parse`]), which the configuration validates
//! `[schedule] cron` with at load: one reading of an expression for both.

use chrono::{DateTime, Timelike, Utc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Every 15 minutes, on the minute: `[schedule] cron` when the file says nothing.
pub(crate) const DEFAULT_CRON: &str = "0 */15 * * * *";

/// What started a run or a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Start-up.
    Startup,
    /// A cron tick.
    Cron,
    /// A reloaded configuration (SIGHUP).
    Reload,
    /// The live watch saw a change (or polls).
    Watch,
}

impl Trigger {
    /// The name `/healthz` (`last_run.trigger`) and the logs show.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Cron => "cron",
            Trigger::Reload => "reload",
            Trigger::Watch => "watch",
        }
    }
}

/// The channel a worker reads triggers from. Capacity 1: triggers coalesce.
pub(crate) fn channel() -> (mpsc::Sender<Trigger>, mpsc::Receiver<Trigger>) {
    mpsc::channel(1)
}

/// A parsed cron expression: six or seven fields, seconds first, evaluated in UTC.
#[derive(Debug, Clone)]
pub(crate) struct Cron {
    text: String,
    cron: croner::Cron,
}

impl Cron {
    /// Parses an expression: 6 fields (seconds first) or 7 (with a year), in UTC. A 5-field
    /// expression is refused with the 6-field one it probably means.
    pub(crate) fn parse(text: &str) -> Result<Cron, String> {
        let fields = text.split_whitespace().count();
        if fields == 5 {
            return Err(format!(
                "{text:?} has 5 fields; pcsync needs 6 with seconds first, e.g. \"0 {text}\""
            ));
        }
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "{text:?} has {fields} fields; expected 6 (sec min hour day month weekday), e.g. \"{DEFAULT_CRON}\""
            ));
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map(|cron| Cron {
                text: text.to_string(),
                cron,
            })
            .map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))
    }

    /// The first occurrence strictly after `after`, on a whole second; `None` when there is
    /// none (a past year).
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the fraction of a second it is given; occurrences have none.
        let whole = after.with_nanosecond(0).unwrap_or(after);
        self.cron.find_next_occurrence(&whole, false).ok()
    }
}

/// Sends [`Trigger::Cron`] to every target at each occurrence of the expression `cron_of`
/// reads from the current settings (`[schedule] cron`), until `token` is cancelled. A change of
/// settings with another expression takes effect from its next occurrence.
pub(crate) async fn run<S>(
    settings: watch::Receiver<S>,
    cron_of: impl Fn(&S) -> String,
    targets: Vec<mpsc::Sender<Trigger>>,
    token: CancellationToken,
) {
    let mut settings = settings;
    let mut cron = match Cron::parse(&cron_of(&settings.borrow_and_update())) {
        Ok(c) => Some(c),
        Err(e) => {
            error!("{e}; no scheduled runs until a reload fixes it");
            None
        }
    };
    // The last occurrence fired: the next one is computed from it, not from the clock, so a
    // wake-up a little early or late never fires one occurrence twice.
    let mut last = Utc::now();
    loop {
        let next = cron.as_ref().and_then(|c| c.next_after(last));
        let wait = next.map(|n| (n - Utc::now()).to_std().unwrap_or_default());
        tokio::select! {
            _ = token.cancelled() => return,
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                let text = cron_of(&settings.borrow_and_update());
                if cron.as_ref().is_none_or(|c| c.text != text) {
                    match Cron::parse(&text) {
                        Ok(c) => {
                            info!(cron = %text, "cron schedule changed");
                            cron = Some(c);
                            last = Utc::now();
                        }
                        Err(e) => error!("{e}; keeping the schedule in force"),
                    }
                }
            }
            _ = sleep_or_forever(wait) => {
                let Some(next) = next else { continue };
                let now = Utc::now();
                if now < next {
                    // Woke early (the wall clock was set back): wait again for the same tick.
                    continue;
                }
                for target in &targets {
                    // Full = a run is pending already: this tick coalesces into it.
                    let _ = target.try_send(Trigger::Cron);
                }
                // A late wake-up skips the occurrences already past rather than firing each.
                last = next.max(now);
            }
        }
    }
}

async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(w) => tokio::time::sleep(w).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn triggers_coalesce_while_one_is_pending() {
        let (tx, mut rx) = channel();
        assert!(tx.try_send(Trigger::Cron).is_ok());
        assert!(tx.try_send(Trigger::Cron).is_err());
        assert_eq!(rx.try_recv().ok(), Some(Trigger::Cron));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn occurrences_are_strictly_after_and_in_utc() {
        let every_15 = Cron::parse("0 */15 * * * *").unwrap();
        assert_eq!(
            every_15.next_after(at("2026-03-29T00:59:59Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // Strictly after: an occurrence is never returned for itself.
        assert_eq!(
            every_15.next_after(at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T01:15:00Z"))
        );
        let every_second = Cron::parse("* * * * * *").unwrap();
        assert_eq!(
            every_second.next_after(at("2026-11-24T08:00:00.400Z")),
            Some(at("2026-11-24T08:00:01Z"))
        );
        assert!(
            Cron::parse("*/15 * * * *")
                .unwrap_err()
                .contains("5 fields")
        );
    }

    #[tokio::test]
    async fn one_schedule_triggers_every_target_and_stops_with_its_token() {
        let (_tx, rx) = watch::channel("* * * * * *".to_string());
        let (a, mut a_rx) = channel();
        let (b, mut b_rx) = channel();
        let token = CancellationToken::new();
        let task = tokio::spawn(run(rx, String::clone, vec![a, b], token.clone()));
        let limit = std::time::Duration::from_secs(5);
        assert_eq!(
            tokio::time::timeout(limit, a_rx.recv())
                .await
                .ok()
                .flatten(),
            Some(Trigger::Cron)
        );
        assert_eq!(
            tokio::time::timeout(limit, b_rx.recv())
                .await
                .ok()
                .flatten(),
            Some(Trigger::Cron)
        );
        token.cancel();
        assert!(tokio::time::timeout(limit, task).await.is_ok());
    }
}
