//! pcsync against a real Active Directory implementation: the shared Samba AD DC of
//! `common::samba`, with the shipped `config/active-directory.toml` changed only in its URL, CA
//! file and password file (through the PCSYNC__ overrides an operator would use; the audit log
//! and state dir also move into the test's temp dir). Every test takes the DC's lock, so they run one at a time; none leaves the seed changed.

use std::path::Path;

use crate::common::samba::{
    self, ENDPOINT_CONTAINER_DN, ENDPOINT_DN, SEED_SIP_CONTACTS, SEED_SIP_USERS, SambaDc,
    WELL_KNOWN_USERS,
};
use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_on_config, repo};

/// `pcsync` with the shipped AD configuration, pointed at the test DC, binding as svc-pcsync.
pub(crate) fn pcsync_ad(dc: &SambaDc, workdir: &Path) -> assert_cmd::Command {
    pcsync_ad_config(dc, workdir, &repo("config/active-directory.toml"))
}

/// [`pcsync_ad`] with another configuration file (a test that needs a second migration).
pub(crate) fn pcsync_ad_config(dc: &SambaDc, workdir: &Path, config: &Path) -> assert_cmd::Command {
    pcsync_on_config(dc, workdir, config)
}

/// The detail of the `ok` line for check `name`, or a panic showing the whole report.
fn ok_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with("ok") && l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no ok line for {name}:\n{stdout}"))[6..]
        .trim_start_matches(name)
        .trim()
}

#[test]
fn check_reports_all_green_against_active_directory() {
    let dc = samba::samba();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_ad(&dc, work.path()).arg("check").assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    assert!(
        stdout.lines().all(|l| l.starts_with("ok ")),
        "{stdout}\n{stderr}"
    );
    assert!(
        ok_line(&stdout, "connect").ends_with(&format!("bound as {}", dc.service_dn)),
        "{stdout}"
    );
    let dse = ok_line(&stdout, "root DSE");
    assert!(
        dse.starts_with("Samba Team")
            && dse.contains("DC=contoso,DC=com, CN=Configuration,DC=contoso,DC=com"),
        "{dse}"
    );
    // The service account has no "Replicating Directory Changes": DirSync is refused with
    // AD's diagnostic, and the watch falls back to uSNChanged polling.
    assert_eq!(
        ok_line(&stdout, "watch"),
        "usn-polling (DirSync 1.2.840.113556.1.4.841 advertised but refused on DC=contoso,DC=com \
         (LDAP 50: error in module dirsync: insufficient access rights during LDB_SEARCH (50)): grant \
         Replicating Directory Changes for DirSync; Active Directory has uSNChanged)"
    );
    assert_eq!(
        ok_line(&stdout, "writes"),
        "compare-and-swap (no assertion control 1.3.6.1.1.12 advertised; AD never has it)"
    );
    assert!(ok_line(&stdout, "container").contains(ENDPOINT_CONTAINER_DN));
    assert!(ok_line(&stdout, "pool").starts_with("pcpool.contoso.com: home_server_dn"));
    let objects = ok_line(&stdout, "objects");
    assert!(
        objects.starts_with(&format!(
            "{SEED_SIP_USERS} SIP-enabled user(s), {SEED_SIP_CONTACTS} contact(s), 0 other; 8 \
             enabled; 1 finding(s)"
        )),
        "{objects}"
    );
}

/// An account with "Replicating Directory Changes" (here the administrator) gets DirSync, on
/// both naming contexts pcsync reads.
#[test]
fn check_chooses_dirsync_where_the_account_has_the_right() {
    let dc = samba::samba();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_ad(&dc, work.path())
        .env("PCSYNC__DIRECTORY__BIND_DN", &dc.admin_dn)
        .env(
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            &dc.admin_password_file,
        )
        .arg("check")
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    assert_eq!(
        ok_line(&stdout, "watch"),
        "dirsync (no syncrepl 1.3.6.1.4.1.4203.1.9.1.1 advertised; DirSync \
         1.2.840.113556.1.4.841 advertised and allowed on DC=contoso,DC=com, \
         CN=Configuration,DC=contoso,DC=com)"
    );
}

