//! The planner and collector with no server: every detection rule, every finding, determinism.

use chrono::TimeZone;

use super::*;
use crate::config::{Settings, from_toml_str};
use crate::model::{Attributes, Classifier, Sighting};

const CONTAINER: &str =
    "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
const LEGACY: &str = "CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
const POOL1: &str = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
const POOL2: &str = "CN=Lc Services,CN=Microsoft,CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

fn settings(extra_migration: &str, retire: &str) -> Settings {
    let text = format!(
        r#"
[directory]
url = "ldap://127.0.0.1:389"
base_dn = "dc=contoso,dc=com"
[directory.layout]
endpoint_container = "{CONTAINER}"
[[pools]]
fqdn = "pcpool1.contoso.com"
home_server_dn = "{POOL1}"
[[pools]]
fqdn = "pcpool2.contoso.com"
home_server_dn = "{POOL2}"
[[migrations]]
well_known_uri = "sip:ocschat@contoso.com"
target_pool = "pcpool1.contoso.com"
legacy_home_server_dn = "{LEGACY}"
[[migrations]]
well_known_uri = "sip:ocschat@fabrikam.com"
target_pool = "pcpool2.contoso.com"
{extra_migration}
[safety]
retire = "{retire}"
"#
    );
    from_toml_str(&text, "test.toml", Some(Default::default())).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn object(dn: &str, classes: &[&str], pairs: &[(&str, &str)]) -> DirectoryObject {
    let mut a = Attributes::new();
    a.insert(
        "objectClass",
        classes.iter().map(|c| c.as_bytes().to_vec()).collect(),
    );
    for (k, v) in pairs {
        a.insert(k, vec![v.as_bytes().to_vec()]);
    }
    DirectoryObject::from_attributes(dn, a, &classifier(), &mut Vec::new()).unwrap()
}

fn classifier() -> Classifier {
    Classifier::new(
        &["user".into(), "inetOrgPerson".into()],
        &["contact".into()],
    )
}

/// Shows `o` to the collector as the scan would: its kind and SIP address only.
fn sight(c: &mut Collector, o: &DirectoryObject) {
    let mut buffer = String::new();
    let sighting = Sighting::read(
        o.dn.as_str(),
        o.attributes.texts("objectClass"),
        o.attributes
            .get("msRTCSIP-PrimaryUserAddress")
            .iter()
            .map(Vec::as_slice),
        &classifier(),
        &mut buffer,
        &mut Vec::new(),
    );
    if let Some(sighting) = sighting {
        c.observe(sighting);
    }
}

fn user(dn: &str, uri: &str, home: &str) -> DirectoryObject {
    object(
        dn,
        &["top", "person", "user"],
        &[
            ("msRTCSIP-PrimaryUserAddress", uri),
            ("msRTCSIP-UserEnabled", "TRUE"),
            ("msRTCSIP-PrimaryHomeServer", home),
            ("msRTCSIP-OptionFlags", "256"),
            ("sAMAccountName", "OCSChat"),
        ],
    )
}

fn endpoint(uri: &str, home: &str) -> DirectoryObject {
    object(
        &format!("CN={{1}},{CONTAINER}"),
        &["top", "person", "organizationalPerson", "contact"],
        &[
            ("msRTCSIP-PrimaryUserAddress", uri),
            ("msRTCSIP-UserEnabled", "TRUE"),
            ("msRTCSIP-PrimaryHomeServer", home),
            ("msRTCSIP-OwnerUrn", "urn:application:persistentchat"),
        ],
    )
}

/// The scan of `objects`, then, as reconcile does, the holders of a migration's URI read in
/// full (here: the objects themselves, in the order the scan met them).
fn observe(s: &Settings, objects: Vec<DirectoryObject>) -> Observed {
    let desired = s.desired();
    let mut c = Collector::new(&desired);
    for o in &objects {
        sight(&mut c, o);
    }
    for (uri, holders) in c.holders_mut() {
        let whole: Vec<DirectoryObject> = objects
            .iter()
            .filter(|o| o.sip_uri.as_ref().is_some_and(|u| u.normalized() == uri))
            .cloned()
            .collect();
        assert_eq!(whole.len(), holders.len());
        *holders = whole;
    }
    c.finish(Vec::new())
}

fn run(s: &Settings, objects: Vec<DirectoryObject>) -> Plan {
    plan(&s.desired(), &observe(s, objects), now())
}

fn summary(p: &Plan) -> Vec<(Action, String, String)> {
    p.changes
        .iter()
        .map(|c| {
            let h = c.header();
            (c.action(), h.sip_uri.to_string(), h.pool.clone())
        })
        .collect()
}

fn kinds(p: &Plan) -> Vec<(FindingKind, String)> {
    p.findings.iter().map(|f| (f.kind, f.dn.clone())).collect()
}

#[test]
fn both_well_known_users_are_swapped_to_their_own_pools() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![
            user(
                "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com",
                "sip:OCSChat@Contoso.com",
                LEGACY,
            ),
            user(
                "CN=OCSChat Fabrikam,OU=Service Accounts,DC=contoso,DC=com",
                "sip:ocschat@fabrikam.com",
                POOL1,
            ),
        ],
    );
    assert_eq!(
        summary(&p),
        [
            (
                Action::RetireUser,
                "sip:ocschat@contoso.com".into(),
                "pcpool1.contoso.com".into()
            ),
            (
                Action::CreateEndpoint,
                "sip:ocschat@contoso.com".into(),
                "pcpool1.contoso.com".into()
            ),
            (
                Action::RetireUser,
                "sip:ocschat@fabrikam.com".into(),
                "pcpool2.contoso.com".into()
            ),
            (
                Action::CreateEndpoint,
                "sip:ocschat@fabrikam.com".into(),
                "pcpool2.contoso.com".into()
            ),
        ]
    );
    assert!(p.findings.is_empty(), "{:?}", p.findings);
    assert_eq!(p.summary.ready, 4);
    let Change::RetireUser(retire) = &p.changes[0] else {
        panic!("{:?}", p.changes[0]);
    };
    assert_eq!(retire.retire, Retire::Delete);
    assert_eq!(
        retire.expect[0],
        AttrValues::text("msRTCSIP-PrimaryUserAddress", &["sip:OCSChat@Contoso.com"])
    );
    let Change::CreateEndpoint(create) = &p.changes[1] else {
        panic!("{:?}", p.changes[1]);
    };
    let endpoint = create.header.dn.clone();
    assert!(endpoint.is_within(&Dn::parse(CONTAINER).unwrap()));
    let rdn = endpoint.leaf_value().unwrap();
    assert!(
        rdn.starts_with('{') && rdn.ends_with('}') && rdn.len() == 38,
        "{rdn}"
    );
    let get = |name: &str| {
        create
            .entry
            .iter()
            .find(|a| a.name.is(name))
            .unwrap()
            .texts()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("objectClass"),
        ["top", "person", "organizationalPerson", "contact"]
    );
    assert_eq!(get("msRTCSIP-PrimaryHomeServer"), [POOL1]);
    assert_eq!(get("msRTCSIP-UserEnabled"), ["TRUE"]);
    assert_eq!(get("msRTCSIP-OwnerUrn"), ["urn:application:persistentchat"]);
    assert_eq!(
        get("msRTCSIP-PrimaryUserAddress"),
        ["sip:ocschat@contoso.com"]
    );
    assert_eq!(
        get("displayName"),
        ["Persistent Chat legacy endpoint (sip:ocschat@contoso.com)"]
    );
    assert_eq!(get("cn"), [rdn]);
}

