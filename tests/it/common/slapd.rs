//! A real, throwaway OpenLDAP per test, shaped like pcsync's production Active Directory.
//!
//! Every [`Slapd`] lives in its own `TempDir`: slapd.conf, a private CA and server certificate made
//! with rcgen, two mdb databases loaded with `slapadd` before slapd starts, password files and
//! slapd's log. It listens on free loopback ports (`ldap://` with StartTLS, `ldaps://`, and an
//! `ldapi://` socket in the temp dir) and is killed by PID on drop. Every wait is bounded.
//!
//! Directory layout, like AD: two naming contexts in two databases that are NOT glued, so a subtree
//! search of `dc=contoso,dc=com` never reaches `cn=Configuration,dc=contoso,dc=com`. The config
//! database is declared first (slapd wants the more specific suffix first). Identities:
//! - `cn=admin,dc=contoso,dc=com` is the rootdn of BOTH databases. Its `rootpw` sits in the domain
//!   database (a simple bind is routed to the database holding the bind DN); the config database
//!   names the same rootdn without a password, so the bound admin is root there too (manage, no
//!   limits, no ACLs). ldapi + SASL EXTERNAL from any local uid also maps to the admin.
//! - `cn=pcsync-reader,ou=Service Accounts,dc=contoso,dc=com` is a `person` entry the harness adds to
//!   the domain data (with `ou=Service Accounts` if the fixture lacks it). Both databases grant
//!   `read` to every authenticated identity (AD's "Authenticated Users"), nothing to anonymous
//!   except the rootDSE and the subschema, and `auth` on userPassword; so the reader is read-only.
//! - `size_limit(n)` applies `sizelimit size.soft=n size.hard=n size.prtotal=unlimited` to both
//!   databases: non-admin unpaged searches stop at n entries (rc 4) like AD's MaxPageSize, paged
//!   searches get everything. The rootdn is never limited.
//! - `syncprov(false)` leaves the syncprov overlay off both databases (the module stays loaded,
//!   so the root DSE may still list the control): a server where syncrepl searches fail.
//!
//! DN spelling: the fixture writes AD's `CN=…,DC=…`. slapd keeps it in DN-valued attributes but
//! returns entry DNs as `cn=…,ou=…,dc=…` (schema case), so compare DNs case-insensitively.
//!
//! slapd runs with `-d none` rather than `-d 0`: it stays in the foreground either way, but `none`
//! still prints errors such as "bind(7) failed errno=98", which the port-race retry and the panic
//! messages rely on.

// Shared by every integration-test module; not every module uses every helper.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use tempfile::TempDir;

/// Suffix of the domain naming context (users).
pub const DOMAIN_DN: &str = "dc=contoso,dc=com";
/// Suffix of the configuration naming context (pools, Application Contacts).
pub const CONFIG_DN: &str = "cn=Configuration,dc=contoso,dc=com";
/// rootdn of both databases.
pub const ADMIN_DN: &str = "cn=admin,dc=contoso,dc=com";
/// Read-only, non-admin service account added by the harness.
pub const READER_DN: &str = "cn=pcsync-reader,ou=Service Accounts,dc=contoso,dc=com";
/// Where Lync keeps pools, in the fixture's (AD's) spelling.
pub const POOLS_DN: &str = "CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";
/// Where New-CsPersistentChatEndpoint creates legacy endpoints, in the fixture's spelling.
pub const ENDPOINT_CONTAINER_DN: &str =
    "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com";

/// How long slapd may take to answer its first rootDSE search.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval of every readiness/exit poll (the only sleeps in this module).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Upper bound for one readiness probe (a slow probe is retried until `READY_TIMEOUT`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one run of an LDAP command-line tool (generous: CI machines are loaded).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed slapd may take to exit before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts, each on fresh ports, when slapd exits early (another process took a port).
const START_ATTEMPTS: usize = 5;
/// Set this variable to keep each instance's temp dir (config, data, log) after the test.
pub const KEEP_DIR_ENV: &str = "PCSYNC_KEEP_SLAPD_DIR";

/// Path of a file shipped in the repository, e.g. `repo_path("schemas/msrtcsip.schema")`.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Absolute path of an OpenLDAP program; panics with install instructions when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let fixed = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: install it with `apt-get install slapd ldap-utils` (as root), \
                 or run scripts/test.sh which installs it"
            )
        })
}

/// A loopback port that was free a moment ago (bind to port 0, read it, drop the socket).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct loopback ports that were free a moment ago.
pub fn free_ports<const N: usize>() -> [u16; N] {
    // Hold every listener until all ports are known, so the N ports differ.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local_addr").port())
}

