//! pcsync against two replicating Samba AD DCs with a KDC (`common::samba_pair`): DC1, the PDC
//! emulator, on 127.0.0.2 and DC2 on 127.0.0.3. Every test takes the pair's lock, so they run one
//! at a time; each puts the seed back on both DCs when it ends.

use std::time::{Duration, Instant};

use crate::common::daemon::Daemon;
use crate::common::redirect::options_status;
use crate::common::samba::{ENDPOINT_CONTAINER_DN, SambaDc};
use crate::common::samba_pair::{
    self, Auth, DC1_FQDN, DC2_FQDN, PairAgent, REPLICATION_TIMEOUT, SERVICE_PRINCIPAL, ldaps,
    pair_seed, wait_until,
};
use crate::common::slapd::log_tail;
use crate::common::{Backend, output, pcsync_on};

/// The fixture itself: an object added on either DC reaches the other, with the same objectGUID.
#[test]
fn the_two_dcs_replicate_both_ways() {
    let pair = samba_pair::samba_pair();
    let names = [
        "CN=Replicated From DC1,CN=Users,DC=contoso,DC=com",
        "CN=Replicated From DC2,CN=Users,DC=contoso,DC=com",
    ];
    for (dn, from, to) in [
        (names[0], &pair.dc1, &pair.dc2),
        (names[1], &pair.dc2, &pair.dc1),
    ] {
        from.add(&format!("dn: {dn}\nobjectClass: contact\n"));
        let began = Instant::now();
        wait_until(
            REPLICATION_TIMEOUT,
            &format!("{dn} on the other DC"),
            || to.exists(dn),
        );
        eprintln!("{dn}: replicated in {:.1}s", began.elapsed().as_secs_f64());
        let guid = |dc: &SambaDc| {
            dc.search_entries(dn, "(objectClass=*)", &["objectGUID"])[0].binary("objectGUID")
        };
        assert_eq!(guid(from), guid(to), "{dn}: one object on both DCs");
    }
    pair.restore_seed(&names);
    for dc in pair.dcs() {
        for dn in names {
            assert!(!dc.exists(dn), "{dn} still on {}", dc.ldaps_url);
        }
    }
}

/// The detail of the line of check `name` (`ok` or `FAIL`), or a panic showing the report.
fn check_line<'a>(stdout: &'a str, name: &str) -> (bool, &'a str) {
    stdout
        .lines()
        .find_map(|l| {
            let (status, rest) = l.split_once(' ')?;
            let detail = rest.trim_start().strip_prefix(name)?;
            detail
                .starts_with(' ')
                .then(|| (status == "ok", detail.trim()))
        })
        .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
}

/// `pcsync check` binds with Kerberos from svc-pcsync's keytab, with no password anywhere in
/// its configuration: inside TLS (channel binding) and sealed over plain LDAP; it names the
/// write server (the PDC emulator, although the URLs list DC2 first) and both DCs.
#[test]
fn check_binds_with_a_keytab_and_names_the_write_server_and_the_dcs() {
    let pair = samba_pair::samba_pair();
    let work = tempfile::tempdir().unwrap();
    for (urls, how) in [
        (
            [ldaps(DC2_FQDN), ldaps(DC1_FQDN)],
            "with Kerberos (SASL GSSAPI) inside TLS, with tls-server-end-point channel binding",
        ),
        (
            [
                format!("ldap://{DC2_FQDN}:389"),
                format!("ldap://{DC1_FQDN}:389"),
            ],
            "with Kerberos (SASL GSSAPI) over plain LDAP, the session sealed by Kerberos",
        ),
    ] {
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let agent = PairAgent::new(&pair, &urls, Auth::Kerberos);
        let config = std::fs::read_to_string(agent.config()).unwrap();
        let keys = config.lines().filter(|l| !l.trim_start().starts_with('#'));
        assert!(
            !keys
                .clone()
                .any(|l| l.contains("bind_dn") || l.contains("password")),
            "{config}"
        );
        let assert = pcsync_on(&agent, work.path()).arg("check").assert();
        let (stdout, stderr) = output(&assert);
        assert.code(0);
        assert!(
            stdout.lines().all(|l| l.starts_with("ok ")),
            "{stdout}\n{stderr}"
        );
        assert_eq!(
            check_line(&stdout, "connect"),
            (
                true,
                format!("{} bound as {SERVICE_PRINCIPAL} {how}", urls[0]).as_str()
            )
        );
        assert_eq!(
            check_line(&stdout, "write"),
            (true, "dc1.contoso.com (PDC emulator, from fSMORoleOwner)")
        );
        assert_eq!(
            check_line(&stdout, "dcs"),
            (true, "dc1.contoso.com up, dc2.contoso.com up")
        );
    }
    // The service principal is ldap/<name>: an address cannot work, and says so at once.
    let agent = PairAgent::new(&pair, &["ldaps://127.0.0.3:636"], Auth::Kerberos);
    let assert = pcsync_on(&agent, work.path()).arg("check").assert();
    let (stdout, _) = output(&assert);
    assert.code(1);
    assert_eq!(
        check_line(&stdout, "config"),
        (
            false,
            "environment variable PCSYNC__DIRECTORY__URL: directory.url: \
             ldaps://127.0.0.3:636: Kerberos needs the server's DNS name, not an IP address (its \
             service principal is ldap/<DNS name>); name the DC, e.g. ldaps://dc1.contoso.com:636"
        )
    );
}

