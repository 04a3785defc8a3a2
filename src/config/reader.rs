//! A validating walk over the merged configuration tree that collects every problem.
//!
//! serde stops at the first error; administrators want all of them at once, each naming the key
//! and where its value came from. So the tree that config-rs reads (values tagged with their
//! origin) is walked here by hand: each `Section` records which keys were asked for, so whatever
//! is left over is an unknown key, and every conversion failure is pushed to the shared `Issues`
//! list instead of returned.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use config::{Map, Value, ValueKind};

/// The origin config-rs gives every value read from the environment.
const ENV_ORIGIN: &str = "the environment";

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{path}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `directory.page_size` or `pools[1].fqdn`.
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.to_string();
        write!(
            f,
            "{}: {}: {}",
            escape_controls(&origin),
            escape_controls(&self.key),
            escape_controls(&self.message)
        )
    }
}

/// Control characters (a quoted TOML key may hold a line break) written as escapes, so an
/// issue stays one line and cannot forge log lines. Found by the config_structured fuzz target.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Collects issues while the tree is walked.
pub(super) struct Issues {
    list: RefCell<Vec<ConfigIssue>>,
    /// The config file, named in issues about keys that are missing (and so have no origin).
    file: String,
}

impl Issues {
    pub(super) fn new(file: &str) -> Issues {
        Issues {
            list: RefCell::new(Vec::new()),
            file: file.to_string(),
        }
    }

    pub(super) fn push(&self, key: &str, origin: Origin, message: impl Into<String>) {
        self.list.borrow_mut().push(ConfigIssue {
            key: key.to_string(),
            origin,
            message: message.into(),
        });
    }

    pub(super) fn file_origin(&self) -> Origin {
        Origin::File(self.file.clone())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.borrow().is_empty()
    }

    pub(super) fn into_vec(self) -> Vec<ConfigIssue> {
        self.list.into_inner()
    }
}