/// Output of one command-line tool run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, for assertion messages.
    pub fn both(&self) -> String {
        format!("exit code {:?}\n{}{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin closed, output captured) and panics if it outlives `TOOL_TIMEOUT`.
pub fn run(cmd: &mut Command) -> ToolOutput {
    run_with_timeout(cmd, TOOL_TIMEOUT).unwrap_or_else(|partial| {
        panic!("{cmd:?} did not finish within {TOOL_TIMEOUT:?}; output so far:\n{partial}")
    })
}

/// Runs `cmd` with a deadline. `Err` carries whatever it printed before it was killed.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<ToolOutput, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain both pipes on threads so a chatty tool never blocks on a full pipe while we poll.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_bounded(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = ToolOutput {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    match status {
        Some(_) => Ok(output),
        None => Err(output.both()),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit, polling with a back-off from 1 ms up to `POLL_INTERVAL`, at most
/// `timeout`. `None` when it is still running.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(POLL_INTERVAL);
    }
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Writes `contents` to `path` with mode 0600 (password files: no trailing newline).
pub fn write_private(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

/// A random lowercase hex string: per-instance passwords, so no test can hard-code one.
pub fn random_hex() -> String {
    // RandomState is seeded from the OS once per thread and bumped per instance: good enough for
    // throwaway passwords, and it needs no extra crate.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

// === PKI ===

/// PEM files of a private CA and a server certificate signed by it.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate: what clients must trust.
    pub ca_file: PathBuf,
    /// The server certificate (SANs 127.0.0.1, ::1, localhost).
    pub cert_file: PathBuf,
    /// The server's private key, PKCS#8 PEM (ECDSA P-256), which GnuTLS reads as is.
    pub key_file: PathBuf,
}

/// The names the test server certificate is valid for by default.
pub const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Generates a fresh CA and a server certificate with rcgen (ring) into `dir` as
/// `<prefix>ca.pem`, `<prefix>server.pem` and `<prefix>server.key`.
pub fn write_test_pki(dir: &Path, prefix: &str) -> TestPki {
    write_test_pki_for(dir, prefix, &SERVER_NAMES)
}

/// Like [`write_test_pki`] with a server certificate valid only for `names` (DNS names or IP
/// addresses), e.g. one that does not match the address a client connects to.
pub fn write_test_pki_for(dir: &Path, prefix: &str, names: &[&str]) -> TestPki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("pcsync test CA {prefix}{}", random_hex()),
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = date_time_ymd(2020, 1, 1);
    ca_params.not_after = date_time_ymd(2100, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("server params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("sign server cert");

    let pki = TestPki {
        ca_file: dir.join(format!("{prefix}ca.pem")),
        cert_file: dir.join(format!("{prefix}server.pem")),
        key_file: dir.join(format!("{prefix}server.key")),
    };
    fs::write(&pki.ca_file, ca_cert.pem()).expect("write CA");
    fs::write(&pki.cert_file, server_cert.pem()).expect("write server cert");
    write_private(&pki.key_file, &server_key.serialize_pem());
    pki
}

// === impl SlapdProcess ===

/// A running slapd child process. Dropping it kills the process (by its own PID) and reaps it.
#[derive(Debug)]
pub struct SlapdProcess {
    child: Child,
    log: PathBuf,
}

/// Why [`SlapdProcess::launch`] failed.
#[derive(Debug)]
pub enum LaunchError {
    /// slapd exited before it was ready (typically a port taken by someone else). Carries the
    /// exit status and the log tail.
    ExitedEarly(String),
    /// slapd kept running but never answered within `READY_TIMEOUT`; it has been killed.
    NotReady(String),
}

impl SlapdProcess {
    /// Starts `slapd -d none <config_args> -h "<urls>"` with output appended to `log`, and waits
    /// until `probe` (an `ldap://` URL among `urls`) accepts TCP connections and answers an
    /// anonymous rootDSE search.
    pub fn launch(
        config_args: &[OsString],
        urls: &[String],
        probe: &str,
        log: &Path,
    ) -> Result<SlapdProcess, LaunchError> {
        let probe_addr = socket_addr_of(probe);
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let child = Command::new(tool("slapd"))
            .args(["-d", "none"])
            .args(config_args)
            .arg("-h")
            .arg(urls.join(" "))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start slapd: {e}"));
        let mut process = SlapdProcess {
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // Sleep first: slapd needs longer than one interval to start, and a bind failure makes
            // it exit within milliseconds, so the exit is seen before a probe could reach a
            // foreign listener that took the port.
            thread::sleep(POLL_INTERVAL);
            if let Some(status) = process.child.try_wait().expect("try_wait slapd") {
                return Err(LaunchError::ExitedEarly(format!(
                    "slapd exited early ({status}); log tail:\n{}",
                    log_tail(log, 40)
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                process.kill();
                return Err(LaunchError::NotReady(format!(
                    "slapd not ready on {probe} within {READY_TIMEOUT:?}; log tail:\n{}",
                    log_tail(log, 40)
                )));
            }
            if is_ready(probe_addr, probe, (deadline - now).min(PROBE_TIMEOUT)) {
                return Ok(process);
            }
        }
    }

    /// slapd's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Graceful stop: SIGTERM (so mdb and syncprov shut down cleanly), then SIGKILL if slapd is
    /// still running after `STOP_TIMEOUT`.
    pub fn stop(mut self) {
        if self.child.try_wait().expect("try_wait slapd").is_none() {
            // std only sends SIGKILL; `kill -TERM <our child's pid>` is safe because the child is
            // not reaped yet, so its PID cannot have been reused.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if wait_bounded(&mut self.child, STOP_TIMEOUT).is_none() {
                eprintln!(
                    "slapd {} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it. Log tail:\n{}",
                    self.child.id(),
                    log_tail(&self.log, 20)
                );
            }
        }
        // Drop does the SIGKILL + reap if it is still needed.
    }

    fn kill(&mut self) {
        // Both are no-ops on a child that has already been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SlapdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn socket_addr_of(ldap_url: &str) -> SocketAddr {
    let rest = ldap_url
        .strip_prefix("ldap://")
        .unwrap_or_else(|| panic!("readiness probe must be an ldap:// URL, got {ldap_url}"));
    rest.trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("bad host:port in {ldap_url}: {e}"))
}

/// One readiness probe: TCP connect, then an anonymous rootDSE search, within `timeout`.
fn is_ready(addr: SocketAddr, url: &str, timeout: Duration) -> bool {
    if TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(1))).is_err() {
        return false;
    }
    let probe = run_with_timeout(
        // LDAPNOINIT: no ldap.conf/.ldaprc/LDAP* defaults (a BINDDN there would break the probe).
        Command::new(tool("ldapsearch"))
            .env("LDAPNOINIT", "1")
            .args([
                "-x",
                "-H",
                url,
                "-o",
                "nettimeout=2",
                "-LLL",
                "-b",
                "",
                "-s",
                "base",
                "1.1",
            ]),
        timeout,
    );
    matches!(probe, Ok(out) if out.success())
}

/// Starts slapd on one free `ldap://127.0.0.1:<port>/` plus `extra_urls`, retrying on fresh ports
/// when slapd exits early. Returns the process and its ldap URL; panics after `START_ATTEMPTS`.
pub fn launch_on_free_port(
    config_args: &[OsString],
    extra_urls: &[String],
    log: &Path,
) -> (SlapdProcess, String) {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let url = format!("ldap://127.0.0.1:{}/", free_port());
        let mut urls = vec![url.clone()];
        urls.extend_from_slice(extra_urls);
        match SlapdProcess::launch(config_args, &urls, &url, log) {
            Ok(process) => return (process, url),
            Err(LaunchError::ExitedEarly(why)) => last = why,
            Err(LaunchError::NotReady(why)) => panic!("{why}"),
        }
    }
    panic!("slapd failed to start {START_ATTEMPTS} times; last failure: {last}")
}

// === impl SlapdBuilder ===

/// Options for [`Slapd`]. Defaults: the contoso fixture, TLS on, no size limit.
#[derive(Debug, Clone)]
pub struct SlapdBuilder {
    domain_ldif: String,
    config_ldif: String,
    extra_domain: Vec<String>,
    extra_config: Vec<String>,
    size_limit: Option<u32>,
    tls: bool,
    /// Names on the server certificate; `None`: [`SERVER_NAMES`].
    tls_names: Option<Vec<String>>,
    /// The admin's password; `None`: a random one.
    admin_password: Option<String>,
    syncprov: bool,
    /// A second domain naming context in its own database (see [`SlapdBuilder::second_domain`]).
    second_domain: Option<SecondDomain>,
}

/// A second domain of a forest: its own database, a schema of its own (e.g. AD's `crossRef`),
/// and more loopback addresses to listen on, on the same ports.
#[derive(Debug, Clone)]
struct SecondDomain {
    suffix: String,
    ldif: String,
    schema: String,
    listen: Vec<String>,
}

impl Default for SlapdBuilder {
    fn default() -> Self {
        SlapdBuilder {
            domain_ldif: read_repo_file("tests/fixtures/contoso-domain.ldif"),
            config_ldif: read_repo_file("tests/fixtures/contoso-config.ldif"),
            extra_domain: Vec::new(),
            extra_config: Vec::new(),
            size_limit: None,
            tls: true,
            tls_names: None,
            admin_password: None,
            syncprov: true,
            second_domain: None,
        }
    }
}

fn read_repo_file(relative: &str) -> String {
    read_file(&repo_path(relative))
}

fn read_file(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

impl SlapdBuilder {
    /// Replaces the whole fixture. `domain_ldif` must contain the `dc=contoso,dc=com` entry and
    /// `config_ldif` the `cn=Configuration,dc=contoso,dc=com` entry (either may be otherwise
    /// empty). The reader account is still added.
    pub fn fixture_ldif(mut self, domain_ldif: &str, config_ldif: &str) -> Self {
        domain_ldif.clone_into(&mut self.domain_ldif);
        config_ldif.clone_into(&mut self.config_ldif);
        self
    }

    /// Like [`Self::fixture_ldif`] from files; relative paths are relative to the repository root.
    pub fn fixture_files(self, domain: impl AsRef<Path>, config: impl AsRef<Path>) -> Self {
        let domain = read_file(&repo_path("").join(domain));
        let config = read_file(&repo_path("").join(config));
        self.fixture_ldif(&domain, &config)
    }

    /// Appends entries (LDIF content records) to the domain naming context's data.
    pub fn extra_domain_ldif(mut self, ldif: &str) -> Self {
        self.extra_domain.push(ldif.to_owned());
        self
    }

    /// Appends entries (LDIF content records) to the configuration naming context's data.
    pub fn extra_config_ldif(mut self, ldif: &str) -> Self {
        self.extra_config.push(ldif.to_owned());
        self
    }

    /// AD-like hard size limit for every non-admin identity; paged searches are not capped.
    pub fn size_limit(mut self, n: u32) -> Self {
        self.size_limit = Some(n);
        self
    }

    /// The syncprov overlay on both databases (default) or on neither.
    pub fn syncprov(mut self, on: bool) -> Self {
        self.syncprov = on;
        self
    }

    /// TLS on (default) or off. Off: no certificates, no `ldaps://` listener, `ldaps_url` and
    /// `ca_file` are empty, and StartTLS is refused.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// A server certificate valid only for `names` (instead of 127.0.0.1, ::1 and localhost), to
    /// test that clients check the name they connect to.
    pub fn tls_names(mut self, names: &[&str]) -> Self {
        self.tls_names = Some(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }

    /// A chosen admin password instead of a random one (e.g. a canary a test greps for). It is
    /// written into slapd.conf in double quotes, so it must not contain `"` or a backslash.
    pub fn admin_password(mut self, password: &str) -> Self {
        assert!(
            !password.contains(['"', '\\', '\n']),
            "admin password must not contain a double quote, a backslash or a line break"
        );
        self.admin_password = Some(password.to_owned());
        self
    }

    /// A second domain naming context `suffix` (e.g. `dc=fabrikam,dc=com`) in a database of its
    /// own, loaded from `ldif`; `schema` (slapd.conf schema text) is included too; slapd also
    /// listens on each of the loopback addresses `listen` (same ports), and logs every
    /// connection and operation (`loglevel stats`) to `stats.log` in its dir, where a test can
    /// see which address received which write.
    pub fn second_domain(
        mut self,
        suffix: &str,
        ldif: &str,
        schema: &str,
        listen: &[&str],
    ) -> Self {
        self.second_domain = Some(SecondDomain {
            suffix: suffix.to_owned(),
            ldif: ldif.to_owned(),
            schema: schema.to_owned(),
            listen: listen.iter().map(|a| (*a).to_owned()).collect(),
        });
        self
    }

    /// Writes config and data, loads the data with slapadd and starts slapd on free ports.
    pub fn start(self) -> Slapd {
        for name in [
            "slapd",
            "slapadd",
            "ldapsearch",
            "ldapadd",
            "ldapmodify",
            "ldapdelete",
        ] {
            tool(name);
        }
        let tmp = tempfile::Builder::new()
            .prefix("pcsync-slapd-")
            .tempdir()
            .expect("create temp dir");
        let dir = tmp.path().to_owned();
        let admin_password = self
            .admin_password
            .clone()
            .unwrap_or_else(|| format!("admin-{}", random_hex()));
        let reader_password = format!("reader-{}", random_hex());
        let admin_password_file = dir.join("admin.pw");
        let reader_password_file = dir.join("reader.pw");
        write_private(&admin_password_file, &admin_password);
        write_private(&reader_password_file, &reader_password);

        let pki = self.tls.then(|| match &self.tls_names {
            Some(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                write_test_pki_for(&dir, "", &names)
            }
            None => write_test_pki(&dir, ""),
        });
        // Unix socket paths are limited to 108 bytes; skip ldapi when TMPDIR is very long.
        let socket = dir.join("ldapi");
        let ldapi_url = if socket.as_os_str().len() < 100 {
            format!("ldapi://{}", percent_encode_path(&socket))
        } else {
            String::new()
        };

        let conf = dir.join("slapd.conf");
        let mut conf_text = slapd_conf(
            &dir,
            &admin_password,
            self.size_limit,
            self.syncprov,
            pki.as_ref(),
        );
        if let Some(second) = &self.second_domain {
            let schema = dir.join("second-domain.schema");
            fs::write(&schema, &second.schema).expect("write the second domain's schema");
            conf_text = second_domain_conf(&conf_text, &dir, &schema, &second.suffix);
            fs::create_dir(dir.join("db-second")).expect("create db dir");
        }
        fs::write(&conf, conf_text).expect("write slapd.conf");
        for db in ["db-config", "db-domain"] {
            fs::create_dir(dir.join(db)).expect("create db dir");
        }

        let reader_entry = reader_ldif(&self.domain_ldif, &reader_password);
        let mut domain_parts = vec![self.domain_ldif.as_str()];
        domain_parts.extend(self.extra_domain.iter().map(String::as_str));
        domain_parts.push(&reader_entry);
        let mut config_parts = vec![self.config_ldif.as_str()];
        config_parts.extend(self.extra_config.iter().map(String::as_str));
        slapadd(
            &conf,
            CONFIG_DN,
            &join_ldif(&config_parts),
            &dir.join("config.ldif"),
        );
        slapadd(
            &conf,
            DOMAIN_DN,
            &join_ldif(&domain_parts),
            &dir.join("domain.ldif"),
        );
        if let Some(second) = &self.second_domain {
            slapadd(
                &conf,
                &second.suffix,
                &second.ldif,
                &dir.join("second.ldif"),
            );
        }

        let log = dir.join("slapd.log");
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let [plain, secure] = free_ports::<2>();
            let ldap_url = format!("ldap://127.0.0.1:{plain}/");
            let ldaps_url = if pki.is_some() {
                format!("ldaps://127.0.0.1:{secure}/")
            } else {
                String::new()
            };
            let mut urls: Vec<String> = [&ldap_url, &ldaps_url, &ldapi_url]
                .into_iter()
                .filter(|u| !u.is_empty())
                .cloned()
                .collect();
            for address in self.second_domain.iter().flat_map(|d| &d.listen) {
                urls.push(format!("ldap://{address}:{plain}/"));
                if pki.is_some() {
                    urls.push(format!("ldaps://{address}:{secure}/"));
                }
            }
            note(
                &log,
                &format!("attempt {attempt}: slapd -h \"{}\"", urls.join(" ")),
            );
            let mut config_args = vec![OsString::from("-f"), conf.clone().into_os_string()];
            if self.second_domain.is_some() {
                // Debug output at `stats` (ORed with the harness's `-d none`): slapd's logfile
                // records debug messages, not the loglevel's.
                config_args.extend([OsString::from("-d"), OsString::from("stats")]);
            }
            match SlapdProcess::launch(&config_args, &urls, &ldap_url, &log) {
                Ok(process) => {
                    return Slapd {
                        ldap_url,
                        ldaps_url,
                        ldapi_url,
                        ca_file: pki.map(|p| p.ca_file).unwrap_or_default(),
                        admin_dn: ADMIN_DN.to_owned(),
                        admin_password,
                        admin_password_file,
                        reader_dn: READER_DN.to_owned(),
                        reader_password,
                        reader_password_file,
                        domain_dn: DOMAIN_DN.to_owned(),
                        config_dn: CONFIG_DN.to_owned(),
                        dir,
                        process: Some(process),
                        config_args: config_args.to_vec(),
                        urls,
                        log,
                        ldif_seq: AtomicU64::new(0),
                        tmp,
                    };
                }
                Err(LaunchError::ExitedEarly(why)) => last = why,
                Err(LaunchError::NotReady(why)) => panic!("{why}"),
            }
        }
        panic!("slapd failed to start {START_ATTEMPTS} times on fresh ports; last failure: {last}")
    }
}

/// Percent-encodes a socket path for an `ldapi://` URL.
pub fn percent_encode_path(path: &Path) -> String {
    path.to_str()
        .expect("UTF-8 temp dir")
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Appends a marker line to slapd's log so a log tail shows which attempt failed.
fn note(log: &Path, line: &str) {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open slapd log");
    let _ = writeln!(file, "=== pcsync harness: {line}");
}

fn slapd_conf(
    dir: &Path,
    admin_password: &str,
    size_limit: Option<u32>,
    syncprov: bool,
    pki: Option<&TestPki>,
) -> String {
    let d = dir.display();
    let schema = repo_path("schemas/msrtcsip.schema");
    let tls = match pki {
        Some(p) => format!(
            "TLSCACertificateFile \"{}\"\nTLSCertificateFile \"{}\"\nTLSCertificateKeyFile \"{}\"\n\
             TLSVerifyClient try\n",
            p.ca_file.display(),
            p.cert_file.display(),
            p.key_file.display()
        ),
        None => String::new(),
    };
    let size = match size_limit {
        Some(n) => format!("sizelimit size.soft={n} size.hard={n} size.prtotal=unlimited"),
        None => "sizelimit unlimited".to_owned(),
    };
    let overlay = if syncprov {
        "overlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog 1000\n"
    } else {
        ""
    };
    // Identical settings for both databases; only suffix, directory and rootpw differ.
    let database = |suffix: &str, db_dir: &str, rootpw: &str| {
        format!(
            "database mdb\n\
             suffix \"{suffix}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             {rootpw}\
             directory \"{d}/{db_dir}\"\n\
             maxsize 104857600\n\
             {size}\n\
             index objectClass eq\n\
             index msRTCSIP-PrimaryUserAddress eq,pres,sub\n\
             index entryUUID,entryCSN eq\n\
             access to attrs=userPassword\n  by anonymous auth\n  by * none\n\
             access to *\n  by users read\n  by * none\n\
             {overlay}"
        )
    };
    format!(
        "# Written by tests/it/common/slapd.rs for one test; see that file for the layout.\n\
         include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         include \"{schema}\"\n\
         pidfile \"{d}/slapd.pid\"\n\
         argsfile \"{d}/slapd.args\"\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         moduleload syncprov\n\
         {tls}\
         authz-regexp \"gidNumber=[0-9]+\\\\+uidNumber=[0-9]+,cn=peercred,cn=external,cn=auth\" \"{ADMIN_DN}\"\n\
         access to dn.base=\"\" by * read\n\
         access to dn.base=\"cn=Subschema\" by * read\n\
         \n\
         # Configuration naming context first: slapd wants the more specific suffix first.\n\
         # No `subordinate`: not glued into dc=contoso,dc=com, like AD's configuration partition.\n\
         {config_db}\n\
         {domain_db}",
        schema = schema.display(),
        config_db = database(CONFIG_DN, "db-config", ""),
        domain_db = database(
            DOMAIN_DN,
            "db-domain",
            &format!("rootpw \"{admin_password}\"\n")
        ),
    )
}

/// `conf` with `schema` included and a third database for `suffix` (settings as the domain's,
/// rootdn the admin, no rootpw: the admin binds through the domain database), and every
/// connection and operation logged to `stats.log`.
fn second_domain_conf(conf: &str, dir: &Path, schema: &Path, suffix: &str) -> String {
    let d = dir.display();
    let with_schema = conf.replacen(
        "pidfile ",
        &format!(
            "include \"{}\"\nlogfile \"{d}/stats.log\"\nloglevel stats\npidfile ",
            schema.display()
        ),
        1,
    );
    let domain_db = with_schema
        .split("database mdb\n")
        .last()
        .expect("the domain database is last")
        .to_owned();
    let second = domain_db
        .replace(
            &format!("suffix \"{DOMAIN_DN}\""),
            &format!("suffix \"{suffix}\""),
        )
        .replace(
            &format!("directory \"{d}/db-domain\""),
            &format!("directory \"{d}/db-second\""),
        )
        .lines()
        .filter(|l| !l.starts_with("rootpw "))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{with_schema}\n\ndatabase mdb\n{second}\n")
}

/// The reader account (plus `ou=Service Accounts` when the fixture has none).
fn reader_ldif(domain_ldif: &str, password: &str) -> String {
    let has_ou = domain_ldif.lines().any(|l| {
        l.trim()
            .eq_ignore_ascii_case("dn: ou=Service Accounts,dc=contoso,dc=com")
    });
    let ou = if has_ou {
        ""
    } else {
        "dn: ou=Service Accounts,dc=contoso,dc=com\nobjectClass: top\nobjectClass: organizationalUnit\n\
         ou: Service Accounts\n\n"
    };
    format!(
        "{ou}dn: {READER_DN}\n\
         objectClass: top\n\
         objectClass: person\n\
         cn: pcsync-reader\n\
         sn: pcsync-reader\n\
         description: Read-only bind account for pcsync (added by tests/it/common/slapd.rs)\n\
         userPassword: {password}\n"
    )
}

/// Joins LDIF fragments with the blank line that separates records.
fn join_ldif(parts: &[&str]) -> String {
    let mut out = parts
        .iter()
        .map(|p| p.trim_end())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    out.push('\n');
    out
}

fn slapadd(conf: &Path, suffix: &str, ldif: &str, file: &Path) {
    fs::write(file, ldif).expect("write LDIF for slapadd");
    let out = run(Command::new(tool("slapadd"))
        .arg("-q")
        .arg("-f")
        .arg(conf)
        .args(["-b", suffix])
        .arg("-l")
        .arg(file));
    assert!(
        out.success(),
        "slapadd of {} into {suffix} failed:\n{}",
        file.display(),
        out.both()
    );
}

// === impl Slapd ===

/// One running (or stopped) throwaway slapd. See the module docs for its layout.
#[derive(Debug)]
pub struct Slapd {
    /// `ldap://127.0.0.1:<port>/`, StartTLS capable when TLS is on.
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:<port>/`; empty when TLS is off.
    pub ldaps_url: String,
    /// `ldapi://<socket in dir>` (SASL EXTERNAL maps to the admin); empty if the path is too long.
    pub ldapi_url: String,
    /// PEM file of the private CA that signed the server certificate; empty when TLS is off.
    pub ca_file: PathBuf,
    pub admin_dn: String,
    pub admin_password: String,
    /// 0600 file holding `admin_password`, no trailing newline (`ldapsearch -y`, pcsync config).
    pub admin_password_file: PathBuf,
    pub reader_dn: String,
    pub reader_password: String,
    /// 0600 file holding `reader_password`, no trailing newline.
    pub reader_password_file: PathBuf,
    /// `dc=contoso,dc=com`.
    pub domain_dn: String,
    /// `cn=Configuration,dc=contoso,dc=com`.
    pub config_dn: String,
    /// The instance's temp dir: slapd.conf, *.pem, db-*/, slapd.log, the LDIF files used.
    pub dir: PathBuf,
    /// `None` while stopped.
    process: Option<SlapdProcess>,
    config_args: Vec<OsString>,
    urls: Vec<String>,
    log: PathBuf,
    /// Names the LDIF files written for `add`/`modify`, so each stays in `dir` for post-mortems.
    ldif_seq: AtomicU64,
    /// Owns `dir`; removed on drop unless `KEEP_DIR_ENV` is set.
    tmp: TempDir,
}

impl Slapd {
    /// The contoso fixture, TLS on, no size limit.
    pub fn start() -> Slapd {
        Slapd::builder().start()
    }

    pub fn builder() -> SlapdBuilder {
        SlapdBuilder::default()
    }

    /// `ldapadd` as admin; panics with the tool's output on failure.
    pub fn add(&self, ldif: &str) {
        if let Err(e) = self.try_add(ldif) {
            panic!("ldapadd failed: {e}");
        }
    }

    /// `ldapadd` as admin.
    pub fn try_add(&self, ldif: &str) -> Result<(), String> {
        self.change("ldapadd", ldif)
    }

    /// `ldapmodify` as admin (records with `changetype:`); panics with the output on failure.
    pub fn modify(&self, ldif: &str) {
        if let Err(e) = self.try_modify(ldif) {
            panic!("ldapmodify failed: {e}");
        }
    }

    /// `ldapmodify` as admin.
    pub fn try_modify(&self, ldif: &str) -> Result<(), String> {
        self.change("ldapmodify", ldif)
    }

    /// `ldapdelete` as admin; panics with the output on failure.
    pub fn delete(&self, dn: &str) {
        let out = run(self.admin_command("ldapdelete").arg(dn));
        assert!(out.success(), "ldapdelete {dn} failed:\n{}", out.both());
    }

    fn change(&self, program: &str, ldif: &str) -> Result<(), String> {
        run_ldif(
            self.admin_command(program),
            &self.dir,
            &self.ldif_seq,
            program,
            ldif,
        )
    }

    /// `ldapsearch -LLL -o ldif-wrap=no` (subtree) as admin; panics on a non-zero exit code.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        self.try_search(base, filter, attrs)
            .unwrap_or_else(|e| panic!("ldapsearch -b {base:?} {filter:?} failed:\n{e}"))
    }

    /// Like [`Self::search`]; `Err` carries exit code and output (e.g. rc 32 noSuchObject).
    pub fn try_search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<String, String> {
        let out = ldapsearch(self.admin_command("ldapsearch"), base, filter, attrs);
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.both())
        }
    }

    /// The entryUUID of `dn`, or `None` when it does not exist (LDAP 32); any other failure of
    /// the search panics, so a slapd that is down never reads as "deleted".
    pub fn entry_uuid(&self, dn: &str) -> Option<String> {
        match self.try_search(dn, "(objectClass=*)", &["entryUUID"]) {
            Ok(text) => text
                .lines()
                .find_map(|l| l.strip_prefix("entryUUID: "))
                .map(str::to_string),
            Err(e) if e.contains("No such object (32)") => None,
            Err(e) => panic!("reading the entryUUID of {dn} failed: {e}"),
        }
    }

    /// Number of entries under `base` (subtree, as admin) matching `filter`.
    pub fn count(&self, base: &str, filter: &str) -> usize {
        count_entries(&self.search(base, filter, &["1.1"]))
    }

    /// `ldapsearch` over plain LDAP as any identity (e.g. the reader), with the raw result, so a
    /// test can check rc 4 (size limit) or rc 50. `extra` goes before the filter (e.g.
    /// `["-E", "pr=2/noprompt"]`).
    pub fn search_as(
        &self,
        bind_dn: &str,
        password_file: &Path,
        base: &str,
        filter: &str,
        extra: &[&str],
    ) -> ToolOutput {
        run(self
            .ldap_command("ldapsearch")
            .args(["-x", "-H", &self.ldap_url, "-D", bind_dn, "-y"])
            .arg(password_file)
            .args(["-LLL", "-o", "ldif-wrap=no", "-b", base])
            .args(extra)
            .arg(filter))
    }

    /// An LDAP client tool with this instance's CA trusted (`LDAPTLS_CACERT`) and no URL or bind
    /// arguments yet; run it with [`run`].
    pub fn ldap_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(tool(program));
        if !self.ca_file.as_os_str().is_empty() {
            cmd.env("LDAPTLS_CACERT", &self.ca_file);
            cmd.env("LDAPTLS_REQCERT", "demand");
        }
        cmd
    }

    /// `program -x -H <ldap_url> -D <admin> -y <admin_password_file>`.
    pub fn admin_command(&self, program: &str) -> Command {
        let mut cmd = self.ldap_command(program);
        cmd.args(["-x", "-H", &self.ldap_url, "-D", &self.admin_dn, "-y"])
            .arg(&self.admin_password_file);
        cmd
    }

    /// Stops slapd (SIGTERM, bounded wait, then SIGKILL). The data and ports are kept for
    /// [`Self::start_again`]. A no-op when already stopped.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
            note(&self.log, "stopped by the test");
        }
    }

    /// Restarts a stopped slapd on the same ports with the same data. Panics if it is running, or
    /// with the log tail if it cannot start (e.g. another process took one of its ports).
    pub fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "start_again: slapd is still running"
        );
        note(&self.log, "started again by the test");
        match SlapdProcess::launch(&self.config_args, &self.urls, &self.ldap_url, &self.log) {
            Ok(process) => self.process = Some(process),
            Err(LaunchError::ExitedEarly(why) | LaunchError::NotReady(why)) => {
                panic!("start_again on the same ports failed: {why}")
            }
        }
    }

    /// Stops slapd and starts it again at once on the same ports with the same data, like an
    /// administrator's `systemctl restart slapd`: every open connection is dropped.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Whether slapd is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// slapd's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(SlapdProcess::pid)
    }

    /// The whole slapd log (harness markers plus slapd's `-d none` output).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// DN of a pool's service object in the fixture's spelling: `"1:2"` ->
    /// `CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com`.
    pub fn pool_dn(&self, site_id: &str) -> String {
        format!("CN=Lc Services,CN=Microsoft,CN={site_id},{POOLS_DN}")
    }

    /// `CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com`.
    pub fn endpoint_container(&self) -> String {
        ENDPOINT_CONTAINER_DN.to_owned()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // Kill before the temp dir goes (field drops run after this body).
        drop(self.process.take());
        if std::env::var_os(KEEP_DIR_ENV).is_some() {
            self.tmp.disable_cleanup(true);
            eprintln!("{KEEP_DIR_ENV} set: keeping {}", self.dir.display());
        }
    }
}

