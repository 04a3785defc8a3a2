//! Embeds the git revision in `pcsync --version`.
//!
//! Taken from `PCSYNC_GIT_REV` when set (container builds have no .git), else from
//! `git rev-parse`; "unknown" when neither is available.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PCSYNC_GIT_REV");
    let rev = match std::env::var("PCSYNC_GIT_REV") {
        Ok(rev) if !rev.is_empty() => rev,
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(rev) => {
                // Rebuild when HEAD moves (commit, checkout, reset).
                for path in ["HEAD", "logs/HEAD"] {
                    if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
                rev
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=PCSYNC_GIT_REV={rev}");
}
