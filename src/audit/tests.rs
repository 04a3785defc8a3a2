use crate::model::AttrValues;
use std::os::unix::fs::PermissionsExt;

use super::review::{self, Filter, Runs};
use super::*;

pub(super) fn dn(text: &str) -> Dn {
    Dn::parse(text).unwrap()
}

fn sip(text: &str) -> SipUri {
    SipUri::parse(text).unwrap()
}

fn clock() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn actor() -> Actor {
    Actor {
        bind_dn: Some("cn=admin,dc=contoso,dc=com".into()),
        host: "h1".into(),
    }
}

fn write_some(path: &Path, run: &str, n: usize) {
    let mut log = AuditLog::open(&LogFiles::unanchored(path), run, actor(), clock).unwrap();
    for i in 0..n {
        log.record(Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={i},dc=x"))))
            .unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[&str]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The error `verify` reports, as (line, reason text).
fn broken(path: &Path) -> (String, usize, String) {
    match verify(path) {
        Err(Error::Broken { path, line, why }) => (path, line, why.to_string()),
        other => panic!("expected a broken log, got {other:?}"),
    }
}

#[test]
fn records_chain_across_runs_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/audit.jsonl");
    write_some(&path, "r1", 3);
    write_some(&path, "r2", 2);
    let records = read(&path).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(records[0].prev, GENESIS);
    assert_eq!(records[3].run_id, "r2");
    assert_eq!(records[0].time, "2026-11-24T08:00:00.000Z");
    let first = lines(&path)[0].clone();
    assert!(
        first.starts_with(r#"{"v":1,"run_id":"r1","seq":1,"time":"#),
        "{first}"
    );
    assert_eq!(records[1].prev, hex(&Sha256::digest(first.as_bytes())));
    let summary = verify(&path).unwrap();
    assert_eq!(summary.records, 5);
    assert_eq!(summary.segments, 1);
    assert_eq!(summary.next_seq, 6);
    let last = lines(&path).pop().unwrap();
    assert_eq!(summary.head, hex(&Sha256::digest(last.as_bytes())));
    // Files 0600, new directories 0700.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("sub")), 0o700);
}

#[test]
fn an_empty_or_missing_log_verifies_with_the_genesis_head() {
    let dir = tempfile::tempdir().unwrap();
    let s = verify(&dir.path().join("audit.jsonl")).unwrap();
    assert_eq!((s.records, s.segments, s.head.as_str()), (0, 0, GENESIS));
}

#[test]
fn an_edited_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 4);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("cn=1,dc=x", "cn=9,dc=x", 1)).unwrap();
    let (_, line, why) = broken(&path);
    assert_eq!(line, 2, "{why}");
    assert!(why.contains("record edited"), "{why}");
    assert!(why.contains("(line 3)"), "{why}");
    // The writer refuses to chain onto it.
    assert!(matches!(
        AuditLog::open(&LogFiles::unanchored(&path), "r2", actor(), clock),
        Err(Error::Broken { line: 2, .. })
    ));
}

#[test]
fn a_deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 4);
    let l = lines(&path);
    write_lines(&path, &[&l[0], &l[2], &l[3]]);
    let (_, line, why) = broken(&path);
    assert_eq!(line, 2);
    assert!(
        why.contains("record(s) deleted: seq 3 where 2 was expected (1 missing)"),
        "{why}"
    );
    // The first record removed.
    write_lines(&path, &[&l[1], &l[2], &l[3]]);
    let (_, line, why) = broken(&path);
    assert_eq!(line, 1);
    assert!(why.contains("deleted"), "{why}");
}

#[test]
fn reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 4);
    let l = lines(&path);
    write_lines(&path, &[&l[0], &l[2], &l[1], &l[3]]);
    let (_, line, why) = broken(&path);
    assert_eq!(line, 2);
    assert!(why.contains("records reordered: seq 3 where 2"), "{why}");
}

