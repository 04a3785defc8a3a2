//! Faults (issue #8): the directory, the audit log's disk, the state dir and the mapping cache
//! fail under a real `pcsync` against a real slapd. In every case the run stops before its next
//! directory write, exits non-zero with one line naming what is at fault, loses nothing (the
//! audit log verifies and agrees with the directory; no well-known user is gone unless its
//! endpoint is in place or its swap is open in the journal with its before-image), and the next
//! run converges to exactly the state of a clean apply.
//!
//! Exact timing comes from gated failpoints (`--features failpoints`): `FAILPOINTS=name=return(DIR)`
//! makes pcsync write `DIR/name.reached` and wait until the test creates `DIR/name.release`, so
//! the test stops slapd or fills the disk at that point and nowhere else.
//!
//! Mechanisms that need privileges are chosen at run time, and the test says which it used: a
//! small tmpfs (`mount`, root with CAP_SYS_ADMIN) for a full disk and a read-only file system;
//! otherwise a file size limit (`prlimit`, anyone) and mode 0444 (non-root only; root ignores
//! modes). A path whose parent is a regular file (ENOTDIR) denies everyone and is always used.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcsync::audit::{self, Event, Outcome, Step};

use crate::common::daemon::Daemon;
use crate::common::redirect::{FIXTURE_USER, Redirector, options_status};
use crate::common::slapd::{POLL_INTERVAL, Slapd, log_tail, run, wait_bounded};
use crate::common::{output, pcsync, repo};
use crate::reconcile::{dump, endpoints};

/// The fixture's two migrations: the well-known URI and the user that holds it.
const MIGRATIONS: [(&str, &str); 2] = [
    (
        "sip:ocschat@contoso.com",
        "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com",
    ),
    (
        "sip:ocschat@fabrikam.com",
        "cn=OCSChat Fabrikam,ou=Service Accounts,dc=contoso,dc=com",
    ),
];
/// Upper bound for a gated pcsync to reach its gate, and then to finish.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

// === running pcsync ===

/// The end state of a clean `reconcile --apply` on a fresh fixture: what every fault must
/// converge to.
fn reference() -> BTreeMap<String, Vec<String>> {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    pcsync(&slapd, work.path())
        .args(["reconcile", "--apply"])
        .assert()
        .code(0);
    dump(&slapd)
}

