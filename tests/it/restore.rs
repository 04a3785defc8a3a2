//! `pcsync restore` when the directory is not as the run left it, or goes away: an account
//! re-added by hand at the user's DN, a URI held twice afterwards, a repointed endpoint, a lost
//! connection and a stop signal in the middle (real slapd); and on the Samba AD DC, a deleted
//! user brought back by tombstone reanimation with the same objectGUID and objectSid and its
//! group memberships. See: #16.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ad::pcsync_ad;
use crate::common::samba::{self, Seed, WELL_KNOWN_USERS};
use crate::common::slapd::{POLL_INTERVAL, Slapd, wait_bounded};
use crate::common::{output, pcsync, repo, run_id};
use crate::reconcile::{endpoints, exists};

const OCSCHAT: &str = "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com";
const URI: &str = "sip:ocschat@contoso.com";
/// How long a gated restore may take to reach its gate, or to end once released.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn exec(cmd: &mut assert_cmd::Command, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = cmd.args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

/// Reconcile --apply on the fixture (both well-known users swapped, retire = "delete"): the
/// run to undo.
fn swapped(slapd: &Slapd, work: &Path) -> String {
    let (code, out, err) = exec(&mut pcsync(slapd, work), &["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!exists(slapd, OCSCHAT));
    run_id(work, 0)
}

fn holds_uri(slapd: &Slapd) -> usize {
    let text = slapd.search(
        "dc=contoso,dc=com",
        &format!("(msRTCSIP-PrimaryUserAddress={URI})"),
        &["1.1"],
    );
    let text2 = slapd.search(
        &slapd.endpoint_container(),
        &format!("(msRTCSIP-PrimaryUserAddress={URI})"),
        &["1.1"],
    );
    let mut dns: Vec<String> = format!("{text}\n{text2}")
        .lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .map(str::to_ascii_lowercase)
        .collect();
    dns.sort();
    dns.dedup();
    dns.len()
}

/// Case 4 of #16: an administrator re-added the well-known user by hand as a plain account (no
/// SIP address). The restore must not take it for the user: it does not write over it, keeps
/// the endpoint (the URI stays served), names the DN and the URI, and exits 1.
#[test]
fn restore_does_not_take_a_hand_made_account_for_the_user_and_keeps_the_uri_served() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);
    slapd.add(&format!(
        "dn: {OCSCHAT}\nobjectClass: inetOrgPerson\ncn: OCSChat\nsn: by hand\n"
    ));

    let (code, out, err) = exec(&mut pcsync(&slapd, w), &["restore", "--run", &run]);
    assert_eq!(code, Some(2), "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("recreate_user") && l.contains(OCSCHAT))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("pending"),
        "the DN exists, the user is not back: {line}"
    );

    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(&format!(
            "{OCSCHAT} is taken by another object that does not hold {URI}"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("keeps serving {URI}")), "{out}");
    assert_eq!(holds_uri(&slapd), 1, "the endpoint still serves {URI}");
    let account = slapd.search(OCSCHAT, "(objectClass=*)", &["*"]);
    assert!(
        account.contains("sn: by hand"),
        "not written over: {account}"
    );
    assert!(!account.contains("msRTCSIP"), "{account}");
}

/// After a restore each URI it touched must be held by exactly one enabled object. Here someone
/// gave a contact the URI by hand meanwhile: the restore does its actions, then exits 1 naming
/// the URI held twice.
#[test]
fn restore_checks_its_result_and_names_a_uri_held_twice() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);
    let stray = "cn=stray chat,ou=users,dc=contoso,dc=com";
    slapd.add(&format!(
        "dn: {stray}\nobjectClass: inetOrgPerson\nobjectClass: pcsyncRtcUser\ncn: Stray Chat\n\
         sn: Chat\nmsRTCSIP-PrimaryUserAddress: {URI}\nmsRTCSIP-UserEnabled: TRUE\n"
    ));
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("restored 4 of 4"), "{out}");
    assert!(
        out.contains(&format!("HELD TWICE {URI}: 2 enabled objects hold it")),
        "{out}"
    );
    assert!(out.to_ascii_lowercase().contains(stray), "{out}");
    assert!(
        !out.contains("HELD TWICE sip:ocschat@fabrikam.com"),
        "{out}"
    );
}

