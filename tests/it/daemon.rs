//! `pcsync run` end to end against a real slapd (issue 5): scheduled runs that never overlap, a
//! directory change reaching the redirector within 1 s, serving from cache through an outage,
//! `/metrics` as Prometheus text, SIGTERM during an apply, and two instances sharing a lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pcsync::audit::{self, Event, Outcome};

use crate::common::daemon::Daemon;
use crate::common::redirect::{FIXTURE_USER, options_status};
use crate::common::slapd::Slapd;

const OCSCHAT_CONTOSO: &str = "cn=OCSChat,ou=Service Accounts,dc=contoso,dc=com";

/// How fast a directory change must reach the redirector (issue 5, on OpenLDAP).
const CHANGE_BOUND: Duration = Duration::from_secs(1);

/// Polls the redirector with UDP OPTIONS until `user@contoso.com` answers `code`; the time it
/// took, or `None` after `timeout`.
fn time_until_status(d: &Daemon, user: &str, code: u16, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if options_status(d.sip, &format!("sip:{user}@contoso.com")) == Some(code) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// === a strict little parser of the Prometheus text exposition format (0.0.4) ===

#[derive(Debug)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses every line; panics naming the first line that is not valid exposition format. Checks
/// that each sample belongs to a family announced by `# TYPE` with a known type.
pub(crate) fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            assert!(valid_name(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or_else(|| panic!("no type: {line}"));
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "info"
                    ]
                    .contains(&t),
                    "unknown type in {line:?}"
                );
                types.insert(name.to_string(), t.to_string());
            } else {
                assert!(kind == "HELP" || kind == "UNIT", "bad comment {line:?}");
            }
            continue;
        }
        let (name_labels, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match name_labels.split_once('{') {
            None => (name_labels.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(valid_name(k), "bad label name in {line:?}");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(valid_name(&name), "bad sample name in {line:?}");
        let family = types
            .keys()
            .find(|f| name == **f || name.strip_prefix(f.as_str()).is_some_and(|s| s == "_total"))
            .unwrap_or_else(|| panic!("sample {name} has no # TYPE line"));
        let _ = family;
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

pub(crate) fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
        .sum()
}

fn audit_records(d: &Daemon) -> Vec<audit::Record> {
    if !d.audit.exists() {
        return Vec::new();
    }
    audit::read(&d.audit).unwrap()
}

#[test]
fn scheduled_runs_happen_never_overlap_and_metrics_parse() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    // auto_apply = false (openldap.toml): the fixture's two swaps are planned, not applied.
    let d = Daemon::start(&slapd, work.path(), &[]);
    d.wait_until("four scheduled runs", Duration::from_secs(30), || {
        d.health()["last_run"]["trigger"] == "cron"
            && d.log_text().matches("scheduled run finished").count() >= 4
    });
    let health = d.health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["last_run"]["outcome"], "pending", "{health}");
    // Two swaps, each a retire and a create.
    assert_eq!(health["pending_changes"], 4, "{health}");
    assert_eq!(health["table"]["entries"], 1, "{health}");
    assert!(
        health["table"]["version"].as_u64().unwrap() >= 1,
        "{health}"
    );
    assert_eq!(health["lease"]["writer"], true);
    assert!(health["directory"]["state"] == "up", "{health}");
    assert!(health["watch"]["mode"] == "syncrepl", "{health}");
    assert!(health["last_success"].is_string(), "{health}");

    // Scrape after some SIP traffic, then parse strictly.
    assert_eq!(
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200)
    );
    let samples = parse_prometheus(&d.metrics());
    for name in [
        "pcsync_runs_total",
        "pcsync_changes_applied_total",
        "pcsync_blocked_runs_total",
        "pcsync_pending_changes",
        "pcsync_last_success_timestamp_seconds",
        "pcsync_sip_requests_total",
        "pcsync_sip_responses_total",
        "pcsync_sip_dropped_total",
        "pcsync_sip_connections",
        "pcsync_sip_reconnects_total",
        "pcsync_mapping_table_entries",
        "pcsync_mapping_table_version",
        "pcsync_watch_reconnects_total",
        "pcsync_lease_writer",
    ] {
        assert!(
            samples.iter().any(|s| s.name == name),
            "{name} missing from /metrics"
        );
    }
    assert!(value(&samples, "pcsync_runs_total", Some(("outcome", "pending"))) >= 4.0);
    assert_eq!(value(&samples, "pcsync_pending_changes", None), 4.0);
    assert_eq!(value(&samples, "pcsync_mapping_table_entries", None), 1.0);
    assert!(
        value(
            &samples,
            "pcsync_sip_requests_total",
            Some(("method", "OPTIONS"))
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "pcsync_sip_responses_total",
            Some(("status", "200"))
        ) >= 1.0
    );
    assert!(value(&samples, "pcsync_last_success_timestamp_seconds", None) > 1.7e9);

    // Never overlapping: every run's span opens after the previous one's closed. The worker
    // logs one "scheduled run finished" per run, and the run ids (start times) strictly
    // increase in log order.
    let log = d.log_text();
    let ids: Vec<String> = log
        .lines()
        .filter(|l| l.contains("scheduled run finished"))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["span"]["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(ids.len() >= 4);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The unchanged pending plan is recorded in the audit log once, not at every tick.
    let records = audit_records(&d);
    let plans: Vec<_> = records.iter().filter(|r| r.event == Event::Plan).collect();
    assert_eq!(plans.len(), 1, "{records:#?}");
    assert!(records.iter().any(|r| {
        r.event == Event::RunEnd
            && r.outcome == Outcome::Skipped
            && r.message
                .as_deref()
                .unwrap_or("")
                .contains("4 change(s) pending approval")
    }));
    // Nothing was written to the directory.
    assert_eq!(slapd.count(OCSCHAT_CONTOSO, "(objectClass=*)"), 1);
    let mut d = d;
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn a_directory_change_reaches_the_redirector_within_one_second() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(&slapd, work.path(), &[]);
    assert!(time_until_status(&d, FIXTURE_USER, 200, Duration::from_secs(30)).is_some());
    let container = slapd.endpoint_container();
    let dn = format!("cn=watch-test,{container}");
    let pool2 = slapd.pool_dn("1:3");
    let pool1 = slapd.pool_dn("1:2");

    // Added.
    slapd.add(&format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: contact\ncn: watch-test\nsn: watch-test\n\
         msRTCSIP-PrimaryUserAddress: sip:watched@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {pool1}\n"
    ));
    let added = time_until_status(&d, "watched", 200, Duration::from_secs(10));
    assert!(
        added.is_some_and(|t| t <= CHANGE_BOUND),
        "add took {added:?}"
    );

    // Re-homed: the 302 Contact names the new pool.
    slapd.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\nmsRTCSIP-PrimaryHomeServer: {pool2}\n"
    ));
    let started = Instant::now();
    let mut rehomed = None;
    while started.elapsed() < Duration::from_secs(10) {
        if invite_contact(&d, "watched").is_some_and(|c| c.contains("pcpool2.contoso.com")) {
            rehomed = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        rehomed.is_some_and(|t| t <= CHANGE_BOUND),
        "re-home took {rehomed:?}"
    );

    // Deleted.
    slapd.delete(&dn);
    let deleted = time_until_status(&d, "watched", 404, Duration::from_secs(10));
    assert!(
        deleted.is_some_and(|t| t <= CHANGE_BOUND),
        "delete took {deleted:?}"
    );
}

