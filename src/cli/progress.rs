//! A progress line for long directory scans: objects read and rate, on stderr.
//!
//! Shown only when stderr is a terminal and `--quiet` is off, so scripts, pipes and logs never
//! see it. The line is redrawn at most every `REDRAW_INTERVAL` and replaced by a final summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

pub struct Progress {
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
    count: u64,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            count: 0,
        }
    }

    /// Counts one object read, redrawing the line when it is due.
    pub fn tick(&mut self) {
        self.count += 1;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_none_or(|t| now.duration_since(t) >= REDRAW_INTERVAL)
        {
            self.last_draw = Some(now);
            self.draw("reading directory:");
        }
    }

    /// Replaces the line with a summary ("read N objects in S s").
    pub fn finish(&mut self) {
        if self.enabled {
            self.draw("read");
            eprintln!();
        }
    }

    fn draw(&self, prefix: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        // \r and erase-line keep it on one terminal line.
        let _ = write!(
            err,
            "\r\x1b[K{prefix} {} objects in {secs:.1}s ({rate:.0}/s)",
            self.count
        );
        let _ = err.flush();
    }
}