/// Runs `pcsync reconcile` with `args` and `env`: (exit code, stdout, stderr).
fn reconcile(
    slapd: &Slapd,
    work: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = pcsync(slapd, work);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let assert = cmd.arg("reconcile").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

/// A `pcsync reconcile --apply` paused at a gated failpoint.
struct Gated {
    child: std::process::Child,
    gate: PathBuf,
    point: &'static str,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Gated {
    /// Starts the run and waits (bounded) until it stands at `point`.
    fn start(slapd: &Slapd, work: &Path, env: &[(&str, &str)], point: &'static str) -> Gated {
        let gate = work.join("gate");
        fs::create_dir_all(&gate).unwrap();
        let (stdout, stderr) = (work.join("gated.out"), work.join("gated.err"));
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("pcsync"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PCSYNC") || key == "FAILPOINTS" {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(work)
            .arg("--config")
            .arg(repo("config/openldap.toml"))
            .args(["reconcile", "--apply"])
            .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.admin_password_file,
            )
            .env(
                "FAILPOINTS",
                format!("{point}=1*return({})", gate.display()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        let mut g = Gated {
            child: cmd.spawn().expect("start pcsync"),
            gate,
            point,
            stdout,
            stderr,
        };
        let reached = g.gate.join(format!("{point}.reached"));
        let deadline = Instant::now() + RUN_TIMEOUT;
        while !reached.exists() {
            if let Some(status) = g.child.try_wait().unwrap() {
                panic!(
                    "pcsync ended ({status}) before reaching {point}:\n{}",
                    g.output().2
                );
            }
            assert!(Instant::now() < deadline, "{point} not reached in time");
            std::thread::sleep(POLL_INTERVAL);
        }
        g
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the run go on from its gate and waits (bounded) for it to end.
    fn release(mut self) -> (Option<i32>, String, String) {
        fs::write(self.gate.join(format!("{}.release", self.point)), "").unwrap();
        if wait_bounded(&mut self.child, RUN_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "pcsync did not finish after {}:\n{}",
                self.point,
                self.output().2
            );
        }
        let status = self.child.wait().unwrap();
        let (_, out, err) = self.output();
        (status.code(), out, err)
    }

    fn output(&self) -> (Option<i32>, String, String) {
        (
            None,
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

/// The one line a failed run prints, failpoint chatter aside; panics unless there is exactly
/// one, and it is an error line.
fn the_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("pcsync: failpoint "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line expected:\n{stderr}");
    assert!(lines[0].starts_with("pcsync: error: "), "{stderr}");
    lines[0].to_string()
}

// === what "lose nothing" means, checked ===

fn audit_log(work: &Path, path: &str) -> Vec<audit::Record> {
    audit::read(&work.join(path)).unwrap_or_else(|e| panic!("the audit log must verify: {e}"))
}

fn present(slapd: &Slapd, dn: &str) -> bool {
    slapd
        .try_search(dn, "(objectClass=*)", &["1.1"])
        .is_ok_and(|t| !t.trim().is_empty())
}

/// Whether the user at `dn` still holds a SIP address (it was not released).
fn user_holds_uri(slapd: &Slapd, dn: &str) -> bool {
    slapd
        .try_search(dn, "(msRTCSIP-PrimaryUserAddress=*)", &["1.1"])
        .is_ok_and(|t| !t.trim().is_empty())
}

/// Whether an endpoint in the container holds `uri`.
fn has_endpoint(slapd: &Slapd, uri: &str) -> bool {
    endpoints(slapd).values().any(|lines| {
        lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&format!("msRTCSIP-PrimaryUserAddress: {uri}")))
    })
}

/// The audit log agrees with the directory: replaying it (a user exists until its delete is
/// recorded `ok`; an endpoint exists once its add is recorded `ok`; a started step with no
/// outcome is in doubt) predicts every object it knows for sure. And nothing is lost: every
/// well-known URI is held by its user, or by an endpoint, or by an open swap whose before-image
/// can bring the user back.
fn assert_nothing_lost(slapd: &Slapd, records: &[audit::Record], what: &str) {
    let mut expect: BTreeMap<String, Option<bool>> = BTreeMap::new();
    for r in records {
        let Some(dn) = r.dn.as_ref().map(|d| d.as_str().to_ascii_lowercase()) else {
            continue;
        };
        match (r.event, r.outcome, r.step) {
            (Event::SwapIntent, _, _) => {
                for c in r.changes.iter().flatten() {
                    let is_user = matches!(c, pcsync::plan::Change::RetireUser(_));
                    expect
                        .entry(c.dn().as_str().to_ascii_lowercase())
                        .or_insert(Some(is_user));
                }
            }
            (Event::Step, Outcome::Started, Some(Step::DeleteUser | Step::AddEndpoint)) => {
                expect.insert(dn, None);
            }
            (Event::Step, Outcome::Ok, Some(Step::DeleteUser)) => {
                expect.insert(dn, Some(false));
            }
            (Event::Step, Outcome::Ok, Some(Step::AddEndpoint)) => {
                expect.insert(dn, Some(true));
            }
            (Event::Rollback, Outcome::Ok, _) => {
                expect.insert(dn, Some(true));
            }
            _ => {}
        }
    }
    for (dn, want) in &expect {
        if let Some(want) = want {
            assert_eq!(
                present(slapd, dn),
                *want,
                "{what}: the audit log says {dn} {}",
                if *want { "exists" } else { "is gone" }
            );
        }
    }
    let open = audit::unfinished_swaps(records);
    for (uri, user) in MIGRATIONS {
        let held_by_user = present(slapd, user);
        let held_by_endpoint = has_endpoint(slapd, uri);
        let recoverable = open.iter().any(|u| {
            u.changes
                .iter()
                .any(|c| c.sip_uri().as_str().eq_ignore_ascii_case(uri))
                && u.before
                    .as_ref()
                    .is_some_and(|b| b.dn.as_str().eq_ignore_ascii_case(user))
        });
        assert!(
            held_by_user || held_by_endpoint || recoverable,
            "{what}: {uri} is lost: no user, no endpoint, no open swap with a before-image"
        );
    }
}

/// The next run converges: `reconcile --apply` exits 0 (recovering what is open), a dry rerun
/// plans nothing, the directory equals a clean apply's, and the log has nothing open.
fn assert_converges(
    slapd: &Slapd,
    work: &Path,
    env: &[(&str, &str)],
    audit_path: &str,
    reference: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    let (code, out, err) = reconcile(slapd, work, env, &["--apply"]);
    assert_eq!(code, Some(0), "{what}: the next run\n{out}{err}");
    let (code, out, err) = reconcile(slapd, work, env, &[]);
    assert_eq!(code, Some(0), "{what}: the rerun is in sync\n{out}{err}");
    assert!(
        dump(slapd) == *reference,
        "{what}: end state differs from a clean apply"
    );
    let records = audit_log(work, audit_path);
    assert!(audit::unfinished_swaps(&records).is_empty(), "{what}");
    assert_nothing_lost(slapd, &records, what);
}

// === 1. slapd stopped mid-run ===

/// slapd goes away after the plan was computed and recorded, before the first write.
#[test]
fn slapd_stopped_between_the_search_and_the_apply() {
    crate::common::needs_failpoints();
    let reference = reference();
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    let run = Gated::start(&slapd, work.path(), &[], pcsync::apply::RUN_PLANNED);
    slapd.stop();
    let (code, out, err) = run.release();
    assert_eq!(code, Some(1), "{out}{err}");
    let line = the_error_line(&err);
    let addr = slapd.ldap_url.trim_end_matches('/');
    assert!(line.contains(addr), "names the server: {line}");
    eprintln!("run-planned: {line}");
    assert!(
        line.to_ascii_lowercase()
            .contains("reading cn=ocschat,ou=service accounts,dc=contoso,dc=com"),
        "names the DN: {line}"
    );
    assert!(line.contains("stays open in the audit log"), "{line}");

    slapd.start_again();
    assert!(dump(&slapd) == before, "nothing was written");
    let records = audit_log(work.path(), "var/audit.jsonl");
    assert!(
        !records
            .iter()
            .any(|r| r.event == Event::Step && r.outcome == Outcome::Ok),
        "no step succeeded"
    );
    assert_eq!(records.last().unwrap().event, Event::RunEnd);
    assert_nothing_lost(&slapd, &records, "run-planned");
    assert_converges(
        &slapd,
        work.path(),
        &[],
        "var/audit.jsonl",
        &reference,
        "run-planned",
    );
}

/// slapd goes away between the steps of a swap (release the user, add the endpoint, read it
/// back, delete the user): before the release, after it, after the add, after the read-back.
/// The user is never gone before its endpoint is proven.
#[test]
fn slapd_stopped_between_the_steps_of_a_swap() {
    crate::common::needs_failpoints();
    let reference = reference();
    for (point, user_holds, endpoint_added) in [
        ("swap-before-image-written", true, false),
        ("swap-user-retired", false, false),
        ("swap-endpoint-added", false, true),
        ("swap-endpoint-verified", false, true),
    ] {
        let mut slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let run = Gated::start(&slapd, work.path(), &[], point);
        slapd.stop();
        let (code, out, err) = run.release();
        assert_eq!(code, Some(1), "{point}: {out}{err}");
        let line = the_error_line(&err);
        eprintln!("{point}: {line}");
        assert!(
            line.contains(slapd.ldap_url.trim_end_matches('/')),
            "{point}: {line}"
        );
        assert!(
            line.contains("(sip:ocschat@contoso.com), which stays open in the audit log"),
            "{point}: {line}"
        );
        let records = audit_log(work.path(), "var/audit.jsonl");
        let open = audit::unfinished_swaps(&records);
        assert_eq!(open.len(), 1, "{point}: the swap stays open");
        assert!(open[0].before.is_some(), "{point}: with its before-image");
        assert!(
            !records.iter().any(|r| r.event == Event::Rollback),
            "{point}: no rollback on a dead connection"
        );
        // The second swap never started.
        assert!(
            !records
                .iter()
                .any(|r| r.sip_uri.as_ref().map(|u| u.as_str())
                    == Some("sip:ocschat@fabrikam.com")
                    && r.event == Event::SwapIntent),
            "{point}"
        );

        slapd.start_again();
        assert!(
            present(&slapd, MIGRATIONS[0].1),
            "{point}: the user is never gone unproven"
        );
        assert_eq!(
            user_holds_uri(&slapd, MIGRATIONS[0].1),
            user_holds,
            "{point}"
        );
        assert!(present(&slapd, MIGRATIONS[1].1), "{point}");
        assert_eq!(
            has_endpoint(&slapd, MIGRATIONS[0].0),
            endpoint_added,
            "{point}"
        );
        assert_nothing_lost(&slapd, &records, point);
        assert_converges(
            &slapd,
            work.path(),
            &[],
            "var/audit.jsonl",
            &reference,
            point,
        );
    }
}

/// The same fault under `pcsync run` (auto_apply): slapd stops after the start-up run deleted
/// the user. The run ends `failed` with the one-line reason in `/healthz`, the daemon keeps
/// running and serving, the swap stays open, and once slapd is back a scheduled run recovers it
/// and converges, unattended.
#[test]
fn the_daemon_survives_slapd_stopping_mid_swap_and_its_next_run_converges() {
    crate::common::needs_failpoints();
    let reference = reference();
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let gate = work.path().join("gate");
    fs::create_dir_all(&gate).unwrap();
    let failpoint = format!("swap-user-retired=1*return({})", gate.display());
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__SAFETY__AUTO_APPLY", "true"),
            ("FAILPOINTS", failpoint.as_str()),
        ],
    );
    d.wait_until("the run reaches the gate", RUN_TIMEOUT, || {
        gate.join("swap-user-retired.reached").exists()
    });
    slapd.stop();
    fs::write(gate.join("swap-user-retired.release"), "").unwrap();
    // The failed run's error is read from the audit log, not from /healthz's last_run: with
    // slapd down the next cron tick (every second) fails too, for another reason, and replaces
    // last_run.
    let failed_run = || {
        audit::read(&d.audit).ok().and_then(|records| {
            records.into_iter().find_map(|r| {
                let message = r.message.filter(|m| m.contains("which stays open"))?;
                (r.event == Event::Error && r.outcome == Outcome::Failed).then_some(message)
            })
        })
    };
    d.wait_until("the run fails", RUN_TIMEOUT, || failed_run().is_some());
    let message = failed_run().unwrap();
    eprintln!("daemon: {message}");
    assert!(
        message.contains(slapd.ldap_url.trim_end_matches('/')) && !message.contains('\n'),
        "{message}"
    );
    let records = audit::read(&d.audit).unwrap();
    assert_eq!(audit::unfinished_swaps(&records).len(), 1);
    assert!(!records.iter().any(|r| r.event == Event::Rollback));

    slapd.start_again();
    assert_nothing_lost(&slapd, &records, "daemon, slapd back");
    d.wait_until("a later run converges", Duration::from_secs(30), || {
        d.health()["last_run"]["outcome"] == "in_sync"
    });
    assert!(
        dump(&slapd) == reference,
        "end state differs from a clean apply"
    );
    let records = audit::read(&d.audit).unwrap();
    assert!(audit::unfinished_swaps(&records).is_empty());
    assert!(
        records
            .iter()
            .any(|r| r.event == Event::Recovery && r.outcome == Outcome::Ok)
    );
    assert_nothing_lost(&slapd, &records, "daemon");
    assert_eq!(
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200),
        "still serving"
    );
}

// === 3. the audit log cannot be written ===

/// A small tmpfs mounted for one test, unmounted (lazily) on drop. `None` where this process
/// may not mount (not root, or no CAP_SYS_ADMIN): the caller then uses its fallback.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let out = crate::common::slapd::run_with_timeout(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("pcsync-test")
                .arg(path),
            Duration::from_secs(30),
        );
        match out {
            Ok(out) if out.success() => {}
            Ok(out) => {
                eprintln!(
                    "tmpfs not mountable here ({}): using the fallback",
                    out.stderr.trim().replace('\n', " ")
                );
                return None;
            }
            Err(partial) => {
                eprintln!("mount did not finish ({partial}): using the fallback");
                return None;
            }
        }
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, mode: &str) {
        let out = run(Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path));
        assert!(out.success(), "remount {mode}: {}", out.both());
    }

    /// Fills the file system completely (ENOSPC), with `name` in it.
    fn fill(&self, name: &str) {
        use std::io::Write;
        let mut f = fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                break;
            }
        }
        // Pages freed by nothing: small writes take whatever bytes are left.
        while f.write_all(&[0u8; 512]).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Whether a file with mode 0444 refuses writes to this process (false for root). pcsync runs
