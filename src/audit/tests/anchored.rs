//! The anchor, the keyed chain, redaction at the sink and reading one run past damage.

use proptest::prelude::*;

use super::*;
use crate::audit::anchor::{Anchor, Standing};
use crate::audit::files::ANCHOR_FILE;
use crate::audit::key::Keyring;

/// An anchored log in a temp dir: `dir/audit.jsonl`, anchored in `dir/state`.
fn anchored(dir: &Path) -> LogFiles {
    LogFiles::anchored(&dir.join("audit.jsonl"), &dir.join("state"))
}

fn append(files: &LogFiles, run: &str, notes: Vec<Note>) {
    let mut log = AuditLog::open(files, run, actor(), clock).unwrap();
    for n in notes {
        log.record(n).unwrap();
    }
}

fn steps(n: usize) -> Vec<Note> {
    (0..n)
        .map(|i| Note::new(Event::Step, Outcome::Ok).dn(&dn(&format!("cn={i},dc=x"))))
        .collect()
}

fn anchor_of(dir: &Path) -> Anchor {
    Anchor::load(&dir.join("state").join(ANCHOR_FILE))
        .unwrap()
        .unwrap()
}

/// The reason an anchored open refuses the log, with the log left as it was.
fn refused(files: &LogFiles) -> AnchorBreak {
    let before = segments::all(files.path())
        .unwrap()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect::<Vec<_>>();
    let why = match AuditLog::open(files, "r9", actor(), clock) {
        Err(Error::Anchor { why, .. }) => why,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("the log was accepted"),
    };
    assert!(
        matches!(open_swaps(files), Err(Error::Anchor { .. })),
        "the recovery look refuses it too"
    );
    let after = segments::all(files.path())
        .unwrap()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(before, after, "nothing was appended");
    why
}

#[test]
fn the_anchor_follows_every_record_and_holds_the_open_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path());
    let mut image = Note::new(Event::BeforeImage, Outcome::Ok).swap("r1#1");
    image.before = Some(Entry {
        dn: dn("cn=u,dc=x"),
        attributes: vec![],
    });
    append(
        &files,
        "r1",
        vec![
            Note::new(Event::SwapIntent, Outcome::Started).swap("r1#1"),
            image,
            Note::new(Event::SwapIntent, Outcome::Started).swap("r1#2"),
            Note::new(Event::SwapDone, Outcome::Ok).swap("r1#2"),
        ],
    );
    let anchor = anchor_of(dir.path());
    let summary = verify(files.path()).unwrap();
    assert_eq!(anchor.seq, 4);
    assert_eq!(anchor.head, summary.head);
    assert_eq!(anchor.log, dir.path().join("audit.jsonl"));
    let mode = std::fs::metadata(dir.path().join("state").join(ANCHOR_FILE))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // The index is what a full read finds, without the full read.
    let indexed = open_swaps(&files).unwrap();
    let scanned = unfinished_swaps(&read(files.path()).unwrap());
    assert_eq!(indexed.len(), 1);
    assert_eq!(indexed[0].swap, "r1#1");
    assert_eq!(indexed[0].before.as_ref().unwrap().dn, dn("cn=u,dc=x"));
    assert_eq!(scanned.len(), 1);
    assert_eq!(
        anchor::standing(&files).unwrap(),
        Standing::Anchored { seq: 4 }
    );
    // Reopened, it continues from the anchored head.
    append(&files, "r2", steps(2));
    assert_eq!(verify(files.path()).unwrap().records, 6);
    assert_eq!(anchor_of(dir.path()).seq, 6);
}

#[test]
fn a_deleted_cut_rewritten_or_extended_log_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path()).with_max_segment_size(1024);
    append(&files, "r1", steps(12));
    let all = segments::all(files.path()).unwrap();
    assert!(all.len() >= 3, "{all:?}");
    let keep: Vec<(std::path::PathBuf, Vec<u8>)> = all
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let put_back = || {
        for (p, b) in &keep {
            std::fs::write(p, b).unwrap();
        }
    };
    let active = files.path().to_path_buf();

    // The active segment deleted.
    std::fs::remove_file(&active).unwrap();
    assert!(matches!(
        refused(&files),
        AnchorBreak::ActiveMissing { anchored: 12, .. }
    ));
    // The whole log deleted.
    for p in &all {
        let _ = std::fs::remove_file(p);
    }
    assert_eq!(refused(&files), AnchorBreak::LogMissing { anchored: 12 });
    put_back();
    // The last record cut: the chain alone cannot see it.
    let text = std::fs::read_to_string(&active).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&active, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    assert!(verify(&active).is_ok(), "a cut tail verifies as a chain");
    assert_eq!(
        refused(&files),
        AnchorBreak::Truncated {
            last: 11,
            anchored: 12
        }
    );
    // The last record rewritten (its message), chain intact.
    let last = lines
        .last()
        .unwrap()
        .replacen("\"step\"", "\"step\",\"message\":\"x\"", 1);
    let mut edited = lines.clone();
    *edited.last_mut().unwrap() = &last;
    std::fs::write(&active, edited.join("\n") + "\n").unwrap();
    assert_eq!(refused(&files), AnchorBreak::Rewritten { anchored: 12 });
    put_back();
    // Records appended by something else (an older pcsync, unanchored).
    append(&LogFiles::unanchored(&active), "old", steps(2));
    assert_eq!(
        refused(&files),
        AnchorBreak::Extended {
            last: 14,
            anchored: 12
        }
    );
    put_back();
    // The anchor of another log.
    let elsewhere = LogFiles::anchored(&dir.path().join("other.jsonl"), &dir.path().join("state"));
    assert!(matches!(refused(&elsewhere), AnchorBreak::OtherLog(_)));
    // Put back, it is accepted again.
    append(&files, "r2", steps(1));
}

