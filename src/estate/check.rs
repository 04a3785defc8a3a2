//! `pcsync check`'s lines about the estate: `write` (the server that receives every write, and
//! that it answers) and, on Active Directory, `dcs` (each DC of the domain, up or down).

use super::Error;
use super::writer::{self, url_for};
use crate::config::DirectorySettings;
use crate::ldap::Directory;

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
    for dc in &server.dcs {
        let url = url_for(&dc.host, settings, &answered);
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