#[test]
fn planning_is_deterministic_and_the_endpoint_name_is_stable() {
    let s = settings("", "delete");
    let objects = || {
        vec![
            user("CN=A,DC=contoso,DC=com", "sip:ocschat@contoso.com", LEGACY),
            user("CN=B,DC=contoso,DC=com", "sip:ocschat@fabrikam.com", LEGACY),
        ]
    };
    let a = run(&s, objects());
    let mut reversed = objects();
    reversed.reverse();
    let b = run(&s, reversed);
    assert_eq!(render::json(&a), render::json(&b));
    assert_eq!(
        endpoint_guid("sip:ocschat@contoso.com"),
        endpoint_guid("sip:ocschat@contoso.com")
    );
    assert_ne!(
        endpoint_guid("sip:ocschat@contoso.com"),
        endpoint_guid("sip:ocschat@fabrikam.com")
    );
    // RFC 9562 version 8, variant 10.
    let g = endpoint_guid("sip:ocschat@contoso.com");
    assert_eq!(&g[14..15], "8");
    assert!("89ab".contains(&g[19..20]), "{g}");
}

#[test]
fn the_desired_state_plans_nothing() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![
            endpoint("sip:ocschat@contoso.com", POOL1),
            object(
                &format!("CN={{2}},{CONTAINER}"),
                &["contact"],
                &[
                    ("msRTCSIP-PrimaryUserAddress", "sip:OCSCHAT@fabrikam.com"),
                    ("msRTCSIP-UserEnabled", "TRUE"),
                    ("msRTCSIP-PrimaryHomeServer", &POOL2.to_lowercase()),
                    ("msRTCSIP-OwnerUrn", "URN:application:persistentchat"),
                ],
            ),
        ],
    );
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert!(p.is_in_sync());
    assert_eq!(p.summary.in_sync, 2);
    assert_eq!(
        render::summary_line(&p),
        "in sync: no changes; 0 swap(s) blocked; 0 finding(s)"
    );
}

