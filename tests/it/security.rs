//! Security (issue #8) against real servers: TLS verification of the directory (private CA made
//! in the test), no plain-text simple bind off loopback, the bind password never written
//! anywhere pcsync writes, private modes for state and audit files, and nothing from a SIP or
//! HTTP request reflected into a response header line.
//!
//! The password test drives every command and failure path it can (check, inventory, mappings,
//! reconcile in every format and --apply, a failpoint crash and its recovery, audit, restore, a
//! wrong password, the directory down, bad configurations, trace logging in text and JSON, and
//! `pcsync run` with /healthz, /metrics and SIGHUP reloads), collects stdout, stderr and every
//! file pcsync wrote, and greps all of it for the password in every encoding we could think of.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::daemon::Daemon;
use crate::common::redirect::{FIXTURE_CONTACT, FIXTURE_USER, Redirector};
use crate::common::slapd::{Slapd, free_port, log_tail, write_private};
use crate::common::{output, over_ldaps_and_starttls, pcsync, pcsync_bare, repo};

/// The bind password the password test gives slapd's admin: distinctive, with a space,
/// non-ASCII and characters that percent-, JSON-, form- and shell-encodings change.
const CANARY: &str = "Canary-Pw_9f27c4e1 ü%&+/=:?#<>!";
/// A wrong password, just as distinctive.
const WRONG: &str = "Wrong-Pw_3b81d6f2 é%&+/=:?#<>!";

// === TLS and plain-text binds ===

#[test]
fn a_certificate_for_another_name_is_refused_on_ldaps_and_starttls_with_one_line_naming_the_url() {
    // Signed by the CA pcsync trusts, but issued to a name the URL does not use.
    let slapd = Slapd::builder()
        .tls_names(&["ldap.elsewhere.example"])
        .start();
    let work = tempfile::tempdir().unwrap();
    for (url, assert) in over_ldaps_and_starttls(&slapd, work.path(), &slapd.ca_file, "inventory") {
        let (stdout, stderr) = output(&assert);
        assert.code(1);
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(
            stderr.starts_with("pcsync: error: ")
                && stderr.contains(url.trim_end_matches('/'))
                && stderr.contains("not valid for name"),
            "{url}: {stderr}"
        );
        eprintln!("{stderr}");
    }
    // The same server through the name on its certificate would be fine: the refusal is about
    // the name, not the CA (checked by the next test's foreign CA instead).
}

#[test]
fn a_certificate_from_another_ca_is_refused_on_ldaps_and_starttls() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let other = crate::common::slapd::write_test_pki(work.path(), "other-");
    for (url, assert) in over_ldaps_and_starttls(&slapd, work.path(), &other.ca_file, "check") {
        let (stdout, stderr) = output(&assert);
        assert.code(1);
        let fail: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert_eq!(fail.len(), 1, "{url}: {stdout}{stderr}");
        assert!(
            fail[0].contains(url.trim_end_matches('/')) && fail[0].contains("UnknownIssuer"),
            "{url}: {stdout}"
        );
        eprintln!("{}", fail[0]);
    }
}

#[test]
fn starttls_refused_by_the_server_is_an_error_never_a_plain_text_fallback() {
    let slapd = Slapd::builder().tls(false).start();
    let work = tempfile::tempdir().unwrap();
    let ca = crate::common::slapd::write_test_pki(work.path(), "any-");
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__STARTTLS", "true")
        .env("PCSYNC__DIRECTORY__TLS_CA_FILE", &ca.ca_file)
        .arg("inventory")
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.trim_end()
            == format!(
                "pcsync: error: no directory server answered: {}: StartTLS refused by the server \
                 (LDAP 2: unsupported extended operation); nothing was sent in clear",
                slapd.ldap_url.trim_end_matches('/')
            ),
        "{stderr}"
    );
    eprintln!("{stderr}");
}

/// A loopback TCP listener that records every connection and every byte it receives (it never
/// answers), standing in for "a directory server we must not send the password to".
struct Recorder {
    port: u16,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), received.clone());
        // Detached: it ends with the test process; each connection is read until EOF or 5 s.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder {
            port,
            connections,
            received,
        }
    }
}

