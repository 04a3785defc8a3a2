//! One function per configuration section: take its keys from the tree, parse each with a
//! value parser, check the keys against each other, and build its part of [`Settings`].
//!
//! A section that cannot be built returns `None` after pushing its issues; `validate` then
//! reports every issue of every section together. Defaults live here, next to the key they
//! belong to, and match `config/pcsync.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::SipUri;
use crate::plan::desired::{Layout, Migration, Pool, Retire};

use super::reader::{Issues, Item, Section};
use super::settings::{
    AuditSettings, BindCredentials, ContactTransport, DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_SERVER_HEADER, DaemonSettings, DirectorySettings, HttpSettings, RedirectorSettings,
    RedirectorTls, Safety, Schedule, Settings, StateSettings, WatchMode,
};
use super::time::{DEFAULT_CRON, parse_duration_within, parse_rfc3339, validate_cron};
use super::values::{
    LdapScheme, LdapUrl, PasswordSource, Secret, check_ca_file, check_pem_certificate,
    check_pem_key, is_attr_name, parse_display_name, parse_dn, parse_fqdn, parse_instance_id,
    parse_listen, parse_optional_dn, parse_owner_urn, parse_path, parse_rate_limit,
    parse_server_header, parse_size, password_from, read_password_file,
};
use super::{ConfigError, Env, Resolved, estate};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Walks the resolved tree into [`Settings`], or every problem found on the way.
pub(super) fn validate(resolved: Resolved, env: &Env) -> Result<Settings, ConfigError> {
    let Resolved { tree, issues, path } = resolved;
    let mut root = Section::root(tree, &issues);

    let directory = directory(&mut root, env);
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
        path,
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

// === [directory] ===

/// `[directory]` and its `[directory.layout]`.
fn directory(root: &mut Section<'_>, env: &Env) -> Option<(DirectorySettings, Layout)> {
    let mut s = root.section("directory");
    let urls = urls(&mut s);
    let starttls = s.bool("starttls", false);
    let tls_ca_file = s.parse("tls_ca_file", check_ca_file);
    let bind = bind_credentials(&mut s, env);
    let base_dn = s.parse_required("base_dn", parse_dn);
    let page_size = s.uint("page_size", 500, 1..=100_000) as u32;
    let timeout = s
        .parse("timeout", |t| {
            parse_duration_within(t, millis(1)..=secs(3600))
        })
        .unwrap_or(secs(10));
    let allow_insecure = s.bool("allow_insecure", false);
    if let (Some((urls, item)), Some(Some(_))) = (&urls, &bind)
        && !starttls
        && !allow_insecure
    {
        refuse_plain_text_bind(urls, item, s.issues());
    }
    let estate = estate::estate_keys(
        &mut s,
        urls.as_ref(),
        !matches!(bind, Some(None)),
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
            bind: bind.flatten(),
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

/// `url`: one URL or a list, at least one, every one valid.
fn urls(s: &mut Section<'_>) -> Option<(Vec<LdapUrl>, Item)> {
    let issues = s.issues();
    let Some((list, item)) = s.list("url") else {
        issues.push(
            "directory.url",
            issues.file_origin(),
            "required key is missing",
        );
        return None;
    };
    if list.is_empty() {
        item.bad(issues, "needs at least one ldap:// or ldaps:// URL");
        return None;
    }
    let mut urls = Vec::new();
    for text in &list {
        match LdapUrl::parse(text.trim()) {
            Ok(u) => urls.push(u),
            Err(e) => item.bad(issues, e),
        }
    }
    (urls.len() == list.len()).then_some((urls, item))
}

/// `bind_dn` with its password source: `Some(None)` binds anonymously, `None` means a problem
/// was reported.
fn bind_credentials(s: &mut Section<'_>, env: &Env) -> Option<Option<BindCredentials>> {
    let issues = s.issues();
    let dn = s
        .string("bind_dn")
        .map(|(text, item)| parse_dn(&text).map_err(|e| item.bad(issues, e)).ok());
    let password = bind_password(s, env);
    match (dn, password) {
        (Some(Some(dn)), Some(Some((password, password_source)))) => Some(Some(BindCredentials {
            dn,
            password,
            password_source,
        })),
        (None, Some(None)) => Some(None),
        // Reported where it was found: a bad DN, or an unreadable password source.
        (Some(None), _) | (_, None) => None,
        (Some(Some(_)), Some(None)) => {
            issues.push(
                "directory.bind_password_file",
                issues.file_origin(),
                "bind_dn is set but no password source: set bind_password_file or bind_password_env",
            );
            None
        }
        (None, Some(Some(_))) => {
            issues.push(
                "directory.bind_dn",
                issues.file_origin(),
                "a bind password is configured but bind_dn is missing",
            );
            None
        }
    }
}

/// The password from `bind_password_file` or the variable `bind_password_env` names (never
/// from the file itself): `Some(None)` when neither is set, `None` when a problem was reported.
fn bind_password(s: &mut Section<'_>, env: &Env) -> Option<Option<(Secret, PasswordSource)>> {
    let issues = s.issues();
    if let Some(item) = s.take_unlisted("bind_password") {
        item.bad(
            issues,
            "passwords are never read from the config file; use bind_password_file or bind_password_env",
        );
    }
    let from_file = s.string("bind_password_file");
    let from_env = s.string("bind_password_env");
    let read = match (from_file, from_env) {
        (None, None) => return Some(None),
        (Some(_), Some((_, item))) => {
            item.bad(
                issues,
                "set bind_password_file or bind_password_env, not both",
            );
            return None;
        }
        (Some((path, item)), None) => (read_password_file(Path::new(&path)), item),
        (None, Some((var, item))) => (password_from_env(env, &var), item),
    };
    match read {
        (Ok(secret), _) => Some(Some(secret)),
        (Err(e), item) => {
            item.bad(issues, e);
            None
        }
    }
}

fn password_from_env(env: &Env, var: &str) -> Result<(Secret, PasswordSource), String> {
    match env.var(var) {
        Ok(p) => password_from(&p, format!("environment variable {var}")),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "environment variable {var} is not valid UTF-8 (a password is text)"
        )),
    }
}

/// A simple bind over plain `ldap://` sends the password in clear: only loopback may have it
/// unless the administrator says otherwise.
fn refuse_plain_text_bind(urls: &[LdapUrl], item: &Item, issues: &Issues) {
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

fn layout(s: &mut Section<'_>) -> Option<Layout> {
    let user_classes = object_classes(s, "user_classes", &["user", "inetOrgPerson"]);
    let contact_classes = object_classes(s, "contact_classes", &["contact"]);
    let endpoint_object_classes = object_classes(
        s,
        "endpoint_object_classes",
        &["top", "person", "organizationalPerson", "contact"],
    );
    let endpoint_container = s.parse_required("endpoint_container", parse_dn);
    let owner_urn = s
        .parse("owner_urn", parse_owner_urn)
        .unwrap_or_else(|| "urn:application:persistentchat".to_string());
    Some(Layout {
        user_classes,
        contact_classes,
        endpoint_object_classes,
        endpoint_container: endpoint_container?,
        owner_urn,
    })
}

/// A non-empty list of objectClass names, or `default` when the key is absent.
fn object_classes(s: &mut Section<'_>, key: &'static str, default: &[&str]) -> Vec<String> {
    match s.list(key) {
        None => default.iter().map(|c| (*c).to_string()).collect(),
        Some((list, item)) => {
            if list.is_empty() || list.iter().any(|c| !is_attr_name(c)) {
                item.bad(s.issues(), "expected a non-empty list of objectClass names");
            }
            list
        }
    }
}

// === [[pools]] and [[migrations]] ===

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
            target_pool(&name, pools)
                .map_err(|e| item.bad(s.issues(), e))
                .ok()
        });
        let legacy_home_server_dn = s.parse("legacy_home_server_dn", parse_dn);
        let not_before = s.parse("not_before", parse_rfc3339);
        let display_name = s.parse("display_name", parse_display_name);
        let enable_endpoint = s.bool("enable_endpoint", false);
        s.finish();
        match (uri, target) {
            (Some(well_known_uri), Some(target_pool)) => out.push(Migration {
                well_known_uri,
                target_pool,
                legacy_home_server_dn,
                not_before,
                display_name,
                enable_endpoint,
            }),
            _ => complete = false,
        }
    }
    complete.then_some(out)
}

