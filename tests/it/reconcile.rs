//! `pcsync reconcile` and `pcsync restore` against a real slapd: the swap of both fixture
//! well-known users, idempotence, every guard, crash recovery at every failpoint, restore, and
//! the LDIF export applied with ldapmodify.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use pcsync::audit::{self, Event, Outcome};

use crate::common::slapd::{CONFIG_DN, DOMAIN_DN, Slapd};
use crate::common::{output, pcsync, pcsync_bare, pcsync_on_config, repo};

const OCSCHAT_CONTOSO: &str = "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com";
const OCSCHAT_FABRIKAM: &str = "cn=OCSChat Fabrikam,ou=Service Accounts,dc=contoso,dc=com";

/// Every entry of both naming contexts with its user attributes, as a map DN -> sorted lines,
/// so two directories compare regardless of entry order. DN-valued attributes are compared
/// as DNs (case-insensitively): slapd rewrites `CN=` to `cn=` in a DN value written over LDAP
/// but not in one loaded with slapadd, and AD rewrites them to the target's canonical DN.
pub(crate) fn dump(slapd: &Slapd) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for base in [DOMAIN_DN, CONFIG_DN] {
        let text = slapd.search(base, "(objectClass=*)", &["*"]);
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut lines: Vec<String> = block.lines().map(normalize_dn_value).collect();
            let dn = lines.remove(0).to_ascii_lowercase();
            // The harness's reader account has a random password per instance.
            if dn.starts_with("dn: cn=pcsync-reader,") {
                continue;
            }
            lines.sort();
            out.insert(dn, lines);
        }
    }
    out
}

fn normalize_dn_value(line: &str) -> String {
    if line.starts_with("msRTCSIP-PrimaryHomeServer:")
        || line.starts_with("msRTCSIP-TargetHomeServer:")
    {
        line.to_ascii_lowercase()
    } else {
        line.to_string()
    }
}

pub(crate) fn exists(slapd: &Slapd, dn: &str) -> bool {
    slapd
        .try_search(dn, "(objectClass=*)", &["1.1"])
        .is_ok_and(|t| !t.trim().is_empty())
}

/// The endpoints (contacts with a SIP address) in the endpoint container, as DN -> attributes.
pub(crate) fn endpoints(slapd: &Slapd) -> BTreeMap<String, Vec<String>> {
    let text = slapd.search(
        &slapd.endpoint_container(),
        "(msRTCSIP-PrimaryUserAddress=*)",
        &["*"],
    );
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut lines: Vec<String> = block.lines().map(normalize_dn_value).collect();
            let dn = lines.remove(0);
            lines.sort();
            (dn, lines)
        })
        .collect()
}

fn endpoint_for(slapd: &Slapd, uri: &str) -> Option<Vec<String>> {
    endpoints(slapd).into_values().find(|lines| {
        lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&format!("msRTCSIP-PrimaryUserAddress: {uri}")))
    })
}

fn audit_records(work: &Path) -> Vec<audit::Record> {
    audit::read(&work.join("var/audit.jsonl")).expect("audit log verifies")
}