/// The well-known user config/active-directory.toml migrates.
const OCSCHAT: &str = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";

/// DNs of the contacts in Application Contacts holding `uri`, on `dc`.
fn endpoints(dc: &SambaDc, uri: &str) -> Vec<String> {
    dc.search_entries(
        ENDPOINT_CONTAINER_DN,
        &format!("(msRTCSIP-PrimaryUserAddress={uri})"),
        &["1.1"],
    )
    .iter()
    .map(|e| e.text("dn"))
    .collect()
}

/// `reconcile --apply` with DC2 listed first still writes on DC1, the PDC emulator: every
/// attribute of the new endpoint, as DC2 holds it, was originated by DC1's database
/// (replPropertyMetaData). With --wait-replication the run ends only once both DCs hold the
/// swap, and says so in its output and its audit record.
#[test]
fn an_apply_writes_on_the_pdc_listed_second_and_reports_both_dcs_holding_it() {
    let pair = samba_pair::samba_pair();
    let _seed = pair_seed(&pair, &[]);
    let work = tempfile::tempdir().unwrap();
    let agent = PairAgent::new(&pair, &[&ldaps(DC2_FQDN), &ldaps(DC1_FQDN)], Auth::Simple);
    let assert = pcsync_on(&agent, work.path())
        .args(["reconcile", "--apply", "--wait-replication", "60s"])
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    assert!(
        stdout.lines().any(|l| l == "replicated to 2 of 2 DCs"),
        "{stdout}\n{stderr}"
    );
    let dc1 = pair.invocation_id(&pair.dc1);
    let dc2 = pair.invocation_id(&pair.dc2);
    assert_ne!(dc1, dc2);
    let on_dc2 = endpoints(&pair.dc2, "sip:ocschat@contoso.com");
    assert_eq!(on_dc2.len(), 1, "{on_dc2:?}");
    let on_each: Vec<Vec<(u32, u32, String)>> = pair
        .dcs()
        .map(|dc| pair.property_metadata(dc, &on_dc2[0]))
        .to_vec();
    // Every attribute as DC1 holds it was originated by DC1's database; so is every attribute
    // as DC2 holds it, except the RDN attribute `cn` (attid 3), whose metadata Samba writes
    // afresh, as its own, when it applies a replicated add. Written on DC2, all of them would
    // name DC2.
    const CN: u32 = 3;
    let from_dc1 = |held: &[(u32, u32, String)], skip: Option<u32>| {
        !held.is_empty()
            && held
                .iter()
                .filter(|(attid, _, _)| Some(*attid) != skip)
                .all(|(_, _, origin)| *origin == dc1)
    };
    assert!(
        from_dc1(&on_each[0], None) && from_dc1(&on_each[1], Some(CN)),
        "{} originated on (attid, version, invocationId) {:x?} as DC1 holds it, {:x?} as DC2 \
         does; DC1 is {dc1}, DC2 {dc2}",
        on_dc2[0],
        on_each[0],
        on_each[1]
    );
    // The end state is on both DCs already: the well-known user is gone from each.
    for dc in pair.dcs() {
        assert!(!dc.exists(OCSCHAT), "{OCSCHAT} still on {}", dc.ldaps_url);
        assert_eq!(endpoints(dc, "sip:ocschat@contoso.com"), on_dc2);
    }
    let audit = std::fs::read_to_string(work.path().join("var/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start = records.iter().find(|r| r["event"] == "run_start").unwrap();
    assert!(
        start["message"]
            .as_str()
            .unwrap()
            .contains("write server dc1.contoso.com (PDC emulator, from fSMORoleOwner)"),
        "{start}"
    );
    let replication = records
        .iter()
        .find(|r| r["event"] == "replication")
        .unwrap_or_else(|| panic!("no replication record:\n{audit}"));
    assert_eq!(replication["outcome"], "ok");
    assert_eq!(replication["message"], "replicated to 2 of 2 DCs");
}

/// `restore --run R --apply` with DC2 listed first writes on DC1, the PDC emulator, like the
/// reconcile it undoes: with outbound replication stopped on both DCs, the well-known user is
/// back on DC1 and not on DC2 (written through the first URL that answered, it was the other
/// way round). See: #20.
#[test]
fn a_restore_writes_on_the_pdc_listed_second() {
    let pair = samba_pair::samba_pair();
    let _seed = pair_seed(&pair, &[]);
    let work = tempfile::tempdir().unwrap();
    let agent = PairAgent::new(&pair, &[&ldaps(DC2_FQDN), &ldaps(DC1_FQDN)], Auth::Simple);
    let assert = pcsync_on(&agent, work.path())
        .args(["reconcile", "--apply", "--wait-replication", "60s"])
        .assert();
    let (stdout, stderr) = output(&assert);
    assert_eq!(
        assert.get_output().status.code(),
        Some(0),
        "{stdout}\n{stderr}"
    );
    let run = crate::common::run_id(work.path(), 0);
    for dc in pair.dcs() {
        assert!(!dc.exists(OCSCHAT), "{OCSCHAT} retired on {}", dc.ldaps_url);
    }
    pair.set_outbound_replication(false);
    let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let assert = pcsync_on(&agent, work.path())
            .args(["restore", "--run", &run, "--apply"])
            .assert();
        let (stdout, stderr) = output(&assert);
        assert_eq!(
            assert.get_output().status.code(),
            Some(0),
            "{stdout}\n{stderr}"
        );
        assert!(pair.dc1.exists(OCSCHAT), "{OCSCHAT} back on DC1:\n{stdout}");
        assert!(
            !pair.dc2.exists(OCSCHAT),
            "{OCSCHAT} written on DC2, which is listed first but not the PDC emulator:\n{stdout}"
        );
    }));
    pair.set_outbound_replication(true);
    if let Err(panic) = restored {
        std::panic::resume_unwind(panic);
    }
}

