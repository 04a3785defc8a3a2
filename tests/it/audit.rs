//! `pcsync audit` against real logs: written by `reconcile --apply` on a real slapd (rotation
//! across segments, list filters, show's diff, the LDIF export restored with ldapadd) and
//! tampered with on disk (verify names the break, exits 1; --repair moves only a torn line).

use std::path::Path;

use pcsync::audit::{Actor, AuditLog, AuditSink, LogFiles, Note};

use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_bare};
use crate::reconcile::{dump, endpoints, exists};

const OCSCHAT_CONTOSO: &str = "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com";

/// Runs `pcsync audit ARGS` (configured for `slapd`, as an operator would) and returns
/// (exit code, stdout, stderr).
fn audit(slapd: &Slapd, work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = pcsync(slapd, work).arg("audit").args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

/// `pcsync audit --log FILE ARGS` with no configuration at all (an auditor's copy).
fn audit_log(work: &Path, log: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = pcsync_bare(work)
        .arg("audit")
        .arg("--log")
        .arg(log)
        .args(args)
        .assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

fn apply(slapd: &Slapd, work: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = pcsync(slapd, work);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let assert = cmd.args(["reconcile", "--apply"]).assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(0), "{out}{err}");
    out.lines()
        .find(|l| l.starts_with("applied "))
        .and_then(|l| l.split("(run ").nth(1))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string()
}

#[test]
fn a_reconcile_run_is_listed_shown_verified_and_its_ldif_export_restores_with_ldapadd() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let before = dump(&slapd);
    let endpoints_before = endpoints(&slapd);
    // A tiny segment size, so the run's records rotate across several segments.
    let env = [("PCSYNC__AUDIT__MAX_SEGMENT_SIZE", "4KiB")];
    let run_id = apply(&slapd, work.path(), &env);
    // A second run (in sync) adds its records after the first.
    let second = apply(&slapd, work.path(), &env);
    let sealed: Vec<_> = std::fs::read_dir(work.path().join("var"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.0"))
        .collect();
    assert!(sealed.len() >= 2, "rotation: {sealed:?}");

    let (code, out, err) = audit(&slapd, work.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("OK: "), "{out}");
    assert!(
        out.contains(&format!("in {} segment(s), head ", sealed.len() + 1)),
        "{out}"
    );

    // --runs: one row per run, both runs, oldest first.
    let (code, out, err) = audit(&slapd, work.path(), &["list", "--runs", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let runs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{out}");
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["outcome"], "ok");
    assert_eq!(runs[0]["counts"]["applied"], 2);
    assert_eq!(runs[1]["run_id"], second.as_str());

    // Filters, combined with AND; JSON Lines are the records exactly as logged.
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &[
            "list",
            "--run",
            &run_id,
            "--event",
            "before_image",
            "--format",
            "json",
        ],
    );
    let images: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(images.len(), 2, "{out}");
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &[
            "list",
            "--sip",
            "OCSChat@Contoso.com",
            "--event",
            "before_image",
            "--format",
            "csv",
        ],
    );
    assert_eq!(out.lines().count(), 2, "header + one row: {out}");
    assert!(
        out.contains("\"cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com\""),
        "{out}"
    );
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &[
            "list",
            "--dn",
            "CN=ocschat, OU=Service Accounts,DC=contoso,DC=com",
        ],
    );
    assert!(out.lines().count() > 3, "{out}");
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &[
            "list",
            "--since",
            "1h",
            "--until",
            "2999-01-01T00:00:00Z",
            "--outcome",
            "failed",
        ],
    );
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &["list", "--until", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    // The table fits 100 columns and has no colour when piped.
    let (_, out, _) = audit(&slapd, work.path(), &["list"]);
    assert!(out.lines().count() > 20);
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "{line}");
        assert!(!line.contains('\x1b'), "{line}");
    }
    let (_, out, _) = audit(&slapd, work.path(), &["list", "--runs", "--utc"]);
    assert!(out.starts_with("RUN "), "{out}");
    assert!(out.contains("STARTED (UTC)"), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");

    // show: the plan, the steps, a diff per object.
    let (code, out, err) = audit(&slapd, work.path(), &["show", &run_id, "--utc"]);
    assert_eq!(code, Some(0), "{err}");
    for want in [
        format!("run {run_id}"),
        "retire_user".to_string(),
        format!("{OCSCHAT_CONTOSO}  (deleted)"),
        "    - msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com".to_string(),
        "    - sAMAccountName: OCSChat".to_string(),
        "(created)".to_string(),
        "    + msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com".to_string(),
        "step add_endpoint ok".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} in\n{out}");
    }
    let (code, _, err) = audit(
        &slapd,
        work.path(),
        &["show", "20000101T000000000Z-00000000"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("is not in the audit log"), "{err}");

    // The LDIF export restores the deleted users with plain ldapadd, attribute for attribute.
    let (code, ldif, err) = audit(&slapd, work.path(), &["export", "--format", "ldif"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(ldif.starts_with("version: 1\n"), "{ldif}");
    assert!(ldif.lines().all(|l| l.len() <= 76), "{ldif}");
    assert!(!exists(&slapd, OCSCHAT_CONTOSO));
    // Undo what the run changed (the endpoints it created), then ldapadd the export.
    for dn in endpoints(&slapd).keys() {
        if !endpoints_before.contains_key(dn) {
            slapd.delete(dn.trim_start_matches("dn: "));
        }
    }
    slapd.add(&ldif);
    assert_eq!(
        dump(&slapd),
        before,
        "export + ldapadd restores the directory"
    );

    // CSV and JSON exports.
    let (code, csv, _) = audit(
        &slapd,
        work.path(),
        &["export", "--format", "csv", "--run", &run_id],
    );
    assert_eq!(code, Some(0));
    assert!(csv.starts_with("seq,time,run_id,event,outcome,"), "{csv}");
    let (_, json, _) = audit(
        &slapd,
        work.path(),
        &["export", "--format", "json", "--run", &run_id],
    );
    assert_eq!(json.lines().count() + 1, csv.lines().count());
}

#[test]
fn review_cursors_show_only_what_is_new_since_the_last_review() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let first = apply(&slapd, work.path(), &[]);
    let rows = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (code, out, err) = audit(
        &slapd,
        work.path(),
        &["list", "--since-last", "weekly", "--format", "json"],
    );
    assert_eq!(code, Some(0), "{err}");
    let seen = rows(&out);
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r["run_id"] == first.as_str()));
    assert!(
        work.path()
            .join("var/state/audit-cursors/weekly.json")
            .exists()
    );
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &["list", "--since-last", "weekly", "--format", "json"],
    );
    assert!(out.is_empty(), "nothing new: {out}");
    let second = apply(&slapd, work.path(), &[]);
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &["list", "--since-last", "weekly", "--format", "json"],
    );
    let new = rows(&out);
    assert!(!new.is_empty());
    assert!(new.iter().all(|r| r["run_id"] == second.as_str()), "{out}");
    // Another reviewer has their own cursor.
    let (_, out, _) = audit(
        &slapd,
        work.path(),
        &[
            "list",
            "--since-last",
            "auditor",
            "--runs",
            "--format",
            "json",
        ],
    );
    assert_eq!(rows(&out).len(), 2);
    let (code, _, err) = audit(&slapd, work.path(), &["list", "--since-last", "../escape"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("review cursor name"), "{err}");
}

