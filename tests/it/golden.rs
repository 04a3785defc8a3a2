//! Golden tests: captured directory states replayed through the planner, compared with the plan
//! recorded for each (tests/fixtures/golden/README.md says how to add a case).
//!
//! Each case directory holds `pcsync.toml` (the configuration), `directory.ldif` (the directory
//! as `ldapsearch -LLL` printed it) and `plan.json` (the expected plan, as `--plan-out` writes
//! it).
//! The state runs through the same scan, duplicate confirmation, full re-read and planner as a
//! live `pcsync reconcile --format json`, with no server and a fixed time ([`NOW`], or the
//! case's `now` file). `PCSYNC_BLESS=1` writes `plan.json` instead of comparing.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use pcsync::model::{AttrValues, Dn, Entry};

use crate::common::repo;

/// The time every case is planned at, unless its directory has a `now` file (RFC 3339).
const NOW: &str = "2026-11-24T08:00:00Z";

#[test]
fn every_captured_state_plans_as_recorded() {
    let bless = std::env::var("PCSYNC_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 6,
        "expected the seeded cases in tests/fixtures/golden, found {cases:?}"
    );
    let mut failed = Vec::new();
    for case in &cases {
        let got = plan_of(case);
        let expected_path = case.join("plan.json");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with PCSYNC_BLESS=1 to record it",
                expected_path.display()
            )
        });
        if got != expected {
            failed.push(format!(
                "{} (left: recorded, right: planned now)\n{}",
                case.display(),
                pretty_assertions::StrComparison::new(&expected, &got)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} golden case(s) plan differently; if the change is intended, rerun with \
         PCSYNC_BLESS=1 and review the diff of plan.json:\n\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n\n")
    );
}

/// The case directories, in name order.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo("tests/fixtures/golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

/// The plan document for one case, as `--plan-out` writes it.
fn plan_of(case: &Path) -> String {
    let read = |name: &str| {
        let path = case.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let settings = pcsync::config::from_toml_str(
        &read("pcsync.toml"),
        &case.join("pcsync.toml").display().to_string(),
        Some(Default::default()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = match std::fs::read_to_string(case.join("now")) {
        Ok(text) => text,
        Err(_) => NOW.to_string(),
    };
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(now.trim())
        .unwrap_or_else(|e| panic!("{}: now: {e}", case.display()))
        .with_timezone(&Utc);
    let entries = ldif_entries(&read("directory.ldif"))
        .unwrap_or_else(|e| panic!("{}: {e}", case.join("directory.ldif").display()));
    pcsync::reconcile::replay(&settings, entries, now)
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()))
}

/// The entries of `ldapsearch -LLL` output: records separated by blank lines, `#` comments,
/// lines folded with a leading space, `name: value` and `name:: base64`.
fn ldif_entries(text: &str) -> Result<Vec<Entry>, String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(rest), Some(last)) if !last.is_empty() => last.push_str(rest),
            _ => lines.push(line.to_string()),
        }
    }
    let mut entries = Vec::new();
    for record in lines
        .split(|l| l.is_empty())
        .map(|r| r.iter().filter(|l| !l.starts_with('#')).collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
    {
        let mut dn = None;
        let mut attributes: Vec<AttrValues> = Vec::new();
        for line in record {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("not `name: value`: {line:?}"))?;
            let value = match value.strip_prefix(':') {
                Some(b64) => BASE64
                    .decode(b64.trim())
                    .map_err(|e| format!("{name}: bad base64: {e}"))?,
                None => value.strip_prefix(' ').unwrap_or(value).as_bytes().to_vec(),
            };
            if name.eq_ignore_ascii_case("dn") {
                let text = String::from_utf8(value).map_err(|e| format!("dn: {e}"))?;
                dn = Some(Dn::parse(&text).map_err(|e| format!("dn {text:?}: {e}"))?);
                continue;
            }
            match attributes.iter_mut().find(|a| a.name.is(name)) {
                Some(a) => a.values.push(value),
                None => attributes.push(AttrValues {
                    name: name.into(),
                    values: vec![value],
                }),
            }
        }
        let dn = dn.ok_or("a record without `dn:`")?;
        entries.push(Entry { dn, attributes });
    }
    Ok(entries)
}

#[test]
fn the_ldif_reader_unfolds_decodes_and_skips_comments() {
    let text = "# search result\ndn: CN=OCSChat,OU=Service Accounts,DC=cont\n oso,DC=com\ncn: OCSChat\nobjectSid:: AQUA/w==\nobjectClass: top\nobjectClass: user\n\n# numEntries: 1\n";
    let entries = ldif_entries(text).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].dn,
        Dn::parse("CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com").unwrap()
    );
    assert_eq!(entries[0].get("objectSid"), [vec![1, 5, 0, 0xff]]);
    assert_eq!(entries[0].get("objectclass").len(), 2);
    assert!(ldif_entries("dn: not a dn\n").is_err());
    assert!(ldif_entries("cn: x\n").is_err());
}
