//! `pcsync check` and `pcsync inventory` against a real slapd: the happy path, and each failure
//! an administrator meets first (server down, wrong password, wrong base DN, typo'd key), which
//! must give one clear line and a non-zero exit.

use std::fs;
use std::path::Path;

use crate::common::slapd::Slapd;
use crate::common::{output, over_ldaps_and_starttls, pcsync, pcsync_bare, repo};

/// SIP-enabled objects in the contoso fixture: six users in the domain NC and the hand-made
/// endpoint contact in the configuration NC.
const FIXTURE_USERS: usize = 6;
const FIXTURE_CONTACTS: usize = 1;

#[test]
fn check_reports_all_green_on_the_test_directory() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path()).arg("check").assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    let lines: Vec<&str> = stdout.lines().collect();
    for name in [
        "config",
        "schedule",
        "connect",
        "root DSE",
        "schema",
        "base DN",
        "container",
        "pool",
        "objects",
        "endpoint-shape",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ok") && l[6..].starts_with(name)),
            "no ok line for {name}:\n{stdout}\n{stderr}"
        );
    }
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{stdout}");
    assert_eq!(
        lines.iter().filter(|l| l[6..].starts_with("pool")).count(),
        2
    );
    let objects = lines
        .iter()
        .find(|l| l[6..].starts_with("objects"))
        .unwrap();
    assert!(
        objects.contains(&format!(
            "{FIXTURE_USERS} SIP-enabled user(s), {FIXTURE_CONTACTS} contact(s)"
        )),
        "{objects}"
    );
    let dse = lines
        .iter()
        .find(|l| l[6..].starts_with("root DSE"))
        .unwrap();
    assert!(
        dse.contains("cn=Configuration,dc=contoso,dc=com")
            || dse.contains("CN=Configuration,DC=contoso,DC=com"),
        "{dse}"
    );
}

/// The fixture's hand-made Persistent Chat endpoint is the evidence of what Lync writes: `check`
/// compares it with what pcsync would write on that pool and warns, naming each attribute that
/// differs, without failing. See: #19
#[test]
fn check_compares_a_hand_made_endpoint_with_what_pcsync_writes() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let shape = |slapd: &Slapd| {
        let assert = pcsync(slapd, work.path()).arg("check").assert();
        let (stdout, stderr) = output(&assert);
        assert.code(0);
        let lines: Vec<String> = stdout
            .lines()
            .filter(|l| l[6..].starts_with("endpoint-shape"))
            .map(str::to_string)
            .collect();
        assert!(!lines.is_empty(), "{stdout}{stderr}");
        lines
    };
    assert_eq!(
        shape(&slapd),
        [
            "ok    endpoint-shape 1 endpoint contact(s) pcsync did not make match what it writes (objectClass, msRTCSIP-OwnerUrn, msRTCSIP-ApplicationOptions, msRTCSIP-OptionFlags)"
        ]
    );
    let endpoint = format!(
        "CN={{4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17}},{}",
        slapd.endpoint_container()
    );
    slapd.modify(&format!(
        "dn: {endpoint}\nchangetype: modify\nadd: msRTCSIP-ApplicationOptions\nmsRTCSIP-ApplicationOptions: 2\n-\nadd: msRTCSIP-OptionFlags\nmsRTCSIP-OptionFlags: 256\n-\n"
    ));
    let lines = shape(&slapd);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("WARN  endpoint-shape "), "{line}");
    assert!(
        line.to_ascii_lowercase()
            .contains(&endpoint.to_ascii_lowercase()),
        "{line}"
    );
    assert!(
        line.ends_with("differs from what pcsync writes: msRTCSIP-ApplicationOptions: Lync's has 2, pcsync writes none; msRTCSIP-OptionFlags: Lync's has 256, pcsync writes none"),
        "{line}"
    );
    let assert = pcsync(&slapd, work.path())
        .args(["check", "--format", "json"])
        .assert();
    let (stdout, _) = output(&assert);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true, "{stdout}");
    let warned: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["warning"] == true)
        .collect();
    assert_eq!(warned.len(), 1, "{stdout}");
    assert_eq!(warned[0]["name"], "endpoint-shape");
}