/// Runs reconcile with `args` and returns (exit code, stdout, stderr).
fn reconcile(slapd: &Slapd, work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = pcsync(slapd, work).arg("reconcile").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

fn pool_dn(slapd: &Slapd, site: &str) -> String {
    slapd.pool_dn(site)
}

#[test]
fn two_migrations_in_two_domains_swap_in_one_run_and_the_rerun_plans_nothing() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);

    let (code, out, err) = reconcile(&slapd, work.path(), &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(out.matches("retire_user").count(), 2, "{out}");
    assert_eq!(out.matches("create_endpoint").count(), 2, "{out}");
    assert!(out.contains("4 change(s) ready, 0 waiting"), "{out}");
    assert!(
        !out.contains("ocschat.fan"),
        "the decoy is no suspect: {out}"
    );
    assert_eq!(dump(&slapd), before, "a dry run writes nothing");
    assert!(!work.path().join("var/audit.jsonl").exists());

    let (code, out, _) = reconcile(&slapd, work.path(), &["--format", "json"]);
    assert_eq!(code, Some(2));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 4);
    for c in changes {
        for key in ["action", "dn", "sip_uri", "pool"] {
            assert!(c[key].is_string(), "{key} in {c}");
        }
    }
    assert!(doc["findings"].as_array().unwrap().is_empty(), "{out}");

    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("applied 2 of 2 swap(s); 0 failed"), "{out}");
    // What Lync needs next, in the administrator's words. See: #19
    assert!(
        out.contains("next: Lync reads AD through its User Replicator"),
        "{out}"
    );
    assert!(out.contains("\n  Update-CsUserDatabase\n"), "{out}");
    assert!(
        out.contains("\n  Get-CsPersistentChatEndpoint -Identity 'sip:ocschat@fabrikam.com'\n"),
        "{out}"
    );
    assert!(!exists(&slapd, OCSCHAT_CONTOSO));
    assert!(!exists(&slapd, OCSCHAT_FABRIKAM));
    let contoso = endpoint_for(&slapd, "sip:ocschat@contoso.com").expect("contoso endpoint");
    let fabrikam = endpoint_for(&slapd, "sip:ocschat@fabrikam.com").expect("fabrikam endpoint");
    for (lines, site) in [(&contoso, "1:2"), (&fabrikam, "1:3")] {
        let home = normalize_dn_value(&format!(
            "msRTCSIP-PrimaryHomeServer: {}",
            pool_dn(&slapd, site)
        ));
        assert!(lines.contains(&home), "{lines:?}");
        for want in [
            "msRTCSIP-UserEnabled: TRUE",
            "msRTCSIP-OwnerUrn: urn:application:persistentchat",
            "objectClass: contact",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} in {lines:?}");
        }
        assert!(lines.iter().any(|l| l.starts_with("displayName: ")));
        assert!(lines.iter().any(|l| l.starts_with("cn: {")));
    }
    // Nothing else changed.
    let after = dump(&slapd);
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(added.len(), 2, "{added:?}");
    for (dn, lines) in &before {
        if let Some(now) = after.get(dn) {
            assert_eq!(now, lines, "{dn} changed");
        }
    }

    let (code, out, _) = reconcile(&slapd, work.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("in sync: no changes"), "{out}");
    // A run with nothing to do appends nothing to the audit log. See: #19
    let recorded = audit_records(work.path()).len();
    let (code, out, _) = reconcile(&slapd, work.path(), &["--apply"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("in sync: no changes"), "{out}");
    assert!(
        out.contains("nothing to apply; a run in sync is not recorded in the audit log"),
        "{out}"
    );
    assert_eq!(audit_records(work.path()).len(), recorded);

    // The audit log: chained, complete, no password, before-images of both users.
    let records = audit_records(work.path());
    let images: Vec<_> = records
        .iter()
        .filter(|r| r.event == Event::BeforeImage)
        .collect();
    assert_eq!(images.len(), 2);
    assert!(
        images[0]
            .before
            .as_ref()
            .unwrap()
            .get("sAMAccountName")
            .iter()
            .any(|v| v == b"OCSChat")
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event == Event::SwapDone && r.outcome == Outcome::Ok)
            .count(),
        2
    );
    let text = std::fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    assert!(
        !text.contains(&slapd.admin_password),
        "password in the audit log"
    );
    assert!(text.contains("\"bind_dn\":\"cn=admin,dc=contoso,dc=com\""));
}

#[test]
fn retire_disable_clears_the_sip_attributes_and_keeps_the_account() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let (code, out, err) = {
        let assert = pcsync(&slapd, work.path())
            .env("PCSYNC__SAFETY__RETIRE", "disable")
            .args(["reconcile", "--apply"])
            .assert();
        let (o, e) = output(&assert);
        (assert.get_output().status.code(), o, e)
    };
    assert_eq!(code, Some(0), "{out}{err}");
    let user = slapd.search(OCSCHAT_CONTOSO, "(objectClass=*)", &["*"]);
    assert!(user.contains("sAMAccountName: OCSChat"), "{user}");
    assert!(!user.contains("msRTCSIP-"), "{user}");
    assert!(endpoint_for(&slapd, "sip:ocschat@contoso.com").is_some());
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__RETIRE", "disable")
        .arg("reconcile")
        .assert();
    assert.code(0);
}