#[test]
fn a_plain_bind_to_a_host_not_spelled_as_loopback_is_refused_and_sends_nothing() {
    // `127.1` is how inet_aton (and so getaddrinfo) spells 127.0.0.1, but pcsync counts a host
    // as loopback only when written 127.x.y.z, ::1 or localhost: so this URL is "remote" to
    // pcsync while it really reaches the recorder. That lets the test watch the wire.
    let recorder = Recorder::start();
    let work = tempfile::tempdir().unwrap();
    let password_file = work.path().join("bind.pw");
    write_private(&password_file, CANARY);
    let url = format!("ldap://127.1:{}", recorder.port);
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = pcsync_bare(work.path());
        cmd.arg("--config")
            .arg(repo("config/openldap.toml"))
            .env("PCSYNC__DIRECTORY__URL", &url)
            .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &password_file)
            .env("PCSYNC__DIRECTORY__TIMEOUT", "1s");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let assert = cmd.arg("inventory").assert();
        let (out, err) = output(&assert);
        (assert.get_output().status.code(), out, err)
    };

    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "pcsync: error: environment variable PCSYNC__DIRECTORY__URL: directory.url: ldap://127.1:{} \
             would send the bind password in clear text to a non-loopback host; use ldaps://, set \
             starttls = true, or set allow_insecure = true",
            recorder.port
        )
    );
    assert_eq!(recorder.connections.load(Ordering::SeqCst), 0);

    // Positive control: with allow_insecure the same URL does reach the recorder, and the
    // password is on the wire in clear text (which is why it is refused by default). The
    // recorder never answers, so pcsync times out after 1 s.
    let (code, out, err) = run(&[("PCSYNC__DIRECTORY__ALLOW_INSECURE", "true")]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(recorder.connections.load(Ordering::SeqCst) >= 1, "{err}");
    let wire = recorder.received.lock().unwrap().clone();
    assert!(
        contains(&wire, CANARY.as_bytes()),
        "the recorder should have seen the bind request: {wire:?}"
    );
    // And pcsync did not print it, but did warn that it was sending it in clear.
    assert!(!err.contains(CANARY) && !out.contains(CANARY), "{err}");
    assert_eq!(
        err.matches(&format!(
            "allow_insecure = true: the bind password is sent in clear text to {url}; use \
             ldaps:// or starttls = true"
        ))
        .count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn the_connect_time_check_refuses_a_plain_bind_even_when_config_validation_is_bypassed() {
    // Defence in depth: `Directory::connect` repeats the check, so a caller holding settings
    // that never went through validation cannot send the password either.
    let recorder = Recorder::start();
    let work = tempfile::tempdir().unwrap();
    let password_file = work.path().join("bind.pw");
    write_private(&password_file, CANARY);
    let url = format!("ldap://127.1:{}", recorder.port);
    let env = [
        ("PCSYNC__DIRECTORY__URL", url.clone()),
        (
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("PCSYNC__DIRECTORY__ALLOW_INSECURE", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut settings =
        pcsync::config::load_with_env(&repo("config/openldap.toml"), Some(env)).unwrap();
    settings.directory.allow_insecure = false;
    match pcsync::ldap::Directory::connect(&settings.directory).await {
        Ok(_) => panic!("connected over plain text to {url}"),
        Err(e) => assert_eq!(
            e.to_string(),
            format!(
                "refusing a simple bind over unencrypted {url}: use ldaps://, starttls = true, or \
                 allow_insecure = true"
            )
        ),
    }
    assert_eq!(recorder.connections.load(Ordering::SeqCst), 0);
    assert!(recorder.received.lock().unwrap().is_empty());
}

// === The bind password appears nowhere ===

/// Every form in which `password` could leak: as is, JSON-escaped, percent-encoded (upper and
/// lower hex, `+` for space), hex (both cases), base64 (standard and URL-safe, at the three
/// alignments it can have inside a longer encoded text), and its distinctive ASCII prefix alone
/// (a truncated or partly escaped copy).
fn leak_forms(password: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = password.as_bytes();
    let mut forms = vec![
        ("raw".to_string(), bytes.to_vec()),
        (
            "prefix".to_string(),
            password.split(' ').next().unwrap().as_bytes().to_vec(),
        ),
    ];
    let json = serde_json::to_string(password).unwrap();
    forms.push(("json".into(), json.trim_matches('"').as_bytes().to_vec()));
    let pct = |upper: bool, plus: bool| -> String {
        bytes
            .iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' if plus => "+".to_string(),
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    forms.push(("percent".into(), pct(true, false).into_bytes()));
    forms.push(("percent-lower".into(), pct(false, false).into_bytes()));
    forms.push(("form".into(), pct(true, true).into_bytes()));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(("hex".into(), hex.clone().into_bytes()));
    forms.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    for (name, alphabet) in [
        (
            "base64",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
        (
            "base64url",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        ),
    ] {
        for shift in 0..3 {
            let mut input = vec![0u8; shift];
            input.extend_from_slice(bytes);
            let encoded = base64(&input, alphabet);
            // Keep only characters determined by the password alone: skip the group holding
            // the filler bytes, and the last group (it depends on what follows).
            let start = if shift == 0 { 0 } else { 4 };
            let end = encoded.len() - 4;
            forms.push((
                format!("{name}@{shift}"),
                encoded.as_bytes()[start..end].to_vec(),
            ));
        }
    }
    forms
}

fn base64(input: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// What the password test collected: (where it came from, bytes).
#[derive(Default)]
struct Collected(Vec<(String, Vec<u8>)>);

impl Collected {
    /// Runs `cmd`, keeps its stdout and stderr, returns (exit code, stdout, stderr).
    fn run(&mut self, label: &str, mut cmd: assert_cmd::Command) -> (Option<i32>, String, String) {
        let assert = cmd.assert();
        let out = assert.get_output();
        self.0
            .push((format!("{label}: stdout"), out.stdout.clone()));
        self.0
            .push((format!("{label}: stderr"), out.stderr.clone()));
        let (stdout, stderr) = output(&assert);
        (out.status.code(), stdout, stderr)
    }

    /// Every file under `dir`, recursively.
    fn files_under(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.files_under(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.0.push((path.display().to_string(), bytes));
            }
        }
    }

    /// Panics listing every (source, form) where a password appears.
    fn assert_clean(&self, passwords: &[&str]) {
        let mut leaks = Vec::new();
        for password in passwords {
            for (form, needle) in leak_forms(password) {
                for (source, bytes) in &self.0 {
                    if contains(bytes, &needle) {
                        let text = String::from_utf8_lossy(bytes);
                        let line = text
                            .lines()
                            .find(|l| contains(l.as_bytes(), &needle))
                            .unwrap_or("")
                            .chars()
                            .take(300)
                            .collect::<String>();
                        leaks.push(format!("{source} ({form} of {password:?}): {line}"));
                    }
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "the bind password leaked {} time(s):\n{}",
            leaks.len(),
            leaks.join("\n")
        );
    }

    fn total_bytes(&self) -> usize {
        self.0.iter().map(|(_, b)| b.len()).sum()
    }
}

#[test]
fn the_bind_password_appears_in_no_output_log_audit_record_error_or_crash() {
    let slapd = Slapd::builder().admin_password(CANARY).start();
    let work = tempfile::tempdir().unwrap();
    // Configurations that hold the password on purpose live outside the scanned work dir.
    let bad = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut c = Collected::default();
    let cmd = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = pcsync(&slapd, w);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd
    };
    let trace_text = [("PCSYNC_LOG", "trace")];
    let trace_json: &[&str] = &["--log-format", "json"];

    // Read-only commands, with trace logging in both formats.
    let (code, out, err) = c.run("check", cmd(&["check"], &trace_text));
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = c.run(
        "inventory json",
        cmd(
            &[trace_json, &["inventory", "--format", "json"]].concat(),
            &trace_text,
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    c.run(
        "mappings",
        cmd(&["mappings", "--format", "json"], &trace_text),
    );
    // Over TLS too (rustls logs the handshake at debug and trace).
    let ca = slapd.ca_file.to_str().unwrap();
    for (url, starttls, log) in [
        (slapd.ldaps_url.as_str(), "false", ["--log-format", "text"]),
        (slapd.ldap_url.as_str(), "true", ["--log-format", "json"]),
    ] {
        let (code, out, err) = c.run(
            &format!("inventory over {url} starttls={starttls}"),
            cmd(
                &[&log[..], &["inventory"]].concat(),
                &[
                    ("PCSYNC_LOG", "trace"),
                    ("PCSYNC__DIRECTORY__URL", url),
                    ("PCSYNC__DIRECTORY__STARTTLS", starttls),
                    ("PCSYNC__DIRECTORY__TLS_CA_FILE", ca),
                ],
            ),
        );
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(
            err.contains("rustls"),
            "trace logging reaches rustls: {err}"
        );
    }
    for format in ["text", "json", "ldif", "powershell"] {
        let (code, _, err) = c.run(
            &format!("reconcile --format {format}"),
            cmd(&["reconcile", "--format", format], &trace_text),
        );
        assert_eq!(code, Some(2), "{format}: {err}");
    }
    c.run(
        "reconcile --plan-out",
        cmd(&["reconcile", "--plan-out", "plan.json"], &[]),
    );

    // A crash in the middle of a swap (abort: no unwinding), then the run that recovers it.
    let (code, _, err) = c.run(
        "failpoint crash",
        cmd(
            &[trace_json, &["reconcile", "--apply"]].concat(),
            &[
                ("PCSYNC_LOG", "trace"),
                ("FAILPOINTS", "swap-user-retired=return"),
            ],
        ),
    );
    assert_eq!(code, None, "the failpoint must abort: {err}");
    assert!(err.contains("failpoint swap-user-retired"), "{err}");
    let (code, out, err) = c.run(
        "reconcile --apply (recovers)",
        cmd(
            &[trace_json, &["reconcile", "--apply"]].concat(),
            &trace_text,
        ),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let run_id = out
        .lines()
        .find(|l| l.starts_with("applied "))
        .and_then(|l| l.split("(run ").nth(1))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string();
    let (code, _, err) = c.run("reconcile in sync", cmd(&["reconcile"], &trace_text));
    assert_eq!(code, Some(0), "{err}");

    // The audit log, every way it can be read.
    for args in [
        &["audit", "verify"][..],
        &["audit", "list"],
        &["audit", "list", "--runs", "--format", "json"],
        &["audit", "list", "--since-last", "review"],
        &["audit", "show", &run_id],
        &["audit", "export", "--format", "csv"],
        &["audit", "export", "--format", "json"],
        &["audit", "export", "--format", "ldif"],
    ] {
        let (code, _, err) = c.run(&args.join(" "), cmd(args, &trace_text));
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    // Undo the run (dry, then for real).
    let (code, _, err) = c.run("restore", cmd(&["restore", "--run", &run_id], &trace_text));
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = c.run(
        "restore --apply",
        cmd(
            &[trace_json, &["restore", "--run", &run_id, "--apply"]].concat(),
            &trace_text,
        ),
    );
    assert_eq!(code, Some(0), "{err}");

    // A wrong password: the bind fails with one line, which must not quote what was sent.
    let wrong = bad.path().join("wrong.pw");
    write_private(&wrong, WRONG);
    let wrong_env = [
        ("PCSYNC_LOG", "trace"),
        (
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            wrong.to_str().unwrap(),
        ),
    ];
    for args in [&["check"][..], &["inventory"], &["reconcile", "--apply"]] {
        let (code, _, _) = c.run(&format!("wrong password: {args:?}"), cmd(args, &wrong_env));
        assert_eq!(code, Some(1));
    }
    // The directory down (nothing listens on the URL).
    let down = format!("ldap://127.0.0.1:{}", free_port());
    for args in [&["check"][..], &["reconcile", "--apply"], &["mappings"]] {
        let (code, _, _) = c.run(
            &format!("directory down: {args:?}"),
            cmd(
                args,
                &[("PCSYNC_LOG", "trace"), ("PCSYNC__DIRECTORY__URL", &down)],
            ),
        );
        assert_eq!(code, Some(1));
    }
    c.run(
        "mappings --cached",
        cmd(
            &["mappings", "--cached"],
            &[("PCSYNC__DIRECTORY__URL", &down)],
        ),
    );

    // Bad configurations that hold the password where it does not belong: inline in the file,
    // under a misspelt key, on a line the TOML parser cannot read, inline from the environment.
    let base = std::fs::read_to_string(repo("config/openldap.toml")).unwrap();
    let with_line = |line: &str| base.replace("[directory]\n", &format!("[directory]\n{line}\n"));
    let toml_string = serde_json::to_string(CANARY).unwrap(); // also a valid TOML basic string
    let bad_configs = [
        (
            "inline",
            with_line(&format!("bind_password = {toml_string}")),
        ),
        (
            "misspelt key",
            with_line(&format!("bind_pasword = {toml_string}")),
        ),
        (
            "unterminated string",
            with_line(&format!("bind_password = \"{CANARY}")),
        ),
        (
            "bare value",
            with_line(&format!("bind_password = {CANARY}")),
        ),
        // Not here: the password written as a key name (`"S3cret" = 1`). An unknown key is
        // named in its error, as it must be to be found; docs/reliability.md lists this limit.
    ];
    for (name, text) in &bad_configs {
        let path = bad.path().join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        let mut bare = pcsync_bare(w);
        bare.arg("--config")
            .arg(&path)
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            .arg("check");
        let (code, out, err) = c.run(&format!("bad config: {name}"), bare);
        assert_eq!(code, Some(1), "{name}: {out}{err}");
    }
    let (code, _, _) = c.run(
        "bad config: PCSYNC__DIRECTORY__BIND_PASSWORD",
        cmd(&["check"], &[("PCSYNC__DIRECTORY__BIND_PASSWORD", CANARY)]),
    );
    assert_eq!(code, Some(1));

    // The daemon at trace level: scheduled runs, /healthz and /metrics, SIGHUP reloads of a
    // rejected (password inline) and a valid configuration, SIGTERM.
    let daemon_dir = w.join("daemon");
    let config = bad.path().join("daemon.toml");
    std::fs::write(&config, &base).unwrap();
    let mut d = Daemon::start(
        &slapd,
        &daemon_dir,
        &[
            ("PCSYNC_CONFIG", config.to_str().unwrap()),
            ("PCSYNC_LOG", "trace"),
        ],
    );
    d.wait_until("two scheduled runs", Duration::from_secs(30), || {
        d.log_text().matches("scheduled run finished").count() >= 2
    });
    c.0.push(("/healthz".into(), d.health().to_string().into_bytes()));
    c.0.push(("/metrics".into(), d.metrics().into_bytes()));
    for (name, text) in &bad_configs[..3] {
        std::fs::write(&config, text).unwrap();
        let rejected = d
            .log_text()
            .matches("configuration reload rejected")
            .count();
        d.signal("HUP");
        d.wait_until(
            &format!("reload of {name} rejected"),
            Duration::from_secs(10),
            || {
                d.log_text()
                    .matches("configuration reload rejected")
                    .count()
                    > rejected
            },
        );
    }
    std::fs::write(
        &config,
        base.replace("auto_apply = false", "auto_apply = true"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_until("reloaded and applied", Duration::from_secs(30), || {
        d.health()["last_run"]["outcome"] == "applied"
    });
    c.0.push((
        "/healthz after apply".into(),
        d.health().to_string().into_bytes(),
    ));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "{}", log_tail(&d.log, 20));

    // Everything pcsync wrote: audit segments, cursors, state, cache, plan, exports, daemon log.
    c.files_under(w);
    assert!(
        c.0.iter().any(|(s, _)| s.ends_with("audit.jsonl")),
        "no audit log collected"
    );
    assert!(
        c.total_bytes() > 100_000,
        "suspiciously little output: {} bytes",
        c.total_bytes()
    );
    eprintln!(
        "password test: {} outputs and files, {} bytes, {} forms of 2 passwords searched",
        c.0.len(),
        c.total_bytes(),
        leak_forms(CANARY).len()
    );
    c.assert_clean(&[CANARY, WRONG]);
}

// === File modes ===

/// Runs pcsync through `sh -c 'umask 000 && exec pcsync ...'` in `work`.
fn pcsync_umask_000(
    slapd: &Slapd,
    work: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("pcsync"))
        .arg("--config")
        .arg(repo("config/openldap.toml"))
        .args(args)
        .current_dir(work);
    for (key, _) in std::env::vars() {
        if key.starts_with("PCSYNC") || key == "FAILPOINTS" {
            cmd.env_remove(key);
        }
    }
    cmd.env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url).env(
        "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
        &slapd.admin_password_file,
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = crate::common::slapd::run(&mut cmd);
    (out.code, out.both())
}

/// Mode bits (0o777) of everything under `dir` (and `dir` itself), by path.
fn modes(dir: &Path) -> BTreeMap<PathBuf, u32> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.insert(path.clone(), meta.permissions().mode() & 0o777);
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

fn assert_private(dir: &Path) -> usize {
    let found = modes(dir);
    let wrong: Vec<String> = found
        .iter()
        .filter(|(path, mode)| {
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            **mode != want
        })
        .map(|(path, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    assert!(
        wrong.is_empty(),
        "not private (want dirs 700, files 600): {wrong:#?}"
    );
    found.len()
}

#[test]
fn state_and_audit_files_are_0600_and_directories_0700_even_under_umask_000() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Nested paths that do not exist yet, so pcsync creates every level.
    let state = w.join("private/state/nested");
    let audit_dir = w.join("private/audit/nested");
    let audit = audit_dir.join("audit.jsonl");
    let env = [
        ("PCSYNC__STATE__DIR", state.to_str().unwrap()),
        ("PCSYNC__AUDIT__PATH", audit.to_str().unwrap()),
        // Small segments, so sealed (rotated) segments are created too.
        ("PCSYNC__AUDIT__MAX_SEGMENT_SIZE", "2KiB"),
    ];
    let env_with = |extra: (&'static str, &'static str)| {
        let mut e = env.to_vec();
        e.push(extra);
        e
    };

    // A crash mid-swap, then the run that recovers it and applies the rest.
    let (code, out) = pcsync_umask_000(
        &slapd,
        w,
        &["reconcile", "--apply"],
        &env_with(("FAILPOINTS", "swap-endpoint-added=return")),
    );
    assert_eq!(code, None, "{out}");
    let (code, out) = pcsync_umask_000(&slapd, w, &["reconcile", "--apply"], &env);
    assert_eq!(code, Some(0), "{out}");
    let run_id = out
        .lines()
        .find_map(|l| l.split("(run ").nth(1))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string();
    let (code, out) = pcsync_umask_000(
        &slapd,
        w,
        &["audit", "list", "--since-last", "weekly"],
        &env,
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = pcsync_umask_000(&slapd, w, &["restore", "--run", &run_id, "--apply"], &env);
    assert_eq!(code, Some(0), "{out}");
    // A torn last line, moved aside by verify --repair into `<segment>.corrupt`.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&audit)
        .unwrap()
        .write_all(b"{\"torn")
        .unwrap();
    let (code, out) = pcsync_umask_000(&slapd, w, &["audit", "verify", "--repair"], &env);
    assert_eq!(code, Some(0), "{out}");

    // The daemon: lock, syncrepl cookie, mapping cache, its own audit records.
    let mut d = Daemon::spawn_with_umask(&slapd, &w.join("daemon-work"), &env, Some("000"));
    d.wait_until(
        "the syncrepl cookie and the mapping cache",
        Duration::from_secs(30),
        || state.join("syncrepl.cookie").exists() && state.join("mappings.json").exists(),
    );
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));

    let names: Vec<String> = modes(&w.join("private"))
        .keys()
        .map(|p| p.strip_prefix(w).unwrap().display().to_string())
        .collect();
    for expected in [
        "private/state/nested/reconcile.lock",
        "private/state/nested/audit-cursors/weekly.json",
        "private/state/nested/syncrepl.cookie",
        "private/state/nested/mappings.json",
        "private/audit/nested/audit.jsonl",
        "private/audit/nested/audit.000001.jsonl",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not created: {names:#?}"
        );
    }
    assert!(names.iter().any(|n| n.ends_with(".corrupt")), "{names:#?}");
    // pcsync created both trees from `private/` down, so every level must be private.
    let checked = assert_private(&w.join("private"));
    assert!(checked >= 12, "{names:#?}");
    eprintln!("modes: {checked} paths checked: {names:?}");
}

#[test]
fn a_pre_existing_open_state_directory_is_warned_about_and_left_as_it_is() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let state = w.join("state");
    let audit_dir = w.join("audit");
    for dir in [&state, &audit_dir] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let audit = audit_dir.join("audit.jsonl");
    let env = [
        ("PCSYNC__STATE__DIR", state.to_str().unwrap()),
        ("PCSYNC__AUDIT__PATH", audit.to_str().unwrap()),
    ];
    let mut cmd = pcsync(&slapd, w);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let assert = cmd.args(["reconcile", "--apply"]).assert();
    let (out, err) = output(&assert);
    assert.code(0);
    for dir in [&state, &audit_dir] {
        let warning = format!(
            "{} is accessible to group or others (mode 755); pcsync keeps its own files there at 0600; if only pcsync uses it, run `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
        assert_eq!(err.matches(&warning).count(), 1, "{out}{err}");
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o755,
            "pcsync must not change a directory it did not create"
        );
    }
    // The files inside are private all the same.
    for file in [state.join("reconcile.lock"), audit_dir.join("audit.jsonl")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

// === Nothing from a request is reflected into a response header ===

/// A SIP response read strictly (RFC 3261 §7.2): CRLF line ends only, no control characters,
/// a known status line, only the header names pcsync writes, each `Name: value`, and nothing
/// after the empty line. Returns the status code and the headers, or why it is not acceptable.
fn strict_sip_response(bytes: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("no empty line after the headers")?;
    if !rest.is_empty() {
        return Err(format!("bytes after the message: {rest:?}"));
    }
    if let Some(c) = head
        .chars()
        .find(|c| (c.is_control() && *c != '\r' && *c != '\n' && *c != '\t') || *c == '\u{7f}')
    {
        return Err(format!("control character {c:?} in the head"));
    }
    let lines: Vec<&str> = head.split("\r\n").collect();
    if lines.iter().any(|l| l.contains(['\r', '\n'])) {
        return Err("a bare CR or LF inside a line".into());
    }
    let status_line = lines[0];
    let mut parts = status_line.splitn(3, ' ');
    let (Some("SIP/2.0"), Some(code), Some(reason)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad status line {status_line:?}"));
    };
    let code: u16 = code
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let reasons = [
        (200, "OK"),
        (302, "Moved Temporarily"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (483, "Too Many Hops"),
    ];
    if !reasons.contains(&(code, reason)) {
        return Err(format!("unexpected status line {status_line:?}"));
    }
    let allowed = [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Allow",
        "Warning",
        "Server",
        "X-Pcsync-Mapping",
        "Content-Length",
    ];
    let mut headers = Vec::new();
    for line in &lines[1..] {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        if !allowed.contains(&name) {
            return Err(format!("unexpected header {name:?} in {line:?}"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    for single in [
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Warning",
        "Server",
        "Content-Length",
    ] {
        if headers.iter().filter(|(n, _)| n == single).count() > 1 {
            return Err(format!("{single} appears twice"));
        }
    }
    if !headers
        .iter()
        .any(|(n, v)| n == "Content-Length" && v == "0")
    {
        return Err("no Content-Length: 0".into());
    }
    Ok((code, headers))
}

/// Crafted requests: each tries to get `X-Injected` (or a second Contact) into the response
/// through an echoed header. `{id}` becomes a unique Call-ID suffix, `{via}` the client address.
fn crafted_requests() -> Vec<(&'static str, Vec<u8>)> {
    let uri = format!("sip:{FIXTURE_USER}@contoso.com");
    let request = |from: &str, to: &str, call_id: &str, cseq: &str, via_extra: &str| -> Vec<u8> {
        format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{{transport}} {{via}};branch=z9hG4bK{{id}}{via_extra}\r\n\
             Max-Forwards: 70\r\n\
             From: {from};tag=f{{id}}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}{{id}}\r\n\
             CSeq: {cseq}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let plain_to = format!("<{uri}>");
    let from = "<sip:alice@contoso.com>";
    vec![
        (
            "bare CR in From",
            request("<sip:alice@contoso.com>\rX-Injected: from", &plain_to, "c-", "1 INVITE", ""),
        ),
        (
            "CR CR in To",
            request(from, &format!("{plain_to}\r\rX-Injected: to"), "c-", "1 INVITE", ""),
        ),
        (
            "NUL in Call-ID",
            request(from, &plain_to, "c\0X-Injected: nul-", "1 INVITE", ""),
        ),
        (
            "vertical tab, form feed, ESC, DEL in To",
            request(from, &format!("{plain_to}\x0b\x0c\x1b[2J\x7fX-Injected: ctl"), "c-", "1 INVITE", ""),
        ),
        (
            "bare CR in CSeq",
            request(from, &plain_to, "c-", "1 INVITE\rX-Injected: cseq", ""),
        ),
        (
            "bare CR in Via",
            request(from, &plain_to, "c-", "1 INVITE", "\rX-Injected: via"),
        ),
        (
            "a folded line that looks like a header",
            request(from, &plain_to, "c-\r\n X-Injected: fold ", "1 INVITE", ""),
        ),
        (
            "a second Contact smuggled through To",
            request(from, &format!("{plain_to}\rContact: <sip:evil@attacker.example>"), "c-", "1 INVITE", ""),
        ),
        (
            "a Contact header of its own",
            request(from, &format!("{plain_to}\r\nContact: <sip:evil@attacker.example>"), "c-", "1 INVITE", ""),
        ),
        (
            "bare LF line ends with an injected line",
            request(from, &format!("{plain_to}\nX-Injected: lf"), "c-", "1 INVITE", ""),
        ),
        (
            "percent-encoded CRLF in the Request-URI",
            format!(
                "INVITE sip:ocschat%0D%0AX-Injected:%20uri@contoso.com SIP/2.0\r\n\
                 Via: SIP/2.0/{{transport}} {{via}};branch=z9hG4bK{{id}}\r\n\
                 From: {from};tag=f{{id}}\r\nTo: <sip:ocschat%0D%0AX-Injected:%20uri@contoso.com>\r\n\
                 Call-ID: c-{{id}}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "invalid UTF-8 in From (never answered: nothing to echo safely)",
            [
                b"OPTIONS sip:x@contoso.com SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK{id}\r\n\
                  From: <sip:a@b>\xff\xfeX-Injected: utf8;tag=f{id}\r\nTo: <sip:x@contoso.com>\r\n\
                  Call-ID: c-{id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    .as_slice(),
            ]
            .concat(),
        ),
        (
            "defect (missing To) with a CR in From: the 400 echoes",
            format!(
                "OPTIONS {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/{{transport}} {{via}};branch=z9hG4bK{{id}}\r\n\
                 From: <sip:a@b>\rX-Injected: warning;tag=f{{id}}\r\n\
                 Call-ID: c-{{id}}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        ),
    ]
}

fn fill(template: &[u8], transport: &str, via: SocketAddr, id: usize) -> Vec<u8> {
    let mut out = template.to_vec();
    for (key, value) in [
        ("{transport}", transport.to_string()),
        ("{via}", via.to_string()),
        ("{id}", id.to_string()),
    ] {
        while let Some(at) = find(&out, key.as_bytes()) {
            out.splice(at..at + key.len(), value.bytes());
        }
    }
    out
}

fn check_no_injection(what: &str, response: &[u8]) -> (u16, Vec<(String, String)>) {
    let (code, headers) = strict_sip_response(response).unwrap_or_else(|why| {
        panic!(
            "{what}: {why}:\n{}",
            String::from_utf8_lossy(response).escape_debug()
        )
    });
    for (name, value) in &headers {
        if name == "Contact" {
            assert_eq!(
                value, FIXTURE_CONTACT,
                "{what}: Contact must come from the table"
            );
        }
        if name == "Warning" {
            assert!(
                value.starts_with("399 pcsync \"") && !value.contains("Injected"),
                "{what}: Warning {value:?}"
            );
        }
    }
    (code, headers)
}

fn call_id(headers: &[(String, String)]) -> &str {
    headers
        .iter()
        .find(|(n, _)| n == "Call-ID")
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// One valid OPTIONS, so a test can tell "no answer to the crafted message" from "still waiting".
fn probe_options(transport: &str, via: SocketAddr, id: usize) -> Vec<u8> {
    format!(
        "OPTIONS sip:{FIXTURE_USER}@contoso.com SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bKp{id}\r\n\
         From: <sip:probe@contoso.com>;tag=p\r\nTo: <sip:{FIXTURE_USER}@contoso.com>\r\n\
         Call-ID: probe-{id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one SIP message head from a stream (pcsync's responses have no body); `None` when the
/// server closed the connection before sending anything more.
fn read_stream_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) if buf.is_empty() => return None,
            other => panic!(
                "stream ended or timed out ({other:?}) after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    Some(buf)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn crafted_sip_and_http_requests_cannot_inject_a_response_header_line() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let redirector = Redirector::start(&slapd, work.path());

    // UDP: each crafted datagram, then a probe; every answer is read strictly. The probe's
    // answer tells that a crafted message that got no answer was dropped, not delayed.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let mut answered = 0;
    for (i, (what, template)) in crafted_requests().iter().enumerate() {
        socket
            .send_to(&fill(template, "UDP", local, i), redirector.addr)
            .unwrap();
        socket
            .send_to(&probe_options("UDP", local, i), redirector.addr)
            .unwrap();
        loop {
            let mut buf = [0u8; 65536];
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{what}: no answer to the probe: {e}"));
            let (code, headers) = check_no_injection(what, &buf[..n]);
            if call_id(&headers) == format!("probe-{i}") {
                assert_eq!(code, 200, "{what}: probe");
                break;
            }
            answered += 1;
        }
    }
    // Datagrams are answered concurrently, so a crafted message's answer can come after its
    // probe's, and the last one after the loop: collect those for a bounded time.
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        let (_, headers) = check_no_injection("a late answer", &buf[..n]);
        if !call_id(&headers).starts_with("probe-") {
            answered += 1;
        }
    }
    // All but the invalid UTF-8 one.
    assert_eq!(answered, crafted_requests().len() - 1);
    eprintln!(
        "SIP: {} crafted requests over UDP, {answered} answered (the rest dropped)",
        crafted_requests().len()
    );

    // TCP: the same messages on one connection; after each, the probe's answer must come back,
    // so no crafted message desynchronised the framing.
    // A message the server cannot read (invalid UTF-8) makes it close the connection (the
    // stream cannot be resynchronised): reconnect then, and only then.
    let mut stream = connect(redirector.addr);
    let mut closed = Vec::new();
    for (i, (what, template)) in crafted_requests().iter().enumerate() {
        let local = stream.local_addr().unwrap();
        stream.write_all(&fill(template, "TCP", local, i)).unwrap();
        let _ = stream.write_all(&probe_options("TCP", local, i));
        loop {
            let Some(message) = read_stream_message(&mut stream) else {
                closed.push(*what);
                stream = connect(redirector.addr);
                break;
            };
            let (_, headers) = check_no_injection(what, &message);
            if call_id(&headers) == format!("probe-{i}") {
                break;
            }
        }
    }
    assert_eq!(
        closed,
        ["invalid UTF-8 in From (never answered: nothing to echo safely)"]
    );
    drop(redirector);

    // HTTP: /healthz, /metrics and the 404 path with crafted paths and headers. Nothing of the
    // request may come back, in the head or in the body.
    let d = Daemon::start(&slapd, &work.path().join("daemon"), &[]);
    let marker = "Zq7Injected";
    let requests = [
        format!(
            "GET /nope-{marker}%0D%0AX-{marker}:%20path HTTP/1.1\r\nHost: {marker}.example\r\n\r\n"
        ),
        format!(
            "GET /healthz?{marker}=%0D%0ASet-Cookie:%20{marker} HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {marker}\r\n\r\n"
        ),
        format!(
            "GET /metrics HTTP/1.1\r\nHost: h\r\nAccept: {marker}\r\nUser-Agent: {marker}\r\n\r\n"
        ),
        format!("GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: {marker}\rX-{marker}: cr\r\n\r\n"),
        format!("GET /{marker}\0 HTTP/1.1\r\nHost: h\r\n\r\n"),
        format!("GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: \u{e9}{marker}\r\n\r\n"),
        format!("POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n{marker}"),
    ];
    for request in &requests {
        let mut s = TcpStream::connect(d.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        // One response per request; the server may keep the connection open, so read until the
        // head and its Content-Length body are in.
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            if let Some(end) = find(&response, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|len| response.len() >= end + 4 + len) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 "), "{request:?} -> {text:?}");
        assert!(!text.contains(marker), "{request:?} reflected: {text:?}");
        eprintln!(
            "HTTP {:?} -> {:?}",
            request.lines().next().unwrap_or(""),
            text.lines().next().unwrap_or("")
        );
        let head = &text[..text.find("\r\n\r\n").unwrap_or(text.len())];
        for line in head.split("\r\n").skip(1) {
            let name = line.split(':').next().unwrap().to_ascii_lowercase();
            assert!(
                [
                    "content-type",
                    "content-length",
                    "date",
                    "connection",
                    "allow"
                ]
                .contains(&name.as_str()),
                "{request:?}: unexpected header line {line:?}"
            );
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
