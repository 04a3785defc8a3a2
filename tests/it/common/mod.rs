//! Shared fixtures for the integration tests: a real slapd per test, and helpers around the CLI.

pub mod daemon;
pub mod proxy;
pub mod redirect;
pub mod samba;
pub mod samba_pair;
pub mod slapd;

use std::path::{Path, PathBuf};

use slapd::Slapd;

/// A directory the tests run pcsync against: a per-test slapd or the shared Samba AD DC. The
/// process harnesses (`pcsync`, `redirect::Redirector`, `daemon::Daemon`) take any of them, so
/// one scenario runs on both.
pub trait Backend {
    /// The shipped configuration file for this kind of directory.
    fn config(&self) -> PathBuf;
    /// The overrides an operator would set for this server: URL, CA, credentials (and, where
    /// the shipped file keeps state under /var/lib, the state dir and audit log relative to the
    /// working directory).
    fn env(&self) -> Vec<(&'static str, String)>;
    /// Faster timings the long-running harnesses use on this backend (a 1 s cron, a short poll),
    /// or none: the shipped values stay in force.
    fn harness_timings(&self) -> &'static [(&'static str, &'static str)];
}

/// `pcsync` with `backend`'s shipped configuration and overrides, in `workdir`, with a clean
/// PCSYNC environment.
pub fn pcsync_on(backend: &dyn Backend, workdir: &Path) -> assert_cmd::Command {
    pcsync_on_config(backend, workdir, &backend.config())
}

/// [`pcsync_on`] with another configuration file (e.g. the shipped one with a line added).
pub fn pcsync_on_config(
    backend: &dyn Backend,
    workdir: &Path,
    config: &Path,
) -> assert_cmd::Command {
    let mut cmd = pcsync_bare(workdir);
    cmd.arg("--config").arg(config);
    for (k, v) in backend.env() {
        cmd.env(k, v);
    }
    cmd
}

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The run_id of the `n`th run (from 0) in the audit log `var/audit.jsonl` of `work`, the path
/// the tests' configurations give it.
pub fn run_id(work: &Path, n: usize) -> String {
    pcsync::audit::read(&work.join("var/audit.jsonl"))
        .expect("audit log verifies")
        .iter()
        .filter(|r| r.event == pcsync::audit::Event::RunStart)
        .nth(n)
        .expect("that many runs")
        .run_id
        .clone()
}

/// A copy of the shipped `config/openldap.toml` in `work` (as `name`) with `from` replaced by
/// `to`; fails when `from` is not in it, so a test never runs on an unchanged configuration.
pub fn shipped_config_with(work: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("config/openldap.toml")).unwrap();
    assert!(
        text.contains(from),
        "{from:?} is not in the shipped configuration"
    );
    let path = work.join(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

/// `pcsync` with `config/openldap.toml`, pointed at `slapd` through the environment overrides
/// an operator would use, running in `workdir` so that relative state paths stay in the test's
/// temp dir. Inherited PCSYNC variables are removed so the host cannot leak into a test.
pub fn pcsync(slapd: &Slapd, workdir: &Path) -> assert_cmd::Command {
    pcsync_on(slapd, workdir)
}

/// `pcsync <command>` against `slapd` twice, over `ldaps://` and over `ldap://` with StartTLS,
/// trusting the CA in `ca_file`: (the URL used, how the run ended) for each.
pub fn over_ldaps_and_starttls(
    slapd: &Slapd,
    workdir: &Path,
    ca_file: &Path,
    command: &str,
) -> Vec<(String, assert_cmd::assert::Assert)> {
    [(&slapd.ldaps_url, "false"), (&slapd.ldap_url, "true")]
        .into_iter()
        .map(|(url, starttls)| {
            let assert = pcsync(slapd, workdir)
                .env("PCSYNC__DIRECTORY__URL", url)
                .env("PCSYNC__DIRECTORY__STARTTLS", starttls)
                .env("PCSYNC__DIRECTORY__TLS_CA_FILE", ca_file)
                .arg(command)
                .assert();
            (url.to_string(), assert)
        })
        .collect()
}

/// `pcsync` with no configuration chosen, in `workdir`, with a clean PCSYNC environment.
pub fn pcsync_bare(workdir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("pcsync").expect("pcsync binary");
    for (key, _) in std::env::vars() {
        if key.starts_with("PCSYNC") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(workdir)
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// stdout and stderr of a finished command, as text.
pub fn output(assert: &assert_cmd::assert::Assert) -> (String, String) {
    let out = assert.get_output();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails a test that needs the failpoints compiled in (`--features failpoints`), saying how to
/// run it, instead of letting it pass without exercising them.
pub fn needs_failpoints() {
    if !cfg!(feature = "failpoints") {
        panic!(
            "this test needs pcsync built with failpoints: run scripts/test.sh, or cargo test \
             --features failpoints"
        );
    }
}
