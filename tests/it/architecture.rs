//! The module layering of docs/architecture.md, checked against the source: every `crate::X`
//! a module's non-test code names must be on a lower layer, or a leaf. A new top-level module
//! fails here until it is given a layer (here and in docs/architecture.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layer of each top-level module; `LEAF` modules may be imported by anyone and import only
/// other leaves.
const LEAF: i32 = -1;
const LAYERS: &[(&str, i32)] = &[
    ("model", 0),
    ("plan", 1),
    ("config", 2),
    ("ldap", 3),
    ("estate", 4),
    ("inventory", 5),
    ("mapping", 6),
    ("audit", 6),
    ("sip", 7),
    ("apply", 7),
    ("redirector", 8),
    ("reconcile", 8),
    ("daemon", 9),
    ("cli", 10),
    ("util", LEAF),
    ("blob", LEAF),
    ("exit", LEAF),
    ("private", LEAF),
    ("lock", LEAF),
    ("progress", LEAF),
    ("schedule", LEAF),
    ("shutdown", LEAF),
    ("clock", LEAF),
];

fn layer(module: &str) -> Option<i32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` that is not a test file.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "proptests.rs" {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/plan/change.rs` → `plan`), or `None` for the
/// crate root and the binary.
fn owner(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The crate modules named by a file's code: comments and the inline test module left out.
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_lower_layers_and_leaves() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = owner(file) else { continue };
        let Some(own) = layer(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer: give it one in tests/it/architecture.rs and docs/architecture.md",
                file.display()
            ));
            continue;
        };
        for used in imports(&std::fs::read_to_string(file).unwrap()) {
            if used == module || used == "main" {
                continue;
            }
            let Some(theirs) = layer(&used) else {
                // A crate-root re-export or a macro path, not a module.
                continue;
            };
            let allowed = if own == LEAF {
                theirs == LEAF
            } else {
                theirs == LEAF || theirs < own
            };
            if !allowed {
                wrong.push(format!(
                    "{}: `{module}` (layer {own}) imports `{used}` (layer {theirs})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// Only the edges read the wall clock: everything else is handed `now` or a `clock::Clock`.
const CLOCK_READERS: &[&str] = &["cli", "daemon", "schedule", "clock"];

#[test]
fn only_the_edges_read_the_wall_clock() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = owner(file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        let reads = text
            .lines()
            .any(|l| !l.trim_start().starts_with("//") && l.contains("clock::system"));
        if !CLOCK_READERS.contains(&module.as_str()) && reads {
            wrong.push(file.display().to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "clock::system read outside the edges ({CLOCK_READERS:?}):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_reader_sees_paths_and_skips_comments_and_tests() {
    let text = "use crate::model::{Dn, SipUri};\n// crate::daemon in a comment\nfn f() { crate::util::hex(x) }\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n";
    let seen: Vec<_> = imports(text).into_iter().collect();
    assert_eq!(seen, ["model", "util"]);
}