#[test]
fn one_record_past_the_anchor_is_a_crash_between_them_and_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path());
    append(&files, "r1", steps(2));
    let anchor_file = dir.path().join("state").join(ANCHOR_FILE);
    let before = std::fs::read(&anchor_file).unwrap();
    append(
        &files,
        "r2",
        vec![Note::new(Event::SwapIntent, Outcome::Started).swap("r2#1")],
    );
    // The record is durable but its anchor never was.
    std::fs::write(&anchor_file, &before).unwrap();
    assert_eq!(
        anchor::standing(&files).unwrap(),
        Standing::OneAhead { seq: 2 }
    );
    let open = open_swaps(&files).unwrap();
    assert_eq!(open.len(), 1, "the unanchored intent is in the index");
    append(&files, "r3", steps(1));
    assert_eq!(anchor_of(dir.path()).seq, 4);
    // Two records past it is not a crash window.
    std::fs::write(&anchor_file, &before).unwrap();
    assert!(matches!(
        refused(&files),
        AnchorBreak::Extended { last: 4, .. }
    ));
}

#[test]
fn a_log_without_an_anchor_is_verified_once_and_adopted_and_reanchor_accepts_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path());
    // Written by an earlier version: no anchor.
    append(&LogFiles::unanchored(files.path()), "old", steps(3));
    assert_eq!(anchor::standing(&files).unwrap(), Standing::NoAnchor);
    append(&files, "r1", steps(1));
    assert_eq!(anchor_of(dir.path()).seq, 4);
    // A deliberate change (an old backup put back), reviewed, then accepted.
    let text = std::fs::read_to_string(files.path()).unwrap();
    let three: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(files.path(), three.join("\n") + "\n").unwrap();
    assert!(matches!(refused(&files), AnchorBreak::Truncated { .. }));
    let done = anchor::reanchor(&files).unwrap();
    assert_eq!(done.previous.unwrap().seq, 4);
    assert_eq!(done.now.seq, 3);
    append(&files, "r2", steps(1));
    // A broken chain is never re-anchored.
    let text = std::fs::read_to_string(files.path()).unwrap();
    std::fs::write(files.path(), text.replacen("cn=1,dc=x", "cn=7,dc=x", 1)).unwrap();
    assert!(matches!(
        anchor::reanchor(&files),
        Err(Error::Broken { .. })
    ));
}

