//! The documented JSON schemas (schemas/plan.schema.json, schemas/audit-record.schema.json)
//! checked against what pcsync really writes: a plan with findings, an applied plan with its
//! result, and every record of an audit log. The validator covers the subset the schemas use
//! (type, const, enum, properties, required, additionalProperties, items, oneOf, minimum, $ref
//! within and between the two files); patterns and formats are not checked here.

use serde_json::Value;

use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, repo};

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(repo(&format!("schemas/{name}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

struct Schemas {
    plan: Value,
    audit: Value,
}

impl Schemas {
    fn resolve<'a>(&'a self, current: &'a Value, reference: &str) -> (&'a Value, &'a Value) {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let root = match file {
            "" => current,
            "plan.schema.json" => &self.plan,
            "audit-record.schema.json" => &self.audit,
            other => panic!("unknown schema file {other}"),
        };
        let target = if pointer.is_empty() {
            root
        } else {
            root.pointer(pointer)
                .unwrap_or_else(|| panic!("no {pointer} in {file}"))
        };
        (root, target)
    }

    /// Problems of `value` against `schema` (whose document is `root`), with JSON paths.
    fn check(
        &self,
        root: &Value,
        schema: &Value,
        value: &Value,
        path: &str,
        out: &mut Vec<String>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (root, target) = self.resolve(root, r);
            return self.check(root, target, value, path, out);
        }
        if let Some(c) = schema.get("const")
            && c != value
        {
            out.push(format!("{path}: {value} is not {c}"));
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(value)
        {
            out.push(format!("{path}: {value} is not one of {e:?}"));
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "string" => value.is_string(),
                "integer" => value.is_u64() || value.is_i64(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                _ => false,
            });
            if !ok {
                out.push(format!("{path}: {value} is not of type {types:?}"));
                return;
            }
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_i64)
            && value.as_i64().is_some_and(|v| v < min)
        {
            out.push(format!("{path}: {value} < {min}"));
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = options
                .iter()
                .filter(|o| {
                    let mut e = Vec::new();
                    self.check(root, o, value, path, &mut e);
                    e.is_empty()
                })
                .count();
            if matching != 1 {
                out.push(format!("{path}: {value} matches {matching} oneOf options"));
            }
        }
        if let (Some(obj), true) = (value.as_object(), schema.get("properties").is_some()) {
            let props = schema["properties"].as_object().unwrap();
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap();
                if !obj.contains_key(req) {
                    out.push(format!("{path}: missing required {req}"));
                }
            }
            for (k, v) in obj {
                match props.get(k) {
                    Some(s) => self.check(root, s, v, &format!("{path}.{k}"), out),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        out.push(format!("{path}: undeclared property {k}"))
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                self.check(root, items, v, &format!("{path}[{i}]"), out);
            }
        }
    }

    fn assert_valid(&self, root: &Value, value: &Value) {
        let mut problems = Vec::new();
        self.check(root, root, value, "$", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}\nin {value}");
    }
}

#[test]
fn plans_and_audit_records_match_their_documented_schemas() {
    let schemas = Schemas {
        plan: load("plan.schema.json"),
        audit: load("audit-record.schema.json"),
    };
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
    schemas.assert_valid(&schemas.plan, &plan);

    let assert = pcsync(&slapd, work.path())
        .env("PCSYNC__SAFETY__RETIRE", "disable")
        .args(["reconcile", "--apply", "--format", "json"])
        .assert();
    let (out, err) = output(&assert);
    assert.code(0);
    let applied: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(applied["result"]["applied"], 2);
    schemas.assert_valid(&schemas.plan, &applied);

    let log = std::fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    let mut events = std::collections::BTreeSet::new();
    for line in log.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        events.insert(record["event"].as_str().unwrap().to_string());
        schemas.assert_valid(&schemas.audit, &record);
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
}
