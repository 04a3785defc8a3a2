//! The README's first command, `scripts/demo.sh`, runs start to finish without a question and
//! ends with the audit log verified (the binary under test stands in for its build step).

use std::process::Command;
use std::time::Duration;

use crate::common::repo;
use crate::common::slapd::run_with_timeout;

#[test]
fn the_demo_runs_start_to_finish_and_verifies_the_audit_log() {
    let mut cmd = Command::new("bash");
    cmd.arg(repo("scripts/demo.sh"))
        .env("PCSYNC_BIN", assert_cmd::cargo::cargo_bin("pcsync"))
        .env_remove("PCSYNC_CONFIG")
        .stdin(std::process::Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("PCSYNC__") {
            cmd.env_remove(key);
        }
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120)).unwrap();
    let all = out.both();
    assert!(out.success(), "demo failed:\n{all}");
    for step in [
        "== 3. pcsync check",
        "== 4. pcsync reconcile",
        "== 5. pcsync reconcile --apply",
        "== 6. pcsync run",
        "== 7. pcsync probe",
        "== 8. pcsync audit",
        "== 9. Clean up",
    ] {
        assert!(all.contains(step), "missing step {step:?}:\n{all}");
    }
    assert!(all.contains("applied 2 of 2 swap(s)"), "{all}");
    assert!(all.contains("a second dry run now exits 0"), "{all}");
    assert!(
        all.contains("SIP/2.0 302 Moved Temporarily\nContact: <sip:ocschat@pcpool1.contoso.com:5061;transport=tls>"),
        "{all}"
    );
    assert!(
        all.contains("Contact: <sip:ocschat@pcpool2.contoso.com:5061;transport=tls>"),
        "{all}"
    );
    assert!(
        all.contains("pcsync run stopped on SIGTERM (exit 0)"),
        "{all}"
    );
    let verified = all
        .lines()
        .find(|l| l.starts_with("OK: "))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(verified.contains("record(s)"), "{verified}");
}
