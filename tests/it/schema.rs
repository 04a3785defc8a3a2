//! The test schema (schemas/msrtcsip.schema and .ldif), the contoso fixture and the slapd harness.
//!
//! Everything here runs real OpenLDAP programs: slaptest and slapd with slapd.conf, slapadd and
//! slapd with cn=config, and the harness in `common::slapd` that the other test modules use.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::slapd::{
    self, LaunchError, Slapd, SlapdProcess, ToolOutput, count_entries, repo_path, run, tool,
};

/// pcsync's private arc: a random UUID turned into an OID by Microsoft's GUID-to-OID method.
const PRIVATE_ARC: &str =
    "1.2.840.113556.1.8000.2554.20212.49339.16972.18903.42807.4208233.4736721";
/// The UUID that the private arc encodes, as written in the schema's header.
const PRIVATE_ARC_UUID: &str = "4ef4c0bb-424c-49d7-a737-4036694846d1";

// === Schema files ===

/// One attribute type or object class definition, whitespace-normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definition {
    kind: &'static str,
    oid: String,
    name: String,
    text: String,
}

impl Definition {
    fn parse(kind: &'static str, body: &str) -> Definition {
        let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let oid = text
            .strip_prefix("( ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no OID in {text}"))
            .to_owned();
        let name = text
            .split("NAME '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no NAME in {text}"))
            .to_owned();
        Definition {
            kind,
            oid,
            name,
            text,
        }
    }

    fn single_valued(&self) -> bool {
        self.text.contains(" SINGLE-VALUE")
    }
}

/// Definitions of a slapd.conf-format schema file, keyed by lower-cased NAME.
fn parse_schema_file(text: &str) -> BTreeMap<String, Definition> {
    let mut blocks: Vec<(&'static str, String)> = Vec::new();
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("attributetype") {
            blocks.push(("attributetype", line[line.len() - rest.len()..].to_owned()));
        } else if let Some(rest) = lower.strip_prefix("objectclass") {
            blocks.push(("objectclass", line[line.len() - rest.len()..].to_owned()));
        } else if line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            let (_, body) = blocks
                .last_mut()
                .expect("continuation line before any definition");
            body.push(' ');
            body.push_str(line.trim());
        }
    }
    index(blocks)
}

/// Definitions of a cn=config LDIF schema entry, keyed by lower-cased NAME.
fn parse_schema_ldif(text: &str) -> BTreeMap<String, Definition> {
    // Unfold: a line starting with one space continues the previous line (RFC 2849).
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(line.to_owned()),
        }
    }
    let mut blocks = Vec::new();
    for line in &lines {
        for (attr, kind) in [
            ("olcAttributeTypes:", "attributetype"),
            ("olcObjectClasses:", "objectclass"),
        ] {
            if let Some(value) = line.strip_prefix(attr) {
                let value = value.trim_start();
                // cn=config may number values ({0}(...)); the shipped file must not need it.
                let value = match value.strip_prefix('{') {
                    Some(rest) => rest.split_once('}').map_or(value, |(_, v)| v),
                    None => value,
                };
                blocks.push((kind, value.to_owned()));
            }
        }
    }
    index(blocks)
}

