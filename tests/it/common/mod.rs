//! Shared fixtures for the integration tests: a real slapd per test, and helpers around the CLI.

pub mod daemon;
pub mod redirect;
pub mod samba;
pub mod slapd;

use std::path::{Path, PathBuf};

use slapd::Slapd;

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `pcsync` with `config/openldap.toml`, pointed at `slapd` through the environment overrides
/// an operator would use, running in `workdir` so that relative state paths stay in the test's
/// temp dir. Inherited PCSYNC variables are removed so the host cannot leak into a test.
pub fn pcsync(slapd: &Slapd, workdir: &Path) -> assert_cmd::Command {
    let mut cmd = pcsync_bare(workdir);
    cmd.arg("--config")
        .arg(repo("config/openldap.toml"))
        .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
        .env(
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            &slapd.admin_password_file,
        );
    cmd
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
