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
    // Every tick fails for the same reason: the log says why once, not once per tick (#16).
    let failed_runs = || {
        d.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("pcsync_runs_total{outcome=\"failed\"} "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    d.wait_until("three scheduled runs fail", Duration::from_secs(30), || {
        failed_runs() >= 3
    });
    let warned = d
        .log_text()
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("scheduled run finished"))
        .count();
    assert_eq!(
        warned,
        1,
        "{} failed runs, one cause; log:\n{}",
        failed_runs(),
        d.log_text()
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
    crate::common::needs_failpoints();
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

// === issue 17: reload, supervision, liveness, health ===

/// A copy of `config/openldap.toml` in `work`, for a test that edits it and sends SIGHUP.
fn config_copy(work: &std::path::Path) -> std::path::PathBuf {
    let config = work.join("pcsync.toml");
    std::fs::copy(crate::common::repo("config/openldap.toml"), &config).unwrap();
    config
}

/// `text` with the line starting with `key = ` replaced (the key must be there once).
fn set_line(text: &str, key: &str, line: &str) -> String {
    let prefix = format!("{key} = ");
    assert_eq!(
        text.lines().filter(|l| l.starts_with(&prefix)).count(),
        1,
        "{key}"
    );
    text.lines()
        .map(|l| if l.starts_with(&prefix) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One OPTIONS over a new TCP connection; the status code, or `None`.
fn tcp_options_status(server: std::net::SocketAddr, user: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let local = s.local_addr().ok()?;
    let target = format!("sip:{user}@contoso.com");
    write!(
        s,
        "OPTIONS {target} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp{p}\r\n\
         From: <sip:test@127.0.0.1>;tag=t\r\nTo: <{target}>\r\nCall-ID: tcp-{p}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = local.port()
    )
    .ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

// See: #17 (1). The password is rotated in the directory and in the password file, then
// SIGHUP: every worker connects with the new one from its next connection. Before, only the
// scheduled runs did; table refreshes failed with LDAP 49 while /healthz said ok, the watch
// kept its old connection, and the refresh's copy of the cron never changed.
#[test]
fn sighup_hands_new_credentials_and_cron_to_every_worker() {
    use crate::common::daemon::Options;
    use crate::common::slapd::READER_DN;
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let config = config_copy(work.path());
    let password_file = work.path().join("reader.pw");
    std::fs::copy(&slapd.reader_password_file, &password_file).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    // The read-only service account, whose password the test can rotate; an hourly cron and a
    // 60 s poll, so only the syncrepl watch and the refreshes it asks for can bring a change.
    let text = set_line(&text, "bind_dn", &format!("bind_dn = \"{READER_DN}\""));
    std::fs::write(&config, set_line(&text, "cron", "cron = \"0 0 * * * *\"")).unwrap();
    let pw = password_file.to_str().unwrap();
    let options = Options {
        cron_in_file: true,
        ..Options::default()
    };
    let d = Daemon::spawn_with(
        &slapd,
        work.path(),
        &[
            ("PCSYNC_CONFIG", config.to_str().unwrap()),
            ("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", pw),
            ("PCSYNC__DAEMON__POLL_INTERVAL", "60s"),
        ],
        &options,
    );
    d.wait_until("/healthz answers", Duration::from_secs(30), || {
        d.try_get("/healthz").is_some()
    });
    d.wait_until(
        "the syncrepl watch connects",
        Duration::from_secs(30),
        || {
            let h = d.health();
            h["watch"]["state"] == "connected"
                && h["status"] == "ok"
                && h["last_run"]["trigger"] == "startup"
        },
    );

    // Rotate: the directory first, then the file, then SIGHUP; and a 1-second cron.
    let new_password = format!("rotated-{}", crate::common::slapd::random_hex());
    slapd.modify(&format!(
        "dn: {READER_DN}\nchangetype: modify\nreplace: userPassword\nuserPassword: {new_password}\n"
    ));
    std::fs::write(&password_file, &new_password).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, set_line(&text, "cron", "cron = \"* * * * * *\"")).unwrap();
    let reloads = d.log_text().matches("configuration reloaded").count();
    d.signal("HUP");
    d.wait_until("the reload", Duration::from_secs(10), || {
        d.log_text().matches("configuration reloaded").count() > reloads
    });

    // The watch reconnects with the new password and a new endpoint is served.
    add_endpoint(
        &slapd,
        "after-rotation",
        "afterrotation",
        &slapd.pool_dn("1:2"),
    );
    let served = time_until_status(&d, "afterrotation", 200, Duration::from_secs(10));
    assert!(
        served.is_some(),
        "not served after the rotation; log:\n{}",
        d.log_text()
    );
    // The cron reached both workers: scheduled runs tick every second, refreshes succeed.
    d.wait_until("cron-triggered runs", Duration::from_secs(10), || {
        d.health()["last_run"]["trigger"] == "cron"
    });
    let refreshes = d.health()["table"]["refresh_ok"].as_u64().unwrap();
    d.wait_until("cron-triggered refreshes", Duration::from_secs(10), || {
        d.health()["table"]["refresh_ok"].as_u64().unwrap() >= refreshes + 2
    });
    let h = d.health();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["table"]["refresh_failed"], 0, "{h}");
    assert!(!d.log_text().contains("LDAP 49"), "{}", d.log_text());
}

// See: #17 (reload). Listener addresses move on SIGHUP: the new ones are bound before the old
// ones close; a bind that fails leaves the old socket serving, logged and shown in /healthz.
#[test]
fn sighup_moves_the_listeners_and_a_failed_bind_keeps_the_old_one_serving() {
    use crate::common::daemon::{Options, set_listeners};
    use crate::common::slapd::free_ports;
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let config = config_copy(work.path());
    let options = Options {
        listeners_in_file: true,
        ..Options::default()
    };
    let mut d = Daemon::spawn_with(
        &slapd,
        work.path(),
        &[("PCSYNC_CONFIG", config.to_str().unwrap())],
        &options,
    );
    d.wait_until("serving", Duration::from_secs(30), || {
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")) == Some(200)
    });
    let (old_sip, old_http) = (d.sip, d.http);

    // Move everything to new ports.
    let [udp, tcp, http] = free_ports::<3>();
    let at = |p: u16| -> std::net::SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    set_listeners(&config, at(udp), at(tcp), at(http));
    d.signal("HUP");
    d.sip = at(udp);
    d.http = at(http);
    d.wait_until("the new listeners answer", Duration::from_secs(10), || {
        options_status(at(udp), &format!("sip:{FIXTURE_USER}@contoso.com")) == Some(200)
            && tcp_options_status(at(tcp), FIXTURE_USER) == Some(200)
            && d.try_get("/healthz").is_some()
    });
    d.wait_until("the old ones are closed", Duration::from_secs(10), || {
        options_status(old_sip, &format!("sip:{FIXTURE_USER}@contoso.com")).is_none()
            && std::net::TcpStream::connect_timeout(&old_sip, Duration::from_secs(1)).is_err()
            && std::net::TcpStream::connect_timeout(&old_http, Duration::from_secs(1)).is_err()
    });

    // A port someone else holds: the bind fails, the listener keeps serving where it was.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    set_listeners(&config, at(udp), taken, at(http));
    d.signal("HUP");
    d.wait_until(
        "the failed bind is reported",
        Duration::from_secs(10),
        || {
            let h = d.health();
            h["status"] == "degraded" && h["workers"]["sip-tcp"]["last_attempt"] == "failed"
        },
    );
    let h = d.health();
    let error = h["workers"]["sip-tcp"]["error"].as_str().unwrap();
    assert!(
        error.contains(&taken.to_string())
            && error.contains(&format!("still serving on {}", at(tcp))),
        "{error}"
    );
    assert_eq!(tcp_options_status(at(tcp), FIXTURE_USER), Some(200));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
}

// See: #17 (2). A worker that panics is logged with its name and the panic message, /healthz
// answers 503 `degraded` naming it, the writer lease is given up at once (the standby takes
// over long before the lease would have expired), and the worker is restarted. The panic is a
// failpoint in the worker, so the test does not depend on any particular bug.
#[test]
fn a_panicking_worker_is_named_shown_degraded_gives_the_lease_up_and_restarts() {
    crate::common::needs_failpoints();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let lease_dn = format!("cn=pcsync-lease,{}", slapd.endpoint_container());
    // A lease far longer than the test: only a release lets the standby take over in time.
    let lease = Duration::from_secs(60);
    let env = |id: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("PCSYNC__DAEMON__LEASE_DN", lease_dn.clone()),
            ("PCSYNC__DAEMON__LEASE_DURATION", "60s".to_string()),
            ("PCSYNC__DAEMON__LEASE_RENEW", "1s".to_string()),
            ("PCSYNC__DAEMON__INSTANCE_ID", id.to_string()),
        ]
    };
    let mut a_env = env("instance-a");
    // a's scheduled-run worker panics on its fourth run, once; its restart waits 3 s, long
    // enough to see it degraded.
    a_env.push((
        "FAILPOINTS",
        "panic-in-scheduled-runs=3*off->1*return".to_string(),
    ));
    a_env.push(("PCSYNC__DAEMON__RECONNECT_MIN", "3s".to_string()));
    a_env.push(("PCSYNC__DAEMON__RECONNECT_MAX", "3s".to_string()));
    let a = Daemon::start(&slapd, &work.path().join("a"), &refs(&a_env));
    a.wait_until(
        "instance-a holds the lease",
        Duration::from_secs(20),
        || a.health()["lease"]["writer"] == true,
    );
    let b_env = env("instance-b");
    let b = Daemon::start(&slapd, &work.path().join("b"), &refs(&b_env));
    b.wait_until(
        "instance-b sees the holder",
        Duration::from_secs(20),
        || b.health()["lease"]["holder"] == "instance-a",
    );

    a.wait_until("the worker dies", Duration::from_secs(20), || {
        a.log_text()
            .contains("worker scheduled-runs panicked: failpoint panic-in-scheduled-runs")
    });
    let died = Instant::now();
    let h = a.health();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["degraded"], serde_json::json!(["scheduled-runs"]), "{h}");
    assert_eq!(h["workers"]["scheduled-runs"]["state"], "restarting", "{h}");
    assert_eq!(h["lease"]["writer"], false, "{h}");
    b.wait_until(
        "instance-b takes over at once",
        Duration::from_secs(10),
        || b.health()["lease"]["writer"] == true,
    );
    assert!(
        died.elapsed() < lease / 2,
        "takeover took {:?}",
        died.elapsed()
    );
    // a comes back whole, as the standby.
    a.wait_until("the worker restarted", Duration::from_secs(20), || {
        let h = a.health();
        h["status"] == "ok" && h["workers"]["scheduled-runs"]["restarts"] == 1
    });
    a.wait_until("a runs as standby", Duration::from_secs(10), || {
        a.health()["last_run"]["outcome"] == "standby"
    });
}

