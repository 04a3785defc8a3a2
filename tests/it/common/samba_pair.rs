//! Two replicating Samba AD DCs with a KDC, on loopback, for the multi-DC and Kerberos tests.
//!
//! DC1 (`dc1.contoso.com`, 127.0.0.2) is provisioned, so it holds every FSMO role, the PDC
//! emulator's included; DC2 (`dc2.contoso.com`, 127.0.0.3) joins it as a second writable DC.
//! Both run `rpc, ldap, cldap, kdc, drepl, kcc` and accept GSSAPI inside TLS
//! (`ldap server require strong auth = allow_sasl_over_tls`, as AD does). Names resolve through
//! `libnss_wrapper` and `libresolv_wrapper`, preloaded through environment variables
//! ([`SambaPair::env`]), never through /etc/hosts; Kerberos clients read the generated
//! krb5.conf (`KRB5_CONFIG`).
//!
//! Started once per test run on first use, like the single DC of [`super::samba`], under the
//! same host-wide lock (taken once per run: the single DC on 127.0.0.1 and the pair on .2/.3
//! listen on different addresses, so both can run within one run). DC1 is seeded exactly like
//! the single DC (schema, pools, users, the least-privilege `svc-pcsync` and its rights) *before*
//! DC2 joins, so the join copies the seed. Then the fixture registers the SPNs replication needs,
//! links replication both ways, exports svc-pcsync's keytab, and proves replication with a marker
//! written on each DC and read on the other ([`SambaPair::converge`]). Both DCs die with the test
//! run the same three ways as the single DC; one watchdog removes the whole temp dir.

// Shared by every integration-test module; not every module uses every helper.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::samba::{
    CONFIG_DN, DOMAIN_DN, DcProcess, PORT_RELEASE_TIMEOUT, Provision, RunningDc, SCHEMA_DN,
    SambaDc, Seed, Shared, SharedGuard, find_program, guid_to_string, hold_host_lock, provision,
    require_installed, require_packages, run_samba_tool, samba_tool, smb_options, spawn_watchdog,
    take_shared, wait_for_free_ports,
};
use super::slapd::{POLL_INTERVAL, random_hex, run, run_with_timeout, write_test_pki_for};

/// DC1: provisioned, so the PDC emulator and every other FSMO role holder.
pub const DC1_FQDN: &str = "dc1.contoso.com";
pub const DC1_IP: &str = "127.0.0.2";
/// DC2: joined as a second writable DC.
pub const DC2_FQDN: &str = "dc2.contoso.com";
pub const DC2_IP: &str = "127.0.0.3";
pub const REALM: &str = "CONTOSO.COM";
/// The Kerberos principal of the least-privilege account; its keys are in [`SambaPair::keytab`].
pub const SERVICE_PRINCIPAL: &str = "svc-pcsync@CONTOSO.COM";
/// The naming contexts both DCs hold.
pub const NAMING_CONTEXTS: [&str; 3] = [DOMAIN_DN, CONFIG_DN, SCHEMA_DN];
/// The Debian packages of the name-resolution wrappers (the DCs and pcsync preload them).
pub const WRAPPER_PACKAGES: &str = "libnss-wrapper libresolv-wrapper";

/// Every port a DC of the pair listens on: Kerberos, RPC endpoint mapper, LDAP, kpasswd, LDAPS,
/// global catalog (plain and TLS). RPC's dynamic ports are taken from 49152 up on each address.
const PAIR_PORTS: [u16; 7] = [88, 135, 389, 464, 636, 3268, 3269];
/// What a replicating DC with a KDC needs, and no more (no SMB, DNS, NTP, winbind).
const SERVICES: &str = "rpc, ldap, cldap, kdc, drepl, kcc";
/// How long one replication command may take. (`samba-tool drs kcc` against DC2 can hang for
/// 60 s, so the fixture never runs it; `drs replicate` returns in about a second.)
const DRS_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a change may take to reach the other DC (a second or two here, with the notify
/// interval the fixture sets; generous for a loaded 2-core machine).
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);
/// One marker entry per replicated writable naming context: a change to it that reached the
/// other DC proves every earlier change of that naming context from the same DC did too
/// (replication sends each naming context's changes in USN order).
const MARKERS: [&str; 2] = [
    "CN=pcsync-fixture-marker,CN=Users,DC=contoso,DC=com",
    "CN=pcsync-fixture-marker,CN=Services,CN=Configuration,DC=contoso,DC=com",
];

