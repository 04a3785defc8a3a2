//! `pcsync reconcile` and `pcsync restore` against the shared Samba AD DC, binding as the
//! least-privilege `svc-pcsync` with the shipped `config/active-directory.toml` (URL, CA and
//! password file overridden through PCSYNC__ variables): the same scenario as
//! tests/it/reconcile.rs runs on OpenLDAP. Every test puts the seed back when it starts and
//! when it ends, pass or fail ([`Seed`]), so a test that failed half-way does not poison the
//! next. The audit log and state dir live in each test's temp dir (`PCSYNC__AUDIT__PATH`,
//! `PCSYNC__STATE__DIR`), the only other overrides.

use std::collections::BTreeMap;
use std::path::Path;

use pcsync::audit::{self, Event};

use crate::ad::{pcsync_ad, pcsync_ad_config};
use crate::common::output;
use crate::common::samba::{
    self, ENDPOINT_CONTAINER_DN, ENDPOINT_DN, SambaDc, Seed, WELL_KNOWN_USERS,
};

const OCSCHAT: &str = WELL_KNOWN_USERS[0];
const URI: &str = "sip:ocschat@contoso.com";
const MALLORY: &str = "CN=Mallory Malformed,OU=People,DC=contoso,DC=com";

/// Attributes the DC maintains itself: they change on every write (or are new for a re-created
/// object) and are left out of comparisons.
const VOLATILE: &[&str] = &["whenChanged", "uSNChanged", "dSCorePropagationData"];
/// What AD gives a re-created object anew: identity and creation stamps.
const IDENTITY: &[&str] = &["objectGUID", "objectSid", "whenCreated", "uSNCreated"];

/// Every object under the domain's user OUs and Application Contacts, as DN -> sorted
/// `attr: value` lines (base64 values kept as they are), without `skip` attributes.
fn dump(dc: &SambaDc, skip: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for base in [
        "OU=Service Accounts,DC=contoso,DC=com",
        "OU=People,DC=contoso,DC=com",
        "CN=Users,DC=contoso,DC=com",
        ENDPOINT_CONTAINER_DN,
    ] {
        let text = dc.search(base, "(|(objectClass=user)(objectClass=contact))", &["*"]);
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut lines: Vec<String> = block
                .lines()
                .filter(|l| {
                    let name = l.split(':').next().unwrap_or_default();
                    !VOLATILE
                        .iter()
                        .chain(skip)
                        .any(|v| v.eq_ignore_ascii_case(name))
                })
                .map(str::to_owned)
                .collect();
            let dn = lines.remove(0);
            // The service account's logon data changes with every bind.
            if dn.contains("svc-pcsync") {
                continue;
            }
            lines.sort();
            out.insert(dn, lines);
        }
    }
    out
}