#[test]
fn an_endpoint_on_the_wrong_pool_is_repointed() {
    let s = settings("", "delete");
    let p = run(&s, vec![endpoint("sip:ocschat@fabrikam.com", POOL1)]);
    let repoint: Vec<_> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::RepointEndpoint(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(repoint.len(), 1);
    assert_eq!(
        repoint[0].new_values,
        [AttrValues::text("msRTCSIP-PrimaryHomeServer", &[POOL2])]
    );
    assert_eq!(
        repoint[0].header.reason,
        format!("endpoint exists but is homed on {POOL1}, not on pool pcpool2.contoso.com")
    );
    let ldif = render::ldif(&p);
    assert!(
        ldif.contains(&format!(
            "delete: msRTCSIP-PrimaryHomeServer\nmsRTCSIP-PrimaryHomeServer: {POOL1}\n-\nadd: msRTCSIP-PrimaryHomeServer\nmsRTCSIP-PrimaryHomeServer: {POOL2}\n-\n"
        )),
        "{ldif}"
    );
}

fn disabled_endpoint(uri: &str, home: &str) -> DirectoryObject {
    let mut e = endpoint(uri, home);
    e.attributes
        .insert("msRTCSIP-UserEnabled", vec![b"FALSE".to_vec()]);
    e.enabled = crate::model::Enabled::False;
    e
}

/// An endpoint an administrator disabled is their decision: a finding, and no write, even
/// when it is homed on the wrong pool. See: #19
#[test]
fn a_disabled_endpoint_is_reported_and_left_alone() {
    let s = settings("", "delete");
    for home in [POOL2, POOL1] {
        let p = run(
            &s,
            vec![disabled_endpoint("sip:ocschat@fabrikam.com", home)],
        );
        assert!(
            !p.changes
                .iter()
                .any(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com"),
            "{:?}",
            p.changes
        );
        assert_eq!(
            kinds(&p),
            [(
                FindingKind::EndpointDisabled,
                format!("CN={{1}},{CONTAINER}")
            )]
        );
        let f = &p.findings[0];
        assert!(f.reason.contains("enable_endpoint = true"), "{}", f.reason);
        assert_eq!(p.summary.blocked, 0);
    }
}

/// With `enable_endpoint = true` the migration re-enables it, and says why in those words.
#[test]
fn enable_endpoint_re_enables_a_disabled_endpoint() {
    let s = settings("enable_endpoint = true", "delete");
    let p = run(
        &s,
        vec![disabled_endpoint("sip:ocschat@fabrikam.com", POOL2)],
    );
    let Some(Change::RepointEndpoint(r)) = p
        .changes
        .iter()
        .find(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com")
    else {
        panic!("{:?}", p.changes);
    };
    assert_eq!(
        r.new_values,
        [AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"])]
    );
    assert_eq!(
        r.header.reason,
        "endpoint exists but is disabled, and the migration says enable_endpoint = true"
    );
    assert!(p.findings.is_empty(), "{:?}", p.findings);
    assert_ne!(
        p.fingerprint,
        run(
            &settings("", "delete"),
            vec![disabled_endpoint("sip:ocschat@fabrikam.com", POOL2)]
        )
        .fingerprint
    );
}

/// `person` requires `sn` on OpenLDAP only; on AD Lync does not set it and neither does
/// pcsync. See: #19
#[test]
fn the_endpoint_has_sn_on_openldap_only() {
    let s = settings("", "delete");
    let has_sn = |active_directory: bool| {
        let desired = Desired {
            active_directory,
            ..s.desired()
        };
        let p = plan(&desired, &observe(&s, vec![]), now());
        let Change::CreateEndpoint(c) = &p.changes[0] else {
            panic!("{:?}", p.changes[0]);
        };
        c.entry.iter().any(|a| a.name.is("sn"))
    };
    assert!(has_sn(false));
    assert!(!has_sn(true));
}

#[test]
fn no_user_and_no_endpoint_creates_the_endpoint() {
    let s = settings("", "delete");
    let p = run(&s, vec![]);
    assert_eq!(
        p.changes.iter().map(Change::action).collect::<Vec<_>>(),
        [Action::CreateEndpoint, Action::CreateEndpoint]
    );
}

#[test]
fn a_user_homed_elsewhere_is_a_finding_and_blocks_only_its_swap() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![
            user("CN=A,DC=contoso,DC=com", "sip:ocschat@contoso.com", POOL2),
            user("CN=B,DC=contoso,DC=com", "sip:ocschat@fabrikam.com", LEGACY),
        ],
    );
    assert_eq!(
        kinds(&p),
        [(FindingKind::UnexpectedHome, "CN=A,DC=contoso,DC=com".into())]
    );
    assert!(
        p.changes
            .iter()
            .all(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com")
    );
    assert_eq!(p.summary.blocked, 1);
}

#[test]
fn any_other_holder_of_the_uri_blocks_that_swap() {
    let s = settings("", "delete");
    let holders = [
        // Not a user or contact, even though disabled: the URI stays taken.
        object(
            "CN=Dev,DC=contoso,DC=com",
            &["device"],
            &[
                ("msRTCSIP-PrimaryUserAddress", "sip:ocschat@contoso.com"),
                ("msRTCSIP-UserEnabled", "FALSE"),
            ],
        ),
        // A contact outside the endpoint container.
        object(
            "CN=Stray,OU=Users,DC=contoso,DC=com",
            &["contact"],
            &[("msRTCSIP-PrimaryUserAddress", "sip:ocschat@contoso.com")],
        ),
    ];
    for (holder, kind) in holders
        .into_iter()
        .zip([FindingKind::UriInUse, FindingKind::EndpointOutsideContainer])
    {
        let dn = holder.dn.as_str().to_string();
        let p = run(
            &s,
            vec![
                holder,
                user("CN=U,DC=contoso,DC=com", "sip:ocschat@contoso.com", LEGACY),
            ],
        );
        assert_eq!(kinds(&p), [(kind, dn)]);
        assert!(
            p.changes
                .iter()
                .all(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com"),
            "{:?}",
            p.changes
        );
    }
}

#[test]
fn two_users_or_a_user_and_an_endpoint_with_the_uri_block_the_swap() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![
            user("CN=A,DC=contoso,DC=com", "sip:ocschat@contoso.com", LEGACY),
            user("CN=B,DC=contoso,DC=com", "SIP:OCSCHAT@CONTOSO.COM", LEGACY),
        ],
    );
    assert_eq!(
        kinds(&p),
        [
            (FindingKind::DuplicateUri, "CN=A,DC=contoso,DC=com".into()),
            (FindingKind::DuplicateUri, "CN=B,DC=contoso,DC=com".into())
        ]
    );
    let p = run(
        &s,
        vec![
            user("CN=A,DC=contoso,DC=com", "sip:ocschat@contoso.com", LEGACY),
            endpoint("sip:ocschat@contoso.com", POOL1),
        ],
    );
    assert_eq!(p.findings.len(), 2);
    assert!(p.findings.iter().all(|f| f.kind == FindingKind::UriInUse));
    assert!(
        p.changes
            .iter()
            .all(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com")
    );
}

#[test]
fn two_migrations_claiming_one_uri_are_both_refused() {
    let s = settings(
        "[[migrations]]\nwell_known_uri = \"sip:OCSChat@contoso.com\"\ntarget_pool = \"pcpool2.contoso.com\"",
        "delete",
    );
    let p = run(&s, vec![]);
    assert_eq!(
        kinds(&p),
        [(FindingKind::DuplicateMigration, String::new())]
    );
    assert!(
        p.findings[0]
            .reason
            .contains("pcpool1.contoso.com, pcpool2.contoso.com")
    );
    assert!(
        p.changes
            .iter()
            .all(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com")
    );
}

#[test]
fn a_future_not_before_waits_and_a_past_one_does_not() {
    let s = settings("not_before = \"2026-11-24T09:00:00Z\"", "delete");
    let p = run(&s, vec![]);
    let fabrikam: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.sip_uri().as_str() == "sip:ocschat@fabrikam.com")
        .collect();
    assert!(
        fabrikam
            .iter()
            .all(|c| c.header().status == Status::WaitingForCutover)
    );
    assert_eq!((p.summary.ready, p.summary.waiting), (1, 1));
    assert!(!render::ldif(&p).contains("fabrikam"));
    let later = plan(
        &s.desired(),
        &observe(&s, vec![]),
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 1).unwrap(),
    );
    assert_eq!(later.summary.ready, 2);
}

#[test]
fn disable_lists_every_msrtcsip_attribute_with_its_values() {
    let s = settings("", "disable");
    let p = run(
        &s,
        vec![user(
            "CN=A,DC=contoso,DC=com",
            "sip:ocschat@contoso.com",
            LEGACY,
        )],
    );
    let Change::RetireUser(retire) = &p.changes[0] else {
        panic!("{:?}", p.changes[0]);
    };
    assert_eq!(retire.retire, Retire::Disable);
    let names: Vec<&str> = retire.cleared.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "msRTCSIP-OptionFlags",
            "msRTCSIP-PrimaryHomeServer",
            "msRTCSIP-PrimaryUserAddress",
            "msRTCSIP-UserEnabled"
        ]
    );
    assert!(render::ldif(&p).contains(
        "changetype: modify\ndelete: msRTCSIP-OptionFlags\nmsRTCSIP-OptionFlags: 256\n-\n"
    ));
    assert!(
        render::powershell(&p)
            .contains("Disable-CsUser -Identity 'CN=A,DC=contoso,DC=com' -Confirm:$false")
    );
}