#[test]
fn check_json_is_machine_readable() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path())
        .args(["check", "--format", "json"])
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 8);
}

#[test]
fn a_stopped_server_gives_one_clear_line() {
    let mut slapd = Slapd::start();
    slapd.stop();
    let work = tempfile::tempdir().unwrap();

    let assert = pcsync(&slapd, work.path()).arg("inventory").assert();
    let (stdout, stderr) = output(&assert);
    assert.code(1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "pcsync: error: no directory server answered: {}: connection refused",
            slapd.ldap_url.trim_end_matches('/')
        )
    );

    let assert = pcsync(&slapd, work.path()).arg("check").assert();
    let (stdout, _) = output(&assert);
    assert.code(1);
    let fail: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{stdout}");
    assert!(
        fail[0].contains("connect") && fail[0].contains("connection refused"),
        "{stdout}"
    );
}

#[test]
fn the_next_url_is_tried_when_the_first_server_is_down() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let dead = format!("ldap://127.0.0.1:{}", crate::common::slapd::free_port());
    let assert = pcsync(&slapd, work.path())
        .env(
            "PCSYNC__DIRECTORY__URL",
            format!("{dead},{}", slapd.ldap_url),
        )
        .arg("check")
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    assert!(
        stdout.contains(slapd.ldap_url.trim_end_matches('/')),
        "{stdout}"
    );
}

#[test]
fn a_wrong_password_gives_one_clear_line() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let wrong = work.path().join("wrong.pw");
    fs::write(&wrong, "not-the-password\n").unwrap();
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &wrong)
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "pcsync: error: bind as cn=admin,dc=contoso,dc=com to {} failed: invalid credentials (LDAP 49)",
            slapd.ldap_url.trim_end_matches('/')
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"));
}

/// `pcsync` on `slapd` with the shipped configuration's `bind_password_file` replaced by
/// `bind_password_env = "SVC_PCSYNC_PW"`, that variable set to `password`.
fn pcsync_with_password_env(slapd: &Slapd, work: &Path, password: &str) -> assert_cmd::Command {
    let text = fs::read_to_string(repo("config/openldap.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("bind_password_file"))
        .expect("config/openldap.toml sets bind_password_file");
    let config = work.join("password-env.toml");
    fs::write(
        &config,
        text.replace(line, "bind_password_env = \"SVC_PCSYNC_PW\""),
    )
    .unwrap();
    let mut cmd = pcsync_bare(work);
    cmd.arg("--config")
        .arg(&config)
        .env("PCSYNC__DIRECTORY__URL", &slapd.ldap_url)
        .env("SVC_PCSYNC_PW", password);
    cmd
}

// See: #19. What Notepad writes (a byte order mark, CRLF) and a note on a second line bind
// as well as a clean file: the password is the first line. The same rule holds for a variable.
#[test]
fn password_files_as_administrators_write_them_all_bind() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let pw = &slapd.admin_password;
    for (name, contents) in [
        (
            "two-lines.pw",
            format!("{pw}\nrotated 2026-01-05 by jdoe\n"),
        ),
        ("bom.pw", format!("\u{feff}{pw}\n")),
        ("crlf.pw", format!("{pw}\r\n")),
    ] {
        let file = work.path().join(name);
        fs::write(&file, contents).unwrap();
        let assert = pcsync(&slapd, work.path())
            .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &file)
            .args(["inventory", "--format", "json"])
            .assert();
        let (_, stderr) = output(&assert);
        assert.code(0);
        assert!(stderr.is_empty(), "{name}: {stderr}");
    }
    let assert = pcsync_with_password_env(&slapd, work.path(), &format!("\u{feff}{pw}\r\n"))
        .args(["inventory", "--format", "json"])
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(0);
    assert!(stderr.is_empty(), "variable: {stderr}");
}

