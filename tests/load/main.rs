//! Load tests of the SIP redirect server (issue #8, "Load"): a release build of `pcsync redirect`
//! serving the table it built from a real slapd (refreshed every second, as in the other
//! redirector tests) takes a `sipp` load at 80 % of the benchmarked maximum rate for 60 s, over
//! UDP and then over TCP. Every call must succeed and the resident set must stay flat.
//!
//! A test binary of its own, not a module of tests/it: cargo runs test binaries one after
//! another, so the load does not compete with the parallel tests of tests/it for the 2 cores.
//! The two loads take one lock, so they never overlap either. The rate means something only for
//! an optimised build, and tests never call cargo: scripts/test.sh builds
//! `target/release/pcsync` and passes it in `PCSYNC_LOAD_BIN`; without it the test fails saying
//! how to run it. `PCSYNC_LOAD_MAX_UDP_PER_S` / `PCSYNC_LOAD_MAX_TCP_PER_S` replace the recorded
//! maxima with figures measured on the machine at hand (docs/benchmarks.md).
//!
//! The machine is shared (other builds and tests run alongside), so pcsync and sipp run at
//! niceness -10, as in scripts/bench-redirect-max.sh, which measured the rates below the same
//! way (as root; otherwise `nice` says it cannot and runs them unchanged). What happens when the
//! box still falls behind is in the failure message: datagrams dropped at pcsync's socket and at
//! sipp's, CPU, load average.

// Test code may panic on a broken fixture: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test binary exports nothing: its helpers are `pub` only to be shared between its modules.
#![allow(unreachable_pub)]

#[path = "../it/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::redirect::{
    FIXTURE_DOMAIN, FIXTURE_USER, READY_TIMEOUT, Redirector, options_status, tool_or_install_hint,
};
use common::repo;
use common::slapd::{Slapd, free_port, run_with_timeout};

/// The highest clean rates (calls/s) in docs/benchmarks.md, "Highest clean rate per transport"
/// (scripts/bench-redirect-max.sh, release build). Change them together with that table.
const BENCHMARKED_MAX_UDP_PER_S: u32 = 15_000;
const BENCHMARKED_MAX_TCP_PER_S: u32 = 15_000;
/// The share of the benchmarked maximum the load runs at (issue #8).
const LOAD_PERCENT: u32 = 80;
/// How long the load lasts at that rate.
const LOAD_SECONDS: u32 = 60;
/// sipp's own bound: the load, plus RFC 3261 Timer B (32 s) for the last calls, plus slack.
const SIPP_TIMEOUT_S: u32 = LOAD_SECONDS + 60;
/// The test's bound on the sipp process, over sipp's own.
const TEST_TIMEOUT: Duration = Duration::from_secs(SIPP_TIMEOUT_S as u64 + 60);
/// A call fails when no 302 arrives within RFC 3261 Timer B (64 × T1 = 32 s), retransmissions
/// included: a late answer is not a failed call, a lost transaction is.
const CALL_TIMEOUT: &str = "32s";
/// sipp's socket buffers: the kernel caps SO_RCVBUF at net.core.rmem_max (4 MiB on the CI
/// machine); at these rates 64 KiB (sipp's default) overflows whenever sipp is descheduled.
const SIPP_BUFFER_BYTES: u32 = 4 << 20;
/// Niceness of pcsync and sipp, as in the benchmark.
const NICENESS: &str = "-10";
/// The load must keep at least this share of the target rate, or it did not test that rate.
const MIN_ACHIEVED_PERCENT: u64 = 90;

/// RSS samples before this are warm-up (allocator arenas and buffers reaching their working
/// size) and not judged.
const WARM_UP: Duration = Duration::from_secs(10);
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// "Flat": the largest RSS of the last third of the load (after warm-up) may exceed the largest
/// of the first third by at most this much. docs/reliability.md (Load) says why 2 MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 2048;

/// The environment variable naming the release binary.
const BIN_ENV: &str = "PCSYNC_LOAD_BIN";
/// Optional: the maximum rate (calls/s) measured on the machine at hand with
/// scripts/bench-redirect-max.sh, to run at 80 % of it instead of the recorded figure (e.g. on a
/// quiet machine, where the recorded shared-machine figures are far from the limit).
const MAX_UDP_ENV: &str = "PCSYNC_LOAD_MAX_UDP_PER_S";
const MAX_TCP_ENV: &str = "PCSYNC_LOAD_MAX_TCP_PER_S";

/// One load at a time (the two tests of this binary would otherwise run in parallel).
static ONE_LOAD_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn udp_load_at_80_percent_of_the_benchmarked_maximum_fails_no_call_and_rss_stays_flat() {
    load("u1", BENCHMARKED_MAX_UDP_PER_S);
}

#[test]
fn tcp_load_at_80_percent_of_the_benchmarked_maximum_fails_no_call_and_rss_stays_flat() {
    load("t1", BENCHMARKED_MAX_TCP_PER_S);
}

