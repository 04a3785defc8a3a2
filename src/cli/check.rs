//! `pcsync check`: is the configuration valid and the directory ready for pcsync?
//!
//! Each check prints one line, `ok` or `FAIL`, with what it looked at: the configuration,
//! when the schedule fires next, then the directory. A check that cannot run
//! because an earlier one failed (no connection, say) is not printed: the failing line already
//! says what to fix. Exit 0 only when every check passed.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::{Cli, Format};
use crate::config::{self, Settings};
use crate::exit;
use crate::inventory;
use crate::ldap::{Directory, Mechanism};
use crate::model::{Dn, Enabled, FindingKind, ObjectKind, attr};
use crate::plan::Desired;
use crate::plan::shape::{self, Shape};
use crate::progress::Progress;
use crate::reconcile;

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
    /// Passed, but worth a look (`WARN`); does not change the exit code.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    warning: bool,
    detail: String,
}

struct Report {
    format: Format,
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, ok: bool, detail: String) {
        self.push(name, ok, false, detail);
    }

    /// A check that passed with a warning: printed `WARN`, exit code unchanged.
    fn warn(&mut self, name: &'static str, detail: String) {
        self.push(name, true, true, detail);
    }

    fn push(&mut self, name: &'static str, ok: bool, warning: bool, detail: String) {
        if self.format == Format::Text {
            let status = match (ok, warning) {
                (false, _) => "FAIL",
                (true, true) => "WARN",
                (true, false) => "ok",
            };
            println!("{status:<5} {name:<10} {detail}");
        }
        self.checks.push(Check {
            name,
            ok,
            warning,
            detail,
        });
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
    check_schedule(&settings, &mut report, crate::clock::system());
    check_directory(&settings, &mut report, &progress).await;
    report.finish()
}

/// `schedule`: when the cron expression fires next (UTC), or that it never will again (a
/// 7-field expression whose years are past: it loads, but the agent would never run).
fn check_schedule(settings: &Settings, report: &mut Report, now: DateTime<Utc>) {
    let cron = &settings.schedule.cron;
    match config::next_fire_times(cron, now, 3) {
        Ok(next) => {
            let next: Vec<String> = next
                .iter()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .collect();
            let next = next.join(", ");
            report.add(
                "schedule",
                true,
                format!("{cron:?} (UTC) fires next at {next}"),
            );
        }
        Err(e) => report.add("schedule", false, e),
    }
}

/// Connects, then checks the server, the places pcsync uses and the objects there; each step
/// runs only when the one before it passed.
async fn check_directory(settings: &Settings, report: &mut Report, progress: &Progress) {
    let Some(mut dir) = connect(settings, report).await else {
        return;
    };
    if check_server(&mut dir, settings, report).await {
        let places = check_places(&mut dir, settings, report).await;
        if places {
            check_objects(&mut dir, settings, report, progress).await;
        }
        // A pool DN that names nothing fails `places` and is also a swap's preflight finding,
        // shown here; a failed search is already the line above, not said twice.
        check_swaps(&mut dir, settings, report, places).await;
    }
    dir.close().await;
}

/// `swaps`: plans as the dry run does, preflight included, and fails one line per finding that
/// blocks a swap, so `check` and `reconcile` show the same preflight findings.
async fn check_swaps(dir: &mut Directory, settings: &Settings, report: &mut Report, places: bool) {
    let plan = match reconcile::compute(settings, dir, None, crate::clock::system()).await {
        Ok(plan) => plan,
        Err(_) if !places => return,
        Err(stopped) => {
            let end = reconcile::RunEnd::from(stopped);
            report.add("swaps", false, end.message().unwrap_or_default());
            return;
        }
    };
    let preflight: Vec<_> = plan
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Preflight)
        .collect();
    for f in &preflight {
        report.add("swaps", false, format!("{}: {}", f.dn, f.reason));
    }
    if preflight.is_empty() {
        report.add(
            "swaps",
            plan.summary.blocked == 0,
            format!(
                "{} change(s) ready, {} swap(s) blocked by findings (see pcsync reconcile)",
                plan.summary.ready, plan.summary.blocked
            ),
        );
    }
}