// See: #19. A refused password says where it came from and how long it was, so an
// administrator can tell a stale file from a truncated one; never the password.
#[test]
fn a_wrong_password_names_its_source_and_length_but_never_itself() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let wrong = work.path().join("wrong.pw");
    fs::write(&wrong, "\u{feff}not-the-password\r\nsecond line\n").unwrap();
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &wrong)
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.trim_end().ends_with(&format!(
            "; the password was the first line of password file {} (16 bytes)",
            wrong.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    let assert = pcsync_with_password_env(&slapd, work.path(), "Wrong-Passw0rd")
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert!(
        stderr.trim_end().ends_with(
            "; the password was the first line of environment variable SVC_PCSYNC_PW (14 bytes)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Wrong-Passw0rd"), "{stderr}");
}

#[test]
fn a_wrong_base_dn_gives_one_clear_line() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__BASE_DN", "dc=wrong,dc=com")
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "pcsync: error: base DN dc=wrong,dc=com does not exist on ldap://127.0.0.1:"
        ),
        "{stderr}"
    );

    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__BASE_DN", "dc=wrong,dc=com")
        .arg("check")
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(1);
    let fail: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{stdout}");
    assert!(
        fail[0].contains("base DN") && fail[0].contains("dc=wrong,dc=com does not exist"),
        "{stdout}"
    );
}

#[test]
fn a_typo_in_a_key_gives_one_clear_line() {
    let work = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(repo("config/openldap.toml"))
        .unwrap()
        .replace("page_size = 500", "page_sise = 500");
    let path = work.path().join("typo.toml");
    fs::write(&path, text).unwrap();
    let pw = work.path().join("pw");
    fs::write(&pw, "whatever").unwrap();
    for command in ["check", "inventory"] {
        let assert = pcsync_bare(work.path())
            .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &pw)
            .arg("--config")
            .arg(&path)
            .arg(command)
            .assert();
        let (stdout, stderr) = output(&assert);
        assert.code(1);
        let all = format!("{stdout}{stderr}");
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 1, "{command}: {all}");
        assert!(
            lines[0].contains(&format!(
                "{}: directory.page_sise: unknown key (did you mean `page_size`?)",
                path.display()
            )),
            "{command}: {all}"
        );
    }
}

#[test]
fn inventory_lists_both_naming_contexts_once() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path())
        .args(["inventory", "--format", "json"])
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(objects.len(), FIXTURE_USERS + FIXTURE_CONTACTS, "{stdout}");
    let by_uri = |uri: &str| {
        objects
            .iter()
            .find(|o| {
                o["sip_uri"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(uri))
            })
            .unwrap_or_else(|| panic!("{uri} missing: {stdout}"))
    };
    let endpoint = by_uri("sip:persistentchat@contoso.com");
    assert_eq!(endpoint["kind"], "contact");
    assert_eq!(endpoint["pool"], "pcpool1.contoso.com");
    assert_eq!(endpoint["enabled"], "TRUE");
    let ocschat = by_uri("sip:ocschat@contoso.com");
    assert_eq!(ocschat["kind"], "user");
    assert_eq!(
        ocschat["pool"],
        serde_json::Value::Null,
        "homed on the legacy pool, not a configured one"
    );
    assert!(
        ocschat["home_server_dn"]
            .as_str()
            .unwrap()
            .contains("CN=1:1")
    );
    assert_eq!(by_uri("sip:dave@contoso.com")["enabled"], "FALSE");
    assert_eq!(
        by_uri("sip:bob@fabrikam.com")["pool"],
        "pcpool2.contoso.com"
    );
    assert_eq!(v["summary"]["users"], FIXTURE_USERS);
    assert_eq!(v["summary"]["contacts"], FIXTURE_CONTACTS);
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);

    let assert = pcsync(&slapd, work.path()).arg("inventory").assert();
    let (text, _) = output(&assert);
    assert.code(0);
    assert!(text.starts_with("KIND"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("contact")
            && l.contains("sip:persistentchat@contoso.com")
            && l.contains("pcpool1.contoso.com")),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("7 object(s): 6 user(s), 1 contact(s), 0 other; 0 finding(s)"),
        "{text}"
    );
}

