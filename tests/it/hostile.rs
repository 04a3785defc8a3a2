//! Hostile directory data on a real slapd (issue 8, "Bad input"): very long values, binary
//! values, 10,000 values in one attribute, DNs with every RFC 4514 special character and
//! non-ASCII. `inventory`, `reconcile` and `mappings` (all `--format json`) must exit normally,
//! report malformed values as findings naming the DN, and never panic; and the well-known user
//! whose DN holds `\,` `\+` `\"` `\\` and non-ASCII is still swapped end to end.
//!
//! Invalid UTF-8 in a text attribute cannot be stored: slapd checks the Directory String syntax
//! of `msRTCSIP-PrimaryUserAddress` on every add, modify and slapadd (asserted below), and AD
//! does the same for Unicode String. Binary values are stored in an octet-string attribute
//! (`msRTCSIP-OriginatorSid`), and the conversion of invalid UTF-8 in a text attribute into a
//! finding is tested with literal bytes in src/model (`two_sip_addresses_empty_and_binary_values_are_findings`).

use pcsync::model::Dn;
use serde_json::Value;

use crate::common::samba::base64_encode;
use crate::common::slapd::{DOMAIN_DN, Slapd};
use crate::common::{Backend, output, pcsync, repo};

const POOL1: &str = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

/// The well-known user's RDN value: every character RFC 4514 escapes inside a value, and
/// non-ASCII.
const WELL_KNOWN_CN: &str = "OCSChat, Legacy + \"GC\" \\ Müller";
const WELL_KNOWN_DN: &str =
    "CN=OCSChat\\, Legacy \\+ \\\"GC\\\" \\\\ Müller,OU=Service Accounts,DC=contoso,DC=com";
const PROXY_VALUES: usize = 10_000;
const CONTAINER: &str =
    "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