// See: #17 (supervision). A worker that keeps dying: after [daemon] max_restarts deaths within
// restart_window the process stops and exits 1, so the service manager starts a fresh one.
#[test]
fn a_worker_that_keeps_dying_ends_the_process_with_exit_1() {
    crate::common::needs_failpoints();
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::spawn(
        &slapd,
        work.path(),
        &[
            ("FAILPOINTS", "panic-in-refresh=return"),
            ("PCSYNC__DAEMON__MAX_RESTARTS", "2"),
        ],
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = d.try_wait() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "log:\n{}", d.log_text());
    let log = d.log_text();
    assert_eq!(
        log.matches("worker refresh panicked: failpoint panic-in-refresh")
            .count(),
        3,
        "{log}"
    );
    assert!(log.contains("worker refresh died 3 times within"), "{log}");
    assert!(log.contains("max_restarts = 2"), "{log}");
}

// See: #17 (3). A silent partition: the watch's connection is frozen (no packets, no close)
// while new connections still work. The watch hears nothing for watch_timeout, is replaced, and
// a change made during the partition is served within 2 × watch_timeout. /healthz shows when
// the watch last heard from the directory.
#[test]
fn a_frozen_watch_connection_is_replaced_within_the_watch_timeout() {
    use crate::common::proxy::Proxy;
    let slapd = Slapd::start();
    let upstream = slapd
        .ldap_url
        .trim_start_matches("ldap://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream);
    let work = tempfile::tempdir().unwrap();
    let watch_timeout = Duration::from_secs(2);
    let url = proxy.ldap_url();
    let mut env = SYNCREPL_ONLY.to_vec();
    env.push(("PCSYNC__DIRECTORY__URL", url.as_str()));
    env.push(("PCSYNC__DAEMON__WATCH_TIMEOUT", "2s"));
    let d = Daemon::start(&slapd, work.path(), &env);
    d.wait_until(
        "the syncrepl watch connects",
        Duration::from_secs(30),
        || {
            let h = d.health();
            h["watch"]["state"] == "connected" && h["watch"]["last_message_at"].is_string()
        },
    );
    assert!(time_until_status(&d, FIXTURE_USER, 200, Duration::from_secs(10)).is_some());
    // Heartbeats keep the silent persist phase heard from.
    let first = d.health()["watch"]["last_message_at"].clone();
    d.wait_until("a heartbeat is answered", watch_timeout * 2, || {
        d.health()["watch"]["last_message_at"] != first
    });

    // Count replacements from here: under load one may already have happened before the
    // freeze (a heartbeat answered late), and that one proves nothing about the freeze.
    let replacing = "(watch_timeout): replacing the connection";
    let before = d.log_text().matches(replacing).count();
    assert!(proxy.freeze_open_connections() >= 1);
    let frozen = Instant::now();
    add_endpoint(&slapd, "partitioned", "partitioned", &slapd.pool_dn("1:2"));
    d.wait_until(
        "the frozen watch connection is replaced",
        watch_timeout * 3,
        || d.log_text().matches(replacing).count() > before,
    );
    let replaced = frozen.elapsed();
    let served = time_until_status(&d, "partitioned", 200, Duration::from_secs(10));
    assert!(
        served.is_some(),
        "replaced after {replaced:?}, not served since; log:\n{}",
        d.log_text()
    );
    d.wait_until(
        "the watch is connected again",
        Duration::from_secs(10),
        || d.health()["watch"]["state"] == "connected",
    );
}

// See: #17 (4). 1,000 idle, half-sent HTTP requests against a process limited to 256 open files:
// /healthz, SIP over UDP and TCP, and scheduled runs keep working.
#[test]
fn a_thousand_half_open_http_connections_stop_neither_health_nor_sip() {
    use crate::common::daemon::Options;
    use std::io::Write;
    raise_own_open_file_limit(2048);
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let options = Options {
        open_files: Some(256),
        ..Options::default()
    };
    let d = Daemon::spawn_with(&slapd, work.path(), &[], &options);
    d.wait_until("/healthz answers", Duration::from_secs(30), || {
        d.try_get("/healthz").is_some()
    });
    // A connection the kernel cannot even queue any more (a process out of descriptors stops
    // accepting) is given up quickly, and the whole flood is bounded in time.
    let mut idle = Vec::new();
    let flood = Instant::now();
    while idle.len() < 1000 && flood.elapsed() < Duration::from_secs(30) {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&d.http, Duration::from_millis(200))
        else {
            continue;
        };
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n");
        idle.push(s);
    }
    assert_eq!(
        idle.len(),
        1000,
        "connections stopped being accepted after {} (the listener no longer accepts, so the \
         backlog filled); log:\n{}",
        idle.len(),
        d.log_text()
    );
    let runs = d.log_text().matches("scheduled run finished").count();
    d.wait_until("/healthz still answers", Duration::from_secs(5), || {
        d.try_get("/healthz").is_some()
    });
    assert_eq!(
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200)
    );
    assert_eq!(tcp_options_status(d.sip, FIXTURE_USER), Some(200));
    d.wait_until("scheduled runs go on", Duration::from_secs(10), || {
        d.log_text().matches("scheduled run finished").count() > runs + 1
    });
    let log = d.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
}