/// An endpoint an administrator disabled by hand is theirs: reported (`endpoint_disabled`) and
/// left exactly as it is, even on the wrong pool, while the other migration swaps; with
/// `enable_endpoint = true` on its migration it is re-enabled and rehomed in one modify. Many
/// findings print a count per kind and the first N of each (`--findings`). See: #19
#[test]
fn a_disabled_endpoint_is_left_alone_unless_the_migration_enables_it() {
    let suspects: String = ["groupchat", "lyncchat", "gcchat"]
        .iter()
        .map(|name| {
            format!(
                "dn: CN={name},OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: person\n\
                 objectClass: organizationalPerson\nobjectClass: user\ncn: {name}\nsn: {name}\n\
                 msRTCSIP-PrimaryUserAddress: sip:{name}@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\n"
            )
        })
        .collect();
    let slapd = Slapd::builder().extra_domain_ldif(&suspects).start();
    slapd.delete(OCSCHAT_FABRIKAM);
    let endpoint = format!("CN=Fabrikam Chat (by hand),{}", slapd.endpoint_container());
    slapd.add(&format!(
        "dn: {endpoint}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: contact\ncn: Fabrikam Chat (by hand)\nsn: Chat\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@fabrikam.com\nmsRTCSIP-UserEnabled: FALSE\n\
         msRTCSIP-PrimaryHomeServer: {}\nmsRTCSIP-OwnerUrn: urn:application:persistentchat\n",
        pool_dn(&slapd, "1:2")
    ));
    let read = |slapd: &Slapd| slapd.search(&endpoint, "(objectClass=*)", &["*", "entryUUID"]);
    let before = read(&slapd);
    let work = tempfile::tempdir().unwrap();

    let (code, out, err) = reconcile(&slapd, work.path(), &["--findings", "1"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("findings: 3 suspect, 1 endpoint_disabled\n"),
        "{out}"
    );
    assert_eq!(out.matches("finding suspect: cn=").count(), 1, "{out}");
    assert!(
        out.contains("finding suspect: 2 more not shown (--findings all"),
        "{out}"
    );
    assert!(
        out.contains("finding endpoint_disabled: cn=Fabrikam Chat (by hand),"),
        "{out}"
    );
    assert!(
        out.contains("set enable_endpoint = true on the migration"),
        "{out}"
    );
    let (code, out, _) = reconcile(&slapd, work.path(), &["--findings", "all"]);
    assert_eq!(code, Some(2));
    assert_eq!(out.matches("finding suspect: cn=").count(), 3, "{out}");

    // Two blocked runs with the same findings: the first plan record lists them, the second
    // records only that they are unchanged, and where they are listed.
    for _ in 0..2 {
        let (code, out, err) = reconcile(&slapd, work.path(), &["--apply", "--max-changes", "0"]);
        assert_eq!(code, Some(3), "{out}{err}");
    }
    let log = fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    let plans: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "plan")
        .collect();
    assert_eq!(plans.len(), 2, "{log}");
    assert_eq!(plans[0]["plan"]["findings"].as_array().unwrap().len(), 4);
    assert_eq!(plans[1]["plan"]["findings"].as_array().unwrap().len(), 0);
    assert_eq!(plans[1]["plan"]["summary"]["findings"], 4);
    let first_run = plans[0]["run_id"].as_str().unwrap();
    let message = plans[1]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the 4 finding(s) are unchanged since run {first_run} (sha256 "
        )),
        "{message}"
    );

    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("applied 1 of 1 swap(s)"), "{out}");
    assert_eq!(read(&slapd), before, "the disabled endpoint is untouched");

    // The migration says to enable it: one modify, same object (entryUUID).
    let config = crate::common::shipped_config_with(
        work.path(),
        "enable.toml",
        "target_pool = \"pcpool2.contoso.com\"\n",
        "target_pool = \"pcpool2.contoso.com\"\nenable_endpoint = true\n",
    );
    let run = |args: &[&str]| {
        let assert = pcsync_on_config(&slapd, work.path(), &config)
            .arg("reconcile")
            .args(args)
            .assert();
        let (out, err) = output(&assert);
        (assert.get_output().status.code(), out, err)
    };
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("endpoint exists but is homed on"), "{out}");
    assert!(
        out.contains("is disabled, and the migration says enable_endpoint = true"),
        "{out}"
    );
    let (code, out, err) = run(&["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let after = read(&slapd);
    assert!(after.contains("msRTCSIP-UserEnabled: TRUE"), "{after}");
    let uuid = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("entryUUID:"))
            .map(str::to_string)
    };
    assert_eq!(uuid(&after), uuid(&before));
    assert!(uuid(&after).is_some());
}

