//! `pcsync audit` against real logs: written by `reconcile --apply` on a real slapd (rotation
//! across segments, list filters, show's diff, the LDIF export restored with ldapadd) and
//! tampered with on disk (verify names the break, exits 1; --repair moves only a torn line).

use std::path::Path;

use pcsync::audit::{Actor, AuditLog, AuditSink, Note};

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
        .last()
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
    let mut writer = AuditLog::open(log, run, actor, chrono::Utc::now).unwrap();
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
    let head = out.trim().rsplit(' ').next().unwrap().to_string();
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
