//! A real `pcsync redirect` process against a real slapd, and a real `sipp` to talk to it.
//!
//! [`Redirector::start`] runs the binary with the backend's shipped configuration, pointed at it,
//! with UDP and TCP on one free loopback port, state in the test's temp dir, and the backend's
//! harness timings (slapd: a refresh every second; Samba: the shipped schedule); it waits (bounded) until the first refresh has published the fixture's endpoint. Drop
//! sends SIGTERM to that PID, then SIGKILL if it does not stop in time.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Backend;
use super::repo;
use super::slapd::{
    POLL_INTERVAL, ToolOutput, free_port, log_tail, run_with_timeout, wait_bounded,
};

/// How long the first refresh may take to publish.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped redirector may take to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound on one sipp run.
pub const SIPP_TIMEOUT: Duration = Duration::from_secs(60);

/// The fixture's hand-made endpoint and where it must redirect to.
pub const FIXTURE_USER: &str = "persistentchat";
pub const FIXTURE_DOMAIN: &str = "contoso.com";
pub const FIXTURE_CONTACT: &str = "<sip:persistentchat@pcpool1.contoso.com:5061;transport=tls>";

pub struct Redirector {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub state_dir: PathBuf,
}

impl Redirector {
    /// Starts the redirector and waits until `sip:persistentchat@contoso.com` is mapped.
    pub fn start(backend: &dyn Backend, work: &Path) -> Redirector {
        let r = Redirector::spawn(backend, work, &[]);
        r.wait_for(FIXTURE_USER, 200, READY_TIMEOUT);
        r
    }

    /// Starts the redirector with extra environment overrides; does not wait.
    pub fn spawn(backend: &dyn Backend, work: &Path, env: &[(&str, &str)]) -> Redirector {
        let cmd = Command::new(assert_cmd::cargo::cargo_bin("pcsync"));
        Redirector::spawn_program(cmd, backend, work, env)
    }

    /// [`Redirector::spawn`] with the program given: another pcsync binary (the release build of
    /// the load test), possibly behind a wrapper that execs it (`nice -n -10 PCSYNC`, so the PID
    /// is pcsync's).
    pub fn spawn_program(
        mut cmd: Command,
        backend: &dyn Backend,
        work: &Path,
        env: &[(&str, &str)],
    ) -> Redirector {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = work.join("redirect.log");
        let state_dir = work.join("state");
        for (key, _) in std::env::vars() {
            if key.starts_with("PCSYNC") {
                cmd.env_remove(key);
            }
        }
        // ("PCSYNC_CONFIG", path) in `env` replaces the shipped file.
        let config = env
            .iter()
            .find(|(k, _)| *k == "PCSYNC_CONFIG")
            .map_or_else(|| backend.config(), |(_, v)| PathBuf::from(v));
        cmd.current_dir(work)
            .arg("--config")
            .arg(&config)
            .arg("redirect");
        for (k, v) in backend.env() {
            cmd.env(k, v);
        }
        cmd.env("PCSYNC__REDIRECTOR__UDP", addr.to_string())
            .env("PCSYNC__REDIRECTOR__TCP", addr.to_string())
            .envs(backend.harness_timings().iter().copied())
            .env("PCSYNC__STATE__DIR", &state_dir)
            .env("PCSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env.iter().filter(|(k, _)| *k != "PCSYNC_CONFIG") {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pcsync redirect");
        Redirector {
            child: Some(child),
            addr,
            log,
            state_dir,
        }
    }

    /// Polls with UDP OPTIONS until `user@contoso.com` answers `code`, or panics with the log.
    pub fn wait_for(&self, user: &str, code: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = options_status(self.addr, &format!("sip:{user}@{FIXTURE_DOMAIN}"));
            if last == Some(code) {
                return;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!(
            "redirector never answered {code} for {user} (last: {last:?}); log:\n{}",
            log_tail(&self.log, 40)
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM, bounded wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        match wait_bounded(&mut child, STOP_TIMEOUT) {
            Some(status) => status.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pcsync redirect ignored SIGTERM; log:\n{}",
                    log_tail(&self.log, 40)
                );
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Redirector {
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

/// One UDP OPTIONS to `target` via `server`; the status code, or `None` without an answer
/// within 300 ms (for polls; see [`options_status_within`]).
pub fn options_status(server: SocketAddr, target: &str) -> Option<u16> {
    options_status_within(server, target, Duration::from_millis(300))
}

/// [`options_status`] waiting up to `timeout` for the answer.
pub fn options_status_within(server: SocketAddr, target: &str, timeout: Duration) -> Option<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    let local = socket.local_addr().ok()?;
    let text = format!(
        "OPTIONS {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKwait{port}\r\n\
         From: <sip:test@127.0.0.1>;tag=w\r\nTo: <{target}>\r\nCall-ID: wait-{port}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        port = local.port()
    );
    socket.send_to(text.as_bytes(), server).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ').nth(1)?.parse().ok()
}

/// What one sipp run left behind.
pub struct SippRun {
    pub output: ToolOutput,
    /// The `-trace_msg` file: every message sent and received.
    pub messages: String,
}

impl SippRun {
    /// The received messages that start with `status_line`.
    pub fn received(&self, status_line: &str) -> Vec<String> {
        self.messages
            .split("----------------------------------------------- ")
            .filter(|block| block.contains("message received"))
            .filter_map(|block| {
                let start = block.find("SIP/2.0 ")?;
                let msg = &block[start..];
                msg.starts_with(status_line)
                    .then(|| msg.trim_end().to_string())
            })
            .collect()
    }

    pub fn assert_ok(&self) {
        assert_eq!(
            self.output.code,
            Some(0),
            "sipp failed:\n{}\nmessages:\n{}",
            self.output.both(),
            self.messages
        );
    }
}

/// Runs `tests/sipp/<scenario>` once (`-m 1`) against `server` over `transport` ("u1"/"t1"),
/// to `user@contoso.com`.
pub fn sipp(
    scenario: &str,
    server: SocketAddr,
    transport: &str,
    user: &str,
    work: &Path,
) -> SippRun {
    sipp_to(scenario, server, transport, user, FIXTURE_DOMAIN, work)
}

/// [`sipp`] to `user@domain`.
pub fn sipp_to(
    scenario: &str,
    server: SocketAddr,
    transport: &str,
    user: &str,
    domain: &str,
    work: &Path,
) -> SippRun {
    let sipp = tool_or_install_hint("sipp", "sip-tester");
    let trace = work.join(format!("{scenario}-{transport}-{user}@{domain}.log"));
    let _ = std::fs::remove_file(&trace);
    let port = free_port();
    let mut cmd = Command::new(sipp);
    cmd.current_dir(work)
        .arg("-sf")
        .arg(repo(&format!("tests/sipp/{scenario}")))
        .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin"])
        .args(["-recv_timeout", "5000"])
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", transport])
        .args(["-s", user, "-key", "domain", domain])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&trace)
        .arg(server.to_string());
    let output = run_with_timeout(&mut cmd, SIPP_TIMEOUT)
        .unwrap_or_else(|partial| panic!("sipp did not finish in {SIPP_TIMEOUT:?}:\n{partial}"));
    let messages = std::fs::read_to_string(&trace).unwrap_or_default();
    SippRun { output, messages }
}

/// A program's path, or a panic saying which Debian package installs it.
pub fn tool_or_install_hint(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found: install it with `apt-get install {package}` (as root), or run scripts/test.sh which installs it"
    )
}
