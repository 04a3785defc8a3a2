//! The writer lease: which of several `pcsync run` instances sharing one directory may write.
//!
//! The directory is the only shared store. The lease is one entry (`[daemon] lease_dn`, object
//! class `container`) whose `description` reads `holder=<instance>;expires=<RFC 3339 UTC>`. An
//! instance takes or renews it with a compare-and-swap: one modify that deletes the exact value
//! it read and adds the new one. If another instance changed the value in between, the delete
//! fails (LDAP 16, noSuchAttribute) and the whole modify is refused, so two instances can never
//! both believe they hold it. A lease is taken over only once its expiry has passed; the holder
//! renews every `lease_renew` (at most half the lease), so a dead holder is replaced within
//! `lease_duration + lease_renew` (less than two lease periods). Expiry times are compared
//! across hosts: keep their clocks in sync (NTP), as Kerberos already demands on AD.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Daemon;
use super::status::stamp;
use super::tree::TaskName;
use crate::apply::{DirectoryWriter, WriteError};
use crate::config::Settings;
use crate::ldap::Directory;
use crate::mapping::refresh::agent_connection;
use crate::model::{AttrValues, Dn, Entry, Modification};

/// The attribute holding the lease value.
pub(crate) const LEASE_ATTR: &str = "description";

/// The lease as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub holder: String,
    pub expires: DateTime<Utc>,
}

impl Lease {
    /// The attribute value.
    pub(crate) fn value(&self) -> String {
        format!(
            "holder={};expires={}",
            self.holder,
            self.expires.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }

    /// Parses a value written by [`Lease::value`]; `None` for anything else.
    pub(crate) fn parse(value: &str) -> Option<Lease> {
        let rest = value.strip_prefix("holder=")?;
        let (holder, expires) = rest.rsplit_once(";expires=")?;
        let expires = DateTime::parse_from_rfc3339(expires)
            .ok()?
            .with_timezone(&Utc);
        (!holder.is_empty()).then(|| Lease {
            holder: holder.to_string(),
            expires,
        })
    }
}

/// The result of one [`tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The lease as it now stands (`None`: unreadable or absent).
    pub lease: Option<Lease>,
    /// Whether this instance holds it (until `lease.expires`).
    pub mine: bool,
}

/// Takes, renews or observes the lease at `dn` for `me`, at time `now`, for `duration`.
/// A lost race is not an error: it returns the lease as the winner left it.
pub(crate) async fn tick(
    dir: &mut impl DirectoryWriter,
    dn: &Dn,
    me: &str,
    now: DateTime<Utc>,
    duration: std::time::Duration,
) -> Result<Observed, WriteError> {
    let expires = now + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::zero());
    let want = Lease {
        holder: me.to_string(),
        expires,
    };
    let Some(entry) = dir.read_entry(dn).await? else {
        let cn = leaf_cn(dn);
        let entry = Entry {
            dn: dn.clone(),
            attributes: vec![
                AttrValues::text("objectClass", &["top", "container"]),
                AttrValues::text("cn", &[cn.as_str()]),
                AttrValues::text(LEASE_ATTR, &[want.value().as_str()]),
            ],
        };
        return match dir.add(&entry).await {
            Ok(()) => Ok(Observed {
                lease: Some(want),
                mine: true,
            }),
            // Another instance created it first (LDAP 68): see what it wrote.
            Err(WriteError::Conflict { .. }) => observe(dir, dn, me).await,
            Err(e) => Err(e),
        };
    };
    let current = entry
        .attributes
        .iter()
        .find(|a| a.name.is(LEASE_ATTR))
        .and_then(|a| a.texts().next().map(str::to_string));
    let parsed = current.as_deref().and_then(Lease::parse);
    let free = match &parsed {
        Some(l) => l.holder == me || l.expires <= now,
        // Empty or unreadable: anyone may (re)write it.
        None => true,
    };
    if !free {
        return Ok(Observed {
            lease: parsed,
            mine: false,
        });
    }
    let mut mods = Vec::new();
    if let Some(old) = &current {
        // The compare half of the swap: fails (LDAP 16) when the value changed since the read.
        mods.push(Modification::Delete(AttrValues::text(LEASE_ATTR, &[old])));
    }
    mods.push(Modification::Add(AttrValues::text(
        LEASE_ATTR,
        &[want.value().as_str()],
    )));
    match dir.modify(dn, &mods, &[]).await {
        Ok(()) => Ok(Observed {
            lease: Some(want),
            mine: true,
        }),
        // Lost the race (value changed, or the entry went away in between).
        Err(e) if lost_race(&e) => observe(dir, dn, me).await,
        Err(e) => Err(e),
    }
}

