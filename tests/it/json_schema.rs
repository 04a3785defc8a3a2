//! The documented JSON schemas (schemas/plan.schema.json, schemas/audit-record.schema.json)
//! checked with the `jsonschema` crate (draft 2020-12, formats and patterns included, offline:
//! the two files reference each other and nothing else) against what pcsync really writes: a
//! plan with findings, an applied plan with its result, and every record of an audit log. A
//! drifted plan and a drifted record are shown to fail, so the check cannot pass vacuously.

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, repo};

const BASE: &str = "https://pcsync.invalid/schemas/";

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(repo(&format!("schemas/{name}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Validators for the plan and the audit record, each able to resolve the other's `$ref`s.
fn validators() -> (Validator, Validator) {
    let (plan, audit) = (load("plan.schema.json"), load("audit-record.schema.json"));
    let registry = Registry::new()
        .add(format!("{BASE}plan.schema.json"), plan.clone())
        .unwrap()
        .add(format!("{BASE}audit-record.schema.json"), audit.clone())
        .unwrap()
        .prepare()
        .unwrap();
    let build = |schema: &Value| {
        jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(schema)
            .unwrap()
    };
    (build(&plan), build(&audit))
}

fn assert_valid(validator: &Validator, value: &Value) {
    let problems: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}\nin {value}");
}

#[test]
fn plans_and_audit_records_match_their_documented_schemas() {
    let (plan_schema, audit_schema) = validators();
    let slapd = Slapd::builder()
        .extra_domain_ldif(
            "dn: CN=Group Chat,OU=Users,DC=contoso,DC=com\n\
             objectClass: top\n\
             objectClass: person\n\
             objectClass: organizationalPerson\n\
             objectClass: user\n\
             cn: Group Chat\n\
             sn: Chat\n\
             msRTCSIP-PrimaryUserAddress: sip:groupchat@contoso.com\n\
             msRTCSIP-UserEnabled: maybe\n",
        )
        .start();
    let work = tempfile::tempdir().unwrap();

    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__RETIRE", "disable")
        .args(["reconcile", "--format", "json"])
        .assert();
    let (out, _) = output(&assert);
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert!(!plan["findings"].as_array().unwrap().is_empty());
    assert_valid(&plan_schema, &plan);

    // A keyed chain, so the records' `mac` is checked against the schema too.
    let key = work.path().join("audit.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__RETIRE", "disable")
        .env("PCSYNC__AUDIT__KEY_FILE", &key)
        .args(["reconcile", "--apply", "--format", "json"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(0);
    let applied: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(applied["result"]["applied"], 2);
    assert_valid(&plan_schema, &applied);

    let log = std::fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    let mut events = std::collections::BTreeSet::new();
    for line in log.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert!(record["mac"].is_string(), "keyed: {line}");
        events.insert(record["event"].as_str().unwrap().to_string());
        assert_valid(&audit_schema, &record);
    }
    for e in [
        "run_start",
        "plan",
        "swap_intent",
        "before_image",
        "step",
        "swap_done",
        "run_end",
    ] {
        assert!(events.contains(e), "no {e} record in {events:?}");
    }

    // Drift is caught: a field the schema does not know, a wrong type, a missing field.
    let mut drifted = applied.clone();
    drifted["changes"][0]["action"] = Value::from("rename_user");
    assert!(!plan_schema.is_valid(&drifted), "unknown action");
    let mut drifted = plan.clone();
    drifted["summary"]["ready"] = Value::from("2");
    assert!(!plan_schema.is_valid(&drifted), "a count as a string");
    let record: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(audit_schema.is_valid(&record));
    let mut drifted = record.clone();
    drifted["extra"] = Value::from(1);
    assert!(!audit_schema.is_valid(&drifted), "an undeclared field");
    let mut drifted = record.clone();
    drifted.as_object_mut().unwrap().remove("prev");
    assert!(!audit_schema.is_valid(&drifted), "no prev");
    let mut drifted = record.clone();
    drifted["mac"] = Value::from("not a mac");
    assert!(!audit_schema.is_valid(&drifted), "a malformed mac");
    let mut drifted = record;
    drifted["time"] = Value::from("yesterday");
    assert!(
        !audit_schema.is_valid(&drifted),
        "a time that is not RFC 3339"
    );
}
