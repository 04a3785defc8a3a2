//! The command line: clap definitions, logging set-up, and one function per command.
//!
//! `main` parses arguments, initialises tracing (to stderr, so stdout stays clean for
//! `--format json`), installs the one rustls crypto provider, builds the tokio runtime and
//! dispatches. Commands return an exit code (see [`crate::exit`]); an error that ends a command
//! is printed as `pcsync: error: <one line>` on stderr.

mod audit;
mod check;
mod inventory;
mod mappings;
mod probe;
mod reconcile;
mod redirect;
mod restore;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH, Settings};
use crate::exit;

/// `pcsync --version`: the crate version and the git revision it was built from.
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PCSYNC_GIT_REV"),
    ")"
);

/// Keeps legacy Group Chat clients working after a move to Lync 2013 / Skype for Business
/// Persistent Chat.
#[derive(Debug, Parser)]
#[command(name = "pcsync", version = VERSION, about, after_help = exit::HELP)]
pub(crate) struct Cli {
    /// Configuration file (TOML); PCSYNC__SECTION__KEY environment variables override it.
    #[arg(long, global = true, env = "PCSYNC_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Diagnostic log format on stderr. Set the level with PCSYNC_LOG (e.g. debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Print only errors and the requested output.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Output format of the reporting commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate the configuration, connect, and check the directory is ready for pcsync.
    #[command(
        after_help = "Example:\n  pcsync check --config config/openldap.toml\n\n\
Prints one line per check (the configuration, the next three times [schedule] cron fires, then\n\
the directory, ending with endpoint-shape: a hand-made endpoint on a target pool compared with\n\
what pcsync writes) as ok, WARN or FAIL, and exits 0 when none fails, 1 otherwise."
    )]
    Check(check::Args),

    /// List SIP-enabled objects: DN, kind, SIP URI, enabled flag and pool.
    #[command(
        after_help = "Example:\n  pcsync inventory --format json | jq '.objects[] | select(.kind == \"contact\")'"
    )]
    Inventory(inventory::Args),

    /// Print a shell completion script.
    #[command(after_help = "Example:\n  pcsync completions bash > /etc/bash_completion.d/pcsync")]
    Completions {
        /// The shell to generate for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) for pcsync and its commands.
    #[command(after_help = "Example:\n  pcsync man > /usr/local/share/man/man1/pcsync.1")]
    Man,
    /// Find leftover Group Chat well-known users, plan their swap for legacy endpoints, and
    /// print the plan; --apply carries it out, audited, with rollback.
    #[command(after_help = RECONCILE_HELP)]
    Reconcile(reconcile::Args),

    /// Undo a reconcile run from the audit log's before-images (dry run unless --apply).
    #[command(after_help = RESTORE_HELP)]
    Restore(restore::Args),
    /// Print the SIP URI -> pool table the redirector serves (from the directory, or --cached).
    #[command(
        after_help = "Example:\n  pcsync mappings --format json | jq '.entries[] | .sip_uri + \" -> \" + .pool'\n\n\
Exits 0 when the table was printed, 1 on an error (directory unreachable, no cache with --cached)."
    )]
    Mappings(mappings::Args),

    /// Run the SIP redirect server alone (UDP, TCP, optional TLS) until SIGINT/SIGTERM.
    #[command(
        after_help = "Example:\n  pcsync redirect --config /etc/pcsync/pcsync.toml\n\n\
Serves the last-known-good table at once, refreshes it from the directory at start-up, on the\n\
[schedule] cron schedule and on SIGHUP. Exits 0 after a graceful stop, 1 if a listener cannot start."
    )]
    Redirect(redirect::Args),

    /// Run the agent: scheduled reconcile, live directory watch, SIP redirector, /healthz and
    /// /metrics, writer lease; until SIGINT/SIGTERM.
    #[command(after_help = RUN_HELP)]
    Run(run::Args),

    /// Send one SIP request to a redirect server and print the answer and its Contact.
    #[command(
        after_help = "Example:\n  pcsync probe sip:ocschat@contoso.com --server 127.0.0.1:5060 --transport udp --method INVITE\n  pcsync probe sip:ocschat@contoso.com --server sip.contoso.com --transport tls --ca-file ca.pem   # port 5061\n\n\
Exits 0 for a 2xx or 3xx answer, 1 otherwise (4xx-6xx, no answer, network error). Needs no config file."
    )]
    Probe(probe::Args),

    /// Review the audit log: list events or runs, show a run's diffs, verify the hash chain,
    /// export for auditors.
    #[command(
        after_help = "Examples:\n  pcsync audit verify\n  pcsync audit list --runs --since 7d\n  pcsync audit show 20261124T080000123Z-1a2b3c4d\n\n\
Exit codes: 0 ok; 1 error, or the log fails verification; 3 verify --repair blocked by a running pcsync."
    )]
    Audit(audit::Args),
}