/// The env var that would set `key`: `directory.page_size` → `PCSYNC__DIRECTORY__PAGE_SIZE`.
pub(crate) fn env_var_for(key: &str) -> String {
    format!("PCSYNC__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// One table of the tree, e.g. `[directory]` or `[[pools]]` entry 2.
pub(super) struct Section<'a> {
    path: String,
    table: Map<String, Value>,
    asked: BTreeSet<&'static str>,
    issues: &'a Issues,
}

/// A value with its origin, after a key was taken from a section.
pub(super) struct Item {
    pub key: String,
    pub origin: Origin,
    pub value: Value,
}

impl Item {
    /// True when the value came from a `PCSYNC__*` variable.
    fn is_env(&self) -> bool {
        matches!(self.origin, Origin::Env(_))
    }

    /// Records a problem with this item's value.
    pub(super) fn bad(&self, issues: &Issues, message: impl Into<String>) {
        issues.push(&self.key, self.origin.clone(), message);
    }
}

impl<'a> Section<'a> {
    pub(super) fn root(table: Map<String, Value>, issues: &'a Issues) -> Section<'a> {
        Section {
            path: String::new(),
            table,
            asked: BTreeSet::new(),
            issues,
        }
    }

    pub(super) fn issues(&self) -> &'a Issues {
        self.issues
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn origin_of(&self, key: &str, value: &Value) -> Origin {
        // The file is the only other source; name it as the user did (config-rs shortens it).
        match value.origin() {
            Some(ENV_ORIGIN) => Origin::Env(env_var_for(key)),
            _ => self.issues.file_origin(),
        }
    }

    /// Takes a key's value, if present.
    pub(super) fn take(&mut self, key: &'static str) -> Option<Item> {
        self.asked.insert(key);
        let value = self.table.remove(key)?;
        let path = self.key_path(key);
        let origin = self.origin_of(&path, &value);
        Some(Item {
            key: path,
            origin,
            value,
        })
    }

    /// Takes a key without listing it among the expected ones (for keys that exist only to be
    /// refused with a better message than "unknown key").
    pub(super) fn take_unlisted(&mut self, key: &'static str) -> Option<Item> {
        let item = self.take(key);
        self.asked.remove(key);
        item
    }

    /// Takes a key that must be present, reporting it as missing otherwise.
    pub(super) fn require(&mut self, key: &'static str) -> Option<Item> {
        let item = self.take(key);
        if item.is_none() {
            self.issues.push(
                &self.key_path(key),
                self.issues.file_origin(),
                "required key is missing",
            );
        }
        item
    }

    /// A text value; numbers and booleans are accepted and rendered as text.
    pub(super) fn string(&mut self, key: &'static str) -> Option<(String, Item)> {
        let item = self.take(key)?;
        as_text(&item, self.issues).map(|s| (s, item))
    }

    /// A required text value.
    pub(super) fn required_string(&mut self, key: &'static str) -> Option<(String, Item)> {
        let item = self.require(key)?;
        as_text(&item, self.issues).map(|s| (s, item))
    }

    /// Parses a text value with `parse`; its error text becomes the issue message.
    pub(super) fn parse<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, item) = self.string(key)?;
        parse_item(&text, &item, self.issues, parse)
    }

    /// Like `parse`, for a required key.
    pub(super) fn parse_required<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, item) = self.required_string(key)?;
        parse_item(&text, &item, self.issues, parse)
    }

    /// A boolean: TOML `true`/`false` in the file, the exact strings `true`/`false` in the
    /// environment (which has only strings). A quoted `"false"` in the file is refused: a
    /// switch that controls writes must be a TOML boolean, and config-rs would also have
    /// turned "yes" into true.
    pub(super) fn bool(&mut self, key: &'static str, default: bool) -> bool {
        let Some(item) = self.take(key) else {
            return default;
        };
        match &item.value.kind {
            ValueKind::Boolean(b) => return *b,
            ValueKind::String(s) if item.is_env() && (s == "true" || s == "false") => {
                return s == "true";
            }
            _ => {}
        }
        let found = found_instead(&item, |s| s == "true" || s == "false");
        item.bad(
            self.issues,
            format!("expected true or false, found {found}"),
        );
        default
    }

    /// An unsigned integer within `range`: a TOML integer in the file, digits only in the
    /// environment. A quoted `"200"` in the file is refused, like a quoted boolean.
    pub(super) fn uint(
        &mut self,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some(item) = self.take(key) else {
            return default;
        };
        let n = match &item.value.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok(),
            ValueKind::U64(n) => Some(*n),
            ValueKind::I128(n) => u64::try_from(*n).ok(),
            ValueKind::U128(n) => u64::try_from(*n).ok(),
            ValueKind::String(s) if item.is_env() && is_digits(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if range.contains(&n) => n,
            Some(n) => {
                item.bad(
                    self.issues,
                    format!("{n} is out of range ({}..={})", range.start(), range.end()),
                );
                default
            }
            None => {
                let wanted = if item.is_env() {
                    "a whole number (digits only)"
                } else {
                    "a whole number"
                };
                let found = found_instead(&item, is_digits);
                item.bad(self.issues, format!("expected {wanted}, found {found}"));
                default
            }
        }
    }

    /// A list of strings. A single string is a one-element list, except that a string from the
    /// environment is split on commas (`PCSYNC__DIRECTORY__URL=ldaps://dc1,ldaps://dc2`).
    pub(super) fn list(&mut self, key: &'static str) -> Option<(Vec<String>, Item)> {
        let item = self.take(key)?;
        let values = match &item.value.kind {
            ValueKind::String(s) if matches!(item.origin, Origin::Env(_)) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            ValueKind::String(s) => vec![s.clone()],
            ValueKind::Array(values) => {
                let mut out = Vec::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    match &v.kind {
                        ValueKind::String(s) => out.push(s.clone()),
                        other => {
                            item.bad(
                                self.issues,
                                format!(
                                    "element {i}: expected a string, found {}",
                                    describe(other)
                                ),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            other => {
                item.bad(
                    self.issues,
                    format!(
                        "expected a string or a list of strings, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        Some((values, item))
    }

    /// A nested table such as `[directory.layout]`; absent means empty.
    pub(super) fn section(&mut self, key: &'static str) -> Section<'a> {
        let path = self.key_path(key);
        let table = match self.take(key) {
            None => Map::new(),
            Some(item) => match item.value.kind {
                ValueKind::Table(t) => t,
                ref other => {
                    let message = format!("expected a table, found {}", describe(other));
                    item.bad(self.issues, message);
                    Map::new()
                }
            },
        };
        Section {
            path,
            table,
            asked: BTreeSet::new(),
            issues: self.issues,
        }
    }

    /// An array of tables such as `[[pools]]`; absent means none.
    pub(super) fn sections(&mut self, key: &'static str) -> Vec<Section<'a>> {
        let path = self.key_path(key);
        let Some(item) = self.take(key) else {
            return Vec::new();
        };
        let ValueKind::Array(values) = item.value.kind else {
            let message = format!(
                "expected an array of tables ([[{key}]]), found {}",
                describe(&item.value.kind)
            );
            self.issues.push(&item.key, item.origin, message);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let entry_path = format!("{path}[{i}]");
            match value.kind {
                ValueKind::Table(table) => out.push(Section {
                    path: entry_path,
                    table,
                    asked: BTreeSet::new(),
                    issues: self.issues,
                }),
                ref other => {
                    let origin = self.origin_of(&entry_path, &value);
                    self.issues.push(
                        &entry_path,
                        origin,
                        format!("expected a table, found {}", describe(other)),
                    );
                }
            }
        }
        out
    }

    /// Reports every key nobody asked for.
    pub(super) fn finish(self) {
        let known = self.asked.iter().copied().collect::<Vec<_>>().join(", ");
        for (key, value) in &self.table {
            let path = self.key_path(key);
            let origin = self.origin_of(&path, value);
            let hint = closest(key, &self.asked)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            self.issues.push(
                &path,
                origin,
                format!("unknown key{hint}; expected one of: {known}"),
            );
        }
    }
}

fn as_text(item: &Item, issues: &Issues) -> Option<String> {
    match &item.value.kind {
        ValueKind::String(s) => Some(s.clone()),
        ValueKind::I64(n) => Some(n.to_string()),
        ValueKind::U64(n) => Some(n.to_string()),
        ValueKind::I128(n) => Some(n.to_string()),
        ValueKind::U128(n) => Some(n.to_string()),
        other => {
            item.bad(
                issues,
                format!("expected a string, found {}", describe(other)),
            );
            None
        }
    }
}

fn parse_item<T>(
    text: &str,
    item: &Item,
    issues: &Issues,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(text) {
        Ok(v) => Some(v),
        Err(message) => {
            item.bad(issues, message);
            None
        }
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// What was found where another type was expected. A string in the file that would have been
/// right without its quotes says so.
fn found_instead(item: &Item, right_unquoted: impl Fn(&str) -> bool) -> String {
    match &item.value.kind {
        ValueKind::String(s) if !item.is_env() && right_unquoted(s) => {
            format!("the string {s:?}: write {s} without quotes")
        }
        other => describe(other),
    }
}

fn describe(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Nil => "nothing".to_string(),
        ValueKind::Boolean(b) => format!("boolean {b}"),
        ValueKind::I64(n) => format!("number {n}"),
        ValueKind::I128(n) => format!("number {n}"),
        ValueKind::U64(n) => format!("number {n}"),
        ValueKind::U128(n) => format!("number {n}"),
        ValueKind::Float(n) => format!("number {n}"),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".to_string(),
        ValueKind::Array(_) => "a list".to_string(),
    }
}

/// The known key closest to a typo, if it is close enough to be a useful hint.
fn closest<'k>(typo: &str, known: &BTreeSet<&'k str>) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(typo, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names_follow_the_double_underscore_scheme() {
        assert_eq!(
            env_var_for("directory.page_size"),
            "PCSYNC__DIRECTORY__PAGE_SIZE"
        );
        assert_eq!(
            env_var_for("directory.layout.owner_urn"),
            "PCSYNC__DIRECTORY__LAYOUT__OWNER_URN"
        );
    }

    #[test]
    fn suggests_the_closest_key() {
        let known: BTreeSet<&str> = ["url", "starttls", "base_dn", "page_size"].into();
        assert_eq!(closest("urll", &known), Some("url"));
        assert_eq!(closest("base_nd", &known), Some("base_dn"));
        assert_eq!(closest("colour", &known), None);
    }
}
