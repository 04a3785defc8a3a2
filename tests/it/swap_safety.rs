//! Swap safety (issue #16) against a real slapd: the preflight before the first write (a pool
//! DN that names nothing, an object sitting at the endpoint's DN), swaps blocked by findings
//! exiting 3 in the dry run and in apply, and identity kept: every user a blocked swap did not
//! touch keeps its entryUUID, however many runs go by.

use std::path::Path;

use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_on_config, repo};

const USER: &str = "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com";
const FABRIKAM_USER: &str = "cn=OCSChat Fabrikam,ou=Service Accounts,dc=contoso,dc=com";
const POOL1: &str = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
const MISSING_POOL: &str = "CN=Lc Services,CN=Microsoft,CN=9:9,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

/// `pcsync reconcile ARGS` with `config` (the shipped one when `None`): (code, stdout, stderr).
fn reconcile(
    slapd: &Slapd,
    work: &Path,
    config: Option<&Path>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = match config {
        Some(c) => pcsync_on_config(slapd, work, c),
        None => pcsync(slapd, work),
    };
    let assert = cmd.arg("reconcile").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

/// The findings of a JSON plan of `kind`, as (dn, reason).
fn findings(plan_json: &str, kind: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(plan_json)
        .unwrap_or_else(|e| panic!("not a JSON plan ({e}): {plan_json}"));
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| {
            (
                f["dn"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The DNs and actions of a JSON plan's changes.
fn actions(plan_json: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(plan_json).unwrap();
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["dn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Case 1: a pool's home_server_dn names no entry. The dry run and the apply both report a
/// preflight finding naming the DN and exit 3; the swap onto that pool is not written (its user
/// keeps its entryUUID, no endpoint points at nothing), and the other swap goes ahead.
#[test]
fn a_pool_dn_that_names_nothing_blocks_only_its_own_swap() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let config =
        crate::common::shipped_config_with(work.path(), "pcsync.toml", POOL1, MISSING_POOL);
    let uuid = slapd.entry_uuid(USER).unwrap();

    let (code, out, err) = reconcile(&slapd, work.path(), Some(&config), &["--format", "json"]);
    assert_eq!(code, Some(3), "dry run: {out}{err}");
    let found = findings(&out, "preflight");
    assert_eq!(found.len(), 1, "{out}");
    assert!(found[0].0.eq_ignore_ascii_case(MISSING_POOL), "{found:?}");
    assert!(
        found[0].1.contains("pcpool1.contoso.com") && found[0].1.contains("names no entry"),
        "{found:?}"
    );
    assert!(
        actions(&out)
            .iter()
            .all(|(_, dn)| !dn.eq_ignore_ascii_case(USER)),
        "the blocked swap is not planned: {out}"
    );

    for _ in 0..2 {
        let (code, out, err) = reconcile(&slapd, work.path(), Some(&config), &["--apply"]);
        assert_eq!(code, Some(3), "apply: {out}{err}");
        assert!(out.contains("names no entry"), "{out}{err}");
        assert_eq!(slapd.entry_uuid(USER).as_deref(), Some(uuid.as_str()));
        assert_eq!(
            slapd.count(
                "dc=contoso,dc=com",
                "(msRTCSIP-PrimaryUserAddress=sip:ocschat@contoso.com)"
            ),
            1,
            "the URI is held once, by the user"
        );
    }
    // The other swap (pool 2) was applied.
    assert_eq!(slapd.entry_uuid(FABRIKAM_USER), None);
}

/// Case 2: an object already sits at the endpoint's DN, holding another address or none. The
/// plan does not say create_endpoint; the dry run and apply report it and exit 3, and however
/// many runs go by, the user is never deleted or re-created (same entryUUID).
#[test]
fn an_object_at_the_endpoint_dn_blocks_the_swap_and_the_user_keeps_its_identity() {
    for address in [Some("sip:someone-else@contoso.com"), None] {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let (code, out, err) = reconcile(&slapd, work.path(), None, &["--format", "json"]);
        assert_eq!(code, Some(2), "{out}{err}");
        let endpoint = actions(&out)
            .into_iter()
            .find(|(action, dn)| action == "create_endpoint" && dn.contains("Application Contacts"))
            .map(|(_, dn)| dn)
            .unwrap();
        let mut ldif = format!(
            "dn: {endpoint}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: contact\ncn: {}\nsn: leftover\n",
            endpoint
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("CN=")
                .trim_start_matches("cn=")
        );
        if let Some(a) = address {
            ldif.push_str(&format!("msRTCSIP-PrimaryUserAddress: {a}\n"));
        }
        slapd.add(&ldif);
        let uuid = slapd.entry_uuid(USER).unwrap();

        let (code, out, err) = reconcile(&slapd, work.path(), None, &["--format", "json"]);
        assert_eq!(code, Some(3), "{address:?}: dry run {out}{err}");
        let found = findings(&out, "preflight");
        assert!(
            found
                .iter()
                .any(|(dn, reason)| dn.eq_ignore_ascii_case(&endpoint)
                    && reason.contains("already exists")),
            "{address:?}: {out}"
        );
        assert!(
            !actions(&out)
                .iter()
                .any(|(_, dn)| dn.eq_ignore_ascii_case(&endpoint) || dn.eq_ignore_ascii_case(USER)),
            "{address:?}: no change for the blocked swap: {out}"
        );
        // `check` shows the same finding.
        let assert = pcsync(&slapd, work.path()).arg("check").assert();
        let (check_out, check_err) = output(&assert);
        assert_eq!(
            assert.get_output().status.code(),
            Some(1),
            "{check_out}{check_err}"
        );
        assert!(
            check_out.lines().any(|l| l.starts_with("FAIL  swaps")
                && l.to_ascii_lowercase()
                    .contains(&endpoint.to_ascii_lowercase())
                && l.contains("already exists")),
            "{address:?}: {check_out}"
        );
        for run in 0..2 {
            let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply"]);
            assert_eq!(code, Some(3), "{address:?} run {run}: {out}{err}");
            assert_eq!(
                slapd.entry_uuid(USER).as_deref(),
                Some(uuid.as_str()),
                "{address:?} run {run}: the user keeps its identity"
            );
        }
    }
}

/// Case 6: a swap blocked by a finding (here unexpected_home: the user is homed elsewhere than
/// legacy_home_server_dn) is not success: the dry run and the apply exit 3, and say so.
#[test]
fn a_swap_blocked_by_a_finding_exits_3_in_the_dry_run_and_in_apply() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let other = slapd.pool_dn("1:3");
    slapd.modify(&format!(
        "dn: {USER}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\nmsRTCSIP-PrimaryHomeServer: {other}\n"
    ));
    let uuid = slapd.entry_uuid(USER).unwrap();
    let (code, out, err) = reconcile(&slapd, work.path(), None, &[]);
    assert_eq!(code, Some(3), "dry run: {out}{err}");
    assert!(err.contains("blocked"), "{err}");
    let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply"]);
    assert_eq!(code, Some(3), "apply: {out}{err}");
    assert!(err.contains("1 swap(s) blocked by findings"), "{err}");
    assert_eq!(slapd.entry_uuid(USER).as_deref(), Some(uuid.as_str()));
    // The unblocked swap was applied, and the rerun still says blocked.
    assert_eq!(slapd.entry_uuid(FABRIKAM_USER), None);
    let (code, out, err) = reconcile(&slapd, work.path(), None, &[]);
    assert_eq!(code, Some(3), "{out}{err}");
}

/// Case 3: a saved plan is applied only when its changes are exactly the changes planned now.
/// An edited plan that retires an unrelated user, its fingerprint kept, is refused with exit 3
/// and nothing written; a plan file is created 0600.
#[test]
fn an_edited_saved_plan_is_refused_and_plan_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let plan_file = work.path().join("plan.json");
    let plan_arg = plan_file.to_str().unwrap();
    let (code, out, err) = reconcile(&slapd, work.path(), None, &["--plan-out", plan_arg]);
    assert_eq!(code, Some(2), "{out}{err}");
    let mode = std::fs::metadata(&plan_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "plan file mode {mode:o}");

    let victim = "CN=Alice Archer,OU=Users,DC=contoso,DC=com";
    let victim_uuid = slapd.entry_uuid(victim).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let mut extra = doc["changes"][0].clone();
    assert_eq!(extra["action"], "retire_user", "{doc}");
    extra["dn"] = victim.into();
    extra["expect"] = serde_json::json!([]);
    doc["changes"].as_array_mut().unwrap().push(extra);
    std::fs::write(&plan_file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let before = crate::reconcile::dump(&slapd);

    let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply", "--plan", plan_arg]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.contains("does not hold the changes planned now") && err.contains(victim),
        "{err}"
    );
    assert_eq!(
        slapd.entry_uuid(victim).as_deref(),
        Some(victim_uuid.as_str())
    );
    assert!(
        crate::reconcile::dump(&slapd) == before,
        "nothing was written"
    );

    // The plan as saved is applied.
    let (code, out, err) = reconcile(&slapd, work.path(), None, &["--plan-out", plan_arg]);
    assert_eq!(code, Some(2), "{out}{err}");
    let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply", "--plan", plan_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
}

/// Case 9: SIGINT (Ctrl-C) or SIGTERM in the middle of a swap of `reconcile --apply`. The swap
/// in flight is finished (its user deleted only after its endpoint is proven), the next one is
/// not started, the run says so and exits 1, and nothing is left open.
#[test]
fn a_signal_mid_swap_finishes_the_swap_in_flight_then_stops() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    crate::common::needs_failpoints();
    for signal in ["-INT", "-TERM"] {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let stderr_path = work.path().join("err");
        let gate = work.path().join("gate");
        std::fs::create_dir_all(&gate).unwrap();
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("pcsync"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PCSYNC") || key == "FAILPOINTS" {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .current_dir(work.path())
            .arg("--config")
            .arg(repo("config/openldap.toml"))
            .args(["reconcile", "--apply"])
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            // The first swap waits at a gate right after its user released the URI, until the
            // signal has been sent.
            .env(
                "FAILPOINTS",
                format!("swap-user-retired=1*return({})", gate.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gate.join("swap-user-retired.reached").exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "pcsync ended before the pause"
            );
            assert!(Instant::now() < deadline, "the pause was not reached");
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        std::fs::write(gate.join("swap-user-retired.release"), "").unwrap();
        let status = crate::common::slapd::wait_bounded(&mut child, Duration::from_secs(60))
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("pcsync did not stop after {signal}")
            });
        let err = std::fs::read_to_string(&stderr_path).unwrap();
        assert_eq!(status.code(), Some(1), "{signal}: {err}");
        assert!(
            err.contains(
                "stopped by a signal: the swap in flight was finished; 1 of 2 swap(s) not started"
            ),
            "{signal}: {err}"
        );
        // The swap in flight is complete: user gone, endpoint in place; the next is untouched.
        assert_eq!(slapd.entry_uuid(USER), None, "{signal}");
        assert_eq!(
            slapd.count(
                "cn=Application Contacts,cn=RTC Service,cn=Services,cn=Configuration,dc=contoso,dc=com",
                "(msRTCSIP-PrimaryUserAddress=sip:ocschat@contoso.com)"
            ),
            1,
            "{signal}"
        );
        assert_eq!(
            slapd.count(
                "dc=contoso,dc=com",
                "(msRTCSIP-PrimaryUserAddress=sip:ocschat@fabrikam.com)"
            ),
            1,
            "{signal}: the next swap never started"
        );
        let records = pcsync::audit::read(&work.path().join("var/audit.jsonl")).unwrap();
        assert!(
            pcsync::audit::unfinished_swaps(&records).is_empty(),
            "{signal}"
        );
        // The rerun applies the rest.
        let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply"]);
        assert_eq!(code, Some(0), "{signal}: {out}{err}");
    }
}

/// Case 5 and issue #19: a user holding the URI in another spelling (`sips:`, a port, other
/// case, a trailing space, or bare) is a holder of it: the plan retires it before adding the
/// endpoint, so the address is never held twice.
#[test]
fn a_user_holding_the_uri_in_another_spelling_is_retired_by_the_swap() {
    for spelling in [
        "sips:OCSChat@Contoso.com:5061",
        "sip:ocschat@contoso.com ",
        "OCSChat@contoso.com",
    ] {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        slapd.modify(&format!(
            "dn: {USER}\nchangetype: modify\nreplace: msRTCSIP-PrimaryUserAddress\nmsRTCSIP-PrimaryUserAddress: {spelling}\n"
        ));
        let (_, out, err) = reconcile(&slapd, work.path(), None, &["--format", "json"]);
        let planned = actions(&out);
        assert!(
            planned
                .iter()
                .any(|(action, dn)| action == "retire_user" && dn.eq_ignore_ascii_case(USER)),
            "{spelling:?}: {out}{err}"
        );
        let (code, out, err) = reconcile(&slapd, work.path(), None, &["--apply"]);
        assert_eq!(code, Some(0), "{spelling:?}: {out}{err}");
        assert_eq!(slapd.entry_uuid(USER), None, "{spelling:?}");
    }
}