/// as the same user, so the answer holds for it too.
fn modes_deny_writes(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join("mode-probe");
    fs::write(&probe, "").unwrap();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o444)).unwrap();
    let denied = fs::OpenOptions::new().append(true).open(&probe).is_err();
    fs::remove_file(&probe).unwrap();
    denied
}

/// A read-only audit log (a read-only file system where this process may mount one, else mode
/// 0444 where modes bind it), and an audit directory that cannot exist (its parent is a regular
/// file: ENOTDIR, for root too). The run stops before anything is written; the next run, with
/// a writable log, converges.
#[test]
fn an_unwritable_audit_log_stops_the_run_before_any_write() {
    let reference = reference();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);

    // (a) A read-only file: the log of an earlier (dry) run's life, then made read-only.
    let ro_dir = work.path().join("ro");
    let mount = Tmpfs::mount(&ro_dir, "1m");
    let log = ro_dir.join("audit.jsonl");
    fs::write(&log, "").unwrap();
    let mechanism = if let Some(m) = &mount {
        m.remount("ro");
        Some("read-only tmpfs (EROFS)")
    } else if modes_deny_writes(work.path()) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&log, fs::Permissions::from_mode(0o444)).unwrap();
        Some("mode 0444 (EACCES)")
    } else {
        // Root without CAP_SYS_ADMIN (a default container): nothing unprivileged makes a file
        // read-only for root. Said loudly; (b) below still denies root.
        eprintln!(
            "read-only audit file NOT tested here: no tmpfs (cannot mount) and root ignores \
             modes; only the ENOTDIR case runs"
        );
        None
    };
    if let Some(mechanism) = mechanism {
        eprintln!("read-only audit log: {mechanism}");
        let log_env = log.display().to_string();
        let env = [("PCSYNC__AUDIT__PATH", log_env.as_str())];
        let (code, out, err) = reconcile(&slapd, work.path(), &env, &["--apply"]);
        assert_eq!(code, Some(1), "{out}{err}");
        let line = the_error_line(&err);
        eprintln!("{mechanism}: {line}");
        assert!(
            line.contains(&format!("cannot open audit log {}", log.display())),
            "{line}"
        );
        assert!(dump(&slapd) == before, "{mechanism}: nothing was written");
        assert_eq!(fs::read(&log).unwrap().len(), 0, "the log is untouched");
    }

    // (b) The audit directory cannot be created: its parent is a regular file.
    fs::write(work.path().join("not-a-dir"), "").unwrap();
    let (code, out, err) = reconcile(
        &slapd,
        work.path(),
        &[("PCSYNC__AUDIT__PATH", "not-a-dir/audit/audit.jsonl")],
        &["--apply"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let line = the_error_line(&err);
    eprintln!("ENOTDIR: {line}");
    assert!(
        line.contains("audit log not-a-dir/audit/audit.jsonl: Not a directory"),
        "{line}"
    );
    assert!(dump(&slapd) == before, "ENOTDIR: nothing was written");

    // The next run, with the configured (writable) log, converges.
    drop(mount);
    assert_converges(
        &slapd,
        work.path(),
        &[],
        "var/audit.jsonl",
        &reference,
        "after the unwritable audit log",
    );
}

/// `pcsync run` (auto_apply) whose audit log cannot be opened (ENOTDIR, for root too): it
/// serves, every scheduled run fails naming the log and writes nothing to the directory; with a
/// writable log its next start converges.
#[test]
fn the_daemon_with_an_unwritable_audit_log_serves_and_writes_nothing() {
    daemon_serves_fails_its_runs_then_converges(
        ("PCSYNC__AUDIT__PATH", "not-a-dir/audit.jsonl"),
        "audit log not-a-dir/audit.jsonl: Not a directory",
    );
}

/// How the disk fills up under the running pcsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskFull {
    /// The audit log lives on a 1 MiB tmpfs, filled to the last byte (ENOSPC).
    Tmpfs,
    /// `prlimit --pid` lowers pcsync's RLIMIT_FSIZE to just past the log's size (EFBIG; the
    /// kernel also sends SIGXFSZ, which kills unless handled).
    FileSizeLimit,
}