/// The configured pool `name` refers to, spelled as configured.
fn target_pool(name: &str, pools: &[Pool]) -> Result<String, String> {
    if let Some(p) = pools.iter().find(|p| p.fqdn.eq_ignore_ascii_case(name)) {
        return Ok(p.fqdn.clone());
    }
    let known: Vec<&str> = pools.iter().map(|p| p.fqdn.as_str()).collect();
    Err(format!(
        "{name:?} is not a configured pool (configured: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

// === [safety] and [schedule] ===

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

// === [redirector], [http], [audit], [state] ===

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
    let tls = redirector_tls(&mut s);
    let server_header = s
        .parse("server_header", parse_server_header)
        .unwrap_or_else(|| DEFAULT_SERVER_HEADER.to_string());
    let tcp_max_connections = s.uint("tcp_max_connections", 1024, 1..=1_000_000) as u32;
    let tcp_idle_timeout = s
        .parse("tcp_idle_timeout", |t| {
            parse_duration_within(t, secs(1)..=secs(86_400))
        })
        .unwrap_or(secs(300));
    let max_message_size = s.uint("max_message_size", 65_536, 1024..=1_048_576) as u32;
    let rate_limit = s.parse("rate_limit", parse_rate_limit).unwrap_or(None);
    let udp_workers = s.uint("udp_workers", 2, 1..=64) as u32;
    s.finish();
    let loopback = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
    Some(RedirectorSettings {
        udp: udp.unwrap_or(loopback(5060)),
        tcp: tcp.unwrap_or(loopback(5060)),
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

/// The TLS listener: on when both `tls_cert` and `tls_key` are set, unless `tls_listen = ""`.
fn redirector_tls(s: &mut Section<'_>) -> Option<RedirectorTls> {
    let tls_listen = s.parse("tls_listen", parse_listen);
    let tls_cert = s.parse("tls_cert", check_pem_certificate);
    let tls_key = s.parse("tls_key", check_pem_key);
    let issues = s.issues();
    let half = |key: &str, message: &str| {
        issues.push(key, issues.file_origin(), message);
        None
    };
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => match tls_listen {
            Some(None) => None,
            Some(Some(listen)) => Some(RedirectorTls { listen, cert, key }),
            None => Some(RedirectorTls {
                listen: SocketAddr::from(([127, 0, 0, 1], 5061)),
                cert,
                key,
            }),
        },
        (Some(_), None) => half(
            "redirector.tls_key",
            "tls_cert is set but tls_key is not: set both to enable the TLS listener",
        ),
        (None, Some(_)) => half(
            "redirector.tls_cert",
            "tls_key is set but tls_cert is not: set both to enable the TLS listener",
        ),
        (None, None) => {
            if let Some(Some(addr)) = tls_listen {
                half(
                    "redirector.tls_listen",
                    &format!("{addr} is set but tls_cert and tls_key are not"),
                )
            } else {
                None
            }
        }
    }
}

fn http(root: &mut Section<'_>) -> Option<HttpSettings> {
    let mut s = root.section("http");
    let listen = s.parse("listen", parse_listen);
    let max_connections = s.uint("max_connections", 64, 1..=4096) as u32;
    let header_timeout = s
        .parse("header_timeout", |t| {
            parse_duration_within(t, millis(100)..=secs(600))
        })
        .unwrap_or(secs(5));
    let request_timeout = s
        .parse("request_timeout", |t| {
            parse_duration_within(t, millis(100)..=secs(600))
        })
        .unwrap_or(secs(10));
    s.finish();
    Some(HttpSettings {
        listen: listen.unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], 9560)))),
        max_connections,
        header_timeout,
        request_timeout,
    })
}