/// A run that repointed an endpoint is undone by putting the endpoint's old values back, and
/// the restore counts it: the dry run shows it pending, the apply completes, a rerun has
/// nothing left.
#[test]
fn restore_reverts_a_repoint_and_counts_it() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    swapped(&slapd, w);
    let (dn, _) = endpoints(&slapd)
        .into_iter()
        .find(|(_, lines)| lines.iter().any(|l| l.ends_with(URI)))
        .unwrap();
    let dn = dn.strip_prefix("dn: ").unwrap().to_owned();
    let moved = slapd.pool_dn("1:3");
    slapd.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\n\
         msRTCSIP-PrimaryHomeServer: {moved}\n"
    ));
    let home = |slapd: &Slapd| {
        slapd
            .search(&dn, "(objectClass=*)", &["msRTCSIP-PrimaryHomeServer"])
            .to_ascii_lowercase()
    };
    let (code, out, err) = exec(&mut pcsync(&slapd, w), &["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        !home(&slapd).contains("cn=1:3,"),
        "repointed: {}",
        home(&slapd)
    );
    let repoint_run = run_id(w, 1);

    let (code, out, err) = exec(&mut pcsync(&slapd, w), &["restore", "--run", &repoint_run]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("revert_repoint   pending"), "{out}");
    assert!(out.contains("1 action(s) pending"), "{out}");
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &repoint_run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restored 1 of 1"), "{out}");
    assert!(
        home(&slapd).contains("cn=1:3,"),
        "back on 1:3: {}",
        home(&slapd)
    );
    let (code, out, _) = exec(&mut pcsync(&slapd, w), &["restore", "--run", &repoint_run]);
    assert_eq!(code, Some(0), "nothing left: {out}");
}

/// A `pcsync restore --run R --apply` paused at the `restore-step-started` failpoint of its
/// `nth` action (from 0): its `started` record is written, its write not yet made.
struct GatedRestore {
    child: Child,
    gate: PathBuf,
    stdout: PathBuf,
}

const GATE_POINT: &str = "restore-step-started";

impl GatedRestore {
    fn start(slapd: &Slapd, work: &Path, run: &str, nth: usize) -> GatedRestore {
        crate::common::needs_failpoints();
        let gate = work.join("gate");
        fs::create_dir_all(&gate).unwrap();
        let stdout = work.join("restore.out");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("pcsync"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PCSYNC") || key == "FAILPOINTS" {
                cmd.env_remove(key);
            }
        }
        let skip = if nth == 0 {
            String::new()
        } else {
            format!("{nth}*off->")
        };
        cmd.current_dir(work)
            .arg("--config")
            .arg(repo("config/openldap.toml"))
            .args(["restore", "--run", run, "--apply"])
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            .env(
                "FAILPOINTS",
                format!("{GATE_POINT}={skip}1*return({})->off", gate.display()),
            )
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(work.join("restore.err")).unwrap());
        let mut g = GatedRestore {
            child: cmd.spawn().expect("start pcsync"),
            gate,
            stdout,
        };
        let reached = g.gate.join(format!("{GATE_POINT}.reached"));
        let deadline = Instant::now() + RUN_TIMEOUT;
        while !reached.exists() {
            if let Some(status) = g.child.try_wait().unwrap() {
                panic!("pcsync ended ({status}) before reaching {GATE_POINT}");
            }
            assert!(
                Instant::now() < deadline,
                "{GATE_POINT} not reached in time"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
        g
    }

    /// Lets the restore go on and waits (bounded) for it to end: (exit code, stdout).
    fn release(mut self) -> (Option<i32>, String) {
        fs::write(self.gate.join(format!("{GATE_POINT}.release")), "").unwrap();
        if wait_bounded(&mut self.child, RUN_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("pcsync did not finish after {GATE_POINT}");
        }
        let status = self.child.wait().unwrap();
        (status.code(), fs::read_to_string(&self.stdout).unwrap())
    }
}