#[test]
fn suspects_are_exact_lookup_names_only() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![
            user("CN=G,DC=contoso,DC=com", "sip:GroupChat@contoso.com", POOL1),
            user("CN=L,DC=contoso,DC=com", "sip:lyncchat@fabrikam.com", POOL1),
            user(
                "CN=F,DC=contoso,DC=com",
                "sip:ocschat.fan@contoso.com",
                LEGACY,
            ),
            user(
                "CN=O,DC=contoso,DC=com",
                "sip:ocschat@northwind.com",
                LEGACY,
            ),
        ],
    );
    let suspects: Vec<String> = p
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Suspect)
        .map(|f| f.dn.clone())
        .collect();
    assert_eq!(
        suspects,
        [
            "CN=G,DC=contoso,DC=com",
            "CN=L,DC=contoso,DC=com",
            "CN=O,DC=contoso,DC=com"
        ]
    );
}

#[test]
fn duplicate_candidates_are_confirmed_before_they_are_reported() {
    let s = settings("", "delete");
    let desired = s.desired();
    let mut c = Collector::new(&desired);
    sight(&mut c, &user("CN=A,DC=x", "sip:bob@contoso.com", POOL1));
    sight(&mut c, &user("CN=B,DC=x", "sip:Bob@Contoso.com", POOL1));
    sight(&mut c, &user("CN=C,DC=x", "sip:carol@contoso.com", POOL1));
    let candidates: Vec<String> = c.duplicate_candidates().map(str::to_string).collect();
    assert_eq!(candidates, ["sip:bob@contoso.com"]);
    c.confirm(
        "sip:bob@contoso.com",
        ["CN=A,DC=x".to_string(), "CN=B,DC=x".to_string()].into(),
    );
    // A false candidate (a hash collision) confirmed with one holder reports nothing.
    c.confirm("sip:carol@contoso.com", ["CN=C,DC=x".to_string()].into());
    let observed = c.finish(Vec::new());
    let p = plan(&desired, &observed, now());
    let dups: Vec<_> = p
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::DuplicateUri)
        .collect();
    assert_eq!(dups.len(), 2);
    assert!(dups[0].reason.contains("held by 2 objects"));
}

