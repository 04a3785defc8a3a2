//! Rendering a [`Plan`]: a text table, the JSON document, LDIF change records for `ldapmodify`,
//! and the equivalent Lync Server Management Shell commands. All pure string building.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::desired::Retire;
use super::{Change, Plan, Status};
use crate::model::{AttrValues, attr};

/// The human-readable table, findings and a summary line.
pub(crate) fn text(plan: &Plan) -> String {
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
    for f in &plan.findings {
        let dn = if f.dn.is_empty() { "-" } else { f.dn.as_str() };
        let _ = writeln!(out, "finding {}: {}: {}", f.kind, dn, f.reason);
    }
    let _ = writeln!(out, "{}", summary_line(plan));
    out
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
    out
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

/// A PowerShell single-quoted string literal.
fn ps(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