/// The directory goes away in the middle of a restore (slapd stopped while the second action
/// is about to write): the restore stops there, exits 1, and says exactly which actions were
/// done and which were not; once slapd is back, a rerun does the rest and the directory is as
/// before the run.
#[test]
fn restore_stops_on_a_lost_connection_says_what_was_done_and_a_rerun_converges() {
    let mut slapd = Slapd::start();
    let before = crate::reconcile::dump(&slapd);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);

    let gated = GatedRestore::start(&slapd, w, &run, 1);
    slapd.stop();
    let (code, out) = gated.release();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("STOPPED the directory went away"), "{out}");
    let done: Vec<&str> = out.lines().filter(|l| l.starts_with("  done ")).collect();
    let not_done: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  not done "))
        .collect();
    assert_eq!(done.len(), 1, "{out}");
    assert!(done[0].contains("recreate_user"), "{out}");
    assert_eq!(
        not_done.len(),
        3,
        "the action in flight and the two after it: {out}"
    );
    assert!(
        out.contains(&format!("run `pcsync restore --run {run} --apply` again")),
        "{out}"
    );

    slapd.start_again();
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restored 3 of 3"), "{out}");
    assert_eq!(crate::reconcile::dump(&slapd), before, "nothing lost");
    let (code, out, _) = exec(&mut pcsync(&slapd, w), &["restore", "--run", &run]);
    assert_eq!(code, Some(0), "{out}");
}

/// SIGTERM while a restore action is in flight: the action is finished, nothing after it is
/// started, and the restore says so (exit 1); a rerun finishes the job.
#[test]
fn restore_apply_finishes_the_action_in_flight_on_sigterm_then_stops() {
    let slapd = Slapd::start();
    let before = crate::reconcile::dump(&slapd);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);

    let gated = GatedRestore::start(&slapd, w, &run, 0);
    let status = Command::new("kill")
        .args(["-TERM", &gated.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out) = gated.release();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("STOPPED stop requested (SIGINT or SIGTERM)"),
        "{out}"
    );
    let done: Vec<&str> = out.lines().filter(|l| l.starts_with("  done ")).collect();
    assert_eq!(done.len(), 1, "the action in flight was finished: {out}");
    assert!(
        done[0].contains(&format!("recreate_user {OCSCHAT}")),
        "{out}"
    );
    assert!(exists(&slapd, OCSCHAT), "the user in flight is back");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  not done ")).count(),
        3,
        "{out}"
    );

    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(crate::reconcile::dump(&slapd), before, "nothing lost");
}

// === Active Directory: tombstone reanimation ===

/// rightsGuid of the control access right Reanimate-Tombstones.
const REANIMATE_TOMBSTONES: &str = "45ec5156-db7e-47bb-b53f-dbeb2d03c40f";

/// Adds `ace` to the DACL of the domain's `CN=Deleted Objects`. `samba-tool dsacl` cannot (it
/// does not see deleted objects), so this does what it does, with the Show Deleted control,
/// through Samba's Python bindings on the DC's database. On AD: `dsacls "CN=Deleted Objects,…"
/// /takeOwnership`, then `/G` (docs/active-directory.md).
fn grant_on_deleted_objects(dc: &samba::SambaDc, ace: &str) {
    const SCRIPT: &str = r#"
import sys, ldb
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
conf, url, dn, ace = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, session_info=system_session(), lp=lp)
res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"],
                controls=["show_deleted:1"])
sid = security.dom_sid(db.get_domain_sid())
sddl = ndr_unpack(security.descriptor, res[0]["nTSecurityDescriptor"][0]).as_sddl(sid)
if ace not in sddl:
    i = sddl.index("(")
    sddl = sddl[:i] + ace + sddl[i:]
m = ldb.Message()
m.dn = ldb.Dn(db, dn)
m["nTSecurityDescriptor"] = ldb.MessageElement(
    ndr_pack(security.descriptor.from_sddl(sddl, sid)), ldb.FLAG_MOD_REPLACE,
    "nTSecurityDescriptor")
db.modify(m, controls=["show_deleted:1"])
"#;
    let out = crate::common::slapd::run(
        Command::new("/usr/bin/python3")
            .args(["-c", SCRIPT])
            .arg(dc.dir.join("etc/smb.conf"))
            .arg(dc.dir.join("private/sam.ldb"))
            .arg(format!("CN=Deleted Objects,{}", dc.domain_dn))
            .arg(ace),
    );
    assert!(
        out.success(),
        "granting {ace} on Deleted Objects failed:\n{}",
        out.both()
    );
}