#[test]
fn scan_findings_are_carried_into_the_plan() {
    let s = settings("", "delete");
    let desired = s.desired();
    let observed = Collector::new(&desired).finish(vec![Finding::malformed(
        "cn=bad,dc=x",
        "msRTCSIP-UserEnabled: expected TRUE or FALSE".into(),
    )]);
    let p = plan(&desired, &observed, now());
    assert_eq!(
        kinds(&p),
        [(FindingKind::MalformedValue, "cn=bad,dc=x".into())]
    );
}

#[test]
fn the_fingerprint_changes_with_the_directory_and_the_configuration() {
    let s = settings("", "delete");
    let u = || user("CN=A,DC=contoso,DC=com", "sip:ocschat@contoso.com", LEGACY);
    let a = run(&s, vec![u()]);
    assert_eq!(a.fingerprint, run(&s, vec![u()]).fingerprint);
    let mut changed = u();
    changed
        .attributes
        .insert("description", vec![b"edited".to_vec()]);
    assert_ne!(a.fingerprint, run(&s, vec![changed]).fingerprint);
    let disable = settings("", "disable");
    assert_ne!(a.fingerprint, run(&disable, vec![u()]).fingerprint);
    // Unrelated objects do not matter.
    assert_eq!(
        a.fingerprint,
        run(
            &s,
            vec![u(), user("CN=Z,DC=x", "sip:zed@contoso.com", POOL1)]
        )
        .fingerprint
    );
}

