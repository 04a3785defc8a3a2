//! Every configuration error path, each checked for a readable one-line message.

use super::settings::{BindCredentials, DEFAULT_SERVER_HEADER};
use super::time::DEFAULT_CRON;
use super::values::RateLimitSettings;
use super::*;
use crate::model::Dn;
use crate::plan::desired::Retire;
use chrono::TimeZone;
use std::io::Write;
use std::time::Duration;

const NAME: &str = "pcsync.toml";

/// A complete, valid configuration; `{pw}` is replaced with a password file path.
const VALID: &str = r#"
[directory]
url = "ldap://127.0.0.1:389"
bind_dn = "cn=admin,dc=contoso,dc=com"
bind_password_file = "{pw}"
base_dn = "dc=contoso,dc=com"

[directory.layout]
endpoint_container = "cn=Application Contacts,cn=RTC Service,cn=Services,cn=Configuration,dc=contoso,dc=com"

[[pools]]
fqdn = "pcpool1.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"

[[migrations]]
well_known_uri = "sip:ocschat@contoso.com"
target_pool = "PCPOOL1.contoso.com"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    pw: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let mut f = std::fs::File::create(&pw).unwrap();
    writeln!(f, "s3cr3t-Pa55").unwrap();
    Fixture {
        pw: pw.display().to_string(),
        _dir: dir,
    }
}

fn env(pairs: &[(&str, &str)]) -> Option<Map<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    )
}

pub(super) fn load(text: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    from_toml_str(text, NAME, env(vars))
}

/// The issue lines of a config that must fail.
pub(super) fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.lines(),
    }
}

fn valid(f: &Fixture) -> String {
    VALID.replace("{pw}", &f.pw)
}

/// `valid` with `line` inserted after the `[section]` header.
fn with(f: &Fixture, section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    let text = valid(f);
    if text.contains(&header) {
        text.replacen(&header, &format!("{header}{line}\n"), 1)
    } else {
        format!("{text}\n{header}{line}\n")
    }
}

#[test]
fn a_valid_file_loads_with_defaults() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    assert_eq!(s.directory.urls[0].to_string(), "ldap://127.0.0.1:389");
    assert_eq!(s.directory.page_size, 500);
    assert_eq!(s.directory.timeout, Duration::from_secs(10));
    assert!(!s.directory.starttls);
    let bind = s.directory.bind.as_ref().unwrap();
    assert_eq!(bind.password.expose(), "s3cr3t-Pa55");
    assert_eq!(s.layout.user_classes, ["user", "inetOrgPerson"]);
    assert_eq!(s.layout.owner_urn, "urn:application:persistentchat");
    assert_eq!(s.migrations[0].target_pool, "pcpool1.contoso.com");
    assert_eq!(s.safety.max_changes_per_run, 10);
    assert_eq!(s.safety.retire, Retire::Delete);
    assert!(!s.safety.auto_apply);
    assert_eq!(s.schedule.cron, DEFAULT_CRON);
    assert_eq!(s.redirector.contact_port, 5061);
    assert_eq!(s.redirector.contact_transport, ContactTransport::Tls);
    assert_eq!(s.audit.path, PathBuf::from("var/audit.jsonl"));
    assert_eq!(s.audit.max_segment_size, 64 * 1024 * 1024);
    assert_eq!(s.state.dir, PathBuf::from("var/state"));
    assert!(
        s.pool_by_home_server(
            &Dn::parse("cn=lc services,cn=microsoft,cn=1:2,cn=pools,cn=rtc service,cn=services,cn=configuration,dc=contoso,dc=com")
                .unwrap()
        )
        .is_some()
    );
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t-Pa55"));
    assert!(debug.contains("redacted"));
}

#[test]
fn an_unknown_key_is_rejected_with_file_key_and_hint() {
    let f = fixture();
    let errs = errors(&with(&f, "directory", "urll = \"x\""), &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "pcsync.toml: directory.urll: unknown key (did you mean `url`?); expected one of:"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn unknown_sections_and_nested_keys_are_rejected() {
    let f = fixture();
    let text = format!(
        "{}\n[bogus]\nx = 1\n",
        with(&f, "directory.layout", "colour = \"red\"")
    );
    let errs = errors(&text, &[]);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pcsync.toml: bogus: unknown key")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pcsync.toml: directory.layout.colour: unknown key")),
        "{errs:?}"
    );
}

#[test]
fn environment_overrides_apply_and_name_their_variable_on_error() {
    let f = fixture();
    let s = load(&valid(&f), &[("PCSYNC__DIRECTORY__PAGE_SIZE", "200")]).unwrap();
    assert_eq!(s.directory.page_size, 200);

    let errs = errors(&valid(&f), &[("PCSYNC__DIRECTORY__PAGE_SIZE", "abc")]);
    assert_eq!(
        errs,
        [
            "environment variable PCSYNC__DIRECTORY__PAGE_SIZE: directory.page_size: expected a whole number (digits only), found \"abc\""
        ]
    );
}