fn audit(root: &mut Section<'_>) -> Option<AuditSettings> {
    let mut s = root.section("audit");
    let path = s
        .parse("path", parse_path)
        .unwrap_or_else(|| PathBuf::from("var/audit.jsonl"));
    let max_segment_size = s
        .parse("max_segment_size", parse_size)
        .unwrap_or(DEFAULT_MAX_SEGMENT_BYTES);
    let key_file = s.parse("key_file", parse_path);
    s.finish();
    Some(AuditSettings {
        path,
        max_segment_size,
        key_file,
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

// === [daemon] ===

fn daemon(root: &mut Section<'_>) -> Option<DaemonSettings> {
    let mut s = root.section("daemon");
    let grace_period = s
        .parse("grace_period", |t| {
            parse_duration_within(t, secs(1)..=secs(600))
        })
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
            parse_duration_within(t, millis(100)..=secs(3600))
        })
        .unwrap_or(secs(2));
    let (reconnect_min, reconnect_max) = reconnect_backoff(&mut s);
    let lease_dn = s.parse("lease_dn", parse_optional_dn).unwrap_or(None);
    let lease_duration = s
        .parse("lease_duration", |t| {
            parse_duration_within(t, secs(2)..=secs(3600))
        })
        .unwrap_or(secs(30));
    let lease_renew = lease_renew(&mut s, lease_duration);
    let instance_id = s.parse("instance_id", parse_instance_id);
    let watch_timeout = s
        .parse("watch_timeout", |t| {
            parse_duration_within(t, secs(1)..=secs(3600))
        })
        .unwrap_or(secs(30));
    let max_restarts = s.uint("max_restarts", 5, 0..=1000) as u32;
    let restart_window = s
        .parse("restart_window", |t| {
            parse_duration_within(t, secs(1)..=secs(86_400))
        })
        .unwrap_or(secs(600));
    s.finish();
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
        watch_timeout,
        max_restarts,
        restart_window,
    })
}