/// Gives the lease up (expiry = now) if `me` holds it, so another instance takes over at once.
pub(crate) async fn release(
    dir: &mut impl DirectoryWriter,
    dn: &Dn,
    me: &str,
    now: DateTime<Utc>,
) -> Result<(), WriteError> {
    let Observed {
        lease: Some(l),
        mine: true,
    } = observe(dir, dn, me).await?
    else {
        return Ok(());
    };
    let released = Lease {
        holder: me.to_string(),
        expires: now,
    };
    let mods = [
        Modification::Delete(AttrValues::text(LEASE_ATTR, &[l.value().as_str()])),
        Modification::Add(AttrValues::text(LEASE_ATTR, &[released.value().as_str()])),
    ];
    match dir.modify(dn, &mods, &[]).await {
        Err(e) if !lost_race(&e) => Err(e),
        _ => Ok(()),
    }
}

async fn observe(
    dir: &mut impl DirectoryWriter,
    dn: &Dn,
    me: &str,
) -> Result<Observed, WriteError> {
    let lease = dir.read_entry(dn).await?.and_then(|e| {
        e.attributes
            .iter()
            .find(|a| a.name.is(LEASE_ATTR))
            .and_then(|a| a.texts().next().and_then(Lease::parse))
    });
    let mine = lease.as_ref().is_some_and(|l| l.holder == me);
    Ok(Observed { lease, mine })
}

/// The value changed since it was read (LDAP 16 on the value delete, 122), or the entry went
/// away (32) or appeared (68) in between: another instance won.
fn lost_race(e: &WriteError) -> bool {
    matches!(e, WriteError::Conflict { .. })
}

fn leaf_cn(dn: &Dn) -> String {
    dn.leaf_value()
        .unwrap_or_else(|| "pcsync-lease".to_string())
}

// === the lease loop ===

/// The lease loop: takes or renews the lease every `lease_renew` on a kept connection and
/// publishes whether this instance may write. It holds the lease only while every worker is
/// alive: a death wakes it ([`Daemon::lease_wake`]) and it gives the lease up at once. A reload
/// reconnects with the new settings (a new `lease_dn` releases the old lease first); the lease
/// is given up when `token` is cancelled, after the scheduled run's last swap.
pub(crate) async fn run(daemon: Arc<Daemon>, token: CancellationToken) {
    let mut settings = daemon.settings.subscribe();
    let mut lease = Holder::new(&daemon, &settings.borrow_and_update());
    loop {
        let due = lease.due(settings.borrow().daemon.lease_renew);
        tokio::select! {
            _ = token.cancelled() => break,
            _ = daemon.lease_wake.notified() => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = settings.borrow_and_update().clone();
                lease.reconfigure(&new).await;
                continue;
            }
            _ = tokio::time::sleep_until(due) => {}
        }
        lease.tick().await;
    }
    lease.release().await;
}

/// This instance's side of the lease: where it is, the connection to it, when it was last
/// ticked.
struct Holder<'a> {
    daemon: &'a Daemon,
    settings: Arc<Settings>,
    /// The kept connection; dropped on any error (and on a reload) and made again.
    dir: Option<Directory>,
    last_tick: Option<tokio::time::Instant>,
    /// Whether the last tick took or renewed the lease: what [`Holder::release`] gives up.
    /// (The published `writer` flag may already be off: a death clears it at once.)
    held: bool,
}