fn reconcile(
    dc: &SambaDc,
    work: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = pcsync_ad(dc, work);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let assert = cmd.arg("reconcile").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

fn restore(dc: &SambaDc, work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = pcsync_ad(dc, work).arg("restore").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

fn audit_records(work: &Path) -> Vec<audit::Record> {
    audit::read(&work.join("var/audit.jsonl")).expect("audit log verifies")
}

/// The endpoint contacts (other than the seed's hand-made one) in Application Contacts.
fn new_endpoints(dc: &SambaDc) -> Vec<String> {
    dc.search(ENDPOINT_CONTAINER_DN, "(objectClass=contact)", &["*"])
        .split("\n\n")
        .filter(|b| !b.trim().is_empty() && !b.starts_with(&format!("dn: {ENDPOINT_DN}")))
        .map(str::to_owned)
        .collect()
}

/// A config in the test's work dir: the shipped AD configuration with `extra` appended.
pub(crate) fn config_with(work: &Path, extra: &str) -> std::path::PathBuf {
    let shipped =
        std::fs::read_to_string(crate::common::repo("config/active-directory.toml")).unwrap();
    let path = work.join("pcsync.toml");
    std::fs::write(&path, format!("{shipped}\n{extra}")).unwrap();
    path
}

#[test]
fn ad_reconcile_dry_run_apply_rerun_and_restore() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let before = dump(&dc, &[]);

    // Dry run, text: one swap, findings with their DNs, nothing written, no audit log.
    let (code, out, err) = reconcile(&dc, w, &[], &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(out.matches("retire_user").count(), 1, "{out}");
    assert_eq!(out.matches("create_endpoint").count(), 1, "{out}");
    assert!(out.contains("2 change(s) ready, 0 waiting"), "{out}");
    assert!(out.contains(OCSCHAT), "AD's canonical DN: {out}");
    assert!(out.contains(MALLORY), "{out}");
    assert_eq!(dump(&dc, &[]), before, "a dry run writes nothing");
    assert!(!w.join("var/audit.jsonl").exists());

    // Dry run, JSON.
    let (code, out, err) = reconcile(&dc, w, &[], &["--format", "json"]);
    assert_eq!(code, Some(2), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{out}");
    assert_eq!(changes[0]["action"], "retire_user");
    assert_eq!(changes[0]["dn"], OCSCHAT);
    assert_eq!(changes[1]["action"], "create_endpoint");
    assert_eq!(changes[1]["pool"], "pcpool.contoso.com");
    let endpoint_dn = changes[1]["dn"].as_str().unwrap().to_owned();
    assert!(
        endpoint_dn.starts_with("CN={")
            && endpoint_dn.ends_with(&format!("}},{ENDPOINT_CONTAINER_DN}")),
        "{endpoint_dn}"
    );
    let findings: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["dn"].as_str().unwrap()))
        .collect();
    assert!(
        findings.contains(&("malformed_value", MALLORY)),
        "{findings:?}"
    );
    assert!(
        findings.contains(&("suspect", WELL_KNOWN_USERS[1])),
        "fabrikam's well-known user has no migration here: {findings:?}"
    );

    // Apply: the user is deleted, the endpoint is in Application Contacts on the target pool.
    let (code, out, err) = reconcile(&dc, w, &[], &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("applied 1 of 1 swap(s); 0 failed"), "{out}");
    assert!(!dc.exists(OCSCHAT));
    let endpoint = dc.search(&endpoint_dn, "(objectClass=*)", &["*"]);
    for want in [
        format!("dn: {endpoint_dn}"),
        format!("msRTCSIP-PrimaryUserAddress: {URI}"),
        format!("msRTCSIP-PrimaryHomeServer: {}", dc.pool_dn("1:2")),
        "msRTCSIP-UserEnabled: TRUE".to_owned(),
        "msRTCSIP-OwnerUrn: urn:application:persistentchat".to_owned(),
        "objectClass: contact".to_owned(),
    ] {
        assert!(endpoint.lines().any(|l| l == want), "{want} in {endpoint}");
    }
    // AD's person does not require sn and Lync does not set it; neither does pcsync. See: #19
    assert!(
        !endpoint
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("sn:")),
        "{endpoint}"
    );

    // Rerun: nothing to do, exit 0, as a dry run and with --apply.
    let (code, out, _) = reconcile(&dc, w, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("in sync: no changes"), "{out}");
    let (code, out, _) = reconcile(&dc, w, &[], &["--apply"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("nothing to apply; a run in sync is not recorded"),
        "{out}"
    );

    // The audit log has the before-image and the service account as actor.
    let records = audit_records(w);
    let image = records
        .iter()
        .find(|r| r.event == Event::BeforeImage)
        .and_then(|r| r.before.clone())
        .unwrap();
    assert_eq!(image.dn.as_str(), OCSCHAT);
    let text = std::fs::read_to_string(w.join("var/audit.jsonl")).unwrap();
    assert!(text.contains(&format!("\"bind_dn\":\"{}\"", dc.service_dn)));
    assert!(!text.contains(&dc.service_password));

    // Restore: the endpoint goes, the user comes back with every attribute a client can
    // write; AD gives it a new objectGUID, objectSid and creation stamps.
    let run_id = crate::common::run_id(w, 0);
    let (code, out, err) = restore(&dc, w, &["--run", &run_id]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("2 action(s) pending"), "{out}");
    let (code, out, err) = restore(&dc, w, &["--run", &run_id, "--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restored 2 of 2"), "{out}");
    // The seed does not grant Reanimate Tombstones: the restore says it made a new principal.
    assert!(
        out.contains(&format!(
            "WARNING NEW PRINCIPAL: {OCSCHAT} was re-created with a new objectGUID and objectSid"
        )),
        "{out}"
    );
    assert!(!dc.exists(&endpoint_dn));
    assert_same(
        &dump(&dc, IDENTITY),
        &dump_without(&before, IDENTITY),
        "restore re-creates the user",
    );
    let (code, out, _) = restore(&dc, w, &["--run", &run_id]);
    assert_eq!(code, Some(0), "nothing left to undo: {out}");
    // The restored user is planned for its swap again; but it is a new object with its
    // class's default ACL, so the service account may not modify it (the release, the swap's
    // first write) until the rights are granted again (docs/active-directory.md). The
    // preflight reads that from AD's effective rights: the swap is blocked before any write,
    // in the dry run and in apply alike, with the DN and what is missing.
    for args in [&[][..], &["--apply"][..]] {
        let (code, out, err) = reconcile(&dc, w, &[], args);
        assert_eq!(code, Some(3), "{args:?}: {out}{err}");
        assert!(
            out.contains(&format!(
                "finding preflight: {OCSCHAT}: the bind account may not write \
                 msRTCSIP-PrimaryUserAddress"
            )),
            "{args:?}: {out}"
        );
    }
    assert!(dc.exists(OCSCHAT));
    assert!(new_endpoints(&dc).is_empty(), "nothing written");
}

/// Fails naming only the entries that differ (a whole dump is too long to read).
fn assert_same(
    got: &BTreeMap<String, Vec<String>>,
    want: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    let differing: Vec<String> = got
        .keys()
        .chain(want.keys())
        .filter(|dn| got.get(*dn) != want.get(*dn))
        .map(|dn| format!("{dn}:\n  got  {:?}\n  want {:?}", got.get(dn), want.get(dn)))
        .collect();
    assert!(differing.is_empty(), "{what}:\n{}", differing.join("\n"));
}

/// `before` without the `skip` attributes, like `dump(dc, skip)`.
fn dump_without(
    before: &BTreeMap<String, Vec<String>>,
    skip: &[&str],
) -> BTreeMap<String, Vec<String>> {
    before
        .iter()
        .map(|(dn, lines)| {
            let kept = lines
                .iter()
                .filter(|l| {
                    let name = l.split(':').next().unwrap_or_default();
                    !skip.iter().any(|v| v.eq_ignore_ascii_case(name))
                })
                .cloned()
                .collect();
            (dn.clone(), kept)
        })
        .collect()
}

#[test]
fn ad_retire_disable_clears_only_msrtcsip_attributes_and_restores_them() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let disable = [("PCSYNC__SAFETY__RETIRE", "disable")];
    let before = dump(&dc, &[]);
    let (code, out, err) = reconcile(&dc, w, &disable, &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let user = dc.search(OCSCHAT, "(objectClass=*)", &["*"]);
    assert!(user.contains("sAMAccountName: OCSChat"), "{user}");
    assert!(!user.contains("msRTCSIP-"), "{user}");
    assert_eq!(new_endpoints(&dc).len(), 1);
    let (code, out, _) = reconcile(&dc, w, &disable, &[]);
    assert_eq!(code, Some(0), "{out}");

    let run_id = crate::common::run_id(w, 0);
    let (code, out, err) = restore(&dc, w, &["--run", &run_id, "--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restored 2 of 2"), "{out}");
    assert_eq!(
        dump(&dc, &[]),
        before,
        "disable + restore is exact, identity included"
    );
}

#[test]
fn ad_threshold_and_stale_plan_block_with_exit_3_and_nothing_written() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let before = dump(&dc, &[]);
    let (code, out, err) = reconcile(
        &dc,
        w,
        &[("PCSYNC__SAFETY__MAX_CHANGES_PER_RUN", "1")],
        &["--apply"],
    );
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.contains("2 change(s) exceed safety.max_changes_per_run = 1"),
        "{err}"
    );
    assert_eq!(dump(&dc, &[]), before, "nothing written");
    let events: Vec<Event> = audit_records(w).iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            Event::RunStart,
            Event::Plan,
            Event::GuardBlocked,
            Event::RunEnd
        ]
    );

    // A saved plan is refused once the user changed on the DC (the fingerprint covers what AD
    // returns), and nothing is written.
    let plan = w.join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let (code, _, err) = reconcile(&dc, w, &[], &["--plan-out", plan_arg]);
    assert_eq!(code, Some(2), "{err}");
    dc.modify(&format!(
        "dn: {OCSCHAT}\nchangetype: modify\nreplace: msRTCSIP-OptionFlags\n\
         msRTCSIP-OptionFlags: 257\n"
    ));
    let before = dump(&dc, &[]);
    let (code, out, err) = reconcile(&dc, w, &[], &["--apply", "--plan", plan_arg]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("changed since"), "{err}");
    assert_eq!(dump(&dc, &[]), before, "nothing written");
}