#[test]
fn an_unknown_environment_variable_is_rejected() {
    let f = fixture();
    let errs = errors(&valid(&f), &[("PCSYNC__DIRECTORY__URLL", "ldap://x")]);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "environment variable PCSYNC__DIRECTORY__URLL: directory.urll: unknown key"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn single_underscore_variables_are_not_config_keys() {
    // PCSYNC_CONFIG names the file; it must not become a key called "config".
    let f = fixture();
    load(
        &valid(&f),
        &[
            ("PCSYNC_CONFIG", "/etc/pcsync.toml"),
            ("PCSYNC_LOG", "debug"),
        ],
    )
    .unwrap();
}

#[test]
fn an_environment_url_list_is_split_on_commas() {
    let f = fixture();
    let s = load(
        &valid(&f),
        &[(
            "PCSYNC__DIRECTORY__URL",
            "ldap://127.0.0.1:1389, ldap://[::1]:2389",
        )],
    )
    .unwrap();
    let urls: Vec<String> = s.directory.urls.iter().map(ToString::to_string).collect();
    assert_eq!(urls, ["ldap://127.0.0.1:1389", "ldap://[::1]:2389"]);
}

#[test]
fn dns_from_the_environment_are_not_split() {
    let f = fixture();
    let s = load(
        &valid(&f),
        &[("PCSYNC__DIRECTORY__BASE_DN", "ou=Sales,dc=contoso,dc=com")],
    )
    .unwrap();
    assert_eq!(s.directory.base_dn.as_str(), "ou=Sales,dc=contoso,dc=com");
}

#[test]
fn all_errors_are_reported_together() {
    let f = fixture();
    let text = valid(&f)
        .replace("ldap://127.0.0.1:389", "http://dc1")
        .replace(
            "dc=contoso,dc=com\"\n\n[directory.layout]",
            "nonsense\"\n\n[directory.layout]",
        )
        + "\n[schedule]\ncron = \"*/5 * * * *\"\n[safety]\nretire = \"shred\"\n";
    let errs = errors(&text, &[("PCSYNC__HTTP__LISTEN", "localhost")]);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("directory.url: \"http://dc1\" is not an ldap:// or ldaps:// URL"))
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("directory.base_dn: \"nonsense\" is not a valid DN"))
    );
    assert!(errs.iter().any(|e| e.contains("schedule.cron: \"*/5 * * * *\" has 5 fields; pcsync needs 6 with seconds first, e.g. \"0 */5 * * * *\"")));
    assert!(
        errs.iter()
            .any(|e| e
                .contains("safety.retire: expected \"delete\" or \"disable\", found \"shred\""))
    );
    assert!(errs.iter().any(|e| e.starts_with("environment variable PCSYNC__HTTP__LISTEN: http.listen: \"localhost\" is not a socket address")));
}

#[test]
fn required_keys_are_named_when_missing() {
    let errs = errors("[directory]\n", &[]);
    assert!(
        errs.contains(&"pcsync.toml: directory.url: required key is missing".to_string()),
        "{errs:?}"
    );
    assert!(errs.contains(&"pcsync.toml: directory.base_dn: required key is missing".to_string()));
    assert!(errs.contains(
        &"pcsync.toml: directory.layout.endpoint_container: required key is missing".to_string()
    ));
}

#[test]
fn urls_are_validated() {
    for (url, want) in [
        ("ldap://", "has no host"),
        ("ldap://dc1:99999", "invalid port"),
        ("ldap://dc1/dc=x", "only scheme://host[:port] is supported"),
        ("ldap://[::1", "unclosed `[`"),
        ("ldap://dc 1", "invalid host"),
    ] {
        let e = LdapUrl::parse(url).unwrap_err();
        assert!(e.contains(want), "{url}: {e}");
    }
    let u = LdapUrl::parse("LDAPS://DC1.contoso.com").unwrap();
    assert_eq!((u.scheme, u.port), (LdapScheme::Ldaps, 636));
    assert!(LdapUrl::parse("ldap://[::1]:1389").unwrap().is_loopback());
    assert!(LdapUrl::parse("ldap://localhost").unwrap().is_loopback());
    assert!(!LdapUrl::parse("ldap://10.0.0.1").unwrap().is_loopback());
}

#[test]
fn plain_text_bind_to_a_remote_host_is_refused_unless_protected_or_allowed() {
    let f = fixture();
    let remote = valid(&f).replace("ldap://127.0.0.1:389", "ldap://dc1.contoso.com");
    let errs = errors(&remote, &[]);
    assert_eq!(
        errs,
        [
            "pcsync.toml: directory.url: ldap://dc1.contoso.com:389 would send the bind password in clear text to a non-loopback host; use ldaps://, set starttls = true, or set allow_insecure = true"
        ]
    );
    load(
        &remote.replace("[directory]\n", "[directory]\nstarttls = true\n"),
        &[],
    )
    .unwrap();
    load(
        &remote.replace("[directory]\n", "[directory]\nallow_insecure = true\n"),
        &[],
    )
    .unwrap();
    load(&remote.replace("ldap://dc1", "ldaps://dc1"), &[]).unwrap();
}

#[test]
fn an_inline_password_is_refused() {
    let f = fixture();
    let errs = errors(&with(&f, "directory", "bind_password = \"hunter2\""), &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("directory.bind_password: passwords are never read from the config file")
    );
    assert!(!errs[0].contains("hunter2"));
}