// === ldap-utils, shared with the Samba harness ===

/// Writes `ldif` to the next numbered `<program>-<n>.ldif` in `dir` (kept for post-mortems)
/// and runs `cmd -f <file>` (`cmd`: `ldapadd` or `ldapmodify`, bound already).
pub fn run_ldif(
    mut cmd: Command,
    dir: &Path,
    seq: &AtomicU64,
    program: &str,
    ldif: &str,
) -> Result<(), String> {
    let n = seq.fetch_add(1, Ordering::Relaxed);
    let file = dir.join(format!("{program}-{n}.ldif"));
    fs::write(&file, ldif).expect("write LDIF");
    let out = run(cmd.arg("-f").arg(&file));
    if out.success() {
        Ok(())
    } else {
        Err(out.both())
    }
}

/// `cmd -LLL -o ldif-wrap=no -b <base> <filter> <attrs>` (`cmd`: `ldapsearch`, bound already;
/// subtree).
pub fn ldapsearch(mut cmd: Command, base: &str, filter: &str, attrs: &[&str]) -> ToolOutput {
    run(cmd
        .args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter])
        .args(attrs))
}

/// Number of entries in `ldapsearch -LLL` output (`dn:` or base64 `dn::` lines).
pub fn count_entries(ldif: &str) -> usize {
    ldif.lines().filter(|l| l.starts_with("dn:")).count()
}

impl super::Backend for Slapd {
    fn config(&self) -> PathBuf {
        repo_path("config/openldap.toml")
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PCSYNC__DIRECTORY__URL", self.ldap_url.clone()),
            (
                "PCSYNC__DIRECTORY__BIND_PASSWORD_FILE",
                self.admin_password_file.display().to_string(),
            ),
        ]
    }

    fn harness_timings(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("PCSYNC__SCHEDULE__CRON", "* * * * * *"),
            ("PCSYNC__DAEMON__POLL_INTERVAL", "100ms"),
            ("PCSYNC__DAEMON__RECONNECT_MIN", "100ms"),
            ("PCSYNC__DAEMON__RECONNECT_MAX", "1s"),
        ]
    }
}