#[test]
fn an_inserted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 3);
    let l = lines(&path);
    // A copy of record 2 inserted after it (seq repeats), and a forged record with a made-up
    // seq and the right `prev`.
    write_lines(&path, &[&l[0], &l[1], &l[1], &l[2]]);
    let (_, line, why) = broken(&path);
    assert_eq!(line, 3);
    assert!(why.contains("record inserted: seq 2 where 3"), "{why}");
    let mut forged: Record = serde_json::from_str(&l[1]).unwrap();
    forged.seq = 3;
    forged.prev = hex(&Sha256::digest(l[1].as_bytes()));
    forged.dn = Some(dn("cn=forged,dc=x"));
    let forged = serde_json::to_string(&forged).unwrap();
    write_lines(&path, &[&l[0], &l[1], &forged, &l[2]]);
    let (_, line, why) = broken(&path);
    assert_eq!(line, 4);
    assert!(why.contains("record inserted: seq 3 where 4"), "{why}");
}

#[test]
fn an_altered_seq_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 4);
    let l = lines(&path);
    for (seq, found) in [("\"seq\":2,", "\"seq\":20,"), ("\"seq\":3,", "\"seq\":1,")] {
        let i = if seq.contains('2') { 1 } else { 2 };
        let altered = l[i].replacen(seq, found, 1);
        let mut t: Vec<&str> = l.iter().map(String::as_str).collect();
        t[i] = &altered;
        write_lines(&path, &t);
        let (_, line, why) = broken(&path);
        assert_eq!(line, i + 1, "{why}");
        assert!(why.starts_with("seq altered: "), "{why}");
    }
}

#[test]
fn a_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 2);
    let l = lines(&path);
    for (bad, expect) in [
        ("not json", "not a valid record"),
        (&l[1].replacen("\"v\":1", "\"v\":7", 1), "format v 7"),
        (
            &l[1].replacen("\"run_id\"", "\"extra\":1,\"run_id\"", 1),
            "unknown field `extra`",
        ),
        (
            &l[1].replacen("\"event\":\"step\"", "\"event\":\"nap\"", 1),
            "unknown variant `nap`",
        ),
        (
            &l[1].replacen("2026-11-24T08:00:00.000Z", "yesterday", 1),
            "is not RFC 3339",
        ),
        ("", "not a valid record"),
    ] {
        write_lines(&path, &[&l[0], bad]);
        let (_, line, why) = broken(&path);
        assert_eq!(line, 2, "{bad}");
        assert!(why.contains(expect), "{bad}: {why}");
    }
}