#[test]
fn malformed_values_are_findings_with_their_dn() {
    let slapd = Slapd::start();
    slapd.add(
        "dn: CN=Broken Address,OU=Users,DC=contoso,DC=com\n\
         objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
         cn: Broken Address\nsn: Address\n\
         msRTCSIP-PrimaryUserAddress: ocschat@contoso.com\n\
         msRTCSIP-UserEnabled: TRUE\n\n\
         dn: CN=Spaced Address,OU=Users,DC=contoso,DC=com\n\
         objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
         cn: Spaced Address\nsn: Address\n\
         msRTCSIP-PrimaryUserAddress: sip:ocs chat@contoso.com\n",
    );
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path())
        .args(["inventory", "--format", "json"])
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let mut seen: Vec<(String, &str)> = findings
        .iter()
        // slapd returns the DN in the case the entry was added with; compare case-insensitively.
        .map(|f| {
            (
                f["dn"].as_str().unwrap().to_ascii_lowercase(),
                f["reason"].as_str().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "cn=broken address,ou=users,dc=contoso,dc=com".to_string(),
                "msRTCSIP-PrimaryUserAddress: missing `sip:` scheme in \"ocschat@contoso.com\""
            ),
            (
                "cn=spaced address,ou=users,dc=contoso,dc=com".to_string(),
                "msRTCSIP-PrimaryUserAddress: unexpected character ' ' in \"sip:ocs chat@contoso.com\""
            ),
        ]
    );
    assert!(findings.iter().all(|f| f["kind"] == "malformed_value"));
    // The object is still listed, without the values that could not be read; a bare address
    // is still read as the address Lync routes to it (issue #19), a spaced one is not.
    let broken = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["dn"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("CN=Broken Address,OU=Users,DC=contoso,DC=com")
        })
        .unwrap();
    assert_eq!(broken["sip_uri"], "sip:ocschat@contoso.com");
}

#[test]
fn paging_reads_past_the_servers_size_limit() {
    // The reader account is limited to 3 entries per search, but paged searches may read all.
    let slapd = Slapd::builder().size_limit(3).start();
    let work = tempfile::tempdir().unwrap();
    let inventory = |page_size: &str| {
        let assert = pcsync(&slapd, work.path())
            .env("PCSYNC__DIRECTORY__BIND_DN", &slapd.reader_dn)
            .env(
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                &slapd.reader_password_file,
            )
            .env("PCSYNC__DIRECTORY__PAGE_SIZE", page_size)
            .args(["inventory", "--format", "json"])
            .assert();
        let (stdout, stderr) = output(&assert);
        assert.code(0);
        serde_json::from_str::<serde_json::Value>(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stderr}"))
    };
    let v = inventory("2");
    assert_eq!(
        v["objects"].as_array().unwrap().len(),
        FIXTURE_USERS + FIXTURE_CONTACTS
    );
    // A page is handed on while the next is read (issue 18): every object still comes once,
    // in the server's order, whatever the page size.
    assert_eq!(v, inventory("1"));
    assert_eq!(v, inventory("500"));
}

#[test]
fn ldaps_and_starttls_verify_the_server_with_the_private_ca() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    for (url, assert) in over_ldaps_and_starttls(&slapd, work.path(), &slapd.ca_file, "check") {
        let (stdout, stderr) = output(&assert);
        assert.code(0);
        assert!(
            stdout.lines().all(|l| l.starts_with("ok")),
            "{url}: {stdout}{stderr}"
        );
    }

    // A CA that did not sign the server's certificate is refused.
    let other = crate::common::slapd::write_test_pki(work.path(), "other");
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__DIRECTORY__URL", &slapd.ldaps_url)
        .env("PCSYNC__DIRECTORY__TLS_CA_FILE", &other.ca_file)
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

