//! Configuration: a TOML file layered with `PCSYNC__SECTION__KEY` environment overrides,
//! validated completely into typed [`Settings`] before anything else runs.
//!
//! Loading is two stages. config-rs reads the file and the environment into a tree
//! whose values remember their origin; `reader` then walks that tree by hand, so that *every*
//! problem is reported at once, each naming its key and the file or environment variable it came
//! from, and unknown keys are rejected. Secrets never come from the file itself: the bind
//! password is read from a file or a named environment variable into a [`Secret`], whose `Debug`
//! is redacted. Relative paths are relative to the working directory.

mod estate;
mod reader;

pub(crate) use reader::{ConfigIssue, Origin, env_var_for};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use config::{FileFormat, Map, Source, Value, ValueKind};

use crate::model::{Dn, SipUri};
use reader::{Issues, Section};

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

/// A secret string. `Debug` and `Display` print a placeholder; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(«redacted»)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

/// Everything pcsync needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file these settings were read from.
    pub path: PathBuf,
    pub directory: DirectorySettings,
    pub(crate) layout: Layout,
    pub(crate) pools: Vec<Pool>,
    pub migrations: Vec<Migration>,
    pub(crate) safety: Safety,
    pub(crate) schedule: Schedule,
    pub(crate) redirector: RedirectorSettings,
    pub(crate) http: HttpSettings,
    pub(crate) audit: AuditSettings,
    pub(crate) state: StateSettings,
    pub(crate) daemon: DaemonSettings,
}

impl Settings {
    /// The pool with this FQDN (case-insensitive).
    pub fn pool(&self, fqdn: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }

    /// The pool whose `home_server_dn` is `dn`.
    pub(crate) fn pool_by_home_server(&self, dn: &Dn) -> Option<&Pool> {
        self.pools.iter().find(|p| &p.home_server_dn == dn)
    }
}

/// `ldap` or `ldaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LdapScheme {
    Ldap,
    Ldaps,
}

/// One directory server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LdapUrl {
    pub scheme: LdapScheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl LdapUrl {
    pub(crate) fn parse(text: &str) -> Result<LdapUrl, String> {
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(text, "ldaps://") {
            (LdapScheme::Ldaps, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "ldap://") {
            (LdapScheme::Ldap, rest)
        } else {
            return Err(format!("{text:?} is not an ldap:// or ldaps:// URL"));
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        if hostport.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{text:?}: only scheme://host[:port] is supported (no path, query or user info)"
            ));
        }
        let default_port = match scheme {
            LdapScheme::Ldap => 389,
            LdapScheme::Ldaps => 636,
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unclosed `[` in IPv6 address"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').unwrap_or(p), text)?,
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), parse_port(port, text)?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        {
            return Err(format!("{text:?}: invalid host {host:?}"));
        }
        Ok(LdapUrl { scheme, host, port })
    }

    /// True for 127.0.0.0/8, ::1 and `localhost`: the only places a plain-text bind may go.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for LdapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            LdapScheme::Ldap => "ldap",
            LdapScheme::Ldaps => "ldaps",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn parse_port(text: &str, url: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{url:?}: invalid port {text:?}")),
    }
}

/// The bind identity.
#[derive(Debug, Clone)]
pub(crate) struct BindCredentials {
    pub dn: Dn,
    pub password: Secret,
}

/// `[directory]`.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// Tried in order until one answers.
    pub(crate) urls: Vec<LdapUrl>,
    pub starttls: bool,
    pub tls_ca_file: Option<PathBuf>,
    /// `None` binds anonymously (unless `kerberos` is set).
    pub(crate) bind: Option<BindCredentials>,
    /// `auth = "gssapi"`: bind with Kerberos instead of `bind`.
    pub(crate) kerberos: Option<crate::ldap::KerberosSettings>,
    /// Which server receives every write of a run.
    pub(crate) write_server: crate::estate::WriteServerChoice,
    /// A forest's Global Catalog, for several domains.
    pub(crate) global_catalog: Option<LdapUrl>,
    pub base_dn: Dn,
    pub page_size: u32,
    pub timeout: Duration,
    pub allow_insecure: bool,
}