/// The audit log's disk fills up in the middle of a swap, after the user was deleted: the next
/// record (`add_endpoint started`) cannot be written, so the add is not attempted. The log keeps
/// no torn record, the swap stays open with its before-image, and the next run (disk freed)
/// adds the endpoint. Both mechanisms run where a tmpfs can be mounted; elsewhere only the file
/// size limit.
#[test]
fn a_full_disk_under_the_audit_log_stops_the_run_before_the_next_write() {
    crate::common::needs_failpoints();
    let reference = reference();
    for mechanism in [DiskFull::Tmpfs, DiskFull::FileSizeLimit] {
        let slapd = Slapd::start();
        let work = tempfile::tempdir().unwrap();
        let disk = work.path().join("disk");
        let mount = match mechanism {
            DiskFull::Tmpfs => match Tmpfs::mount(&disk, "1m") {
                Some(m) => Some(m),
                None => continue,
            },
            DiskFull::FileSizeLimit => {
                // 0700, as pcsync asks of a directory only it uses (else it warns, a second line).
                fs::DirBuilder::new().mode(0o700).create(&disk).unwrap();
                None
            }
        };
        let log = disk.join("audit.jsonl");
        let log_env = log.display().to_string();
        let env = [("PCSYNC__AUDIT__PATH", log_env.as_str())];
        let gated = Gated::start(&slapd, work.path(), &env, "swap-user-retired");
        let size_before = fs::metadata(&log).unwrap().len();
        match &mount {
            Some(m) => m.fill("filler"),
            None => {
                let out = run(Command::new("prlimit")
                    .arg("--pid")
                    .arg(gated.pid().to_string())
                    .arg(format!("--fsize={}", size_before + 100)));
                assert!(out.success(), "prlimit: {}", out.both());
            }
        }
        let (code, out, err) = gated.release();
        let what = format!("{mechanism:?}");
        assert_eq!(
            code,
            Some(1),
            "{what}: a clean exit, not a signal\n{out}{err}"
        );
        let line = the_error_line(&err);
        eprintln!("{what}: {line}");
        let cause = match mechanism {
            DiskFull::Tmpfs => "No space left on device",
            DiskFull::FileSizeLimit => "File too large",
        };
        assert!(
            line.contains(&format!(
                "cannot write audit log {}: {cause}",
                log.display()
            )),
            "{what}: {line}"
        );
        assert!(
            line.contains("stopped before the directory write"),
            "{line}"
        );
        // No torn record: the log verifies (a cut-off line would fail it as torn).
        let records = audit::read(&log).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The gate is after the release (`disable_user`: the user gives up the URI on the same
        // object); the delete comes only after the endpoint is added and read back.
        let tail: Vec<_> = records
            .iter()
            .skip_while(|r| r.step != Some(Step::DisableUser) || r.outcome != Outcome::Ok)
            .map(|r| (r.event, r.outcome, r.step))
            .collect();
        eprintln!("{what}: records after the gate: {tail:?}");
        assert!(!tail.is_empty(), "{what}: the release is recorded");
        if mechanism == DiskFull::FileSizeLimit {
            // The limit leaves 100 bytes: the next record (`add_endpoint started`) does not
            // fit, so the add is never attempted and the log ends with the release; the user
            // is still there, released, never deleted before its endpoint is proven.
            assert_eq!(fs::metadata(&log).unwrap().len(), size_before, "{what}");
            assert_eq!(tail.len(), 1, "{what}: {tail:?}");
            assert!(
                !has_endpoint(&slapd, MIGRATIONS[0].0),
                "{what}: add not attempted"
            );
        }
        // A full tmpfs still lets the log fill the rest of its last page, so how many more
        // records fit varies; whichever did not, the directory matches the log (checked below).
        assert!(!user_holds_uri(&slapd, MIGRATIONS[0].1), "{what}: released");
        if mechanism == DiskFull::FileSizeLimit {
            assert!(present(&slapd, MIGRATIONS[0].1), "{what}: not deleted");
        }
        assert!(
            present(&slapd, MIGRATIONS[1].1),
            "{what}: second swap not started"
        );
        assert_nothing_lost(&slapd, &records, &what);

        if let Some(m) = &mount {
            fs::remove_file(m.path.join("filler")).unwrap();
        }
        let (code, out, err) = reconcile(&slapd, work.path(), &env, &["--apply"]);
        assert_eq!(code, Some(0), "{what}: the next run\n{out}{err}");
        let was_open = !audit::unfinished_swaps(&records).is_empty();
        assert_eq!(err.contains("recovered swap"), was_open, "{what}: {err}");
        let (code, out, err) = reconcile(&slapd, work.path(), &env, &[]);
        assert_eq!(code, Some(0), "{what}: in sync\n{out}{err}");
        assert!(
            dump(&slapd) == reference,
            "{what}: end state differs from a clean apply"
        );
        let records = audit::read(&log).unwrap();
        assert!(audit::unfinished_swaps(&records).is_empty(), "{what}");
        assert_nothing_lost(&slapd, &records, &what);
    }
}

// === 4. the state dir is unwritable ===

/// `state.dir` (run lock, syncrepl cookie, mapping cache, review cursors) cannot be written.
/// The one-shot apply refuses before connecting: exit 1, one line naming the lock file, nothing
/// written, not even to the audit log. ENOTDIR (its parent is a regular file) denies root too;
/// where this process may mount, a read-only tmpfs holding an existing lock file is tried as
/// well. The next run, with a writable state dir, converges.
#[test]
fn an_unwritable_state_dir_stops_the_apply_before_any_write() {
    let reference = reference();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    fs::write(work.path().join("not-a-dir"), "").unwrap();
    let ro = work.path().join("ro-state");
    let mount = Tmpfs::mount(&ro, "1m");
    let mut cases = vec![("not-a-dir/state", "Not a directory")];
    if let Some(m) = &mount {
        fs::write(ro.join("reconcile.lock"), "").unwrap();
        m.remount("ro");
        cases.push(("ro-state", "Read-only file system"));
    }
    for (dir, cause) in cases {
        let env = [("PCSYNC__STATE__DIR", dir)];
        let (code, out, err) = reconcile(&slapd, work.path(), &env, &["--apply"]);
        assert_eq!(code, Some(1), "{dir}: {out}{err}");
        let line = the_error_line(&err);
        eprintln!("{dir}: {line}");
        assert!(
            line.contains(&format!("cannot lock {dir}/reconcile.lock: {cause}")),
            "{dir}: {line}"
        );
        assert!(line.ends_with("nothing was written"), "{line}");
        assert!(dump(&slapd) == before, "{dir}: nothing was written");
        assert!(!work.path().join("var/audit.jsonl").exists(), "{dir}");
    }
    drop(mount);
    assert_converges(
        &slapd,
        work.path(),
        &[],
        "var/audit.jsonl",
        &reference,
        "after the unwritable state dir",
    );
}

/// `pcsync run` (auto_apply) with an unwritable state dir: it starts, serves the table it
/// builds from the directory, and its scheduled runs fail on the run lock, naming it, without
/// writing anything; restarted with a writable state dir, its first run converges.
#[test]
fn the_daemon_with_an_unwritable_state_dir_serves_and_writes_nothing() {
    daemon_serves_fails_its_runs_then_converges(
        ("PCSYNC__STATE__DIR", "not-a-dir/state"),
        "cannot lock not-a-dir/state/reconcile.lock",
    );
}

/// `pcsync run` (auto_apply) with `broken` (a path under a regular file, so ENOTDIR, for root
/// too) serves the table it builds from the directory; its scheduled runs fail with a message
/// holding `cause` and write nothing, not even to the audit log. Restarted without `broken`,
/// its start-up run applies, the next finds nothing to do, and nothing is lost.
fn daemon_serves_fails_its_runs_then_converges(broken: (&str, &str), cause: &str) {
    let reference = reference();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    fs::write(work.path().join("not-a-dir"), "").unwrap();
    let env = [("PCSYNC__SAFETY__AUTO_APPLY", "true"), broken];
    let mut d = Daemon::start(&slapd, work.path(), &env);
    d.wait_until("the table is served", Duration::from_secs(30), || {
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")) == Some(200)
    });
    d.wait_until(
        &format!("a scheduled run fails with {cause:?}"),
        Duration::from_secs(30),
        || {
            let h = d.health();
            h["last_run"]["outcome"] == "failed"
                && h["last_run"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(cause))
        },
    );
    eprintln!("daemon: {}", d.health()["last_run"]["message"]);
    assert!(dump(&slapd) == before, "nothing was written");
    assert!(!d.audit.exists(), "not even to the audit log");
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "{}", d.log_text());

    let d = Daemon::start(
        &slapd,
        work.path(),
        &[("PCSYNC__SAFETY__AUTO_APPLY", "true")],
    );
    // The start-up run applies; the cron's next run finds nothing left to do.
    d.wait_until("a run is in sync", Duration::from_secs(30), || {
        d.health()["last_run"]["outcome"] == "in_sync"
    });
    assert!(
        dump(&slapd) == reference,
        "end state differs from a clean apply"
    );
    let records = audit::read(&d.audit).unwrap();
    assert!(audit::unfinished_swaps(&records).is_empty());
    assert_nothing_lost(&slapd, &records, "daemon");
}