/// `attr:: value` lines of one entry, as the Administrator reads them.
fn attribute_lines(dc: &samba::SambaDc, dn: &str, attrs: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = dc
        .search(dn, "(objectClass=*)", attrs)
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// On Active Directory, with `retire = "delete"` and the rights of docs/active-directory.md
/// section 2, restore reanimates the deleted user's tombstone: the same objectGUID and
/// objectSid, every attribute back, and the membership in the group the account may write;
/// the group it may not write is named in a warning.
#[test]
fn ad_restore_reanimates_the_tombstone_with_the_same_objectguid_and_objectsid() {
    let dc = samba::samba();
    let user = WELL_KNOWN_USERS[0];
    let writable = "CN=Chat Operators,OU=Service Accounts,DC=contoso,DC=com";
    let locked = "CN=Chat Auditors,OU=People,DC=contoso,DC=com";
    // The user is deleted and re-added when the test ends, so the extra grants go with it.
    let _seed = Seed::reset(&dc, &[writable, locked, user]);
    for group in [writable, locked] {
        dc.add(&format!(
            "dn: {group}\nobjectClass: group\nmember: {user}\n"
        ));
    }
    let sid = dc.service_sid.clone();
    dc.dsacl_set(
        &dc.domain_dn,
        &format!("(OA;;CR;{REANIMATE_TOMBSTONES};;{sid})"),
    );
    grant_on_deleted_objects(&dc, &format!("(A;;LCRP;;;{sid})"));
    dc.dsacl_set(user, &format!("(A;;WP;;;{sid})"));
    dc.dsacl_set(writable, &format!("(A;;WP;;;{sid})"));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let volatile = ["whenChanged", "uSNChanged", "dSCorePropagationData"];
    let everything = |dc: &samba::SambaDc| {
        attribute_lines(dc, user, &["*"])
            .into_iter()
            .filter(|l| !volatile.iter().any(|v| l.starts_with(&format!("{v}:"))))
            .collect::<Vec<_>>()
    };
    let before = everything(&dc);
    let identity = attribute_lines(&dc, user, &["objectGUID", "objectSid"]);
    assert_eq!(identity.len(), 2, "{identity:?}");

    let (code, out, err) = exec(&mut pcsync_ad(&dc, w), &["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!dc.exists(user));
    let run = run_id(w, 0);

    let (code, out, err) = exec(
        &mut pcsync_ad(&dc, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restored 2 of 2"), "{out}");
    assert!(!out.contains("NEW PRINCIPAL"), "{out}");
    assert_eq!(
        attribute_lines(&dc, user, &["objectGUID", "objectSid"]),
        identity,
        "same objectGUID and objectSid"
    );
    let members = dc.search(writable, "(objectClass=*)", &["member"]);
    assert!(members.contains(&format!("member: {user}")), "{members}");
    assert!(
        out.contains(&format!("WARNING group membership of {user} in {locked}")),
        "{out}"
    );
    // Every attribute as before, but the membership in the group the account may not write,
    // and the marks the DC itself leaves on a reanimated object (where it was deleted from;
    // the protected-group counters, zero).
    let marks = [
        "memberOf:",
        "lastKnownParent:",
        "adminCount: 0",
        "operatorCount: 0",
    ];
    let unmarked = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| !marks.iter().any(|m| l.starts_with(m)))
            .collect()
    };
    assert_eq!(unmarked(everything(&dc)), unmarked(before));
    let (code, out, _) = exec(&mut pcsync_ad(&dc, w), &["restore", "--run", &run]);
    assert_eq!(code, Some(0), "nothing left to undo: {out}");
}

/// The restore plan names why it leaves an endpoint alone: an endpoint whose address someone
/// changed since the swap is `skipped`, with the address it holds now, never `done` (#19).
#[test]
fn restore_says_skipped_with_the_reason_for_an_endpoint_whose_address_changed() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);
    let (dn, _) = endpoints(&slapd)
        .into_iter()
        .find(|(_, lines)| lines.iter().any(|l| l.ends_with(URI)))
        .unwrap();
    let dn = dn.strip_prefix("dn: ").unwrap().to_owned();
    slapd.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: msRTCSIP-PrimaryUserAddress\n\
         msRTCSIP-PrimaryUserAddress: sip:otherchat@contoso.com\n"
    ));

    let (code, out, err) = exec(&mut pcsync(&slapd, w), &["restore", "--run", &run]);
    assert_eq!(code, Some(2), "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("delete_endpoint") && l.contains(URI))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("skipped"), "not done: {line}");
    let why =
        format!("skipped delete_endpoint {dn}: it holds sip:otherchat@contoso.com now, not {URI}");
    assert!(
        out.to_ascii_lowercase().contains(&why.to_ascii_lowercase()),
        "{out}"
    );
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        slapd
            .search(&dn, "(objectClass=*)", &["msRTCSIP-PrimaryUserAddress"])
            .contains("sip:otherchat@contoso.com"),
        "the endpoint is left alone"
    );
}