/// `[directory.layout]`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub user_classes: Vec<String>,
    pub contact_classes: Vec<String>,
    pub endpoint_object_classes: Vec<String>,
    pub endpoint_container: Dn,
    pub owner_urn: String,
}

/// `[[pools]]`: a Persistent Chat pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub fqdn: String,
    pub home_server_dn: Dn,
}

/// `[[migrations]]`: one legacy Group Chat well-known user to swap.
#[derive(Debug, Clone)]
pub struct Migration {
    pub well_known_uri: SipUri,
    /// The FQDN of a configured pool (validated).
    pub target_pool: String,
    pub legacy_home_server_dn: Option<Dn>,
    pub not_before: Option<DateTime<Utc>>,
    /// `displayName` of the endpoint pcsync creates; `None` uses [`Migration::default_display_name`].
    pub display_name: Option<String>,
}

impl Migration {
    /// `Persistent Chat legacy endpoint (sip:ocschat@contoso.com)`.
    pub(crate) fn default_display_name(&self) -> String {
        format!("Persistent Chat legacy endpoint ({})", self.well_known_uri)
    }

    /// The configured display name, or the default.
    pub(crate) fn display_name(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| self.default_display_name())
    }
}

/// What happens to a retired well-known user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Retire {
    /// Delete the user object, as Microsoft's procedure says.
    Delete,
    /// Clear its msRTCSIP-* attributes (Disable-CsUser) and keep the account.
    Disable,
}

/// `[safety]`.
#[derive(Debug, Clone)]
pub(crate) struct Safety {
    pub max_changes_per_run: u32,
    pub retire: Retire,
    pub auto_apply: bool,
}

/// `[schedule]`.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// Six-field cron expression (seconds first), evaluated in UTC; validated.
    pub cron: String,
}

/// Transport named in the redirect Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContactTransport {
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for ContactTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContactTransport::Udp => "udp",
            ContactTransport::Tcp => "tcp",
            ContactTransport::Tls => "tls",
        })
    }
}

/// `[redirector]`.
#[derive(Debug, Clone)]
pub(crate) struct RedirectorSettings {
    /// `None` when set to "" (listener off).
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// The TLS listener: on when `tls_cert` and `tls_key` are set and `tls_listen` is not "".
    pub tls: Option<RedirectorTls>,
    pub contact_port: u16,
    pub contact_transport: ContactTransport,
    /// The `Server` header of every response.
    pub server_header: String,
    /// Open TCP/TLS connections at most; more are closed at once.
    pub tcp_max_connections: u32,
    /// A TCP/TLS connection with no message for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest SIP message accepted on a stream (header section plus body), in bytes.
    pub max_message_size: u32,
    /// Per-source rate limit; `None` = off (the default).
    pub rate_limit: Option<RateLimitSettings>,
    /// Threads receiving UDP.
    pub udp_workers: u32,
}

/// The TLS listener of the redirector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectorTls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `rate_limit = "N/DURATION"`: at most N messages per source IP per DURATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitSettings {
    pub requests: u32,
    pub window: Duration,
}

/// The default `Server` header.
pub(crate) const DEFAULT_SERVER_HEADER: &str = concat!("pcsync/", env!("CARGO_PKG_VERSION"));

/// `[http]`.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub listen: Option<SocketAddr>,
}

/// How `pcsync run` keeps the mapping table current between scheduled runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchMode {
    /// syncrepl where the root DSE advertises it; on Active Directory DirSync (where the
    /// account has the right) or uSNChanged polling; a rescan every `poll_interval` otherwise.
    Auto,
    /// Poll the endpoint container every `poll_interval`, whatever the server offers.
    Poll,
    /// No watch: the table changes only on the cron schedule and SIGHUP.
    Off,
}

/// `[daemon]`: `pcsync run`.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSettings {
    /// How long tasks get to finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    pub watch: WatchMode,
    /// Interval of the DirSync, uSNChanged and polling watches (not syncrepl).
    pub poll_interval: Duration,
    /// Shortest and longest wait between reconnects of the watch (doubling in between).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The lease entry that elects the one writer among instances; `None` = this instance
    /// always writes (a single instance).
    pub lease_dn: Option<Dn>,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and others try to take an expired lease).
    pub lease_renew: Duration,
    /// This instance's name in the lease and in health output; default `<host>:<pid>`.
    pub instance_id: Option<String>,
}

