//! Rendering a [`Plan`]: a text table, the JSON document, LDIF change records for `ldapmodify`,
//! and the equivalent Lync Server Management Shell commands. All pure string building.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::desired::Retire;
use super::{Change, Plan, Status};
use crate::model::{AttrValues, Finding, FindingKind, attr};

/// How many findings of each kind the text rendering lists (`--findings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FindingsShown {
    /// The first N of each kind, in plan order.
    First(usize),
    /// Every finding.
    All,
}

impl std::str::FromStr for FindingsShown {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(FindingsShown::All);
        }
        text.parse()
            .map(FindingsShown::First)
            .map_err(|_| format!("{text:?} is neither a number of findings per kind nor `all`"))
    }
}

/// The human-readable table, findings (a count per kind, then the first few of each kind) and
/// a summary line.
pub(crate) fn text(plan: &Plan, shown: FindingsShown) -> String {
    let mut out = String::new();
    if !plan.changes.is_empty() {
        let _ = writeln!(
            out,
            "{:<17} {:<8} {:<32} {:<24} {:<60} REASON",
            "ACTION", "STATUS", "SIP URI", "POOL", "DN"
        );
    }
    for c in &plan.changes {
        let h = c.header();
        let status = match h.status {
            Status::Ready => "ready",
            Status::WaitingForCutover => "waiting",
        };
        let mut reason = match c {
            Change::RetireUser(r) if r.retire == Retire::Disable => {
                format!("disable (clear msRTCSIP-*): {}", h.reason)
            }
            Change::RetireUser(_) => format!("delete: {}", h.reason),
            _ => h.reason.clone(),
        };
        if let Some(t) = h.not_before {
            let _ = write!(reason, "; waiting for cutover at {}", t.to_rfc3339());
        }
        let _ = writeln!(
            out,
            "{:<17} {:<8} {:<32} {:<24} {:<60} {}",
            c.action().as_str(),
            status,
            h.sip_uri.as_str(),
            h.pool,
            h.dn.as_str(),
            reason
        );
    }
    findings(&mut out, plan, shown);
    let _ = writeln!(out, "{}", summary_line(plan));
    out
}

/// `findings: 30000 suspect, 2 duplicate_uri`, then up to `shown` lines of each kind, each kind
/// followed by how many it left out.
fn findings(out: &mut String, plan: &Plan, shown: FindingsShown) {
    let mut by_kind: BTreeMap<FindingKind, Vec<&Finding>> = BTreeMap::new();
    for f in &plan.findings {
        by_kind.entry(f.kind).or_default().push(f);
    }
    if by_kind.is_empty() {
        return;
    }
    let counts: Vec<String> = by_kind
        .iter()
        .map(|(kind, fs)| format!("{} {kind}", fs.len()))
        .collect();
    let _ = writeln!(out, "findings: {}", counts.join(", "));
    for (kind, fs) in &by_kind {
        let limit = match shown {
            FindingsShown::All => fs.len(),
            FindingsShown::First(n) => n.min(fs.len()),
        };
        for f in &fs[..limit] {
            let dn = if f.dn.is_empty() { "-" } else { f.dn.as_str() };
            let _ = writeln!(out, "finding {}: {}: {}", f.kind, dn, f.reason);
        }
        if limit < fs.len() {
            let _ = writeln!(
                out,
                "finding {kind}: {} more not shown (--findings all lists every one; --format json has them all)",
                fs.len() - limit
            );
        }
    }
}

/// `2 change(s) ready, 1 waiting for cutover; 1 swap(s) blocked; 3 finding(s)`, or "in sync".
pub(crate) fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut line = if s.ready == 0 && s.waiting == 0 {
        "in sync: no changes".to_string()
    } else {
        format!(
            "{} change(s) ready, {} waiting for cutover",
            s.ready, s.waiting
        )
    };
    let _ = write!(
        line,
        "; {} swap(s) blocked; {} finding(s)",
        s.blocked, s.findings
    );
    line
}

/// The plan document (schemas/plan.schema.json), one line.
#[cfg(test)]
pub(crate) fn json(plan: &Plan) -> String {
    serde_json::to_string(plan).unwrap_or_default()
}

/// LDIF change records (RFC 2849) for the ready changes, in apply order. The conditional parts
/// of a write (what the plan saw) become `delete:` of the old values where LDIF can express
/// them, so a stale LDIF fails instead of overwriting.
pub(crate) fn ldif(plan: &Plan) -> String {
    let mut out = String::from("version: 1\n");
    for c in plan.ready() {
        let h = c.header();
        let _ = writeln!(
            out,
            "\n# {} {} ({})",
            c.action().as_str(),
            h.sip_uri,
            h.pool
        );
        line(&mut out, "dn", h.dn.as_str().as_bytes());
        match c {
            Change::RetireUser(r) if r.retire == Retire::Disable => {
                out.push_str("changetype: modify\n");
                for a in &r.cleared {
                    mod_op(&mut out, "delete", a);
                }
            }
            Change::RetireUser(_) => out.push_str("changetype: delete\n"),
            Change::CreateEndpoint(c) => {
                out.push_str("changetype: add\n");
                for a in &c.entry {
                    for v in &a.values {
                        line(&mut out, a.name.as_str(), v);
                    }
                }
            }
            Change::RepointEndpoint(c) => {
                out.push_str("changetype: modify\n");
                for new in &c.new_values {
                    let old = c
                        .expect
                        .iter()
                        .find(|e| e.name == new.name)
                        .filter(|e| !e.values.is_empty());
                    match old {
                        Some(old) => {
                            mod_op(&mut out, "delete", old);
                            mod_op(&mut out, "add", new);
                        }
                        None => mod_op(&mut out, "add", new),
                    }
                }
            }
        }
    }
    out
}