/// The same name created on both DCs before they replicate leaves AD keeping both objects, the
/// second renamed `…\0ACNF:<objectGUID>`: `inventory` and the plan of `reconcile` report it as a
/// finding with its DN.
#[test]
fn a_replication_conflict_object_is_a_finding_with_its_dn() {
    let pair = samba_pair::samba_pair();
    let _seed = pair_seed(&pair, &[]);
    let dn = format!("CN=Conflicted Room,{ENDPOINT_CONTAINER_DN}");
    pair.set_outbound_replication(false);
    let made = std::panic::catch_unwind(|| {
        for (dc, pool) in [(&pair.dc1, "1:2"), (&pair.dc2, "1:3")] {
            dc.add(&format!(
                "dn: {dn}\nobjectClass: contact\nmsRTCSIP-PrimaryUserAddress: sip:room@contoso.com\n\
                 msRTCSIP-PrimaryHomeServer: {}\n",
                dc.pool_dn(pool)
            ));
        }
    });
    pair.set_outbound_replication(true);
    made.unwrap();
    pair.converge();
    let conflicts = endpoints(&pair.dc1, "sip:room@contoso.com");
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    let cnf = conflicts
        .iter()
        .find(|d| d.contains("\\0ACNF:"))
        .unwrap_or_else(|| panic!("no CNF name among {conflicts:?}"))
        .clone();
    let work = tempfile::tempdir().unwrap();
    let agent = PairAgent::new(&pair, &[&ldaps(DC1_FQDN), &ldaps(DC2_FQDN)], Auth::Simple);
    // The `conflict_object` findings of a command's JSON output.
    let conflicts = |command: &str| {
        let assert = pcsync_on(&agent, work.path())
            .args([command, "--format", "json"])
            .assert();
        let (stdout, stderr) = output(&assert);
        let doc: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        let found: Vec<serde_json::Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "conflict_object")
            .cloned()
            .collect();
        (found, doc["findings"].clone())
    };
    let (found, all) = conflicts("inventory");
    assert_eq!(found.len(), 1, "{all}");
    assert_eq!(found[0]["dn"], cnf.as_str());
    assert!(
        found[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("a replication conflict"),
        "{}",
        found[0]
    );
    // Planning reads each object's sighting only, and reports the conflict the same way, once.
    let (planned, all) = conflicts("reconcile");
    assert_eq!(planned.len(), 1, "{all}");
    assert_eq!(planned[0]["dn"], cnf.as_str());
}

