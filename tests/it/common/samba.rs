//! A real Active Directory for the integration tests: one Samba AD DC per test run, shared.
//!
//! Samba's LDAP ports are fixed (389, 636, and 3268/3269 for the global catalog), so one DC per
//! host is all there can be. [`samba()`] provisions it lazily the first time a test asks, into a
//! temp dir (`samba-tool domain provision`, realm CONTOSO.COM, no DNS, `server services = ldap`,
//! loopback only, TLS with a CA made by the test), starts it in the foreground as this process's
//! child, seeds it, and returns a guard of a global mutex: tests that use the DC run one at a
//! time, and a test that needs a clean slate calls [`SambaDc::restore_seed`]. Test runs on one
//! host take turns through a `flock` on `$TMPDIR/pcsync-samba-dc.lock` (several worktrees on one
//! machine); a port held by anything else fails with a message naming it.
//!
//! Lifetime. Statics are never dropped, so nothing in this process can stop the DC at exit.
//! Instead the DC dies with the process, three ways, each sufficient:
//! - it runs `samba -i`, which ends itself on EOF on stdin; its stdin is a pipe whose only write
//!   end lives in this process (std pipes are close-on-exec), so any exit, even SIGKILL, ends it;
//! - it is started through `setpriv --pdeathsig KILL`, from a dedicated thread that lives as long
//!   as the DC (the death signal follows the parent *thread*, and test threads end early);
//! - a watchdog (`setsid sh`, same stdin trick) waits for EOF, kills the DC by its PID if it is
//!   still there after 10 s, and removes the temp dir (kept if `PCSYNC_KEEP_SAMBA_DIR` is set).
//!
//! Seed, over LDAP as Administrator, mirroring `tests/fixtures/contoso-*.ldif` (see
//! [`SEED_DOMAIN`] and [`SEED_CONFIG`] for every object): the msRTCSIP attributes as
//! attributeSchema objects (Microsoft's OIDs where published; see [`schema_ldif`] for the
//! others), added to `mayContain` of `user` and `contact`; RTC Service, Pools with three pool
//! service objects and Application Contacts in the configuration NC (AD's `container` class:
//! Lync's own classes do not exist in a stock schema, and a new class would need a
//! defaultSecurityDescriptor before non-admins could read it); users in `CN=Users` and in OUs;
//! the well-known `ocschat` users of contoso.com and fabrikam.com on the legacy pool; a
//! hand-made endpoint; decoys. Then the least-privilege account `svc-pcsync` gets exactly the
//! rights docs/active-directory.md lists, through `samba-tool dsacl set`.

// Shared by every integration-test module; not every module uses every helper.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::slapd::{
    POLL_INTERVAL, ToolOutput, count_entries, ldapsearch, log_tail, random_hex, run, run_ldif,
    run_with_timeout, tool, write_private, write_test_pki,
};

/// The domain naming context (users).
pub const DOMAIN_DN: &str = "DC=contoso,DC=com";
/// The configuration naming context (pools, Application Contacts).
pub const CONFIG_DN: &str = "CN=Configuration,DC=contoso,DC=com";
/// The schema naming context.
pub const SCHEMA_DN: &str = "CN=Schema,CN=Configuration,DC=contoso,DC=com";
/// The built-in administrator.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=contoso,DC=com";
/// The least-privilege account pcsync binds as (config/active-directory.toml's bind_dn).
pub const SERVICE_DN: &str = "CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com";
/// Where Lync keeps pools.
pub const POOLS_DN: &str = "CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
/// Where New-CsPersistentChatEndpoint creates legacy endpoints.
pub const ENDPOINT_CONTAINER_DN: &str =
    "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
/// The well-known (Group Chat Lookup) users; the service account may delete and retire them.
pub const WELL_KNOWN_USERS: &[&str] = &[
    "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com",
    "CN=OCSChat Fabrikam,OU=Service Accounts,DC=contoso,DC=com",
];
/// Where the well-known users live; the service account may create users here (to re-create
/// a deleted one), and nowhere else.
pub const WELL_KNOWN_USERS_OU: &str = "OU=Service Accounts,DC=contoso,DC=com";
/// The hand-made legacy endpoint in Application Contacts.
pub const ENDPOINT_DN: &str = "CN={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

/// Samba's fixed ports: LDAP, LDAPS, global catalog, global catalog over TLS.
pub const PORTS: [u16; 4] = [389, 636, 3268, 3269];
/// How long provisioning may take (about 4 s here; generous for a loaded 2-core CI machine).
const PROVISION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the DC may take to answer its first ldaps rootDSE search after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Set this variable to keep the DC's temp dir (smb.conf, databases, logs) after the run.
pub const KEEP_DIR_ENV: &str = "PCSYNC_KEEP_SAMBA_DIR";
/// The Debian packages the DC needs (the last three are only Recommends of samba).
pub const PACKAGES: &str = "samba samba-ad-provision samba-dsdb-modules samba-vfs-modules";

/// The one DC of this test run, and whether starting it failed.
static DC: Mutex<Shared<SambaDc>> = Mutex::new(Shared::NotStarted);

/// A fixture started once per test run, on first use, and shared by the tests that take turns
/// through the mutex around it.
pub(super) enum Shared<T> {
    NotStarted,
    Running(Box<T>),
    /// Starting panicked; every later test fails with the same message.
    Failed(String),
}

/// Exclusive use of a shared fixture for one test. Deref to the fixture.
pub struct SharedGuard<T: 'static> {
    guard: MutexGuard<'static, Shared<T>>,
}

impl<T> Deref for SharedGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &*self.guard {
            Shared::Running(fixture) => fixture,
            _ => unreachable!("SharedGuard exists only for a running fixture"),
        }
    }
}

/// Exclusive use of the shared DC for one test. Deref to [`SambaDc`].
pub type SambaGuard = SharedGuard<SambaDc>;

/// The fixture in `cell`, started with `start` if no test has yet; blocks while another test
/// holds it. Panics with the reason if it cannot be started (in this or an earlier test).
pub(super) fn take_shared<T>(
    cell: &'static Mutex<Shared<T>>,
    start: fn() -> T,
    what: &str,
) -> SharedGuard<T> {
    // A test that panicked while holding the fixture poisons the mutex; the fixture is fine.
    let mut guard = cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if matches!(*guard, Shared::NotStarted) {
        let started = std::panic::catch_unwind(start);
        match started {
            Ok(fixture) => *guard = Shared::Running(Box::new(fixture)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                *guard = Shared::Failed(message);
                drop(guard);
                std::panic::resume_unwind(panic);
            }
        }
    }
    if let Shared::Failed(message) = &*guard {
        panic!("{what} failed to start earlier in this run: {message}");
    }
    SharedGuard { guard }
}

/// The shared Samba AD DC, provisioned and started on first use; blocks while another test
/// holds it. Panics with the reason if the DC cannot be started (in this or an earlier test).
pub fn samba() -> SambaGuard {
    take_shared(&DC, SambaDc::start, "the shared Samba AD DC")
}

/// Exit status of the DC, once its spawner thread has reaped it.
type ExitSlot = Arc<Mutex<Option<ExitStatus>>>;

/// The parts of a started DC that [`SambaDc::running`] assembles.
pub(super) struct RunningDc {
    /// The ldaps URL the LDAP tools use (an IP address in the certificate's SANs).
    pub ldaps_url: String,
    pub ldap_url: String,
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub admin_password: String,
    pub service_password: String,
    pub process: DcProcess,
}