/// The Contact of the 302 an INVITE gets, over UDP.
fn invite_contact(d: &Daemon, user: &str) -> Option<String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let local = socket.local_addr().ok()?;
    let target = format!("sip:{user}@contoso.com");
    let text = format!(
        "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{n}\r\n\
         From: <sip:test@127.0.0.1>;tag=i\r\nTo: <{target}>\r\nCall-ID: inv-{n}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        n = Instant::now().elapsed().as_nanos() ^ u128::from(local.port())
    );
    socket.send_to(text.as_bytes(), d.sip).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Contact: "))
        .map(str::to_string)
}

#[test]
fn serves_from_cache_while_slapd_is_down_and_catches_up_when_it_returns() {
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&slapd, work.path(), &[]);
    assert!(time_until_status(&d, FIXTURE_USER, 200, Duration::from_secs(30)).is_some());
    // Restart the daemon with the directory down: it serves the last-known-good table at once.
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    slapd.stop();
    let d = Daemon::start(&slapd, work.path(), &[]);
    assert!(
        time_until_status(&d, FIXTURE_USER, 200, Duration::from_secs(10)).is_some(),
        "the cached table was not served; log:\n{}",
        d.log_text()
    );
    d.wait_until(
        "the watch notices the outage",
        Duration::from_secs(20),
        || {
            let h = d.health();
            h["directory"]["state"] == "down" && h["watch"]["state"] == "failing"
        },
    );
    assert_eq!(
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200)
    );
    // Back: a change made while the daemon was blind arrives, and the reconnect is counted.
    slapd.start_again();
    let container = slapd.endpoint_container();
    let pool1 = slapd.pool_dn("1:2");
    slapd.add(&format!(
        "dn: cn=after-outage,{container}\nobjectClass: top\nobjectClass: person\n\
         objectClass: organizationalPerson\nobjectClass: contact\ncn: after-outage\n\
         sn: after-outage\nmsRTCSIP-PrimaryUserAddress: sip:afteroutage@contoso.com\n\
         msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: {pool1}\n"
    ));
    assert!(
        time_until_status(&d, "afteroutage", 200, Duration::from_secs(20)).is_some(),
        "no catch-up; log:\n{}",
        d.log_text()
    );
    d.wait_until("the reconnect is counted", Duration::from_secs(10), || {
        let h = d.health();
        h["watch"]["reconnects"].as_u64().unwrap_or(0) >= 1 && h["directory"]["state"] == "up"
    });
}

