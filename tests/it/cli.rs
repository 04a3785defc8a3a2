//! CLI polish: version with the git revision, completions, the man page, help examples, and a
//! progress line that appears on a terminal only.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_bare, repo};

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("pcsync")
}

#[test]
fn version_names_the_git_revision() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo(""))
        .output()
        .expect("git is needed to build and test pcsync: apt-get install git");
    let rev = String::from_utf8_lossy(&rev.stdout).trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_bare(work.path()).arg("--version").assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    assert_eq!(
        stdout.trim(),
        format!("pcsync {} (git {rev})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    let work = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let assert = pcsync_bare(work.path())
            .args(["completions", shell])
            .assert();
        let (stdout, _) = output(&assert);
        assert.code(0);
        assert!(
            stdout.contains("inventory") && stdout.contains("check"),
            "{shell}: {stdout}"
        );
    }
    // A usage error exits 1 (2 means "changes pending" to scripts).
    let assert = pcsync_bare(work.path())
        .args(["completions", "tcsh"])
        .assert();
    assert.code(1);
}

#[test]
fn the_man_page_covers_every_command() {
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_bare(work.path()).arg("man").assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    assert!(stdout.contains(".TH pcsync 1"), "{stdout}");
    for sub in ["CHECK", "INVENTORY", "COMPLETIONS", "AUDIT", "AUDIT VERIFY"] {
        assert!(
            stdout.contains(&format!(".SH \"COMMAND: PCSYNC {sub}\"")),
            "{sub}"
        );
    }
    assert!(
        stdout.contains("Exit codes"),
        "exit codes belong in the man page"
    );
}

#[test]
fn every_command_help_has_an_example_and_the_exit_codes_are_documented() {
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_bare(work.path()).arg("--help").assert();
    let (top, _) = output(&assert);
    assert!(
        top.contains("Exit codes:") && top.contains("3  blocked: a safety guard stopped the run"),
        "{top}"
    );
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 4, "{top}");
    for command in commands {
        let assert = pcsync_bare(work.path())
            .args([command.as_str(), "--help"])
            .assert();
        let (help, _) = output(&assert);
        assert!(
            help.contains("Example"),
            "`pcsync {command} --help` has no example:\n{help}"
        );
    }
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();

    // Not a terminal: stderr stays empty.
    let assert = pcsync(&slapd, work.path()).arg("inventory").assert();
    let (_, stderr) = output(&assert);
    assert.code(0);
    assert!(stderr.is_empty(), "{stderr}");

    // A terminal (util-linux `script` gives the command a pty): the summary line appears,
    // unless --quiet.
    let config = repo("config/openldap.toml");
    let run_in_pty = |extra: &str| {
        let cmd = format!(
            "{} --config {} {extra} inventory --format json >/dev/null && {} --config {} {extra} reconcile --format json >/dev/null; test $? = 2",
            bin().display(),
            config.display(),
            bin().display(),
            config.display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(work.path())
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            .output()
            .expect("`script` (util-linux) is needed: apt-get install bsdutils");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = run_in_pty("");
    assert!(tty.contains("read 7 objects in"), "inventory: {tty:?}");
    assert_eq!(
        tty.matches("read 7 objects in").count(),
        2,
        "reconcile: {tty:?}"
    );
    let quiet = run_in_pty("--quiet");
    assert!(!quiet.contains("objects in"), "{quiet:?}");
}

/// `pcsync check` with the shipped OpenLDAP configuration, a password file, a directory URL
/// where nothing listens (the checks before the connection are what these tests look at) and
/// `env`.
fn check_without_a_server(work: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let pw = work.join("bind.pw");
    std::fs::write(&pw, "s3cr3t\n").unwrap();
    let mut cmd = pcsync_bare(work);
    cmd.arg("--config")
        .arg(repo("config/openldap.toml"))
        .env("PCSYNC__DIRECTORY__URL", "ldap://127.0.0.1:1")
        .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &pw)
        .env("PCSYNC__DIRECTORY__TIMEOUT", "2s");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let assert = cmd.arg("check").assert();
    let (stdout, stderr) = output(&assert);
    (
        assert.get_output().status.code().unwrap_or(-1),
        stdout,
        stderr,
    )
}

/// The `check` line for `name`, if any.
fn check_line<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
}

