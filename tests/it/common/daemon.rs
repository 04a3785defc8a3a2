//! A real `pcsync run` process against a real slapd, with its HTTP endpoints read over a plain
//! TCP socket (no HTTP client crate needed for two GETs).
//!
//! [`Daemon::spawn`] runs the binary with the backend's shipped configuration (slapd:
//! `config/openldap.toml`, Samba: `config/active-directory.toml`) pointed at it, SIP on a free
//! loopback port, HTTP on another, state and audit log in the test's work dir, plus the
//! backend's harness timings (slapd: a 1-second cron, a 100 ms polling watch; Samba: none, the
//! shipped values); extra environment overrides come last. Drop sends SIGTERM to
//! that PID, then SIGKILL if it does not stop in time.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Backend;
use super::slapd::{POLL_INTERVAL, free_ports, log_tail, wait_bounded};

pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How [`Daemon::spawn_with`] starts the process.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// `umask` for the process.
    pub umask: Option<&'a str>,
    /// `ulimit -n` (open files) for the process.
    pub open_files: Option<u32>,
    /// Write the SIP and HTTP addresses into the configuration file that `PCSYNC_CONFIG` in the
    /// environment names, instead of the environment (which a reload cannot change), so a test
    /// can move them with [`set_listeners`] and SIGHUP.
    pub listeners_in_file: bool,
    /// `--log-format text` instead of json.
    pub text_log: bool,
    /// Leave `[schedule] cron` to the configuration file instead of the harness's 1-second cron
    /// in the environment (which a reload cannot change), so a test can change it with SIGHUP.
    pub cron_in_file: bool,
}

/// Sets `[redirector] udp`, `tcp` and `[http] listen` in the configuration file at `path` (a
/// copy of a shipped file, whose lines `udp = `, `tcp = ` and `listen = ` it replaces).
pub fn set_listeners(path: &Path, udp: SocketAddr, tcp: SocketAddr, http: SocketAddr) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            let value = match key {
                "udp" => udp,
                "tcp" => tcp,
                "listen" => http,
                _ => return l.to_string(),
            };
            seen += 1;
            format!("{key} = \"{value}\"")
        })
        .collect();
    assert_eq!(seen, 3, "{} lacks udp, tcp or listen lines", path.display());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

pub struct Daemon {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub log: PathBuf,
    pub audit: PathBuf,
    pub state_dir: PathBuf,
}

impl Daemon {
    /// Starts `pcsync run` and waits until /healthz answers.
    pub fn start(backend: &dyn Backend, work: &Path, env: &[(&str, &str)]) -> Daemon {
        let d = Daemon::spawn(backend, work, env);
        d.wait_until("/healthz answers", READY_TIMEOUT, || {
            d.try_get("/healthz").is_some()
        });
        d
    }

    pub fn spawn(backend: &dyn Backend, work: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_with(backend, work, env, &Options::default())
    }

    /// Like [`Daemon::spawn`]; with `Some(umask)` the binary runs through
    /// `sh -c 'umask UMASK && exec pcsync ...'` (the PID is still pcsync's: `exec`).
    pub fn spawn_with_umask(
        backend: &dyn Backend,
        work: &Path,
        env: &[(&str, &str)],
        umask: Option<&str>,
    ) -> Daemon {
        let options = Options {
            umask,
            ..Options::default()
        };
        Daemon::spawn_with(backend, work, env, &options)
    }

    /// [`Daemon::spawn`] with [`Options`].
    pub fn spawn_with(
        backend: &dyn Backend,
        work: &Path,
        env: &[(&str, &str)],
        options: &Options<'_>,
    ) -> Daemon {
        let [sip_port, http_port] = free_ports::<2>();
        let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
        std::fs::create_dir_all(work).unwrap();
        let log = work.join("run.log");
        let audit = work.join("audit.jsonl");
        let state_dir = work.join("state");
        // ("PCSYNC_CONFIG", path) in `env` replaces the shipped file (SIGHUP tests edit it).
        let config = env
            .iter()
            .find(|(k, _)| *k == "PCSYNC_CONFIG")
            .map_or_else(|| backend.config(), |(_, v)| PathBuf::from(v));
        if options.listeners_in_file {
            set_listeners(&config, sip, sip, http);
        }
        let bin = assert_cmd::cargo::cargo_bin("pcsync");
        let mut prelude = Vec::new();
        if let Some(umask) = options.umask {
            prelude.push(format!("umask {umask}"));
        }
        if let Some(n) = options.open_files {
            prelude.push(format!("ulimit -n {n}"));
        }
        let mut cmd = if prelude.is_empty() {
            Command::new(&bin)
        } else {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("{} && exec \"$0\" \"$@\"", prelude.join(" && ")))
                .arg(&bin);
            sh
        };
        for (key, _) in std::env::vars() {
            if key.starts_with("PCSYNC") || key == "FAILPOINTS" {
                cmd.env_remove(key);
            }
        }
        let format = if options.text_log { "text" } else { "json" };
        cmd.current_dir(work)
            .arg("--config")
            .arg(&config)
            .args(["--log-format", format, "run"]);
        for (k, v) in backend.env() {
            cmd.env(k, v);
        }
        if !options.listeners_in_file {
            cmd.env("PCSYNC__REDIRECTOR__UDP", sip.to_string())
                .env("PCSYNC__REDIRECTOR__TCP", sip.to_string())
                .env("PCSYNC__HTTP__LISTEN", http.to_string());
        }
        let timings = backend.harness_timings().iter().copied();
        cmd.envs(
            timings.filter(|(k, _)| !(options.cron_in_file && *k == "PCSYNC__SCHEDULE__CRON")),
        )
        .env("PCSYNC__STATE__DIR", &state_dir)
        .env("PCSYNC__AUDIT__PATH", &audit)
        .env("PCSYNC_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env.iter().filter(|(k, _)| *k != "PCSYNC_CONFIG") {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pcsync run");
        Daemon {
            child: Some(child),
            sip,
            http,
            log,
            audit,
            state_dir,
        }
    }

    /// Polls `ok` (at least once) until it holds or `timeout` passes (then panics with the log
    /// tail).
    pub fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ok() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!(
            "timed out after {timeout:?} waiting for: {what}; log:\n{}",
            log_tail(&self.log, 40)
        );
    }

    /// One GET; `(status, body)`, or `None` when nothing answered.
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// The `/healthz` document, whatever the HTTP status (200 `ok`, 503 `degraded`); the two
    /// must agree.
    pub fn health(&self) -> serde_json::Value {
        let (status, body) = self
            .try_get("/healthz")
            .unwrap_or_else(|| panic!("no /healthz; log:\n{}", log_tail(&self.log, 40)));
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let expected = if doc["status"] == "ok" { 200 } else { 503 };
        assert_eq!(status, expected, "{body}");
        doc
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.try_get("/metrics").expect("/metrics answers");
        assert_eq!(status, 200, "{body}");
        body
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGTERM, bounded wait; the exit code and how long the stop took.
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        match wait_bounded(&mut child, STOP_TIMEOUT) {
            Some(status) => (status.code(), started.elapsed()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pcsync run ignored SIGTERM; log:\n{}",
                    log_tail(&self.log, 40)
                );
            }
        }
    }

    /// The exit status if the process has ended (reaped), without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            if wait_bounded(&mut child, STOP_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