/// A restore with nothing left to do says so and leaves the audit log as it was: no run is
/// recorded for it (#19, no-op runs).
#[test]
fn a_restore_with_nothing_to_do_records_no_run() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = swapped(&slapd, w);
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let log = w.join("var/audit.jsonl");
    let before = fs::read(&log).unwrap();

    for format in ["text", "json"] {
        let (code, out, err) = exec(
            &mut pcsync(&slapd, w),
            &["restore", "--run", &run, "--apply", "--format", format],
        );
        assert_eq!(code, Some(0), "{out}{err}");
        if format == "text" {
            assert!(
                out.contains(&format!(
                    "nothing to restore: run {run} is already undone; no run recorded"
                )),
                "{out}"
            );
        }
    }
    assert!(
        fs::read(&log).unwrap() == before,
        "the audit log is unchanged"
    );
}

/// With `retire = "delete"` a swap whose delete was refused (here: the user has a child entry,
/// LDAP 66) leaves the user released and the endpoint serving. Restoring that run gives the
/// same object its values back (same entryUUID), then removes the endpoint: the URI is held
/// once, by the user, and the restore exits 0 (#16).
#[test]
fn restore_gives_a_user_left_released_by_a_refused_delete_its_values_back() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let uuid = |slapd: &Slapd| {
        slapd
            .entry_uuid(OCSCHAT)
            .unwrap_or_else(|| panic!("{OCSCHAT} has no entryUUID"))
    };
    let before = uuid(&slapd);
    slapd.add(&format!(
        "dn: cn=child,{OCSCHAT}\nobjectClass: organizationalRole\ncn: child\n"
    ));
    let (code, out, err) = exec(&mut pcsync(&slapd, w), &["reconcile", "--apply"]);
    assert_eq!(code, Some(1), "the delete is refused: {out}{err}");
    assert!(exists(&slapd, OCSCHAT));
    let run = run_id(w, 0);

    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &run, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("reenable_user") && l.contains(OCSCHAT)),
        "the same object gets its values back: {out}"
    );
    assert_eq!(uuid(&slapd), before, "the same object");
    assert_eq!(holds_uri(&slapd), 1, "{URI} is held once");
    assert!(
        slapd
            .search(OCSCHAT, "(objectClass=*)", &["msRTCSIP-PrimaryUserAddress"])
            .to_ascii_lowercase()
            .contains(URI),
        "by the user"
    );
}

/// A run that crashed mid-swap (after the endpoint was added) and was then restored: the next
/// applying run's recovery finds the user holding the URI again. It must say that a restore
/// undid the swap, naming the restore's run, not that "nothing had been written" (#19).
#[test]
fn recovery_after_a_restored_crash_names_the_restore_not_nothing_written() {
    crate::common::needs_failpoints();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let assert = pcsync(&slapd, w)
        .env("FAILPOINTS", "swap-endpoint-added=return")
        .args(["reconcile", "--apply"])
        .assert();
    assert_eq!(assert.get_output().status.code(), None, "died mid-swap");
    let crashed = run_id(w, 0);
    let (code, out, err) = exec(
        &mut pcsync(&slapd, w),
        &["restore", "--run", &crashed, "--apply"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let restore_run = run_id(w, 1);

    let (_, out, err) = exec(&mut pcsync(&slapd, w), &["reconcile", "--apply"]);
    let line = err
        .lines()
        .find(|l| l.starts_with("pcsync: recovered swap"))
        .unwrap_or_else(|| panic!("no recovery line: {out}{err}"));
    assert!(!line.contains("nothing had been written"), "{line}");
    assert!(
        line.contains(&format!("undone by restore run {restore_run}")),
        "{line}"
    );
}