#[test]
fn a_torn_last_record_is_reported_refused_and_only_repair_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 2);
    let intact = std::fs::read(&path).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"v\":1,\"run_").unwrap();
    drop(f);
    match verify(&path) {
        Err(e @ Error::Torn { line: 3, .. }) => {
            assert!(e.to_string().contains("--repair"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        AuditLog::open(&LogFiles::unanchored(&path), "r2", actor(), clock),
        Err(Error::Torn { .. })
    ));
    // Readers stop at it too; nothing was changed by reading.
    assert!(read(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap().len(), intact.len() + 12);

    let (corrupt, bytes) = repair_torn(&path).unwrap().unwrap();
    assert_eq!(bytes, 12);
    assert_eq!(corrupt, dir.path().join("audit.jsonl.corrupt"));
    assert_eq!(std::fs::read(&corrupt).unwrap(), b"{\"v\":1,\"run_\n");
    assert_eq!(std::fs::read(&path).unwrap(), intact);
    assert_eq!(verify(&path).unwrap().records, 2);
    assert!(
        repair_torn(&path).unwrap().is_none(),
        "nothing left to repair"
    );
    write_some(&path, "r2", 1);
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[test]
fn a_long_last_record_is_found_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&LogFiles::unanchored(&path), "r1", actor(), clock).unwrap();
    log.record(Note::new(Event::Error, Outcome::Failed).message("x".repeat(100_000)))
        .unwrap();
    drop(log);
    write_some(&path, "r2", 1);
    assert_eq!(read(&path).unwrap().len(), 2);
}

#[test]
fn rotation_seals_segments_that_chain_and_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    for run in ["r1", "r2", "r3"] {
        let mut log = AuditLog::open(
            &LogFiles::unanchored(&path).with_max_segment_size(1024),
            run,
            actor(),
            clock,
        )
        .unwrap();
        for i in 0..5 {
            log.record(Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={run}-{i},dc=x"))))
                .unwrap();
        }
    }
    let all = segments::all(&path).unwrap();
    assert!(all.len() >= 4, "{all:?}");
    assert_eq!(all[0], dir.path().join("audit.000001.jsonl"));
    assert_eq!(all[1], dir.path().join("audit.000002.jsonl"));
    assert_eq!(all.last().unwrap(), &path);
    for p in &all {
        assert!(std::fs::metadata(p).unwrap().len() <= 1024, "{p:?}");
        assert_eq!(
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let records = read(&path).unwrap();
    assert_eq!(records.len(), 15);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    // The first record of segment 2 chains to the last of segment 1.
    let last_of_first = lines(&all[0]).pop().unwrap();
    let first_of_second: Record = serde_json::from_str(&lines(&all[1])[0]).unwrap();
    assert_eq!(
        first_of_second.prev,
        hex(&Sha256::digest(last_of_first.as_bytes()))
    );
    assert_eq!(verify(&path).unwrap().segments, all.len());
    // A crash between sealing and creating the new active segment: appending continues.
    std::fs::rename(&path, segments::next_sealed(&path).unwrap()).unwrap();
    write_some(&path, "r4", 1);
    assert_eq!(verify(&path).unwrap().records, 16);
    assert_eq!(read(&path).unwrap().last().unwrap().seq, 16);
}

#[test]
fn a_rotation_while_reading_neither_hides_nor_repeats_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(
        &LogFiles::unanchored(&path).with_max_segment_size(1024),
        "r1",
        actor(),
        clock,
    )
    .unwrap();
    for i in 0..8 {
        log.record(Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={i},dc=x"))))
            .unwrap();
    }
    let before = segments::all(&path).unwrap().len();
    // A reader starts, then the writer seals the active segment and starts a new one.
    let reader = Reader::open(&path).unwrap();
    for i in 8..16 {
        log.record(Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={i},dc=x"))))
            .unwrap();
    }
    assert!(segments::all(&path).unwrap().len() > before);
    let seen: Vec<u64> = reader.map(|r| r.unwrap().record.seq).collect();
    // A consistent prefix: at least what was there when it started, nothing twice, no gap.
    assert!(seen.len() >= 8, "{seen:?}");
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(verify(&path).unwrap().records, 16);
}

#[test]
fn tampering_across_a_segment_boundary_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(
        &LogFiles::unanchored(&path).with_max_segment_size(1024),
        "r1",
        actor(),
        clock,
    )
    .unwrap();
    for i in 0..12 {
        log.record(Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={i},dc=x"))))
            .unwrap();
    }
    drop(log);
    let all = segments::all(&path).unwrap();
    assert!(all.len() >= 3);
    let first = std::fs::read_to_string(&all[0]).unwrap();
    let n = first.lines().count();

    // The last record of a sealed segment edited: named in that segment.
    let last = first.lines().last().unwrap();
    let edited = first.replacen(last, &last.replacen("dc=x", "dc=y", 1), 1);
    std::fs::write(&all[0], &edited).unwrap();
    let (p, line, why) = broken(&path);
    assert_eq!((p, line), (all[0].display().to_string(), n));
    assert!(
        why.contains(&format!("{} line 1", all[1].display())),
        "{why}"
    );
    std::fs::write(&all[0], &first).unwrap();

    // A whole sealed segment deleted.
    let second = std::fs::read(&all[1]).unwrap();
    std::fs::remove_file(&all[1]).unwrap();
    let (p, line, why) = broken(&path);
    assert_eq!((p, line), (all[2].display().to_string(), 1));
    assert!(why.contains("deleted"), "{why}");
    std::fs::write(&all[1], &second).unwrap();

    // A sealed segment that lost its final newline.
    std::fs::write(&all[0], first.trim_end()).unwrap();
    let (_, _, why) = broken(&path);
    assert!(why.contains("ends without a newline"), "{why}");
    std::fs::write(&all[0], &first).unwrap();
    assert_eq!(verify(&path).unwrap().records, 12);

    // The active segment no longer chains to the sealed ones: the writer refuses it.
    let active = std::fs::read_to_string(&path).unwrap();
    let sealed_last = all[all.len() - 2].clone();
    let sealed_text = std::fs::read_to_string(&sealed_last).unwrap();
    let l = sealed_text.lines().last().unwrap();
    std::fs::write(
        &sealed_last,
        sealed_text.replacen(l, &l.replacen("dc=x", "dc=z", 1), 1),
    )
    .unwrap();
    assert!(matches!(
        AuditLog::open(&LogFiles::unanchored(&path), "r2", actor(), clock),
        Err(Error::Broken {
            why: Break::Unchained,
            ..
        })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), active);
}

#[test]
fn unfinished_swaps_are_those_without_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&LogFiles::unanchored(&path), "r1", actor(), clock).unwrap();
    for swap in ["r1#1", "r1#2", "r1#3"] {
        log.record(Note::new(Event::SwapIntent, Outcome::Started).swap(swap))
            .unwrap();
    }
    log.record(Note::new(Event::SwapDone, Outcome::Ok).swap("r1#1"))
        .unwrap();
    log.record(Note::new(Event::Rollback, Outcome::Ok).swap("r1#3"))
        .unwrap();
    let mut image = Note::new(Event::BeforeImage, Outcome::Ok).swap("r1#2");
    image.before = Some(Entry {
        dn: dn("cn=u,dc=x"),
        attributes: vec![],
    });
    log.record(image).unwrap();
    let open = unfinished_swaps(&read(&path).unwrap());
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].swap, "r1#2");
    assert_eq!(open[0].before.as_ref().unwrap().dn, dn("cn=u,dc=x"));
    let streamed = open_swaps(&LogFiles::unanchored(&path)).unwrap();
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        salvage::run_records(&LogFiles::unanchored(&path), "r1")
            .unwrap()
            .records
            .len(),
        6
    );
    assert!(
        salvage::run_records(&LogFiles::unanchored(&path), "r9")
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn run_ids_sort_by_time() {
    let a = new_run_id(clock(), 0xffff_ffff);
    let b = new_run_id(clock() + chrono::Duration::milliseconds(1), 0);
    assert_eq!(a, "20261124T080000000Z-ffffffff");
    assert!(a < b);
}

// === review: filters, runs, diff, show ===

fn rec(seq: u64, run: &str, time: &str, event: Event, outcome: Outcome) -> Record {
    Record {
        v: 1,
        run_id: run.into(),
        seq,
        time: time.into(),
        event,
        outcome,
        actor: actor(),
        dn: None,
        sip_uri: None,
        swap: None,
        step: None,
        message: None,
        counts: None,
        plan: None,
        changes: None,
        before: None,
        after: None,
        prev: GENESIS.into(),
        mac: None,
    }
}

fn sample() -> Vec<Record> {
    let mut a = rec(
        1,
        "r1",
        "2026-11-20T10:00:00Z",
        Event::RunStart,
        Outcome::Started,
    );
    a.message = Some("reconcile --apply".into());
    let mut b = rec(2, "r1", "2026-11-20T10:00:01Z", Event::Step, Outcome::Ok);
    b.dn = Some(dn("CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com"));
    b.sip_uri = Some(sip("sip:ocschat@contoso.com"));
    b.step = Some(Step::DeleteUser);
    let mut c = rec(
        3,
        "r1",
        "2026-11-20T10:00:02Z",
        Event::Rollback,
        Outcome::Ok,
    );
    c.dn = b.dn.clone();
    let mut d = rec(
        4,
        "r1",
        "2026-11-20T10:00:03Z",
        Event::RunEnd,
        Outcome::Failed,
    );
    d.counts = Some(Counts {
        planned: 2,
        failed: 1,
        rolled_back: 1,
        ..Counts::default()
    });
    let e = rec(
        5,
        "r2",
        "2026-11-23T10:00:00Z",
        Event::RunStart,
        Outcome::Started,
    );
    let mut f = rec(
        6,
        "r2",
        "2026-11-23T10:00:01Z",
        Event::GuardBlocked,
        Outcome::Blocked,
    );
    f.sip_uri = Some(sip("sip:OCSChat@Fabrikam.com"));
    let g = rec(
        7,
        "r2",
        "2026-11-23T10:00:02Z",
        Event::RunEnd,
        Outcome::Blocked,
    );
    let h = rec(
        8,
        "r3",
        "2026-11-24T07:00:00Z",
        Event::RunStart,
        Outcome::Started,
    );
    vec![a, b, c, d, e, f, g, h]
}

fn seqs(filter: &Filter) -> Vec<u64> {
    sample()
        .iter()
        .filter(|r| filter.matches(r))
        .map(|r| r.seq)
        .collect()
}

#[test]
fn times_parse_as_rfc3339_or_an_age_before_now() {
    let now = clock();
    let t = |s| review::parse_time(s, now);
    assert_eq!(t("30m").unwrap(), now - chrono::Duration::minutes(30));
    assert_eq!(t("2h").unwrap(), now - chrono::Duration::hours(2));
    assert_eq!(t("7d").unwrap(), now - chrono::Duration::days(7));
    assert_eq!(
        t("2026-11-24T09:00:00+01:00").unwrap(),
        DateTime::parse_from_rfc3339("2026-11-24T08:00:00Z").unwrap()
    );
    assert!(t("7 parsecs").unwrap_err().contains("unknown unit"));
    assert!(t("yesterday").unwrap_err().contains("is not a time"));
    assert!(t("99999999999999d").unwrap_err().contains("too large"));
}

#[test]
fn each_filter_selects_and_filters_combine_with_and() {
    let now = clock();
    assert_eq!(seqs(&Filter::default()), [1, 2, 3, 4, 5, 6, 7, 8]);
    let since = Filter {
        since: Some(review::parse_time("12h", now).unwrap()),
        ..Filter::default()
    };
    assert_eq!(seqs(&since), [8]);
    let until = Filter {
        until: Some(review::parse_time("2026-11-20T10:00:01Z", now).unwrap()),
        ..Filter::default()
    };
    assert_eq!(seqs(&until), [1, 2]);
    let run = Filter {
        run: Some("r2".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&run), [5, 6, 7]);
    let events = Filter {
        events: vec![Event::RunStart, Event::RunEnd],
        ..Filter::default()
    };
    assert_eq!(seqs(&events), [1, 4, 5, 7, 8]);
    let dn = Filter {
        dn: Some(review::normalize_dn(
            "cn=ocschat, ou=service accounts,dc=CONTOSO,dc=com",
        )),
        ..Filter::default()
    };
    assert_eq!(seqs(&dn), [2, 3]);
    let sip = Filter {
        sip: Some(review::normalize_sip("ocschat@fabrikam.com")),
        ..Filter::default()
    };
    assert_eq!(seqs(&sip), [6]);
    let outcome = |o: &[&str]| Filter {
        outcomes: o.iter().map(|s| s.to_string()).collect(),
        ..Filter::default()
    };
    assert_eq!(seqs(&outcome(&["rolled-back"])), [3]);
    assert_eq!(seqs(&outcome(&["ok"])), [2]);
    assert_eq!(seqs(&outcome(&["blocked", "failed"])), [4, 6, 7]);
    let cursor = Filter {
        after_seq: Some(6),
        ..Filter::default()
    };
    assert_eq!(seqs(&cursor), [7, 8]);
    // AND: run r1 and outcome failed; run r1 and a time after it.
    let both = Filter {
        run: Some("r1".into()),
        outcomes: vec!["failed".into()],
        ..Filter::default()
    };
    assert_eq!(seqs(&both), [4]);
    let none = Filter {
        run: Some("r1".into()),
        since: Some(review::parse_time("12h", now).unwrap()),
        ..Filter::default()
    };
    assert!(seqs(&none).is_empty());
}

#[test]
fn runs_fold_into_one_row_each_with_counts_and_outcome() {
    let mut runs = Runs::default();
    let all = Filter::default();
    let mut rows: Vec<_> = sample()
        .iter()
        .filter_map(|r| runs.observe(r, &all))
        .collect();
    rows.extend(runs.finish());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].run_id, "r1");
    assert_eq!(rows[0].outcome, "rolled-back");
    assert_eq!(rows[0].counts.rolled_back, 1);
    assert_eq!(rows[0].command.as_deref(), Some("reconcile --apply"));
    assert_eq!(rows[0].finished.as_deref(), Some("2026-11-20T10:00:03Z"));
    assert_eq!(rows[1].outcome, "blocked");
    assert_eq!(rows[2].outcome, "incomplete");
    assert_eq!(rows[2].finished, None);
    // Run filters: outcome of the run; subject criteria match any record of the run.
    let sip = Filter {
        sip: Some(review::normalize_sip("sip:ocschat@fabrikam.com")),
        ..Filter::default()
    };
    let mut runs = Runs::default();
    let mut rows: Vec<_> = sample()
        .iter()
        .filter_map(|r| runs.observe(r, &sip))
        .collect();
    rows.extend(runs.finish());
    let matching: Vec<_> = rows.iter().filter(|r| r.matches(&sip)).collect();
    assert_eq!(matching.len(), 1);
    assert_eq!(matching[0].run_id, "r2");
}