/// The same check against OpenLDAP chooses the other mechanisms, from what slapd advertises.
#[test]
fn check_chooses_syncrepl_and_assertions_on_openldap() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path()).arg("check").assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    assert_eq!(
        ok_line(&stdout, "watch"),
        "syncrepl (server advertises 1.3.6.1.4.1.4203.1.9.1.1)"
    );
    assert_eq!(
        ok_line(&stdout, "writes"),
        "assertion (server advertises 1.3.6.1.1.12)"
    );
}

#[test]
fn inventory_lists_both_naming_contexts_once_with_findings() {
    let dc = samba::samba();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync_ad(&dc, work.path())
        .args(["inventory", "--format", "json"])
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(
        objects.len(),
        SEED_SIP_USERS + SEED_SIP_CONTACTS,
        "{stdout}"
    );
    let mut dns: Vec<String> = objects
        .iter()
        .map(|o| o["dn"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    dns.sort();
    dns.dedup();
    assert_eq!(
        dns.len(),
        objects.len(),
        "an object was listed twice: {stdout}"
    );
    let by_uri = |uri: &str| {
        let found: Vec<_> = objects
            .iter()
            .filter(|o| o["sip_uri"].as_str() == Some(uri))
            .collect();
        assert_eq!(found.len(), 1, "{uri}: {stdout}");
        found[0]
    };
    // AD returns DNs in its own case: CN=…,DC=…, the parent part in the parent's case.
    let endpoint = by_uri("sip:persistentchat@contoso.com");
    assert_eq!(endpoint["dn"], ENDPOINT_DN);
    assert_eq!(endpoint["kind"], "contact");
    assert_eq!(endpoint["pool"], "pcpool.contoso.com");
    assert_eq!(endpoint["owner_urn"], "urn:application:persistentchat");
    for (uri, dn) in [
        ("sip:ocschat@contoso.com", WELL_KNOWN_USERS[0]),
        ("sip:ocschat@fabrikam.com", WELL_KNOWN_USERS[1]),
    ] {
        let user = by_uri(uri);
        assert_eq!(user["dn"], dn);
        assert_eq!(user["kind"], "user");
        assert_eq!(user["pool"], serde_json::Value::Null, "legacy pool");
        assert_eq!(user["home_server_dn"], dc.pool_dn("1:1"));
    }
    assert_eq!(
        by_uri("sip:alice@contoso.com")["dn"],
        "CN=Alice Archer,CN=Users,DC=contoso,DC=com"
    );
    assert_eq!(by_uri("sip:dave@contoso.com")["enabled"], "FALSE");
    by_uri("sip:ocschat.fan@contoso.com");
    by_uri("sip:ocschat@adatum.com");
    assert_eq!(v["summary"]["users"], SEED_SIP_USERS);
    assert_eq!(v["summary"]["contacts"], SEED_SIP_CONTACTS);

    // The bad SIP address is a finding naming its DN, and the object is still listed.
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{stdout}");
    assert_eq!(
        findings[0]["dn"],
        "CN=Mallory Malformed,OU=People,DC=contoso,DC=com"
    );
    assert_eq!(findings[0]["kind"], "malformed_value");
    assert_eq!(
        findings[0]["reason"],
        "msRTCSIP-PrimaryUserAddress: missing `sip:` scheme in \"mallory@contoso.com\""
    );
}

/// Through the library: the domain NC search ends with AD's continuation reference to the
/// configuration NC, which is counted and never chased (chasing would resolve contoso.com).
#[test]
fn continuation_references_from_active_directory_are_ignored() {
    let dc = samba::samba();
    let env = [
        ("PCSYNC__DIRECTORY__URL", dc.ldaps_url.clone()),
        (
            "PCSYNC__DIRECTORY__TLS_CA_FILE",
            dc.ca_file.display().to_string(),
        ),
        (
            "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
            dc.service_password_file.display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings =
        pcsync::config::load_with_env(&repo("config/active-directory.toml"), Some(env)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (seen, stats, findings, caps) = runtime.block_on(async {
        let mut dir = pcsync::ldap::Directory::connect(&settings.directory)
            .await
            .unwrap();
        let mut findings = Vec::new();
        let mut seen = Vec::new();
        let stats = pcsync::inventory::scan(&mut dir, &settings, &mut findings, |o| {
            seen.push(o.dn.as_str().to_owned())
        })
        .await
        .unwrap();
        let caps = dir.capabilities().clone();
        dir.close().await;
        (seen, stats, findings, caps)
    });
    assert_eq!(seen.len(), SEED_SIP_USERS + SEED_SIP_CONTACTS, "{seen:?}");
    assert_eq!(stats.endpoint_container.entries, SEED_SIP_CONTACTS as u64);
    assert_eq!(stats.base.entries, SEED_SIP_USERS as u64);
    assert!(
        stats.base.references >= 1,
        "AD sends a reference to CN=Configuration: {stats:?}"
    );
    assert_eq!(stats.base.skipped, 0, "the container is not under base_dn");
    assert_eq!(findings.len(), 1, "{findings:?}");
    // Before verify_dirsync, the choice comes from the root DSE alone.
    assert_eq!(caps.watch, pcsync::ldap::LiveWatch::DirSync);
    assert_eq!(caps.writes, pcsync::ldap::ConditionalWrites::CompareAndSwap);
    assert!(caps.active_directory && caps.paged_results);
}

#[test]
fn a_plain_text_bind_is_refused_by_ad_with_one_clear_line() {
    let dc = samba::samba();
    let work = tempfile::tempdir().unwrap();
    // pcsync itself allows plain LDAP to loopback; AD refuses the simple bind (LDAP 8).
    let assert = pcsync_ad(&dc, work.path())
        .env("PCSYNC__DIRECTORY__URL", &dc.ldap_url)
        .arg("inventory")
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "pcsync: error: bind as {} to {} refused: the server requires an encrypted \
             connection (LDAP 8, strongerAuthRequired): BindSimple: Transport encryption \
             required.; use ldaps:// or starttls = true",
            dc.service_dn, dc.ldap_url
        )
    );
}

#[test]
fn a_wrong_password_gives_ads_diagnostic_on_one_line() {
    let dc = samba::samba();
    let work = tempfile::tempdir().unwrap();
    let wrong = work.path().join("wrong.pw");
    std::fs::write(&wrong, "Not-the-Passw0rd").unwrap();
    let assert = pcsync_ad(&dc, work.path())
        .env("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &wrong)
        .arg("inventory")
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected = format!(
        "pcsync: error: bind as {} to {} failed: invalid credentials (LDAP 49): 80090308: \
         LdapErr: DSID-",
        dc.service_dn, dc.ldaps_url
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("AcceptSecurityContext error, data 52e"),
        "{stderr}"
    );
    assert!(!stderr.contains("Not-the-Passw0rd"));
}

/// The service account can do exactly what docs/active-directory.md grants, and nothing more.
#[test]
fn the_service_account_has_least_privilege() {
    let dc = samba::samba();
    let svc = |program: &str, arg: &str| dc.service_change(program, arg);
    let refused = |result: Result<(), String>, what: &str| {
        let e = result.expect_err(what);
        assert!(
            e.contains("Insufficient access (50)"),
            "{what}: expected LDAP 50, got:\n{e}"
        );
    };

    // Reads both naming contexts.
    let out = dc.search_as_service(&dc.domain_dn, "(msRTCSIP-PrimaryUserAddress=*)", &["1.1"]);
    assert!(out.success(), "{}", out.both());
    assert_eq!(
        crate::common::slapd::count_entries(&out.stdout),
        SEED_SIP_USERS
    );
    let out = dc.search_as_service(ENDPOINT_CONTAINER_DN, "(objectClass=contact)", &["1.1"]);
    assert_eq!(crate::common::slapd::count_entries(&out.stdout), 1);

    // Creates, changes and deletes a contact in Application Contacts.
    let contact = format!("CN={{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}},{ENDPOINT_CONTAINER_DN}");
    let add = format!(
        "dn: {contact}\nobjectClass: contact\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com\n\
         msRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {}\n\
         msRTCSIP-OwnerUrn: urn:application:persistentchat\n",
        dc.pool_dn("1:2")
    );
    svc("ldapadd", &add).unwrap();
    svc(
        "ldapmodify",
        &format!(
            "dn: {contact}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\n\
             msRTCSIP-PrimaryHomeServer: {}\n",
            dc.pool_dn("1:3")
        ),
    )
    .unwrap();
    svc("ldapdelete", &contact).unwrap();

    // Nothing but contacts, and nowhere but Application Contacts.
    refused(
        svc(
            "ldapadd",
            &format!("dn: CN=Sneaky,{ENDPOINT_CONTAINER_DN}\nobjectClass: user\n"),
        ),
        "a user in Application Contacts",
    );
    refused(
        svc(
            "ldapadd",
            "dn: CN=Elsewhere,CN=Users,DC=contoso,DC=com\nobjectClass: contact\n",
        ),
        "a contact in CN=Users",
    );
    refused(
        svc(
            "ldapadd",
            &format!(
                "dn: CN=Elsewhere,{}\nobjectClass: contact\n",
                samba::POOLS_DN
            ),
        ),
        "a contact in CN=Pools",
    );
    // Users only where the well-known users live (to re-create one), nowhere else.
    refused(
        svc(
            "ldapadd",
            "dn: CN=Sneaky,CN=Users,DC=contoso,DC=com\nobjectClass: user\n",
        ),
        "a user in CN=Users",
    );
    refused(
        svc(
            "ldapadd",
            &format!(
                "dn: CN=Sneaky Group,{}\nobjectClass: group\n",
                samba::WELL_KNOWN_USERS_OU
            ),
        ),
        "a group in the well-known users' OU",
    );

    // Ordinary users are read-only to it.
    let alice = "CN=Alice Archer,CN=Users,DC=contoso,DC=com";
    refused(svc("ldapdelete", alice), "deleting an ordinary user");
    refused(
        svc(
            "ldapmodify",
            &format!(
                "dn: {alice}\nchangetype: modify\nreplace: msRTCSIP-UserEnabled\n\
                 msRTCSIP-UserEnabled: FALSE\n"
            ),
        ),
        "retiring an ordinary user",
    );
    refused(svc("ldapdelete", &dc.pool_dn("1:2")), "deleting a pool");

    // The well-known users: msRTCSIP attributes only (compare-and-swap works), and delete.
    let ocschat = WELL_KNOWN_USERS[0];
    refused(
        svc(
            "ldapmodify",
            &format!("dn: {ocschat}\nchangetype: modify\nreplace: description\ndescription: x\n"),
        ),
        "writing a non-msRTCSIP attribute of a well-known user",
    );
    let swap = |from: &str, to: &str| {
        svc(
            "ldapmodify",
            &format!(
                "dn: {ocschat}\nchangetype: modify\ndelete: msRTCSIP-UserEnabled\n\
                 msRTCSIP-UserEnabled: {from}\n-\nadd: msRTCSIP-UserEnabled\n\
                 msRTCSIP-UserEnabled: {to}\n-\n"
            ),
        )
    };
    swap("TRUE", "FALSE").unwrap();
    let stale = swap("TRUE", "FALSE").unwrap_err();
    assert!(stale.contains("No such attribute (16)"), "{stale}");
    swap("FALSE", "TRUE").unwrap();

    // Deleting: proven on a user made retirable the same way, so the seed stays intact.
    let temp = "CN=OCSChat Temp,OU=Service Accounts,DC=contoso,DC=com";
    dc.add(&format!(
        "dn: {temp}\nobjectClass: user\nsAMAccountName: ocschat-temp\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@temp.example\n"
    ));
    refused(svc("ldapdelete", temp), "deleting before the grant");
    dc.grant_retire_rights(temp);
    svc("ldapdelete", temp).unwrap();
    assert!(!dc.exists(temp));
}

/// What AD enforces that OpenLDAP does not: pcsync must replace endpoints by delete + add, and
/// may only write DN values that point at real objects.
#[test]
fn ad_refuses_config_renames_and_dangling_dn_values() {
    let dc = samba::samba();
    let out = crate::common::slapd::run(dc.admin_command("ldapmodrdn").args([
        "-r",
        ENDPOINT_DN,
        "CN={00000000-0000-0000-0000-000000000001}",
    ]));
    assert_eq!(out.code, Some(53), "{}", out.both());
    assert!(
        out.both()
            .contains("00002035: subtree_rename: Cannot rename"),
        "{}",
        out.both()
    );

    let e = dc
        .try_add(&format!(
            "dn: CN=Dangling,{ENDPOINT_CONTAINER_DN}\nobjectClass: contact\n\
             msRTCSIP-PrimaryUserAddress: sip:dangling@contoso.com\n\
             msRTCSIP-PrimaryHomeServer: CN=No Such Pool,{}\n",
            samba::POOLS_DN
        ))
        .unwrap_err();
    assert!(
        !dc.exists(&format!("CN=Dangling,{ENDPOINT_CONTAINER_DN}")),
        "{e}"
    );
}

#[test]
fn restore_seed_puts_deleted_objects_and_rights_back() {
    let dc = samba::samba();
    let ocschat = WELL_KNOWN_USERS[1];
    dc.delete(ocschat);
    let extra = format!("CN=Extra,{ENDPOINT_CONTAINER_DN}");
    dc.add(&format!("dn: {extra}\nobjectClass: contact\n"));
    let contoso = WELL_KNOWN_USERS[0];
    dc.modify(&format!(
        "dn: {contoso}\nchangetype: modify\nreplace: msRTCSIP-UserEnabled\n\
         msRTCSIP-UserEnabled: FALSE\n-\nreplace: msRTCSIP-TargetHomeServer\n\
         msRTCSIP-TargetHomeServer: {}\n-\n",
        dc.pool_dn("1:2")
    ));
    dc.restore_seed();
    assert!(dc.exists(ocschat));
    assert!(!dc.exists(&extra));
    assert!(dc.exists(ENDPOINT_DN));
    let values = dc.search(
        contoso,
        "(objectClass=*)",
        &["msRTCSIP-UserEnabled", "msRTCSIP-TargetHomeServer"],
    );
    assert!(values.contains("msRTCSIP-UserEnabled: TRUE"), "{values}");
    assert!(!values.contains("TargetHomeServer"), "{values}");
    // The re-created user is retirable again.
    dc.service_change(
        "ldapmodify",
        &format!(
            "dn: {ocschat}\nchangetype: modify\nreplace: msRTCSIP-UserEnabled\n\
             msRTCSIP-UserEnabled: TRUE\n"
        ),
    )
    .unwrap();
}

/// A second DC (another test run on this host, a system slapd or samba) would find the fixed
/// ports taken: the fixture says which port, instead of Samba's log failing somewhere.
#[test]
fn a_taken_port_fails_with_a_message_naming_it() {
    let _dc = samba::samba();
    let panic = std::panic::catch_unwind(samba::require_free_ports).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("port 389 on 127.0.0.1 is taken by another process"),
        "{message}"
    );
}