#[test]
fn a_conflicting_holder_blocks_only_that_swap() {
    let slapd = Slapd::builder()
        .extra_domain_ldif(
            "dn: cn=Fabrikam Chat Device,OU=Users,DC=contoso,DC=com\n\
             objectClass: device\n\
             objectClass: pcsyncRtcUser\n\
             cn: Fabrikam Chat Device\n\
             msRTCSIP-PrimaryUserAddress: SIP:OCSChat@Fabrikam.com\n\
             msRTCSIP-UserEnabled: FALSE\n\n\
             dn: CN=Group Chat,OU=Users,DC=contoso,DC=com\n\
             objectClass: top\n\
             objectClass: person\n\
             objectClass: organizationalPerson\n\
             objectClass: user\n\
             cn: Group Chat\n\
             sn: Chat\n\
             msRTCSIP-PrimaryUserAddress: sip:groupchat@contoso.com\n\
             msRTCSIP-UserEnabled: TRUE\n\n\
             dn: CN=Alice Clone,OU=Users,DC=contoso,DC=com\n\
             objectClass: top\n\
             objectClass: person\n\
             objectClass: organizationalPerson\n\
             objectClass: user\n\
             cn: Alice Clone\n\
             sn: Clone\n\
             msRTCSIP-PrimaryUserAddress: SIP:Alice@Contoso.com\n",
        )
        .start();
    let work = tempfile::tempdir().unwrap();
    // A swap blocked by a finding is not success: exit 3, in the dry run and in apply.
    let (code, out, err) = reconcile(&slapd, work.path(), &["--format", "json"]);
    assert_eq!(code, Some(3), "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["dn"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&(
            "uri_in_use",
            "cn=Fabrikam Chat Device,ou=Users,dc=contoso,dc=com"
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("suspect", "cn=Group Chat,ou=Users,dc=contoso,dc=com")),
        "{kinds:?}"
    );
    for dn in [
        "cn=Alice Archer,ou=Users,dc=contoso,dc=com",
        "cn=Alice Clone,ou=Users,dc=contoso,dc=com",
    ] {
        assert!(kinds.contains(&("duplicate_uri", dn)), "{kinds:?}");
    }
    let uris: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sip_uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["sip:ocschat@contoso.com", "sip:ocschat@contoso.com"]);

    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("1 swap(s) blocked by findings"), "{err}");
    assert!(!exists(&slapd, OCSCHAT_CONTOSO));
    assert!(
        exists(&slapd, OCSCHAT_FABRIKAM),
        "the blocked swap is untouched"
    );
    assert!(endpoint_for(&slapd, "sip:ocschat@fabrikam.com").is_none());
    assert!(out.contains("finding uri_in_use"), "{out}");
}

#[test]
fn a_stale_saved_plan_is_refused_and_a_fresh_one_applies() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let (code, _, _) = reconcile(&slapd, work.path(), &["--plan-out", plan_arg]);
    assert_eq!(code, Some(2));
    slapd.modify(&format!(
        "dn: {OCSCHAT_CONTOSO}\nchangetype: modify\nreplace: msRTCSIP-OptionFlags\nmsRTCSIP-OptionFlags: 257\n"
    ));
    let before = dump(&slapd);
    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply", "--plan", plan_arg]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("changed since"), "{err}");
    assert_eq!(dump(&slapd), before, "nothing written");
    let records = audit_records(work.path());
    assert!(records.iter().any(|r| r.event == Event::GuardBlocked));

    let (code, _, _) = reconcile(&slapd, work.path(), &["--plan-out", plan_arg]);
    assert_eq!(code, Some(2));
    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply", "--plan", plan_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!exists(&slapd, OCSCHAT_CONTOSO));
}