/// Raises this test process's soft open-file limit to at least `n` (up to the hard limit).
fn raise_own_open_file_limit(n: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < n) {
        let want = limit.maximum.map_or(n, |m| m.min(n));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        );
    }
}

// See: #17 (5). With auto_apply and changes pending, a scheduled run scans the directory once:
// the plan it computed is the one applied, not computed again inside the apply. Counted by the
// proxy in what slapd sends: a SIP user outside the endpoint container (so neither the table
// refresh nor the watch reads it) carries a marker that only a scan of the users returns.
#[test]
fn a_scheduled_run_with_pending_changes_scans_the_directory_once() {
    use crate::common::proxy::Proxy;
    let slapd = Slapd::start();
    let upstream = slapd
        .ldap_url
        .trim_start_matches("ldap://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream);
    slapd.add(
        "dn: CN=Scan Counter,OU=Users,DC=contoso,DC=com\nobjectClass: top\nobjectClass: person\n\
         objectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: pcsyncRtcUser\n\
         cn: Scan Counter\nsn: Counter\n\
         msRTCSIP-PrimaryUserAddress: sip:scanmarker7q@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n",
    );
    // The same bytes in and out: the proxy only counts them.
    proxy.rewrite(b"scanmarker7q", b"scanmarker7q");
    let work = tempfile::tempdir().unwrap();
    let url = proxy.ldap_url();
    // The start-up run only: the cron's next tick is on the 1st of January.
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__DIRECTORY__URL", &url),
            ("PCSYNC__SAFETY__AUTO_APPLY", "true"),
            ("PCSYNC__SCHEDULE__CRON", "0 0 0 1 1 *"),
        ],
    );
    d.wait_until("the start-up run applied", Duration::from_secs(60), || {
        let h = d.health();
        h["last_run"]["outcome"] == "applied" || h["last_run"]["outcome"] == "failed"
    });
    let h = d.health();
    assert_eq!(
        h["last_run"]["outcome"],
        "applied",
        "{h}\nlog:\n{}",
        d.log_text()
    );
    assert_eq!(
        proxy.rewritten(),
        1,
        "scans of the directory in one scheduled run; log:\n{}",
        d.log_text()
    );
}

