//! The command line: clap definitions, logging set-up, and one function per command.
//!
//! `main` parses arguments, initialises tracing (to stderr, so stdout stays clean for
//! `--format json`), installs the one rustls crypto provider, builds the tokio runtime and
//! dispatches. Commands return an exit code (see [`crate::exit`]); an error that ends a command
//! is printed as `pcsync: error: <one line>` on stderr.

mod check;
mod inventory;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH, Settings};
use crate::exit;

/// `pcsync --version`: the crate version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PCSYNC_GIT_REV"),
    ")"
);

/// Keeps legacy Group Chat clients working after a move to Lync 2013 / Skype for Business
/// Persistent Chat.
#[derive(Debug, Parser)]
#[command(name = "pcsync", version = VERSION, about, after_help = exit::HELP)]
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
}

/// The entry point of the `pcsync` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.quiet);
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
            Command::Completions { shell } => completions(*shell),
            Command::Man => man(),
        }
    });
    ExitCode::from(code)
}

fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(shell, &mut Cli::command(), "pcsync", &mut std::io::stdout());
    exit::OK
}

/// One roff page covering every command, so `man pcsync` documents the whole tool.
fn man() -> u8 {
    let command = Cli::command();
    let mut out: Vec<u8> = Vec::new();
    let mut result = clap_mangen::Man::new(command.clone()).render(&mut out);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub = sub.clone();
        result = result.and_then(|()| {
            out.extend_from_slice(b".SH \"");
            out.extend_from_slice(b"COMMAND: PCSYNC ");
            out.extend_from_slice(sub.get_name().to_uppercase().as_bytes());
            out.extend_from_slice(b"\"\n");
            let man = clap_mangen::Man::new(sub);
            man.render_description_section(&mut out)?;
            man.render_options_section(&mut out)?;
            man.render_extra_section(&mut out)
        });
    }
    use std::io::Write;
    match result.and_then(|()| std::io::stdout().write_all(&out)) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&format!("cannot write the manual page: {e}")),
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let default = if quiet {
        LevelFilter::ERROR
    } else {
        LevelFilter::WARN
    };
    let directives = std::env::var("PCSYNC_LOG").unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(directives);
    let builder = tracing_subscriber::fmt()
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
