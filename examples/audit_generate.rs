//! Benchmark data for `scripts/bench-audit.sh`: realistic runs appended to an audit log through
//! pcsync's own writer (so rotation and chaining are the production code), without fsync and
//! without an anchor (the log is a stand-alone copy, like an auditor's).
//!
//! Usage: audit_generate LOG RECORDS [MAX_SEGMENT_BYTES]
//!
//! Each run is 10 records: `run_start`, `plan`, `swap_intent`, `before_image` (a 9-attribute
//! user with a binary objectSid), three step pairs, `swap_done`, `run_end`; every 50th swap
//! fails and is rolled back. Times advance one second per record from 2026-01-01T00:00:00Z, so
//! time filters select proportional slices. The records are written as the JSON the log
//! documents (schemas/audit-record.schema.json), so the generator needs none of pcsync's types
//! beyond the writer.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use pcsync::audit::{Actor, AuditLog, AuditSink, LogFiles, Note};
use serde_json::{Value, json};

/// Seconds since the epoch of the next generated record.
static NEXT_TIME: AtomicI64 = AtomicI64::new(1_767_225_600);

fn clock() -> DateTime<Utc> {
    let secs = NEXT_TIME.fetch_add(1, Ordering::Relaxed);
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, log, records] => records.parse().ok().map(|n| (log, n, None)),
        [_, log, records, max] => records
            .parse()
            .ok()
            .zip(max.parse().ok())
            .map(|(n, m)| (log, n, Some(m))),
        _ => None,
    };
    let Some((log, records, max_segment_bytes)) = parsed else {
        eprintln!("usage: audit_generate LOG RECORDS [MAX_SEGMENT_BYTES]");
        std::process::exit(2);
    };
    if let Err(e) = append(Path::new(log), records, max_segment_bytes) {
        eprintln!("audit_generate: {e}");
        std::process::exit(1);
    }
}

/// Appends `records` generated records (whole runs; the last run is cut to fit).
fn append(path: &Path, records: u64, max_segment_bytes: Option<u64>) -> Result<(), String> {
    let actor = Actor {
        bind_dn: Some("CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com".into()),
        host: "bench".into(),
    };
    let mut files = LogFiles::unanchored(path);
    if let Some(bytes) = max_segment_bytes {
        files = files.with_max_segment_size(bytes);
    }
    let mut log = AuditLog::open(&files, "", actor, clock)
        .map_err(|e| e.to_string())?
        .without_fsync();
    let mut written = 0;
    let mut run = 0u64;
    while written < records {
        run += 1;
        let started = DateTime::from_timestamp(NEXT_TIME.load(Ordering::Relaxed), 0)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%S%3fZ");
        let run_id = format!("{started}-{:08x}", run as u32);
        log.set_run(&run_id);
        for note in Swap::new(&run_id, run).notes() {
            if written == records {
                break;
            }
            let note: Note = serde_json::from_value(note).map_err(|e| e.to_string())?;
            log.record(note).map_err(|e| e.to_string())?;
            written += 1;
        }
    }
    Ok(())
}

/// A domain SID's first bytes; each user's last byte is its run number's.
const SID_PREFIX: [u8; 14] = [1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xfe, 0xff];

/// The one swap of generated run number `run`: a well-known user cycling through 10,000 URIs.
struct Swap {
    run: u64,
    swap: String,
    uri: String,
    user: String,
    endpoint: String,
}

impl Swap {
    fn new(run_id: &str, run: u64) -> Swap {
        let n = run % 10_000;
        Swap {
            run,
            swap: format!("{run_id}#1"),
            uri: format!("sip:wk{n:04}@contoso.com"),
            user: format!("CN=wk{n:04},OU=Service Accounts,DC=contoso,DC=com"),
            endpoint: format!(
                "CN={{{run:08x}-0000-8000-8000-000000000000}},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"
            ),
        }
    }

    /// Every 50th swap fails at the endpoint's add and is rolled back.
    fn fails(&self) -> bool {
        self.run.is_multiple_of(50)
    }

