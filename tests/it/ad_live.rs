//! The mapping table, the redirector and the daemon on the shared Samba AD DC, with the shipped
//! `config/active-directory.toml` changed only in URL, CA and credentials (`common::Backend`
//! for `SambaDc`); the state dir, audit log and listening ports move into the test's temp dir
//! and onto free loopback ports. The daemon keeps the shipped schedule (every 15 minutes) and
//! the default `daemon.poll_interval` (2 s), so only its live watch can bring a change within
//! seconds. Every test puts the seed back when it starts and when it ends ([`Seed`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ad_reconcile::config_with;
use crate::common::daemon::Daemon;
use crate::common::redirect::{Redirector, options_status, sipp_to};
use crate::common::samba::{self, ENDPOINT_CONTAINER_DN, SambaDc, Seed, WELL_KNOWN_USERS};
use crate::common::slapd::POLL_INTERVAL;
use crate::common::{output, pcsync_on, pcsync_on_config};

/// The bound issue #9 sets for a change on AD to reach the redirector.
const CHANGE_BOUND: Duration = Duration::from_secs(5);
/// The pool of config/active-directory.toml (`CN=1:2` in the seed).
const POOL: &str = "pcpool.contoso.com";

fn contact_of(message: &str) -> Option<&str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Contact: "))
        .map(str::trim)
}

fn json(cmd: &mut assert_cmd::Command) -> (Option<i32>, serde_json::Value, String) {
    let assert = cmd.assert();
    let (out, err) = output(&assert);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (assert.get_output().status.code(), doc, err)
}

/// (kind, dn, reason) of each finding in a JSON report.
fn findings(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("dn"), s("reason"))
        })
        .collect()
}