#[test]
fn password_sources_are_checked() {
    let f = fixture();
    let missing = valid(&f).replace(&f.pw, "/nonexistent/pw");
    let errs = errors(&missing, &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with(
        "pcsync.toml: directory.bind_password_file: cannot read password file /nonexistent/pw:"
    ));

    let both = with(&f, "directory", "bind_password_env = \"PW\"");
    assert!(
        errors(&both, &[])[0].contains("set bind_password_file or bind_password_env, not both")
    );

    let unset_var = valid(&f).replace(
        &format!("bind_password_file = \"{}\"", f.pw),
        "bind_password_env = \"PCSYNC_TEST_SURELY_UNSET_VARIABLE\"",
    );
    assert_eq!(
        errors(&unset_var, &[]),
        [
            "pcsync.toml: directory.bind_password_env: environment variable PCSYNC_TEST_SURELY_UNSET_VARIABLE is not set"
        ]
    );

    let no_password = valid(&f).replace(&format!("bind_password_file = \"{}\"\n", f.pw), "");
    assert_eq!(
        errors(&no_password, &[]),
        [
            "pcsync.toml: directory.bind_password_file: bind_dn is set but no password source: set bind_password_file or bind_password_env"
        ]
    );
}

#[test]
fn the_ca_file_must_hold_a_certificate() {
    let f = fixture();
    let errs = errors(
        &with(&f, "directory", "tls_ca_file = \"/nonexistent/ca.pem\""),
        &[],
    );
    assert!(
        errs[0].contains("directory.tls_ca_file: cannot read CA file /nonexistent/ca.pem"),
        "{errs:?}"
    );
    let not_pem = with(&f, "directory", &format!("tls_ca_file = \"{}\"", f.pw));
    assert!(errors(&not_pem, &[])[0].contains("holds no PEM certificate"));
}

#[test]
fn types_are_checked() {
    let f = fixture();
    let errs = errors(&with(&f, "directory", "starttls = \"yes\""), &[]);
    assert_eq!(
        errs,
        ["pcsync.toml: directory.starttls: expected true or false, found \"yes\""]
    );
    let errs = errors(&with(&f, "directory", "page_size = 0"), &[]);
    assert_eq!(
        errs,
        ["pcsync.toml: directory.page_size: 0 is out of range (1..=100000)"]
    );
    let errs = errors(
        &with(&f, "directory", "base_dn = [1]").replace("base_dn = \"dc=contoso,dc=com\"\n", ""),
        &[],
    );
    assert_eq!(
        errs,
        ["pcsync.toml: directory.base_dn: expected a string, found a list"]
    );
    let errs = errors(
        &with(&f, "directory.layout", "user_classes = [\"user\", 3]"),
        &[],
    );
    assert_eq!(
        errs,
        [
            "pcsync.toml: directory.layout.user_classes: element 1: expected a string, found number 3"
        ]
    );
}

#[test]
fn durations_are_checked() {
    let f = fixture();
    let s = load(&with(&f, "directory", "timeout = \"1500ms\""), &[]).unwrap();
    assert_eq!(s.directory.timeout, Duration::from_millis(1500));
    let errs = errors(&with(&f, "directory", "timeout = \"10 parsecs\""), &[]);
    assert_eq!(
        errs,
        [
            "pcsync.toml: directory.timeout: \"10 parsecs\": unknown unit \"parsecs\" (expected ms, s, m, h, d or w)"
        ]
    );
    let errs = errors(&with(&f, "directory", "timeout = \"2d\""), &[]);
    assert!(errs[0].contains("is out of range"), "{errs:?}");
    let errs = errors(&with(&f, "directory", "timeout = \"soon\""), &[]);
    assert!(errs[0].contains("\"soon\" is not a duration"), "{errs:?}");
}

#[test]
fn cron_expressions_are_checked_at_load() {
    let f = fixture();
    let ok = format!("{}\n[schedule]\ncron = \"*/1 * * * * *\"\n", valid(&f));
    assert_eq!(load(&ok, &[]).unwrap().schedule.cron, "*/1 * * * * *");
    let bad = format!("{}\n[schedule]\ncron = \"0 61 * * * *\"\n", valid(&f));
    let errs = errors(&bad, &[]);
    assert!(
        errs[0].starts_with(
            "pcsync.toml: schedule.cron: \"0 61 * * * *\" is not a valid cron expression"
        ),
        "{errs:?}"
    );
    let few = format!("{}\n[schedule]\ncron = \"0 *\"\n", valid(&f));
    assert!(errors(&few, &[])[0].contains("has 2 fields"));
}

#[test]
fn listeners_accept_ipv4_ipv6_or_off() {
    let f = fixture();
    let text = format!(
        "{}\n[redirector]\nudp = \"[::1]:5070\"\ntcp = \"\"\n",
        valid(&f)
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.redirector.udp.unwrap().to_string(), "[::1]:5070");
    assert!(s.redirector.tcp.is_none());
    let bad = format!(
        "{}\n[redirector]\ncontact_transport = \"sctp\"\n",
        valid(&f)
    );
    assert_eq!(
        errors(&bad, &[]),
        [
            "pcsync.toml: redirector.contact_transport: expected \"udp\", \"tcp\" or \"tls\", found \"sctp\""
        ]
    );
}