/// `connect` and `root DSE`: which server answered, as whom, and what it serves.
async fn connect(settings: &Settings, report: &mut Report) -> Option<Directory> {
    let mut dir = match Directory::connect(&settings.directory).await {
        Ok(dir) => dir,
        Err(e) => {
            report.add("connect", false, e.to_string());
            return None;
        }
    };
    let bound = match (dir.bound_as(), dir.mechanism()) {
        (Some(who), Some(how)) if *how != Mechanism::Simple => format!("bound as {who} with {how}"),
        (Some(who), _) => format!("bound as {who}"),
        (None, _) => "bound anonymously".to_string(),
    };
    report.add("connect", true, format!("{} {bound}", dir.url()));
    let dse = dir.root_dse();
    let contexts = if dse.naming_contexts.is_empty() {
        "none listed".to_string()
    } else {
        dse.naming_contexts.join(", ")
    };
    let vendor = dse.vendor_name.as_deref().unwrap_or("unknown vendor");
    report.add(
        "root DSE",
        true,
        format!("{vendor}; naming contexts: {contexts}"),
    );
    // `write` and `dcs` (and `gc` with a Global Catalog): where writes go and which DCs hold
    // the domain.
    for line in crate::estate::check::lines(&mut dir, &settings.directory).await {
        report.add(line.name, line.ok, line.detail);
    }
    if let Some(line) = crate::estate::check::global_catalog(&mut dir, &settings.directory).await {
        report.add(line.name, line.ok, line.detail);
    }
    Some(dir)
}

/// `watch`, `writes` and `schema`: what the server lets pcsync do, and whether it knows the
/// Lync attributes. False when pcsync cannot go on.
async fn check_server(dir: &mut Directory, settings: &Settings, report: &mut Report) -> bool {
    let bases = [
        &settings.directory.base_dn,
        &settings.layout.endpoint_container,
    ];
    let caps = match dir.verify_dirsync(&bases).await {
        Ok(caps) => caps.clone(),
        Err(e) => {
            report.add("watch", false, e.to_string());
            return false;
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
        Ok(missing) if missing.is_empty() => {
            let defined = attr::REQUIRED_SCHEMA.join(", ");
            report.add("schema", true, format!("defines {defined}"));
            true
        }
        Ok(missing) => {
            let e = crate::ldap::Error::SchemaMissing {
                url: dir.url().to_string(),
                missing,
            };
            report.add("schema", false, e.to_string());
            false
        }
        Err(e) => {
            report.add("schema", false, e.to_string());
            false
        }
    }
}

/// `base DN`, `container` and one `pool` line per pool: the DNs the configuration names
/// exist. False when the base DN or the container does not (a scan would be meaningless); a
/// missing pool only fails its own line.
async fn check_places(dir: &mut Directory, settings: &Settings, report: &mut Report) -> bool {
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
        let (fqdn, home) = (&pool.fqdn, &pool.home_server_dn);
        match dir.exists(home).await {
            Ok(true) => report.add(
                "pool",
                true,
                format!("{fqdn}: home_server_dn {home} exists"),
            ),
            Ok(false) => report.add(
                "pool",
                false,
                format!(
                    "{fqdn}: home_server_dn {home} does not exist on {}",
                    dir.url()
                ),
            ),
            Err(e) => report.add("pool", false, format!("{fqdn}: {e}")),
        }
    }
    bases_ok
}

/// `objects`: one scan, counted by kind, with the number of findings; then `endpoint-shape`
/// from the endpoint contacts the same scan saw.
async fn check_objects(
    dir: &mut Directory,
    settings: &Settings,
    report: &mut Report,
    progress: &Progress,
) {
    let mut findings = Vec::new();
    let (mut users, mut contacts, mut other, mut enabled) = (0u64, 0u64, 0u64, 0u64);
    let desired = Desired {
        active_directory: dir.capabilities().active_directory,
        ..settings.desired()
    };
    let mut shapes = Vec::new();
    let scanned = inventory::scan(dir, settings, &mut findings, |o| {
        progress.tick();
        if o.kind == ObjectKind::Contact
            && let Shape::Compared { differences } = shape::compare(&desired, &o)
        {
            shapes.push((o.dn.clone(), differences));
        }
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
        Err(e) => {
            report.add("objects", false, e.to_string());
            return;
        }
    }
    endpoint_shape(settings, &shapes, report);
}

/// `endpoint-shape`: each endpoint contact pcsync did not make, homed on a migration's target
/// pool, compared with what pcsync would write there ([`shape::compare`]). One `WARN` line per
/// endpoint that differs, naming each attribute; `ok` when all match or there is none.
fn endpoint_shape(settings: &Settings, shapes: &[(Dn, Vec<String>)], report: &mut Report) {
    let compared = shape::COMPARED.join(", ");
    if shapes.is_empty() {
        report.add(
            "endpoint-shape",
            true,
            format!(
                "no endpoint contact pcsync did not make is homed on a target pool in {}; nothing to compare {compared} with",
                settings.layout.endpoint_container
            ),
        );
        return;
    }
    let mut matching = 0;
    for (dn, differences) in shapes {
        if differences.is_empty() {
            matching += 1;
        } else {
            report.warn(
                "endpoint-shape",
                format!(
                    "{dn} (made by Lync or by hand) differs from what pcsync writes: {}",
                    differences.join("; ")
                ),
            );
        }
    }
    if matching > 0 {
        report.add(
            "endpoint-shape",
            true,
            format!(
                "{matching} endpoint contact(s) pcsync did not make match what it writes ({compared})"
            ),
        );
    }
}
