//! `pcsync mappings`: the SIP URI → pool table, as the redirector would serve it.
//!
//! By default the table is built now from the directory (nothing is written); its version is the
//! last-known-good cache's when the entries are the same, else the next one. `--cached` prints
//! the last-known-good table from `state.dir` without touching the directory. Findings (endpoints
//! that are not mapped, and why) follow the table.

use std::io::Write;

use serde::Serialize;

use crate::cli::{Cli, Format, load_settings, report_error};
use crate::exit;
use crate::ldap::Directory;
use crate::mapping::cache::{self, EntryRecord};
use crate::mapping::{build, table::MappingTable};
use crate::model::Finding;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Print the last-known-good table from state.dir instead of reading the directory.
    #[arg(long)]
    cached: bool,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    version: u64,
    built_at: chrono::DateTime<chrono::Utc>,
    /// "directory" or "cache".
    source: &'static str,
    entries: Vec<EntryRecord>,
    findings: &'a [Finding],
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut dropped = Vec::new();
    let cached = cache::load(&settings.state.dir, &settings, &mut dropped);
    for d in &dropped {
        tracing::warn!("cached mapping dropped: {d}");
    }
    let (table, findings, source) = if args.cached {
        match cached {
            Ok(Some(t)) => (t, Vec::new(), "cache"),
            Ok(None) => {
                return report_error(&format!(
                    "no cached mapping table at {} yet (pcsync redirect writes it after its first refresh)",
                    cache::path(&settings).display()
                ));
            }
            Err(e) => return report_error(&e),
        }
    } else {
        let now = crate::clock::system();
        let mut dir = match Directory::connect(&settings.directory).await {
            Ok(d) => d,
            Err(e) => return report_error(&e),
        };
        let built = build::from_directory(&mut dir, &settings, now).await;
        dir.close().await;
        let built = match built {
            Ok(b) => b,
            Err(e) => return report_error(&e),
        };
        let previous = cached.ok().flatten();
        let version = match &previous {
            Some(p) if p.same_entries(&built.table) => p.version(),
            Some(p) => p.version() + 1,
            None => 1,
        };
        let table = built.table.with_version(version, now);
        (table, built.findings, "directory")
    };
    match write(&table, &findings, source, args.format) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => report_error(&format!("cannot write output: {e}")),
    }
}

fn write(
    table: &MappingTable,
    findings: &[Finding],
    source: &'static str,
    format: Format,
) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let file = cache::CacheFile::from_table(table);
    if format == Format::Json {
        let doc = Output {
            version: table.version(),
            built_at: table.built_at(),
            source,
            entries: file.entries,
            findings,
        };
        serde_json::to_writer(&mut out, &doc).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{:<40} {:<28} DN", "SIP URI", "POOL")?;
        for e in &file.entries {
            writeln!(out, "{:<40} {:<28} {}", e.sip_uri, e.pool, e.dn)?;
        }
        for f in findings {
            writeln!(out, "finding {}: {}: {}", f.kind, f.dn, f.reason)?;
        }
        writeln!(
            out,
            "version {}, {} entr{}, built {}, from the {source}; {} finding(s)",
            table.version(),
            table.len(),
            if table.len() == 1 { "y" } else { "ies" },
            table.built_at().format("%Y-%m-%dT%H:%M:%SZ"),
            findings.len()
        )?;
    }
    out.flush()
}