#[test]
fn redirector_defaults_and_limits() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    let r = &s.redirector;
    assert!(r.tls.is_none());
    assert_eq!(r.server_header, DEFAULT_SERVER_HEADER);
    assert_eq!(r.tcp_max_connections, 1024);
    assert_eq!(r.tcp_idle_timeout, Duration::from_secs(300));
    assert_eq!(r.max_message_size, 65_536);
    assert_eq!(r.rate_limit, None);
    assert_eq!(r.udp_workers, 2);
    let text = format!(
        "{}\n[redirector]\nserver_header = \"RTC/5.0\"\ntcp_max_connections = 10\ntcp_idle_timeout = \"30s\"\nmax_message_size = 4096\nrate_limit = \"200/2s\"\nudp_workers = 4\n",
        valid(&f)
    );
    let r = load(&text, &[]).unwrap().redirector;
    assert_eq!(r.server_header, "RTC/5.0");
    assert_eq!(r.tcp_max_connections, 10);
    assert_eq!(r.tcp_idle_timeout, Duration::from_secs(30));
    assert_eq!(r.max_message_size, 4096);
    assert_eq!(
        r.rate_limit,
        Some(RateLimitSettings {
            requests: 200,
            window: Duration::from_secs(2)
        })
    );
    assert_eq!(r.udp_workers, 4);
    let off = format!("{}\n[redirector]\nrate_limit = \"off\"\n", valid(&f));
    assert_eq!(load(&off, &[]).unwrap().redirector.rate_limit, None);
}

#[test]
fn redirector_errors_name_the_key() {
    let f = fixture();
    let bad = format!(
        "{}\n[redirector]\nserver_header = \"a\\u0007b\"\ntcp_max_connections = 0\ntcp_idle_timeout = \"5x\"\nmax_message_size = 10\nrate_limit = \"fast\"\nudp_workers = 0\n",
        valid(&f)
    );
    assert_eq!(
        errors(&bad, &[]),
        [
            "pcsync.toml: redirector.server_header: \"a\\u{7}b\" is not a usable Server header (1 to 128 printable ASCII characters)",
            "pcsync.toml: redirector.tcp_max_connections: 0 is out of range (1..=1000000)",
            "pcsync.toml: redirector.tcp_idle_timeout: \"5x\": unknown unit \"x\" (expected ms, s, m, h, d or w)",
            "pcsync.toml: redirector.max_message_size: 10 is out of range (1024..=1048576)",
            "pcsync.toml: redirector.rate_limit: \"fast\" is not a rate limit (expected \"off\" or N/DURATION, e.g. \"200/1s\")",
            "pcsync.toml: redirector.udp_workers: 0 is out of range (1..=64)",
        ]
    );
}

#[test]
fn the_tls_listener_needs_certificate_and_key() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_file = dir.path().join("sip.pem");
    let key_file = dir.path().join("sip.key");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let both = format!(
        "{}\n[redirector]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        valid(&f),
        cert_file.display(),
        key_file.display()
    );
    let tls = load(&both, &[]).unwrap().redirector.tls.unwrap();
    assert_eq!(tls.listen.to_string(), "127.0.0.1:5061");
    let off = format!("{both}tls_listen = \"\"\n");
    assert!(load(&off, &[]).unwrap().redirector.tls.is_none());
    let only_cert = format!(
        "{}\n[redirector]\ntls_cert = \"{}\"\n",
        valid(&f),
        cert_file.display()
    );
    assert_eq!(
        errors(&only_cert, &[]),
        [
            "pcsync.toml: redirector.tls_key: tls_cert is set but tls_key is not: set both to enable the TLS listener"
        ]
    );
    let listen_only = format!("{}\n[redirector]\ntls_listen = \"[::1]:5061\"\n", valid(&f));
    assert_eq!(
        errors(&listen_only, &[]),
        ["pcsync.toml: redirector.tls_listen: [::1]:5061 is set but tls_cert and tls_key are not"]
    );
    let missing = format!(
        "{}\n[redirector]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"{}\"\n",
        valid(&f),
        cert_file.display()
    );
    let e = errors(&missing, &[]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "pcsync.toml: redirector.tls_cert: cannot read certificate file /nonexistent/c.pem"
        ),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("pcsync.toml: redirector.tls_key: cannot read a PEM private key from"),
        "{e:?}"
    );
}

#[test]
fn pools_and_migrations_are_cross_checked() {
    let f = fixture();
    let unknown = valid(&f).replace(
        "target_pool = \"PCPOOL1.contoso.com\"",
        "target_pool = \"pcpool9.contoso.com\"",
    );
    assert_eq!(
        errors(&unknown, &[]),
        [
            "pcsync.toml: migrations[0].target_pool: \"pcpool9.contoso.com\" is not a configured pool (configured: pcpool1.contoso.com)"
        ]
    );
    let dup = format!(
        "{}\n[[pools]]\nfqdn = \"pcpool1.CONTOSO.com\"\nhome_server_dn = \"cn=other,dc=x\"\n",
        valid(&f)
    );
    assert!(errors(&dup, &[])[0].contains("pool pcpool1.CONTOSO.com is configured twice"));
    let bad = format!(
        "{}\n[[migrations]]\nwell_known_uri = \"ocschat@fabrikam.com\"\ntarget_pool = \"pcpool1.contoso.com\"\nnot_before = \"tomorrow\"\nextra = 1\n",
        valid(&f)
    );
    let errs = errors(&bad, &[]);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].contains("migrations[1].well_known_uri: \"ocschat@fabrikam.com\" is not a SIP address: missing `sip:` scheme"));
    assert!(errs[1].contains("migrations[1].not_before: \"tomorrow\" is not an RFC 3339 time"));
    assert!(errs[2].contains("migrations[1].extra: unknown key"));
    let badpool = format!("{}\n[[pools]]\nfqdn = \"-bad-.x\"\n", valid(&f));
    let errs = errors(&badpool, &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("pools[1].fqdn: \"-bad-.x\" is not a host name"))
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("pools[1].home_server_dn: required key is missing"))
    );
}