fn index(blocks: Vec<(&'static str, String)>) -> BTreeMap<String, Definition> {
    let mut map = BTreeMap::new();
    for (kind, body) in blocks {
        let def = Definition::parse(kind, &body);
        let previous = map.insert(def.name.to_ascii_lowercase(), def.clone());
        assert!(previous.is_none(), "{} defined twice", def.name);
    }
    map
}

fn schema_definitions() -> BTreeMap<String, Definition> {
    parse_schema_file(&fs::read_to_string(repo_path("schemas/msrtcsip.schema")).unwrap())
}

/// (name, OID or private sub-arc, single-valued) for every attribute pcsync's tests rely on.
/// Published OIDs are Microsoft's (reference notes lync-persistent-chat.md section 2a; MS-ADA1/3).
const EXPECTED_ATTRIBUTES: &[(&str, &str, bool)] = &[
    (
        "msRTCSIP-PrimaryUserAddress",
        "1.2.840.113556.1.6.24.1.1",
        true,
    ),
    ("msRTCSIP-UserEnabled", "1.2.840.113556.1.6.24.1.6", true),
    (
        "msRTCSIP-TargetHomeServer",
        "1.2.840.113556.1.6.24.1.47",
        true,
    ),
    ("msRTCSIP-OriginatorSid", "1.2.840.113556.1.6.24.1.50", true),
    (
        "msRTCSIP-PrimaryHomeServer",
        "1.2.840.113556.1.6.24.1.57",
        true,
    ),
    (
        "msRTCSIP-UserExtension",
        "1.2.840.113556.1.6.24.1.63",
        false,
    ),
    (
        "msRTCSIP-FederationEnabled",
        "1.2.840.113556.1.6.24.1.67",
        true,
    ),
    (
        "msRTCSIP-InternetAccessEnabled",
        "1.2.840.113556.1.6.24.1.68",
        true,
    ),
    (
        "msRTCSIP-ArchivingEnabled",
        "1.2.840.113556.1.6.24.1.80",
        true,
    ),
    ("msRTCSIP-OptionFlags", "1.2.840.113556.1.6.24.1.87", true),
    ("msRTCSIP-Line", "1.2.840.113556.1.6.24.1.88", true),
    ("msRTCSIP-LineServer", "1.2.840.113556.1.6.24.1.89", true),
    ("msRTCSIP-UserPolicy", "1.2.840.113556.1.6.24.1.132", false),
    ("msRTCSIP-OwnerUrn", "private", true),
    ("msRTCSIP-ApplicationOptions", "private", true),
    ("msRTCSIP-DeploymentLocator", "private", true),
    ("msRTCSIP-UserPolicies", "private", false),
    ("msRTCSIP-GroupingID", "private", true),
    ("sAMAccountName", "1.2.840.113556.1.4.221", true),
    ("userPrincipalName", "1.2.840.113556.1.4.656", true),
    ("proxyAddresses", "1.2.840.113556.1.2.210", false),
];

const EXPECTED_CLASSES: &[(&str, &str)] = &[
    ("container", "1.2.840.113556.1.3.23"),
    ("contact", "1.2.840.113556.1.5.15"),
    ("user", "1.2.840.113556.1.5.9"),
    ("pcsyncRtcUser", "private"),
];

#[test]
fn schema_and_ldif_define_the_same_things_with_the_expected_oids() {
    let schema = schema_definitions();
    let ldif = parse_schema_ldif(&fs::read_to_string(repo_path("schemas/msrtcsip.ldif")).unwrap());
    assert_eq!(
        schema.keys().collect::<Vec<_>>(),
        ldif.keys().collect::<Vec<_>>(),
        "the two files define different names"
    );
    for (name, def) in &schema {
        assert_eq!(
            Some(def),
            ldif.get(name),
            "{name} differs between the two files"
        );
    }

    for (name, oid, single) in EXPECTED_ATTRIBUTES {
        let def = schema
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(def.kind, "attributetype", "{name}");
        assert_eq!(def.name, *name, "{name} must keep AD's spelling");
        if *oid == "private" {
            assert!(
                def.oid.starts_with(&format!("{PRIVATE_ARC}.1.")),
                "{name}: {} is not under {PRIVATE_ARC}.1",
                def.oid
            );
        } else {
            assert_eq!(def.oid, *oid, "{name}");
        }
        assert_eq!(def.single_valued(), *single, "{name} single-valued");
    }
    for (name, oid) in EXPECTED_CLASSES {
        let def = schema
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(def.kind, "objectclass", "{name}");
        if *oid == "private" {
            assert!(def.oid.starts_with(&format!("{PRIVATE_ARC}.2.")), "{name}");
        } else {
            assert_eq!(def.oid, *oid, "{name}");
        }
    }
    // Private OIDs stay on the documented sub-arcs, and no OID is used twice.
    let mut oids = BTreeSet::new();
    for def in schema.values() {
        assert!(oids.insert(def.oid.clone()), "OID {} used twice", def.oid);
        if let Some(sub) = def.oid.strip_prefix(&format!("{PRIVATE_ARC}.")) {
            let arc = if def.kind == "attributetype" {
                "1."
            } else {
                "2."
            };
            assert!(
                sub.starts_with(arc),
                "{}: {} on the wrong sub-arc",
                def.name,
                def.oid
            );
        }
    }

    let sip = &schema["msrtcsip-primaryuseraddress"].text;
    assert!(sip.contains("EQUALITY caseIgnoreMatch"), "{sip}");
    assert!(sip.contains("SUBSTR caseIgnoreSubstringsMatch"), "{sip}");
    for structural in ["contact", "user", "container"] {
        assert!(
            schema[structural].text.contains(" STRUCTURAL"),
            "{structural}"
        );
    }
    assert!(schema["pcsyncrtcuser"].text.contains(" AUXILIARY"));
    // The auxiliary class and the AD classes carry every msRTCSIP attribute.
    for class in ["contact", "user", "pcsyncrtcuser"] {
        for name in schema.keys().filter(|n| n.starts_with("msrtcsip-")) {
            let may = schema[class].text.to_ascii_lowercase();
            assert!(may.contains(&format!(" {name} ")), "{class} lacks {name}");
        }
    }
}

#[test]
fn private_arc_is_derived_from_the_documented_uuid() {
    // 1.2.840.113556.1.8000.2554, then the hex groups 4-4-4-4-4-6-6 of the UUID as decimals.
    let hex = PRIVATE_ARC_UUID.replace('-', "");
    let mut arc = "1.2.840.113556.1.8000.2554".to_string();
    let mut at = 0;
    for width in [4, 4, 4, 4, 4, 6, 6] {
        let part = u64::from_str_radix(&hex[at..at + width], 16).unwrap();
        arc.push_str(&format!(".{part}"));
        at += width;
    }
    assert_eq!(PRIVATE_ARC, arc);
    for file in [
        "schemas/msrtcsip.schema",
        "schemas/msrtcsip.ldif",
        "schemas/README.md",
    ] {
        let text = fs::read_to_string(repo_path(file)).unwrap();
        assert!(
            text.contains(PRIVATE_ARC_UUID),
            "{file} does not name the UUID"
        );
        assert!(text.contains(PRIVATE_ARC), "{file} does not name the arc");
    }
}

#[test]
fn readme_table_lists_every_definition_with_its_oid() {
    let readme = fs::read_to_string(repo_path("schemas/README.md")).unwrap();
    for def in schema_definitions().values() {
        let row = readme
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", def.name)))
            .unwrap_or_else(|| panic!("schemas/README.md has no table row for {}", def.name));
        assert!(
            row.contains(&def.oid),
            "README row for {} lacks {}",
            def.name,
            def.oid
        );
    }
}

// === slapd.conf (slaptest) ===

fn slaptest(includes: &[&str]) -> ToolOutput {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("db")).unwrap();
    let mut conf = String::new();
    for include in includes {
        conf.push_str(&format!("include \"{include}\"\n"));
    }
    conf.push_str(&format!(
        "modulepath /usr/lib/ldap\nmoduleload back_mdb\ndatabase mdb\nsuffix \"dc=contoso,dc=com\"\n\
         directory \"{}\"\nindex objectClass eq\nindex msRTCSIP-PrimaryUserAddress eq,pres,sub\n",
        dir.path().join("db").display()
    ));
    let conf_file = dir.path().join("slapd.conf");
    fs::write(&conf_file, conf).unwrap();
    run(Command::new(tool("slaptest"))
        .arg("-u")
        .arg("-f")
        .arg(&conf_file))
}