const RECONCILE_HELP: &str = "\
Examples:
  pcsync reconcile                              # dry run: print the plan
  pcsync reconcile --format ldif > swap.ldif    # the same as ldapmodify change records
  pcsync reconcile --plan-out plan.json         # save the plan for review
  pcsync reconcile --apply --plan plan.json     # apply exactly that plan (refused if stale)
  pcsync reconcile --findings all               # list every finding, not 20 of each kind

Findings are printed as a count per kind, then the first --findings N of each kind (default 20);
--format json lists every one. A run with nothing to apply records nothing in the audit log.

Exit codes:
  0  in sync, or applied completely
  1  error (configuration, directory, a failed swap: see the audit log)
  2  changes pending (dry run)
  3  blocked: a safety guard stopped the run (max_changes_per_run, empty search, stale or
     edited plan, lock held; nothing was written, and a lock refusal is not in the audit log:
     the lock holder writes it), or findings blocked at least one swap (not written)";

const RUN_HELP: &str = "\
Example:
  pcsync run --config /etc/pcsync/pcsync.toml --log-format json

Runs [schedule] cron reconciles (plan only unless [safety] auto_apply = true), keeps the SIP
redirector's table current, serves GET /healthz and GET /metrics on [http] listen.
Signals: SIGTERM/SIGINT stop (the swap in flight finishes; exit 0 within [daemon] grace_period);
SIGHUP reloads the configuration (an invalid one is rejected and the old one kept).

Exit codes: 0 after a graceful stop; 1 if it cannot start (configuration, a listener).";

const RESTORE_HELP: &str = "\
Example:
  pcsync restore --run 20261124T080000123Z-1a2b3c4d          # show what would be undone
  pcsync restore --run 20261124T080000123Z-1a2b3c4d --apply  # undo it

Each swap is undone in its own order backwards, so the URI is never held twice: the endpoint
releases the URI (its address cleared), the user comes back, then the endpoint is deleted; a
user that cannot come back leaves the endpoint serving. A user that was only released gets its
values back on the same object. An endpoint that holds another address now is shown `skipped`,
with the reason, and left alone. --apply with nothing pending writes nothing, not even a run in
the audit log.

On Active Directory a deleted user is reanimated from its tombstone (same objectGUID and
objectSid); where that is refused or impossible it is re-created and a WARNING says it is a new
principal. --apply writes through the write server (directory.write_server), like reconcile,
and with directory.global_catalog each user on its own domain's. SIGINT/SIGTERM stop --apply
after the action in flight, like a lost connection; the output lists what was and was not done,
and a rerun finishes the job.

Exit codes: 0 nothing left to undo, or undone completely and every URI it touched is held by
exactly one enabled object; 1 error (an action failed, the restore stopped, or a URI is left
unserved or held twice); 2 actions pending (dry run); 3 blocked (lock held), nothing was
written.";

/// The entry point of the `pcsync` binary.
pub fn main() -> ExitCode {
    // clap exits 2 on a usage error, which is our "changes pending"; a typo'd flag must not
    // look like a successful dry run to a script, so usage errors exit 1.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            });
        }
    };
    if let Some(code) = kerberos_environment(&cli) {
        return ExitCode::from(code);
    }
    // A server logs what it does at info; one-shot commands stay quiet unless asked.
    let long_running = matches!(cli.command, Command::Redirect(_) | Command::Run(_));
    init_logging(cli.log_format, cli.quiet, long_running);
    // One process-wide rustls provider, so nothing can trip ldap3's "no provider" panic even
    // if a dependency ever enabled a second one. Failure means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The agent and the redirect server do many things at once and use every core. A one-shot
    // command is one conversation with one directory at a time: there a second thread only
    // adds a cross-thread wake-up for each LDAP message that ldap3's connection task hands to
    // the scan (issue 18's profile: 5 % of a 200,000-user reconcile).
    let mut builder = if long_running {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pcsync: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    // Failpoints (tests only): FAILPOINTS="swap-user-retired=return" aborts there.
    #[cfg(feature = "failpoints")]
    let scenario = fail::FailScenario::setup();
    let code = runtime.block_on(async {
        survive_file_size_limit();
        match &cli.command {
            Command::Check(args) => check::run(&cli, args).await,
            Command::Inventory(args) => inventory::run(&cli, args).await,
            Command::Completions { shell } => completions(*shell),
            Command::Man => man(),
            Command::Reconcile(args) => reconcile::run(&cli, args).await,
            Command::Restore(args) => restore::run(&cli, args).await,
            Command::Mappings(args) => mappings::run(&cli, args).await,
            Command::Redirect(args) => redirect::run(&cli, args).await,
            Command::Run(args) => run::run(&cli, args).await,
            Command::Probe(args) => probe::run(&cli, args).await,
            Command::Audit(args) => audit::run(&cli, args).await,
        }
    });
    #[cfg(feature = "failpoints")]
    scenario.teardown();
    ExitCode::from(code)
}