/// `[audit]`.
#[derive(Debug, Clone)]
pub(crate) struct AuditSettings {
    pub path: PathBuf,
    /// Bytes after which the active segment is sealed and a new one started.
    pub max_segment_size: u64,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub(crate) struct StateSettings {
    pub dir: PathBuf,
}

/// Loads `path` layered with the process's `PCSYNC__*` environment variables.
pub(crate) fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_with_env(path, None)
}

/// Loads `path` layered with `env` (the process environment when `None`). Tests pass a map
/// instead of mutating the process environment.
pub fn load_with_env(
    path: &Path,
    env: Option<Map<String, String>>,
) -> Result<Settings, ConfigError> {
    let shown = path.display().to_string();
    let file = config::File::from(path)
        .format(FileFormat::Toml)
        .required(true)
        .collect()
        .map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
    let env = environment(env)
        .collect()
        .map_err(|source| ConfigError::Env { source })?;
    validate(file, env, &shown, path)
}

/// Parses TOML text as if it were the file `name` (for tests and `--print-config` checks).
pub fn from_toml_str(
    text: &str,
    name: &str,
    env: Option<Map<String, String>>,
) -> Result<Settings, ConfigError> {
    let file = config::File::from_str(text, FileFormat::Toml)
        .collect()
        .map_err(|source| ConfigError::Read {
            path: name.to_string(),
            source,
        })?;
    let env = environment(env)
        .collect()
        .map_err(|source| ConfigError::Env { source })?;
    validate(file, env, name, Path::new(name))
}

/// `PCSYNC__SECTION__KEY`. The prefix separator is set explicitly: config-rs would otherwise
/// reuse `__` silently, and `PCSYNC_CONFIG` (one underscore) must never be read as a key.
fn environment(env: Option<Map<String, String>>) -> config::Environment {
    config::Environment::with_prefix("PCSYNC")
        .prefix_separator("__")
        .separator("__")
        .source(env)
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

fn validate(
    file: Map<String, Value>,
    env: Map<String, Value>,
    shown: &str,
    path: &Path,
) -> Result<Settings, ConfigError> {
    let issues = Issues::new(shown);
    let mut root_table = file;
    merge_env(&mut root_table, env, &issues);
    let mut root = Section::root(root_table, &issues);

    let directory = directory(&mut root);
    let pools = pools(&mut root);
    let migrations = migrations(&mut root, pools.as_deref().unwrap_or(&[]));
    let safety = safety(&mut root);
    let schedule = schedule(&mut root);
    let redirector = redirector(&mut root);
    let http = http(&mut root);
    let audit = audit(&mut root);
    let state = state(&mut root);
    let daemon = daemon(&mut root);
    root.finish();

    let (
        Some((directory, layout)),
        Some(pools),
        Some(migrations),
        Some(schedule),
        Some(redirector),
        Some(http),
        Some(audit),
        Some(state),
        Some(daemon),
    ) = (
        directory, pools, migrations, schedule, redirector, http, audit, state, daemon,
    )
    else {
        return Err(ConfigError::Invalid(issues.into_vec()));
    };
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues.into_vec()));
    }
    Ok(Settings {
        path: path.to_path_buf(),
        directory,
        layout,
        pools,
        migrations,
        safety,
        schedule,
        redirector,
        http,
        audit,
        state,
        daemon,
    })
}