fn mod_op(out: &mut String, op: &str, a: &AttrValues) {
    let _ = writeln!(out, "{op}: {}", a.name);
    for v in &a.values {
        line(out, a.name.as_str(), v);
    }
    out.push_str("-\n");
}

/// `name: value`, or `name:: base64` when the value is not a safe LDIF string.
fn line(out: &mut String, name: &str, value: &[u8]) {
    let safe = !value.is_empty()
        && !matches!(value[0], b' ' | b':' | b'<')
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|b| *b != 0 && *b != b'\n' && *b != b'\r' && *b < 0x80);
    if safe {
        let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value));
    } else if value.is_empty() {
        let _ = writeln!(out, "{name}:");
    } else {
        let _ = writeln!(out, "{name}:: {}", BASE64.encode(value));
    }
}

/// Lync Server Management Shell commands for the ready changes, for administrators who prefer
/// to run them themselves.
pub(crate) fn powershell(plan: &Plan) -> String {
    let mut out = String::from(
        "# pcsync plan as Lync Server Management Shell commands; run in order.\n\
         # Requires the ActiveDirectory module for Remove-ADUser.\n",
    );
    let _ = writeln!(out, "# plan fingerprint {}", plan.fingerprint);
    for c in plan.ready() {
        let h = c.header();
        let _ = writeln!(
            out,
            "\n# {} {} ({})",
            c.action().as_str(),
            h.sip_uri,
            h.pool
        );
        match c {
            Change::RetireUser(r) if r.retire == Retire::Disable => {
                let _ = writeln!(
                    out,
                    "Disable-CsUser -Identity {} -Confirm:$false",
                    ps(h.dn.as_str())
                );
            }
            Change::RetireUser(_) => {
                let _ = writeln!(
                    out,
                    "Remove-ADUser -Identity {} -Confirm:$false",
                    ps(h.dn.as_str())
                );
            }
            Change::CreateEndpoint(c) => new_endpoint(&mut out, h, &c.entry),
            Change::RepointEndpoint(c) => {
                // There is no cmdlet that moves a Persistent Chat endpoint to another pool.
                let _ = writeln!(
                    out,
                    "Remove-CsPersistentChatEndpoint -Identity {} -Confirm:$false",
                    ps(h.sip_uri.as_str())
                );
                new_endpoint(&mut out, h, &c.new_values);
            }
        }
    }
    let steps = next_steps(plan);
    if !steps.is_empty() {
        out.push_str(
            "\n# After the swap: the Front End reads AD only through its User Replicator, on its own\n\
             # schedule. Run Update-CsUserDatabase on a Front End server of each pool, then confirm\n\
             # each endpoint.\n",
        );
        for step in steps {
            let _ = writeln!(out, "{step}");
        }
    }
    out
}

/// What Lync needs after the endpoints are written: the Front End reads AD only through its
/// User Replicator, on its own schedule, so `Update-CsUserDatabase` makes it pick the new
/// endpoints up now, and `Get-CsPersistentChatEndpoint` confirms each one. Empty when the plan
/// writes no endpoint.
pub(crate) fn next_steps(plan: &Plan) -> Vec<String> {
    let uris: std::collections::BTreeSet<&str> = plan
        .ready()
        .filter(|c| !matches!(c, Change::RetireUser(_)))
        .map(|c| c.sip_uri().as_str())
        .collect();
    if uris.is_empty() {
        return Vec::new();
    }
    let mut steps = vec!["Update-CsUserDatabase".to_string()];
    steps.extend(
        uris.iter()
            .map(|uri| format!("Get-CsPersistentChatEndpoint -Identity {}", ps(uri))),
    );
    steps
}

/// `New-CsPersistentChatEndpoint`, with the display name among `attributes` if it is there.
fn new_endpoint(out: &mut String, h: &super::Header, attributes: &[AttrValues]) {
    let display = attributes
        .iter()
        .find(|a| a.name.is(attr::DISPLAY_NAME))
        .and_then(|a| a.texts().next())
        .unwrap_or(h.sip_uri.as_str());
    let _ = writeln!(
        out,
        "New-CsPersistentChatEndpoint -SipAddress {} -PersistentChatPoolFqdn {} -DisplayName {}",
        ps(h.sip_uri.as_str()),
        ps(&h.pool),
        ps(display)
    );
}

