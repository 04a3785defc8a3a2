//! Benchmark data for `scripts/bench-audit.sh`: realistic runs appended through the real
//! writer (so rotation and chaining are the production code), without fsync.
//!
//! Each run is 10 records: `run_start`, `plan`, `swap_intent`, `before_image` (a 14-attribute
//! user with a binary objectSid), three step pairs, `swap_done`, `run_end`; every 50th swap
//! fails and is rolled back. Times advance one second per record from 2026-01-01T00:00:00Z, so
//! time filters select proportional slices. Never used by real runs.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

use super::{Actor, AuditLog, AuditSink, Counts, Error, Event, Note, Outcome, Step};
use crate::model::{AttrValues, Dn, Entry, SipUri};
use crate::plan::{Change, CreateEndpoint, Header, Plan, RetireUser, Status, Summary};

/// Seconds since the epoch of the next generated record.
static NEXT_TIME: AtomicI64 = AtomicI64::new(1_767_225_600);

fn clock() -> DateTime<Utc> {
    let secs = NEXT_TIME.fetch_add(1, Ordering::Relaxed);
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Appends `records` generated records (whole runs; the last run is cut to fit).
pub(crate) fn append(path: &Path, records: u64, max_segment_bytes: u64) -> Result<(), Error> {
    let actor = Actor {
        bind_dn: Some("CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com".into()),
        host: "bench".into(),
    };
    let mut log = AuditLog::open(path, "", actor, clock)?
        .with_max_segment_size(max_segment_bytes)
        .without_fsync();
    let mut written = 0;
    let mut run = 0u64;
    while written < records {
        run += 1;
        let run_id = format!(
            "{}-{:08x}",
            DateTime::from_timestamp(NEXT_TIME.load(Ordering::Relaxed), 0)
                .unwrap_or_default()
                .format("%Y%m%dT%H%M%S%3fZ"),
            run as u32
        );
        log.set_run(&run_id);
        let notes = run_notes(&run_id, run);
        if notes.is_empty() {
            break;
        }
        for note in notes {
            if written == records {
                break;
            }
            log.record(note)?;
            written += 1;
        }
    }
    Ok(())
}

/// The records of one generated run; empty only if the generated names failed to parse.
fn run_notes(run_id: &str, run: u64) -> Vec<Note> {
    let uri = format!("sip:wk{:04}@contoso.com", run % 10_000);
    let user = format!(
        "CN=wk{:04},OU=Service Accounts,DC=contoso,DC=com",
        run % 10_000
    );
    let endpoint = format!(
        "CN={{{:08x}-0000-8000-8000-000000000000}},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
        run
    );
    let (Ok(sip_uri), Ok(user_dn), Ok(endpoint_dn)) =
        (SipUri::parse(&uri), Dn::parse(&user), Dn::parse(&endpoint))
    else {
        return Vec::new();
    };
    let header = |dn: &Dn, reason: &str| Header {
        dn: dn.clone(),
        sip_uri: sip_uri.clone(),
        pool: "pcpool1.contoso.com".to_string(),
        status: Status::Ready,
        not_before: None,
        reason: reason.to_string(),
    };
    let swap = format!("{run_id}#1");
    let retire = Change::RetireUser(RetireUser {
        header: header(&user_dn, "well-known user of a migration"),
        retire: crate::config::Retire::Delete,
        expect: vec![AttrValues::text("msRTCSIP-PrimaryUserAddress", &[&uri])],
        cleared: vec![],
    });
    let create = Change::CreateEndpoint(CreateEndpoint {
        header: header(&endpoint_dn, "no legacy endpoint"),
        expect: vec![],
        entry: vec![
            AttrValues::text(
                "objectClass",
                &["top", "person", "organizationalPerson", "contact"],
            ),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[&uri]),
            AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
        ],
    });
    let image = Entry {
        dn: user_dn.clone(),
        attributes: vec![
            AttrValues::text(
                "objectClass",
                &["top", "person", "organizationalPerson", "user"],
            ),
            AttrValues::text("cn", &[&format!("wk{:04}", run % 10_000)]),
            AttrValues::text("sn", &["Chat"]),
            AttrValues::text("displayName", &["Group Chat well-known user"]),
            AttrValues::text("sAMAccountName", &[&format!("wk{:04}", run % 10_000)]),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[&uri]),
            AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
            AttrValues::text("msRTCSIP-OptionFlags", &["256"]),
            AttrValues {
                name: "objectSid".into(),
                values: vec![vec![
                    1,
                    5,
                    0,
                    0,
                    0,
                    0,
                    0,
                    5,
                    21,
                    0,
                    0,
                    0,
                    0xfe,
                    0xff,
                    (run & 0xff) as u8,
                ]],
            },
        ],
    };
    let fails = run.is_multiple_of(50);
    let step = |s: Step, o: Outcome, dn: &Dn| {
        Note::new(Event::Step, o)
            .swap(&swap)
            .dn(dn)
            .sip_uri(&sip_uri)
            .step(s)
    };
    let mut start =
        Note::new(Event::RunStart, Outcome::Started).message("reconcile --apply; max_changes 10");
    start.counts = None;
    let mut plan = Note::new(Event::Plan, Outcome::Ok).message("2 change(s) ready, 0 waiting");
    plan.plan = Some(Plan {
        format: crate::plan::PLAN_FORMAT,
        fingerprint: format!("{run:064x}"),
        changes: vec![retire.clone(), create.clone()],
        findings: vec![],
        summary: Summary {
            ready: 2,
            ..Summary::default()
        },
    });
    let mut intent = Note::new(Event::SwapIntent, Outcome::Started)
        .swap(&swap)
        .dn(&user_dn)
        .sip_uri(&sip_uri);
    intent.changes = Some(vec![retire, create]);
    let mut before = Note::new(Event::BeforeImage, Outcome::Ok)
        .swap(&swap)
        .dn(&user_dn)
        .sip_uri(&sip_uri);
    before.before = Some(image.clone());
    let mut end = Note::new(
        Event::RunEnd,
        if fails { Outcome::Failed } else { Outcome::Ok },
    );
    end.counts = Some(Counts {
        planned: 2,
        applied: usize::from(!fails),
        failed: usize::from(fails),
        rolled_back: usize::from(fails),
        ..Counts::default()
    });
    let mut notes = vec![
        start,
        plan,
        intent,
        before,
        step(Step::DeleteUser, Outcome::Started, &user_dn),
        step(Step::DeleteUser, Outcome::Ok, &user_dn),
        step(Step::AddEndpoint, Outcome::Started, &endpoint_dn),
    ];
    if fails {
        notes.push(
            step(Step::AddEndpoint, Outcome::Failed, &endpoint_dn)
                .message("add of the endpoint failed: LDAP 65 (objectClassViolation)"),
        );
        let mut rollback = Note::new(Event::Rollback, Outcome::Ok)
            .swap(&swap)
            .dn(&user_dn)
            .sip_uri(&sip_uri)
            .step(Step::RestoreUser);
        rollback.after = Some(image);
        notes.push(rollback);
    } else {
        notes.push(step(Step::AddEndpoint, Outcome::Ok, &endpoint_dn));
        notes.push(
            Note::new(Event::SwapDone, Outcome::Ok)
                .swap(&swap)
                .dn(&user_dn)
                .sip_uri(&sip_uri),
        );
    }
    notes.push(end);
    notes
}