fn directory(root: &mut Section<'_>) -> Option<(DirectorySettings, Layout)> {
    let mut s = root.section("directory");
    let issues = s.issues();

    let urls = s.list("url");
    let urls = match urls {
        None => {
            issues.push(
                "directory.url",
                issues.file_origin(),
                "required key is missing",
            );
            None
        }
        Some((list, item)) if list.is_empty() => {
            item.bad(issues, "needs at least one ldap:// or ldaps:// URL");
            None
        }
        Some((list, item)) => {
            let mut urls = Vec::new();
            for text in &list {
                match LdapUrl::parse(text.trim()) {
                    Ok(u) => urls.push(u),
                    Err(e) => item.bad(issues, e),
                }
            }
            (urls.len() == list.len()).then_some((urls, item))
        }
    };
    let starttls = s.bool("starttls", false);
    let tls_ca_file = s.parse("tls_ca_file", check_ca_file);
    let bind_dn_item = s.string("bind_dn");
    let bind_dn_given = bind_dn_item.is_some();
    let bind_dn = bind_dn_item.and_then(|(text, item)| match parse_dn(&text) {
        Ok(dn) => Some(dn),
        Err(e) => {
            item.bad(issues, e);
            None
        }
    });
    if let Some(item) = s.take_unlisted("bind_password") {
        item.bad(
            issues,
            "passwords are never read from the config file; use bind_password_file or bind_password_env",
        );
    }
    let password_file = s.string("bind_password_file");
    let password_env = s.string("bind_password_env");
    let password_configured = password_file.is_some() || password_env.is_some();
    let password = match (password_file, password_env) {
        (Some(_), Some((_, env_item))) => {
            env_item.bad(
                issues,
                "set bind_password_file or bind_password_env, not both",
            );
            None
        }
        (Some((path, item)), None) => match read_password_file(Path::new(&path)) {
            Ok(p) => Some(p),
            Err(e) => {
                item.bad(issues, e);
                None
            }
        },
        (None, Some((var, item))) => match std::env::var(&var) {
            Ok(p) if !p.is_empty() => Some(Secret::new(p)),
            Ok(_) => {
                item.bad(issues, format!("environment variable {var} is empty"));
                None
            }
            Err(_) => {
                item.bad(issues, format!("environment variable {var} is not set"));
                None
            }
        },
        (None, None) => None,
    };
    let base_dn = s.parse_required("base_dn", parse_dn);
    let page_size = s.uint("page_size", 500, 1..=100_000) as u32;
    let timeout = s
        .parse("timeout", |t| {
            parse_duration(t, Duration::from_millis(1)..=Duration::from_secs(3600))
        })
        .unwrap_or(Duration::from_secs(10));
    let allow_insecure = s.bool("allow_insecure", false);

    let bind = match (bind_dn, password) {
        (Some(dn), Some(password)) => Some(BindCredentials { dn, password }),
        (Some(_), None) if password_configured => None, // the password source was reported
        (Some(_), None) => {
            issues.push(
                "directory.bind_password_file",
                issues.file_origin(),
                "bind_dn is set but no password source: set bind_password_file or bind_password_env",
            );
            None
        }
        (None, Some(_)) if bind_dn_given => None, // the bad DN was reported
        (None, Some(_)) => {
            issues.push(
                "directory.bind_dn",
                issues.file_origin(),
                "a bind password is configured but bind_dn is missing",
            );
            None
        }
        (None, None) => None,
    };

    if let Some((urls, item)) = &urls
        && bind.is_some()
        && !starttls
        && !allow_insecure
    {
        for u in urls {
            if u.scheme == LdapScheme::Ldap && !u.is_loopback() {
                item.bad(
                    issues,
                    format!(
                        "{u} would send the bind password in clear text to a non-loopback host; use ldaps://, set starttls = true, or set allow_insecure = true"
                    ),
                );
            }
        }
    }

    let estate = estate::estate_keys(
        &mut s,
        urls.as_ref(),
        bind_dn_given || password_configured,
        starttls,
        allow_insecure,
    );

    let mut layout_section = s.section("layout");
    let layout = layout(&mut layout_section);
    layout_section.finish();
    s.finish();

    Some((
        DirectorySettings {
            urls: urls?.0,
            starttls,
            tls_ca_file,
            bind,
            kerberos: estate.kerberos,
            write_server: estate.write_server,
            global_catalog: estate.global_catalog,
            base_dn: base_dn?,
            page_size,
            timeout,
            allow_insecure,
        },
        layout?,
    ))
}