/// With `directory.auth = "gssapi"`, MIT Kerberos finds the client keytab only through the
/// process environment, which a running multi-threaded process cannot safely change. So when
/// the environment lacks it, pcsync replaces itself (same PID, same arguments) with a copy
/// started with it; that copy finds it set and carries on. Returns an exit code only when the
/// restart fails. A configuration that does not load is left to the command to report.
fn kerberos_environment(cli: &Cli) -> Option<u8> {
    use std::os::unix::process::CommandExt;
    if matches!(
        cli.command,
        Command::Completions { .. } | Command::Man | Command::Probe(_) | Command::Audit(_)
    ) {
        return None;
    }
    let settings = config::load(&cli.config).ok()?;
    let kerberos = settings.directory.kerberos.as_ref()?;
    let missing = crate::ldap::process_env(kerberos, |key| std::env::var(key).ok())?;
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .envs(missing)
            .exec(),
        Err(e) => e,
    };
    Some(report_error(&format!(
        "cannot start again with the Kerberos keytab {} in the environment: {error}",
        kerberos.keytab.display()
    )))
}

/// A file size limit (`ulimit -f`, RLIMIT_FSIZE) makes the kernel send SIGXFSZ to a process whose
/// write would pass it, and SIGXFSZ kills by default: the run would die mid-swap with no word.
/// With a handler installed (tokio keeps it for the life of the process) the write fails with
/// EFBIG instead, so the audit log, like on a full disk, reports "File too large" naming its file
/// and the run stops cleanly before the directory write that record was to describe.
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    let xfsz = SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    if let Err(e) = signal(xfsz) {
        tracing::debug!("cannot handle SIGXFSZ: {e}");
    }
}

fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(shell, &mut Cli::command(), "pcsync", &mut std::io::stdout());
    exit::OK
}

/// One roff page covering every command, so `man pcsync` documents the whole tool.
fn man() -> u8 {
    let command = Cli::command();
    let mut out: Vec<u8> = Vec::new();
    let result = clap_mangen::Man::new(command.clone())
        .render(&mut out)
        .and_then(|()| man_sections(&command, "PCSYNC", &mut out));
    use std::io::Write;
    match result.and_then(|()| std::io::stdout().write_all(&out)) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&format!("cannot write the manual page: {e}")),
    }
}

/// One section per subcommand, nested ones included (`COMMAND: PCSYNC AUDIT LIST`).
fn man_sections(parent: &clap::Command, path: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    for sub in parent
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        let path = format!("{path} {}", sub.get_name().to_uppercase());
        out.extend_from_slice(format!(".SH \"COMMAND: {path}\"\n").as_bytes());
        let man = clap_mangen::Man::new(sub.clone());
        man.render_description_section(out)?;
        man.render_options_section(out)?;
        man.render_extra_section(out)?;
        man_sections(sub, &path, out)?;
    }
    Ok(())
}

fn init_logging(format: LogFormat, quiet: bool, long_running: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let default = if quiet {
        LevelFilter::ERROR
    } else if long_running {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    let directives = std::env::var("PCSYNC_LOG").unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(directives);
    // Colours only on a terminal: a service's stderr goes to a file or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the configuration, or prints each problem on its own line and returns the exit code.
fn load_settings(cli: &Cli) -> Result<Settings, u8> {
    config::load(&cli.config).map_err(|e| {
        report_config_error(&e);
        exit::ERROR
    })
}

fn report_config_error(e: &ConfigError) {
    for line in e.lines() {
        eprintln!("pcsync: error: {line}");
    }
}

/// Prints an error that ends a command.
fn report_error(e: &dyn std::fmt::Display) -> u8 {
    eprintln!("pcsync: error: {e}");
    exit::ERROR
}