/// The pair of this test run, and whether starting it failed.
static PAIR: Mutex<Shared<SambaPair>> = Mutex::new(Shared::NotStarted);

/// The shared two-DC domain, started on first use; blocks while another test holds it.
pub fn samba_pair() -> SharedGuard<SambaPair> {
    take_shared(&PAIR, SambaPair::start, "the shared pair of Samba AD DCs")
}

/// Two replicating DCs of contoso.com. Only reachable through [`samba_pair()`].
pub struct SambaPair {
    /// DC1 (PDC emulator). Its `ldaps_url` is by address, for the LDAP tools.
    pub dc1: SambaDc,
    /// DC2. Its `ldaps_url` is by address, for the LDAP tools.
    pub dc2: SambaDc,
    /// The temp dir: `dc1/`, `dc2/`, hosts, dns, krb5.conf, the CA, the keytab.
    pub dir: PathBuf,
    /// svc-pcsync's keys (`samba-tool domain exportkeytab`).
    pub keytab: PathBuf,
    /// The test CA that signed the DCs' certificate (SANs: both names, both addresses).
    pub ca_file: PathBuf,
    names: NameService,
    /// How long provisioning, seeding, the join and the first replication took.
    pub startup: Duration,
    marker_seq: AtomicU64,
}

/// Name resolution and Kerberos configuration for the processes that talk to the pair.
struct NameService {
    /// `LD_PRELOAD` value: the two wrapper libraries.
    preload: String,
    /// nss_wrapper's hosts file: both DCs.
    hosts_file: PathBuf,
    /// resolv_wrapper's records: both DCs, the domain, each DC's `_msdcs` alias.
    dns_file: PathBuf,
    /// CONTOSO.COM with both KDCs; no DNS lookups, no reverse resolution.
    krb5_conf: PathBuf,
}

impl NameService {
    /// Writes the hosts file, the DNS records and krb5.conf into `dir`.
    fn write(dir: &Path, preload: String) -> NameService {
        let names = NameService {
            preload,
            hosts_file: dir.join("hosts"),
            dns_file: dir.join("dns"),
            krb5_conf: dir.join("krb5.conf"),
        };
        fs::write(
            &names.hosts_file,
            format!("{DC1_IP} {DC1_FQDN} dc1\n{DC2_IP} {DC2_FQDN} dc2\n"),
        )
        .expect("write hosts file");
        fs::write(
            &names.dns_file,
            format!("A {DC1_FQDN} {DC1_IP}\nA {DC2_FQDN} {DC2_IP}\nA contoso.com {DC1_IP}\n"),
        )
        .expect("write dns file");
        fs::write(
            &names.krb5_conf,
            format!(
                "[libdefaults]\n\
                 \tdefault_realm = {REALM}\n\
                 \tdns_lookup_realm = false\n\
                 \tdns_lookup_kdc = false\n\
                 \trdns = false\n\
                 \tdns_canonicalize_hostname = false\n\
                 [realms]\n\
                 \t{REALM} = {{\n\t\tkdc = {DC1_IP}\n\t\tkdc = {DC2_IP}\n\t}}\n\
                 [domain_realm]\n\
                 \t.contoso.com = {REALM}\n\
                 \tcontoso.com = {REALM}\n"
            ),
        )
        .expect("write krb5.conf");
        names
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.preload.clone()),
            ("NSS_WRAPPER_HOSTS", self.hosts_file.display().to_string()),
            ("RESOLV_WRAPPER_HOSTS", self.dns_file.display().to_string()),
            ("KRB5_CONFIG", self.krb5_conf.display().to_string()),
        ]
    }

    fn env_owned(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// Adds a CNAME `<objectGUID of NTDS Settings>._msdcs.contoso.com` for each DC: replication
    /// finds a partner by that name.
    fn add_msdcs_names(&self, dc1: &SambaDc) {
        let mut dns = fs::read_to_string(&self.dns_file).expect("read dns file");
        for (guid, host) in ntds_guids(dc1) {
            let _ = writeln!(dns, "CNAME {guid}._msdcs.contoso.com {host}");
        }
        fs::write(&self.dns_file, dns).expect("write dns file");
    }
}

