//! Config parsing from structured TOML: `arbitrary` builds a config with the real sections and
//! keys, each value either a known-good sample or arbitrary text/number, so the fuzzer reaches
//! the validation of every key rather than stopping at TOML syntax. `from_toml_str` must never
//! panic; errors are one-line messages that name a key; a config that loads round-trips its
//! well-known URIs and DNs.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// A string value: a good sample (index into a list) or anything.
#[derive(Arbitrary, Debug)]
enum S {
    Good(u8),
    Any(String),
}

/// A value of any TOML type.
#[derive(Arbitrary, Debug)]
enum V {
    Str(S),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<S>),
}

#[derive(Arbitrary, Debug)]
struct Pool {
    fqdn: S,
    home_server_dn: S,
}

#[derive(Arbitrary, Debug)]
struct Migration {
    well_known_uri: S,
    target_pool: S,
    legacy_home_server_dn: Option<S>,
    not_before: Option<S>,
}

#[derive(Arbitrary, Debug)]
struct Config {
    url: V,
    bind_dn: Option<S>,
    base_dn: S,
    page_size: V,
    timeout: V,
    starttls: Option<V>,
    user_classes: V,
    endpoint_container: S,
    owner_urn: Option<S>,
    pools: Vec<Pool>,
    migrations: Vec<Migration>,
    max_changes_per_run: V,
    retire: V,
    auto_apply: V,
    cron: V,
    udp: Option<V>,
    tcp: Option<V>,
    contact_port: Option<V>,
    contact_transport: Option<V>,
    audit_path: Option<V>,
    /// Extra keys in any section (unknown keys must be reported, not ignored or fatal).
    extra: Vec<(u8, String, V)>,
}

const GOOD: &[&str] = &[
    "ldap://127.0.0.1:3389",
    "ldaps://dc1.contoso.com",
    "cn=admin,dc=contoso,dc=com",
    "dc=contoso,dc=com",
    "cn=Application Contacts,cn=RTC Service,cn=Services,cn=Configuration,dc=contoso,dc=com",
    "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
    "pcpool1.contoso.com",
    "sip:ocschat@contoso.com",
    "10s",
    "0 */15 * * * *",
    "delete",
    "disable",
    "127.0.0.1:5060",
    "[::1]:5060",
    "tls",
    "tcp",
    "2026-01-01T00:00:00Z",
    "urn:application:persistentchat",
    "user",
    "var/audit.jsonl",
];

fn s(v: &S) -> String {
    match v {
        S::Good(i) => quote(GOOD[*i as usize % GOOD.len()]),
        S::Any(t) => quote(t),
    }
}

fn v(v: &V) -> String {
    match v {
        V::Str(x) => s(x),
        V::Int(i) => i.to_string(),
        V::Float(f) if f.is_finite() => format!("{f:?}"),
        V::Float(_) => "nan".into(),
        V::Bool(b) => b.to_string(),
        V::List(xs) => format!("[{}]", xs.iter().map(s).collect::<Vec<_>>().join(", ")),
    }
}

/// A TOML basic string: every character that needs it escaped.
fn quote(t: &str) -> String {
    let mut out = String::from("\"");
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bare-or-quoted TOML key.
fn key(t: &str) -> String {
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        t.to_string()
    } else {
        quote(t)
    }
}

const SECTIONS: &[&str] = &[
    "directory", "directory.layout", "safety", "schedule", "redirector", "audit", "http", "state",
];

fn render(c: &Config) -> String {
    let mut sections: Vec<(String, Vec<String>)> = SECTIONS
        .iter()
        .map(|n| (n.to_string(), Vec::new()))
        .collect();
    let mut put = |section: usize, k: &str, value: String| {
        sections[section].1.push(format!("{} = {value}", key(k)));
    };
    put(0, "url", v(&c.url));
    if let Some(b) = &c.bind_dn {
        put(0, "bind_dn", s(b));
    }
    put(0, "base_dn", s(&c.base_dn));
    put(0, "page_size", v(&c.page_size));
    put(0, "timeout", v(&c.timeout));
    if let Some(x) = &c.starttls {
        put(0, "starttls", v(x));
    }
    put(1, "user_classes", v(&c.user_classes));
    put(1, "endpoint_container", s(&c.endpoint_container));
    if let Some(x) = &c.owner_urn {
        put(1, "owner_urn", s(x));
    }
    put(2, "max_changes_per_run", v(&c.max_changes_per_run));
    put(2, "retire", v(&c.retire));
    put(2, "auto_apply", v(&c.auto_apply));
    put(3, "cron", v(&c.cron));
    for (k, x) in [
        ("udp", &c.udp),
        ("tcp", &c.tcp),
        ("contact_port", &c.contact_port),
        ("contact_transport", &c.contact_transport),
    ] {
        if let Some(x) = x {
            put(4, k, v(x));
        }
    }
    if let Some(x) = &c.audit_path {
        put(5, "path", v(x));
    }
    for (section, k, x) in &c.extra {
        put(*section as usize % SECTIONS.len(), k, v(x));
    }
    let mut out = String::new();
    for (name, lines) in &sections {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("[{name}]\n"));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    for p in &c.pools {
        out.push_str(&format!(
            "[[pools]]\nfqdn = {}\nhome_server_dn = {}\n",
            s(&p.fqdn),
            s(&p.home_server_dn)
        ));
    }
    for m in &c.migrations {
        out.push_str(&format!(
            "[[migrations]]\nwell_known_uri = {}\ntarget_pool = {}\n",
            s(&m.well_known_uri),
            s(&m.target_pool)
        ));
        if let Some(x) = &m.legacy_home_server_dn {
            out.push_str(&format!("legacy_home_server_dn = {}\n", s(x)));
        }
        if let Some(x) = &m.not_before {
            out.push_str(&format!("not_before = {}\n", s(x)));
        }
    }
    out
}

fuzz_target!(|c: Config| {
    let text = render(&c);
    match pcsync::config::from_toml_str(&text, "fuzz.toml", Some(Default::default())) {
        Err(e) => {
            for line in e.lines() {
                assert!(!line.is_empty());
                assert!(!line.contains('\n'), "multi-line error: {line:?}");
            }
        }
        Ok(settings) => {
            for m in &settings.migrations {
                assert!(settings.pool(&m.target_pool).is_some(), "target pool is configured");
                let again = pcsync::model::SipUri::parse(m.well_known_uri.as_str()).unwrap();
                assert_eq!(again, m.well_known_uri);
            }
            let base = pcsync::model::Dn::parse(settings.directory.base_dn.as_str()).unwrap();
            assert_eq!(base, settings.directory.base_dn);
        }
    }
});