#[test]
fn slaptest_accepts_the_schema_after_core_cosine_and_inetorgperson() {
    let ours = repo_path("schemas/msrtcsip.schema");
    let ours = ours.to_str().unwrap();
    let out = slaptest(&[
        "/etc/ldap/schema/core.schema",
        "/etc/ldap/schema/cosine.schema",
        "/etc/ldap/schema/inetorgperson.schema",
        ours,
    ]);
    assert!(out.success(), "{}", out.both());

    // The documented dependency is real: without inetorgperson (displayName) it is rejected.
    let out = slaptest(&[
        "/etc/ldap/schema/core.schema",
        "/etc/ldap/schema/cosine.schema",
        ours,
    ]);
    assert!(
        !out.success(),
        "loaded without inetorgperson:\n{}",
        out.both()
    );
}

// === cn=config (slapd -F) ===

/// A slapd configured through cn=config (slapadd -n0), with ldapi EXTERNAL as the config admin.
struct ConfigSlapd {
    process: Option<SlapdProcess>,
    url: String,
    ldapi_url: String,
    dir: tempfile::TempDir,
}

impl ConfigSlapd {
    /// core, cosine, inetorgperson and, when `with_ours`, schemas/msrtcsip.ldif; one mdb
    /// database for dc=contoso,dc=com with rootdn cn=admin,dc=contoso,dc=com / "secret".
    fn start(with_ours: bool) -> ConfigSlapd {
        let dir = tempfile::Builder::new()
            .prefix("pcsync-cnconfig-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        fs::create_dir(d.join("slapd.d")).unwrap();
        fs::create_dir(d.join("db")).unwrap();
        // Like Debian's packaged cn=config: the local user of ldapi (uid/gid of this process)
        // manages cn=config, which is what `ldapadd -Y EXTERNAL -H ldapi:///` relies on.
        let uid = run(Command::new("id").arg("-u")).stdout.trim().to_owned();
        let gid = run(Command::new("id").arg("-g")).stdout.trim().to_owned();
        let peer = format!("gidNumber={gid}+uidNumber={uid},cn=peercred,cn=external,cn=auth");

        let mut ldif = format!(
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {pid}\n\n\
             dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n",
            pid = d.join("slapd.pid").display()
        );
        let mut schemas = vec![
            Path::new("/etc/ldap/schema/core.ldif").to_owned(),
            Path::new("/etc/ldap/schema/cosine.ldif").to_owned(),
            Path::new("/etc/ldap/schema/inetorgperson.ldif").to_owned(),
        ];
        if with_ours {
            schemas.push(repo_path("schemas/msrtcsip.ldif"));
        }
        for schema in schemas {
            ldif.push_str(fs::read_to_string(&schema).unwrap().trim_end());
            ldif.push_str("\n\n");
        }
        ldif.push_str(&format!(
            "dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\n\n\
             dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
             olcDatabase: {{0}}config\n\
             olcAccess: {{0}}to * by dn.exact={peer} manage by * break\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcSuffix: dc=contoso,dc=com\n\
             olcDbDirectory: {db}\nolcDbMaxSize: 104857600\n\
             olcRootDN: cn=admin,dc=contoso,dc=com\nolcRootPW: secret\n\
             olcDbIndex: objectClass eq\n{index}",
            db = d.join("db").display(),
            index = if with_ours {
                "olcDbIndex: msRTCSIP-PrimaryUserAddress eq,pres,sub\n"
            } else {
                ""
            },
        ));
        let init = d.join("init.ldif");
        fs::write(&init, ldif).unwrap();
        let out = run(Command::new(tool("slapadd"))
            .args(["-n0", "-F"])
            .arg(d.join("slapd.d"))
            .arg("-l")
            .arg(&init));
        assert!(out.success(), "slapadd -n0 failed:\n{}", out.both());

        let ldapi_url = format!("ldapi://{}", slapd::percent_encode_path(&d.join("ldapi")));
        let config_args = [OsString::from("-F"), d.join("slapd.d").into_os_string()];
        let (process, url) = slapd::launch_on_free_port(
            &config_args,
            std::slice::from_ref(&ldapi_url),
            &d.join("slapd.log"),
        );
        ConfigSlapd {
            process: Some(process),
            url,
            ldapi_url,
            dir,
        }
    }

    /// A tool bound with SASL EXTERNAL over ldapi (the config admin).
    fn external(&self, program: &str) -> Command {
        let mut cmd = Command::new(tool(program));
        cmd.args(["-Q", "-Y", "EXTERNAL", "-H", &self.ldapi_url]);
        cmd
    }

    fn admin(&self, program: &str) -> Command {
        let mut cmd = Command::new(tool(program));
        cmd.args([
            "-x",
            "-H",
            &self.url,
            "-D",
            "cn=admin,dc=contoso,dc=com",
            "-w",
            "secret",
        ]);
        cmd
    }

    fn schema_attribute_types(&self) -> String {
        let out = run(self.external("ldapsearch").args([
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-b",
            "cn=schema,cn=config",
            "(objectClass=olcSchemaConfig)",
            "olcAttributeTypes",
            "olcObjectClasses",
        ]));
        assert!(
            out.success(),
            "search of cn=schema,cn=config:\n{}",
            out.both()
        );
        out.stdout
    }

    /// Adds AD-shaped and inetOrgPerson entries and finds them by SIP address, case-insensitively.
    fn assert_schema_usable(&self) {
        let file = self.dir.path().join("entries.ldif");
        fs::write(
            &file,
            "dn: dc=contoso,dc=com\nobjectClass: domain\ndc: contoso\n\n\
             dn: cn=OCSChat,dc=contoso,dc=com\nobjectClass: user\ncn: OCSChat\nsn: OCSChat\n\
             sAMAccountName: OCSChat\nmsRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com\n\
             msRTCSIP-UserEnabled: TRUE\n\n\
             dn: cn=Alice,dc=contoso,dc=com\nobjectClass: inetOrgPerson\nobjectClass: pcsyncRtcUser\n\
             cn: Alice\nsn: Archer\nmsRTCSIP-PrimaryUserAddress: sip:alice@contoso.com\n\
             msRTCSIP-OptionFlags: 257\n\n\
             dn: cn=Endpoints,dc=contoso,dc=com\nobjectClass: container\ncn: Endpoints\n\n\
             dn: cn={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17},cn=Endpoints,dc=contoso,dc=com\n\
             objectClass: contact\ncn: {4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17}\nsn: endpoint\n\
             msRTCSIP-PrimaryUserAddress: sip:persistentchat@contoso.com\n\
             msRTCSIP-OwnerUrn: urn:application:persistentchat\n",
        )
        .unwrap();
        let out = run(self.admin("ldapadd").arg("-f").arg(&file));
        assert!(
            out.success(),
            "ldapadd with the new classes:\n{}",
            out.both()
        );

        let out = run(self.admin("ldapsearch").args([
            "-LLL",
            "-b",
            "dc=contoso,dc=com",
            "(msRTCSIP-PrimaryUserAddress=SIP:OCSChat@Contoso.COM)",
            "1.1",
        ]));
        assert!(out.success(), "{}", out.both());
        assert!(
            out.stdout.contains("dn: cn=OCSChat,dc=contoso,dc=com"),
            "{}",
            out.stdout
        );
        assert_eq!(count_entries(&out.stdout), 1);

        // A second value of a single-valued attribute is refused.
        fs::write(
            &file,
            "dn: cn=Alice,dc=contoso,dc=com\nchangetype: modify\nadd: msRTCSIP-PrimaryUserAddress\n\
             msRTCSIP-PrimaryUserAddress: sip:alice2@contoso.com\n",
        )
        .unwrap();
        let out = run(self.admin("ldapmodify").arg("-f").arg(&file));
        assert!(
            !out.success(),
            "second SIP address accepted:\n{}",
            out.both()
        );
    }
}

impl Drop for ConfigSlapd {
    fn drop(&mut self) {
        // Kill slapd before the temp dir is removed.
        drop(self.process.take());
    }
}

#[test]
fn ldif_loads_into_cn_config_with_slapadd() {
    let server = ConfigSlapd::start(true);
    let schema = server.schema_attribute_types();
    assert!(
        schema.contains("NAME 'msRTCSIP-PrimaryUserAddress'"),
        "{schema}"
    );
    assert!(schema.contains("NAME 'pcsyncRtcUser'"), "{schema}");
    assert!(
        schema.contains("dn: cn={3}msrtcsip,cn=schema,cn=config"),
        "{schema}"
    );
    server.assert_schema_usable();
}

#[test]
fn ldif_loads_online_with_ldapadd_external_as_documented() {
    let server = ConfigSlapd::start(false);
    assert!(!server.schema_attribute_types().contains("msRTCSIP"));

    // The README's command, against this instance's ldapi socket.
    let out = run(server
        .external("ldapadd")
        .arg("-f")
        .arg(repo_path("schemas/msrtcsip.ldif")));
    assert!(
        out.success(),
        "ldapadd -Y EXTERNAL of msrtcsip.ldif:\n{}",
        out.both()
    );
    let schema = server.schema_attribute_types();
    assert!(
        schema.contains("NAME 'msRTCSIP-PrimaryUserAddress'"),
        "{schema}"
    );

    // The recommended index is accepted once the schema is there.
    let index = server.dir.path().join("index.ldif");
    fs::write(
        &index,
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\n\
         olcDbIndex: msRTCSIP-PrimaryUserAddress eq,pres,sub\n",
    )
    .unwrap();
    let out = run(server.external("ldapmodify").arg("-f").arg(&index));
    assert!(out.success(), "adding the index:\n{}", out.both());
    server.assert_schema_usable();
}

// === The harness and the contoso fixture ===

fn root_dse_naming_contexts(slapd: &Slapd) -> BTreeSet<String> {
    let out = run(slapd.ldap_command("ldapsearch").args([
        "-x",
        "-H",
        &slapd.ldap_url,
        "-LLL",
        "-b",
        "",
        "-s",
        "base",
        "namingContexts",
    ]));
    assert!(out.success(), "anonymous rootDSE search:\n{}", out.both());
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("namingContexts: "))
        .map(|v| v.to_ascii_lowercase())
        .collect()
}

