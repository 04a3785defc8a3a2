//! `pcsync check`: is the configuration valid and the directory ready for pcsync?
//!
//! Each check prints one line, `ok` or `FAIL`, with what it looked at. A check that cannot run
//! because an earlier one failed (no connection, say) is not printed: the failing line already
//! says what to fix. Exit 0 only when every check passed.

use serde::Serialize;

use crate::cli::{Cli, Format};
use crate::config::{self, Settings};
use crate::exit;
use crate::inventory;
use crate::ldap::{Directory, Mechanism};
use crate::model::{Enabled, ObjectKind, attr};
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

struct Report {
    format: Format,
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, ok: bool, detail: String) {
        if self.format == Format::Text {
            println!(
                "{:<5} {:<10} {detail}",
                if ok { "ok" } else { "FAIL" },
                name
            );
        }
        self.checks.push(Check { name, ok, detail });
    }

    fn finish(self) -> u8 {
        let ok = self.checks.iter().all(|c| c.ok);
        if self.format == Format::Json {
            let out = serde_json::json!({ "ok": ok, "checks": self.checks });
            println!("{out}");
        }
        if ok { exit::OK } else { exit::ERROR }
    }
}

pub(super) async fn run(cli: &Cli, args: &Args) -> u8 {
    let progress = Progress::new(cli.quiet || args.format == Format::Json);
    let mut report = Report {
        format: args.format,
        checks: Vec::new(),
    };
    let settings = match config::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            for line in e.lines() {
                report.add("config", false, line);
            }
            return report.finish();
        }
    };
    report.add(
        "config",
        true,
        format!(
            "{}: {} directory URL(s), {} pool(s), {} migration(s)",
            cli.config.display(),
            settings.directory.urls.len(),
            settings.pools.len(),
            settings.migrations.len()
        ),
    );
    check_directory(&settings, &mut report, &progress).await;
    report.finish()
}

async fn check_directory(settings: &Settings, report: &mut Report, progress: &Progress) {
    let mut dir = match Directory::connect(&settings.directory).await {
        Ok(dir) => dir,
        Err(e) => {
            report.add("connect", false, e.to_string());
            return;
        }
    };
    report.add(
        "connect",
        true,
        format!(
            "{} {}",
            dir.url(),
            match (dir.bound_as(), dir.mechanism()) {
                (Some(who), Some(how)) if *how != Mechanism::Simple => {
                    format!("bound as {who} with {how}")
                }
                (Some(who), _) => format!("bound as {who}"),
                (None, _) => "bound anonymously".to_string(),
            }
        ),
    );
    for line in crate::estate::check::lines(&mut dir, &settings.directory).await {
        report.add(line.name, line.ok, line.detail);
    }
    if let Some(line) = crate::estate::check::global_catalog(&mut dir, &settings.directory).await {
        report.add(line.name, line.ok, line.detail);
    }
    let dse = dir.root_dse().clone();
    report.add(
        "root DSE",
        true,
        format!(
            "{}; naming contexts: {}",
            dse.vendor_name.as_deref().unwrap_or("unknown vendor"),
            if dse.naming_contexts.is_empty() {
                "none listed".to_string()
            } else {
                dse.naming_contexts.join(", ")
            }
        ),
    );
    let bases = [
        &settings.directory.base_dn,
        &settings.layout.endpoint_container,
    ];
    let caps = match dir.verify_dirsync(&bases).await {
        Ok(caps) => caps.clone(),
        Err(e) => {
            report.add("watch", false, e.to_string());
            return;
        }
    };
    report.add(
        "watch",
        true,
        format!("{} ({})", caps.watch, caps.watch_reason),
    );
    report.add(
        "writes",
        true,
        format!("{} ({})", caps.writes, caps.writes_reason),
    );
    match dir.missing_schema_attributes(attr::REQUIRED_SCHEMA).await {
        Ok(missing) if missing.is_empty() => report.add(
            "schema",
            true,
            format!("defines {}", attr::REQUIRED_SCHEMA.join(", ")),
        ),
        Ok(missing) => {
            let e = crate::ldap::Error::SchemaMissing {
                url: dir.url().to_string(),
                missing,
            };
            report.add("schema", false, e.to_string());
            return;
        }
        Err(e) => {
            report.add("schema", false, e.to_string());
            return;
        }
    }

    let mut bases_ok = true;
    for (name, dn) in [
        ("base DN", &settings.directory.base_dn),
        ("container", &settings.layout.endpoint_container),
    ] {
        match dir.exists(dn).await {
            Ok(true) => report.add(name, true, format!("{dn} exists")),
            Ok(false) => {
                bases_ok = false;
                report.add(name, false, format!("{dn} does not exist on {}", dir.url()));
            }
            Err(e) => {
                bases_ok = false;
                report.add(name, false, e.to_string());
            }
        }
    }
    for pool in &settings.pools {
        match dir.exists(&pool.home_server_dn).await {
            Ok(true) => report.add(
                "pool",
                true,
                format!(
                    "{}: home_server_dn {} exists",
                    pool.fqdn, pool.home_server_dn
                ),
            ),
            Ok(false) => report.add(
                "pool",
                false,
                format!(
                    "{}: home_server_dn {} does not exist on {}",
                    pool.fqdn,
                    pool.home_server_dn,
                    dir.url()
                ),
            ),
            Err(e) => report.add("pool", false, format!("{}: {e}", pool.fqdn)),
        }
    }
    if !bases_ok {
        return;
    }

    let mut findings = Vec::new();
    let (mut users, mut contacts, mut other, mut enabled) = (0u64, 0u64, 0u64, 0u64);
    let scanned = inventory::scan(&mut dir, settings, &mut findings, |o| {
        progress.tick();
        match o.kind {
            ObjectKind::User => users += 1,
            ObjectKind::Contact => contacts += 1,
            ObjectKind::Other => other += 1,
        }
        if o.enabled == Enabled::True {
            enabled += 1;
        }
    })
    .await;
    progress.finish();
    match scanned {
        Ok(_) => report.add(
            "objects",
            true,
            format!(
                "{users} SIP-enabled user(s), {contacts} contact(s), {other} other; {enabled} enabled; {} finding(s){}",
                findings.len(),
                if findings.is_empty() { "" } else { " (see pcsync inventory)" }
            ),
        ),
        Err(e) => report.add("objects", false, e.to_string()),
    }
    dir.close().await;
}