fn layout(s: &mut Section<'_>) -> Option<Layout> {
    let classes = |s: &mut Section<'_>, key: &'static str, default: &[&str]| -> Vec<String> {
        match s.list(key) {
            None => default.iter().map(|c| (*c).to_string()).collect(),
            Some((list, item)) => {
                if list.is_empty() || list.iter().any(|c| !is_attr_name(c)) {
                    item.bad(s.issues(), "expected a non-empty list of objectClass names");
                }
                list
            }
        }
    };
    let user_classes = classes(s, "user_classes", &["user", "inetOrgPerson"]);
    let contact_classes = classes(s, "contact_classes", &["contact"]);
    let endpoint_object_classes = classes(
        s,
        "endpoint_object_classes",
        &["top", "person", "organizationalPerson", "contact"],
    );
    let endpoint_container = s.parse_required("endpoint_container", parse_dn);
    let owner_urn = s
        .parse("owner_urn", |u| {
            if u.len() > 4
                && u.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
                && !u.contains(char::is_whitespace)
            {
                Ok(u.to_string())
            } else {
                Err(format!(
                    "{u:?} is not a URN (expected urn:…, e.g. urn:application:persistentchat)"
                ))
            }
        })
        .unwrap_or_else(|| "urn:application:persistentchat".to_string());
    Some(Layout {
        user_classes,
        contact_classes,
        endpoint_object_classes,
        endpoint_container: endpoint_container?,
        owner_urn,
    })
}

fn pools(root: &mut Section<'_>) -> Option<Vec<Pool>> {
    let mut pools: Vec<Pool> = Vec::new();
    let mut complete = true;
    for mut s in root.sections("pools") {
        let fqdn = s.parse_required("fqdn", parse_fqdn);
        let home = s.parse_required("home_server_dn", parse_dn);
        let issues = s.issues();
        if let (Some(fqdn), Some(home)) = (fqdn, home) {
            if pools.iter().any(|p| p.fqdn.eq_ignore_ascii_case(&fqdn)) {
                issues.push(
                    &format!("pools[{}].fqdn", pools.len()),
                    issues.file_origin(),
                    format!("pool {fqdn} is configured twice"),
                );
            } else if let Some(other) = pools.iter().find(|p| p.home_server_dn == home) {
                issues.push(
                    &format!("pools[{}].home_server_dn", pools.len()),
                    issues.file_origin(),
                    format!("same home_server_dn as pool {}", other.fqdn),
                );
            }
            pools.push(Pool {
                fqdn,
                home_server_dn: home,
            });
        } else {
            complete = false;
        }
        s.finish();
    }
    complete.then_some(pools)
}

fn migrations(root: &mut Section<'_>, pools: &[Pool]) -> Option<Vec<Migration>> {
    let mut out = Vec::new();
    let mut complete = true;
    for mut s in root.sections("migrations") {
        let uri = s.parse_required("well_known_uri", |t| {
            SipUri::parse(t).map_err(|e| format!("{t:?} is not a SIP address: {e}"))
        });
        let target = s.required_string("target_pool").and_then(|(name, item)| {
            match pools.iter().find(|p| p.fqdn.eq_ignore_ascii_case(&name)) {
                Some(p) => Some(p.fqdn.clone()),
                None => {
                    let known: Vec<&str> = pools.iter().map(|p| p.fqdn.as_str()).collect();
                    item.bad(
                        s.issues(),
                        format!(
                            "{name:?} is not a configured pool (configured: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    None
                }
            }
        });
        let legacy = s.parse("legacy_home_server_dn", parse_dn);
        let not_before = s.parse("not_before", |t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| {
                    format!("{t:?} is not an RFC 3339 time (e.g. 2026-12-05T22:00:00Z): {e}")
                })
        });
        let display_name = s.parse("display_name", |t| {
            let t = t.trim();
            if t.is_empty() || t.len() > 256 || t.chars().any(char::is_control) {
                Err(format!(
                    "{t:?} is not a display name (1 to 256 characters, no control characters)"
                ))
            } else {
                Ok(t.to_string())
            }
        });
        s.finish();
        match (uri, target) {
            (Some(well_known_uri), Some(target_pool)) => out.push(Migration {
                well_known_uri,
                target_pool,
                legacy_home_server_dn: legacy,
                not_before,
                display_name,
            }),
            _ => complete = false,
        }
    }
    complete.then_some(out)
}