// === start ===

impl SambaPair {
    fn start() -> SambaPair {
        let began = Instant::now();
        let samba = require_installed();
        let preload = wrapper_preload();
        hold_host_lock();
        wait_for_free_ports(&[DC1_IP, DC2_IP], &PAIR_PORTS, PORT_RELEASE_TIMEOUT);
        let dir = tempfile::Builder::new()
            .prefix("pcsync-samba-pair-")
            .tempdir()
            .expect("create temp dir")
            .keep();
        // First, so that even a death during provisioning leaves nothing behind: it kills both
        // DCs by their dc1/dc.pid and dc2/dc.pid and removes `dir` at exit.
        let watchdog = spawn_watchdog(&dir);
        let pki = write_test_pki_for(&dir, "", &[DC1_FQDN, DC2_FQDN, DC1_IP, DC2_IP]);
        let names = NameService::write(&dir, preload);
        let env = names.env_owned();
        let admin_password = format!("Adm1n-{}", random_hex());
        let service_password = format!("Svc-{}-9x", random_hex());
        let extra_options = [
            // AD accepts GSSAPI inside TLS; Samba only with this.
            "ldap server require strong auth=allow_sasl_over_tls".to_owned(),
            // A change is announced to the other DC within about a second (default 5 s).
            "dreplsrv:notify_interval=1".to_owned(),
            // Each DC also pulls every 5 s (default 300 s): a notification link that Samba has
            // not recorded yet (the join and `--add-ref` set them up asynchronously) only
            // delays a change, it never loses it for the length of a test.
            "dreplsrv:periodic_interval=5".to_owned(),
        ];
        let (d1, d2) = (dir.join("dc1"), dir.join("dc2"));
        let (if1, if2) = (format!("{DC1_IP}/8"), format!("{DC2_IP}/8"));
        let spec = |dc_dir, host_name, ip, interfaces| Provision {
            dir: dc_dir,
            admin_password: &admin_password,
            pki: &pki,
            host_name,
            host_ip: Some(ip),
            interfaces,
            services: SERVICES,
            extra_options: &extra_options,
            env: &env,
        };
        let parts = |dc_dir: &Path, ip: &str, process| RunningDc {
            ldaps_url: format!("ldaps://{ip}:636"),
            ldap_url: format!("ldap://{ip}:389"),
            dir: dc_dir.to_owned(),
            ca_file: pki.ca_file.clone(),
            admin_password: admin_password.clone(),
            service_password: service_password.clone(),
            process,
        };

        // DC1: provision, start, seed (the join then copies the seed).
        fs::create_dir_all(&d1).expect("create dc1 dir");
        provision(&spec(&d1, "dc1", DC1_IP, &if1));
        let process = DcProcess::spawn(&samba, &d1, &env);
        let mut dc1 = SambaDc::running(parts(&d1, DC1_IP, process), vec![watchdog]);
        dc1.wait_ready();
        let dc1_up = began.elapsed();
        dc1.seed();
        dc1.add(&marker_ldif());

        // DC2: an smb.conf of our own (with the shares the join insists on), join, start.
        write_joining_conf(&spec(&d2, "dc2", DC2_IP, &if2));
        let mut join = samba_tool();
        join.args(["domain", "join", "contoso.com", "DC", "-s"])
            .arg(d2.join("etc/smb.conf"))
            .arg(format!("--server={DC1_IP}"))
            .arg("-U")
            .arg(format!("CONTOSO\\Administrator%{admin_password}"))
            .arg("--dns-backend=NONE")
            .envs(env.iter().map(|(k, v)| (k, v)));
        run_samba_tool(&mut join, "domain join", &d2, "join.log");
        names.add_msdcs_names(&dc1);
        let process = DcProcess::spawn(&samba, &d2, &env);
        let mut dc2 = SambaDc::running(parts(&d2, DC2_IP, process), Vec::new());
        dc2.share_seed_facts(&dc1);
        dc2.wait_ready();
        let joined = began.elapsed();

        let mut pair = SambaPair {
            dc1,
            dc2,
            keytab: dir.join("svc-pcsync.keytab"),
            ca_file: pki.ca_file.clone(),
            names,
            dir,
            startup: Duration::ZERO,
            marker_seq: AtomicU64::new(0),
        };
        pair.link_replication();
        pair.export_keytab();
        pair.converge();
        pair.startup = began.elapsed();
        eprintln!(
            "samba AD DC pair (pids {} and {}) in {}: DC1 up in {:.1}s, seeded and DC2 joined \
             by {:.1}s, replicating both ways by {:.1}s",
            pair.dc1.pid(),
            pair.dc2.pid(),
            pair.dir.display(),
            dc1_up.as_secs_f64(),
            joined.as_secs_f64(),
            pair.startup.as_secs_f64()
        );
        pair
    }