// === 5. the mapping cache is corrupt ===

/// Writes a corrupt cache (not JSON, not UTF-8) where the redirector looks for it.
fn corrupt_cache(state_dir: &Path) -> PathBuf {
    fs::create_dir_all(state_dir).unwrap();
    let path = state_dir.join("mappings.json");
    fs::write(&path, b"{\"format\": 1, \"entries\": [\xff\xfe truncated").unwrap();
    path
}

/// The log lines that mention `path`.
fn lines_naming(log: &str, path: &Path) -> Vec<String> {
    let shown = path.display().to_string();
    log.lines()
        .filter(|l| l.contains(&shown))
        .map(str::to_string)
        .collect()
}

/// `pcsync redirect` with a corrupt cache: one warning naming the file, an empty table, then
/// the directory's table once the first refresh publishes it, and a good cache written over
/// the corrupt one. (`sip::a_refresh_is_seen_by_the_next_request_and_the_cache_serves_without_the_directory`
/// covers a good cache with the directory down.)
#[test]
fn redirect_starts_empty_on_a_corrupt_cache_and_serves_once_refreshed() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let cache = corrupt_cache(&work.path().join("state"));
    let mut r = Redirector::spawn(&slapd, work.path(), &[]);
    r.wait_for(FIXTURE_USER, 200, Duration::from_secs(30));
    let log = r.log_text();
    let named = lines_naming(&log, &cache);
    assert_eq!(named.len(), 1, "one line names the cache:\n{log}");
    eprintln!("redirect: {}", named[0]);
    assert!(named[0].contains("WARN"), "{}", named[0]);
    assert!(
        named[0].contains("is not a readable mapping cache")
            && named[0].contains("starting with an empty table"),
        "{}",
        named[0]
    );
    let text = fs::read_to_string(&cache).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(!doc["entries"].as_array().unwrap().is_empty(), "{text}");
    assert_eq!(r.stop(), Some(0), "{log}");
}

