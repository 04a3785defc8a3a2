//! Several domains in one forest (`directory.global_catalog`). Samba cannot build a child
//! domain, so the per-domain routing is proven on a slapd holding two domain suffixes
//! (`dc=contoso,dc=com`, `dc=fabrikam,dc=com`) and the configuration suffix, each its own
//! database, with AD's crossRef objects naming each domain's DNS name; the domains' names
//! resolve (through nss_wrapper) to two loopback addresses the same slapd listens on, and its
//! `stats` log shows which address received each write. The Global Catalog search itself is
//! proven on the Samba AD DC (port 3269).

use std::collections::BTreeMap;

use crate::common::samba::{self, Seed};
use crate::common::samba_pair::wrapper_preload;
use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_on};

/// AD's crossRef class and the three attributes pcsync reads, with AD's OIDs.
const CROSSREF_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.2.16 NAME 'nCName' EQUALITY distinguishedNameMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.28 NAME 'dnsRoot' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.2.840.113556.1.4.375 NAME 'systemFlags' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.3.11 NAME 'crossRef' SUP top STRUCTURAL
  MUST ( cn $ nCName $ dnsRoot ) MAY ( systemFlags ) )
";

/// The domains' DNS names and the loopback addresses they resolve to.
const CONTOSO: (&str, &str) = ("contoso.test", "127.0.0.5");
const FABRIKAM: (&str, &str) = ("fabrikam.test", "127.0.0.6");

/// The fabrikam.com well-known user, moved from the contoso fixture into its own domain.
const OCSCHAT_FABRIKAM: &str = "CN=OCSChat Fabrikam,OU=Service Accounts,DC=fabrikam,DC=com";
const OCSCHAT_CONTOSO: &str = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";

fn fabrikam_ldif() -> String {
    format!(
        "dn: DC=fabrikam,DC=com\nobjectClass: top\nobjectClass: domain\ndc: fabrikam\n\n\
         dn: OU=Service Accounts,DC=fabrikam,DC=com\nobjectClass: top\n\
         objectClass: organizationalUnit\nou: Service Accounts\n\n\
         dn: {OCSCHAT_FABRIKAM}\nobjectClass: top\nobjectClass: person\n\
         objectClass: organizationalPerson\nobjectClass: user\ncn: OCSChat Fabrikam\nsn: OCSChat\n\
         displayName: Group Chat Lookup Service (fabrikam.com)\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@fabrikam.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com\n\
         msRTCSIP-OptionFlags: 256\n"
    )
}

fn cross_refs() -> String {
    let mut out = String::from(
        "dn: CN=Partitions,CN=Configuration,DC=contoso,DC=com\nobjectClass: container\ncn: Partitions\n\n",
    );
    for (cn, nc, root, flags) in [
        ("CONTOSO", "DC=contoso,DC=com", CONTOSO.0, 3),
        ("FABRIKAM", "DC=fabrikam,DC=com", FABRIKAM.0, 3),
        (
            "Enterprise Configuration",
            "CN=Configuration,DC=contoso,DC=com",
            CONTOSO.0,
            1,
        ),
    ] {
        out.push_str(&format!(
            "dn: CN={cn},CN=Partitions,CN=Configuration,DC=contoso,DC=com\nobjectClass: crossRef\n\
             cn: {cn}\nnCName: {nc}\ndnsRoot: {root}\nsystemFlags: {flags}\n\n"
        ));
    }
    out
}