    /// Registers the SPNs replication needs (the `dnsupdate` service would; without them DRS
    /// fails with "Server E3514235-… unknown"), has DC1 pull from DC2 (the join only set up DC2
    /// pulling from DC1), and makes each DC notify the other of its changes.
    fn link_replication(&self) {
        for dc in [&self.dc1, &self.dc2] {
            let mut cmd = Command::new("samba_spnupdate");
            cmd.arg("-s").arg(dc.dir.join("etc/smb.conf"));
            self.run_bounded(cmd, "samba_spnupdate");
        }
        for nc in NAMING_CONTEXTS {
            self.drs_replicate(DC1_FQDN, DC2_FQDN, nc, true);
            self.drs_replicate(DC2_FQDN, DC1_FQDN, nc, true);
        }
    }

    /// `samba-tool drs replicate <destination> <source> <nc>`: `destination` pulls `nc` from
    /// `source` now; with `add_ref`, `source` also records `destination` to notify of changes.
    pub fn drs_replicate(&self, destination: &str, source: &str, nc: &str, add_ref: bool) {
        let mut cmd = samba_tool();
        cmd.args(["drs", "replicate", destination, source, nc])
            .arg("-U")
            .arg(format!(
                "CONTOSO\\Administrator%{}",
                self.dc1.admin_password
            ));
        if add_ref {
            cmd.arg("--add-ref");
        }
        self.run_bounded(
            cmd,
            &format!("drs replicate {destination} <- {source} {nc}"),
        );
    }

    /// Runs a replication tool with the pair's environment, bounded by [`DRS_TIMEOUT`].
    fn run_bounded(&self, mut cmd: Command, what: &str) {
        cmd.envs(self.env());
        let out = run_with_timeout(&mut cmd, DRS_TIMEOUT).unwrap_or_else(|partial| {
            panic!("{what} did not finish in {DRS_TIMEOUT:?}:\n{partial}")
        });
        assert!(out.success(), "{what} failed:\n{}", out.both());
    }

    /// svc-pcsync's keys, exported from DC1's database.
    fn export_keytab(&self) {
        let out = run(samba_tool()
            .args(["domain", "exportkeytab"])
            .arg(&self.keytab)
            .arg(format!("--principal={SERVICE_PRINCIPAL}"))
            .arg("-s")
            .arg(self.dc1.dir.join("etc/smb.conf")));
        assert!(
            out.success() && self.keytab.is_file(),
            "samba-tool domain exportkeytab failed:\n{}",
            out.both()
        );
    }
}