/// (a) Both well-known users migrated, then `pcsync mappings` and `pcsync redirect` serve the
/// table built from AD: 302 with the pool's Contact for each migrated URI in both SIP domains,
/// over UDP and TCP (sipp); 404 for the look-alike decoys, plain SIP users and a non-SIP value.
#[test]
fn ad_mappings_and_redirector_serve_both_sip_domains() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The shipped file migrates contoso.com; the fabrikam.com well-known user needs a second
    // migration to the same (only) pool.
    let config = config_with(
        w,
        "[[migrations]]\nwell_known_uri = \"sip:ocschat@fabrikam.com\"\n\
         target_pool = \"pcpool.contoso.com\"\n",
    );
    let assert = pcsync_on_config(&*dc, w, &config)
        .args(["reconcile", "--apply"])
        .assert();
    let (out, err) = output(&assert);
    assert_eq!(assert.get_output().status.code(), Some(0), "{out}{err}");
    assert!(out.contains("applied 2 of 2 swap(s); 0 failed"), "{out}");
    for user in WELL_KNOWN_USERS {
        assert!(!dc.exists(user), "{user} retired");
    }

    let (code, table, err) =
        json(pcsync_on_config(&*dc, w, &config).args(["mappings", "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(table["source"], "directory");
    let mut mapped: Vec<(String, String)> = table["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let dn = e["dn"].as_str().unwrap();
            assert!(
                dn.ends_with(ENDPOINT_CONTAINER_DN),
                "AD's canonical DN: {dn}"
            );
            (
                e["sip_uri"].as_str().unwrap().to_owned(),
                e["pool"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    mapped.sort();
    assert_eq!(
        mapped,
        [
            ("sip:ocschat@contoso.com".to_owned(), POOL.to_owned()),
            ("sip:ocschat@fabrikam.com".to_owned(), POOL.to_owned()),
            ("sip:persistentchat@contoso.com".to_owned(), POOL.to_owned()),
        ],
        "{table}"
    );

    let server = Redirector::spawn(&*dc, w, &[("PCSYNC_CONFIG", config.to_str().unwrap())]);
    server.wait_for("ocschat", 200, Duration::from_secs(30));
    for (user, domain) in [
        ("ocschat", "contoso.com"),
        ("ocschat", "fabrikam.com"),
        ("persistentchat", "contoso.com"),
    ] {
        for transport in ["u1", "t1"] {
            let run = sipp_to("invite_302.xml", server.addr, transport, user, domain, w);
            run.assert_ok();
            let got = run.received("SIP/2.0 302 Moved Temporarily");
            assert_eq!(got.len(), 1, "{user}@{domain}: {}", run.messages);
            let want = format!("<sip:{user}@{POOL}:5061;transport=tls>");
            assert_eq!(contact_of(&got[0]), Some(want.as_str()), "{}", got[0]);
        }
    }
    for (user, domain, why) in [
        (
            "ocschat",
            "adatum.com",
            "a decoy well-known user, not migrated",
        ),
        ("ocschat.fan", "contoso.com", "a decoy user"),
        ("alice", "contoso.com", "a SIP user, not an endpoint"),
        ("mallory", "contoso.com", "a value without sip:"),
        ("nobody", "fabrikam.com", "nothing at all"),
    ] {
        let run = sipp_to("invite_404.xml", server.addr, "u1", user, domain, w);
        run.assert_ok();
        assert_eq!(
            run.received("SIP/2.0 404 Not Found").len(),
            1,
            "{user}@{domain} ({why}): {}",
            run.messages
        );
    }
}

/// Waits (bounded by [`CHANGE_BOUND`]) until an OPTIONS to `uri` answers `code`; the time taken
/// since `since`.
fn within_bound(d: &Daemon, sip: SocketAddr, uri: &str, code: u16, since: Instant) -> Duration {
    let deadline = since + CHANGE_BOUND;
    let mut last = None;
    while Instant::now() < deadline {
        last = options_status(sip, uri);
        if last == Some(code) {
            return since.elapsed();
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    panic!(
        "{uri} did not answer {code} within {CHANGE_BOUND:?} (last: {last:?}); log:\n{}",
        crate::common::slapd::log_tail(&d.log, 40)
    );
}

fn watch_triggers(d: &Daemon) -> u64 {
    d.health()["watch"]["triggers"].as_u64().unwrap()
}

/// Waits until the watch has asked for a refresh since `before` triggers, at most
/// [`CHANGE_BOUND`] after the change made at `since`: the change went through the AD
/// change-tracking path. (The redirector may have served it a moment earlier through a refresh
/// already queued.)
fn saw(d: &Daemon, before: u64, since: Instant, what: &str) {
    d.wait_until(
        &format!("{what}: the watch asks for a refresh"),
        CHANGE_BOUND.saturating_sub(since.elapsed()),
        || watch_triggers(d) > before,
    );
}

/// (b) `pcsync run` with the shipped AD configuration: the live watch is uSNChanged polling
/// (the service account has no DirSync right), `/healthz` and `/metrics` say so, and an endpoint
/// added, re-homed (off the configured pool and back) and deleted reaches the redirector within
/// 5 s each, through the watch (its trigger count rises; the schedule is 15 minutes away).
#[test]
fn ad_daemon_sees_add_rehome_and_delete_through_usn_polling_within_5s() {
    let dc = samba::samba();
    watched_changes(&dc, &[], "usn-polling");
}

/// The same where the account has "Replicating Directory Changes" (here the administrator):
/// the watch is DirSync, and the deletion arrives as a tombstone.
#[test]
fn ad_daemon_sees_add_rehome_and_delete_through_dirsync_within_5s() {
    let dc = samba::samba();
    let password_file = dc.admin_password_file.display().to_string();
    watched_changes(
        &dc,
        &[
            ("PCSYNC__DIRECTORY__BIND_DN", dc.admin_dn.as_str()),
            ("PCSYNC__DIRECTORY__BIND_PASSWORD_FILE", &password_file),
        ],
        "dirsync",
    );
}

/// See: #20. The uSNChanged watch names the DC database its marks come from by the
/// `invocationId` of the DC's nTDSDSA object (read here with ldapsearch: the root DSE's
/// `dsServiceName`, then that object's `invocationId`), which a restore from backup changes,
/// and not by the nTDSDSA object's DN, which it keeps.
#[test]
fn ad_usn_watch_keys_its_mark_on_the_dcs_invocation_id() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let root = dc.search_entries_scoped("", "base", "(objectClass=*)", &["dsServiceName"]);
    let dsa = root[0].text("dsServiceName");
    let dsa_entry = dc.search_entries_scoped(&dsa, "base", "(objectClass=*)", &["invocationId"]);
    let invocation_id = samba::guid_to_string(&dsa_entry[0].binary("invocationId"));
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(&*dc, work.path(), &[]);
    let baseline = || {
        d.log_text()
            .lines()
            .find(|l| l.contains("uSNChanged watch: baseline"))
            .map(str::to_owned)
    };
    d.wait_until(
        "the usn-polling watch's baseline",
        Duration::from_secs(30),
        || baseline().is_some(),
    );
    let line = baseline().unwrap();
    assert!(
        line.contains(&format!("\"database\":\"{invocation_id}\"")),
        "the mark names {invocation_id} ({dsa}): {line}"
    );
    assert!(!line.contains("NTDS Settings"), "{line}");
}

/// Starts `pcsync run` (extra overrides `env`), checks that the watch runs `mode` at the
/// default interval, and brings an endpoint through add, re-home away and back, and delete,
/// each within [`CHANGE_BOUND`] and each seen by the watch.
fn watched_changes(dc: &SambaDc, env: &[(&str, &str)], mode: &str) {
    let endpoint = format!("CN={{5e1d2c3b-0a9f-4e8d-b7c6-a5b4c3d2e1f0}},{ENDPOINT_CONTAINER_DN}");
    let _seed = Seed::reset(dc, &[&endpoint]);
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(dc, work.path(), env);
    d.wait_until(
        &format!("the {mode} watch connects"),
        Duration::from_secs(30),
        || {
            let h = d.health();
            h["watch"]["mode"] == mode && h["watch"]["state"] == "connected"
        },
    );
    let health = d.health();
    assert_eq!(
        health["watch"]["interval_ms"], 2000,
        "the default: {health}"
    );
    let metrics = d.metrics();
    assert!(
        metrics.contains(&format!("pcsync_watch_mode{{mode=\"{mode}\"}} 1")),
        "{metrics}"
    );
    d.wait_until(
        "the seed's endpoint is served",
        Duration::from_secs(30),
        || options_status(d.sip, "sip:persistentchat@contoso.com") == Some(200),
    );
    let triggers = || watch_triggers(&d);
    // The baseline (it refreshes too) is behind us before anything changes.
    d.wait_until("the watch's baseline", Duration::from_secs(30), || {
        triggers() >= 1
    });
    let uri = "sip:watchroom@contoso.com";
    assert_eq!(options_status(d.sip, uri), Some(404));
    let mut timings = Vec::new();

    // Added, on the configured pool.
    let before = triggers();
    let t = Instant::now();
    dc.add(&format!(
        "dn: {endpoint}\nobjectClass: contact\ndisplayName: watched endpoint\n\
         msRTCSIP-PrimaryUserAddress: {uri}\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {}\nmsRTCSIP-OwnerUrn: urn:application:persistentchat\n",
        dc.pool_dn("1:2")
    ));
    timings.push(("added", within_bound(&d, d.sip, uri, 200, t)));
    saw(&d, before, t, "added");

    // Re-homed on a pool the configuration does not name: no longer served.
    for (site, code, what) in [("1:3", 404, "re-homed away"), ("1:2", 200, "re-homed back")] {
        let before = triggers();
        let t = Instant::now();
        dc.modify(&format!(
            "dn: {endpoint}\nchangetype: modify\nreplace: msRTCSIP-PrimaryHomeServer\n\
             msRTCSIP-PrimaryHomeServer: {}\n-\n",
            dc.pool_dn(site)
        ));
        timings.push((what, within_bound(&d, d.sip, uri, code, t)));
        saw(&d, before, t, what);
    }
    let assert = crate::common::pcsync_bare(work.path())
        .args(["probe", uri, "--server"])
        .arg(d.sip.to_string())
        .assert();
    let (stdout, _) = output(&assert);
    assert_eq!(
        stdout,
        format!(
            "SIP/2.0 302 Moved Temporarily\nContact: <sip:watchroom@{POOL}:5061;transport=tls>\n"
        )
    );

    // Deleted: a tombstone the service account cannot see; the listing loses the DN.
    let before = triggers();
    let t = Instant::now();
    dc.delete(&endpoint);
    timings.push(("deleted", within_bound(&d, d.sip, uri, 404, t)));
    saw(&d, before, t, "deleted");
    // uSNChanged: the DN left the listing; DirSync: a tombstone (CN=…\0ADEL:<guid>) came back.
    let deletion = if mode == "usn-polling" {
        "\"removed\":1"
    } else {
        "0ADEL:"
    };
    assert!(
        d.log_text().contains(deletion)
            && (mode == "usn-polling" || d.log_text().contains(",CN=Deleted Objects,")),
        "the watch saw the deletion: {}",
        d.log_text()
    );
    assert_eq!(d.health()["watch"]["mode"], mode, "still the AD watch");
    eprintln!(
        "AD live watch ({mode}, poll_interval 2s), change -> redirector: {}",
        timings
            .iter()
            .map(|(what, t)| format!("{what} {:.2}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// (c) Malformed msRTCSIP values stored in AD are findings naming their DN in inventory,
/// mappings and reconcile (each still exits normally), and never block what is valid.
#[test]
fn ad_malformed_values_are_findings_with_their_dn() {
    let dc = samba::samba();
    let bad: [(String, &str, &str); 5] = [
        (
            format!("CN=Bad Endpoint Scheme,{ENDPOINT_CONTAINER_DN}"),
            "contact",
            "sips:room1@contoso.com",
        ),
        (
            format!("CN=Bad Endpoint User,{ENDPOINT_CONTAINER_DN}"),
            "contact",
            "sip:@contoso.com",
        ),
        (
            format!("CN=Bad Endpoint Space,{ENDPOINT_CONTAINER_DN}"),
            "contact",
            "sip:room 3@contoso.com",
        ),
        (
            "CN=Bad Tel,OU=People,DC=contoso,DC=com".to_owned(),
            "user",
            "tel:+14255550199",
        ),
        (
            "CN=Bad Two At,OU=People,DC=contoso,DC=com".to_owned(),
            "user",
            "sip:a@b@contoso.com",
        ),
    ];
    let extra: Vec<&str> = bad.iter().map(|(dn, _, _)| dn.as_str()).collect();
    let _seed = Seed::reset(&dc, &extra);
    for (dn, class, value) in &bad {
        dc.add(&format!(
            "dn: {dn}\nobjectClass: {class}\nmsRTCSIP-PrimaryUserAddress: {value}\n\
             msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: {}\n",
            dc.pool_dn("1:2")
        ));
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let assert_named = |doc: &serde_json::Value, dns: &[&str], what: &str| {
        let found = findings(doc);
        for dn in dns {
            let hit = found
                .iter()
                .find(|(_, d, _)| d.eq_ignore_ascii_case(dn))
                .unwrap_or_else(|| panic!("{what}: no finding for {dn}: {found:?}"));
            assert_eq!(hit.0, "malformed_value", "{what}: {hit:?}");
            assert!(
                hit.2.starts_with("msRTCSIP-PrimaryUserAddress: "),
                "{what}: {hit:?}"
            );
        }
    };
    let mallory = "CN=Mallory Malformed,OU=People,DC=contoso,DC=com";
    let mut all: Vec<&str> = extra.clone();
    all.push(mallory);

    let (code, inv, err) = json(pcsync_on(&*dc, w).args(["inventory", "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    assert_named(&inv, &all, "inventory");
    let reason = |dn: &str| {
        findings(&inv)
            .into_iter()
            .find(|(_, d, _)| d.eq_ignore_ascii_case(dn))
            .map(|f| f.2)
            .unwrap()
    };
    assert_eq!(
        reason(extra[0]),
        "msRTCSIP-PrimaryUserAddress: missing `sip:` scheme in \"sips:room1@contoso.com\""
    );
    for (dn, _, value) in &bad {
        assert!(
            reason(dn).ends_with(&format!(" in {value:?}")),
            "the reason quotes the value: {}",
            reason(dn)
        );
    }

    // mappings: the valid endpoint is still served; the three bad endpoints are findings. The
    // `sips:` one still holds its address for Lync (one normalisation everywhere, #19), so it
    // is served as sip:room1@contoso.com as well as named.
    let (code, table, err) = json(pcsync_on(&*dc, w).args(["mappings", "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let entries = table["entries"].as_array().unwrap();
    let served: Vec<_> = entries
        .iter()
        .map(|e| e["sip_uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        served,
        ["sip:persistentchat@contoso.com", "sip:room1@contoso.com"],
        "{table}"
    );
    assert_named(&table, &extra[..3], "mappings");

    // reconcile: the swap is still planned (exit 2); every bad value is reported.
    let (code, plan, err) = json(pcsync_on(&*dc, w).args(["reconcile", "--format", "json"]));
    assert_eq!(code, Some(2), "{plan}{err}");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 2, "{plan}");
    assert_named(&plan, &all, "reconcile");
}