/// Appends `records` step records about contoso users to the log at `log` through pcsync's
/// own writer, as run `run` (a log with a valid chain and no configuration, like an
/// auditor's copy).
fn write_records(log: &Path, run: &str, records: u64) {
    let actor = Actor {
        bind_dn: Some("cn=admin,dc=contoso,dc=com".into()),
        host: "it".into(),
    };
    let mut writer =
        AuditLog::open(&LogFiles::unanchored(log), run, actor, chrono::Utc::now).unwrap();
    for i in 0..records {
        let note: Note = serde_json::from_value(serde_json::json!({
            "event": "step", "outcome": "ok", "step": "delete_user",
            "dn": format!("cn=wk{i},ou=Service Accounts,dc=contoso,dc=com"),
        }))
        .unwrap();
        writer.record(note).unwrap();
    }
}

fn generated(work: &Path, records: u64) -> std::path::PathBuf {
    let log = work.join("log/audit.jsonl");
    write_records(&log, "20260101T000000000Z-00000001", records);
    log
}

#[test]
fn verify_names_each_kind_of_tampering_and_exits_1() {
    let work = tempfile::tempdir().unwrap();
    let log = generated(work.path(), 40);
    let (code, out, _) = audit_log(work.path(), &log, &["verify"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("OK: 40 record(s) in 1 segment(s), head "),
        "{out}"
    );
    let intact = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = intact.lines().collect();
    // An anchored head from an earlier verify: still in the chain after the log grew, and
    // missing once the tail is cut off (which the chain alone cannot show).
    let head = out
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let (code, _, err) = audit_log(work.path(), &log, &["verify", "--expect-head", &head]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(&log, lines[..30].join("\n") + "\n").unwrap();
    assert_eq!(
        audit_log(work.path(), &log, &["verify"]).0,
        Some(0),
        "a cut tail alone verifies"
    );
    let (code, out, err) = audit_log(work.path(), &log, &["verify", "--expect-head", &head]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("is not in the chain"), "{err}");
    let write = |lines: &[&str]| std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            {
                let mut l = lines.clone();
                l[9] = "";
                l
            },
            "line 10:",
            "not a valid record",
        ),
        (
            [&lines[..5], &lines[6..]].concat(),
            "line 6:",
            "record(s) deleted: seq 7 where 6 was expected",
        ),
        (
            {
                let mut l = lines.clone();
                l.swap(10, 11);
                l
            },
            "line 11:",
            "records reordered",
        ),
        (
            {
                let mut l = lines.clone();
                l.insert(20, lines[19]);
                l
            },
            "line 21:",
            "record inserted: seq 20 where 21 was expected",
        ),
    ];
    for (tampered, at, why) in cases {
        write(&tampered);
        let (code, out, err) = audit_log(work.path(), &log, &["verify"]);
        assert_eq!(code, Some(1), "{why}: {out}{err}");
        assert!(err.contains("FAILS verification"), "{err}");
        assert!(err.contains(at) && err.contains(why), "{at} {why}: {err}");
    }
    // An edited value: the record whose hash no longer matches is named.
    let edited_line = lines[14].replacen("contoso", "c0nt0so", 1);
    let mut l = lines.clone();
    l[14] = &edited_line;
    write(&l);
    let (code, _, err) = audit_log(work.path(), &log, &["verify", "--format", "json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 15: record edited"), "{err}");
    // list stops at the break too.
    let (code, _, err) = audit_log(work.path(), &log, &["list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("pcsync audit verify"), "{err}");
    std::fs::write(&log, &intact).unwrap();
    assert_eq!(audit_log(work.path(), &log, &["verify"]).0, Some(0));
    // The log grows; the anchored head is still in the chain.
    write_records(&log, "20260101T000000000Z-00000002", 5);
    let (code, out, err) = audit_log(work.path(), &log, &["verify", "--expect-head", &head]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("OK: 45 record(s)"), "{out}");
}

#[test]
fn a_torn_last_line_is_reported_and_only_repair_moves_it_to_a_corrupt_file() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    apply(&slapd, work.path(), &[]);
    let log = work.path().join("var/audit.jsonl");
    let intact = std::fs::read(&log).unwrap();
    let mut torn = intact.clone();
    torn.extend_from_slice(b"{\"v\":1,\"run_id\":\"2026");
    std::fs::write(&log, &torn).unwrap();

    let (code, _, err) = audit(&slapd, work.path(), &["verify"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("torn last record"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), torn, "verify changes nothing");
    // reconcile refuses to append to it.
    let assert = pcsync(&slapd, work.path())
        .args(["reconcile", "--apply"])
        .assert();
    assert.code(1);

    let (code, out, err) = audit(&slapd, work.path(), &["verify", "--repair"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("moved the torn last line (21 bytes)"), "{err}");
    assert!(out.starts_with("OK: "), "{out}");
    assert_eq!(std::fs::read(&log).unwrap(), intact);
    assert_eq!(
        std::fs::read(work.path().join("var/audit.jsonl.corrupt")).unwrap(),
        b"{\"v\":1,\"run_id\":\"2026\n"
    );
    // A broken chain is not "repaired".
    let text = String::from_utf8(intact).unwrap();
    std::fs::write(&log, text.replacen("OCSChat", "0CSChat", 1)).unwrap();
    let (code, _, err) = audit(&slapd, work.path(), &["verify", "--repair"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs investigation"), "{err}");
}

#[test]
fn audit_help_documents_the_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_bare(work.path())
        .args(["audit", "verify", "--help"])
        .assert();
    let (out, _) = output(&assert);
    assert.code(0);
    assert!(out.contains("1  the log fails verification"), "{out}");
}

/// `pcsync restore --run RUN --apply` with `env`; asserts it restored everything.
fn restore(slapd: &Slapd, work: &Path, run: &str, env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = pcsync(slapd, work);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let assert = cmd.args(["restore", "--run", run, "--apply"]).assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(0), "{out}{err}");
    assert!(out.contains("restored 4 of 4"), "{out}{err}");
    (out, err)
}

/// Every file of the log and its anchor under `work/var`, to put back after tampering.
fn snapshot(work: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let var = work.join("var");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&var)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.")
        })
        .collect();
    files.push(var.join("state/audit-anchor.json"));
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn put_back(work: &Path, saved: &[(std::path::PathBuf, Vec<u8>)]) {
    for entry in std::fs::read_dir(work.join("var")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("audit.")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (p, bytes) in saved {
        std::fs::write(p, bytes).unwrap();
    }
}

/// The lines of the active segment, to cut or rewrite.
fn active_lines(work: &Path) -> Vec<String> {
    std::fs::read_to_string(work.join("var/audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_active(work: &Path, lines: &[String]) {
    std::fs::write(work.join("var/audit.jsonl"), lines.join("\n") + "\n").unwrap();
}

// See: #16 (the loss of the audit log went unnoticed).
#[test]
fn a_deleted_cut_or_rewritten_audit_log_is_refused_before_any_directory_write() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    // Small segments, so the log has sealed segments and an active one.
    let env = [("PCSYNC__AUDIT__MAX_SEGMENT_SIZE", "4KiB")];
    let original = dump(&slapd);
    let run = apply(&slapd, work.path(), &env);
    // The users come back: their swaps are pending again, and the log holds two runs.
    restore(&slapd, work.path(), &run, &env);
    assert_eq!(dump(&slapd), original);
    let saved = snapshot(work.path());
    assert!(
        saved.len() >= 4,
        "sealed segments, the active one, the anchor"
    );

    type Tamper = fn(&Path);
    let cases: [(&str, Tamper, &str); 4] = [
        (
            "the log deleted",
            |w| {
                for entry in std::fs::read_dir(w.join("var")).unwrap() {
                    let p = entry.unwrap().path();
                    if p.extension().is_some_and(|e| e == "jsonl") {
                        std::fs::remove_file(p).unwrap();
                    }
                }
            },
            "the log is gone",
        ),
        (
            "its active segment deleted",
            |w| std::fs::remove_file(w.join("var/audit.jsonl")).unwrap(),
            "the active segment is gone",
        ),
        (
            "its last records cut",
            |w| {
                let lines = active_lines(w);
                write_active(w, &lines[..lines.len() - 2]);
            },
            "its last records were cut",
        ),
        (
            "its tail rewritten",
            |w| {
                let mut lines = active_lines(w);
                let last = lines.pop().unwrap();
                assert!(last.contains("\"outcome\":\"ok\""), "{last}");
                lines.push(last.replacen("\"outcome\":\"ok\"", "\"outcome\":\"failed\"", 1));
                write_active(w, &lines);
            },
            "tail was rewritten",
        ),
    ];
    for (what, tamper, reason) in cases {
        put_back(work.path(), &saved);
        tamper(work.path());
        let mut cmd = pcsync(&slapd, work.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let assert = cmd.args(["reconcile", "--apply"]).assert();
        let (out, err) = output(&assert);
        assert_eq!(
            assert.get_output().status.code(),
            Some(1),
            "{what}: {out}{err}"
        );
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.starts_with("pcsync: error: audit log ")
                && err.contains("var/audit.jsonl")
                && err.contains("audit-anchor.json")
                && err.contains(reason),
            "{what}: {err}"
        );
        assert_eq!(dump(&slapd), original, "{what}: nothing written");
        let (code, out, err) = audit(&slapd, work.path(), &["verify"]);
        assert_eq!(code, Some(1), "{what}: verify: {out}{err}");
        assert!(
            err.contains("FAILS verification") && err.contains(reason),
            "{what}: {err}"
        );
    }

    // Put back, the log is trusted again and the run applies.
    put_back(work.path(), &saved);
    let (code, out, err) = audit(&slapd, work.path(), &["verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("anchor: the log ends at its anchored head"),
        "{out}"
    );
    // A deliberate change (an older copy put back), reviewed, is accepted with --reanchor.
    let lines = active_lines(work.path());
    write_active(work.path(), &lines[..lines.len() - 1]);
    assert_eq!(audit(&slapd, work.path(), &["verify"]).0, Some(1));
    let (code, out, err) = audit(&slapd, work.path(), &["verify", "--reanchor"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("re-anchored") && err.contains("it said seq"),
        "{err}"
    );
    apply(&slapd, work.path(), &env);
    assert_ne!(dump(&slapd), original, "the swaps were applied");
}

/// Rewrites record `index` (0-based) of the active segment with `edit` and re-hashes the chain
/// after it, as someone without the key would; returns the new lines.
fn rehash(lines: &[String], index: usize, edit: impl Fn(&str) -> String) -> Vec<String> {
    let mut out: Vec<String> = lines.to_vec();
    out[index] = edit(&out[index]);
    for i in index + 1..out.len() {
        let mut r: pcsync::audit::Record = serde_json::from_str(&out[i]).unwrap();
        r.prev = sha256_hex(out[i - 1].as_bytes());
        out[i] = serde_json::to_string(&r).unwrap();
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// See: #16 (an optional keyed chain).
#[test]
fn a_keyed_chain_detects_a_log_rehashed_without_the_key() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("audit.key");
    std::fs::write(
        &key,
        "# pcsync audit key\nq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key_env = key.display().to_string();
    let env = [("PCSYNC__AUDIT__KEY_FILE", key_env.as_str())];
    apply(&slapd, work.path(), &env);
    let keyed = |args: &[&str]| {
        let mut cmd = pcsync(&slapd, work.path());
        cmd.env("PCSYNC__AUDIT__KEY_FILE", &key);
        let assert = cmd.arg("audit").args(args).assert();
        let (out, err) = output(&assert);
        (assert.get_output().status.code(), out, err)
    };
    let (code, out, err) = keyed(&["verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("record(s) carry a MAC; all verify with the key"),
        "{out}"
    );

    // Someone who can write the log and the anchor, but not read the key, removes the swap's
    // before-image from the record and re-hashes everything after it, anchor included.
    let lines = active_lines(work.path());
    let image = lines
        .iter()
        .position(|l| l.contains("\"event\":\"before_image\""))
        .unwrap();
    let forged = rehash(&lines, image, |l| l.replacen("OCSChat", "0CSChat", 1));
    write_active(work.path(), &forged);
    let anchor_path = work.path().join("var/state/audit-anchor.json");
    let mut anchor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&anchor_path).unwrap()).unwrap();
    anchor["head"] = sha256_hex(forged.last().unwrap().as_bytes()).into();
    std::fs::write(&anchor_path, anchor.to_string()).unwrap();

    // The plain chain is intact: without the key, a copy verifies (and says what it could not check).
    let copy = work.path().join("copy/audit.jsonl");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(work.path().join("var/audit.jsonl"), &copy).unwrap();
    let (code, out, err) = audit_log(work.path(), &copy, &["verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("carry a MAC, not checked"), "{out}");
    // With the key it does not, on the copy and on the configured log.
    let (code, _, err) = audit_log(
        work.path(),
        &copy,
        &["verify", "--key-file", key.to_str().unwrap()],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("line {}", image + 2)) && err.contains("re-hashed without the key"),
        "{err}"
    );
    let (code, _, err) = keyed(&["verify"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("re-hashed without the key"), "{err}");
    // And no run appends to it: the anchor's MAC no longer matches its head.
    let mut cmd = pcsync(&slapd, work.path());
    cmd.env("PCSYNC__AUDIT__KEY_FILE", &key);
    let assert = cmd.args(["reconcile", "--apply"]).assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(1), "{out}{err}");
    assert!(err.contains("the anchor's `mac` does not match"), "{err}");
}

// See: #16 (one corrupt record blocked every restore).
#[test]
fn restore_of_an_intact_run_steps_over_a_corrupt_record_elsewhere_and_names_it() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let original = dump(&slapd);
    let run = apply(&slapd, work.path(), &[]);
    let later = apply(&slapd, work.path(), &[]);
    // The later run's plan record is damaged (a disk error, a careless edit).
    let mut lines = active_lines(work.path());
    let plan = lines
        .iter()
        .rposition(|l| l.contains(&later) && l.contains("\"event\":\"plan\""))
        .unwrap();
    lines[plan] = lines[plan][..40].to_string();
    write_active(work.path(), &lines);
    assert_eq!(audit(&slapd, work.path(), &["verify"]).0, Some(1));

    let (_, err) = restore(&slapd, work.path(), &run, &[]);
    assert!(
        err.contains(&format!("damaged outside run {run}"))
            && err.contains(&format!("audit.jsonl line {}", plan + 1))
            && err.contains("not a valid record"),
        "{err}"
    );
    assert_eq!(dump(&slapd), original, "the run was undone");
    // The damaged run itself cannot be read safely.
    let assert = pcsync(&slapd, work.path())
        .args(["restore", "--run", &later])
        .assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("run {later} cannot be read safely")),
        "{err}"
    );
    // audit show works the same way.
    let (code, out, err) = audit(&slapd, work.path(), &["show", &run]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("run {run}")), "{out}");
    assert!(err.contains("damaged outside run"), "{err}");
}

// See: #16 (password hashes in the audit log).
#[test]
fn a_rootdn_bound_run_writes_and_shows_no_password_hash() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let hash = "{SSHA}bm90LWEtcmVhbC1wYXNzd29yZC1oYXNo";
    slapd.modify(&format!(
        "dn: {OCSCHAT_CONTOSO}\nchangetype: modify\nadd: userPassword\nuserPassword: {hash}\n"
    ));
    // config/openldap.toml binds as the rootdn, which reads userPassword.
    let entry = slapd.search(OCSCHAT_CONTOSO, "(objectClass=*)", &["userPassword"]);
    assert!(entry.contains("userPassword:"), "{entry}");
    let run = apply(&slapd, work.path(), &[]);

    let no_secret = |what: &str, text: &str| {
        assert!(
            !text.to_ascii_lowercase().contains("userpassword") && !text.contains(&hash[6..]),
            "{what}: {text}"
        );
    };
    let log = std::fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    assert!(log.contains("before_image"), "{log}");
    no_secret("the log file", &log);
    for args in [
        &["show", &run][..],
        &["show", &run, "--format", "json"],
        &["export", "--format", "ldif"],
        &["list", "--format", "json"],
    ] {
        let (code, out, err) = audit(&slapd, work.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        no_secret(&format!("{args:?}"), &out);
    }

    // A log an earlier version wrote, with the hash in a before-image: not shown either.
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    let image = lines
        .iter()
        .position(|l| l.contains("\"event\":\"before_image\"") && l.contains("OCSChat"))
        .unwrap();
    let old = rehash(&lines, image, |l| {
        let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
        r["before"]["attributes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "userPassword", "values": [hash]}));
        r.to_string()
    });
    let copy = work.path().join("old/audit.jsonl");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, old.join("\n") + "\n").unwrap();
    let (code, _, err) = audit_log(work.path(), &copy, &["verify"]);
    assert_eq!(code, Some(0), "the old log is intact: {err}");
    assert!(std::fs::read_to_string(&copy).unwrap().contains(hash));
    for args in [
        &["show", &run][..],
        &["export", "--format", "ldif"],
        &["list", "--format", "json"],
        &["export", "--format", "json"],
    ] {
        let (code, out, err) = audit_log(work.path(), &copy, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        no_secret(&format!("old log {args:?}"), &out);
        assert!(
            out.contains("OCSChat"),
            "{args:?}: the rest is shown: {out}"
        );
    }

    // Restore brings the user back without a password (documented): none was kept.
    restore(&slapd, work.path(), &run, &[]);
    let entry = slapd.search(OCSCHAT_CONTOSO, "(objectClass=*)", &["*"]);
    assert!(entry.contains("sAMAccountName: OCSChat"), "{entry}");
    assert!(!entry.contains("userPassword"), "{entry}");
}

// See: #19 (a CRLF copy of the audit log).
#[test]
fn a_copy_with_windows_line_endings_is_named_as_such() {
    let work = tempfile::tempdir().unwrap();
    let log = generated(work.path(), 10);
    let crlf = work.path().join("crlf/audit.jsonl");
    std::fs::create_dir_all(crlf.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&crlf, text.replace('\n', "\r\n")).unwrap();
    let (code, out, err) = audit_log(work.path(), &crlf, &["verify"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("line 1:")
            && err.contains("Windows (CRLF) line endings")
            && err.contains("sed -i 's/\\r$//'"),
        "{err}"
    );
    // Converted back as the message says, it verifies.
    let status = std::process::Command::new("sed")
        .args(["-i", "s/\\r$//"])
        .arg(&crlf)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(audit_log(work.path(), &crlf, &["verify"]).0, Some(0));
    // A log broken at line 1 for another reason gets no such hint.
    let mut lines: Vec<&str> = text.lines().collect();
    let edited = lines[0].replacen("wk0", "wk9", 1);
    lines[0] = &edited;
    std::fs::write(&crlf, lines.join("\n") + "\n").unwrap();
    let (code, _, err) = audit_log(work.path(), &crlf, &["verify"]);
    assert_eq!(code, Some(1));
    assert!(!err.contains("CRLF"), "{err}");
}
