//! CLI polish: version with the git revision, completions, the man page, help examples, and a
//! progress line that appears on a terminal only.

use std::process::Command;

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
        top.contains("Exit codes:") && top.contains("3  blocked by a safety guard"),
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
