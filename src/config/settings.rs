//! The validated configuration: [`Settings`] and one type per section, with their defaults.
//!
//! Nothing here reads or parses anything: `sections` builds these from the merged tree, and
//! every value in them has already been checked. The desired-state parts (pools, migrations,
//! layout, retire) are the planner's own types from `plan::desired`. `Settings` compares by
//! value, so the agent can tell whether a reload changed anything.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::Dn;
use crate::plan::desired::{Desired, Layout, Migration, Pool, Retire};

use super::kerberos::KerberosSettings;
use super::values::{LdapUrl, PasswordSource, RateLimitSettings, Secret};

/// The default `Server` header.
pub(crate) const DEFAULT_SERVER_HEADER: &str = concat!("pcsync/", env!("CARGO_PKG_VERSION"));

/// The default `audit.max_segment_size`: the active audit segment is sealed after this many bytes.
pub(crate) const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Everything pcsync needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The file these settings were read from.
    pub path: PathBuf,
    pub directory: DirectorySettings,
    pub(crate) layout: Layout,
    pub(crate) pools: Vec<Pool>,
    pub migrations: Vec<Migration>,
    pub(crate) safety: Safety,
    pub(crate) schedule: Schedule,
    pub(crate) redirector: RedirectorSettings,
    pub(crate) http: HttpSettings,
    pub(crate) audit: AuditSettings,
    pub(crate) state: StateSettings,
    pub(crate) daemon: DaemonSettings,
}

impl Settings {
    /// The pool with this FQDN (case-insensitive).
    pub fn pool(&self, fqdn: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }

    /// The pool whose `home_server_dn` is `dn`.
    pub(crate) fn pool_by_home_server(&self, dn: &Dn) -> Option<&Pool> {
        self.pools.iter().find(|p| &p.home_server_dn == dn)
    }

    /// What planning reads: the migrations, pools, layout and retire policy.
    pub(crate) fn desired(&self) -> Desired<'_> {
        Desired {
            migrations: &self.migrations,
            pools: &self.pools,
            layout: &self.layout,
            retire: self.safety.retire,
            active_directory: false,
        }
    }
}

/// The bind identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindCredentials {
    pub dn: Dn,
    pub password: Secret,
    /// Where the password came from, for the message when the server refuses it.
    pub password_source: PasswordSource,
}

/// `[directory]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySettings {
    /// Tried in order until one answers.
    pub(crate) urls: Vec<LdapUrl>,
    pub starttls: bool,
    pub tls_ca_file: Option<PathBuf>,
    /// `None` binds anonymously (unless `kerberos` is set).
    pub(crate) bind: Option<BindCredentials>,
    /// `auth = "gssapi"`: bind with Kerberos instead of `bind`.
    pub(crate) kerberos: Option<KerberosSettings>,
    /// Which server receives every write of a run.
    pub(crate) write_server: WriteServerChoice,
    /// A forest's Global Catalog, for several domains.
    pub(crate) global_catalog: Option<LdapUrl>,
    pub base_dn: Dn,
    pub page_size: u32,
    pub timeout: Duration,
    pub allow_insecure: bool,
}

/// `directory.write_server`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum WriteServerChoice {
    /// The PDC emulator (Active Directory), else the first URL that answers.
    #[default]
    Pdc,
    /// The first URL that answers.
    First,
}

/// `[safety]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Safety {
    pub max_changes_per_run: u32,
    pub retire: Retire,
    pub auto_apply: bool,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// Six-field cron expression (seconds first), evaluated in UTC; validated.
    pub cron: String,
}

/// Transport named in the redirect Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContactTransport {
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for ContactTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContactTransport::Udp => "udp",
            ContactTransport::Tcp => "tcp",
            ContactTransport::Tls => "tls",
        })
    }
}

/// `[redirector]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectorSettings {
    /// `None` when set to "" (listener off).
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// The TLS listener: on when `tls_cert` and `tls_key` are set and `tls_listen` is not "".
    pub tls: Option<RedirectorTls>,
    pub contact_port: u16,
    pub contact_transport: ContactTransport,
    /// The `Server` header of every response.
    pub server_header: String,
    /// Open TCP/TLS connections at most; more are closed at once.
    pub tcp_max_connections: u32,
    /// A TCP/TLS connection with no message for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest SIP message accepted on a stream (header section plus body), in bytes.
    pub max_message_size: u32,
    /// Per-source rate limit; `None` = off (the default).
    pub rate_limit: Option<RateLimitSettings>,
    /// Threads receiving UDP.
    pub udp_workers: u32,
}

/// The TLS listener of the redirector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectorTls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpSettings {
    pub listen: Option<SocketAddr>,
    /// Open connections at most; a new one over the cap replaces the oldest that has not yet
    /// sent its request.
    pub max_connections: u32,
    /// A connection that has not sent a whole request header this long after it opened is
    /// closed.
    pub header_timeout: Duration,
    /// A connection whose request is not answered within this long of its opening is closed.
    pub request_timeout: Duration,
}

/// How `pcsync run` keeps the mapping table current between scheduled runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchMode {
    /// syncrepl where the root DSE advertises it; on Active Directory DirSync (where the
    /// account has the right) or uSNChanged polling; a rescan every `poll_interval` otherwise.
    Auto,
    /// Poll the endpoint container every `poll_interval`, whatever the server offers.
    Poll,
    /// No watch: the table changes only on the cron schedule and SIGHUP.
    Off,
}

/// `[daemon]`: `pcsync run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonSettings {
    /// How long tasks get to finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    pub watch: WatchMode,
    /// Interval of the DirSync, uSNChanged and polling watches (not syncrepl).
    pub poll_interval: Duration,
    /// Shortest and longest wait between reconnects of the watch (doubling in between).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The lease entry that elects the one writer among instances; `None` = this instance
    /// always writes (a single instance).
    pub lease_dn: Option<Dn>,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and others try to take an expired lease).
    pub lease_renew: Duration,
    /// This instance's name in the lease and in health output; default `<host>:<pid>`.
    pub instance_id: Option<String>,
    /// A watch connection silent this long (no event, no heartbeat answer) is replaced.
    pub watch_timeout: Duration,
    /// Deaths of one worker within `restart_window` after which the process exits 1.
    pub max_restarts: u32,
    pub restart_window: Duration,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditSettings {
    pub path: PathBuf,
    /// Bytes after which the active segment is sealed and a new one started.
    pub max_segment_size: u64,
    /// The keyed chain's key file (HMAC-SHA-256); `None`: an unkeyed chain.
    pub key_file: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateSettings {
    pub dir: PathBuf,
}
