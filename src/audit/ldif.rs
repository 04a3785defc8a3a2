//! LDIF (RFC 2849) for `audit export --format ldif`: before-images as add records that
//! `ldapadd` restores.
//!
//! A value that is not a SAFE-STRING (non-ASCII, a control character, a leading space, colon or
//! `<`, a trailing space) is written base64-encoded after `::`; every line longer than 76
//! characters is folded (continued on the next line after one space), as the RFC allows.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::model::Entry;

/// Width after which a line is folded.
const LDIF_LINE_WIDTH: usize = 76;

/// Whether `value` may be written as is after `: `.
fn is_safe(value: &[u8]) -> bool {
    match value.first() {
        None => true,
        Some(b' ' | b':' | b'<') => false,
        Some(_) => {
            value.last() != Some(&b' ')
                && value
                    .iter()
                    .all(|b| *b != 0 && *b != b'\n' && *b != b'\r' && *b < 0x80)
        }
    }
}

/// Appends `name: value` (or `name:: base64`), folded.
pub(crate) fn push_line(out: &mut String, name: &str, value: &[u8]) {
    let line = if is_safe(value) {
        // Safe values are ASCII, hence UTF-8.
        format!("{name}: {}", String::from_utf8_lossy(value))
    } else {
        format!("{name}:: {}", BASE64.encode(value))
    };
    fold(out, &line);
}

/// Appends `line` folded at [`LDIF_LINE_WIDTH`] (all our lines are ASCII).
fn fold(out: &mut String, line: &str) {
    let bytes = line.as_bytes();
    if bytes.len() <= LDIF_LINE_WIDTH {
        out.push_str(line);
        out.push('\n');
        return;
    }
    let mut start = 0;
    let mut width = LDIF_LINE_WIDTH;
    while start < bytes.len() {
        let end = (start + width).min(bytes.len());
        if start > 0 {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(&bytes[start..end]));
        out.push('\n');
        start = end;
        // A continuation line starts with the space, so it carries one character less.
        width = LDIF_LINE_WIDTH - 1;
    }
}

/// The document header.
pub(crate) fn header() -> String {
    "version: 1\n".to_string()
}

/// One add record (no `changetype`, which `ldapadd` implies) with comment lines above it
/// (one per line of `comment`).
pub(crate) fn entry(comment: &str, e: &Entry) -> String {
    let mut out = String::new();
    out.push('\n');
    for line in comment.lines() {
        let _ = writeln!(out, "# {}", line.trim_start_matches("# "));
    }
    push_line(&mut out, "dn", e.dn.as_str().as_bytes());
    for a in &e.attributes {
        for v in &a.values {
            push_line(&mut out, a.name.as_str(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrValues;

    #[test]
    fn unsafe_values_are_base64_and_long_lines_fold_at_76() {
        let e = Entry {
            dn: crate::model::Dn::parse("cn=Zoë,dc=x").unwrap(),
            attributes: vec![
                AttrValues::text("cn", &["Zoë"]),
                AttrValues {
                    name: "objectSid".into(),
                    values: vec![vec![1, 5, 0, 0xff]],
                },
                AttrValues::text("description", &[" leading space", &"x".repeat(200)]),
            ],
        };
        let text = entry("swap r#1", &e);
        assert!(text.contains("dn:: Y249Wm/DqyxkYz14\n"), "{text}");
        assert!(text.contains("cn:: Wm/Dqw==\n"), "{text}");
        assert!(text.contains("objectSid:: AQUA/w==\n"), "{text}");
        assert!(
            text.contains("description:: IGxlYWRpbmcgc3BhY2U=\n"),
            "{text}"
        );
        for l in text.lines() {
            assert!(l.len() <= 76, "{l}");
        }
        // Unfolding gives back the long value.
        let unfolded = text.replace("\n ", "");
        assert!(unfolded.contains(&format!("description: {}\n", "x".repeat(200))));
    }
}