/// A provisioned, running, seeded DC. Only reachable through [`samba()`].
pub struct SambaDc {
    /// `ldaps://127.0.0.1:636`.
    pub ldaps_url: String,
    /// `ldap://127.0.0.1:389`: plain LDAP, where AD refuses simple binds (LDAP 8).
    pub ldap_url: String,
    /// The test CA that signed the DC's certificate (SANs 127.0.0.1, ::1, localhost).
    pub ca_file: PathBuf,
    pub admin_dn: String,
    pub admin_password: String,
    /// 0600, no trailing newline.
    pub admin_password_file: PathBuf,
    /// `CN=svc-pcsync,OU=Service Accounts,DC=contoso,DC=com`.
    pub service_dn: String,
    pub service_password: String,
    /// 0600, no trailing newline.
    pub service_password_file: PathBuf,
    /// objectSid of the service account, `S-1-5-21-…`.
    pub service_sid: String,
    pub domain_dn: String,
    pub config_dn: String,
    /// The temp dir: etc/smb.conf, private/ (sam.ldb), samba.log, the LDIF files used.
    pub dir: PathBuf,
    /// How long provisioning, start and seeding took.
    pub startup: Duration,
    /// schemaIDGUID of `contact` and of every msRTCSIP attribute, by lDAPDisplayName.
    schema_guids: Vec<(String, String)>,
    log: PathBuf,
    /// The samba process, which a test may stop and start again.
    process: Mutex<DcProcess>,
    /// Write end of the watchdog's stdin (for the DC that owns the temp dir): closing it at
    /// process exit starts the clean-up.
    _lifelines: Vec<ChildStdin>,
    ldif_seq: AtomicU64,
    /// objectGUID of each well-known user when it got its retire rights: a user re-created
    /// since (by `pcsync restore`) has a new GUID and only its class's default ACL.
    retirable: Mutex<Vec<(String, Vec<u8>)>>,
}

// === start ===

impl SambaDc {
    fn start() -> SambaDc {
        let began = Instant::now();
        let samba = require_installed();
        hold_host_lock();
        // A DC of the run that just released the lock may take a moment to let go of its ports.
        wait_for_free_ports(&["127.0.0.1", "[::1]"], &PORTS, PORT_RELEASE_TIMEOUT);
        let tmp = tempfile::Builder::new()
            .prefix("pcsync-samba-")
            .tempdir()
            .expect("create temp dir");
        // The watchdog removes it at exit; `keep` stops TempDir from removing it at drop.
        let dir = tmp.keep();
        // First, so that even a death during provisioning leaves nothing behind.
        let watchdog_stdin = spawn_watchdog(&dir);
        let admin_password = format!("Adm1n-{}", random_hex());
        let service_password = format!("Svc-{}-9x", random_hex());
        let pki = write_test_pki(&dir, "");

        provision(&Provision {
            dir: &dir,
            admin_password: &admin_password,
            pki: &pki,
            host_name: "pcsync-dc",
            host_ip: None,
            interfaces: "lo",
            // LDAP only: no SMB, RPC, KDC, DNS, NTP, replication; starts in well under a second.
            services: "ldap",
            extra_options: &[],
            env: &[],
        });
        let process = DcProcess::spawn(&samba, &dir, &[]);
        let mut dc = SambaDc::running(
            RunningDc {
                ldaps_url: "ldaps://127.0.0.1:636".to_owned(),
                ldap_url: "ldap://127.0.0.1:389".to_owned(),
                dir,
                ca_file: pki.ca_file,
                admin_password,
                service_password,
                process,
            },
            vec![watchdog_stdin],
        );
        dc.wait_ready();
        let started = began.elapsed();
        dc.seed();
        dc.startup = began.elapsed();
        eprintln!(
            "samba AD DC (pid {}) in {}: provisioned and started in {:.1}s, seeded in {:.1}s",
            dc.pid(),
            dc.dir.display(),
            started.as_secs_f64(),
            (dc.startup - started).as_secs_f64()
        );
        dc
    }

    /// A DC whose samba process runs (not necessarily answering yet), with its passwords
    /// written to 0600 files in its dir; `lifelines` are kept open as long as it lives.
    pub(super) fn running(parts: RunningDc, lifelines: Vec<ChildStdin>) -> SambaDc {
        let admin_password_file = parts.dir.join("admin.pw");
        let service_password_file = parts.dir.join("service.pw");
        write_private(&admin_password_file, &parts.admin_password);
        write_private(&service_password_file, &parts.service_password);
        SambaDc {
            ldaps_url: parts.ldaps_url,
            ldap_url: parts.ldap_url,
            ca_file: parts.ca_file,
            admin_dn: ADMIN_DN.to_owned(),
            admin_password: parts.admin_password,
            admin_password_file,
            service_dn: SERVICE_DN.to_owned(),
            service_password: parts.service_password,
            service_password_file,
            service_sid: String::new(),
            domain_dn: DOMAIN_DN.to_owned(),
            config_dn: CONFIG_DN.to_owned(),
            log: parts.process.log.clone(),
            dir: parts.dir,
            startup: Duration::ZERO,
            schema_guids: Vec::new(),
            process: Mutex::new(parts.process),
            _lifelines: lifelines,
            ldif_seq: AtomicU64::new(0),
            retirable: Mutex::new(Vec::new()),
        }
    }

    /// What a DC of a pair learns from the seed of the other (the domain is the same).
    pub(super) fn share_seed_facts(&mut self, seeded: &SambaDc) {
        self.service_sid = seeded.service_sid.clone();
        self.schema_guids = seeded.schema_guids.clone();
        *self.retirable.lock().expect("retirable") =
            seeded.retirable.lock().expect("retirable").clone();
    }

    /// The PID of the samba process (the current one, after a restart).
    pub fn pid(&self) -> u32 {
        self.process.lock().expect("samba process").pid
    }

    /// Stops the samba process (EOF on its stdin, then SIGKILL after [`STOP_TIMEOUT`]) and waits
    /// until it is gone. The DC's databases stay; [`SambaDc::start_again`] resumes it.
    pub fn stop(&self) {
        self.process.lock().expect("samba process").stop();
    }

    /// Starts a stopped DC again on the same databases and waits until it answers.
    pub fn start_again(&self) {
        self.process.lock().expect("samba process").respawn();
        self.wait_ready();
    }

    /// Polls ldaps until the rootDSE answers through our CA, or panics with the log tail.
    pub(super) fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "samba exited during start-up ({status}); log tail ({}):\n{}",
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            let probe = run_with_timeout(
                self.ldap_command("ldapsearch").args([
                    "-x",
                    "-H",
                    &self.ldaps_url,
                    "-o",
                    "nettimeout=2",
                    "-LLL",
                    "-b",
                    "",
                    "-s",
                    "base",
                    "1.1",
                ]),
                PROBE_TIMEOUT,
            );
            if matches!(probe, Ok(ref out) if out.success()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "samba not answering on {} within {READY_TIMEOUT:?} (last probe: {}); log \
                     tail ({}):\n{}",
                    self.ldaps_url,
                    match probe {
                        Ok(out) => out.both(),
                        Err(partial) => partial,
                    },
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// How long a test run waits for another run on this host to release the DC's ports.
const HOST_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// The host lock of this process, once taken: the single DC and the pair share it, so a run
/// that uses both takes it once (a second `flock` from the same run would wait for itself).
static HOST_LOCK: std::sync::OnceLock<ChildStdin> = std::sync::OnceLock::new();

/// Takes the host-wide lock on Samba's fixed ports for the rest of this process (see
/// [`acquire_host_lock`]); does nothing when this run holds it already.
pub(super) fn hold_host_lock() {
    HOST_LOCK.get_or_init(acquire_host_lock);
}

/// Takes the host-wide lock on Samba's fixed ports, waiting (bounded) while another test run on
/// this host holds it, so concurrent runs (several worktrees on one machine) take turns instead
/// of failing. `flock(1)` holds the lock until its stdin, whose write end is returned, closes at
/// this process's exit; the kernel releases it even on SIGKILL.
fn acquire_host_lock() -> ChildStdin {
    let path = std::env::temp_dir().join("pcsync-samba-dc.lock");
    let mut child = Command::new("flock")
        .arg("-w")
        .arg(HOST_LOCK_TIMEOUT.as_secs().to_string())
        .arg(&path)
        .args(["sh", "-c", "echo locked; exec cat >/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start flock (util-linux) for {}: {e}",
                path.display()
            )
        });
    let stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = [0u8; 7];
        let _ = tx.send(std::io::Read::read_exact(&mut stdout, &mut line).is_ok());
        // Reap flock when it exits (at the end of the run, or after a failed wait).
        let _ = child.wait();
    });
    match rx.recv_timeout(Duration::from_secs(1)) {
        Ok(true) => return stdin,
        Ok(false) => panic!("flock -w on {} failed", path.display()),
        Err(_) => eprintln!(
            "waiting up to {HOST_LOCK_TIMEOUT:?} for another test run's Samba AD DC to finish \
             (lock {})",
            path.display()
        ),
    }
    match rx.recv_timeout(HOST_LOCK_TIMEOUT + Duration::from_secs(5)) {
        Ok(true) => stdin,
        _ => panic!(
            "another test run on this host kept the Samba AD DC's ports (lock {}) for over \
             {HOST_LOCK_TIMEOUT:?}",
            path.display()
        ),
    }
}