fn safety(root: &mut Section<'_>) -> Safety {
    let mut s = root.section("safety");
    let max_changes_per_run = s.uint("max_changes_per_run", 10, 0..=1_000_000) as u32;
    let retire = s
        .parse("retire", |t| match t {
            "delete" => Ok(Retire::Delete),
            "disable" => Ok(Retire::Disable),
            other => Err(format!(
                "expected \"delete\" or \"disable\", found {other:?}"
            )),
        })
        .unwrap_or(Retire::Delete);
    let auto_apply = s.bool("auto_apply", false);
    s.finish();
    Safety {
        max_changes_per_run,
        retire,
        auto_apply,
    }
}

fn schedule(root: &mut Section<'_>) -> Option<Schedule> {
    let mut s = root.section("schedule");
    let cron = match s.string("cron") {
        None => Some(DEFAULT_CRON.to_string()),
        Some((text, item)) => match validate_cron(&text) {
            Ok(()) => Some(text),
            Err(e) => {
                item.bad(s.issues(), e);
                None
            }
        },
    };
    s.finish();
    cron.map(|cron| Schedule { cron })
}

/// Every 15 minutes, on the minute.
pub(crate) const DEFAULT_CRON: &str = "0 */15 * * * *";

/// Checks a cron expression the way the scheduler will read it: 6 fields (seconds first) or 7
/// (with a year), in UTC.
pub(crate) fn validate_cron(text: &str) -> Result<(), String> {
    let fields = text.split_whitespace().count();
    if fields == 5 {
        return Err(format!(
            "{text:?} has 5 fields; pcsync needs 6 with seconds first, e.g. \"0 {text}\""
        ));
    }
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "{text:?} has {fields} fields; expected 6 (sec min hour day month weekday), e.g. \"{DEFAULT_CRON}\""
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(text)
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))
}

fn redirector(root: &mut Section<'_>) -> Option<RedirectorSettings> {
    let mut s = root.section("redirector");
    let udp = s.parse("udp", parse_listen);
    let tcp = s.parse("tcp", parse_listen);
    let contact_port = s.uint("contact_port", 5061, 1..=65535) as u16;
    let contact_transport = s
        .parse("contact_transport", |t| {
            match t.to_ascii_lowercase().as_str() {
                "udp" => Ok(ContactTransport::Udp),
                "tcp" => Ok(ContactTransport::Tcp),
                "tls" => Ok(ContactTransport::Tls),
                _ => Err(format!("expected \"udp\", \"tcp\" or \"tls\", found {t:?}")),
            }
        })
        .unwrap_or(ContactTransport::Tls);
    let tls_listen = s.parse("tls_listen", parse_listen);
    let tls_cert = s.parse("tls_cert", check_pem_certificate);
    let tls_key = s.parse("tls_key", check_pem_key);
    let server_header = s
        .parse("server_header", |t| {
            if !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                Ok(t.to_string())
            } else {
                Err(format!(
                    "{t:?} is not a usable Server header (1 to 128 printable ASCII characters)"
                ))
            }
        })
        .unwrap_or_else(|| DEFAULT_SERVER_HEADER.to_string());
    let tcp_max_connections = s.uint("tcp_max_connections", 1024, 1..=1_000_000) as u32;
    let tcp_idle_timeout = s
        .parse("tcp_idle_timeout", |t| {
            parse_duration(t, Duration::from_secs(1)..=Duration::from_secs(86_400))
        })
        .unwrap_or(Duration::from_secs(300));
    let max_message_size = s.uint("max_message_size", 65_536, 1024..=1_048_576) as u32;
    let rate_limit = s.parse("rate_limit", parse_rate_limit).unwrap_or(None);
    let udp_workers = s.uint("udp_workers", 2, 1..=64) as u32;

    let issues = s.issues();
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => match tls_listen {
            Some(None) => None,
            Some(Some(listen)) => Some(RedirectorTls { listen, cert, key }),
            None => Some(RedirectorTls {
                listen: SocketAddr::from(([127, 0, 0, 1], 5061)),
                cert,
                key,
            }),
        },
        (Some(_), None) => {
            issues.push(
                "redirector.tls_key",
                issues.file_origin(),
                "tls_cert is set but tls_key is not: set both to enable the TLS listener",
            );
            None
        }
        (None, Some(_)) => {
            issues.push(
                "redirector.tls_cert",
                issues.file_origin(),
                "tls_key is set but tls_cert is not: set both to enable the TLS listener",
            );
            None
        }
        (None, None) => {
            if let Some(Some(addr)) = tls_listen {
                issues.push(
                    "redirector.tls_listen",
                    issues.file_origin(),
                    format!("{addr} is set but tls_cert and tls_key are not"),
                );
            }
            None
        }
    };
    s.finish();
    Some(RedirectorSettings {
        udp: udp.unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], 5060)))),
        tcp: tcp.unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], 5060)))),
        tls,
        contact_port,
        contact_transport,
        server_header,
        tcp_max_connections,
        tcp_idle_timeout,
        max_message_size,
        rate_limit,
        udp_workers,
    })
}