#[test]
fn not_before_parses_to_utc() {
    let f = fixture();
    let text = valid(&f).replace(
        "target_pool = \"PCPOOL1.contoso.com\"",
        "target_pool = \"pcpool1.contoso.com\"\nnot_before = \"2026-12-05T23:00:00+01:00\"",
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(
        s.migrations[0].not_before.unwrap().to_rfc3339(),
        "2026-12-05T22:00:00+00:00"
    );
}

#[test]
fn environment_cannot_address_array_entries() {
    let f = fixture();
    let errs = errors(&valid(&f), &[("PCSYNC__POOLS__FQDN", "x.y")]);
    assert!(
        errs[0].contains("entries of [[pools]] cannot be set from the environment"),
        "{errs:?}"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let e = load_with_env(Path::new("/nonexistent/pcsync.toml"), env(&[])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read config file /nonexistent/pcsync.toml:"),
        "{e}"
    );
}

#[test]
fn a_toml_syntax_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[directory\nurl = 1\n").unwrap();
    let e = load_with_env(&path, env(&[])).unwrap_err();
    assert!(e.to_string().contains("broken.toml"), "{e}");
    assert_eq!(e.lines().len(), 1);
}

#[test]
fn shipped_example_configs_are_valid() {
    // The shipped files reference password files that do not exist here; give them one.
    let f = fixture();
    for name in [
        "pcsync.example.toml",
        "openldap.toml",
        "active-directory.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("bind_password_file") {
                    format!("bind_password_file = \"{}\"", f.pw)
                } else if l.trim_start().starts_with("tls_ca_file") {
                    String::new()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = from_toml_str(&text, name, env(&[])) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn migration_display_name_is_optional_and_checked() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    assert_eq!(
        s.migrations[0].display_name(),
        format!(
            "Persistent Chat legacy endpoint ({})",
            s.migrations[0].well_known_uri
        )
    );
    let named = valid(&f).replace(
        "target_pool = \"PCPOOL1.contoso.com\"",
        "target_pool = \"pcpool1.contoso.com\"\ndisplay_name = \"Group Chat (legacy)\"",
    );
    let s = load(&named, &[]).unwrap();
    assert_eq!(s.migrations[0].display_name(), "Group Chat (legacy)");
    let bad = valid(&f).replace(
        "target_pool = \"PCPOOL1.contoso.com\"",
        "target_pool = \"pcpool1.contoso.com\"\ndisplay_name = \"  \"",
    );
    let errs = errors(&bad, &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("migrations[0].display_name: \"\" is not a display name"),
        "{errs:?}"
    );
}

#[test]
fn the_audit_segment_size_takes_units_and_is_range_checked() {
    let f = fixture();
    for (text, bytes) in [
        ("\"64MiB\"", 64 << 20),
        ("\"2KiB\"", 2048),
        ("\"1GB\"", 1_000_000_000),
        ("4096", 4096),
    ] {
        let s = load(
            &with(&f, "audit", &format!("max_segment_size = {text}")),
            &[],
        )
        .unwrap();
        assert_eq!(s.audit.max_segment_size, bytes, "{text}");
    }
    let s = load(&valid(&f), &[("PCSYNC__AUDIT__MAX_SEGMENT_SIZE", "8KiB")]).unwrap();
    assert_eq!(s.audit.max_segment_size, 8192);
    assert_eq!(
        errors(
            &with(&f, "audit", "max_segment_size = \"64 furlongs\""),
            &[]
        ),
        [
            "pcsync.toml: audit.max_segment_size: \"64 furlongs\": unknown unit \"furlongs\" (expected B, KiB, MiB, GiB, KB, MB or GB)"
        ]
    );
    assert_eq!(
        errors(&with(&f, "audit", "max_segment_size = \"10B\""), &[]),
        ["pcsync.toml: audit.max_segment_size: \"10B\" is out of range (1KiB..=1024GiB)"]
    );
    let errs = errors(&with(&f, "audit", "max_segment_size = \"big\""), &[]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("\"big\" is not a size"), "{errs:?}");
}

#[test]
fn daemon_defaults_and_lease_timing() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    let d = &s.daemon;
    assert_eq!(d.grace_period, Duration::from_secs(10));
    assert_eq!(d.watch, WatchMode::Auto);
    assert_eq!(d.poll_interval, Duration::from_secs(2));
    assert!(d.lease_dn.is_none());
    assert_eq!(d.lease_duration, Duration::from_secs(30));
    assert_eq!(d.lease_renew, Duration::from_secs(10));
    assert!(d.instance_id.is_none());

    let text = with(
        &f,
        "daemon",
        "lease_dn = \"cn=pcsync-lease,dc=contoso,dc=com\"\nlease_duration = \"20s\"\nlease_renew = \"5s\"\ninstance_id = \"node-1\"\nwatch = \"poll\"",
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(
        s.daemon.lease_dn.unwrap().as_str(),
        "cn=pcsync-lease,dc=contoso,dc=com"
    );
    assert_eq!(s.daemon.lease_renew, Duration::from_secs(5));
    assert_eq!(s.daemon.instance_id.as_deref(), Some("node-1"));
    assert_eq!(s.daemon.watch, WatchMode::Poll);
}

#[test]
fn supervision_watch_and_http_limits_default_and_name_their_key() {
    let f = fixture();
    let s = load(&valid(&f), &[]).unwrap();
    assert_eq!(s.daemon.watch_timeout, Duration::from_secs(30));
    assert_eq!(s.daemon.max_restarts, 5);
    assert_eq!(s.daemon.restart_window, Duration::from_secs(600));
    let http = &s.http;
    assert_eq!(http.max_connections, 64);
    assert_eq!(http.header_timeout, Duration::from_secs(5));
    assert_eq!(http.request_timeout, Duration::from_secs(10));

    let text = with(
        &f,
        "daemon",
        "watch_timeout = \"5s\"\nmax_restarts = 0\nrestart_window = \"1h\"",
    );
    let s = load(
        &with_http(&text, "max_connections = 8\nheader_timeout = \"500ms\""),
        &[],
    )
    .unwrap();
    assert_eq!(s.daemon.watch_timeout, Duration::from_secs(5));
    assert_eq!(s.daemon.max_restarts, 0);
    assert_eq!(s.daemon.restart_window, Duration::from_secs(3600));
    let http = &s.http;
    assert_eq!(http.max_connections, 8);
    assert_eq!(http.header_timeout, Duration::from_millis(500));

    let text = with(
        &f,
        "daemon",
        "watch_timeout = \"2h\"\nmax_restarts = \"many\"\nrestart_window = \"0s\"",
    );
    let text = with_http(&text, "max_connections = 0\nrequest_timeout = \"2h\"");
    let errs = errors(&text, &[]);
    for key in [
        "daemon.watch_timeout",
        "daemon.max_restarts",
        "daemon.restart_window",
        "http.max_connections",
        "http.request_timeout",
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("pcsync.toml: {key}: "))),
            "{key}: {errs:?}"
        );
    }
}