/// `reconnect_min` and `reconnect_max`, the first no longer than the second.
fn reconnect_backoff(s: &mut Section<'_>) -> (Duration, Duration) {
    let reconnect_min = s
        .parse("reconnect_min", |t| {
            parse_duration_within(t, millis(100)..=secs(600))
        })
        .unwrap_or(millis(500));
    let reconnect_max = s
        .parse("reconnect_max", |t| {
            parse_duration_within(t, millis(100)..=secs(3600))
        })
        .unwrap_or(secs(30));
    if reconnect_min > reconnect_max {
        let issues = s.issues();
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
    (reconnect_min, reconnect_max)
}

/// `lease_renew`, default a third of the lease. The holder must renew at least twice per lease
/// period, or one late renewal loses it.
fn lease_renew(s: &mut Section<'_>, lease_duration: Duration) -> Duration {
    let default = lease_duration / 3;
    let Some((text, item)) = s.string("lease_renew") else {
        return default;
    };
    match parse_duration_within(&text, millis(500)..=secs(3600)) {
        Ok(d) if d.saturating_mul(2) <= lease_duration => d,
        Ok(_) => {
            item.bad(
                s.issues(),
                format!(
                    "{text:?} must be at most half of daemon.lease_duration ({}s), so one late renewal does not lose the lease",
                    lease_duration.as_secs_f64()
                ),
            );
            default
        }
        Err(e) => {
            item.bad(s.issues(), e);
            default
        }
    }
}