#[test]
fn the_plan_document_round_trips() {
    let s = settings("", "disable");
    let p = run(
        &s,
        vec![user(
            "CN=A,DC=contoso,DC=com",
            "sip:ocschat@contoso.com",
            LEGACY,
        )],
    );
    let back: Plan = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(back, p);
}

#[test]
fn ldif_values_that_are_not_safe_strings_are_base64() {
    let mut plan = run(&settings("", "delete"), vec![]);
    let Change::CreateEndpoint(create) = &mut plan.changes[0] else {
        panic!("{:?}", plan.changes[0]);
    };
    create.entry.push(AttrValues {
        name: "description".into(),
        values: vec![" leading space".into(), "café".into(), vec![0, 1]],
    });
    let ldif = render::ldif(&plan);
    assert!(
        ldif.contains("description:: IGxlYWRpbmcgc3BhY2U=\n"),
        "{ldif}"
    );
    assert!(ldif.contains("description:: Y2Fmw6k=\n"), "{ldif}");
    assert!(ldif.contains("description:: AAE=\n"), "{ldif}");
}

#[test]
fn powershell_quotes_single_quotes() {
    let s = settings("display_name = \"O'Brien's chat\"", "delete");
    let ps = render::powershell(&run(&s, vec![]));
    assert!(ps.contains("-DisplayName 'O''Brien''s chat'"), "{ps}");
}