#[test]
fn a_keyed_chain_cannot_be_rehashed_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = || Keyring::from_bytes(&[9; 32]);
    let files = anchored(dir.path()).with_keys(key());
    append(&files, "r1", steps(4));
    let text = std::fs::read_to_string(files.path()).unwrap();
    assert!(text.lines().all(|l| l.contains("\"mac\":\"")), "{text}");
    let keyed = |path: &Path| {
        Reader::open(path)
            .unwrap()
            .with_keys(Arc::new(key()))
            .summary()
    };
    assert_eq!(keyed(files.path()).unwrap().macs, 4);

    // Rewrite record 2 and re-hash the chain after it, as someone without the key would.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen("cn=1,dc=x", "cn=7,dc=x", 1);
    for i in 2..lines.len() {
        let mut r: Record = serde_json::from_str(&lines[i]).unwrap();
        r.prev = hex(&Sha256::digest(lines[i - 1].as_bytes()));
        lines[i] = serde_json::to_string(&r).unwrap();
    }
    std::fs::write(files.path(), lines.join("\n") + "\n").unwrap();
    assert!(verify(files.path()).is_ok(), "the plain chain is fooled");
    match keyed(files.path()) {
        Err(Error::Broken { line: 3, why, .. }) => {
            assert!(
                why.to_string().contains("re-hashed without the key"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The anchor re-pointed at the new head without the key: its MAC gives it away.
    let anchor_file = dir.path().join("state").join(ANCHOR_FILE);
    let mut anchor = anchor_of(dir.path());
    anchor.head = hex(&Sha256::digest(lines.last().unwrap().as_bytes()));
    anchor.save(&anchor_file).unwrap();
    assert!(matches!(refused(&files), AnchorBreak::Mac(_)));
    // With the key set, a log with no anchor is not adopted unreviewed, even intact.
    std::fs::write(files.path(), &text).unwrap();
    std::fs::remove_file(&anchor_file).unwrap();
    assert_eq!(refused(&files), AnchorBreak::Unanchored);
}

#[test]
fn secrets_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path());
    let mut image = Note::new(Event::BeforeImage, Outcome::Ok).swap("r1#1");
    image.before = Some(Entry {
        dn: dn("cn=u,dc=x"),
        attributes: vec![
            AttrValues::text("cn", &["u"]),
            AttrValues::text("userPassword", &["{SSHA}c2VjcmV0"]),
            AttrValues::text("unicodePwd", &["x"]),
        ],
    });
    let mut rollback = Note::new(Event::Rollback, Outcome::Ok).swap("r1#1");
    rollback.after = image.before.clone();
    append(&files, "r1", vec![image, rollback]);
    let text = std::fs::read_to_string(files.path()).unwrap();
    assert!(!text.to_ascii_lowercase().contains("password"), "{text}");
    assert!(!text.contains("unicodePwd"), "{text}");
    assert!(text.contains("\"cn\""), "{text}");
}

#[test]
fn a_run_is_read_past_damage_elsewhere_but_not_past_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let files = anchored(dir.path());
    append(&files, "r1", steps(3));
    append(&files, "r2", steps(3));
    append(&files, "r3", steps(3));
    let text = std::fs::read_to_string(files.path()).unwrap();
    // A record of r2 (line 5) corrupted.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[4] = "{\"v\":1,garbage".to_string();
    let damaged = lines.join("\n") + "\n";
    std::fs::write(files.path(), &damaged).unwrap();
    assert!(verify(files.path()).is_err());
    for run in ["r1", "r3"] {
        let got = salvage::run_records(&files, run).unwrap();
        assert_eq!(got.records.len(), 3, "{run}");
        assert!(got.records.iter().all(|r| r.run_id == run));
        assert!(
            got.stepped_over
                .iter()
                .any(|d| d.at.line == 5 && d.why.contains("not a valid record")),
            "{:?}",
            got.stepped_over
        );
    }
    match salvage::run_records(&files, "r2") {
        Err(e @ Error::Damaged { line: 4 | 5, .. }) => {
            assert!(e.to_string().contains("run r2"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // An edited record (valid JSON) is found through the next record's `prev`.
    let edited = text.replacen(
        "\"run_id\":\"r3\",\"seq\":8",
        "\"run_id\":\"r3\",\"seq\":8,\"message\":\"x\"",
        1,
    );
    assert_ne!(edited, text);
    std::fs::write(files.path(), &edited).unwrap();
    assert_eq!(salvage::run_records(&files, "r1").unwrap().records.len(), 3);
    assert!(matches!(
        salvage::run_records(&files, "r3"),
        Err(Error::Damaged { line: 8, .. })
    ));
    // The run's last record is vouched for by the anchor: a rewritten tail is damage to r3.
    std::fs::write(files.path(), &text).unwrap();
    let mut anchor = anchor_of(dir.path());
    anchor.head = GENESIS.to_string();
    anchor
        .save(&dir.path().join("state").join(ANCHOR_FILE))
        .unwrap();
    assert!(matches!(
        salvage::run_records(&files, "r3"),
        Err(Error::Damaged { line: 9, .. })
    ));
}

#[derive(Debug, Clone)]
enum Loss {
    /// XOR one byte of the last record with a non-zero mask.
    Flip { at: usize, mask: u8 },
    /// Cut this many records (at least one) off the end.
    Cut(usize),
    /// Delete every segment.
    Delete,
}

fn loss() -> impl Strategy<Value = Loss> {
    prop_oneof![
        3 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Loss::Flip { at, mask }),
        2 => (1usize..6).prop_map(Loss::Cut),
        1 => Just(Loss::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// What a chain alone cannot see (the end of the log changed or gone), the anchor does:
    /// an anchored open refuses it and appends nothing.
    #[test]
    fn any_change_to_the_end_of_an_anchored_log_is_refused(
        records in 1usize..8,
        l in loss(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files = anchored(dir.path());
        append(&files, "r1", steps(records));
        let text = std::fs::read_to_string(files.path()).unwrap();
        let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
        match l {
            Loss::Flip { at, mask } => {
                let last = lines.last_mut().unwrap();
                let at = at % last.len();
                prop_assume!(last[at] ^ mask != b'\n');
                last[at] ^= mask;
            }
            Loss::Cut(n) => lines.truncate(lines.len().saturating_sub(n)),
            Loss::Delete => lines.clear(),
        }
        if lines.is_empty() {
            std::fs::remove_file(files.path()).unwrap();
        } else {
            let mut bytes = lines.join(&b'\n');
            bytes.push(b'\n');
            std::fs::write(files.path(), &bytes).unwrap();
        }
        let before = std::fs::read(files.path()).ok();
        let opened = AuditLog::open(&files, "r2", actor(), clock);
        prop_assert!(opened.is_err(), "{:?} went unnoticed", l);
        prop_assert_eq!(std::fs::read(files.path()).ok(), before);
    }
}