fn dn(text: &str) -> Dn {
    Dn::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn user(dn: &str, cn: &str, sip: &str, extra: &str) -> String {
    format!(
        "dn:: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: user\ncn:: {}\nsn: hostile\nmsRTCSIP-PrimaryUserAddress:: {}\n\
         msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: {POOL1}\n{extra}\n\n",
        base64_encode(dn.as_bytes()),
        base64_encode(cn.as_bytes()),
        base64_encode(sip.as_bytes()),
    )
}

/// The fixture with its contoso well-known user renamed to [`WELL_KNOWN_DN`] and given 10,000
/// proxyAddresses, plus the hostile objects.
fn start() -> Slapd {
    let domain = std::fs::read_to_string(repo("tests/fixtures/contoso-domain.ldif")).unwrap();
    let config = std::fs::read_to_string(repo("tests/fixtures/contoso-config.ldif")).unwrap();
    let mut proxies = String::new();
    for i in 0..PROXY_VALUES {
        proxies.push_str(&format!("proxyAddresses: smtp:alias{i:05}@contoso.com\n"));
    }
    let old = "dn: CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com\nobjectClass: top\n\
               objectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
               cn: OCSChat\n";
    assert!(domain.contains(old), "fixture changed: update hostile.rs");
    let new = format!(
        "dn:: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: user\ncn:: {}\n{proxies}",
        base64_encode(WELL_KNOWN_DN.as_bytes()),
        base64_encode(WELL_KNOWN_CN.as_bytes()),
    );
    let domain = domain.replace(old, &new);

    let long_display = "D".repeat(100 * 1024);
    let long_sip = format!("sip:{}@contoso.com", "l".repeat(10 * 1024));
    let extra = [
        user(
            "CN=Long Display,OU=Users,DC=contoso,DC=com",
            "Long Display",
            "sip:longdisplay@contoso.com",
            &format!("displayName: {long_display}"),
        ),
        user(
            "CN=Long Sip,OU=Users,DC=contoso,DC=com",
            "Long Sip",
            &long_sip,
            "",
        ),
        user(
            "CN=Binary Sid,OU=Users,DC=contoso,DC=com",
            "Binary Sid",
            "sip:binary@contoso.com",
            &format!(
                "msRTCSIP-OriginatorSid:: {}",
                base64_encode(&[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28])
            ),
        ),
        user(
            "CN=\\#Hash Leading,OU=Users,DC=contoso,DC=com",
            "#Hash Leading",
            "sip:hash@contoso.com",
            "",
        ),
        user(
            "CN=Jörg Müller-Łukasiewicz 日本,OU=Users,DC=contoso,DC=com",
            "Jörg Müller-Łukasiewicz 日本",
            "sip:jörg.müller@contoso.com",
            "displayName:: Sm/Dtmcg TcO8bGxlcg==",
        ),
        user(
            "CN=Bad Sip\\2C Escaped,OU=Users,DC=contoso,DC=com",
            "Bad Sip, Escaped",
            "sip:has space@contoso.com",
            "",
        ),
    ]
    .concat();
    let container = CONTAINER;
    let endpoint_cn = "Ëndpoint, Chat + \"Room\" #2";
    let endpoint = format!(
        "dn:: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: contact\ncn:: {}\nsn: endpoint\n\
         msRTCSIP-PrimaryUserAddress:: {}\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {POOL1}\nmsRTCSIP-OwnerUrn: urn:application:persistentchat\n\n\
         dn: CN=Long Endpoint,{container}\nobjectClass: top\nobjectClass: person\n\
         objectClass: organizationalPerson\nobjectClass: contact\ncn: Long Endpoint\nsn: endpoint\n\
         msRTCSIP-PrimaryUserAddress: {long_sip}\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {POOL1}\n\n",
        base64_encode(format!("CN=Ëndpoint\\, Chat \\+ \\\"Room\\\" #2,{container}").as_bytes()),
        base64_encode(endpoint_cn.as_bytes()),
        base64_encode("sip:räume@contoso.com".as_bytes()),
    );
    Slapd::builder()
        .fixture_ldif(
            &format!("{domain}\n{extra}"),
            &format!("{config}\n{endpoint}"),
        )
        .start()
}

/// Runs pcsync with `args`; returns (exit code, parsed JSON stdout, stderr).
fn run_json(slapd: &Slapd, work: &std::path::Path, args: &[&str]) -> (i32, Value, String) {
    let assert = pcsync(slapd, work)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .assert();
    let (out, err) = output(&assert);
    let code = assert
        .get_output()
        .status
        .code()
        .expect("exited, not killed");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let doc = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {out:.2000} {err}"));
    (code, doc, err)
}

/// Issue 18: `inventory` reads each row in place from the raw entry. It must list what the scan
/// that builds each `DirectoryObject` (`pcsync::inventory::scan`) reads, field for field and in
/// the same order, with the same findings in the same order.
fn assert_inventory_is_the_object_scan(slapd: &Slapd, inventory: &Value) {
    let env = slapd.env().into_iter().map(|(k, v)| (k.to_string(), v));
    let settings = pcsync::config::load_with_env(&slapd.config(), Some(env.collect())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (objects, findings) = runtime.block_on(async {
        let mut dir = pcsync::ldap::Directory::connect(&settings.directory)
            .await
            .unwrap();
        let mut findings = Vec::new();
        let mut objects = Vec::new();
        pcsync::inventory::scan(&mut dir, &settings, &mut findings, |o| {
            objects.push(serde_json::json!({
                "dn": o.dn.as_str(),
                "sip_uri": o.sip_uri.as_ref().map(|u| u.as_str()),
                "home_server_dn": o.home_server_dn.as_ref().map(|d| d.as_str()),
                "owner_urn": o.owner_urn,
                "display_name": o.display_name,
            }))
        })
        .await
        .unwrap();
        dir.close().await;
        (objects, findings)
    });
    let listed: Vec<Value> = inventory["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let fields = [
                "dn",
                "sip_uri",
                "home_server_dn",
                "owner_urn",
                "display_name",
            ];
            fields
                .iter()
                .map(|f| (f.to_string(), row[f].clone()))
                .collect()
        })
        .collect();
    assert_eq!(listed, objects);
    assert_eq!(
        inventory["findings"],
        serde_json::to_value(&findings).unwrap()
    );
}

/// The findings of a JSON document as (dn, reason), DNs lower-cased.
fn findings(doc: &Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["dn"].as_str().unwrap().to_lowercase(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn finding_for<'a>(all: &'a [(String, String)], dn_start: &str) -> Option<&'a str> {
    let dn_start = dn_start.to_lowercase();
    all.iter()
        .find(|(dn, _)| dn.starts_with(&dn_start))
        .map(|(_, r)| r.as_str())
}