// Issue 17: TCP keepalive on every LDAP connection. pcsync opens the TCP connection itself (to
// set keepalive) and hands it to ldap3, which must still do TLS and StartTLS on it as the URL
// says. (Which socket options are set is a unit test in src/ldap/connect.rs.)
#[tokio::test]
async fn a_connection_with_keepalive_still_speaks_ldaps_and_starttls() {
    let slapd = Slapd::start();
    let options = pcsync::ldap::ConnectOptions {
        keepalive: std::time::Duration::from_secs(2),
    };
    for (url, starttls) in [(&slapd.ldaps_url, "false"), (&slapd.ldap_url, "true")] {
        let settings = settings_with(
            &slapd,
            &[
                ("PCSYNC__DIRECTORY__URL", url.to_string()),
                ("PCSYNC__DIRECTORY__STARTTLS", starttls.to_string()),
                (
                    "PCSYNC__DIRECTORY__TLS_CA_FILE",
                    slapd.ca_file.display().to_string(),
                ),
            ],
        );
        let mut dir = pcsync::ldap::Directory::connect_with(&settings.directory, &options)
            .await
            .unwrap_or_else(|e| panic!("{url} (starttls {starttls}): {e}"));
        let mut seen = 0;
        pcsync::inventory::scan(&mut dir, &settings, &mut Vec::new(), |_| seen += 1)
            .await
            .unwrap();
        assert_eq!(seen, FIXTURE_USERS + FIXTURE_CONTACTS, "{url}");
    }
}

/// Settings from `config/openldap.toml` pointed at `slapd`, as the CLI would load them.
fn settings_for(slapd: &Slapd) -> pcsync::config::Settings {
    settings_with(slapd, &[])
}

/// [`settings_for`] with more environment variables.
fn settings_with(slapd: &Slapd, extra: &[(&str, String)]) -> pcsync::config::Settings {
    let env = [
        ("PCSYNC__DIRECTORY__URL", slapd.ldap_url.clone()),
        (
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            slapd.admin_password_file.display().to_string(),
        ),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    pcsync::config::load_with_env(&repo("config/openldap.toml"), Some(env)).unwrap()
}

#[tokio::test]
async fn continuation_references_are_counted_and_never_chased() {
    // A referral object makes slapd send a SearchResultReference in subtree searches, as AD
    // does for its other naming contexts. Its target does not exist: chasing it would fail.
    let slapd = Slapd::builder()
        .extra_domain_ldif(
            "dn: OU=Elsewhere,DC=contoso,DC=com\n\
             objectClass: referral\nobjectClass: extensibleObject\nou: Elsewhere\n\
             ref: ldap://127.0.0.1:9/OU=Elsewhere,DC=contoso,DC=com\n",
        )
        .start();
    let settings = settings_for(&slapd);
    let mut dir = pcsync::ldap::Directory::connect(&settings.directory)
        .await
        .unwrap();
    let mut findings = Vec::new();
    let mut seen = 0;
    let stats = pcsync::inventory::scan(&mut dir, &settings, &mut findings, |_| seen += 1)
        .await
        .unwrap();
    assert_eq!(seen, FIXTURE_USERS + FIXTURE_CONTACTS);
    assert_eq!(stats.base.references, 1, "{stats:?}");
    assert!(findings.is_empty());
}

#[tokio::test]
async fn the_schema_check_names_missing_attributes() {
    let slapd = Slapd::start();
    let settings = settings_for(&slapd);
    let mut dir = pcsync::ldap::Directory::connect(&settings.directory)
        .await
        .unwrap();
    assert!(
        dir.root_dse().naming_contexts.len() >= 2,
        "{:?}",
        dir.root_dse()
    );
    dir.require_schema().await.unwrap();
    let missing = dir
        .missing_schema_attributes(&["msRTCSIP-PrimaryUserAddress", "msRTCSIP-NoSuchAttribute"])
        .await
        .unwrap();
    assert_eq!(missing, ["msRTCSIP-NoSuchAttribute"]);
}