#[test]
fn ad_a_conflicting_holder_blocks_only_that_swap() {
    let dc = samba::samba();
    let holder = "CN=Fabrikam Chat Room,OU=People,DC=contoso,DC=com";
    let _seed = Seed::reset(&dc, &[holder]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A second migration, for fabrikam.com, whose URI a contact elsewhere also holds.
    let config = config_with(
        w,
        "[[migrations]]\nwell_known_uri = \"sip:ocschat@fabrikam.com\"\n\
         target_pool = \"pcpool.contoso.com\"\n",
    );
    dc.add(&format!(
        "dn: {holder}\nobjectClass: contact\nmsRTCSIP-PrimaryUserAddress: SIP:OCSChat@Fabrikam.com\n\
         msRTCSIP-UserEnabled: FALSE\n"
    ));
    let run = |args: &[&str]| {
        let assert = pcsync_ad_config(&dc, w, &config)
            .arg("reconcile")
            .args(args)
            .assert();
        let (o, e) = output(&assert);
        (assert.get_output().status.code(), o, e)
    };
    // A swap blocked by a finding is not success: exit 3, in the dry run and in apply.
    let (code, out, err) = run(&["--format", "json"]);
    assert_eq!(code, Some(3), "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["dn"].as_str().unwrap()))
        .collect();
    // A contact outside Application Contacts holding the URI (AD's seed schema lets only
    // users and contacts carry msRTCSIP attributes, so the holder is a contact).
    assert!(
        findings.contains(&("endpoint_outside_container", holder)),
        "{findings:?}"
    );
    let uris: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sip_uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, [URI, URI], "{out}");

    let (code, out, err) = run(&["--apply"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("1 swap(s) blocked by findings"), "{err}");
    assert!(!dc.exists(OCSCHAT));
    assert!(
        dc.exists(WELL_KNOWN_USERS[1]),
        "the blocked swap is untouched"
    );
    assert_eq!(new_endpoints(&dc).len(), 1);
}

/// DN values on AD: written in any case and spacing, read back as the target's canonical DN
/// (the swap verifies, and a rerun is in sync); an endpoint on the wrong pool is repointed with a compare-and-swap modify in
/// the configuration partition (never a rename); a home server that does not exist is refused
/// by AD's referential integrity, and the retired user is rolled back from its before-image.
#[test]
fn ad_dn_values_canonical_case_repoint_and_referential_integrity() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let shipped =
        std::fs::read_to_string(crate::common::repo("config/active-directory.toml")).unwrap();
    let target = dc.pool_dn("1:2");
    let write = |name: &str, text: String| {
        let path = w.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |config: &Path, args: &[&str]| {
        let assert = pcsync_ad_config(&dc, w, config)
            .arg("reconcile")
            .args(args)
            .assert();
        let (o, e) = output(&assert);
        (assert.get_output().status.code(), o, e)
    };

    // Referential integrity: a pool DN that names nothing. The preflight finds it before any
    // write (AD would refuse the add with LDAP 19): the swap is blocked, exit 3, and the user
    // is untouched, identity included.
    let dangling = write(
        "dangling.toml",
        shipped.replace("CN=1:2,CN=Pools", "CN=9:9,CN=Pools"),
    );
    let before = dump(&dc, &[]);
    let (code, out, err) = run(&dangling, &["--apply"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("names no entry"), "{out}{err}");
    assert_same(&dump(&dc, &[]), &before, "nothing written, same objectGUID");
    assert!(new_endpoints(&dc).is_empty());

    // A lower-case, spaced DN in the configuration: AD stores and returns the canonical form;
    // the read-back and the rerun compare DNs, not text.
    let lower = write(
        "lower.toml",
        shipped.replace(&target, &target.to_ascii_lowercase().replace(',', ", ")),
    );
    let (code, out, err) = run(&lower, &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let endpoint = new_endpoints(&dc).pop().unwrap();
    assert!(
        endpoint.contains(&format!("msRTCSIP-PrimaryHomeServer: {target}\n")),
        "{endpoint}"
    );
    let (code, out, _) = run(&lower, &[]);
    assert_eq!(code, Some(0), "in sync despite the case: {out}");

    // Someone moves the endpoint to another pool: a repoint, by modify, not rename.
    let endpoint_dn = endpoint
        .lines()
        .next()
        .unwrap()
        .strip_prefix("dn: ")
        .unwrap();
    dc.modify(&format!(
        "dn: {endpoint_dn}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\n\
         msRTCSIP-PrimaryHomeServer: {}\n",
        dc.pool_dn("1:3")
    ));
    let (code, out, _) = run(&lower, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("repoint_endpoint"), "{out}");
    let (code, out, err) = run(&lower, &["--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(dc.exists(endpoint_dn), "same DN: no rename, no re-create");
    let (code, out, _) = run(&lower, &[]);
    assert_eq!(code, Some(0), "{out}");
}

/// Restore on AD when the service account may not re-create a user where it lived (here a
/// well-known user in OU=People, where it has no Create Child right): the restore says which
/// right is missing where, and keeps that swap's endpoint, so the URI stays served.
#[test]
fn ad_restore_without_the_right_to_recreate_says_what_is_missing() {
    let dc = samba::samba();
    let people = "OU=People,DC=contoso,DC=com";
    let user = format!("CN=Temp Chat,{people}");
    let _seed = Seed::reset(&dc, &[&user]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    dc.add(&format!(
        "dn: {user}\nobjectClass: user\nsAMAccountName: temp-chat\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@temp.example\nmsRTCSIP-UserEnabled: TRUE\n"
    ));
    dc.grant_retire_rights(&user);
    let config = config_with(
        w,
        "[[migrations]]\nwell_known_uri = \"sip:ocschat@temp.example\"\n\
         target_pool = \"pcpool.contoso.com\"\n",
    );
    let assert = pcsync_ad_config(&dc, w, &config)
        .args(["reconcile", "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(0);
    assert!(out.contains("applied 2 of 2 swap(s)"), "{out}{err}");
    let run_id = crate::common::run_id(w, 0);

    let assert = pcsync_ad_config(&dc, w, &config)
        .args(["restore", "--run", &run_id, "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(1);
    assert!(
        out.contains(&format!(
            "FAILED {user}: add of {user} on {} failed: LDAP 50: ",
            dc.ldaps_url
        )),
        "{out}{err}"
    );
    assert!(
        out.contains(&format!(
            "the bind account may not create user objects in {people}: grant it Create Child \
             for user objects there"
        )),
        "{out}"
    );
    assert!(
        out.contains("keeps serving sip:ocschat@temp.example"),
        "{out}"
    );
    assert!(out.contains("restored 2 of 4 action(s)"), "{out}");
    assert!(!dc.exists(&user));
    assert!(dc.exists(OCSCHAT), "the other swap was undone");
    assert_eq!(new_endpoints(&dc).len(), 1, "temp.example's endpoint stays");
}

/// pcsync killed at every failpoint of a swap on AD, then rerun: the end state is exactly that
/// of a clean run (the endpoint's DN is name-based, so it is the same), nothing lost. Every
/// failpoint with `retire = "disable"`; with `"delete"`, the one state only it has (the user
/// deleted, no endpoint yet): each deleted user costs a `samba-tool` re-grant to put back.
#[test]
fn ad_a_crash_at_every_failpoint_then_a_rerun_converges() {
    crate::common::needs_failpoints();
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let cases = pcsync::apply::FAILPOINTS
        .iter()
        .map(|f| ("disable", *f))
        .chain([("delete", "swap-user-retired")]);
    let mut expected: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (retire, failpoint) in cases {
        let env = [("PCSYNC__SAFETY__RETIRE", retire)];
        let what = format!("{failpoint} (retire = {retire})");
        if !expected.contains_key(retire) {
            // The reference: a clean apply.
            dc.restore_seed();
            let clean = tempfile::tempdir().unwrap();
            let (code, out, err) = reconcile(&dc, clean.path(), &env, &["--apply"]);
            assert_eq!(code, Some(0), "{out}{err}");
            expected.insert(retire, dump(&dc, IDENTITY));
        }
        dc.restore_seed();
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let crash = [env[0], ("FAILPOINTS", &format!("{failpoint}=return"))];
        let (code, out, err) = reconcile(&dc, w, &crash, &["--apply"]);
        assert_eq!(code, None, "{what}: must die mid-swap: {out}{err}");
        assert!(
            !audit::unfinished_swaps(&audit_records(w)).is_empty(),
            "{what}"
        );
        let (code, out, err) = reconcile(&dc, w, &env, &["--apply"]);
        assert_eq!(code, Some(0), "{what}: {out}{err}");
        assert!(err.contains("recovered swap"), "{what}: {err}");
        let (code, out, _) = reconcile(&dc, w, &env, &[]);
        assert_eq!(code, Some(0), "{what}: rerun plans nothing: {out}");
        assert_same(
            &dump(&dc, IDENTITY),
            &expected[retire],
            &format!("{what}: differs from a clean run"),
        );
    }
}

/// A well-known user the service account may not write (no Write Property on its msRTCSIP
/// attributes): the preflight reads AD's effective rights (`allowedAttributesEffective`) before
/// any write, so that swap is a `preflight` finding naming the DN and the attribute, blocked
/// with exit 3 in the dry run and in apply, and nothing is written for it; the other swap
/// applies (#16: "readable and writable as planned").
#[test]
fn ad_a_user_the_account_may_not_write_is_a_preflight_finding_and_nothing_is_written() {
    let dc = samba::samba();
    let user = format!("CN=Locked Chat,{}", samba::WELL_KNOWN_USERS_OU);
    let _seed = Seed::reset(&dc, &[&user]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    dc.add(&format!(
        "dn: {user}\nobjectClass: user\nsAMAccountName: locked-chat\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@locked.example\nmsRTCSIP-UserEnabled: TRUE\n"
    ));
    let config = config_with(
        w,
        "[[migrations]]\nwell_known_uri = \"sip:ocschat@locked.example\"\n\
         target_pool = \"pcpool.contoso.com\"\n",
    );
    let assert = pcsync_ad_config(&dc, w, &config)
        .args(["reconcile"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(3);
    let finding = out
        .lines()
        .find(|l| l.starts_with("finding preflight:") && l.contains(&user))
        .unwrap_or_else(|| panic!("no preflight finding for {user}: {out}{err}"));
    assert!(
        finding.contains("the bind account may not write msRTCSIP-PrimaryUserAddress")
            && finding.contains("allowedAttributesEffective"),
        "{finding}"
    );
    let assert = pcsync_ad_config(&dc, w, &config)
        .args(["reconcile", "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(3);
    assert!(out.contains("applied 1 of 1 swap(s)"), "{out}{err}");
    let held = dc.search(&user, "(objectClass=*)", &["msRTCSIP-PrimaryUserAddress"]);
    assert!(
        held.contains("sip:ocschat@locked.example"),
        "untouched: {held}"
    );
    assert!(!dc.exists(OCSCHAT), "the other swap applied");
}