/// The contoso fixture without the fabrikam.com well-known user (it lives in its own domain).
fn contoso_ldif() -> String {
    let text =
        std::fs::read_to_string(crate::common::repo("tests/fixtures/contoso-domain.ldif")).unwrap();
    text.split("\n\n")
        .filter(|record| !record.contains("dn: CN=OCSChat Fabrikam,"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The local address of each connection, and the DNs each one wrote, from slapd's stats log.
fn writes_by_address(stats: &str) -> BTreeMap<String, Vec<String>> {
    let mut local: BTreeMap<&str, String> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stats.lines() {
        let Some(conn) = line.split_whitespace().find(|w| w.starts_with("conn=")) else {
            continue;
        };
        if line.contains(" ACCEPT from ") {
            // `... ACCEPT from IP=127.0.0.1:40000 (IP=127.0.0.6:389)`
            if let Some(addr) = line.rsplit("(IP=").next() {
                let ip = addr
                    .trim_end_matches(')')
                    .rsplit_once(':')
                    .map(|(ip, _)| ip);
                local.insert(conn, ip.unwrap_or_default().to_owned());
            }
            continue;
        }
        for op in [" ADD dn=", " DEL dn=", " MOD dn="] {
            if let Some((_, dn)) = line.split_once(op) {
                let ip = local.get(conn).cloned().unwrap_or_default();
                out.entry(ip)
                    .or_default()
                    .push(dn.trim_matches('"').to_ascii_lowercase());
            }
        }
    }
    out
}

/// The two-domain slapd, and the work directory and name resolution pcsync runs with.
struct TwoDomains {
    slapd: Slapd,
    work: tempfile::TempDir,
    /// nss_wrapper's hosts file: each domain's DNS name at its loopback address.
    hosts: std::path::PathBuf,
    port: String,
}

impl TwoDomains {
    fn start() -> TwoDomains {
        let slapd = Slapd::builder()
            .fixture_ldif(
                &contoso_ldif(),
                &std::fs::read_to_string(crate::common::repo("tests/fixtures/contoso-config.ldif"))
                    .unwrap(),
            )
            .extra_config_ldif(&cross_refs())
            .second_domain(
                "DC=fabrikam,DC=com",
                &fabrikam_ldif(),
                CROSSREF_SCHEMA,
                &[CONTOSO.1, FABRIKAM.1],
            )
            .tls_names(&["127.0.0.1", CONTOSO.0, FABRIKAM.0])
            .start();
        let work = tempfile::tempdir().unwrap();
        let hosts = work.path().join("hosts");
        std::fs::write(
            &hosts,
            format!(
                "{} {}\n{} {}\n",
                CONTOSO.1, CONTOSO.0, FABRIKAM.1, FABRIKAM.0
            ),
        )
        .unwrap();
        let port = slapd
            .ldap_url
            .trim_end_matches('/')
            .rsplit_once(':')
            .unwrap()
            .1
            .to_owned();
        TwoDomains {
            slapd,
            work,
            hosts,
            port,
        }
    }

    /// `pcsync ARGS` configured with contoso.test's name and the Global Catalog.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let assert = pcsync(&self.slapd, self.work.path())
            .env("LD_PRELOAD", wrapper_preload())
            .env("NSS_WRAPPER_HOSTS", &self.hosts)
            .env(
                "PCSYNC__DIRECTORY__URL",
                format!("ldap://{}:{}", CONTOSO.0, self.port),
            )
            .env("PCSYNC__DIRECTORY__STARTTLS", "true")
            .env("PCSYNC__DIRECTORY__TLS_CA_FILE", &self.slapd.ca_file)
            .env(
                "PCSYNC__DIRECTORY__GLOBAL_CATALOG",
                format!("ldap://127.0.0.1:{}", self.port),
            )
            .args(args)
            .assert();
        let (stdout, stderr) = output(&assert);
        (assert.get_output().status.code(), stdout, stderr)
    }

    /// slapd's stats log so far.
    fn stats(&self) -> String {
        std::fs::read_to_string(self.slapd.dir.join("stats.log")).unwrap()
    }
}

const ENDPOINTS: &str =
    "cn=application contacts,cn=rtc service,cn=services,cn=configuration,dc=contoso,dc=com";

/// With `global_catalog` set, `reconcile --apply` finds the well-known users of both domains
/// through the Global Catalog, and writes each on its own domain's server (the fabrikam user's
/// release and delete arrive on fabrikam.test's address, the contoso user's on contoso.test's),
/// while both endpoints go to the configuration naming context on the configured server.
#[test]
fn each_object_is_written_on_its_own_domains_server() {
    let forest = TwoDomains::start();
    let (code, stdout, stderr) = forest.run(&["check"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("ok    gc ")),
        "{stdout}"
    );
    let (code, stdout, stderr) = forest.run(&["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("applied 2 of 2 swap(s); 0 failed"),
        "{stdout}"
    );

    let writes = writes_by_address(&forest.stats());
    let on = |ip: &str| writes.get(ip).cloned().unwrap_or_default();
    // The fabrikam user's two writes in the swap order: its release, then its delete.
    assert_eq!(
        on(FABRIKAM.1),
        vec![OCSCHAT_FABRIKAM.to_ascii_lowercase(); 2],
        "writes by address: {writes:#?}"
    );
    let contoso = on(CONTOSO.1);
    assert!(
        contoso.contains(&OCSCHAT_CONTOSO.to_ascii_lowercase()),
        "writes by address: {writes:#?}"
    );
    let endpoints: Vec<&String> = contoso
        .iter()
        .filter(|dn| dn.ends_with(ENDPOINTS))
        .collect();
    assert_eq!(endpoints.len(), 2, "writes by address: {writes:#?}");
    assert!(
        on("127.0.0.1").is_empty(),
        "nothing is written through the Global Catalog: {writes:#?}"
    );
    for dn in [OCSCHAT_CONTOSO, OCSCHAT_FABRIKAM] {
        let gone = forest.slapd.try_search(dn, "(objectClass=*)", &["1.1"]);
        assert!(
            gone.as_ref()
                .is_err_and(|e| e.contains("No such object (32)")),
            "{dn} retired: {gone:?}"
        );
    }
}

/// `restore --run R --apply` of that swap, in the same forest: the fabrikam user is brought
/// back (re-created from its before-image: OpenLDAP keeps no tombstone) on fabrikam.test's
/// address, the endpoints are released and deleted on the configured server, and the result
/// check finds each URI held again by its user through the Global Catalog.
#[test]
fn restore_writes_each_user_back_on_its_own_domains_server() {
    let forest = TwoDomains::start();
    let (code, stdout, stderr) = forest.run(&["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let run = crate::common::run_id(forest.work.path(), 0);
    let before = forest.stats().len();

    let (code, stdout, stderr) = forest.run(&["restore", "--run", &run, "--apply"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("restored 4 of 4 action(s) of run {run}")),
        "{stdout}"
    );
    let writes = writes_by_address(&forest.stats()[before..]);
    let on = |ip: &str| writes.get(ip).cloned().unwrap_or_default();
    assert_eq!(
        on(FABRIKAM.1),
        vec![OCSCHAT_FABRIKAM.to_ascii_lowercase()],
        "the fabrikam user is re-created on its own domain's server; writes by address: {writes:#?}"
    );
    let contoso = on(CONTOSO.1);
    assert!(
        !contoso.contains(&OCSCHAT_FABRIKAM.to_ascii_lowercase()),
        "writes by address: {writes:#?}"
    );
    // Each endpoint twice: released (its address cleared) before its user comes back, then
    // deleted (docs/operations.md, restore's order).
    assert_eq!(
        contoso.iter().filter(|dn| dn.ends_with(ENDPOINTS)).count(),
        4,
        "both endpoints released and deleted on the configured server; writes by address: \
         {writes:#?}"
    );
    assert!(
        on("127.0.0.1").is_empty(),
        "nothing is written through the Global Catalog: {writes:#?}"
    );
    let back = forest.slapd.search(
        OCSCHAT_FABRIKAM,
        "(objectClass=*)",
        &["msRTCSIP-PrimaryUserAddress", "msRTCSIP-UserEnabled"],
    );
    assert!(
        back.contains("msRTCSIP-PrimaryUserAddress: sip:ocschat@fabrikam.com")
            && back.contains("msRTCSIP-UserEnabled: TRUE"),
        "{back}"
    );
}

/// On the Samba AD DC, `global_catalog` makes the user search go through the Global Catalog
/// (ldaps on 3269): `inventory` lists the same objects as without it, and fails naming the
/// Global Catalog when that does not answer; `check` verifies the attributes pcsync searches
/// are in the partial attribute set, and names one that is not.
#[test]
fn the_global_catalog_search_runs_on_the_samba_dc() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let inventory = |gc: Option<&str>| {
        let mut cmd = pcsync_on(&*dc, work.path());
        if let Some(gc) = gc {
            cmd.env("PCSYNC__DIRECTORY__GLOBAL_CATALOG", gc);
        }
        let assert = cmd.args(["inventory", "--format", "json"]).assert();
        let (stdout, stderr) = output(&assert);
        (assert.get_output().status.code(), stdout, stderr)
    };
    let dns = |stdout: &str| {
        let doc: serde_json::Value = serde_json::from_str(stdout).unwrap();
        let mut dns: Vec<String> = doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["dn"].as_str().unwrap().to_owned())
            .collect();
        dns.sort();
        dns
    };
    let (code, plain, err) = inventory(None);
    assert_eq!(code, Some(0), "{err}");
    let (code, through_gc, err) = inventory(Some("ldaps://127.0.0.1:3269"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(dns(&through_gc), dns(&plain));
    assert!(dns(&plain).len() >= 8, "{plain}");
    // A Global Catalog that does not answer is named: the search really goes there.
    let (code, _, err) = inventory(Some("ldaps://127.0.0.1:1"));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("ldaps://127.0.0.1:1") && err.contains("connection refused"),
        "{err}"
    );

    let check = || {
        let assert = pcsync_on(&*dc, work.path())
            .env(
                "PCSYNC__DIRECTORY__GLOBAL_CATALOG",
                "ldaps://127.0.0.1:3269",
            )
            .arg("check")
            .assert();
        let (stdout, _) = output(&assert);
        stdout
            .lines()
            .find(|l| l.contains(" gc "))
            .unwrap_or_else(|| panic!("no gc line:\n{stdout}"))
            .to_owned()
    };
    assert_eq!(
        check(),
        "ok    gc         ldaps://127.0.0.1:3269 answers; msRTCSIP-PrimaryUserAddress, \
         msRTCSIP-UserEnabled, msRTCSIP-PrimaryHomeServer in the partial attribute set"
    );
    let pas = |on: &str| {
        dc.modify(&format!(
            "dn: CN=ms-RTC-SIP-UserEnabled,{}\nchangetype: modify\nreplace: \
             isMemberOfPartialAttributeSet\nisMemberOfPartialAttributeSet: {on}\n-\n\n\
             dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-\n",
            samba::SCHEMA_DN
        ));
    };
    pas("FALSE");
    let line = std::panic::catch_unwind(check);
    pas("TRUE");
    assert_eq!(
        line.unwrap(),
        "FAIL  gc         ldaps://127.0.0.1:3269: msRTCSIP-UserEnabled not in the Global \
         Catalog's partial attribute set (isMemberOfPartialAttributeSet), so a forest-wide \
         search cannot see it: mark it \"Replicate this attribute to the Global Catalog\" in \
         the schema"
    );
}