/// A PowerShell single-quoted string literal. PowerShell's tokenizer takes the typographic
/// quotes ‘ ’ ‚ ‛ for `'` too, so each of them is doubled like the apostrophe; left single, a
/// name such as `O’Brien` would end the string early.
fn ps(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What PowerShell counts as a single quote inside a single-quoted string: the ASCII
    /// apostrophe and the typographic ‘ ’ ‚ ‛ (its tokenizer's `IsSingleQuote`).
    const QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

    /// Reads a single-quoted literal the way PowerShell's tokenizer does: a quote followed by a
    /// quote is one (the second) character, a lone quote ends the string. Returns the value and
    /// what follows the literal.
    fn read_literal(text: &str) -> Option<(String, &str)> {
        let mut chars = text.char_indices().peekable();
        let (_, open) = chars.next()?;
        if !QUOTES.contains(&open) {
            return None;
        }
        let mut value = String::new();
        while let Some((i, c)) = chars.next() {
            if QUOTES.contains(&c) {
                match chars.peek() {
                    Some((_, next)) if QUOTES.contains(next) => {
                        value.push(*next);
                        chars.next();
                    }
                    _ => return Some((value, &text[i + c.len_utf8()..])),
                }
            } else {
                value.push(c);
            }
        }
        None
    }

    fn quote_heavy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => proptest::sample::select(QUOTES.to_vec()),
            // Other quote-like code points PowerShell does not treat as single quotes.
            1 => proptest::sample::select(vec!['"', '`', '\u{201C}', '\u{201D}', '\u{201E}', '\u{2032}', '\u{FF07}']),
            2 => any::<char>(),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Any text, however many quote-like characters it holds, reads back unchanged and the
        /// literal ends exactly where the rendering ends. See: #19
        #[test]
        fn every_quote_like_code_point_survives_quoting(text in quote_heavy()) {
            let quoted = ps(&text);
            let (value, rest) = read_literal(&quoted).expect("an unterminated literal");
            prop_assert_eq!(value, text);
            prop_assert_eq!(rest, "");
        }
    }

    fn plan_with(findings: Vec<Finding>) -> Plan {
        Plan {
            format: super::super::PLAN_FORMAT,
            fingerprint: String::new(),
            changes: Vec::new(),
            summary: super::super::Summary {
                findings: findings.len(),
                ..Default::default()
            },
            findings,
        }
    }

    /// 30,000 suspects print a count per kind and the first N of each kind, not 30,000 lines;
    /// `all` prints every one. See: #19
    #[test]
    fn findings_are_counted_per_kind_and_the_first_few_listed() {
        let mut findings: Vec<Finding> = (0..30_000)
            .map(|i| {
                Finding::new(
                    FindingKind::Suspect,
                    &format!("cn=u{i:05},dc=x"),
                    "looks like a lookup account".into(),
                )
            })
            .collect();
        findings.push(Finding::new(
            FindingKind::DuplicateUri,
            "cn=a,dc=x",
            "sip:a@x is held by 2 objects".into(),
        ));
        let plan = plan_with(findings);
        let out = text(&plan, FindingsShown::First(20));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0], "findings: 1 duplicate_uri, 30000 suspect",
            "{out}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("finding suspect: cn="))
                .count(),
            20
        );
        assert!(
            out.contains("finding suspect: cn=u00019,dc=x: looks like"),
            "{out}"
        );
        assert!(!out.contains("cn=u00020,dc=x"), "{out}");
        assert!(
            out.contains("finding suspect: 29980 more not shown (--findings all lists every one"),
            "{out}"
        );
        assert!(
            out.contains("finding duplicate_uri: cn=a,dc=x: sip:a@x is held by 2 objects\n"),
            "{out}"
        );
        assert!(!out.contains("finding duplicate_uri: 0 more"), "{out}");
        assert_eq!(lines.len(), 1 + 1 + 20 + 1 + 1, "{out}");
        let all = text(&plan, FindingsShown::All);
        assert_eq!(
            all.lines()
                .filter(|l| l.starts_with("finding suspect: cn="))
                .count(),
            30_000
        );
        assert!(!all.contains("more not shown"));
        let none = text(&plan, FindingsShown::First(0));
        assert!(
            none.contains("finding suspect: 30000 more not shown"),
            "{none}"
        );
    }

    #[test]
    fn the_findings_flag_takes_a_number_or_all() {
        assert_eq!("all".parse(), Ok(FindingsShown::All));
        assert_eq!("ALL".parse(), Ok(FindingsShown::All));
        assert_eq!("5".parse(), Ok(FindingsShown::First(5)));
        let e = "many".parse::<FindingsShown>().unwrap_err();
        assert_eq!(
            e,
            "\"many\" is neither a number of findings per kind nor `all`"
        );
    }

    #[test]
    fn typographic_quotes_are_doubled() {
        assert_eq!(ps("O\u{2019}Brien"), "'O\u{2019}\u{2019}Brien'");
        assert_eq!(
            ps("\u{2018}\u{201A}\u{201B}'"),
            "'\u{2018}\u{2018}\u{201A}\u{201A}\u{201B}\u{201B}'''"
        );
    }
}
