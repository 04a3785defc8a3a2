//! How many DCs already hold what a run wrote.
//!
//! After its last write the run notes the write server's `highestCommittedUSN` ([`Mark`]):
//! every change it made carries a USN at or below it. Another DC holds all of them once its
//! up-to-dateness vector (`replUpToDateVector` on the head of each naming context written)
//! shows, for the write server's `invocationId`, a USN at least that high: a DC records a
//! source's USN there only after receiving everything that source originated up to it. The
//! write server holds its own writes. A DC that cannot be reached counts as not holding them,
//! and is named.

use std::fmt;
use std::time::{Duration, Instant};

use super::Error;
use super::vector;
use super::writer::{WriteServer, url_for};
use crate::config::DirectorySettings;
use crate::ldap::Directory;
use crate::model::Dn;
use crate::model::Guid;

/// What a run wrote, as replication sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The write server's database.
    pub(crate) invocation_id: Guid,
    /// Its `highestCommittedUSN` right after the run's last write.
    pub(crate) usn: u64,
    /// The heads of the naming contexts written (domain, configuration).
    pub(crate) naming_contexts: Vec<String>,
}

/// Where replication of a run's writes stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Replication {
    /// DCs holding every write of the run, the write server first.
    pub(crate) holding: Vec<String>,
    /// DCs reached that do not hold them yet.
    pub(crate) behind: Vec<String>,
    /// DCs that could not be asked, with why.
    pub(crate) unreachable: Vec<(String, String)>,
}

impl Replication {
    /// How many DCs there are.
    pub(crate) fn total(&self) -> usize {
        self.holding.len() + self.behind.len() + self.unreachable.len()
    }

    /// Whether every DC that answered holds the writes.
    pub(crate) fn reachable_complete(&self) -> bool {
        self.behind.is_empty()
    }
}

impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replicated to {} of {} DCs",
            self.holding.len(),
            self.total()
        )?;
        if !self.behind.is_empty() {
            write!(f, "; not yet on {}", self.behind.join(", "))?;
        }
        for (host, why) in &self.unreachable {
            write!(f, "; {host} unreachable ({why})")?;
        }
        Ok(())
    }
}

/// The mark of what `writer` (the write server's connection) holds now; `None` outside
/// Active Directory or when the write server is not among the listed DCs.
pub(crate) async fn mark(
    writer: &mut Directory,
    server: &WriteServer,
    naming_contexts: Vec<String>,
) -> Result<Option<Mark>, Error> {
    let Some(invocation_id) = server.dc().and_then(|dc| dc.invocation_id) else {
        return Ok(None);
    };
    let root = writer.read_root(&["highestCommittedUSN"]).await?;
    let Some(usn) = root
        .texts("highestCommittedUSN")
        .next()
        .and_then(|v| v.trim().parse().ok())
    else {
        return Ok(None);
    };
    Ok(Some(Mark {
        invocation_id,
        usn,
        naming_contexts,
    }))
}

/// The heads of the naming contexts (among the root DSE's `naming_contexts`) that hold
/// `written`, each once: the longest that holds each DN.
pub(crate) fn naming_contexts(naming_contexts: &[String], written: &[&Dn]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for dn in written {
        if let Some(head) = crate::ldap::naming_context_of(naming_contexts, dn)
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&head))
        {
            out.push(head);
        }
    }
    out
}

/// Connections to the other DCs of the domain, kept across polls.
pub(crate) struct Replicas<'a> {
    settings: &'a DirectorySettings,
    server: &'a WriteServer,
    /// One per DC other than the write server; `None` until connected.
    peers: Vec<(String, Option<Directory>)>,
}