/// `text` with `lines` in an `[http]` section of its own at the end.
fn with_http(text: &str, lines: &str) -> String {
    format!("{text}\n[http]\n{lines}\n")
}

#[test]
fn daemon_errors_name_their_key() {
    let f = fixture();
    let text = with(
        &f,
        "daemon",
        "lease_duration = \"10s\"\nlease_renew = \"6s\"\nwatch = \"syncrepl\"\ngrace_period = \"0s\"\nlease_dn = \"not a dn\"",
    );
    let errs = errors(&text, &[]);
    assert!(
        errs.iter().any(|e| e.starts_with(
            "pcsync.toml: daemon.lease_renew: \"6s\" must be at most half of daemon.lease_duration (10s)"
        )),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e
            == "pcsync.toml: daemon.watch: expected \"auto\", \"poll\" or \"off\", found \"syncrepl\""),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pcsync.toml: daemon.grace_period:")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pcsync.toml: daemon.lease_dn: \"not a dn\" is not a valid DN")),
        "{errs:?}"
    );
    let backoff = with(
        &f,
        "daemon",
        "reconnect_min = \"10s\"\nreconnect_max = \"1s\"",
    );
    let errs = errors(&backoff, &[]);
    assert!(
        errs.iter().any(|e| e.contains(
            "daemon.reconnect_min: 10000ms is longer than daemon.reconnect_max (1000ms)"
        )),
        "{errs:?}"
    );
}

// Found by the config_text fuzz target (issue 8, bad input): a TOML syntax error came out on
// five lines (the parser's source snippet), not as one `pcsync: error:` line.
#[test]
fn fuzz_regression_toml_syntax_errors_are_one_line() {
    let e = load("[directory]\nurl = \"ldap://x\"\ne[[migrations]]\n", &[]).unwrap_err();
    let lines = e.lines();
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].contains('\n'), "{lines:?}");
    assert!(
        lines[0].starts_with("cannot read config file pcsync.toml: TOML parse error at line 3, column 2: key with no value"),
        "{lines:?}"
    );
    assert!(lines[0].contains("expected `=`"), "{lines:?}");
    assert!(!e.to_string().contains('\n'));
}

// Found by the config_structured fuzz target: an unknown quoted key holding a line break was
// echoed raw, so the issue spanned two lines (and could forge a log line).
#[test]
fn fuzz_regression_control_characters_in_keys_are_escaped() {
    let e = load(
        "[directory]\nurl = \"ldap://x\"\n\"bad\\nkey\\u0007\" = 1\n",
        &[],
    )
    .unwrap_err();
    let lines = e.lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains('\n') && !l.contains('\u{7}')),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("directory.bad\\nkey\\u{7}: unknown key")),
        "{lines:?}"
    );
}

// Found by the config_structured fuzz target: an owner_urn whose fourth byte falls inside a
// multi-byte character panicked (slicing `u[..4]` off a char boundary) instead of being reported.
#[test]
fn fuzz_regression_owner_urn_with_a_multibyte_prefix_is_an_error_not_a_panic() {
    let f = fixture();
    for urn in ["t\u{8d34d}ppp", "ur\u{e9}:x", "\u{1f600}:application"] {
        let errs = errors(&valid(&f), &[("PCSYNC__DIRECTORY__LAYOUT__OWNER_URN", urn)]);
        assert_eq!(errs.len(), 1, "{urn:?}: {errs:#?}");
        assert!(
            errs[0].contains("directory.layout.owner_urn:") && errs[0].contains("is not a URN"),
            "{errs:#?}"
        );
    }
}