/// `pcsync run` with a corrupt cache AND the directory down: it starts, says so once, answers
/// 404 from the empty table (and /healthz), does not crash; when slapd comes up it serves.
#[test]
fn the_daemon_starts_on_a_corrupt_cache_with_the_directory_down_and_serves_when_it_returns() {
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let cache = corrupt_cache(&work.path().join("state"));
    slapd.stop();
    let mut d = Daemon::start(&slapd, work.path(), &[]);
    let user = format!("sip:{FIXTURE_USER}@contoso.com");
    d.wait_until("the outage is seen", Duration::from_secs(30), || {
        d.health()["directory"]["state"] == "down"
    });
    assert_eq!(options_status(d.sip, &user), Some(404), "an empty table");
    let log = d.log_text();
    let named = lines_naming(&log, &cache);
    assert_eq!(named.len(), 1, "one line names the cache:\n{log}");
    eprintln!("run: {}", named[0]);
    let rec: serde_json::Value = serde_json::from_str(&named[0]).unwrap();
    assert_eq!(rec["level"], "WARN", "{}", named[0]);
    assert!(
        rec["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a readable mapping cache"),
        "{}",
        named[0]
    );

    slapd.start_again();
    d.wait_until(
        "served once the directory is back",
        Duration::from_secs(30),
        || options_status(d.sip, &user) == Some(200),
    );
    assert_eq!(lines_naming(&d.log_text(), &cache).len(), 1);
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "{}", d.log_text());
}