#[test]
fn the_change_threshold_blocks_with_exit_3_and_nothing_written() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__MAX_CHANGES_PER_RUN", "3")
        .args(["reconcile", "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(3);
    assert!(
        err.contains("4 change(s) exceed safety.max_changes_per_run = 3"),
        "{out}{err}"
    );
    assert_eq!(dump(&slapd), before);
    let records = audit_records(work.path());
    let events: Vec<Event> = records.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            Event::RunStart,
            Event::Plan,
            Event::GuardBlocked,
            Event::RunEnd
        ]
    );
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__MAX_CHANGES_PER_RUN", "3")
        .args(["reconcile", "--apply", "--max-changes", "4"])
        .assert();
    assert.code(0);
}

#[test]
fn a_future_not_before_waits_for_cutover() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo("config/openldap.toml")).unwrap();
    let config = config.replacen(
        "target_pool = \"pcpool1.contoso.com\"",
        "target_pool = \"pcpool1.contoso.com\"\nnot_before = \"2999-01-01T00:00:00Z\"",
        1,
    );
    let path = work.path().join("pcsync.toml");
    std::fs::write(&path, config).unwrap();
    let run = |args: &[&str]| {
        let assert = pcsync_bare(work.path())
            .arg("--config")
            .arg(&path)
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            .arg("reconcile")
            .args(args)
            .assert();
        let (o, e) = output(&assert);
        (assert.get_output().status.code(), o, e)
    };
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("2 change(s) ready, 2 waiting for cutover"),
        "{out}"
    );
    assert!(
        out.contains("waiting for cutover at 2999-01-01T00:00:00+00:00"),
        "{out}"
    );
    let (code, out, err) = run(&["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(exists(&slapd, OCSCHAT_CONTOSO), "waiting swap not applied");
    assert!(!exists(&slapd, OCSCHAT_FABRIKAM));
    let (code, out, _) = run(&[]);
    assert_eq!(code, Some(0), "only waiting changes left: {out}");
}

#[test]
fn a_crash_at_every_failpoint_then_a_rerun_converges_with_nothing_lost() {
    crate::common::needs_failpoints();
    // The reference: a clean apply on a fresh copy of the fixture.
    let reference = Slapd::start();
    let ref_work = tempfile::tempdir().unwrap();
    assert_eq!(
        reconcile(&reference, ref_work.path(), &["--apply"]).0,
        Some(0)
    );
    let expected = dump(&reference);
    drop(reference);

    // Every point a swap passes, including the one after the delete of the released user.
    for failpoint in pcsync::apply::FAILPOINTS
        .iter()
        .chain([&pcsync::apply::USER_DELETED])
    {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let assert = pcsync(&slapd, work.path())
            .env("FAILPOINTS", format!("{failpoint}=return"))
            .args(["reconcile", "--apply"])
            .assert();
        let status = assert.get_output().status;
        let (out, err) = output(&assert);
        assert_eq!(
            status.code(),
            None,
            "{failpoint}: pcsync must die by a signal mid-swap: {out}{err}"
        );
        assert!(err.contains(&format!("failpoint {failpoint}")), "{err}");
        let records = audit_records(work.path());
        assert!(
            !audit::unfinished_swaps(&records).is_empty(),
            "{failpoint}: the crash leaves an unfinished swap"
        );

        let (code, out, err) = reconcile(&slapd, work.path(), &["--apply"]);
        assert_eq!(code, Some(0), "{failpoint}: {out}{err}");
        assert!(err.contains("recovered swap"), "{failpoint}: {err}");
        let (code, out, _) = reconcile(&slapd, work.path(), &[]);
        assert_eq!(code, Some(0), "{failpoint}: rerun plans nothing: {out}");
        assert_eq!(
            dump(&slapd),
            expected,
            "{failpoint}: end state differs from a clean apply"
        );
        let records = audit_records(work.path());
        assert!(audit::unfinished_swaps(&records).is_empty(), "{failpoint}");
        // Before the release, nothing was written and the swap is simply planned again; after
        // it, recovery finishes the swap.
        let expected_outcome = if *failpoint == "swap-before-image-written" {
            Outcome::Skipped
        } else {
            Outcome::Ok
        };
        let recovery = records
            .iter()
            .find(|r| r.event == Event::Recovery)
            .expect("a recovery record");
        assert_eq!(
            recovery.outcome, expected_outcome,
            "{failpoint}: {recovery:?}"
        );
    }
}

#[test]
fn restore_brings_the_original_users_back_attribute_for_attribute() {
    for retire in ["delete", "disable"] {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let before = dump(&slapd);
        let assert = pcsync(&slapd, work.path())
            .env("PCSYNC__SAFETY__RETIRE", retire)
            .args(["reconcile", "--apply"])
            .assert();
        assert.code(0);
        assert_ne!(dump(&slapd), before);
        let run_id = crate::common::run_id(work.path(), 0);

        let assert = pcsync(&slapd, work.path())
            .args(["restore", "--run", &run_id])
            .assert();
        let (out, err) = output(&assert);
        assert.code(2);
        assert!(out.contains("4 action(s) pending"), "{retire}: {out}{err}");
        let assert = pcsync(&slapd, work.path())
            .args(["restore", "--run", &run_id, "--apply"])
            .assert();
        let (out, err) = output(&assert);
        assert.code(0);
        assert!(out.contains("restored 4 of 4"), "{retire}: {out}{err}");
        // OpenLDAP keeps no tombstones: a deleted user comes back as a new entry, and says so.
        assert_eq!(
            out.matches("WARNING NEW PRINCIPAL: ").count(),
            if retire == "delete" { 2 } else { 0 },
            "{retire}: {out}"
        );
        assert!(
            retire == "disable" || out.contains("a new entryUUID"),
            "{out}"
        );
        assert_eq!(dump(&slapd), before, "{retire}: restore is exact");

        let assert = pcsync(&slapd, work.path())
            .args(["restore", "--run", &run_id])
            .assert();
        assert.code(0);
    }
}

#[test]
fn the_ldif_export_applies_with_ldapmodify_to_the_same_end_state_as_apply() {
    let by_ldif = Slapd::start();
    let by_apply = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let (code, ldif, err) = reconcile(&by_ldif, work.path(), &["--format", "ldif"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(ldif.contains("changetype: delete"), "{ldif}");
    assert!(ldif.contains("changetype: add"), "{ldif}");
    by_ldif.modify(&ldif);
    let work2 = tempfile::tempdir().unwrap();
    assert_eq!(reconcile(&by_apply, work2.path(), &["--apply"]).0, Some(0));
    assert_eq!(dump(&by_ldif), dump(&by_apply));
    let (code, out, _) = reconcile(&by_ldif, work.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_usage_error_exits_1_not_2() {
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_bare(work.path())
        .args(["reconcile", "--aply"])
        .assert();
    assert.code(1);
    let assert = pcsync_bare(work.path())
        .args(["reconcile", "--help"])
        .assert();
    let (out, _) = output(&assert);
    assert.code(0);
    assert!(
        out.contains("3  blocked: a safety guard stopped the run"),
        "{out}"
    );
}

#[test]
fn powershell_output_names_the_cmdlets() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let (code, out, _) = reconcile(&slapd, work.path(), &["--format", "powershell"]);
    assert_eq!(code, Some(2));
    assert!(
        out.contains(&format!(
            "Remove-ADUser -Identity '{OCSCHAT_CONTOSO}' -Confirm:$false"
        )),
        "{out}"
    );
    assert!(out.contains("New-CsPersistentChatEndpoint -SipAddress 'sip:ocschat@fabrikam.com' -PersistentChatPoolFqdn 'pcpool2.contoso.com' -DisplayName 'Persistent Chat legacy endpoint (sip:ocschat@fabrikam.com)'"), "{out}");
}

/// The conditional writes themselves, through the library, in both modes: with the Assertion
/// control (OpenLDAP) and with the re-read / value-delete method Active Directory needs.
#[test]
fn conditional_writes_refuse_a_concurrent_change_with_and_without_the_assertion_control() {
    use pcsync::model::{AttrValues, Modification};

    let slapd = Slapd::start();
    let mut env = std::collections::HashMap::new();
    env.insert("PCSYNC__DIRECTORY__URL".to_string(), slapd.ldap_url.clone());
    env.insert(
        "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE".to_string(),
        slapd.admin_password_file.display().to_string(),
    );
    let settings = pcsync::config::load_with_env(
        &repo("config/openldap.toml"),
        Some(env.into_iter().collect()),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for assertion in [true, false] {
            let mut dir = pcsync::ldap::Directory::connect(&settings.directory)
                .await
                .unwrap();
            assert!(dir.supports_assertion(), "slapd advertises 1.3.6.1.1.12");
            if !assertion {
                dir.disable_assertion_control();
            }
            let user = &pcsync::model::Dn::parse(if assertion {
                OCSCHAT_CONTOSO
            } else {
                OCSCHAT_FABRIKAM
            })
            .unwrap();
            let stale = [AttrValues::text("msRTCSIP-UserEnabled", &["FALSE"])];
            let e = dir.delete(user, &stale).await.unwrap_err();
            assert!(
                matches!(e, pcsync::ldap::Error::Conflict { .. }),
                "assertion {assertion}: {e}"
            );
            let e = dir
                .modify(
                    user,
                    &[Modification::Delete(AttrValues::text(
                        "msRTCSIP-OptionFlags",
                        &["999"],
                    ))],
                    &[],
                )
                .await
                .unwrap_err();
            assert!(e.to_string().contains("LDAP 16"), "{e}");
            assert!(
                dir.read_entry(user).await.unwrap().is_some(),
                "nothing written"
            );
            let fresh = [AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"])];
            dir.delete(user, &fresh).await.unwrap();
            assert!(dir.read_entry(user).await.unwrap().is_none());
            dir.close().await;
        }
    });
}

#[test]
fn a_held_lock_and_an_empty_directory_block_with_exit_3() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let lock = pcsync::lock::RunLock::acquire(&work.path().join("var/state")).unwrap();
    let (code, out, err) = reconcile(&slapd, work.path(), &["--apply"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.contains("another pcsync reconcile or restore is running"),
        "{err}"
    );
    // The one guard the audit log cannot hold: appending needs the lock the other run holds
    // (two writers would fork the hash chain). The refusal says so, and the README agrees.
    // See: #19
    assert!(
        err.contains("nothing was written; not recorded in the audit log, which the run holding the lock writes"),
        "{err}"
    );
    let audit = work.path().join("var/audit.jsonl");
    assert!(!audit.exists(), "{}", audit.display());
    drop(lock);

    // A domain that holds no SIP-enabled object (a wrong base DN, missing read rights): planning
    // would create endpoints for every migration as if the users were gone, so it is refused.
    let config = std::fs::read_to_string(repo("tests/fixtures/contoso-config.ldif")).unwrap();
    let empty = Slapd::builder()
        .fixture_ldif(
            "dn: dc=contoso,dc=com\nobjectClass: top\nobjectClass: domain\ndc: contoso\n",
            &config,
        )
        .start();
    for args in [&[][..], &["--apply"][..]] {
        let (code, out, err) = reconcile(&empty, work.path(), args);
        assert_eq!(code, Some(3), "{out}{err}");
        assert!(err.contains("returned no SIP-enabled objects"), "{err}");
    }
    let records = audit_records(work.path());
    assert_eq!(records.last().unwrap().event, Event::RunEnd);
    assert!(records.iter().any(|r| r.event == Event::GuardBlocked));
    assert!(empty.count(&empty.endpoint_container(), "(objectClass=contact)") == 1);
}

#[test]
fn a_failed_add_rolls_the_user_back_exactly() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    for retire in ["delete", "disable"] {
        // slapd refuses an entry of an unknown object class, after the user was retired.
        let assert = pcsync(&slapd, work.path())
            .env("PCSYNC__SAFETY__RETIRE", retire)
            .env(
                "PCSYNC__DIRECTORY__LAYOUT__ENDPOINT_OBJECT_CLASSES",
                "top,person,organizationalPerson,noSuchClass",
            )
            .args(["reconcile", "--apply"])
            .assert();
        let (out, err) = output(&assert);
        assert.code(1);
        assert!(
            out.contains("2 failed, 2 rolled back"),
            "{retire}: {out}{err}"
        );
        assert_eq!(
            dump(&slapd),
            before,
            "{retire}: the users are back as they were"
        );
    }
    let records = audit_records(work.path());
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event == Event::Rollback && r.outcome == Outcome::Ok)
            .count(),
        4
    );
}