/// Two `pcsync run` instances share one lease entry, one configured DC1 first and the other
/// DC2 first, and the entry starts without a value (made by hand): sampled every 0.5 s for
/// 30 s, at most one of them is ever the writer, and one is. The writer's scheduled run
/// (auto_apply) swaps the well-known user, and its /healthz and /metrics come to say that both
/// DCs hold the swap: the agent counts again after the run until they do.
#[test]
fn two_agents_listing_the_dcs_in_opposite_orders_are_never_both_writers() {
    let pair = samba_pair::samba_pair();
    let lease = format!("CN=pcsync-lease,{ENDPOINT_CONTAINER_DN}");
    let _seed = pair_seed(&pair, &[&lease]);
    pair.dc1
        .add(&format!("dn: {lease}\nobjectClass: container\n"));
    pair.dc1
        .dsacl_set(&lease, &format!("(A;;RPWP;;;{})", pair.dc1.service_sid));
    pair.converge();
    let work = tempfile::tempdir().unwrap();
    let orders = [[DC1_FQDN, DC2_FQDN], [DC2_FQDN, DC1_FQDN]];
    let daemons: Vec<Daemon> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let urls = order.map(ldaps);
            let agent = PairAgent::new(&pair, &[&urls[0], &urls[1]], Auth::Simple);
            start_under_wrappers(
                &agent,
                &work.path().join(format!("agent{i}")),
                &[
                    ("PCSYNC__DAEMON__LEASE_DN", lease.as_str()),
                    ("PCSYNC__DAEMON__LEASE_DURATION", "10s"),
                    ("PCSYNC__SCHEDULE__CRON", "*/2 * * * * *"),
                    ("PCSYNC__SAFETY__AUTO_APPLY", "true"),
                ],
            )
        })
        .collect();
    let began = Instant::now();
    let mut writers_seen = 0;
    while began.elapsed() < Duration::from_secs(30) {
        let writers: Vec<bool> = daemons
            .iter()
            .map(|d| d.health()["lease"]["writer"] == true)
            .collect();
        assert!(
            !writers.iter().all(|w| *w),
            "both agents are writers {:.1}s in; logs:\n{}\n---\n{}",
            began.elapsed().as_secs_f64(),
            log_tail(&daemons[0].log, 20),
            log_tail(&daemons[1].log, 20)
        );
        writers_seen += writers.iter().filter(|w| **w).count();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(writers_seen > 0, "neither agent ever held the lease");
    let values = pair.dc1.search(&lease, "(objectClass=*)", &["description"]);
    assert_eq!(
        values
            .lines()
            .filter(|l| l.starts_with("description:"))
            .count(),
        1,
        "the lease holds exactly one value:\n{values}"
    );
    // The writer applied the swap. Right after its writes DC2 may not hold them yet; the agent
    // counts again after the run until both do. See: #20.
    let replicated = || {
        daemons
            .iter()
            .map(|d| (d.health(), d))
            .find(|(h, _)| h["replication"]["text"] == "replicated to 2 of 2 DCs")
    };
    daemons[0].wait_until(
        "an agent reports its run's writes replicated to both DCs",
        Duration::from_secs(60),
        || replicated().is_some(),
    );
    let (health, writer) = replicated().unwrap();
    let replication = &health["replication"];
    assert_eq!(replication["holding"], 2, "{health}");
    assert_eq!(replication["total"], 2, "{health}");
    assert_eq!(replication["state"], "replicated", "{health}");
    let metrics = writer.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "pcsync_replication_dcs_holding 2"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "pcsync_replication_dcs 2"),
        "{metrics}"
    );
    assert!(
        !pair.dc1.exists(OCSCHAT),
        "the writer's run swapped {OCSCHAT}"
    );
    drop(daemons);
}

