//! `pcsync inventory`: every SIP-enabled object, streamed as it is read.
//!
//! Rows are written as the directory returns them (no sorting, no buffering), so a directory of
//! hundreds of thousands of users lists in constant memory. Findings follow the rows, then a
//! summary line. `--format json` writes one JSON document:
//! `{"objects": [...], "findings": [...], "summary": {...}}`.

use std::io::Write;

use serde::Serialize;

use crate::cli::{Cli, Format, load_settings, report_error};
use crate::config::Settings;
use crate::exit;
use crate::inventory;
use crate::ldap::Directory;
use crate::model::{Enabled, Finding, Listing, ObjectKind};
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// One object as `inventory` shows it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    dn: &'a str,
    kind: ObjectKind,
    sip_uri: Option<&'a str>,
    /// "TRUE", "FALSE", or null when absent.
    enabled: Option<&'static str>,
    /// The configured pool FQDN whose home_server_dn matches, if any.
    pool: Option<&'a str>,
    home_server_dn: Option<&'a str>,
    owner_urn: Option<&'a str>,
    display_name: Option<&'a str>,
}

impl<'a> Row<'a> {
    /// The row of `o`; its SIP address is written into `sip_uri` (reused from row to row).
    fn new(o: &Listing<'a, 'a>, settings: &'a Settings, sip_uri: &'a mut String) -> Row<'a> {
        use std::fmt::Write as _;
        sip_uri.clear();
        let sip_uri = o.sip_uri.map(|parts| {
            // Writing into a String cannot fail.
            let _ = write!(sip_uri, "{parts}");
            sip_uri.as_str()
        });
        Row {
            dn: o.dn,
            kind: o.kind,
            sip_uri,
            enabled: match o.enabled {
                Enabled::True => Some("TRUE"),
                Enabled::False => Some("FALSE"),
                Enabled::Absent => None,
            },
            pool: o
                .home_server_dn
                .and_then(|dn| settings.pool_by_home_server(dn))
                .map(|p| p.fqdn.as_str()),
            home_server_dn: o.home_server_dn.map(|d| d.as_str()),
            owner_urn: o.owner_urn,
            display_name: o.display_name,
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    objects: u64,
    users: u64,
    contacts: u64,
    other: u64,
    findings: usize,
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let settings = match load_settings(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut dir = match Directory::connect(&settings.directory).await {
        Ok(dir) => dir,
        Err(e) => return report_error(&e),
    };
    if let Err(e) = dir.require_schema().await {
        return report_error(&e);
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut summary = Summary::default();
    let mut write_error: Option<std::io::Error> = None;
    let json = args.format == Format::Json;
    let mut remember = |r: std::io::Result<()>| {
        if let Err(e) = r {
            write_error.get_or_insert(e);
        }
    };
    remember(if json {
        write!(out, "{{\"objects\":[")
    } else {
        writeln!(
            out,
            "{:<8} {:<7} {:<40} {:<24} DN",
            "KIND", "ENABLED", "SIP URI", "POOL"
        )
    });
    let mut findings: Vec<Finding> = Vec::new();
    let progress = Progress::new(cli.quiet);
    let mut sip_uri = String::new();
    let scanned = inventory::list(&mut dir, &settings, &mut findings, |o| {
        let row = Row::new(&o, &settings, &mut sip_uri);
        remember(write_row(&mut out, &row, json, summary.objects == 0));
        progress.tick();
        summary.objects += 1;
        match o.kind {
            ObjectKind::User => summary.users += 1,
            ObjectKind::Contact => summary.contacts += 1,
            ObjectKind::Other => summary.other += 1,
        }
    })
    .await;
    progress.finish();
    dir.close().await;
    if let Err(e) = scanned {
        // Partial output is worse than none for a script; end the JSON so it still parses.
        let _ = out.flush();
        return report_error(&e);
    }
    summary.findings = findings.len();
    let r = write_end(&mut out, json, &findings, &summary);
    if let Some(e) = write_error.or(r.err()).or(out.flush().err()) {
        // A closed pipe (`| head`) is not worth a message.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return report_error(&format!("cannot write output: {e}"));
        }
    }
    exit::OK
}

/// One object: a JSON array element (`first` has no comma before it) or a table row.
fn write_row(out: &mut impl Write, row: &Row<'_>, json: bool, first: bool) -> std::io::Result<()> {
    if json {
        let sep = if first { "" } else { "," };
        let text = serde_json::to_string(row).map_err(std::io::Error::other)?;
        return write!(out, "{sep}{text}");
    }
    writeln!(
        out,
        "{:<8} {:<7} {:<40} {:<24} {}",
        row.kind.to_string(),
        row.enabled.unwrap_or("-"),
        row.sip_uri.unwrap_or("-"),
        row.pool.unwrap_or(if row.home_server_dn.is_some() {
            "(unknown)"
        } else {
            "-"
        }),
        row.dn
    )
}

/// After the objects: the findings and the summary (JSON closes the document).
fn write_end(
    out: &mut impl Write,
    json: bool,
    findings: &[Finding],
    summary: &Summary,
) -> std::io::Result<()> {
    if json {
        let f = serde_json::to_string(findings).map_err(std::io::Error::other)?;
        let s = serde_json::to_string(summary).map_err(std::io::Error::other)?;
        return writeln!(out, "],\"findings\":{f},\"summary\":{s}}}");
    }
    for f in findings {
        writeln!(out, "finding {}: {}: {}", f.kind, f.dn, f.reason)?;
    }
    writeln!(
        out,
        "{} object(s): {} user(s), {} contact(s), {} other; {} finding(s)",
        summary.objects, summary.users, summary.contacts, summary.other, summary.findings
    )
}