/// (objectGUID of the nTDSDSA object, dNSHostName of its server) of every DC, read on `dc`.
fn ntds_guids(dc: &SambaDc) -> Vec<(String, String)> {
    let sites = format!("CN=Sites,{CONFIG_DN}");
    let servers = dc.search_entries(&sites, "(objectClass=server)", &["dNSHostName"]);
    dc.search_entries(&sites, "(objectClass=nTDSDSA)", &["objectGUID"])
        .into_iter()
        .map(|dsa| {
            let dn = dsa.text("dn");
            let server = dn.split_once(',').map(|(_, parent)| parent).unwrap_or("");
            let host = servers
                .iter()
                .find(|s| s.text("dn").eq_ignore_ascii_case(server))
                .unwrap_or_else(|| panic!("no server object above {dn}"))
                .text("dNSHostName");
            (guid_to_string(&dsa.binary("objectGUID")), host)
        })
        .collect()
}

/// The containers [`MARKERS`] names.
fn marker_ldif() -> String {
    MARKERS
        .iter()
        .map(|dn| format!("dn: {dn}\nobjectClass: container\ndescription: seeded\n\n"))
        .collect()
}

/// smb.conf for a DC about to join: what provisioning would write, plus the `[sysvol]` and
/// `[netlogon]` shares without which `samba-tool domain join` refuses ("Existing smb.conf
/// does not have a [netlogon] share").
fn write_joining_conf(spec: &Provision<'_>) {
    let d = spec.dir;
    let sysvol = d.join("state/sysvol");
    for sub in ["etc", "private", "cache", "bind-dns"] {
        fs::create_dir_all(d.join(sub)).expect("create samba dir");
    }
    fs::create_dir_all(sysvol.join("contoso.com/scripts")).expect("create sysvol");
    let mut conf = format!(
        "[global]\n\
         \tnetbios name = {}\n\
         \trealm = {REALM}\n\
         \tworkgroup = CONTOSO\n\
         \tserver role = active directory domain controller\n\
         \tprivate dir = {}\n\
         \tlock directory = {}\n\
         \tstate directory = {}\n\
         \tcache directory = {}\n\
         \tbinddns dir = {}\n\
         \tidmap_ldb:use rfc2307 = yes\n",
        spec.host_name.to_ascii_uppercase(),
        d.join("private").display(),
        d.display(),
        d.join("state").display(),
        d.join("cache").display(),
        d.join("bind-dns").display(),
    );
    for option in smb_options(spec) {
        let (key, value) = option.split_once('=').expect("key=value option");
        let _ = writeln!(conf, "\t{key} = {value}");
    }
    let _ = write!(
        conf,
        "\n[sysvol]\n\tpath = {}\n\tread only = No\n\n\
         [netlogon]\n\tpath = {}\n\tread only = No\n",
        sysvol.display(),
        sysvol.join("contoso.com/scripts").display()
    );
    fs::write(d.join("etc/smb.conf"), conf).expect("write DC2's smb.conf");
}