/// `"off"`, `""`, or `N/DURATION` such as `200/1s`.
fn parse_rate_limit(text: &str) -> Result<Option<RateLimitSettings>, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        format!("{text:?} is not a rate limit (expected \"off\" or N/DURATION, e.g. \"200/1s\")")
    };
    let (n, window) = t.split_once('/').ok_or_else(bad)?;
    let requests = n
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(bad)?;
    let window = parse_duration(
        window,
        Duration::from_millis(10)..=Duration::from_secs(3600),
    )?;
    Ok(Some(RateLimitSettings { requests, window }))
}

fn check_pem_certificate(text: &str) -> Result<PathBuf, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let path = PathBuf::from(text);
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read certificate file {text}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file {text} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("certificate file {text} holds no PEM certificate"));
    }
    Ok(path)
}

fn check_pem_key(text: &str) -> Result<PathBuf, String> {
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let path = PathBuf::from(text);
    PrivateKeyDer::from_pem_file(&path)
        .map_err(|e| format!("cannot read a PEM private key from {text}: {e}"))?;
    Ok(path)
}

fn http(root: &mut Section<'_>) -> Option<HttpSettings> {
    let mut s = root.section("http");
    let listen = s.parse("listen", parse_listen);
    s.finish();
    Some(HttpSettings {
        listen: listen.unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], 9560)))),
    })
}

fn audit(root: &mut Section<'_>) -> Option<AuditSettings> {
    let mut s = root.section("audit");
    let path = s
        .parse("path", parse_path)
        .unwrap_or_else(|| PathBuf::from("var/audit.jsonl"));
    let max_segment_size = s
        .parse("max_segment_size", parse_size)
        .unwrap_or(crate::audit::DEFAULT_MAX_SEGMENT_BYTES);
    s.finish();
    Some(AuditSettings {
        path,
        max_segment_size,
    })
}

fn state(root: &mut Section<'_>) -> Option<StateSettings> {
    let mut s = root.section("state");
    let dir = s
        .parse("dir", parse_path)
        .unwrap_or_else(|| PathBuf::from("var/state"));
    s.finish();
    Some(StateSettings { dir })
}