/// The PowerShell rendering ends with what Lync needs next: Update-CsUserDatabase, then
/// Get-CsPersistentChatEndpoint for each endpoint written. See: #19
#[test]
fn powershell_ends_with_the_user_replicator_and_a_check_per_endpoint() {
    let s = settings("", "delete");
    let p = run(
        &s,
        vec![user(
            "CN=A,DC=contoso,DC=com",
            "sip:ocschat@contoso.com",
            LEGACY,
        )],
    );
    let ps = render::powershell(&p);
    let tail = ps.split("# After the swap").nth(1).expect(&ps);
    let commands: Vec<&str> = tail
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "Update-CsUserDatabase",
            "Get-CsPersistentChatEndpoint -Identity 'sip:ocschat@contoso.com'",
            "Get-CsPersistentChatEndpoint -Identity 'sip:ocschat@fabrikam.com'",
        ]
    );
    assert!(ps.find("New-CsPersistentChatEndpoint") < ps.find("Update-CsUserDatabase"));
    // Nothing written, nothing to tell.
    let in_sync = run(
        &s,
        vec![
            endpoint("sip:ocschat@contoso.com", POOL1),
            object(
                &format!("CN={{2}},{CONTAINER}"),
                &["top", "person", "organizationalPerson", "contact"],
                &[
                    ("msRTCSIP-PrimaryUserAddress", "sip:ocschat@fabrikam.com"),
                    ("msRTCSIP-UserEnabled", "TRUE"),
                    ("msRTCSIP-PrimaryHomeServer", POOL2),
                    ("msRTCSIP-OwnerUrn", "urn:application:persistentchat"),
                ],
            ),
        ],
    );
    assert!(in_sync.is_in_sync(), "{:?}", in_sync.changes);
    assert!(render::next_steps(&in_sync).is_empty());
    assert!(!render::powershell(&in_sync).contains("Update-CsUserDatabase"));
}

/// `check`'s endpoint-shape comparison: a hand-made endpoint on a target pool is compared with
/// what pcsync would write, naming each attribute that differs. See: #19
#[test]
fn a_hand_made_endpoint_is_compared_with_what_pcsync_writes() {
    use shape::{Shape, compare};
    let s = settings("", "delete");
    let desired = s.desired();
    let same = endpoint("sip:lync-made@contoso.com", POOL1);
    assert_eq!(
        compare(&desired, &same),
        Shape::Compared {
            differences: vec![]
        }
    );
    let lync = object(
        &format!("CN={{1}},{CONTAINER}"),
        &[
            "top",
            "person",
            "organizationalPerson",
            "contact",
            "mailRecipient",
        ],
        &[
            ("msRTCSIP-PrimaryUserAddress", "sip:lync-made@contoso.com"),
            ("msRTCSIP-UserEnabled", "TRUE"),
            ("msRTCSIP-PrimaryHomeServer", POOL1),
            ("msRTCSIP-OwnerUrn", "URN:Application:PersistentChat"),
            ("msRTCSIP-ApplicationOptions", "2"),
            ("msRTCSIP-OptionFlags", "256"),
        ],
    );
    assert_eq!(
        compare(&desired, &lync),
        Shape::Compared {
            differences: vec![
                "objectClass: Lync's has top, person, organizationalPerson, contact, mailRecipient, pcsync writes top, person, organizationalPerson, contact".to_string(),
                "msRTCSIP-ApplicationOptions: Lync's has 2, pcsync writes none".to_string(),
                "msRTCSIP-OptionFlags: Lync's has 256, pcsync writes none".to_string(),
            ]
        }
    );
    // pcsync's own endpoint (its deterministic DN) and one on no target pool are no evidence.
    let ours = object(
        endpoint_dn(
            &desired.layout.endpoint_container,
            "sip:ocschat@contoso.com",
        )
        .as_str(),
        &["top", "contact"],
        &[
            ("msRTCSIP-PrimaryUserAddress", "sip:ocschat@contoso.com"),
            ("msRTCSIP-PrimaryHomeServer", POOL1),
        ],
    );
    assert_eq!(compare(&desired, &ours), Shape::NotEvidence);
    assert_eq!(
        compare(&desired, &endpoint("sip:x@contoso.com", LEGACY)),
        Shape::NotEvidence
    );
}

mod proptests;