// === 2. slapd restarted during a syncrepl watch ===

/// `pcsync run` with syncprov on, a 60 s poll and an hourly cron (so only the syncrepl watch
/// can bring a change quickly): slapd restarts at once (no outage long enough to wait for).
/// The daemon survives (same process), counts the reconnect in /healthz and /metrics, and a
/// change made after the restart reaches the redirector. (`daemon::syncrepl_reconnects_after_a_slapd_restart`
/// covers a stop, a wait until the outage is seen, then a start.)
#[test]
fn the_syncrepl_watch_survives_a_slapd_restart_and_brings_the_next_change() {
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__DAEMON__POLL_INTERVAL", "60s"),
            ("PCSYNC__SCHEDULE__CRON", "0 0 * * * *"),
        ],
    );
    d.wait_until(
        "the syncrepl watch connects",
        Duration::from_secs(30),
        || {
            let h = d.health();
            h["watch"]["mode"] == "syncrepl" && h["watch"]["state"] == "connected"
        },
    );
    let pid = d.pid();
    slapd.restart();
    d.wait_until("the watch reconnects", Duration::from_secs(30), || {
        let h = d.health();
        h["watch"]["state"] == "connected" && h["watch"]["reconnects"].as_u64().unwrap_or(0) >= 1
    });
    let metrics = d.metrics();
    let reconnects = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pcsync_watch_reconnects_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(reconnects.is_some_and(|n| n >= 1.0), "{metrics}");
    let dn = format!("cn=after-restart,{}", slapd.endpoint_container());
    slapd.add(&format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: contact\ncn: after-restart\nsn: after-restart\n\
         msRTCSIP-PrimaryUserAddress: sip:afterrestart@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {}\n",
        slapd.pool_dn("1:2")
    ));
    let started = Instant::now();
    d.wait_until(
        "the change reaches the redirector",
        Duration::from_secs(10),
        || options_status(d.sip, "sip:afterrestart@contoso.com") == Some(200),
    );
    eprintln!("change after the restart served in {:?}", started.elapsed());
    assert_eq!(d.pid(), pid, "the same process");
    assert!(
        !log_tail(&d.log, 400).contains("panicked"),
        "{}",
        d.log_text()
    );
}
