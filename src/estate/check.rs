//! `pcsync check`'s lines about the estate: `write` (the server that receives every write, and
//! that it answers), on Active Directory `dcs` (each DC of the domain, up or down), and with
//! `directory.global_catalog` `gc` (it answers, and carries the attributes pcsync searches).

use super::Error;
use super::forest::{PAS_ATTRS, missing_from_partial_attribute_set};
use super::writer::{self, url_for};
use crate::config::DirectorySettings;
use crate::ldap::Directory;
use crate::model::attr;

/// One line of the report: its name, whether it passed, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

impl Line {
    fn new(name: &'static str, ok: bool, detail: String) -> Line {
        Line { name, ok, detail }
    }
}

/// The `write` and `dcs` lines, asked through `dir` (connected to the first URL that answered).
pub(crate) async fn lines(dir: &mut Directory, settings: &DirectorySettings) -> Vec<Line> {
    let server = match writer::find(dir, settings).await {
        Ok(server) => server,
        Err(e) => return vec![Line::new("write", false, e.to_string())],
    };
    let mut out = Vec::new();
    let answered = dir.url().clone();
    out.push(match reachable(&server.url, &answered, settings).await {
        Ok(()) => Line::new("write", true, server.to_string()),
        Err(source) => Line::new(
            "write",
            false,
            Error::WriteServerDown {
                server: server.to_string(),
                source,
            }
            .to_string(),
        ),
    });
    if server.dcs.is_empty() {
        return out;
    }
    let mut all_up = true;
    let mut states = Vec::new();
    let here = writer::answering_dsa(dir).await;
    for dc in &server.dcs {
        // The DC that answered counts as up however it was reached (an address, say).
        let url = if here.as_ref() == Some(&dc.dsa) {
            answered.clone()
        } else {
            url_for(&dc.host, settings, &answered)
        };
        match reachable(&url, &answered, settings).await {
            Ok(()) => states.push(format!("{} up", dc.host)),
            Err(e) => {
                all_up = false;
                states.push(format!("{} down ({e})", dc.host));
            }
        }
    }
    out.push(Line::new("dcs", all_up, states.join(", ")));
    out
}

/// The attributes of users pcsync reads through the Global Catalog: detection, URI
/// uniqueness and the inventory's enabled flag and pool.
const GC_SEARCHED: &[&str] = &[
    attr::PRIMARY_USER_ADDRESS,
    attr::USER_ENABLED,
    attr::PRIMARY_HOME_SERVER,
];

/// The `gc` line, when `directory.global_catalog` is set: the Global Catalog answers, and every
/// attribute of [`GC_SEARCHED`] is in its partial attribute set (on AD, where the schema says).
pub(crate) async fn global_catalog(
    dir: &mut Directory,
    settings: &DirectorySettings,
) -> Option<Line> {
    let url = settings.global_catalog.as_ref()?;
    if let Err(e) = reachable(url, dir.url(), settings).await {
        return Some(Line::new("gc", false, e.to_string()));
    }
    let Some(config) = dir.root_dse().configuration_naming_context.clone() else {
        return Some(Line::new(
            "gc",
            true,
            format!("{url} answers (no schema naming context: no partial attribute set to check)"),
        ));
    };
    let entries = match dir.schema_entries(&config, GC_SEARCHED, PAS_ATTRS).await {
        Ok(entries) => entries,
        Err(e) => return Some(Line::new("gc", false, e.to_string())),
    };
    let missing = missing_from_partial_attribute_set(GC_SEARCHED, &entries);
    Some(if missing.is_empty() {
        Line::new(
            "gc",
            true,
            format!(
                "{url} answers; {} in the partial attribute set",
                GC_SEARCHED.join(", ")
            ),
        )
    } else {
        Line::new(
            "gc",
            false,
            format!(
                "{url}: {} not in the Global Catalog's partial attribute set \
                 (isMemberOfPartialAttributeSet), so a forest-wide search cannot see {}: mark {} \
                 \"Replicate this attribute to the Global Catalog\" in the schema",
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "each" },
            ),
        )
    })
}

/// Whether `url` answers and binds (`answered` did already).
async fn reachable(
    url: &crate::config::LdapUrl,
    answered: &crate::config::LdapUrl,
    settings: &DirectorySettings,
) -> Result<(), crate::ldap::Error> {
    if url == answered {
        return Ok(());
    }
    Directory::connect_only(url, settings).await?.close().await;
    Ok(())
}