/// The `samba` binary; panics with install instructions when Samba's packages are missing.
pub(super) fn require_installed() -> PathBuf {
    let how = format!(
        "install Samba's AD DC packages with `apt-get install -y {PACKAGES}` (as root), or run \
         scripts/test.sh as root, which installs them"
    );
    for program in [
        "samba",
        "samba-tool",
        "setpriv",
        "setsid",
        "flock",
        "ldapsearch",
    ] {
        if find_program(program).is_none() {
            panic!("{program} not found: {how}");
        }
    }
    require_packages(PACKAGES, &how);
    find_program("samba").expect("checked above")
}

/// Panics with `how` when one of the Debian `packages` (space-separated) is not installed.
/// Debian splits what provisioning needs over Recommends that `--no-install-recommends` skips,
/// and some packages (libraries) install no command to look for; ask dpkg where there is one.
pub(super) fn require_packages(packages: &str, how: &str) {
    if find_program("dpkg-query").is_none() {
        return;
    }
    let missing: Vec<&str> = packages
        .split(' ')
        .filter(|pkg| {
            let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]));
            !out.stdout.contains("install ok installed")
        })
        .collect();
    if !missing.is_empty() {
        panic!("Debian packages missing: {}: {how}", missing.join(" "));
    }
}

pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    let fixed = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How long a freshly locked run waits for the previous DC to release the ports.
pub(super) const PORT_RELEASE_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits up to `patience` for `ports` on every one of `hosts` to be free, then fails like
/// [`require_free_ports`].
pub fn wait_for_free_ports(hosts: &[&str], ports: &[u16], patience: Duration) {
    let deadline = Instant::now() + patience;
    while let Some(problem) = port_problem(hosts, ports) {
        if Instant::now() >= deadline {
            panic!("{problem}");
        }
        thread::sleep(POLL_INTERVAL * 4);
    }
}

/// Fails clearly when another process holds one of the single DC's fixed ports.
pub fn require_free_ports() {
    if let Some(problem) = port_problem(&["127.0.0.1", "[::1]"], &PORTS) {
        panic!("{problem}");
    }
}

/// Why a DC could not listen on one of `ports` of `hosts`, naming the port; `None` when it could.
fn port_problem(hosts: &[&str], ports: &[u16]) -> Option<String> {
    for port in ports {
        for host in hosts {
            let addr = format!("{host}:{port}");
            match TcpListener::bind(&addr) {
                Ok(_) => {}
                // No IPv6 on this host: Samba will not use ::1 either.
                Err(e) if host.starts_with('[') && e.kind() == ErrorKind::AddrNotAvailable => {}
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    return Some(format!(
                        "port {port} on {host} is taken by another process, and the Samba AD DC \
                         needs it (Samba's ports are fixed): stop that process (a system slapd \
                         or samba? `ss -ltnp 'sport = :{port}'` names it)"
                    ));
                }
                Err(e) => {
                    return Some(format!(
                        "cannot bind port {port} on {host} ({e}): the Samba AD DC needs its \
                         fixed ports; run the tests as root"
                    ));
                }
            }
        }
    }
    None
}

/// What [`provision`] makes: a DC in its own dir, on loopback.
pub(super) struct Provision<'a> {
    pub dir: &'a Path,
    pub admin_password: &'a str,
    pub pki: &'a super::slapd::TestPki,
    /// Its NetBIOS/DNS host name (`dc1` for dc1.contoso.com).
    pub host_name: &'a str,
    pub host_ip: Option<&'a str>,
    /// smb.conf `interfaces`: `lo`, or `127.0.0.2/8` for one address of the loopback net.
    pub interfaces: &'a str,
    /// smb.conf `server services`.
    pub services: &'a str,
    /// More `key=value` smb.conf options.
    pub extra_options: &'a [String],
    /// Environment of samba-tool (name resolution, Kerberos).
    pub env: &'a [(String, String)],
}

/// The smb.conf options of a DC in `dir` (besides realm, role and names): everything under
/// `dir`, loopback only, our TLS certificate, schema updates allowed, no panic handler.
pub(super) fn smb_options(spec: &Provision<'_>) -> Vec<String> {
    let d = spec.dir.display();
    let mut options = vec![
        format!("interfaces={}", spec.interfaces),
        "bind interfaces only=yes".to_owned(),
        format!("server services={}", spec.services),
        "dsdb:schema update allowed=true".to_owned(),
        "tls enabled=yes".to_owned(),
        format!("tls keyfile={}", spec.pki.key_file.display()),
        format!("tls certfile={}", spec.pki.cert_file.display()),
        format!("tls cafile={}", spec.pki.ca_file.display()),
        format!("pid directory={d}/run"),
        format!("ncalrpc dir={d}/ncalrpc"),
        format!("winbindd socket directory={d}/winbindd"),
        format!("ntp signd socket directory={d}/ntp_signd"),
        format!("log file={d}/samba.log"),
        "log level=1".to_owned(),
        "panic action=".to_owned(),
    ];
    options.extend(spec.extra_options.iter().cloned());
    for sub in ["run", "ncalrpc", "winbindd", "ntp_signd"] {
        fs::create_dir_all(spec.dir.join(sub)).expect("create samba dir");
    }
    options
}