#[test]
fn sigterm_during_an_apply_finishes_the_swap_and_exits_zero() {
    if !cfg!(feature = "failpoints") {
        panic!(
            "this test needs pcsync built with failpoints: run scripts/test.sh, or cargo test --features failpoints"
        );
    }
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    // The first swap pauses 3 s (asynchronously) right after the user was retired: the middle
    // of a swap.
    let mut d = Daemon::start(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__SAFETY__AUTO_APPLY", "true"),
            ("FAILPOINTS", "swap-pause-after-retire=1*return(3000)"),
        ],
    );
    d.wait_until("the first user retired", Duration::from_secs(30), || {
        audit_records(&d)
            .iter()
            .any(|r| r.event == Event::Step && r.outcome == Outcome::Ok && r.dn.is_some())
    });
    let (code, took) = d.stop();
    assert_eq!(code, Some(0), "log:\n{}", d.log_text());
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
    let records = audit_records(&d);
    // The swap in flight finished (endpoint added and verified); the next one never started.
    let first = records
        .iter()
        .find(|r| r.event == Event::SwapIntent)
        .unwrap()
        .swap
        .clone();
    assert!(
        records
            .iter()
            .any(|r| r.event == Event::SwapDone && r.swap == first && r.outcome == Outcome::Ok),
        "{records:#?}"
    );
    assert!(audit::unfinished_swaps(&records).is_empty(), "{records:#?}");
    let end = records
        .iter()
        .rev()
        .find(|r| r.event == Event::RunEnd)
        .unwrap();
    assert!(
        end.message
            .as_deref()
            .unwrap_or("")
            .contains("run aborted by shutdown after 1 of 2 swap(s)"),
        "{}\nlog:\n{}",
        summary(&records),
        d.log_text()
    );
    // The directory shows exactly one whole swap: one user gone and its endpoint present.
    let endpoints = slapd.count(
        &slapd.endpoint_container(),
        "(msRTCSIP-PrimaryUserAddress=sip:ocschat@*)",
    );
    let users = slapd.count(
        "dc=contoso,dc=com",
        "(msRTCSIP-PrimaryUserAddress=sip:ocschat@*)",
    );
    assert_eq!((endpoints, users), (1, 1), "one swap done, one not started");
}

