//! Configuration: a TOML file layered with `PCSYNC__SECTION__KEY` environment overrides,
//! validated completely into typed [`Settings`] before anything else runs.
//!
//! Loading is two stages. `resolve` does every read of the outside world that loading needs,
//! in one step: config-rs reads the file (or text) and the `PCSYNC__*` variables into one tree
//! whose values remember their origin, and the environment itself is an `Env` a test can
//! inject. `sections` then walks that tree by hand (through `reader`), so that *every* problem
//! is reported at once, each naming its key and the file or environment variable it came from,
//! and unknown keys are rejected; `values` holds the parsers of single values and `settings`
//! the validated types. The desired-state types (pools, migrations, layout) belong to
//! `plan::desired`: configuration only parses into them. Secrets never come from the file
//! itself: the bind password is read from a file or a named environment variable into a
//! `Secret`, whose `Debug` is redacted. Relative paths are relative to the working directory.

mod estate;
mod kerberos;
mod reader;
mod sections;
mod settings;
mod time;
mod values;

pub use kerberos::KerberosSettings;
pub(crate) use kerberos::require_host_name;
pub(crate) use settings::WriteServerChoice;
pub(crate) use settings::{
    ContactTransport, DEFAULT_MAX_SEGMENT_BYTES, DaemonSettings, HttpSettings, WatchMode,
};
pub use settings::{DirectorySettings, Settings};
pub(crate) use time::{next_fire_times, parse_duration_within, parse_time};
pub(crate) use values::{LdapScheme, LdapUrl};

use std::path::{Path, PathBuf};

use config::{FileFormat, Map, Source, Value, ValueKind};

use reader::{ConfigIssue, Issues, Origin, env_var_for};

/// Where `--config` points when neither the flag nor `PCSYNC_CONFIG` is given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "config/pcsync.toml";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable or not valid TOML.
    #[error("cannot read config file {path}: {}", one_line(.source))]
    Read {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    /// The environment could not be read (e.g. a non-Unicode PCSYNC__ variable).
    #[error("cannot read PCSYNC__ environment variables: {}", one_line(.source))]
    Env {
        #[source]
        source: config::ConfigError,
    },
    /// One or more keys are invalid; each issue is one line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// The TOML parser's message without its source snippet (`21 | e[[migrations]]`, `|  ^`), on
/// one line: errors are printed as `pcsync: error: <one line>`. Found by the config_text fuzz
/// target.
fn one_line(source: &config::ConfigError) -> String {
    let text = source.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            let snippet = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !snippet.starts_with('|')
        })
        .collect();
    parts.join(": ")
}

impl ConfigError {
    /// The individual problems, one per line of output.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// The environment configuration reads: the `PCSYNC__*` overrides and the variable
/// `bind_password_env` names. The process's own, or a map that a test passes instead of
/// mutating the process environment.
#[derive(Debug, Clone, Default)]
struct Env {
    /// `None` reads the process environment.
    vars: Option<Map<String, String>>,
}

impl Env {
    /// The process environment.
    fn process() -> Env {
        Env { vars: None }
    }

    fn from_option(vars: Option<Map<String, String>>) -> Env {
        Env { vars }
    }

    /// The value of `name`, as `std::env::var` gives it.
    fn var(&self, name: &str) -> Result<String, std::env::VarError> {
        match &self.vars {
            Some(vars) => vars
                .get(name)
                .cloned()
                .ok_or(std::env::VarError::NotPresent),
            None => std::env::var(name),
        }
    }

    /// `PCSYNC__SECTION__KEY`. The prefix separator is set explicitly: config-rs would otherwise
    /// reuse `__` silently, and `PCSYNC_CONFIG` (one underscore) must never be read as a key.
    fn overrides(&self) -> config::Environment {
        config::Environment::with_prefix("PCSYNC")
            .prefix_separator("__")
            .separator("__")
            .source(self.vars.clone())
    }
}

/// The configuration text: a file, or text standing in for the file `name`.
enum Input<'a> {
    File(&'a Path),
    Text { text: &'a str, name: &'a str },
}

/// What [`resolve`] read: one tree, the environment merged over the file, and the problems
/// merging found.
struct Resolved {
    tree: Map<String, Value>,
    issues: Issues,
    path: PathBuf,
}

/// Loads `path` layered with the process's `PCSYNC__*` environment variables.
pub(crate) fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_from(Input::File(path), &Env::process())
}

/// Loads `path` layered with `env` (the process environment when `None`). Tests pass a map
/// instead of mutating the process environment.
pub fn load_with_env(
    path: &Path,
    env: Option<Map<String, String>>,
) -> Result<Settings, ConfigError> {
    load_from(Input::File(path), &Env::from_option(env))
}

/// Parses TOML text as if it were the file `name` (for tests and the fuzz targets).
pub fn from_toml_str(
    text: &str,
    name: &str,
    env: Option<Map<String, String>>,
) -> Result<Settings, ConfigError> {
    load_from(Input::Text { text, name }, &Env::from_option(env))
}

/// Resolves `input` in `env`, then validates it.
fn load_from(input: Input<'_>, env: &Env) -> Result<Settings, ConfigError> {
    sections::validate(resolve(input, env)?, env)
}

/// Reads the configuration text and the `PCSYNC__*` variables and merges them into one tree.
/// The only other reads are the files and the variable that keys name (password, CA,
/// certificate), done while their key is validated, through the same `env`.
fn resolve(input: Input<'_>, env: &Env) -> Result<Resolved, ConfigError> {
    let (file, shown, path) = match input {
        Input::File(path) => (
            config::File::from(path)
                .format(FileFormat::Toml)
                .required(true)
                .collect(),
            path.display().to_string(),
            path.to_path_buf(),
        ),
        Input::Text { text, name } => (
            config::File::from_str(text, FileFormat::Toml).collect(),
            name.to_string(),
            PathBuf::from(name),
        ),
    };
    let mut tree = file.map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let overrides = env
        .overrides()
        .collect()
        .map_err(|source| ConfigError::Env { source })?;
    let issues = Issues::new(&shown);
    merge_env(&mut tree, overrides, &issues);
    Ok(Resolved { tree, issues, path })
}

/// Merges the flat `a.b.c` keys of the environment over the file's tree.
fn merge_env(root: &mut Map<String, Value>, env: Map<String, Value>, issues: &Issues) {
    for (key, value) in env {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            issues.push(
                &key,
                Origin::Env(env_var_for(&key)),
                "malformed variable name (empty key part)",
            );
            continue;
        }
        if let Err(part) = insert_path(root, &parts, value) {
            issues.push(
                &key,
                Origin::Env(env_var_for(&key)),
                format!(
                    "`{part}` is not a table; entries of [[{part}]] cannot be set from the environment"
                ),
            );
        }
    }
}

/// Sets `parts` (a key path) in `table`, creating tables on the way; fails with the first part
/// that exists but is not a table.
fn insert_path(table: &mut Map<String, Value>, parts: &[&str], value: Value) -> Result<(), String> {
    match parts {
        [] => Ok(()),
        [last] => {
            table.insert((*last).to_string(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_string())
                .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
            match &mut entry.kind {
                ValueKind::Table(t) => insert_path(t, rest, value),
                _ => Err((*first).to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
