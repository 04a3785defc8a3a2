use super::*;

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
    let mut log = AuditLog::open(path, run, actor(), clock).unwrap();
    for i in 0..n {
        log.record(Note::new(Event::Step, Outcome::Ok).dn(&format!("cn={i},dc=x")))
            .unwrap();
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
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(r#"{"v":1,"run_id":"r1","seq":1,"time":"#),
        "{first}"
    );
    assert_eq!(records[1].prev, hex(&Sha256::digest(first.as_bytes())));
}

#[test]
fn edits_deletions_and_reordering_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 4);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let edited = text.replacen("cn=1,dc=x", "cn=9,dc=x", 1);
    std::fs::write(&path, edited).unwrap();
    assert!(matches!(read(&path), Err(Error::Chain { line: 3, .. })));

    let deleted = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
    std::fs::write(&path, deleted).unwrap();
    assert!(matches!(read(&path), Err(Error::Chain { line: 2, .. })));

    let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
    std::fs::write(&path, swapped).unwrap();
    assert!(matches!(read(&path), Err(Error::Chain { .. })));
}

#[test]
fn a_torn_last_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_some(&path, "r1", 1);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"v\":1,\"run_").unwrap();
    assert!(matches!(read(&path), Err(Error::Torn { .. })));
    assert!(matches!(
        AuditLog::open(&path, "r2", actor(), clock),
        Err(Error::Torn { .. })
    ));
}

#[test]
fn a_long_last_record_is_found_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, "r1", actor(), clock).unwrap();
    log.record(Note::new(Event::Error, Outcome::Failed).message("x".repeat(100_000)))
        .unwrap();
    drop(log);
    write_some(&path, "r2", 1);
    assert_eq!(read(&path).unwrap().len(), 2);
}

#[test]
fn unfinished_swaps_are_those_without_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, "r1", actor(), clock).unwrap();
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
        dn: "cn=u,dc=x".into(),
        attributes: vec![],
    });
    log.record(image).unwrap();
    let open = unfinished_swaps(&read(&path).unwrap());
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].swap, "r1#2");
    assert_eq!(open[0].before.as_ref().unwrap().dn, "cn=u,dc=x");
}

#[test]
fn run_ids_sort_by_time() {
    let a = new_run_id(clock(), 0xffff_ffff);
    let b = new_run_id(clock() + chrono::Duration::milliseconds(1), 0);
    assert_eq!(a, "20261124T080000000Z-ffffffff");
    assert!(a < b);
}

mod proptests;