#[test]
fn two_instances_elect_one_writer_and_the_other_takes_over_after_a_kill() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let lease_dn = format!("cn=pcsync-lease,{}", slapd.endpoint_container());
    let lease = Duration::from_secs(3);
    let env = |id: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("PCSYNC__DAEMON__LEASE_DN", lease_dn.clone()),
            ("PCSYNC__DAEMON__LEASE_DURATION", "3s".to_string()),
            ("PCSYNC__DAEMON__LEASE_RENEW", "1s".to_string()),
            ("PCSYNC__DAEMON__INSTANCE_ID", id.to_string()),
        ]
    };
    let (a_env, b_env) = (env("instance-a"), env("instance-b"));
    let mut a = Daemon::start(&slapd, &work.path().join("a"), &refs(&a_env));
    a.wait_until(
        "instance-a holds the lease",
        Duration::from_secs(20),
        || a.health()["lease"]["writer"] == true,
    );
    let b = Daemon::start(&slapd, &work.path().join("b"), &refs(&b_env));
    b.wait_until(
        "instance-b sees the holder",
        Duration::from_secs(20),
        || b.health()["lease"]["holder"] == "instance-a",
    );
    // One writer: a writes; b stays on standby for several ticks, and both serve redirects.
    b.wait_until(
        "instance-b idles through two ticks",
        Duration::from_secs(20),
        || {
            let m = parse_prometheus(&b.metrics());
            value(&m, "pcsync_runs_total", Some(("outcome", "standby"))) >= 2.0
        },
    );
    let (ha, hb) = (a.health(), b.health());
    assert_eq!(ha["lease"]["writer"], true, "{ha}");
    assert_eq!(hb["lease"]["writer"], false, "{hb}");
    assert_eq!(hb["last_run"]["outcome"], "standby", "{hb}");
    for d in [&a, &b] {
        assert!(time_until_status(d, FIXTURE_USER, 200, Duration::from_secs(10)).is_some());
    }
    assert!(
        audit_records(&b).is_empty(),
        "the standby wrote to its audit log"
    );
    let samples = parse_prometheus(&b.metrics());
    assert_eq!(value(&samples, "pcsync_lease_writer", None), 0.0);
    assert_eq!(
        value(
            &samples,
            "pcsync_lease_holder",
            Some(("holder", "instance-a"))
        ),
        1.0
    );

    // The leader dies without a word (SIGKILL): b takes over within two lease periods.
    let killed = Instant::now();
    a.kill();
    b.wait_until("instance-b takes over", lease * 2, || {
        b.health()["lease"]["writer"] == true
    });
    let took = killed.elapsed();
    assert!(took <= lease * 2, "takeover took {took:?}");
    b.wait_until(
        "instance-b runs as the writer",
        Duration::from_secs(10),
        || b.health()["last_run"]["outcome"] == "pending",
    );
    let stored = slapd.search(&lease_dn, "(objectClass=*)", &["description"]);
    assert!(stored.contains("holder=instance-b;expires="), "{stored}");
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pcsync.toml");
    std::fs::copy(crate::common::repo("config/openldap.toml"), &config).unwrap();
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[("PCSYNC_CONFIG", config.to_str().unwrap())],
    );
    d.wait_until("a first run", Duration::from_secs(30), || {
        d.health()["last_run"].is_object()
    });
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[safety]", "[safety]\nmax_changes_per_rn = 3"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_until("the rejection is logged", Duration::from_secs(10), || {
        d.log_text().contains("configuration reload rejected")
    });
    assert!(
        d.log_text().contains("max_changes_per_rn"),
        "{}",
        d.log_text()
    );
    // Still running and serving.
    let runs_before = d.log_text().matches("scheduled run finished").count();
    d.wait_until("runs continue", Duration::from_secs(10), || {
        d.log_text().matches("scheduled run finished").count() > runs_before
    });
    // A valid change is taken.
    std::fs::write(
        &config,
        text.replace("auto_apply = false", "auto_apply = true"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_until("reloaded and applied", Duration::from_secs(20), || {
        d.health()["last_run"]["outcome"] == "applied"
    });
}

fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// One line per audit record: event, outcome, step, message.
fn summary(records: &[audit::Record]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {:?} {:?} {}",
                r.run_id,
                r.event,
                r.outcome,
                r.step,
                r.message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// === the syncrepl watch (slapd has syncprov) ===

/// A 60 s poll and an hourly cron: only the syncrepl watch can explain a change arriving
/// within a second.
const SYNCREPL_ONLY: &[(&str, &str)] = &[
    ("PCSYNC__DAEMON__POLL_INTERVAL", "60s"),
    ("PCSYNC__SCHEDULE__CRON", "0 0 * * * *"),
];

fn add_endpoint(slapd: &Slapd, cn: &str, user: &str, pool: &str) -> String {
    let dn = format!("cn={cn},{}", slapd.endpoint_container());
    slapd.add(&format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: contact\ncn: {cn}\nsn: {cn}\n\
         msRTCSIP-PrimaryUserAddress: sip:{user}@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {pool}\n"
    ));
    dn
}

#[test]
fn syncrepl_brings_add_rehome_and_delete_within_one_second_and_keeps_its_cookie() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(&slapd, work.path(), SYNCREPL_ONLY);
    assert!(time_until_status(&d, FIXTURE_USER, 200, Duration::from_secs(30)).is_some());
    d.wait_until(
        "the syncrepl watch connects",
        Duration::from_secs(20),
        || {
            let h = d.health();
            h["watch"]["mode"] == "syncrepl" && h["watch"]["state"] == "connected"
        },
    );
    let (pool1, pool2) = (slapd.pool_dn("1:2"), slapd.pool_dn("1:3"));

    let dn = add_endpoint(&slapd, "sync-test", "synced", &pool1);
    let added = time_until_status(&d, "synced", 200, Duration::from_secs(10));
    assert!(
        added.is_some_and(|t| t <= CHANGE_BOUND),
        "add took {added:?}; log:\n{}",
        d.log_text()
    );

    slapd.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\nmsRTCSIP-PrimaryHomeServer: {pool2}\n"
    ));
    let started = Instant::now();
    let mut rehomed = None;
    while started.elapsed() < Duration::from_secs(10) {
        if invite_contact(&d, "synced").is_some_and(|c| c.contains("pcpool2.contoso.com")) {
            rehomed = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        rehomed.is_some_and(|t| t <= CHANGE_BOUND),
        "re-home took {rehomed:?}"
    );

    slapd.delete(&dn);
    let deleted = time_until_status(&d, "synced", 404, Duration::from_secs(10));
    assert!(
        deleted.is_some_and(|t| t <= CHANGE_BOUND),
        "delete took {deleted:?}"
    );

    let cookie = d.state_dir.join("syncrepl.cookie");
    d.wait_until("the cookie is persisted", Duration::from_secs(10), || {
        cookie.exists()
    });
    let text = std::fs::read_to_string(&cookie).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cookie).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn syncrepl_reconnects_after_a_slapd_restart() {
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(&slapd, work.path(), SYNCREPL_ONLY);
    d.wait_until(
        "the syncrepl watch connects",
        Duration::from_secs(30),
        || d.health()["watch"]["state"] == "connected",
    );
    slapd.stop();
    d.wait_until(
        "the watch notices the outage",
        Duration::from_secs(20),
        || {
            let h = d.health();
            h["watch"]["state"] == "failing" && h["directory"]["state"] == "down"
        },
    );
    slapd.start_again();
    d.wait_until("the watch reconnects", Duration::from_secs(20), || {
        let h = d.health();
        h["watch"]["state"] == "connected" && h["watch"]["reconnects"].as_u64().unwrap_or(0) >= 1
    });
    add_endpoint(
        &slapd,
        "after-restart",
        "afterrestart",
        &slapd.pool_dn("1:2"),
    );
    let arrived = time_until_status(&d, "afterrestart", 200, Duration::from_secs(10));
    assert!(
        arrived.is_some_and(|t| t <= CHANGE_BOUND),
        "after the restart the change took {arrived:?}; log:\n{}",
        d.log_text()
    );
}

#[test]
fn without_syncprov_the_watch_polls() {
    let slapd = Slapd::builder().syncprov(false).start();
    let work = tempfile::tempdir().unwrap();
    // The default 100 ms poll; an hourly cron so only the watch can bring the change.
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[("PCSYNC__SCHEDULE__CRON", "0 0 * * * *")],
    );
    d.wait_until(
        "the watch falls back to polling",
        Duration::from_secs(20),
        || d.health()["watch"]["mode"] == "poll",
    );
    add_endpoint(&slapd, "polled", "polled", &slapd.pool_dn("1:2"));
    let arrived = time_until_status(&d, "polled", 200, Duration::from_secs(10));
    assert!(
        arrived.is_some_and(|t| t <= CHANGE_BOUND),
        "the polled change took {arrived:?}; log:\n{}",
        d.log_text()
    );
    assert!(!d.state_dir.join("syncrepl.cookie").exists());
    // slapd lists the control (the module is loaded) and refuses the search: LDAP 12.
    assert!(d.log_text().contains("the watch polls instead"));
}