#[test]
fn the_diff_shows_removed_and_added_values_and_binary_safely() {
    let before = Entry {
        dn: dn("cn=u"),
        attributes: vec![
            AttrValues::text("cn", &["u"]),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &["sip:ocschat@contoso.com"]),
            AttrValues {
                name: "objectSid".into(),
                values: vec![vec![1, 5, 0, 0xff]],
            },
        ],
    };
    let mut after = before.clone();
    after.attributes[1].values = vec![b"sip:new@contoso.com".to_vec()];
    let lines: Vec<String> = review::diff(Some(&before), Some(&after))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "- msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com",
            "+ msRTCSIP-PrimaryUserAddress: sip:new@contoso.com",
        ]
    );
    let deleted: Vec<String> = review::diff(Some(&before), None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(deleted.len(), 3);
    assert_eq!(deleted[2], "- objectSid:: AQUA/w==");
}

#[test]
fn show_gives_the_plan_steps_and_a_diff_per_object_with_rollback_and_recovery() {
    use crate::plan::{Change, CreateEndpoint, Header, RetireUser, Status};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let user = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";
    let endpoint = "CN={abc},CN=Application Contacts,DC=contoso,DC=com";
    let uri = "sip:ocschat@contoso.com";
    let image = Entry {
        dn: dn(user),
        attributes: vec![
            AttrValues::text("cn", &["OCSChat"]),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[uri]),
            AttrValues {
                name: "objectSid".into(),
                values: vec![vec![1, 5, 0, 0xff]],
            },
        ],
    };
    let header = |at: &str| Header {
        dn: dn(at),
        sip_uri: sip(uri),
        pool: "pcpool1.contoso.com".into(),
        status: Status::Ready,
        not_before: None,
        reason: "r".into(),
    };
    let mut log = AuditLog::open(&LogFiles::unanchored(&path), "r1", actor(), clock).unwrap();
    log.record(Note::new(Event::RunStart, Outcome::Started).message("reconcile --apply"))
        .unwrap();
    let mut intent = Note::new(Event::SwapIntent, Outcome::Started)
        .swap("r1#1")
        .dn(&dn(user))
        .sip_uri(&sip(uri));
    intent.changes = Some(vec![
        Change::RetireUser(RetireUser {
            header: header(user),
            retire: crate::plan::desired::Retire::Delete,
            expect: vec![],
            cleared: vec![],
        }),
        Change::CreateEndpoint(CreateEndpoint {
            header: header(endpoint),
            expect: vec![],
            entry: vec![AttrValues::text("msRTCSIP-PrimaryUserAddress", &[uri])],
        }),
    ]);
    log.record(intent).unwrap();
    let mut img = Note::new(Event::BeforeImage, Outcome::Ok)
        .swap("r1#1")
        .dn(&dn(user));
    img.before = Some(image.clone());
    log.record(img).unwrap();
    log.record(
        Note::new(Event::Step, Outcome::Ok)
            .swap("r1#1")
            .dn(&dn(user))
            .step(Step::DeleteUser),
    )
    .unwrap();
    log.set_run("r2");
    log.record(
        Note::new(Event::Step, Outcome::Ok)
            .swap("r1#1")
            .dn(&dn(endpoint))
            .step(Step::AddEndpoint),
    )
    .unwrap();
    log.record(
        Note::new(Event::Recovery, Outcome::Ok)
            .swap("r1#1")
            .dn(&dn(user))
            .message("completed the swap of run r1"),
    )
    .unwrap();
    drop(log);
    let records = salvage::run_records(&LogFiles::unanchored(&path), "r1")
        .unwrap()
        .records;
    let text = review::show(&records, "r1", &|t| t.to_string());
    for want in [
        "run r1",
        "command   reconcile --apply",
        "finished  never",
        "swap r1#1 sip:ocschat@contoso.com: ok",
        "recovery ok (run r2): completed the swap of run r1",
        &format!("{user}  (deleted)"),
        "    - msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com",
        "    - objectSid:: AQUA/w==",
        &format!("{endpoint}  (created)"),
        "    + msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn tables_elide_the_middle_and_csv_quotes() {
    assert_eq!(review::ellipsize_middle("abcdefghij", 5), "ab…ij");
    assert_eq!(review::ellipsize_middle("abc", 5), "abc");
    assert_eq!(review::csv_field("plain"), "plain");
    assert_eq!(review::csv_field("cn=a,dc=b"), "\"cn=a,dc=b\"");
    assert_eq!(review::csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
}

#[test]
fn review_cursors_round_trip_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Cursor::load(dir.path(), "weekly").unwrap(), None);
    let c = Cursor {
        seq: 42,
        hash: "ab".repeat(32),
    };
    c.save(dir.path(), "weekly").unwrap();
    assert_eq!(Cursor::load(dir.path(), "weekly").unwrap(), Some(c));
    let file = dir.path().join("audit-cursors/weekly.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
        assert!(
            matches!(Cursor::load(dir.path(), bad), Err(CursorError::Name(_))),
            "{bad}"
        );
    }
}

/// The names shown by `audit list`/`show` and the CSV export are the ones the log writes.
#[test]
fn event_outcome_and_step_names_are_the_serialised_ones() {
    use clap::ValueEnum;
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }
    for e in Event::value_variants() {
        assert_eq!(json(e), format!("\"{}\"", e.as_str()));
    }
    for o in [
        Outcome::Started,
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Blocked,
        Outcome::Skipped,
    ] {
        assert_eq!(json(&o), format!("\"{}\"", o.as_str()));
    }
    for s in [
        Step::DeleteUser,
        Step::DisableUser,
        Step::AddEndpoint,
        Step::RepointEndpoint,
        Step::Verify,
        Step::RestoreUser,
        Step::DeleteEndpoint,
        Step::ReleaseEndpoint,
        Step::ServeEndpoint,
    ] {
        assert_eq!(json(&s), format!("\"{}\"", s.as_str()));
    }
}

mod anchored;
mod proptests;