/// `LD_PRELOAD` for the two wrapper libraries; panics with install instructions without them.
pub fn wrapper_preload() -> String {
    let how = format!(
        "install them with `apt-get install -y {WRAPPER_PACKAGES}` (as root), or run \
         scripts/test.sh as root, which installs them"
    );
    require_packages(WRAPPER_PACKAGES, &how);
    assert!(
        find_program("samba_spnupdate").is_some(),
        "samba_spnupdate not found: install Samba's AD DC packages (scripts/deps.sh)"
    );
    let mut libraries = Vec::new();
    for (package, library) in [
        ("libnss-wrapper", "libnss_wrapper.so"),
        ("libresolv-wrapper", "libresolv_wrapper.so"),
    ] {
        let listed = run(Command::new("dpkg-query").args(["-L", package]));
        let path = listed
            .stdout
            .lines()
            .find(|l| l.ends_with(&format!("/{library}")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{library} not found in {package}: {how}"));
        libraries.push(path);
    }
    libraries.join(":")
}

// === use ===

impl SambaPair {
    /// The environment every process that resolves the DCs' names or uses Kerberos needs:
    /// the two wrappers preloaded, their hosts and DNS files, and our krb5.conf.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.names.env()
    }

    /// Both DCs, DC1 first.
    pub fn dcs(&self) -> [&SambaDc; 2] {
        [&self.dc1, &self.dc2]
    }

    /// Waits until each DC holds every change the other made so far: a fresh value on each
    /// DC's [`MARKERS`], read back on the other. Panics naming the direction after
    /// [`REPLICATION_TIMEOUT`].
    pub fn converge(&self) {
        for (from, to, direction) in [
            (&self.dc1, &self.dc2, "DC1 -> DC2"),
            (&self.dc2, &self.dc1, "DC2 -> DC1"),
        ] {
            let token = format!(
                "marker-{}-{}",
                self.marker_seq.fetch_add(1, Ordering::Relaxed),
                random_hex()
            );
            let mut ldif = String::new();
            for dn in MARKERS {
                let _ = write!(
                    ldif,
                    "dn: {dn}\nchangetype: modify\nreplace: description\ndescription: {token}\n\n"
                );
            }
            from.modify(&ldif);
            wait_until(
                REPLICATION_TIMEOUT,
                &format!("replication {direction}"),
                || {
                    MARKERS.iter().all(|dn| {
                        to.try_search(dn, "(objectClass=*)", &["description"])
                            .is_ok_and(|out| out.contains(&token))
                    })
                },
            );
        }
    }

    /// Puts the seed back (removing the `extra` objects a test made, on whichever DC has them)
    /// and waits until both DCs agree again.
    pub fn restore_seed(&self, extra: &[&str]) {
        // Objects a test made on DC2 alone must reach DC1 before DC1 can remove them.
        self.converge();
        for dn in extra {
            if self.dc1.exists(dn) {
                self.dc1.delete(dn);
            }
        }
        self.dc1.restore_seed();
        self.converge();
    }
}

/// Polls `done` every 200 ms until it holds, or panics after `timeout` naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not done within {timeout:?}"
        );
        thread::sleep(POLL_INTERVAL * 4);
    }
}

// === pcsync against the pair ===

/// How pcsync binds to the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Simple bind as svc-pcsync with its password file (the shipped configuration).
    Simple,
    /// Kerberos with svc-pcsync's keytab, no password configured.
    Kerberos,
}

/// pcsync configured for the pair: the shipped config/active-directory.toml with the given
/// URLs, the pair's CA, name resolution and krb5.conf, and svc-pcsync's password file or
/// keytab; its audit log and state dir in the working directory.
pub struct PairAgent<'a> {
    pair: &'a SambaPair,
    urls: Vec<String>,
    auth: Auth,
}