/// `samba-tool domain provision` into `spec.dir`, with an smb.conf that keeps everything there.
pub(super) fn provision(spec: &Provision<'_>) {
    let options = smb_options(spec);
    let mut cmd = samba_tool();
    cmd.args(["domain", "provision", "-s", "/dev/null", "--targetdir"])
        .arg(spec.dir)
        .args([
            "--realm=CONTOSO.COM",
            "--domain=CONTOSO",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
        ])
        .arg(format!("--host-name={}", spec.host_name))
        .arg(format!("--adminpass={}", spec.admin_password));
    if let Some(ip) = spec.host_ip {
        cmd.arg(format!("--host-ip={ip}"));
    }
    for option in &options {
        cmd.arg(format!("--option={option}"));
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    run_samba_tool(&mut cmd, "domain provision", spec.dir, "provision.log");
}

/// Runs a long samba-tool command (bounded by [`PROVISION_TIMEOUT`]), keeps its output in
/// `dir/log_name`, and panics with its tail when it fails.
pub(super) fn run_samba_tool(cmd: &mut Command, what: &str, dir: &Path, log_name: &str) {
    let out = run_with_timeout(cmd, PROVISION_TIMEOUT).unwrap_or_else(|partial| {
        panic!("samba-tool {what} did not finish within {PROVISION_TIMEOUT:?}:\n{partial}")
    });
    fs::write(dir.join(log_name), out.both()).expect("write samba-tool log");
    if !out.success() {
        let all = out.both();
        let tail: Vec<&str> = all.lines().rev().take(30).collect();
        panic!(
            "samba-tool {what} in {} failed; output tail:\n{}",
            dir.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// `samba-tool`, killed if this test thread dies first (a provision takes seconds).
pub(super) fn samba_tool() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", "samba-tool"]);
    cmd
}

/// What a [`DcProcess`] needs to start samba again.
pub(super) struct DcProcess {
    samba: PathBuf,
    conf: PathBuf,
    pid_file: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    pub pid: u32,
    exit: ExitSlot,
    /// Write end of samba's stdin: closing it (at process exit, or in [`DcProcess::stop`]) ends it.
    stdin: Option<ChildStdin>,
}

/// How long a stopped DC may take to exit after EOF on its stdin before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

impl DcProcess {
    /// Starts `samba -i` on `dir/etc/smb.conf` with `env`, logging to `dir/samba.log`, and
    /// records its PID in `dir/dc.pid` for the watchdog.
    pub(super) fn spawn(samba: &Path, dir: &Path, env: &[(String, String)]) -> DcProcess {
        let mut process = DcProcess {
            samba: samba.to_owned(),
            conf: dir.join("etc/smb.conf"),
            pid_file: dir.join(PID_FILE),
            log: dir.join("samba.log"),
            env: env.to_vec(),
            pid: 0,
            exit: Arc::new(Mutex::new(None)),
            stdin: None,
        };
        process.respawn();
        process
    }

    /// Starts samba (again), from a thread that lives as long as it (see the module docs).
    fn respawn(&mut self) {
        let output = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open samba log");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(&self.samba)
            .args(["-i", "-M", "single", "-s"])
            .arg(&self.conf)
            // The smb.conf names every path; keep the host's Samba environment out.
            .env_remove("SMB_CONF_PATH")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(output.try_clone().expect("dup log"))
            .stderr(output);
        let exit: ExitSlot = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel();
        let slot = Arc::clone(&exit);
        thread::Builder::new()
            .name("samba-dc".to_owned())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot start {cmd:?}: {e}")));
                        return;
                    }
                };
                let stdin = child.stdin.take().expect("piped stdin");
                let _ = tx.send(Ok((child.id(), stdin)));
                // Stay alive (and so keep PDEATHSIG armed) until samba is gone; then record why.
                let status = child.wait().expect("wait for samba");
                *slot.lock().expect("exit slot") = Some(status);
            })
            .expect("spawn samba-dc thread");
        match rx.recv().expect("samba-dc thread") {
            Ok((pid, stdin)) => {
                self.pid = pid;
                self.exit = exit;
                self.stdin = Some(stdin);
                fs::write(&self.pid_file, pid.to_string()).expect("write the DC's pid file");
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Ends samba: EOF on its stdin, then SIGKILL by its PID after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.exit.lock().expect("exit slot").is_none() {
            if Instant::now() >= deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
            }
            assert!(
                Instant::now() < deadline + STOP_TIMEOUT,
                "samba (pid {}) did not exit even after SIGKILL",
                self.pid
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Where the fixture records the DC's PID for the watchdog (relative to the temp dir).
const PID_FILE: &str = "dc.pid";

/// Starts the watchdog that, once this process is gone, kills each DC by the PID recorded in
/// [`PID_FILE`] in `dir` or a directory below it (if it outlives its own EOF and death-signal
/// exits by 10 s) and removes `dir`.
pub(super) fn spawn_watchdog(dir: &Path) -> ChildStdin {
    // A zombie (dead, not yet reaped by init) counts as gone.
    const SCRIPT: &str = r#"cat >/dev/null
alive() { kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for file in "$1/dc.pid" "$1"/*/dc.pid; do
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    i=0
    while alive "$pid" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if alive "$pid"; then kill -KILL "$pid"; fi
  fi
done
if [ "$2" != keep ]; then rm -rf -- "$1"; fi
"#;
    let keep = if std::env::var_os(KEEP_DIR_ENV).is_some() {
        "keep"
    } else {
        "remove"
    };
    let mut child = Command::new("setsid")
        .args(["sh", "-c", SCRIPT, "pcsync-samba-watchdog"])
        .arg(dir)
        .arg(keep)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the samba watchdog (setsid sh)");
    let stdin = child.stdin.take().expect("piped stdin");
    // Reaps the watchdog should it ever exit before this process (it should not).
    thread::Builder::new()
        .name("samba-watchdog".to_owned())
        .spawn(move || {
            let _ = child.wait();
        })
        .expect("spawn samba-watchdog thread");
    stdin
}

// === seed ===

/// One msRTCSIP attribute as the fixture defines it in AD's schema.
struct SchemaAttribute {
    name: &'static str,
    /// Common name of the attributeSchema object (Lync's spelling).
    cn: &'static str,
    oid: &'static str,
    syntax: Syntax,
    single: bool,
    /// searchFlags 1: indexed (the SIP address is searched with `=*`).
    indexed: bool,
    /// isMemberOfPartialAttributeSet: replicated to the Global Catalog (Lync's schema marks the
    /// attributes a forest-wide user search needs).
    global_catalog: bool,
}

#[derive(Clone, Copy)]
enum Syntax {
    Unicode,
    Boolean,
    Integer,
    Dn,
}

/// Microsoft's arc for OIDs derived from a GUID (the method of Microsoft's "Obtaining an Object
/// Identifier" script), here from pcsync's private UUID 4ef4c0bb-424c-49d7-a737-4036694846d1.
/// schemas/msrtcsip.schema uses the same arc. (The shorter `2.25.<UUID as one decimal>` form is
/// refused by AD and Samba: "0000200B … attributeID … invalid value", arcs above 2^32.)
pub const AD_PRIVATE_ARC: &str =
    "1.2.840.113556.1.8000.2554.20212.49339.16972.18903.42807.4208233.4736721";

/// The attributes the fixture adds; names and published OIDs as in schemas/msrtcsip.schema.
const SCHEMA: &[SchemaAttribute] = &[
    SchemaAttribute {
        name: "msRTCSIP-PrimaryUserAddress",
        cn: "ms-RTC-SIP-PrimaryUserAddress",
        oid: "1.2.840.113556.1.6.24.1.1",
        syntax: Syntax::Unicode,
        single: true,
        indexed: true,
        global_catalog: true,
    },
    SchemaAttribute {
        name: "msRTCSIP-UserEnabled",
        cn: "ms-RTC-SIP-UserEnabled",
        oid: "1.2.840.113556.1.6.24.1.6",
        syntax: Syntax::Boolean,
        single: true,
        indexed: false,
        global_catalog: true,
    },
    SchemaAttribute {
        name: "msRTCSIP-TargetHomeServer",
        cn: "ms-RTC-SIP-TargetHomeServer",
        oid: "1.2.840.113556.1.6.24.1.47",
        syntax: Syntax::Dn,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-PrimaryHomeServer",
        cn: "ms-RTC-SIP-PrimaryHomeServer",
        oid: "1.2.840.113556.1.6.24.1.57",
        syntax: Syntax::Dn,
        single: true,
        indexed: false,
        global_catalog: true,
    },
    SchemaAttribute {
        name: "msRTCSIP-FederationEnabled",
        cn: "ms-RTC-SIP-FederationEnabled",
        oid: "1.2.840.113556.1.6.24.1.67",
        syntax: Syntax::Boolean,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-InternetAccessEnabled",
        cn: "ms-RTC-SIP-InternetAccessEnabled",
        oid: "1.2.840.113556.1.6.24.1.68",
        syntax: Syntax::Boolean,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-OptionFlags",
        cn: "ms-RTC-SIP-OptionFlags",
        oid: "1.2.840.113556.1.6.24.1.87",
        syntax: Syntax::Integer,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-Line",
        cn: "ms-RTC-SIP-Line",
        oid: "1.2.840.113556.1.6.24.1.88",
        syntax: Syntax::Unicode,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-OwnerUrn",
        cn: "ms-RTC-SIP-OwnerUrn",
        oid: "private.1.1",
        syntax: Syntax::Unicode,
        single: true,
        indexed: false,
        global_catalog: false,
    },
    SchemaAttribute {
        name: "msRTCSIP-ApplicationOptions",
        cn: "ms-RTC-SIP-ApplicationOptions",
        oid: "private.1.2",
        syntax: Syntax::Integer,
        single: true,
        indexed: false,
        global_catalog: false,
    },
];

/// attributeSchema LDIF for [`SCHEMA`]. Private OIDs (`private.x`) go under [`AD_PRIVATE_ARC`].
pub fn schema_ldif() -> String {
    let mut out = String::new();
    for a in SCHEMA {
        let oid = match a.oid.strip_prefix("private") {
            Some(rest) => format!("{AD_PRIVATE_ARC}{rest}"),
            None => a.oid.to_owned(),
        };
        // attributeSyntax, oMSyntax, and for DNs AD's oMObjectClass 1.3.12.2.1011.28.0.714.
        let syntax = match a.syntax {
            Syntax::Unicode => "attributeSyntax: 2.5.5.12\noMSyntax: 64\n",
            Syntax::Boolean => "attributeSyntax: 2.5.5.8\noMSyntax: 1\n",
            Syntax::Integer => "attributeSyntax: 2.5.5.9\noMSyntax: 2\n",
            Syntax::Dn => "attributeSyntax: 2.5.5.1\noMSyntax: 127\noMObjectClass:: KwwCh3McAIVK\n",
        };
        let _ = write!(
            out,
            "dn: CN={cn},{SCHEMA_DN}\n\
             objectClass: top\n\
             objectClass: attributeSchema\n\
             cn: {cn}\n\
             lDAPDisplayName: {name}\n\
             attributeID: {oid}\n\
             {syntax}\
             isSingleValued: {single}\n\
             searchFlags: {flags}\n\
             isMemberOfPartialAttributeSet: {gc}\n\n",
            cn = a.cn,
            name = a.name,
            single = if a.single { "TRUE" } else { "FALSE" },
            flags = u8::from(a.indexed),
            gc = if a.global_catalog { "TRUE" } else { "FALSE" },
        );
    }
    out
}

/// Configuration NC objects (relative to CN=Configuration,DC=contoso,DC=com), as in
/// tests/fixtures/contoso-config.ldif:
/// - `CN=RTC Service,CN=Services` (container), `CN=Pools,…` (container);
/// - `CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,…`: legacy Lync 2010 Group Chat pool
///   gc2010.contoso.com, where the well-known users are homed;
/// - `…CN=1:2…`: Persistent Chat pool (pcpool1 in openldap.toml, pcpool in
///   active-directory.toml): the migration target; the hand-made endpoint is homed here;
/// - `…CN=1:3…`: a second Persistent Chat pool (pcpool2.contoso.com);
/// - `CN=Application Contacts,CN=RTC Service,CN=Services` (container);
/// - `CN={4c2f6a1e-…}` in Application Contacts: hand-made endpoint contact for
///   sip:persistentchat@contoso.com, enabled, home 1:2, owner urn:application:persistentchat.
pub const SEED_CONFIG: &str = "\
dn: CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container
description: gc2010.contoso.com
displayName: Lync Server 2010 Group Chat pool (legacy)

dn: CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container
description: pcpool1.contoso.com
displayName: Lync Server 2013 Persistent Chat pool 1

dn: CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Microsoft,CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN=Lc Services,CN=Microsoft,CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container
description: pcpool2.contoso.com
displayName: Lync Server 2013 Persistent Chat pool 2

dn: CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: container

dn: CN={4c2f6a1e-7b3d-4e8a-9f51-0d6c2b8e3a17},CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
objectClass: contact
displayName: Persistent Chat endpoint (pcpool1.contoso.com)
msRTCSIP-PrimaryUserAddress: sip:persistentchat@contoso.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OwnerUrn: urn:application:persistentchat
";

/// Domain NC objects (relative to DC=contoso,DC=com; "home" = msRTCSIP-PrimaryHomeServer pool),
/// as in tests/fixtures/contoso-domain.ldif, plus AD-only shapes:
/// - `CN=Alice Archer,CN=Users`: sip:alice@contoso.com, TRUE, home 1:2 (AD's default container).
/// - `CN=Bob Baker,CN=Users`: sip:bob@fabrikam.com, TRUE, home 1:3.
/// - `CN=Carol Clark,CN=Users`: no SIP address.
/// - `OU=People`; `CN=Dave Dormant,OU=People`: sip:dave@contoso.com, FALSE, home 1:2, and the
///   AD account disabled (userAccountControl 514).
/// - `CN=Olivia Chatfan,OU=People`: sip:ocschat.fan@contoso.com, TRUE, home 1:1. DECOY.
/// - `CN=Adatum Lookup,OU=People`: sip:ocschat@adatum.com, TRUE, home 1:1. DECOY: shaped like a
///   well-known user, but no migration names adatum.com.
/// - `CN=Mallory Malformed,OU=People`: `mallory@contoso.com` (no `sip:`): a finding.
/// - `OU=Service Accounts`; `CN=OCSChat,…`: sip:ocschat@contoso.com, TRUE, home 1:1 (the
///   well-known user of contoso.com); `CN=OCSChat Fabrikam,…`: sip:ocschat@fabrikam.com, the
///   same for fabrikam.com. The service account `CN=svc-pcsync` is added by the seed too.
pub const SEED_DOMAIN: &str = "\
dn: OU=People,DC=contoso,DC=com
objectClass: organizationalUnit
description: Ordinary users outside CN=Users

dn: OU=Service Accounts,DC=contoso,DC=com
objectClass: organizationalUnit
description: Service accounts, including the Group Chat well-known users

dn: CN=Alice Archer,CN=Users,DC=contoso,DC=com
objectClass: user
sAMAccountName: alice
givenName: Alice
sn: Archer
displayName: Alice Archer
mail: alice@contoso.com
proxyAddresses: SMTP:alice@contoso.com
proxyAddresses: SIP:alice@contoso.com
msRTCSIP-PrimaryUserAddress: sip:alice@contoso.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 257
msRTCSIP-FederationEnabled: TRUE
msRTCSIP-InternetAccessEnabled: TRUE

dn: CN=Bob Baker,CN=Users,DC=contoso,DC=com
objectClass: user
sAMAccountName: bob
userPrincipalName: bob@contoso.com
displayName: Bob Baker
mail: bob@fabrikam.com
msRTCSIP-PrimaryUserAddress: sip:bob@fabrikam.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:3,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 385
msRTCSIP-Line: tel:+14255550102

dn: CN=Carol Clark,CN=Users,DC=contoso,DC=com
objectClass: user
sAMAccountName: carol
displayName: Carol Clark
mail: carol@contoso.com

dn: CN=Dave Dormant,OU=People,DC=contoso,DC=com
objectClass: user
sAMAccountName: dave
userAccountControl: 514
displayName: Dave Dormant
msRTCSIP-PrimaryUserAddress: sip:dave@contoso.com
msRTCSIP-UserEnabled: FALSE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 256

dn: CN=Olivia Chatfan,OU=People,DC=contoso,DC=com
objectClass: user
sAMAccountName: ocschat.fan
displayName: Olivia Chatfan
mail: ocschat.fan@contoso.com
msRTCSIP-PrimaryUserAddress: sip:ocschat.fan@contoso.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 257

dn: CN=Adatum Lookup,OU=People,DC=contoso,DC=com
objectClass: user
sAMAccountName: adatum-lookup
displayName: Group Chat Lookup Service (adatum.com, not migrated)
msRTCSIP-PrimaryUserAddress: sip:ocschat@adatum.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 256

dn: CN=Mallory Malformed,OU=People,DC=contoso,DC=com
objectClass: user
sAMAccountName: mallory
displayName: Mallory Malformed
msRTCSIP-PrimaryUserAddress: mallory@contoso.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com

dn: CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com
objectClass: user
sAMAccountName: OCSChat
userPrincipalName: ocschat@contoso.com
displayName: Group Chat Lookup Service
description: Lync 2010 Group Chat well-known (Lookup service) user for contoso.com
msRTCSIP-PrimaryUserAddress: sip:ocschat@contoso.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 256

dn: CN=OCSChat Fabrikam,OU=Service Accounts,DC=contoso,DC=com
objectClass: user
sAMAccountName: ocschat-fabrikam
displayName: Group Chat Lookup Service (fabrikam.com)
description: Lync 2010 Group Chat well-known (Lookup service) user for fabrikam.com
msRTCSIP-PrimaryUserAddress: sip:ocschat@fabrikam.com
msRTCSIP-UserEnabled: TRUE
msRTCSIP-PrimaryHomeServer: CN=Lc Services,CN=Microsoft,CN=1:1,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com
msRTCSIP-OptionFlags: 256
";

/// SIP-enabled objects of the seed: users in the domain NC (Alice, Bob, Dave, Olivia, Adatum
/// Lookup, Mallory, two OCSChat) and contacts in the configuration NC (the endpoint).
pub const SEED_SIP_USERS: usize = 8;
pub const SEED_SIP_CONTACTS: usize = 1;

impl SambaDc {
    pub(super) fn seed(&mut self) {
        self.add(&schema_ldif());
        let mut may_contain = String::new();
        for class in ["User", "Contact"] {
            let _ = writeln!(
                may_contain,
                "dn: CN={class},{SCHEMA_DN}\nchangetype: modify\nadd: mayContain"
            );
            for a in SCHEMA {
                let _ = writeln!(may_contain, "mayContain: {}", a.name);
            }
            may_contain.push_str("-\n\n");
        }
        may_contain
            .push_str("dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-\n");
        self.modify(&may_contain);
        self.add(SEED_CONFIG);
        self.add(SEED_DOMAIN);
        self.add(&format!(
            "dn: {SERVICE_DN}\n\
             objectClass: user\n\
             sAMAccountName: svc-pcsync\n\
             displayName: pcsync service account\n\
             description: Least-privilege bind account for pcsync (docs/active-directory.md)\n\
             userAccountControl: 512\n\
             unicodePwd:: {}\n",
            unicode_pwd(&self.service_password)
        ));
        self.service_sid = sid_to_string(&self.binary_attribute(SERVICE_DN, "objectSid"));
        let schema_objects = self.search_entries(
            SCHEMA_DN,
            "(|(lDAPDisplayName=contact)(lDAPDisplayName=user)(lDAPDisplayName=msRTCSIP-*))",
            &["lDAPDisplayName", "schemaIDGUID"],
        );
        self.schema_guids = schema_objects
            .into_iter()
            .map(|entry| {
                let name = entry.text("lDAPDisplayName");
                let guid = guid_to_string(&entry.binary("schemaIDGUID"));
                (name, guid)
            })
            .collect();
        self.grant_endpoint_rights();
        self.grant_recreate_rights();
        for user in WELL_KNOWN_USERS {
            self.make_retirable(user);
        }
    }

    /// Grants the retire rights on a well-known user and remembers its objectGUID.
    fn make_retirable(&self, dn: &str) {
        self.grant_retire_rights(dn);
        let guid = self.binary_attribute(dn, "objectGUID");
        let mut retirable = self.retirable.lock().expect("retirable");
        retirable.retain(|(d, _)| !d.eq_ignore_ascii_case(dn));
        retirable.push((dn.to_owned(), guid));
    }

    /// Whether `dn` is the very object that got the retire rights (not a re-created one).
    fn is_retirable(&self, dn: &str) -> bool {
        let guid = self.binary_attribute(dn, "objectGUID");
        self.retirable
            .lock()
            .expect("retirable")
            .iter()
            .any(|(d, g)| d.eq_ignore_ascii_case(dn) && *g == guid)
    }

    /// schemaIDGUID of a class or attribute the seed uses, by lDAPDisplayName.
    pub fn schema_guid(&self, name: &str) -> &str {
        self.schema_guids
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, guid)| guid.as_str())
            .unwrap_or_else(|| panic!("no schemaIDGUID read for {name}"))
    }

    /// The rights on Application Contacts: create and delete `contact` children, and write the
    /// properties of contacts below it. Nothing else (docs/active-directory.md).
    fn grant_endpoint_rights(&self) {
        let contact = self.schema_guid("contact");
        let sid = &self.service_sid;
        self.dsacl_set(
            ENDPOINT_CONTAINER_DN,
            &format!("(OA;;CCDC;{contact};;{sid})(OA;CIIO;WP;;{contact};{sid})"),
        );
    }

    /// The right on the well-known users' OU to create `user` objects (Create Child, user
    /// class only): with `retire = "delete"`, rolling back a failed swap and `pcsync restore`
    /// re-create a deleted well-known user from its before-image (docs/active-directory.md).
    fn grant_recreate_rights(&self) {
        let user = self.schema_guid("user");
        let sid = &self.service_sid;
        self.dsacl_set(WELL_KNOWN_USERS_OU, &format!("(OA;;CC;{user};;{sid})"));
    }

    /// The rights on one well-known user: delete it, and write its msRTCSIP attributes (for
    /// `retire = "disable"`). Public so a test can make another user retirable.
    pub fn grant_retire_rights(&self, user_dn: &str) {
        let sid = &self.service_sid;
        let mut sddl = format!("(A;;SD;;;{sid})");
        for a in SCHEMA {
            let _ = write!(sddl, "(OA;;WP;{};;{sid})", self.schema_guid(a.name));
        }
        self.dsacl_set(user_dn, &sddl);
    }

    /// `samba-tool dsacl set` on the DC's own database (safe while it runs: ldb locks it).
    pub fn dsacl_set(&self, dn: &str, sddl: &str) {
        let out = run(samba_tool()
            .args(["dsacl", "set", "-H"])
            .arg(self.dir.join("private/sam.ldb"))
            .arg("-s")
            .arg(self.dir.join("etc/smb.conf"))
            .arg(format!("--objectdn={dn}"))
            .arg(format!("--sddl={sddl}")));
        assert!(
            out.success(),
            "samba-tool dsacl set on {dn} failed:\n{}",
            out.both()
        );
    }

    /// Puts the seed back: re-adds seeded objects a test deleted (with their rights; also
    /// re-grants them on a well-known user that `pcsync restore` re-created), resets
    /// the seeded attributes of the others (and removes msRTCSIP attributes the seed does not
    /// give them), and deletes contacts in Application Contacts that the seed does not have.
    pub fn restore_seed(&self) {
        let existing = self.seed_area_dns();
        let mut resets = String::new();
        for record in SEED_CONFIG.split("\n\n").chain(SEED_DOMAIN.split("\n\n")) {
            let record = record.trim();
            if record.is_empty() {
                continue;
            }
            let dn = record
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("dn: "))
                .expect("seed record starts with dn:");
            let well_known = WELL_KNOWN_USERS.iter().any(|w| w.eq_ignore_ascii_case(dn));
            if existing.contains(&dn.to_ascii_lowercase()) {
                resets.push_str(&reset_ldif(record));
                // Re-created by `pcsync restore`: a new object with the default ACL.
                if well_known && !self.is_retirable(dn) {
                    self.make_retirable(dn);
                }
                continue;
            }
            self.add(record);
            if well_known {
                self.make_retirable(dn);
            }
        }
        if !resets.is_empty() {
            self.modify(&resets);
        }
        let listed = self.search(ENDPOINT_CONTAINER_DN, "(objectClass=contact)", &["1.1"]);
        for line in listed.lines() {
            if let Some(dn) = line.strip_prefix("dn: ")
                && !dn.eq_ignore_ascii_case(ENDPOINT_DN)
            {
                self.delete(dn);
            }
        }
    }
}

/// The subtrees that hold every seeded object.
const SEED_AREAS: [&str; 4] = [
    "CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
    "OU=People,DC=contoso,DC=com",
    "OU=Service Accounts,DC=contoso,DC=com",
    "CN=Users,DC=contoso,DC=com",
];

impl SambaDc {
    /// Lower-cased DNs of every object in [`SEED_AREAS`]: one search each instead of a base
    /// search per seed record (each `ldapsearch` is a process and a TLS handshake).
    fn seed_area_dns(&self) -> std::collections::HashSet<String> {
        let mut dns = std::collections::HashSet::new();
        for base in SEED_AREAS {
            let out = self.search_output(
                self.admin_command("ldapsearch"),
                base,
                "(objectClass=*)",
                &["1.1"],
            );
            match out.code {
                Some(0) => {}
                Some(32) => continue,
                _ => panic!("ldapsearch under {base} failed:\n{}", out.both()),
            }
            dns.extend(
                out.stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("dn: "))
                    .map(str::to_ascii_lowercase),
            );
        }
        dns
    }
}

/// A modify record that sets every attribute of the seed `record` back to its seeded values
/// and, for users and contacts, clears the msRTCSIP attributes the record does not have.
fn reset_ldif(record: &str) -> String {
    let mut lines = record.lines();
    let dn = lines.next().expect("dn line");
    let mut attrs: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut sip_capable = false;
    for line in lines {
        let (name, value) = line.split_once(": ").expect("attr: value");
        if name.eq_ignore_ascii_case("objectClass") {
            sip_capable |= value == "user" || value == "contact";
            continue;
        }
        match attrs.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, values)) => values.push(value),
            None => attrs.push((name, vec![value])),
        }
    }
    if attrs.is_empty() && !sip_capable {
        // A bare container: nothing to reset (AD refuses an empty modify).
        return String::new();
    }
    let mut out = format!("{dn}\nchangetype: modify\n");
    for (name, values) in &attrs {
        let _ = writeln!(out, "replace: {name}");
        for value in values {
            let _ = writeln!(out, "{name}: {value}");
        }
        out.push_str("-\n");
    }
    if sip_capable {
        for a in SCHEMA {
            if !attrs.iter().any(|(n, _)| n.eq_ignore_ascii_case(a.name)) {
                let _ = write!(out, "replace: {}\n-\n", a.name);
            }
        }
    }
    out.push('\n');
    out
}

// === LDAP helpers ===

impl SambaDc {
    /// An LDAP client tool trusting the test CA (no URL or bind arguments yet); run it with
    /// [`run`].
    pub fn ldap_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(tool(program));
        cmd.env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand");
        cmd
    }

    /// `program -x -H <ldaps> -D <Administrator> -y <password file>`.
    pub fn admin_command(&self, program: &str) -> Command {
        self.bound_command(program, &self.admin_dn, &self.admin_password_file)
    }

    /// `program -x -H <ldaps> -D <svc-pcsync> -y <password file>`.
    pub fn service_command(&self, program: &str) -> Command {
        self.bound_command(program, &self.service_dn, &self.service_password_file)
    }

    fn bound_command(&self, program: &str, dn: &str, password_file: &Path) -> Command {
        let mut cmd = self.ldap_command(program);
        cmd.args(["-x", "-H", &self.ldaps_url, "-D", dn, "-y"])
            .arg(password_file);
        cmd
    }

    /// `ldapadd` as Administrator; panics with the tool's output on failure.
    pub fn add(&self, ldif: &str) {
        if let Err(e) = self.try_add(ldif) {
            panic!("ldapadd failed: {e}");
        }
    }

    pub fn try_add(&self, ldif: &str) -> Result<(), String> {
        self.change(self.admin_command("ldapadd"), "ldapadd", ldif)
    }

    /// `ldapmodify` as Administrator (records with `changetype:`); panics on failure.
    pub fn modify(&self, ldif: &str) {
        if let Err(e) = self.try_modify(ldif) {
            panic!("ldapmodify failed: {e}");
        }
    }

    pub fn try_modify(&self, ldif: &str) -> Result<(), String> {
        self.change(self.admin_command("ldapmodify"), "ldapmodify", ldif)
    }

    /// `ldapdelete` as Administrator; panics on failure.
    pub fn delete(&self, dn: &str) {
        let out = run(self.admin_command("ldapdelete").arg(dn));
        assert!(out.success(), "ldapdelete {dn} failed:\n{}", out.both());
    }

    /// `ldapadd`/`ldapmodify`/`ldapdelete` as the service account: what pcsync may do.
    pub fn service_change(&self, program: &str, ldif_or_dn: &str) -> Result<(), String> {
        if program == "ldapdelete" {
            let out = run(self.service_command(program).arg(ldif_or_dn));
            return if out.success() {
                Ok(())
            } else {
                Err(out.both())
            };
        }
        self.change(self.service_command(program), program, ldif_or_dn)
    }

    fn change(&self, cmd: Command, program: &str, ldif: &str) -> Result<(), String> {
        run_ldif(cmd, &self.dir, &self.ldif_seq, program, ldif)
    }

    /// `ldapsearch -LLL -o ldif-wrap=no` (subtree) as Administrator; panics on failure.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        self.try_search(base, filter, attrs)
            .unwrap_or_else(|e| panic!("ldapsearch -b {base:?} {filter:?} failed:\n{e}"))
    }

    pub fn try_search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<String, String> {
        let out = self.search_output(self.admin_command("ldapsearch"), base, filter, attrs);
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.both())
        }
    }

    /// The raw `ldapsearch` run as the service account, for rc and diagnostics.
    pub fn search_as_service(&self, base: &str, filter: &str, attrs: &[&str]) -> ToolOutput {
        self.search_output(self.service_command("ldapsearch"), base, filter, attrs)
    }

    fn search_output(&self, cmd: Command, base: &str, filter: &str, attrs: &[&str]) -> ToolOutput {
        ldapsearch(cmd, base, filter, attrs)
    }

    /// Number of entries under `base` (subtree, as Administrator) matching `filter`.
    pub fn count(&self, base: &str, filter: &str) -> usize {
        count_entries(&self.search(base, filter, &["1.1"]))
    }

    /// Whether `dn` exists (base search as Administrator; LDAP 32 means no).
    pub fn exists(&self, dn: &str) -> bool {
        let out = run(self.admin_command("ldapsearch").args([
            "-LLL",
            "-s",
            "base",
            "-b",
            dn,
            "(objectClass=*)",
            "1.1",
        ]));
        match out.code {
            Some(0) => true,
            Some(32) => false,
            _ => panic!("ldapsearch of {dn} failed:\n{}", out.both()),
        }
    }

    /// DN of a pool's service object: `"1:2"` -> `CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,…`.
    pub fn pool_dn(&self, site_id: &str) -> String {
        format!("CN=Lc Services,CN=Microsoft,CN={site_id},{POOLS_DN}")
    }

    /// `CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com`.
    pub fn endpoint_container(&self) -> String {
        ENDPOINT_CONTAINER_DN.to_owned()
    }

    /// Samba's log (its stdout/stderr and `log file`).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of Samba's log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Whether the samba process is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let process = self.process.lock().expect("samba process");
        *process.exit.lock().expect("exit slot")
    }

    /// The single binary value of `attr` on `dn`.
    fn binary_attribute(&self, dn: &str, attr: &str) -> Vec<u8> {
        let entries = self.search_entries(dn, "(objectClass=*)", &[attr]);
        entries
            .first()
            .unwrap_or_else(|| panic!("{dn} not found"))
            .binary(attr)
    }

    /// Entries with every value as raw bytes (`ldapsearch` base64s binary values); the DN is
    /// the value named `dn`.
    pub fn search_entries(&self, base: &str, filter: &str, attrs: &[&str]) -> Vec<LdifEntry> {
        parse_ldif(&self.search(base, filter, attrs))
    }

    /// [`SambaDc::search_entries`] with a scope (`base`, `one`, `sub`).
    pub fn search_entries_scoped(
        &self,
        base: &str,
        scope: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Vec<LdifEntry> {
        let out = run(self
            .admin_command("ldapsearch")
            .args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-s",
                scope,
                "-b",
                base,
                filter,
            ])
            .args(attrs));
        assert!(
            out.success(),
            "ldapsearch -b {base:?} -s {scope}:\n{}",
            out.both()
        );
        parse_ldif(&out.stdout)
    }
}

/// One entry of `ldapsearch -LLL -o ldif-wrap=no` output, values decoded.
pub struct LdifEntry {
    values: Vec<(String, Vec<u8>)>,
}

impl LdifEntry {
    /// The first value of `attr`; panics when the entry has none.
    pub fn binary(&self, attr: &str) -> Vec<u8> {
        self.values
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {attr} in entry"))
    }

    pub fn text(&self, attr: &str) -> String {
        String::from_utf8(self.binary(attr)).expect("UTF-8 value")
    }
}

fn parse_ldif(text: &str) -> Vec<LdifEntry> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| LdifEntry {
            values: block
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|line| {
                    if let Some((name, b64)) = line.split_once(":: ") {
                        Some((name.to_owned(), base64_decode(b64)))
                    } else {
                        line.split_once(": ")
                            .map(|(name, v)| (name.to_owned(), v.as_bytes().to_vec()))
                    }
                })
                .collect(),
        })
        .collect()
}

// === encodings ===

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for LDIF `attr:: value`).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let v = BASE64
            .iter()
            .position(|b| *b == c)
            .unwrap_or_else(|| panic!("not base64: {text}")) as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    out
}

/// AD's `unicodePwd` value: the quoted password in UTF-16LE, base64 for LDIF.
pub fn unicode_pwd(password: &str) -> String {
    let quoted = format!("\"{password}\"");
    let bytes: Vec<u8> = quoted.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64_encode(&bytes)
}

/// A binary objectSid as `S-1-5-21-…`.
pub fn sid_to_string(sid: &[u8]) -> String {
    assert!(sid.len() >= 8, "objectSid too short: {sid:?}");
    let authority = sid[2..8].iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    let mut out = format!("S-{}-{authority}", sid[0]);
    for sub in sid[8..].chunks_exact(4) {
        let _ = write!(
            out,
            "-{}",
            u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]])
        );
    }
    out
}

/// A binary GUID (AD's mixed-endian layout) as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn guid_to_string(g: &[u8]) -> String {
    assert_eq!(g.len(), 16, "GUID must be 16 bytes: {g:?}");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let rev = |bytes: &[u8]| bytes.iter().rev().copied().collect::<Vec<u8>>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&rev(&g[0..4])),
        hex(&rev(&g[4..6])),
        hex(&rev(&g[6..8])),
        hex(&g[8..10]),
        hex(&g[10..16])
    )
}

// === test isolation and the Backend of the shared harnesses ===

/// Puts a fixture's seed back when a test starts and when it ends, pass or fail, so a failed
/// test does not poison the next.
pub struct Seed<'a> {
    put_back: Box<dyn Fn() + 'a>,
}

impl<'a> Seed<'a> {
    /// The single DC's seed, after removing the extra objects the test names.
    pub fn reset(dc: &'a SambaDc, extra: &[&str]) -> Seed<'a> {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Seed::with(move || {
            for dn in &extra {
                if dc.exists(dn) {
                    dc.delete(dn);
                }
            }
            dc.restore_seed();
        })
    }

    /// Runs `put_back` now, and again when dropped.
    pub fn with(put_back: impl Fn() + 'a) -> Seed<'a> {
        put_back();
        Seed {
            put_back: Box::new(put_back),
        }
    }
}

impl Drop for Seed<'_> {
    fn drop(&mut self) {
        // A panic here while the test is already panicking would abort the whole run.
        let put_back = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.put_back)()));
        if put_back.is_err() && !std::thread::panicking() {
            panic!("restoring the Samba seed failed");
        }
    }
}

impl super::Backend for SambaDc {
    fn config(&self) -> PathBuf {
        super::repo("config/active-directory.toml")
    }

    /// config/active-directory.toml changed only in URL, CA and credentials; its audit log and
    /// state dir (under /var/lib/pcsync) move into the working directory.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PCSYNC__DIRECTORY__URL", self.ldaps_url.clone()),
            (
                "PCSYNC__DIRECTORY__TLS_CA_FILE",
                self.ca_file.display().to_string(),
            ),
            (
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                self.service_password_file.display().to_string(),
            ),
            ("PCSYNC__AUDIT__PATH", "var/audit.jsonl".to_owned()),
            ("PCSYNC__STATE__DIR", "var/state".to_owned()),
        ]
    }

    /// None: the shipped cron and `daemon.poll_interval` (the default, 2 s) stay in force, so
    /// the AD tests prove what an administrator gets.
    fn harness_timings(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_known_values() {
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"M"), "TQ==");
        assert_eq!(base64_decode("TWFuTWE="), b"ManMa");
        // The DN oMObjectClass, 1.3.12.2.1011.28.0.714.
        assert_eq!(
            base64_decode("KwwCh3McAIVK"),
            [0x2b, 0x0c, 0x02, 0x87, 0x73, 0x1c, 0x00, 0x85, 0x4a]
        );
        assert_eq!(
            sid_to_string(&base64_decode("AQUAAAAAAAUVAAAAijeEm4zAWpzFE8nMTwQAAA==")),
            "S-1-5-21-2609133450-2623193228-3435729861-1103"
        );
        // contact's schemaIDGUID as AD stores it.
        let contact = [
            0xd0, 0x1e, 0xb4, 0x5c, 0x4c, 0x0e, 0xd0, 0x11, 0xa2, 0x86, 0x00, 0xaa, 0x00, 0x30,
            0x49, 0xe2,
        ];
        assert_eq!(
            guid_to_string(&contact),
            "5cb41ed0-0e4c-11d0-a286-00aa003049e2"
        );
        assert_eq!(unicode_pwd("a"), base64_encode(b"\"\0a\0\"\0"));
    }
}