// See: #19. A switch that controls writes must be a TOML boolean, and a number a TOML number: a
// quoted value in the file is refused, naming the key and the file. The environment only has
// strings, so there they are parsed, strictly.
#[test]
fn quoted_booleans_and_numbers_in_the_file_are_refused() {
    let f = fixture();
    assert_eq!(
        errors(&with(&f, "safety", "auto_apply = \"false\""), &[]),
        [
            "pcsync.toml: safety.auto_apply: expected true or false, found the string \"false\": write false without quotes"
        ]
    );
    assert_eq!(
        errors(&with(&f, "directory", "page_size = \"200\""), &[]),
        [
            "pcsync.toml: directory.page_size: expected a whole number, found the string \"200\": write 200 without quotes"
        ]
    );
    assert_eq!(
        errors(&with(&f, "directory", "starttls = \"true\""), &[]),
        [
            "pcsync.toml: directory.starttls: expected true or false, found the string \"true\": write true without quotes"
        ]
    );
    // Unquoted, both load.
    let s = load(&with(&f, "safety", "auto_apply = false"), &[]).unwrap();
    assert!(!s.safety.auto_apply);
    let s = load(&with(&f, "directory", "page_size = 200"), &[]).unwrap();
    assert_eq!(s.directory.page_size, 200);
}

#[test]
fn environment_booleans_and_numbers_parse_strictly() {
    let f = fixture();
    let s = load(
        &valid(&f),
        &[
            ("PCSYNC__SAFETY__AUTO_APPLY", "true"),
            ("PCSYNC__DIRECTORY__PAGE_SIZE", "250"),
        ],
    )
    .unwrap();
    assert!(s.safety.auto_apply);
    assert_eq!(s.directory.page_size, 250);
    for (value, message) in [
        ("yes", "expected true or false, found \"yes\""),
        ("True", "expected true or false, found \"True\""),
        ("1", "expected true or false, found \"1\""),
        (" true", "expected true or false, found \" true\""),
    ] {
        assert_eq!(
            errors(&valid(&f), &[("PCSYNC__SAFETY__AUTO_APPLY", value)]),
            [format!(
                "environment variable PCSYNC__SAFETY__AUTO_APPLY: safety.auto_apply: {message}"
            )]
        );
    }
    for value in ["+200", "200 ", "2e2", "0x10", "-1"] {
        assert_eq!(
            errors(&valid(&f), &[("PCSYNC__DIRECTORY__PAGE_SIZE", value)]),
            [format!(
                "environment variable PCSYNC__DIRECTORY__PAGE_SIZE: directory.page_size: expected a whole number (digits only), found {value:?}"
            )]
        );
    }
}

/// A password file with `contents`, in `dir`.
fn password_file(dir: &Path, name: &str, contents: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

fn bind_of(s: &Settings) -> &BindCredentials {
    s.directory.bind.as_ref().unwrap()
}

// See: #19. Notepad writes a BOM and CRLF; an administrator may keep a note on line two.
#[test]
fn a_password_file_gives_its_first_line_without_bom_or_line_ending() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in [
        ("plain", &b"s3cr3t"[..]),
        ("lf", b"s3cr3t\n"),
        ("crlf", b"s3cr3t\r\n"),
        ("bom", b"\xef\xbb\xbfs3cr3t\r\n"),
        ("two-lines", b"s3cr3t\nrotated 2026-01-05 by jdoe\n"),
        ("two-crlf-lines", b"s3cr3t\r\nsecond\r\n"),
    ] {
        let path = password_file(dir.path(), name, contents);
        let s = load(&valid(&f).replace(&f.pw, &path), &[]).unwrap();
        assert_eq!(bind_of(&s).password.expose(), "s3cr3t", "{name}");
        assert_eq!(
            bind_of(&s).password_source.to_string(),
            format!("the first line of password file {path} (6 bytes)"),
            "{name}"
        );
    }
    // Spaces are part of a password; only the line ending and the BOM go.
    let path = password_file(dir.path(), "spaces", b" pass word \n");
    let s = load(&valid(&f).replace(&f.pw, &path), &[]).unwrap();
    assert_eq!(bind_of(&s).password.expose(), " pass word ");
}

#[test]
fn a_password_file_with_an_empty_first_line_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in [
        ("empty", &b""[..]),
        ("newline", b"\n"),
        ("bom-only", b"\xef\xbb\xbf\r\n"),
        ("second-line", b"\ns3cr3t\n"),
    ] {
        let path = password_file(dir.path(), name, contents);
        assert_eq!(
            errors(&valid(&f).replace(&f.pw, &path), &[]),
            [format!(
                "pcsync.toml: directory.bind_password_file: the first line of password file {path} is empty (the password is the first line)"
            )],
            "{name}"
        );
    }
}

#[test]
fn a_password_variable_follows_the_same_rule() {
    let f = fixture();
    let text = valid(&f).replace(
        &format!("bind_password_file = \"{}\"", f.pw),
        "bind_password_env = \"PCSYNC_TEST_PW\"",
    );
    for value in [
        "s3cr3t",
        "s3cr3t\n",
        "s3cr3t\r\n",
        "\u{feff}s3cr3t",
        "s3cr3t\nnote",
    ] {
        let s = load(&text, &[("PCSYNC_TEST_PW", value)]).unwrap();
        assert_eq!(bind_of(&s).password.expose(), "s3cr3t", "{value:?}");
        assert_eq!(
            bind_of(&s).password_source.to_string(),
            "the first line of environment variable PCSYNC_TEST_PW (6 bytes)"
        );
    }
    assert_eq!(
        errors(&text, &[("PCSYNC_TEST_PW", "\r\n")]),
        [
            "pcsync.toml: directory.bind_password_env: the first line of environment variable PCSYNC_TEST_PW is empty (the password is the first line)"
        ]
    );
}