fn release_binary() -> PathBuf {
    let Some(path) = std::env::var_os(BIN_ENV) else {
        panic!(
            "{BIN_ENV} is not set: the load test needs a release build of pcsync. Run \
             scripts/test.sh, or: cargo build --release --locked --bin pcsync && \
             {BIN_ENV}=$PWD/target/release/pcsync cargo test --test load -- --nocapture"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{BIN_ENV}={} is not a file: build it with cargo build --release --locked --bin pcsync",
        path.display()
    );
    path
}

/// Runs `LOAD_SECONDS` of INVITE → 302 → ACK over `transport` ("u1": one UDP socket, "t1": one
/// TCP connection) at `LOAD_PERCENT` % of `max_rate`, then checks calls, rate and RSS.
fn load(transport: &str, max_rate: u32) {
    let binary = release_binary();
    let sipp = tool_or_install_hint("sipp", "sip-tester");
    let _one = ONE_LOAD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let max_env = if transport == "u1" {
        MAX_UDP_ENV
    } else {
        MAX_TCP_ENV
    };
    let max_rate = match std::env::var(max_env) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{max_env}={text:?} is not a number of calls per second")),
        Err(_) => max_rate,
    };
    let rate = max_rate * LOAD_PERCENT / 100;
    let calls = u64::from(rate) * u64::from(LOAD_SECONDS);

    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let mut program = Command::new("nice");
    program.args(["-n", NICENESS]).arg(&binary);
    let mut server = Redirector::spawn_program(program, &slapd, work.path(), &[]);
    server.wait_for(FIXTURE_USER, 200, READY_TIMEOUT);
    let pid = server.pid();
    let sipp_port = free_port();
    let server_drops_before = udp_drops(server.addr.port());
    let cpu_before = cpu_ticks(pid);

    let sampler = Sampler::start(pid, sipp_port);
    let stats = work.path().join("sipp-stats.csv");
    let mut cmd = Command::new("nice");
    cmd.args(["-n", NICENESS])
        .arg(&sipp)
        .current_dir(work.path())
        .arg("-sf")
        .arg(repo("scripts/bench/uac_302.xml"))
        .args(["-s", FIXTURE_USER, "-key", "domain", FIXTURE_DOMAIN])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port.to_string(),
            "-t",
            transport,
        ])
        .args(["-r", &rate.to_string(), "-rp", "1000"])
        .args(["-l", &(rate * 2).to_string(), "-m", &calls.to_string()])
        .args(["-timeout", &format!("{SIPP_TIMEOUT_S}s"), "-timeout_error"])
        .args(["-recv_timeout", CALL_TIMEOUT, "-nostdin"])
        .args(["-buff_size", &SIPP_BUFFER_BYTES.to_string()])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .arg(server.addr.to_string());
    let started = Instant::now();
    let output = run_with_timeout(&mut cmd, TEST_TIMEOUT);
    let wall = started.elapsed();
    let samples = sampler.stop();
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
    let server_drops = udp_drops(server.addr.port()).saturating_sub(server_drops_before);

    let counts = SippCounts::read(&stats);
    let achieved = counts.ok as f64 / wall.as_secs_f64();
    let rss = RssVerdict::judge(&samples.rss);
    let summary = format!(
        "{transport} load: rate {rate}/s ({LOAD_PERCENT} % of the benchmarked {max_rate}/s) for \
         {LOAD_SECONDS} s: {ok} ok, {failed} failed, {retrans} retransmissions of {calls} calls in \
         {wall:.1} s (achieved {achieved:.0}/s); pcsync CPU {cpu_us:.1} us/call; datagrams dropped \
         at pcsync's socket {server_drops}, at sipp's {sipp_drops}; load average at the end {load}; \
         {rss}",
        ok = counts.ok,
        failed = counts.failed,
        retrans = counts.retransmissions,
        wall = wall.as_secs_f64(),
        cpu_us = cpu as f64 * 1e6 / clock_ticks_per_second() / counts.ok.max(1) as f64,
        sipp_drops = samples.sipp_drops,
        load = load_average(),
    );
    eprintln!("{summary}");

    let output = output.unwrap_or_else(|partial| {
        panic!("sipp did not finish within {TEST_TIMEOUT:?}: {summary}\n{partial}")
    });
    assert_eq!(
        (counts.failed, counts.ok, output.code),
        (0, calls, Some(0)),
        "calls failed (expected 0 failed, {calls} ok, exit 0): {summary}\nsipp: {}",
        output.both()
    );
    assert!(
        achieved * 100.0 >= (u64::from(rate) * MIN_ACHIEVED_PERCENT) as f64,
        "the load generator fell behind ({achieved:.0}/s of {rate}/s): the machine is too busy \
         for this test to mean anything: {summary}"
    );
    assert!(
        rss.flat,
        "RSS not flat: {summary}\nsamples (s, KiB): {:?}",
        samples.rss
    );
    // Still serving after the load.
    assert_eq!(
        options_status(server.addr, &format!("sip:{FIXTURE_USER}@{FIXTURE_DOMAIN}")),
        Some(200),
        "{summary}"
    );
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// sipp's final counters, from its `-trace_stat` file (`;`-separated, one row per second).
struct SippCounts {
    ok: u64,
    failed: u64,
    retransmissions: u64,
}