#[test]
fn hostile_values_are_findings_with_their_dn_and_the_escaped_well_known_user_is_swapped() {
    let slapd = start();
    let work = tempfile::tempdir().unwrap();

    // Invalid UTF-8 in a Directory String attribute is refused by slapd (see the module docs).
    let refused = slapd.try_modify(&format!(
        "dn: CN=Binary Sid,OU=Users,{DOMAIN_DN}\nchangetype: modify\n\
         replace: msRTCSIP-PrimaryUserAddress\nmsRTCSIP-PrimaryUserAddress:: {}\n",
        base64_encode(b"sip:\xff\xfe@contoso.com")
    ));
    assert!(refused.is_err(), "slapd stored invalid UTF-8: {refused:?}");

    // inventory: every object listed or reported; nothing dropped silently.
    let (code, inv, err) = run_json(&slapd, work.path(), &["inventory", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_inventory_is_the_object_scan(&slapd, &inv);
    let all = findings(&inv);
    let long = finding_for(&all, "cn=long sip,ou=users").expect("finding for the long SIP address");
    assert!(long.contains("msRTCSIP-PrimaryUserAddress"), "{long}");
    assert!(
        long.len() < 400,
        "the reason is truncated: {} bytes",
        long.len()
    );
    let long =
        finding_for(&all, "cn=long display,ou=users").expect("finding for the long displayName");
    assert!(long.contains("displayName"), "{long}");
    let bad = finding_for(&all, "cn=bad sip\\2c escaped,ou=users")
        .or_else(|| finding_for(&all, "cn=bad sip\\, escaped,ou=users"))
        .expect("finding for the SIP address with a space");
    assert!(bad.contains("' '"), "{bad}");
    let long_ep = finding_for(&all, "cn=long endpoint,").expect("finding for the long endpoint");
    assert!(long_ep.contains("longer than"), "{long_ep}");
    let objects = inv["objects"].as_array().unwrap();
    let uris: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["sip_uri"].as_str())
        .collect();
    for want in [
        "sip:binary@contoso.com",
        "sip:hash@contoso.com",
        "sip:jörg.müller@contoso.com",
        "sip:räume@contoso.com",
        "sip:ocschat@contoso.com",
        "sip:longdisplay@contoso.com",
    ] {
        assert!(
            uris.contains(&want),
            "{want} missing from inventory: {uris:?}"
        );
    }
    // slapd returns these DNs hex-escaped (`\2c`, `\23`): compare as DNs.
    let dns: Vec<Dn> = objects
        .iter()
        .map(|o| Dn::parse(o["dn"].as_str().unwrap()).unwrap())
        .collect();
    for want in [
        "CN=\\#Hash Leading,OU=Users,DC=contoso,DC=com",
        "CN=Jörg Müller-Łukasiewicz 日本,OU=Users,DC=contoso,DC=com",
        WELL_KNOWN_DN,
    ] {
        assert!(dns.contains(&dn(want)), "{want} missing: {dns:?}");
    }
    assert!(
        inv.to_string().len() < 200_000,
        "no value is echoed in full"
    );

    // mappings: the escaped non-ASCII endpoint is served; the long one is a finding.
    let (code, map, err) = run_json(&slapd, work.path(), &["mappings", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let entries = map["entries"].as_array().unwrap();
    let raume = entries
        .iter()
        .find(|e| e["sip_uri"] == "sip:räume@contoso.com")
        .unwrap_or_else(|| panic!("räume not mapped: {map}"));
    assert_eq!(raume["pool"], "pcpool1.contoso.com");
    assert_eq!(
        dn(raume["dn"].as_str().unwrap()),
        dn(&format!(
            "CN=Ëndpoint\\, Chat \\+ \\\"Room\\\" #2,{CONTAINER}"
        ))
    );
    assert!(
        finding_for(&findings(&map), "cn=long endpoint,").is_some(),
        "{map}"
    );

    // reconcile: the escaped well-known user is planned, then swapped, then nothing is left.
    let (code, plan, err) = run_json(&slapd, work.path(), &["reconcile", "--format", "json"]);
    assert_eq!(code, 2, "{plan} {err}");
    let plan_findings = findings(&plan);
    for dn_start in ["cn=long sip,ou=users", "cn=long endpoint,"] {
        assert!(
            finding_for(&plan_findings, dn_start).is_some(),
            "reconcile reports {dn_start}: {plan_findings:?}"
        );
    }
    let retire = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "retire_user" && c["sip_uri"] == "sip:ocschat@contoso.com")
        .unwrap_or_else(|| panic!("no retire of the escaped user: {plan}"));
    assert_eq!(dn(retire["dn"].as_str().unwrap()), dn(WELL_KNOWN_DN));
    let assert = pcsync(&slapd, work.path())
        .args(["reconcile", "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(0), "{out}{err}");
    assert!(out.contains("applied 2 of 2 swap(s); 0 failed"), "{out}");
    assert!(
        slapd
            .try_search(DOMAIN_DN, "(sAMAccountName=OCSChat)", &["1.1"])
            .unwrap()
            .trim()
            .is_empty(),
        "the escaped well-known user is gone"
    );
    let (code, again, err) = run_json(&slapd, work.path(), &["reconcile", "--format", "json"]);
    assert_eq!(code, 0, "{again} {err}");
    assert!(again["changes"].as_array().unwrap().is_empty(), "{again}");

    // The before-image in the audit log kept every one of the 10,000 values.
    let records = pcsync::audit::read(&work.path().join("var/audit.jsonl")).unwrap();
    let image = records
        .iter()
        .filter_map(|r| r.before.as_ref())
        .find(|e| e.get("proxyAddresses").len() == PROXY_VALUES)
        .expect("a before-image with all 10,000 proxyAddresses");
    assert_eq!(dn(image.dn.as_str()), dn(WELL_KNOWN_DN));
}