// See: #19. The scheduler would wait for ever: Feb 31 does not exist.
#[test]
fn a_cron_that_never_fires_is_refused_with_the_reason() {
    let f = fixture();
    for (cron, reason) in [
        ("0 0 0 31 2 *", "day 31 never occurs in February"),
        ("0 0 0 30 2 *", "day 30 never occurs in February"),
        ("0 0 0 31 4,6 *", "day 31 never occurs in April or June"),
        ("0 0 0 31 2,4 *", "day 31 never occurs in February or April"),
        ("0 0 0 30-31 2 *", "days 30 and 31 never occur in February"),
        (
            "0 0 0 1 1 * 1969",
            "no date from 1970 on matches all of its fields",
        ),
    ] {
        let text = format!("{}\n[schedule]\ncron = \"{cron}\"\n", valid(&f));
        assert_eq!(
            errors(&text, &[]),
            [format!(
                "pcsync.toml: schedule.cron: {cron:?} never fires: {reason}"
            )]
        );
    }
    // Rare is not never: Feb 29 comes every four years; the 31st of a month that has one.
    for cron in [
        "0 0 0 29 2 *",
        "0 0 0 31 1-3 *",
        "0 0 12 13 * FRI",
        "0 0 0 L 2 *",
        "0 0 0 29 2 MON",
    ] {
        let text = format!("{}\n[schedule]\ncron = \"{cron}\"\n", valid(&f));
        assert_eq!(load(&text, &[]).unwrap().schedule.cron, cron);
    }
}

#[test]
fn a_cron_whose_years_are_past_never_fires() {
    let f = fixture();
    let text = format!("{}\n[schedule]\ncron = \"0 0 0 1 1 * 2001\"\n", valid(&f));
    assert_eq!(
        load(&text, &[]).unwrap().schedule.cron,
        "0 0 0 1 1 * 2001",
        "valid at load: whether it still fires depends on the date, which `check` shows"
    );
    let now = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    assert_eq!(
        next_fire_times("0 0 0 1 1 * 2001", now, 3),
        Err("\"0 0 0 1 1 * 2001\" never fires after 2026-11-24T08:00:00Z".to_string())
    );
    let next = next_fire_times("0 */15 * * * *", now, 3).unwrap();
    let shown: Vec<String> = next.iter().map(|t| t.to_rfc3339()).collect();
    assert_eq!(
        shown,
        [
            "2026-11-24T08:15:00+00:00",
            "2026-11-24T08:30:00+00:00",
            "2026-11-24T08:45:00+00:00"
        ]
    );
}

// See: #19. "unknown unit" said nothing useful about a date typo.
#[test]
fn time_arguments_say_what_is_wrong_and_show_the_accepted_forms() {
    let now = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    const FORMS: &str =
        "use RFC 3339 (2026-11-24T08:00:00Z, 2026-11-24T09:00:00+01:00) or an age (30m, 2h, 7d)";
    for (text, what) in [
        ("2026-13-01T00:00:00Z", "month 13 is out of range (1 to 12)"),
        ("2026-00-10T00:00:00Z", "month 0 is out of range (1 to 12)"),
        (
            "2026-02-30T00:00:00Z",
            "day 30 is out of range for February 2026 (1 to 28)",
        ),
        (
            "2026-04-31T00:00:00Z",
            "day 31 is out of range for April 2026 (1 to 30)",
        ),
        ("2026-11-24T24:00:00Z", "hour 24 is out of range (0 to 23)"),
        (
            "2026-11-24T08:60:00Z",
            "minute 60 is out of range (0 to 59)",
        ),
        (
            "2026-11-24T08:00:61Z",
            "second 61 is out of range (0 to 60)",
        ),
        (
            "2026-11-24T08:00:00",
            "no time zone (add Z for UTC, or an offset such as +01:00)",
        ),
        ("2026-11-24", "no time of day (e.g. 2026-11-24T00:00:00Z)"),
        (
            "2026-11-24T08:00",
            "expected `:` after the minute at position 17",
        ),
        (
            "2026-11-24T08:00:00+25:00",
            "time zone \"+25:00\" is not Z or an offset such as +01:00",
        ),
        (
            "2026",
            "a bare number is neither a date nor an age (an age needs a unit: 30m, 2h, 7d)",
        ),
        (
            "7 parsecs",
            "unknown unit \"parsecs\" (expected ms, s, m, h, d or w)",
        ),
    ] {
        assert_eq!(
            parse_time(text, now),
            Err(format!("{text:?}: {what}; {FORMS}")),
            "{text}"
        );
    }
    assert_eq!(
        parse_time("yesterday", now),
        Err(format!("\"yesterday\" is not a time; {FORMS}"))
    );
    assert_eq!(parse_time("7d", now), Ok(now - chrono::Duration::days(7)));
    assert_eq!(
        parse_time("2026-11-24T09:00:00+01:00", now),
        Ok(chrono::Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap())
    );
}

#[test]
fn not_before_says_which_part_of_the_time_is_wrong() {
    let f = fixture();
    let text = valid(&f).replace(
        "target_pool = \"PCPOOL1.contoso.com\"",
        "target_pool = \"pcpool1.contoso.com\"\nnot_before = \"2026-02-29T22:00:00Z\"",
    );
    assert_eq!(
        errors(&text, &[]),
        [
            "pcsync.toml: migrations[0].not_before: \"2026-02-29T22:00:00Z\" is not an RFC 3339 time (e.g. 2026-12-05T22:00:00Z): day 29 is out of range for February 2026 (1 to 28)"
        ]
    );
}