// See: #17 (6). A DN holding a raw newline (planted by the proxy in what slapd sends) must not
// forge a line in a text log: the finding that names it writes the newline as \0A.
#[test]
fn a_dn_with_a_raw_newline_cannot_forge_a_text_log_line() {
    use crate::common::daemon::Options;
    use crate::common::proxy::Proxy;
    let slapd = Slapd::start();
    let upstream = slapd
        .ldap_url
        .trim_start_matches("ldap://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream);
    // Homed on a pool pcsync does not know: a finding that names the DN.
    let unknown_pool = slapd.pool_dn("1:9");
    add_endpoint(&slapd, "injectQQQFORGED LINE", "injected", &unknown_pool);
    proxy.rewrite(b"injectQQQ", b"inject\n  ");
    let work = tempfile::tempdir().unwrap();
    let url = proxy.ldap_url();
    let options = Options {
        text_log: true,
        ..Options::default()
    };
    let d = Daemon::spawn_with(
        &slapd,
        work.path(),
        &[("PCSYNC__DIRECTORY__URL", &url)],
        &options,
    );
    d.wait_until("the finding is logged", Duration::from_secs(30), || {
        d.log_text().contains("FORGED LINE")
    });
    assert!(proxy.rewritten() > 0);
    let log = d.log_text();
    for line in log.lines().filter(|l| l.contains("FORGED LINE")) {
        assert!(
            line.contains("inject\\0A  FORGED LINE"),
            "forged: {line:?}\nlog:\n{log}"
        );
    }
}

// See: #17 (2), the ldap3 panic. A DN that is not UTF-8 (one byte rewritten by the proxy) is a
// finding with its bytes shown escaped, not a dead worker: the table keeps the other endpoints
// and /healthz stays ok.
#[test]
fn a_non_utf8_dn_from_the_server_is_a_finding_not_a_dead_worker() {
    use crate::common::proxy::Proxy;
    let slapd = Slapd::start();
    let upstream = slapd
        .ldap_url
        .trim_start_matches("ldap://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream);
    add_endpoint(&slapd, "badbytesZZ", "badbytes", &slapd.pool_dn("1:2"));
    proxy.rewrite(b"badbytesZZ", b"badbytes\xff\xfe");
    let work = tempfile::tempdir().unwrap();
    let url = proxy.ldap_url();
    let d = Daemon::start(&slapd, work.path(), &[("PCSYNC__DIRECTORY__URL", &url)]);
    d.wait_until("a few refreshes", Duration::from_secs(30), || {
        d.health()["table"]["refresh_ok"].as_u64().unwrap_or(0) >= 3
    });
    assert!(proxy.rewritten() > 0);
    let h = d.health();
    assert_eq!(h["status"], "ok", "{h}");
    let log = d.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("malformed_value") && log.contains("badbytes\\\\FF\\\\FE"),
        "{log}"
    );
    assert_eq!(
        options_status(d.sip, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200)
    );
}