/// DC1, the PDC emulator, stopped: `reconcile --apply` writes nothing anywhere (exit 1, naming
/// the write server and that writes never fail over, whichever DC is listed first), while a
/// running agent keeps answering redirects, its live watch fails over to DC2 and sees a new
/// endpoint made there, and its scheduled run fails with the same reason.
#[test]
fn with_the_pdc_down_nothing_is_written_while_redirects_and_the_watch_carry_on() {
    let pair = samba_pair::samba_pair();
    let room = format!("CN={{7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}},{ENDPOINT_CONTAINER_DN}");
    pair.restore_seed(&[&room]);
    let work = tempfile::tempdir().unwrap();
    let urls = [ldaps(DC1_FQDN), ldaps(DC2_FQDN)];
    let agent = PairAgent::new(&pair, &[&urls[0], &urls[1]], Auth::Simple);
    let d = start_under_wrappers(
        &agent,
        &work.path().join("agent"),
        &[("PCSYNC__SCHEDULE__CRON", "*/2 * * * * *")],
    );
    d.wait_until(
        "the endpoint is served and the watch is connected",
        Duration::from_secs(60),
        || {
            options_status(d.sip, "sip:persistentchat@contoso.com") == Some(200)
                && d.health()["watch"]["state"] == "connected"
        },
    );

    pair.dc1.stop();
    let stopped = std::panic::catch_unwind(|| {
        let down = "write server dc1.contoso.com (PDC emulator, from fSMORoleOwner) is \
                    unreachable: no directory server answered: ldaps://dc1.contoso.com:636: \
                    connection refused; writes never fail over to another DC";
        for order in [[&urls[0], &urls[1]], [&urls[1], &urls[0]]] {
            let agent = PairAgent::new(&pair, &[order[0], order[1]], Auth::Simple);
            let assert = pcsync_on(&agent, work.path())
                .args(["reconcile", "--apply"])
                .assert();
            let (stdout, stderr) = output(&assert);
            assert.code(1);
            assert_eq!(stderr.trim(), format!("pcsync: error: {down}"), "{stdout}");
        }
        assert!(
            pair.dc2.exists(OCSCHAT),
            "the well-known user is untouched on DC2"
        );
        assert_eq!(
            endpoints(&pair.dc2, "sip:ocschat@contoso.com"),
            Vec::<String>::new()
        );
        // The agent's scheduled run fails with the same reason.
        d.wait_until(
            "a scheduled run fails on the write server",
            Duration::from_secs(30),
            || {
                let h = d.health();
                h["last_run"]["outcome"] == "failed"
                    && h["last_run"]["message"].as_str().is_some_and(|m| m == down)
            },
        );
        // Redirects go on from the table in hand, and the watch fails over to DC2.
        assert_eq!(
            options_status(d.sip, "sip:persistentchat@contoso.com"),
            Some(200)
        );
        pair.dc2.add(&format!(
            "dn: {room}\nobjectClass: contact\nmsRTCSIP-PrimaryUserAddress: sip:newroom@contoso.com\n\
             msRTCSIP-UserEnabled: TRUE\nmsRTCSIP-PrimaryHomeServer: {}\n",
            pair.dc2.pool_dn("1:2")
        ));
        d.wait_until(
            "an endpoint made on DC2 is served",
            Duration::from_secs(30),
            || options_status(d.sip, "sip:newroom@contoso.com") == Some(200),
        );
    });
    pair.dc1.start_again();
    drop(d);
    pair.restore_seed(&[&room]);
    if let Err(panic) = stopped {
        std::panic::resume_unwind(panic);
    }
}

/// Starts an agent of the two-DC fixture and waits for /healthz. The fixture resolves the DCs'
/// names by preloading Debian's nss_wrapper 1.1.12 and resolv_wrapper 1.1.8 into pcsync, and
/// those are not safe for concurrent lookups: an agent resolving from several blocking threads
/// at start-up was seen aborting inside them (glibc's "double free or corruption", "free():
/// invalid pointer", or a SIGSEGV with nothing logged), and a heap corrupted that way can also
/// leave it hung. So a start-up that dies or does not answer within 30 s is tried again, at
/// most three times in all, each time said on stderr with the log; the third failure fails the
/// test with every attempt's exit status and log. A pcsync that cannot start for a reason of its
/// own fails all three attempts, so this hides nothing.
fn start_under_wrappers(
    agent: &dyn Backend,
    work: &std::path::Path,
    env: &[(&str, &str)],
) -> Daemon {
    let mut attempts = Vec::new();
    for attempt in 1..=3 {
        let dir = work.join(format!("attempt{attempt}"));
        let mut d = Daemon::spawn(agent, &dir, env);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ended = None;
        while Instant::now() < deadline {
            if d.try_get("/healthz").is_some() {
                return d;
            }
            ended = d.try_wait();
            if ended.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let how = match ended {
            Some(status) => format!("ended with {status}"),
            None => {
                d.kill();
                "did not answer /healthz within 30 s (killed)".to_string()
            }
        };
        let failed = format!(
            "attempt {attempt}: the agent {how}; log:\n{}",
            log_tail(&d.log, 40)
        );
        eprintln!("agent start-up under the name wrappers failed, {failed}");
        attempts.push(failed);
    }
    panic!(
        "the agent did not start in 3 attempts:\n{}",
        attempts.join("\n---\n")
    );
}