impl<'a> Holder<'a> {
    fn new(daemon: &'a Daemon, settings: &Arc<Settings>) -> Holder<'a> {
        Holder {
            daemon,
            settings: Arc::clone(settings),
            dir: None,
            last_tick: None,
            held: false,
        }
    }

    fn dn(&self) -> Option<Dn> {
        self.settings.daemon.lease_dn.clone()
    }

    /// When the next renewal is due: at once the first time, then every `renew`.
    fn due(&self, renew: Duration) -> tokio::time::Instant {
        match self.last_tick {
            None => tokio::time::Instant::now(),
            Some(t) => t + renew,
        }
    }

    /// Takes, renews or observes the lease, and publishes the result.
    async fn tick(&mut self) {
        self.last_tick = Some(tokio::time::Instant::now());
        let Some(dn) = self.dn() else {
            return;
        };
        let status = &self.daemon.status;
        if !status.all_alive() {
            // A worker is dead: no writing, and the lease goes to an instance that has them all.
            self.release().await;
            return;
        }
        if self.dir.is_none() {
            match Directory::connect_with(
                &self.settings.directory,
                &agent_connection(&self.settings),
            )
            .await
            {
                Ok(d) => self.dir = Some(d),
                Err(e) => return self.failed(format!("lease {dn}: {e}")).await,
            }
        }
        let Some(dir) = self.dir.as_mut() else { return };
        let now = crate::clock::system();
        let duration = self.settings.daemon.lease_duration;
        match tick(dir, &dn, &self.daemon.instance, now, duration).await {
            Ok(seen) => {
                let was = status.update(|s| s.lease.writer);
                let writer = seen.mine && seen.lease.as_ref().is_some_and(|l| l.expires > now);
                self.held = writer;
                if writer != was {
                    info!(writer, holder = ?seen.lease.as_ref().map(|l| &l.holder), "lease changed hands");
                }
                status.update(|s| {
                    s.lease.writer = writer;
                    s.lease.holder = seen.lease.as_ref().map(|l| l.holder.clone());
                    s.lease.expires = seen.lease.as_ref().map(|l| stamp(l.expires));
                });
                status.attempt(TaskName::Lease, Ok(()), now);
            }
            Err(e) => self.failed(format!("lease {dn}: {e}")).await,
        }
    }

    /// Without a renewed lease this instance stops writing; it keeps serving redirects.
    async fn failed(&mut self, msg: String) {
        self.held = false;
        let status = &self.daemon.status;
        let was = status.update(|s| {
            let was = s.lease.writer;
            // Writing stops as soon as the lease cannot be confirmed, even if it has time left.
            s.lease.writer = false;
            was
        });
        if was {
            warn!("{msg}; no longer the writer");
        } else {
            debug!("{msg}");
        }
        status.attempt(TaskName::Lease, Err(msg), crate::clock::system());
        if let Some(d) = self.dir.take() {
            d.close().await;
        }
    }

    /// Hands the lease over at once rather than letting it expire, if this instance holds it.
    async fn release(&mut self) {
        self.daemon.status.update(|s| {
            if s.lease.enabled {
                s.lease.writer = false;
            }
        });
        let held = std::mem::take(&mut self.held);
        let (Some(dn), Some(dir)) = (self.dn(), self.dir.as_mut()) else {
            return;
        };
        if !held {
            return;
        }
        let released = tokio::time::timeout(
            Duration::from_secs(2),
            release(dir, &dn, &self.daemon.instance, crate::clock::system()),
        )
        .await;
        match released {
            Ok(Ok(())) => info!(dn = %dn, "lease released"),
            Ok(Err(e)) => warn!("cannot release lease {dn}: {e}"),
            Err(_) => warn!("cannot release lease {dn}: no answer within 2s"),
        }
    }

    /// A reload: the old lease is released (when the DN changes) and the connection made again
    /// with the new settings at the next tick, which comes at once.
    async fn reconfigure(&mut self, new: &Arc<Settings>) {
        if self.settings.daemon.lease_dn != new.daemon.lease_dn {
            self.release().await;
            let enabled = new.daemon.lease_dn.is_some();
            self.daemon.status.update(|s| {
                s.lease.enabled = enabled;
                s.lease.writer = !enabled;
                s.lease.holder = None;
                s.lease.expires = None;
            });
        }
        if let Some(d) = self.dir.take() {
            d.close().await;
        }
        self.settings = Arc::clone(new);
        self.last_tick = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::Fake;

    const LEASE_DN: &str = "cn=pcsync-lease,dc=contoso,dc=com";

    fn lease_dn() -> Dn {
        Dn::parse(LEASE_DN).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn one_holder_until_expiry_then_the_other_takes_over() {
        let mut dir = Fake::default();
        let d = std::time::Duration::from_secs(30);
        // a creates the lease; b sees a's lease and does not take it while it is valid.
        let a = block(tick(&mut dir, &lease_dn(), "a", at(0), d)).unwrap();
        assert!(a.mine);
        let b = block(tick(&mut dir, &lease_dn(), "b", at(10), d)).unwrap();
        assert!(!b.mine);
        assert_eq!(b.lease.as_ref().unwrap().holder, "a");
        // a renews; b still waits.
        assert!(
            block(tick(&mut dir, &lease_dn(), "a", at(20), d))
                .unwrap()
                .mine
        );
        assert!(
            !block(tick(&mut dir, &lease_dn(), "b", at(45), d))
                .unwrap()
                .mine
        );
        // a dies; after its expiry (20 + 30) b takes over, and a, coming back, does not.
        let b = block(tick(&mut dir, &lease_dn(), "b", at(51), d)).unwrap();
        assert!(b.mine);
        assert_eq!(b.lease.unwrap().expires, at(81));
        let a = block(tick(&mut dir, &lease_dn(), "a", at(52), d)).unwrap();
        assert!(!a.mine);
        assert_eq!(a.lease.unwrap().holder, "b");
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let mut dir = Fake::default();
        let d = std::time::Duration::from_secs(30);
        assert!(
            block(tick(&mut dir, &lease_dn(), "a", at(0), d))
                .unwrap()
                .mine
        );
        block(release(&mut dir, &lease_dn(), "a", at(5))).unwrap();
        assert!(
            block(tick(&mut dir, &lease_dn(), "b", at(6), d))
                .unwrap()
                .mine
        );
        // Releasing a lease one does not hold changes nothing.
        block(release(&mut dir, &lease_dn(), "a", at(7))).unwrap();
        assert!(
            !block(tick(&mut dir, &lease_dn(), "a", at(8), d))
                .unwrap()
                .mine
        );
    }

    /// Two instances starting together both find no lease and both add it: the one whose add
    /// is refused (LDAP 68) reads the winner's lease instead of failing.
    #[test]
    fn losing_the_race_to_create_the_lease_observes_the_winner() {
        let mut dir = Fake::default();
        let d = std::time::Duration::from_secs(30);
        assert!(
            block(tick(&mut dir, &lease_dn(), "a", at(0), d))
                .unwrap()
                .mine
        );
        dir.hide_reads = 1;
        let b = block(tick(&mut dir, &lease_dn(), "b", at(1), d)).unwrap();
        assert!(!b.mine);
        assert_eq!(b.lease.unwrap().holder, "a");
    }

    #[test]
    fn values_round_trip_and_junk_is_refused() {
        let l = Lease {
            holder: "host-a:42".into(),
            expires: DateTime::parse_from_rfc3339("2026-11-24T08:00:00.250Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(
            l.value(),
            "holder=host-a:42;expires=2026-11-24T08:00:00.250Z"
        );
        assert_eq!(Lease::parse(&l.value()), Some(l));
        assert_eq!(Lease::parse("holder=;expires=2026-11-24T08:00:00Z"), None);
        assert_eq!(Lease::parse("garbage"), None);
        assert_eq!(Lease::parse("holder=a;expires=yesterday"), None);
    }
}
