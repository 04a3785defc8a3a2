//! The command line: clap definitions, logging set-up, and one function per command.
//!
//! `main` parses arguments, initialises tracing (to stderr, so stdout stays clean for
//! `--format json`), installs the one rustls crypto provider, builds the tokio runtime and
//! dispatches. Commands return an exit code (see [`crate::exit`]); an error that ends a command
//! is printed as `pcsync: error: <one line>` on stderr.

mod check;
mod inventory;
mod mappings;
mod probe;
mod redirect;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH, Settings};
use crate::exit;

/// Keeps legacy Group Chat clients working after a move to Lync 2013 / Skype for Business
/// Persistent Chat.
#[derive(Debug, Parser)]
#[command(name = "pcsync", version, about, after_help = exit::HELP)]
pub struct Cli {
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
pub enum LogFormat {
    Text,
    Json,
}

/// Output format of the reporting commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration, connect, and check the directory is ready for pcsync.
    #[command(
        after_help = "Example:\n  pcsync check --config config/openldap.toml\n\n\
Prints one line per check and exits 0 when all pass, 1 otherwise."
    )]
    Check(check::Args),

    /// List SIP-enabled objects: DN, kind, SIP URI, enabled flag and pool.
    #[command(
        after_help = "Example:\n  pcsync inventory --format json | jq '.objects[] | select(.kind == \"contact\")'"
    )]
    Inventory(inventory::Args),

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

    /// Send one SIP request to a redirect server and print the answer and its Contact.
    #[command(
        after_help = "Example:\n  pcsync probe sip:ocschat@contoso.com --server 127.0.0.1:5060 --transport udp --method INVITE\n\n\
Exits 0 for a 2xx or 3xx answer, 1 otherwise (4xx-6xx, no answer, network error). Needs no config file."
    )]
    Probe(probe::Args),
}

/// The entry point of the `pcsync` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs what it does at info; one-shot commands stay quiet unless asked.
    let long_running = matches!(cli.command, Command::Redirect(_));
    init_logging(cli.log_format, cli.quiet, long_running);
    // One process-wide rustls provider, so nothing can trip ldap3's "no provider" panic even
    // if a dependency ever enabled a second one. Failure means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pcsync: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let code = runtime.block_on(async {
        match &cli.command {
            Command::Check(args) => check::run(&cli, args).await,
            Command::Inventory(args) => inventory::run(&cli, args).await,
            Command::Mappings(args) => mappings::run(&cli, args).await,
            Command::Redirect(args) => redirect::run(&cli, args).await,
            Command::Probe(args) => probe::run(&cli, args).await,
        }
    });
    ExitCode::from(code)
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
        .parse_lossy(directives)
        // The scheduler logs its start-up chatter at info.
        .add_directive(
            "tokio_cron_scheduler=warn"
                .parse()
                .unwrap_or_else(|_| LevelFilter::WARN.into()),
        );
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