#[test]
fn harness_serves_two_separate_naming_contexts_like_ad() {
    let slapd = Slapd::start();
    let contexts = root_dse_naming_contexts(&slapd);
    assert!(contexts.contains("dc=contoso,dc=com"), "{contexts:?}");
    assert!(
        contexts.contains("cn=configuration,dc=contoso,dc=com"),
        "{contexts:?}"
    );

    // The domain subtree does not reach the configuration NC ...
    let endpoint = "(msRTCSIP-PrimaryUserAddress=sip:persistentchat@contoso.com)";
    assert_eq!(slapd.count(&slapd.domain_dn, endpoint), 0);
    assert_eq!(slapd.count(&slapd.domain_dn, "(objectClass=contact)"), 0);
    assert_eq!(slapd.count(&slapd.domain_dn, "(cn=Lc Services)"), 0);
    // ... which holds the endpoint contact and the pools.
    assert_eq!(slapd.count(&slapd.config_dn, endpoint), 1);
    let contact = slapd.search(
        &slapd.endpoint_container(),
        "(objectClass=contact)",
        &[
            "msRTCSIP-PrimaryUserAddress",
            "msRTCSIP-UserEnabled",
            "msRTCSIP-PrimaryHomeServer",
            "msRTCSIP-OwnerUrn",
        ],
    );
    assert_eq!(count_entries(&contact), 1, "{contact}");
    assert!(contact.contains("cn={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17},cn=Application Contacts"));
    assert!(contact.contains("msRTCSIP-UserEnabled: TRUE"), "{contact}");
    assert!(
        contact.contains(&format!(
            "msRTCSIP-PrimaryHomeServer: {}",
            slapd.pool_dn("1:2")
        )),
        "{contact}"
    );
    assert!(contact.contains("msRTCSIP-OwnerUrn: urn:application:persistentchat"));

    for (site, fqdn) in [
        ("1:1", "gc2010.contoso.com"),
        ("1:2", "pcpool1.contoso.com"),
        ("1:3", "pcpool2.contoso.com"),
    ] {
        let pool = slapd.search(&slapd.pool_dn(site), "(objectClass=*)", &["description"]);
        assert!(
            pool.contains(&format!("description: {fqdn}")),
            "{site}: {pool}"
        );
    }
    assert_eq!(slapd.count(&slapd.config_dn, "(cn=Lc Services)"), 3);

    // The domain fixture: both well-known users homed on the legacy pool, the decoy too, mixed
    // user shapes.
    let legacy_pool = format!("(msRTCSIP-PrimaryHomeServer={})", slapd.pool_dn("1:1"));
    let homed_on_legacy = slapd.search(
        &slapd.domain_dn,
        &legacy_pool,
        &["msRTCSIP-PrimaryUserAddress"],
    );
    let mut uris: Vec<&str> = homed_on_legacy
        .lines()
        .filter_map(|l| l.strip_prefix("msRTCSIP-PrimaryUserAddress: "))
        .collect();
    uris.sort_unstable();
    assert_eq!(
        uris,
        [
            "sip:ocschat.fan@contoso.com",
            "sip:ocschat@contoso.com",
            "sip:ocschat@fabrikam.com"
        ]
    );
    assert_eq!(slapd.count(&slapd.domain_dn, "(objectClass=user)"), 3);
    assert_eq!(
        slapd.count(&slapd.domain_dn, "(objectClass=pcsyncRtcUser)"),
        3
    );
    assert_eq!(
        slapd.count(&slapd.domain_dn, "(msRTCSIP-UserEnabled=FALSE)"),
        1
    );
    assert_eq!(
        slapd.count(
            &slapd.domain_dn,
            "(&(objectClass=inetOrgPerson)(!(msRTCSIP-PrimaryUserAddress=*)))"
        ),
        1
    );

    // The admin may write in the configuration NC (it is rootdn there without a rootpw).
    slapd.add(&format!(
        "dn: CN={{0b5d6f3c-1111-4222-8333-944455556666}},{}\nobjectClass: contact\n\
         cn: {{0b5d6f3c-1111-4222-8333-944455556666}}\nsn: {{0b5d6f3c-1111-4222-8333-944455556666}}\n\
         msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com\n",
        slapd.endpoint_container()
    ));
    assert_eq!(slapd.count(&slapd.config_dn, "(objectClass=contact)"), 2);
}