impl<'a> Replicas<'a> {
    pub(crate) fn new(settings: &'a DirectorySettings, server: &'a WriteServer) -> Replicas<'a> {
        let peers = server
            .dcs
            .iter()
            .filter(|dc| !dc.host.eq_ignore_ascii_case(&server.host))
            .map(|dc| (dc.host.clone(), None))
            .collect();
        Replicas {
            settings,
            server,
            peers,
        }
    }

    /// Asks every DC now.
    pub(crate) async fn count(&mut self, mark: &Mark) -> Replication {
        let mut out = Replication {
            holding: vec![self.server.host.clone()],
            behind: Vec::new(),
            unreachable: Vec::new(),
        };
        for (host, conn) in &mut self.peers {
            if conn.is_none() {
                let url = url_for(host, self.settings, &self.server.url);
                match Directory::connect_only(&url, self.settings).await {
                    Ok(dir) => *conn = Some(dir),
                    Err(e) => {
                        out.unreachable.push((host.clone(), e.to_string()));
                        continue;
                    }
                }
            }
            let Some(dir) = conn.as_mut() else {
                continue;
            };
            match holds(dir, mark).await {
                Ok(true) => out.holding.push(host.clone()),
                Ok(false) => out.behind.push(host.clone()),
                Err(e) => {
                    // Ask again on a fresh connection next time.
                    *conn = None;
                    out.unreachable.push((host.clone(), e.to_string()));
                }
            }
        }
        out
    }

    /// Asks every DC once a second until every reachable one holds the writes or `patience`
    /// has passed; returns the last answer.
    pub(crate) async fn wait(&mut self, mark: &Mark, patience: Duration) -> Replication {
        let deadline = Instant::now() + patience;
        loop {
            let now = self.count(mark).await;
            if now.reachable_complete() || Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
        }
    }

    /// Ends the connections politely.
    pub(crate) async fn close(self) {
        for (_, conn) in self.peers {
            if let Some(dir) = conn {
                dir.close().await;
            }
        }
    }
}

/// Whether the DC behind `dir` holds everything `mark` covers, in every naming context.
async fn holds(dir: &mut Directory, mark: &Mark) -> Result<bool, Error> {
    for nc in &mark.naming_contexts {
        let Some(attrs) = dir.read_attributes(nc, &["replUpToDateVector"]).await? else {
            return Ok(false);
        };
        let Some(blob) = attrs.get("replUpToDateVector").first() else {
            return Ok(false);
        };
        let cursors = vector::up_to_dateness(blob).map_err(|reason| {
            Error::Directory(crate::ldap::Error::Operation {
                op: format!("decoding replUpToDateVector of {nc}: {reason}"),
                url: dir.url().to_string(),
                rc: 0,
                text: String::new(),
            })
        })?;
        if vector::held_up_to(&cursors, &mark.invocation_id).is_none_or(|usn| usn < mark.usn) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_naming_contexts_are_the_longest_heads_each_once() {
        let ncs: Vec<String> = [
            "DC=contoso,DC=com",
            "CN=Configuration,DC=contoso,DC=com",
            "CN=Schema,CN=Configuration,DC=contoso,DC=com",
            "DC=DomainDnsZones,DC=contoso,DC=com",
        ]
        .map(String::from)
        .to_vec();
        let base = Dn::parse("DC=contoso,DC=com").unwrap();
        let people = Dn::parse("OU=People,DC=contoso,DC=com").unwrap();
        let container = Dn::parse(
            "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com",
        )
        .unwrap();
        assert_eq!(
            naming_contexts(&ncs, &[&base, &container, &people]),
            ["DC=contoso,DC=com", "CN=Configuration,DC=contoso,DC=com"]
        );
        assert_eq!(naming_contexts(&[], &[&base]), Vec::<String>::new());
    }

    #[test]
    fn the_count_reads_as_one_line() {
        let r = Replication {
            holding: vec!["dc1.contoso.com".into()],
            behind: vec!["dc2.contoso.com".into()],
            unreachable: vec![("dc3.contoso.com".into(), "connection refused".into())],
        };
        assert_eq!(
            r.to_string(),
            "replicated to 1 of 3 DCs; not yet on dc2.contoso.com; dc3.contoso.com unreachable \
             (connection refused)"
        );
        assert!(!r.reachable_complete());
        let done = Replication {
            holding: vec!["dc1.contoso.com".into(), "dc2.contoso.com".into()],
            behind: vec![],
            unreachable: vec![],
        };
        assert_eq!(done.to_string(), "replicated to 2 of 2 DCs");
        assert!(done.reachable_complete());
    }
}