    /// The run's records in order, as the caller-chosen part of each (see [`Note`]).
    fn notes(&self) -> Vec<Value> {
        let mut notes = vec![
            json!({"event": "run_start", "outcome": "started",
                   "message": "reconcile --apply; max_changes 10"}),
            json!({"event": "plan", "outcome": "ok",
                   "message": "2 change(s) ready, 0 waiting", "plan": self.plan()}),
            self.about("swap_intent", "started", &self.user)
                .with("changes", json!(self.changes())),
            self.about("before_image", "ok", &self.user)
                .with("before", self.before_image()),
            self.step("delete_user", "started", &self.user),
            self.step("delete_user", "ok", &self.user),
            self.step("add_endpoint", "started", &self.endpoint),
        ];
        if self.fails() {
            notes.push(self.step("add_endpoint", "failed", &self.endpoint).with(
                "message",
                json!("add of the endpoint failed: LDAP 65 (objectClassViolation)"),
            ));
            notes.push(
                self.about("rollback", "ok", &self.user)
                    .with("step", json!("restore_user"))
                    .with("after", self.before_image()),
            );
        } else {
            notes.push(self.step("add_endpoint", "ok", &self.endpoint));
            notes.push(self.about("swap_done", "ok", &self.user));
        }
        notes.push(self.run_end());
        notes
    }

    fn run_end(&self) -> Value {
        let failed = usize::from(self.fails());
        json!({"event": "run_end", "outcome": if failed == 1 { "failed" } else { "ok" },
               "counts": {"planned": 2, "applied": 1 - failed, "failed": failed,
                          "rolled_back": failed, "waiting": 0, "findings": 0}})
    }

    /// A record about `dn` in this swap.
    fn about(&self, event: &str, outcome: &str, dn: &str) -> Value {
        json!({"event": event, "outcome": outcome, "dn": dn, "sip_uri": self.uri,
               "swap": self.swap})
    }

    fn step(&self, step: &str, outcome: &str, dn: &str) -> Value {
        self.about("step", outcome, dn).with("step", json!(step))
    }

    fn plan(&self) -> Value {
        json!({"format": 1, "fingerprint": format!("{:064x}", self.run),
               "changes": self.changes(), "findings": [],
               "summary": {"ready": 2, "waiting": 0, "findings": 0, "blocked": 0, "in_sync": 0}})
    }

    /// Retire the user (delete), then create its endpoint.
    fn changes(&self) -> [Value; 2] {
        let text = |name: &str, values: &[&str]| json!({"name": name, "values": values});
        [
            json!({"action": "retire_user", "dn": self.user, "sip_uri": self.uri,
                   "pool": "pcpool1.contoso.com", "status": "ready",
                   "reason": "well-known user of a migration", "retire": "delete",
                   "expect": [text("msRTCSIP-PrimaryUserAddress", &[&self.uri])],
                   "attributes": []}),
            json!({"action": "create_endpoint", "dn": self.endpoint, "sip_uri": self.uri,
            "pool": "pcpool1.contoso.com", "status": "ready",
            "reason": "no legacy endpoint", "expect": [],
            "attributes": [
                text("objectClass", &["top", "person", "organizationalPerson", "contact"]),
                text("msRTCSIP-PrimaryUserAddress", &[&self.uri]),
                text("msRTCSIP-UserEnabled", &["TRUE"]),
            ]}),
        ]
    }

    /// A 9-attribute user with a binary objectSid (`{"base64": …}` in JSON).
    fn before_image(&self) -> Value {
        let text = |name: &str, values: &[&str]| json!({"name": name, "values": values});
        let n = format!("wk{:04}", self.run % 10_000);
        let mut sid = SID_PREFIX.to_vec();
        sid.push(self.run as u8);
        json!({"dn": self.user, "attributes": [
            text("objectClass", &["top", "person", "organizationalPerson", "user"]),
            text("cn", &[&n]),
            text("sn", &["Chat"]),
            text("displayName", &["Group Chat well-known user"]),
            text("sAMAccountName", &[&n]),
            text("msRTCSIP-PrimaryUserAddress", &[&self.uri]),
            text("msRTCSIP-UserEnabled", &["TRUE"]),
            text("msRTCSIP-OptionFlags", &["256"]),
            {"name": "objectSid", "values": [{"base64": base64(&sid)}]},
        ]})
    }
}

/// Adds a field to a JSON object.
trait With {
    fn with(self, key: &str, value: Value) -> Value;
}

impl With for Value {
    fn with(mut self, key: &str, value: Value) -> Value {
        if let Some(object) = self.as_object_mut() {
            object.insert(key.to_string(), value);
        }
        self
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
