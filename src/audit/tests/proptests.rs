//! Property: the hash chain detects any single-record mutation. A log is written with the real
//! writer (two runs, arbitrary messages), one record is mutated (a byte flipped, the record
//! deleted, swapped with the next, or duplicated), and `read` must fail naming the first line
//! that cannot be trusted.
//!
//! The one thing a chain cannot see is a change to the LAST record or its removal (nothing
//! after it carries its hash): those cases are left out here. The anchor kept in `state.dir`
//! closes that gap; tests/anchored.rs has the property for it.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte of the record's line with a non-zero mask.
    Flip {
        at: usize,
        mask: u8,
    },
    Delete,
    /// Swap with the next record.
    Swap,
    /// Insert a copy right after it.
    Duplicate,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => Just(Mutation::Delete),
        1 => Just(Mutation::Swap),
        1 => Just(Mutation::Duplicate),
    ]
}

/// The 1-based line the reader names as the first it cannot trust.
fn failure(r: Result<Vec<Record>, Error>) -> Option<usize> {
    match r {
        Err(Error::Broken { line, .. }) | Err(Error::Torn { line, .. }) => Some(line),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_single_record_mutation_is_detected_at_that_record(
        messages in proptest::collection::vec("\\PC{0,40}", 2..8),
        split in 0usize..8,
        target in any::<prop::sample::Index>(),
        m in mutation(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let split = split.min(messages.len());
        for (run, part) in [("r1", &messages[..split]), ("r2", &messages[split..])] {
            let mut log = AuditLog::open(&LogFiles::unanchored(&path), run, actor(), clock).unwrap();
            for (i, msg) in part.iter().enumerate() {
                log.record(Note::new(Event::Step, Outcome::Ok).dn(&super::dn(&format!("cn={i},dc=x"))).message(msg.clone()))
                    .unwrap();
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
        prop_assert!(failure(read(&path)).is_none());
        // Any record but the last (see the module docs); k is 0-based, lines are 1-based.
        let k = target.index(lines.len() - 1);
        let line = k + 1;
        let expected = match m {
            Mutation::Flip { at, mask } => {
                let at = at % lines[k].len();
                let flipped = lines[k][at] ^ mask;
                // A new line break would make two records out of one: another mutation.
                prop_assume!(flipped != b'\n');
                lines[k][at] = flipped;
                match serde_json::from_slice::<Record>(&lines[k]) {
                    Err(_) => (line, true),
                    Ok(rec) => {
                        let original: Record = serde_json::from_str(text.lines().nth(k).unwrap()).unwrap();
                        if rec.prev != original.prev {
                            (line, false)
                        } else {
                            // Readable and chained to its predecessor: the next record's
                            // `prev` no longer matches.
                            (line + 1, false)
                        }
                    }
                }
            }
            Mutation::Delete => {
                lines.remove(k);
                (line, false)
            }
            Mutation::Swap => {
                lines.swap(k, k + 1);
                (line, false)
            }
            Mutation::Duplicate => {
                let copy = lines[k].clone();
                lines.insert(k + 1, copy);
                (line + 1, false)
            }
        };
        let mut bytes = lines.join(&b'\n');
        bytes.push(b'\n');
        std::fs::write(&path, &bytes).unwrap();
        // The reader names the mutated record or its neighbour, depending on what it can tell
        // (an edited record is found through the next record's `prev`; a reordering through
        // `seq`): never a line far from the mutation, and never nothing.
        let (expected_line, _) = expected;
        let found = failure(read(&path));
        prop_assert!(found.is_some(), "{:?} on record {} went undetected", m, line);
        let found = found.unwrap_or_default();
        prop_assert!(
            found.abs_diff(expected_line) <= 1,
            "{:?} on record {}: reported line {}, expected about {}", m, line, found, expected_line
        );
    }
}