// See: #19. `check` shows when the schedule fires next, so a cron that does not mean what the
// administrator thought is seen before the weekend.
#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the fire times check prints are relative to the real clock of the process under test"
)]
fn check_prints_the_next_three_fire_times_of_the_schedule() {
    let work = tempfile::tempdir().unwrap();
    let before = Utc::now();
    let (_, stdout, stderr) =
        check_without_a_server(work.path(), &[("PCSYNC__SCHEDULE__CRON", "0 0 3 * * *")]);
    let after = Utc::now();
    let line = check_line(&stdout, "schedule").unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let prefix = "ok    schedule   \"0 0 3 * * *\" (UTC) fires next at ";
    assert!(line.starts_with(prefix), "{line}");
    let times: Vec<DateTime<Utc>> = line[prefix.len()..]
        .split(", ")
        .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
        .collect();
    assert_eq!(times.len(), 3, "{line}");
    assert!(
        times[0] > before && times[0] <= after + chrono::Duration::days(1),
        "{line}"
    );
    assert_eq!(
        times[0].format("%H:%M:%S").to_string(),
        "03:00:00",
        "{line}"
    );
    assert_eq!(times[1] - times[0], chrono::Duration::days(1), "{line}");
    assert_eq!(times[2] - times[1], chrono::Duration::days(1), "{line}");
}

// See: #19. February never has a 31st: refused at load, with the reason. A cron whose years
// are all past loads (it did fire once) but `check` fails it.
#[test]
fn a_schedule_that_never_fires_is_refused_and_check_fails_one_that_never_fires_again() {
    let work = tempfile::tempdir().unwrap();
    let (code, stdout, _) =
        check_without_a_server(work.path(), &[("PCSYNC__SCHEDULE__CRON", "0 0 0 31 2 *")]);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stdout.trim_end(),
        "FAIL  config     environment variable PCSYNC__SCHEDULE__CRON: schedule.cron: \"0 0 0 31 2 *\" never fires: day 31 never occurs in February"
    );

    let (code, stdout, _) = check_without_a_server(
        work.path(),
        &[("PCSYNC__SCHEDULE__CRON", "0 0 0 1 1 * 2001")],
    );
    assert_eq!(code, 1, "{stdout}");
    let line = check_line(&stdout, "schedule").unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("FAIL  schedule   \"0 0 0 1 1 * 2001\" never fires after "),
        "{line}"
    );
}

// See: #19. A quoted "false" for a switch that controls writes is refused, naming the key and
// the file.
#[test]
fn a_quoted_boolean_in_the_file_is_refused_naming_key_and_file() {
    let work = tempfile::tempdir().unwrap();
    let config = crate::common::shipped_config_with(
        work.path(),
        "quoted.toml",
        "auto_apply = false\n",
        "auto_apply = \"false\"\n",
    );
    let pw = work.path().join("bind.pw");
    std::fs::write(&pw, "s3cr3t\n").unwrap();
    let assert = pcsync_bare(work.path())
        .arg("--config")
        .arg(&config)
        .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &pw)
        .arg("reconcile")
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "pcsync: error: {}: safety.auto_apply: expected true or false, found the string \"false\": write false without quotes",
            config.display()
        )
    );
}

// See: #19. "unknown unit" said nothing about a date with a typo in it.
#[test]
fn a_time_argument_with_a_bad_month_says_so_and_shows_the_accepted_forms() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("audit.jsonl");
    std::fs::write(&log, "").unwrap();
    let assert = pcsync_bare(work.path())
        .args(["audit", "list", "--log"])
        .arg(&log)
        .args(["--since", "2026-13-01T00:00:00Z"])
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(
        stderr.trim_end(),
        "pcsync: error: --since: \"2026-13-01T00:00:00Z\": month 13 is out of range (1 to 12); use RFC 3339 (2026-11-24T08:00:00Z, 2026-11-24T09:00:00+01:00) or an age (30m, 2h, 7d)"
    );
}

/// Binds 127.0.0.1:`port` over UDP, waiting (bounded) while another process holds it: the port
/// is what the test is about, so a free one will not do.
fn bind_sip_port(port: u16) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(socket) => return socket,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("127.0.0.1:{port}/udp stayed busy for 60 s: {e}"),
        }
    }
}

// See: #19. `probe --server 127.0.0.1` goes to SIP's default port, as a SIP client would.
#[test]
fn probe_without_a_port_uses_sips_default_port() {
    let socket = bind_sip_port(5060);
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "probe",
            "sip:ocschat@contoso.com",
            "--server",
            "127.0.0.1",
            "--method",
            "OPTIONS",
            "--timeout",
            "20s",
        ])
        .current_dir(work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 65_535];
    let received = socket.recv_from(&mut buf);
    let Ok((n, from)) = received else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "nothing arrived on 127.0.0.1:5060: {received:?}; pcsync said {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        request.starts_with("OPTIONS sip:ocschat@contoso.com SIP/2.0\r\n"),
        "{request}"
    );
    // Answer with the request's own dialog headers, as any SIP server would.
    let mut response = String::from("SIP/2.0 200 OK\r\n");
    for line in request.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            response.push_str(line);
            response.push_str("\r\n");
        }
    }
    response.push_str("Content-Length: 0\r\n\r\n");
    socket.send_to(response.as_bytes(), from).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim_end(), "SIP/2.0 200 OK");
}