#[test]
fn sip_address_matching_is_case_insensitive_and_exact() {
    let slapd = Slapd::start();
    let found = slapd.search(
        &slapd.domain_dn,
        "(msRTCSIP-PrimaryUserAddress=SIP:OCSChat@Contoso.COM)",
        &["msRTCSIP-PrimaryUserAddress"],
    );
    assert_eq!(count_entries(&found), 1, "{found}");
    assert!(
        found.contains("dn: cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com"),
        "{found}"
    );
    assert!(found.contains("msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com"));
    // Substring matching (indexed sub) is case-insensitive too and skips the decoy.
    assert_eq!(
        slapd.count(
            &slapd.domain_dn,
            "(msRTCSIP-PrimaryUserAddress=SIP:OCSCHAT@*)"
        ),
        2
    );
    assert_eq!(
        slapd.count(&slapd.domain_dn, "(msRTCSIP-PrimaryUserAddress=*)"),
        6
    );
}

#[test]
fn ldaps_starttls_and_ldapi_work_and_verify_the_generated_ca() {
    let slapd = Slapd::start();
    let search = |url: &str, ca: &Path, starttls: bool| {
        let mut cmd = Command::new(tool("ldapsearch"));
        cmd.env("LDAPTLS_CACERT", ca)
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-H", url, "-D", &slapd.admin_dn, "-y"])
            .arg(&slapd.admin_password_file)
            .args(["-LLL", "-b", &slapd.config_dn, "-s", "base", "1.1"]);
        if starttls {
            cmd.arg("-ZZ");
        }
        run(&mut cmd)
    };
    let out = search(&slapd.ldaps_url, &slapd.ca_file, false);
    assert!(
        out.success(),
        "ldaps with the generated CA:\n{}",
        out.both()
    );
    let out = search(&slapd.ldap_url, &slapd.ca_file, true);
    assert!(
        out.success(),
        "StartTLS (-ZZ) with the generated CA:\n{}",
        out.both()
    );

    // Certificates are really verified: another CA is refused on both.
    let other = tempfile::tempdir().unwrap();
    let other = slapd::write_test_pki(other.path(), "other-");
    let out = search(&slapd.ldaps_url, &other.ca_file, false);
    assert!(
        !out.success(),
        "ldaps accepted a foreign CA:\n{}",
        out.both()
    );
    let out = search(&slapd.ldap_url, &other.ca_file, true);
    assert!(
        !out.success(),
        "StartTLS accepted a foreign CA:\n{}",
        out.both()
    );

    // ldapi + SASL EXTERNAL maps to the admin.
    let out = run(Command::new(tool("ldapwhoami")).args([
        "-Q",
        "-Y",
        "EXTERNAL",
        "-H",
        &slapd.ldapi_url,
    ]));
    assert!(out.success(), "{}", out.both());
    assert_eq!(out.stdout.trim(), format!("dn:{}", slapd.admin_dn));

    // The password files hold the password exactly, readable only by the owner.
    use std::os::unix::fs::PermissionsExt as _;
    for (file, password) in [
        (&slapd.admin_password_file, &slapd.admin_password),
        (&slapd.reader_password_file, &slapd.reader_password),
    ] {
        assert_eq!(&fs::read_to_string(file).unwrap(), password);
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn stop_and_start_again_keep_data_and_ports() {
    let mut slapd = Slapd::start();
    let (ldap_url, ldaps_url) = (slapd.ldap_url.clone(), slapd.ldaps_url.clone());
    slapd.modify(
        "dn: cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com\nchangetype: modify\n\
         replace: msRTCSIP-UserEnabled\nmsRTCSIP-UserEnabled: FALSE\n",
    );

    slapd.stop();
    assert!(!slapd.is_running());
    assert!(
        slapd
            .try_search(&slapd.domain_dn, "(objectClass=*)", &["1.1"])
            .is_err(),
        "slapd still answers after stop()"
    );
    slapd.stop(); // idempotent

    slapd.start_again();
    assert!(slapd.is_running());
    assert_eq!(
        (slapd.ldap_url.as_str(), slapd.ldaps_url.as_str()),
        (ldap_url.as_str(), ldaps_url.as_str())
    );
    let user = slapd.search(&slapd.domain_dn, "(cn=OCSChat)", &["msRTCSIP-UserEnabled"]);
    assert!(user.contains("msRTCSIP-UserEnabled: FALSE"), "{user}");
    assert_eq!(slapd.count(&slapd.config_dn, "(objectClass=contact)"), 1);
    assert!(slapd.try_modify("not ldif").is_err());
}

#[test]
fn reader_is_read_only_and_pages_past_the_size_limit() {
    let extra: String = (0..5)
        .map(|i| {
            format!(
                "dn: uid=bulk{i},ou=Users,dc=contoso,dc=com\nobjectClass: inetOrgPerson\n\
                 objectClass: pcsyncRtcUser\nuid: bulk{i}\ncn: Bulk {i}\nsn: Bulk\n\
                 msRTCSIP-PrimaryUserAddress: sip:bulk{i}@contoso.com\n\n"
            )
        })
        .collect();
    let slapd = Slapd::builder()
        .size_limit(3)
        .extra_domain_ldif(&extra)
        .start();
    let total = slapd.count(&slapd.domain_dn, "(objectClass=*)");
    assert!(total > 10, "admin is not size-limited: {total}");

    let reader = |base: &str, extra: &[&str]| {
        slapd.search_as(
            &slapd.reader_dn,
            &slapd.reader_password_file,
            base,
            "(objectClass=*)",
            extra,
        )
    };
    let unpaged = reader(&slapd.domain_dn, &[]);
    assert_eq!(
        unpaged.code,
        Some(4),
        "expected sizeLimitExceeded:\n{}",
        unpaged.both()
    );
    assert_eq!(count_entries(&unpaged.stdout), 3);
    let paged = reader(&slapd.domain_dn, &["-E", "pr=2/noprompt"]);
    assert!(paged.success(), "{}", paged.both());
    assert_eq!(count_entries(&paged.stdout), total);
    let config = reader(&slapd.config_dn, &["-E", "pr=2/noprompt"]);
    assert!(config.success(), "{}", config.both());
    assert_eq!(
        count_entries(&config.stdout),
        slapd.count(&slapd.config_dn, "(objectClass=*)")
    );
    assert!(
        !paged.stdout.contains("userPassword"),
        "reader sees passwords"
    );

    // Read-only: a write by the reader is refused with insufficientAccess (50).
    let file = slapd.dir.join("reader-write.ldif");
    fs::write(
        &file,
        "dn: cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com\nchangetype: modify\n\
         delete: msRTCSIP-PrimaryUserAddress\n",
    )
    .unwrap();
    let out = run(slapd
        .ldap_command("ldapmodify")
        .args(["-x", "-H", &slapd.ldap_url, "-D", &slapd.reader_dn, "-y"])
        .arg(&slapd.reader_password_file)
        .arg("-f")
        .arg(&file));
    assert_eq!(out.code, Some(50), "{}", out.both());

    // Anonymous sees no data (AD refuses anonymous reads too).
    let out = run(slapd.ldap_command("ldapsearch").args([
        "-x",
        "-H",
        &slapd.ldap_url,
        "-LLL",
        "-b",
        &slapd.domain_dn,
        "(objectClass=*)",
        "1.1",
    ]));
    assert_eq!(count_entries(&out.stdout), 0, "{}", out.both());
}

#[test]
fn custom_fixture_without_tls_still_gets_the_reader_account() {
    let slapd = Slapd::builder()
        .fixture_ldif(
            "dn: dc=contoso,dc=com\nobjectClass: domain\ndc: contoso\n",
            "dn: cn=Configuration,dc=contoso,dc=com\nobjectClass: container\ncn: Configuration\n",
        )
        .extra_config_ldif(
            "dn: cn=Services,cn=Configuration,dc=contoso,dc=com\nobjectClass: container\ncn: Services\n",
        )
        .tls(false)
        .start();
    assert!(slapd.ldaps_url.is_empty() && slapd.ca_file.as_os_str().is_empty());
    let out = slapd.search_as(
        &slapd.reader_dn,
        &slapd.reader_password_file,
        &slapd.config_dn,
        "(objectClass=*)",
        &[],
    );
    assert!(out.success(), "{}", out.both());
    assert_eq!(count_entries(&out.stdout), 2);
    assert_eq!(slapd.count(&slapd.domain_dn, "(objectClass=*)"), 3);
}

#[test]
fn launch_reports_an_early_exit_with_the_log() {
    // A port already in use makes slapd exit at once; launch must say so instead of hanging.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://127.0.0.1:{}/", busy.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("slapd.conf");
    fs::write(&conf, "include /etc/ldap/schema/core.schema\n").unwrap();
    let log = dir.path().join("slapd.log");
    let config_args = [OsString::from("-f"), conf.into_os_string()];
    match SlapdProcess::launch(&config_args, std::slice::from_ref(&url), &url, &log) {
        Err(LaunchError::ExitedEarly(why)) => assert!(why.contains("errno=98"), "{why}"),
        Err(LaunchError::NotReady(why)) => panic!("expected an early exit, got: {why}"),
        Ok(process) => panic!("slapd {} started on a busy port", process.pid()),
    }
}
