//! A progress line for long directory scans: objects read and rate, on stderr.
//!
//! Shown only when stderr is a terminal and `--quiet` is off, so scripts, pipes, logs and the
//! daemon never see it. The line is redrawn at most every `REDRAW_INTERVAL` and replaced by a
//! final summary. Counters are atomics so one `&Progress` can ride along a `Send` future (the
//! reconcile pipeline) without locking.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(crate) struct Progress {
    enabled: bool,
    started: Instant,
    /// Milliseconds since `started` at the last redraw, plus one (0 = never drawn).
    last_draw_ms: AtomicU64,
    count: AtomicU64,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one object read, redrawing the line when it is due.
    pub(crate) fn tick(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !self.enabled {
            return;
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_draw_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= REDRAW_INTERVAL.as_millis() as u64 {
            self.last_draw_ms.store(now, Ordering::Relaxed);
            self.draw("reading directory:");
        }
    }

    /// Replaces the line with a summary ("read N objects in S s").
    pub(crate) fn finish(&self) {
        if self.enabled {
            self.draw("read");
            eprintln!();
        }
    }

    fn draw(&self, prefix: &str) {
        let count = self.count.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        let mut err = std::io::stderr().lock();
        // \r and erase-line keep it on one terminal line.
        let _ = write!(
            err,
            "\r\x1b[K{prefix} {count} objects in {secs:.1}s ({rate:.0}/s)"
        );
        let _ = err.flush();
    }
}