fn daemon(root: &mut Section<'_>) -> Option<DaemonSettings> {
    let mut s = root.section("daemon");
    let secs = |n| Duration::from_secs(n);
    let grace_period = s
        .parse("grace_period", |t| parse_duration(t, secs(1)..=secs(600)))
        .unwrap_or(secs(10));
    let watch = s
        .parse("watch", |t| match t {
            "auto" => Ok(WatchMode::Auto),
            "poll" => Ok(WatchMode::Poll),
            "off" => Ok(WatchMode::Off),
            other => Err(format!(
                "expected \"auto\", \"poll\" or \"off\", found {other:?}"
            )),
        })
        .unwrap_or(WatchMode::Auto);
    let poll_interval = s
        .parse("poll_interval", |t| {
            parse_duration(t, Duration::from_millis(100)..=secs(3600))
        })
        .unwrap_or(secs(2));
    let reconnect_min = s
        .parse("reconnect_min", |t| {
            parse_duration(t, Duration::from_millis(100)..=secs(600))
        })
        .unwrap_or(Duration::from_millis(500));
    let reconnect_max = s
        .parse("reconnect_max", |t| {
            parse_duration(t, Duration::from_millis(100)..=secs(3600))
        })
        .unwrap_or(secs(30));
    let lease_dn = s
        .parse("lease_dn", |t| {
            if t.trim().is_empty() {
                Ok(None)
            } else {
                parse_dn(t).map(Some)
            }
        })
        .unwrap_or(None);
    let lease_duration = s
        .parse("lease_duration", |t| {
            parse_duration(t, secs(2)..=secs(3600))
        })
        .unwrap_or(secs(30));
    let renew = s.string("lease_renew");
    let instance_id = s
        .parse("instance_id", |t| {
            let t = t.trim();
            if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
                Err(format!(
                    "{t:?} is not an instance id (1 to 200 printable characters)"
                ))
            } else {
                Ok(t.to_string())
            }
        })
        .map(Some)
        .unwrap_or(None);
    let issues = s.issues();
    // The holder must renew at least twice per lease period, or one late renewal loses it.
    let lease_renew = match renew {
        None => lease_duration / 3,
        Some((text, item)) => {
            match parse_duration(&text, Duration::from_millis(500)..=secs(3600)) {
                Ok(d) if d.saturating_mul(2) <= lease_duration => d,
                Ok(_) => {
                    item.bad(
                        issues,
                        format!(
                            "{text:?} must be at most half of daemon.lease_duration ({}s), so one late renewal does not lose the lease",
                            lease_duration.as_secs_f64()
                        ),
                    );
                    lease_duration / 3
                }
                Err(e) => {
                    item.bad(issues, e);
                    lease_duration / 3
                }
            }
        }
    };
    let bad_backoff = reconnect_min > reconnect_max;
    s.finish();
    if bad_backoff {
        issues.push(
            "daemon.reconnect_min",
            issues.file_origin(),
            format!(
                "{}ms is longer than daemon.reconnect_max ({}ms)",
                reconnect_min.as_millis(),
                reconnect_max.as_millis()
            ),
        );
    }
    Some(DaemonSettings {
        grace_period,
        watch,
        poll_interval,
        reconnect_min,
        reconnect_max,
        lease_dn,
        lease_duration,
        lease_renew,
        instance_id,
    })
}

// === value parsers: each returns a message that reads well after "key: " ===

fn parse_dn(text: &str) -> Result<Dn, String> {
    Dn::parse(text).map_err(|e| format!("{text:?} is not a valid DN: {e}"))
}

fn parse_fqdn(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a host name (expected e.g. pcpool.contoso.com)"
        ))
    }
}

/// `host:port` socket address, or "" for off.
fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse::<SocketAddr>().map(Some).map_err(|_| {
        format!("{text:?} is not a socket address (expected IP:PORT such as 127.0.0.1:5060 or [::1]:5060, or \"\" for off)")
    })
}

fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        Err("path is empty".to_string())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Smallest and largest `audit.max_segment_size`.
const SEGMENT_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 40);

/// A size in bytes: a bare number, or with a unit `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or
/// `KB`, `MB`, `GB` (powers of 1000).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 64MiB, 500KB or bytes)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (expected B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(factor)
        .filter(|b| SEGMENT_SIZE_RANGE.contains(b))
        .ok_or_else(|| format!("{text:?} is out of range (1KiB..=1024GiB)"))?;
    Ok(bytes)
}

/// `10s`, `500ms`, `5m`, `1h`, `1d`; a bare number is seconds.
pub(crate) fn parse_duration(
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 500ms, 10s, 5m, 1h)"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (expected ms, s, m, h or d)"
            ));
        }
    };
    if !range.contains(&d) {
        return Err(format!(
            "{text:?} is out of range ({:?}..={:?})",
            range.start(),
            range.end()
        ));
    }
    Ok(d)
}

fn check_ca_file(text: &str) -> Result<PathBuf, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let path = PathBuf::from(text);
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read CA file {text}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {text} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {text} holds no PEM certificate"));
    }
    Ok(path)
}

fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!("password file {} is empty", path.display()));
    }
    Ok(Secret::new(password.to_string()))
}

fn is_attr_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests;