impl<'a> PairAgent<'a> {
    pub fn new(pair: &'a SambaPair, urls: &[&str], auth: Auth) -> PairAgent<'a> {
        PairAgent {
            pair,
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            auth,
        }
    }
}

impl super::Backend for PairAgent<'_> {
    /// The shipped file; for Kerberos, a copy with the bind DN and password source removed and
    /// the commented Kerberos keys switched on, as its comments tell an administrator to.
    fn config(&self) -> PathBuf {
        let shipped = super::repo("config/active-directory.toml");
        if self.auth == Auth::Simple {
            return shipped;
        }
        let text = fs::read_to_string(&shipped).expect("read the shipped AD configuration");
        let mut out = String::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("bind_dn") || trimmed.starts_with("bind_password_file") {
                continue;
            }
            let uncommented = [
                "# auth = \"gssapi\"",
                "# [directory.kerberos]",
                "# keytab =",
            ]
            .iter()
            .find(|c| trimmed.starts_with(**c))
            .map(|_| trimmed.trim_start_matches("# "));
            out.push_str(uncommented.unwrap_or(line));
            out.push('\n');
        }
        assert!(
            out.contains("\nauth = \"gssapi\"\n") && out.contains("\n[directory.kerberos]\n"),
            "config/active-directory.toml no longer shows the Kerberos keys to uncomment"
        );
        let path = self.pair.dir.join("active-directory-gssapi.toml");
        fs::write(&path, out).expect("write the Kerberos configuration");
        path
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PCSYNC__DIRECTORY__URL", self.urls.join(",")),
            (
                "PCSYNC__DIRECTORY__TLS_CA_FILE",
                self.pair.ca_file.display().to_string(),
            ),
            ("PCSYNC__AUDIT__PATH", "var/audit.jsonl".to_owned()),
            ("PCSYNC__STATE__DIR", "var/state".to_owned()),
        ];
        env.push(match self.auth {
            Auth::Simple => (
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                self.pair.dc1.service_password_file.display().to_string(),
            ),
            Auth::Kerberos => (
                "PCSYNC__DIRECTORY__KERBEROS__KEYTAB",
                self.pair.keytab.display().to_string(),
            ),
        });
        env.extend(self.pair.env());
        env
    }

    fn harness_timings(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// `ldaps://<name>:636` of a DC.
pub fn ldaps(fqdn: &str) -> String {
    format!("ldaps://{fqdn}:636")
}

// === replication metadata, read by the tests ===

impl SambaPair {
    /// The `invocationId` of `dc`'s database, read on `dc` (its root DSE names its nTDSDSA).
    pub fn invocation_id(&self, dc: &SambaDc) -> String {
        let root = dc.search_entries_scoped("", "base", "(objectClass=*)", &["dsServiceName"]);
        let dsa = root[0].text("dsServiceName");
        let entry = dc.search_entries_scoped(&dsa, "base", "(objectClass=*)", &["invocationId"]);
        guid_to_string(&entry[0].binary("invocationId"))
    }

    /// (attid, version, originating invocationId) of the last change of each attribute of
    /// `dn`, as `dc`'s `replPropertyMetaData` records it.
    pub fn property_metadata(&self, dc: &SambaDc, dn: &str) -> Vec<(u32, u32, String)> {
        let entry =
            dc.search_entries_scoped(dn, "base", "(objectClass=*)", &["replPropertyMetaData"]);
        let blob = entry[0].binary("replPropertyMetaData");
        // replPropertyMetaDataBlob (MS-DRSR), little-endian: version 1, reserved, count,
        // reserved, then 48-byte entries: attid, version, originating time (8), originating
        // invocationId (16), originating USN (8), local USN (8).
        let u32_at = |at: usize| u32::from_le_bytes(blob[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 1, "replPropertyMetaData version of {dn}");
        let count = u32_at(8) as usize;
        assert_eq!(
            blob.len(),
            16 + 48 * count,
            "replPropertyMetaData size of {dn}"
        );
        (0..count)
            .map(|i| {
                let at = 16 + 48 * i;
                (
                    u32_at(at),
                    u32_at(at + 4),
                    guid_to_string(&blob[at + 16..at + 32]),
                )
            })
            .collect()
    }

    /// Stops outbound replication on both DCs (`samba-tool drs options
    /// --dsa-option=+DISABLE_OUTBOUND_REPL`), or starts it again.
    pub fn set_outbound_replication(&self, on: bool) {
        let option = if on {
            "--dsa-option=-DISABLE_OUTBOUND_REPL"
        } else {
            "--dsa-option=+DISABLE_OUTBOUND_REPL"
        };
        for host in [DC1_FQDN, DC2_FQDN] {
            let mut cmd = samba_tool();
            cmd.args(["drs", "options", host, option])
                .arg("-U")
                .arg(format!(
                    "CONTOSO\\Administrator%{}",
                    self.dc1.admin_password
                ));
            self.run_bounded(cmd, &format!("drs options {host} {option}"));
        }
    }
}

/// Puts the pair's seed back (after removing the `extra` objects a test names) when a test
/// starts and when it ends, pass or fail.
pub fn pair_seed<'a>(pair: &'a SambaPair, extra: &[&str]) -> Seed<'a> {
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    Seed::with(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        pair.restore_seed(&extra);
    })
}