impl SippCounts {
    fn read(path: &Path) -> SippCounts {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("sipp wrote no statistics to {}: {e}", path.display()));
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let head: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
        let last: Vec<&str> = lines.next_back().unwrap_or_default().split(';').collect();
        let column = |name: &str| -> u64 {
            let i = head
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("no column {name} in {}", path.display()));
            last.get(i).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        SippCounts {
            ok: column("SuccessfulCall(C)"),
            failed: column("FailedCall(C)"),
            retransmissions: column("Retransmissions(C)"),
        }
    }
}

/// What the sampler saw during the load.
struct Samples {
    /// (seconds since the load started, VmRSS in KiB).
    rss: Vec<(f64, u64)>,
    /// The last drop count of sipp's UDP socket (it is gone once sipp exits).
    sipp_drops: u64,
}

/// Samples pcsync's VmRSS and sipp's socket drops on a thread until stopped.
struct Sampler {
    stop: std::sync::Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Samples>,
}

impl Sampler {
    fn start(pid: u32, sipp_port: u16) -> Sampler {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Samples {
                rss: Vec::new(),
                sipp_drops: 0,
            };
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    samples.rss.push((started.elapsed().as_secs_f64(), kib));
                }
                samples.sipp_drops = samples.sipp_drops.max(udp_drops(sipp_port));
                std::thread::sleep(RSS_SAMPLE_EVERY);
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The flatness judgement over RSS samples.
struct RssVerdict {
    flat: bool,
    start: u64,
    peak: u64,
    end: u64,
    first_third_max: u64,
    last_third_max: u64,
}

impl RssVerdict {
    /// After `WARM_UP`, the samples of the load's first and last thirds (by time): flat when the
    /// last third's maximum is at most `RSS_GROWTH_LIMIT_KIB` above the first third's.
    fn judge(samples: &[(f64, u64)]) -> RssVerdict {
        let load_end = samples.last().map_or(0.0, |s| s.0);
        let from = WARM_UP.as_secs_f64();
        let third = (load_end - from) / 3.0;
        let max_in = |lo: f64, hi: f64| {
            samples
                .iter()
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .map(|(_, kib)| *kib)
                .max()
                .unwrap_or(0)
        };
        let first_third_max = max_in(from, from + third);
        let last_third_max = max_in(load_end - third, load_end);
        RssVerdict {
            flat: third > 0.0
                && first_third_max > 0
                && last_third_max <= first_third_max + RSS_GROWTH_LIMIT_KIB,
            start: samples.first().map_or(0, |s| s.1),
            peak: samples.iter().map(|s| s.1).max().unwrap_or(0),
            end: samples.last().map_or(0, |s| s.1),
            first_third_max,
            last_third_max,
        }
    }
}

impl std::fmt::Display for RssVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS KiB start {} peak {} end {}, max first third {} / last third {} (limit +{}): {}",
            self.start,
            self.peak,
            self.end,
            self.first_third_max,
            self.last_third_max,
            RSS_GROWTH_LIMIT_KIB,
            if self.flat { "flat" } else { "NOT flat" }
        )
    }
}

#[test]
fn rss_judgement_ignores_warm_up_and_noise_and_flags_growth() {
    // One sample a second for 70 s; warm-up growth in the first 10 s is not judged.
    let series = |f: fn(f64) -> u64| {
        (0..=70)
            .map(|t| (t as f64, f(t as f64)))
            .collect::<Vec<_>>()
    };
    let warm_then_flat = series(|t| {
        if t < 10.0 {
            5_000 + 400 * t as u64
        } else {
            9_900
        }
    });
    assert!(RssVerdict::judge(&warm_then_flat).flat);
    let noisy = series(|t| 9_900 + (t as u64 % 7) * 100);
    assert!(RssVerdict::judge(&noisy).flat);
    // 100 KiB a second (about 8 bytes a call at 12,000 calls/s) is not flat.
    let leaking = series(|t| 9_900 + 100 * t as u64);
    let verdict = RssVerdict::judge(&leaking);
    assert!(!verdict.flat, "{verdict}");
    assert!(!RssVerdict::judge(&[]).flat);
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid` (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the ")" closing the command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second (USER_HZ): 100 on every Linux the project runs on.
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// Datagrams the kernel dropped at the receive buffer of the 127.0.0.1:`port` UDP socket.
fn udp_drops(port: u16) -> u64 {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
