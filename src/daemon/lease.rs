//! The writer lease: which of several `pcsync run` instances sharing one directory may write.
//!
//! The directory is the only shared store. The lease is one entry (`[daemon] lease_dn`, object
//! class `container`) whose `description` holds exactly one value,
//! `holder=<instance>;expires=<RFC 3339 UTC>`; it is created with that value in the add itself.
//! An instance takes or renews it with a compare-and-swap: one modify that deletes every value
//! it read and adds its own. If another instance changed the values in between, the delete
//! fails (LDAP 16, noSuchAttribute) and the whole modify is refused, so two instances can never
//! both believe they hold it. An entry with no value (made by hand) first gets a placeholder
//! that holds no lease, then is swapped the same way; one with several values holds no valid
//! lease, and is swapped once no live lease of another instance is among them. Every instance
//! sends these writes to the write server (`crate::estate`): conditional writes only exclude
//! each other on one DC. A lease is taken over only once its expiry has passed; the holder
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
use crate::estate;
use crate::ldap::Directory;
use crate::mapping::refresh::agent_connection;
use crate::model::{AttrValues, Dn, Entry, Modification};

/// The attribute holding the lease value.
pub(crate) const LEASE_ATTR: &str = "description";
/// The value an entry without one gets before an instance swaps it for its lease: it parses as
/// no lease, and it is the same for every instance, so only one of two adds of it succeeds.
const PLACEHOLDER: &str = "pcsync-lease: no holder";

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
            Err(WriteError::Exists { .. }) => observe(dir, dn, me).await,
            Err(e) => Err(e),
        };
    };
    let mut values = lease_values(&entry);
    if values.is_empty() {
        // No value to compare against, and a plain add of our own value could not lose: on AD
        // `description` is multi-valued, so two instances adding at once would both "win".
        // Add the placeholder (the same value for everyone, so of two adds one fails), read
        // again, and go on as with any value.
        let placeholder = [Modification::Add(AttrValues::text(
            LEASE_ATTR,
            &[PLACEHOLDER],
        ))];
        match dir.modify(dn, &placeholder, &[]).await {
            Ok(()) => {}
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(e),
        }
        match dir.read_entry(dn).await? {
            Some(entry) => values = lease_values(&entry),
            None => return observe(dir, dn, me).await,
        }
        if values.is_empty() {
            return observe(dir, dn, me).await;
        }
    }
    let parsed: Vec<Lease> = values.iter().filter_map(|v| Lease::parse(v)).collect();
    // A live lease of another instance, even beside other values (an instance that added a
    // value to an entry made without one, after the holder's swap), is respected until it
    // expires: its holder believes it writes.
    if let Some(other) = parsed.iter().find(|l| l.holder != me && l.expires > now) {
        return Ok(Observed {
            lease: Some(other.clone()),
            mine: false,
        });
    }
    // One compare-and-swap: delete every value read (LDAP 16 when any changed since) and add
    // ours, in one modify; it leaves exactly one value.
    let old: Vec<&str> = values.iter().map(String::as_str).collect();
    let mods = [
        Modification::Delete(AttrValues::text(LEASE_ATTR, &old)),
        Modification::Add(AttrValues::text(LEASE_ATTR, &[want.value().as_str()])),
    ];
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

/// The lease entry's values of [`LEASE_ATTR`], as text.
fn lease_values(entry: &Entry) -> Vec<String> {
    entry
        .get(LEASE_ATTR)
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
        .collect()
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

/// The lease as it stands: only an entry with exactly one value that parses holds one.
async fn observe(
    dir: &mut impl DirectoryWriter,
    dn: &Dn,
    me: &str,
) -> Result<Observed, WriteError> {
    let lease = dir
        .read_entry(dn)
        .await?
        .and_then(|e| match &lease_values(&e)[..] {
            [one] => Lease::parse(one),
            _ => None,
        });
    let mine = lease.as_ref().is_some_and(|l| l.holder == me);
    Ok(Observed { lease, mine })
}

/// The entry changed since it was read: a value gone (LDAP 16) or already there (20), the
/// entry gone (32) or made (68) in between, an assertion failed (122). Another instance won.
fn lost_race(e: &WriteError) -> bool {
    matches!(e, WriteError::Conflict { .. } | WriteError::Exists { .. })
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
            // The lease lives on the write server like every other write: two instances that
            // each swapped it on a different DC would both win until replication.
            match estate::writer::open_with(
                &self.settings.directory,
                &agent_connection(&self.settings),
            )
            .await
            {
                Ok((d, _)) => self.dir = Some(d),
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
    use crate::apply::DirectoryWriter;
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

    /// A `DirectoryWriter` that records every modify it passes on.
    struct Recorder<'a> {
        dir: &'a mut Fake,
        modifies: Vec<Vec<Modification>>,
    }

    impl DirectoryWriter for Recorder<'_> {
        async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, WriteError> {
            self.dir.read_entry(dn).await
        }
        async fn add(&mut self, entry: &Entry) -> Result<(), WriteError> {
            self.dir.add(entry).await
        }
        async fn delete(&mut self, dn: &Dn, expect: &[AttrValues]) -> Result<(), WriteError> {
            self.dir.delete(dn, expect).await
        }
        async fn modify(
            &mut self,
            dn: &Dn,
            mods: &[Modification],
            expect: &[AttrValues],
        ) -> Result<(), WriteError> {
            self.modifies.push(mods.to_vec());
            self.dir.modify(dn, mods, expect).await
        }
        async fn reanimate(&mut self, guid: &[u8], dn: &Dn) -> Result<bool, WriteError> {
            self.dir.reanimate(guid, dn).await
        }
    }

    fn values(dir: &mut Fake) -> Vec<String> {
        block(dir.read_entry(&lease_dn()))
            .unwrap()
            .map(|e| lease_values(&e))
            .unwrap_or_default()
    }

    fn entry_with(dir: &mut Fake, values: &[&str]) {
        let mut attributes = vec![
            AttrValues::text("objectClass", &["top", "container"]),
            AttrValues::text("cn", &["pcsync-lease"]),
        ];
        if !values.is_empty() {
            attributes.push(AttrValues::text(LEASE_ATTR, values));
        }
        block(dir.add(&Entry {
            dn: lease_dn(),
            attributes,
        }))
        .unwrap();
    }

    // See: #20. A lease entry made without a value (by hand, or half-made) let two instances
    // each add one and both hold it. Now the empty entry gets the placeholder, and only a swap
    // of what was read takes it: one holder, one value, and no modify ever adds a lease value
    // without deleting what it read.
    #[test]
    fn an_entry_without_a_value_is_taken_by_one_swap_never_a_plain_add() {
        let mut fake = Fake::default();
        entry_with(&mut fake, &[]);
        let d = std::time::Duration::from_secs(30);
        let mut dir = Recorder {
            dir: &mut fake,
            modifies: Vec::new(),
        };
        assert!(
            block(tick(&mut dir, &lease_dn(), "a", at(0), d))
                .unwrap()
                .mine
        );
        assert!(
            !block(tick(&mut dir, &lease_dn(), "b", at(1), d))
                .unwrap()
                .mine
        );
        for mods in &dir.modifies {
            let adds_a_lease = mods.iter().any(|m| {
                matches!(m, Modification::Add(v) if v.texts().any(|t| Lease::parse(t).is_some()))
            });
            let deletes = mods.iter().any(|m| matches!(m, Modification::Delete(_)));
            assert!(!adds_a_lease || deletes, "a plain add of a lease: {mods:?}");
        }
        let now = values(dir.dir);
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(Lease::parse(&now[0]).unwrap().holder, "a");
    }

    /// An instance that read the empty entry before the holder swapped it, and adds the
    /// placeholder only afterwards, sees the holder's live lease and stays out; the holder's
    /// next renewal leaves one value again.
    #[test]
    fn a_late_placeholder_beside_a_live_lease_changes_no_holder() {
        let mut dir = Fake::default();
        let d = std::time::Duration::from_secs(30);
        let a = Lease {
            holder: "a".into(),
            expires: at(30),
        };
        entry_with(&mut dir, &[&a.value(), PLACEHOLDER]);
        let b = block(tick(&mut dir, &lease_dn(), "b", at(1), d)).unwrap();
        assert!(!b.mine);
        assert_eq!(b.lease.unwrap().holder, "a");
        assert!(
            block(tick(&mut dir, &lease_dn(), "a", at(10), d))
                .unwrap()
                .mine
        );
        assert_eq!(values(&mut dir).len(), 1);
    }

    /// Two live leases (the old bug's end state) make neither instance the writer; once both
    /// expire, one swap leaves a single value.
    #[test]
    fn two_live_values_make_no_writer_until_they_expire() {
        let mut dir = Fake::default();
        let d = std::time::Duration::from_secs(30);
        let lease = |holder: &str| Lease {
            holder: holder.into(),
            expires: at(30),
        };
        entry_with(&mut dir, &[&lease("a").value(), &lease("b").value()]);
        assert!(
            !block(tick(&mut dir, &lease_dn(), "a", at(1), d))
                .unwrap()
                .mine
        );
        assert!(
            !block(tick(&mut dir, &lease_dn(), "b", at(2), d))
                .unwrap()
                .mine
        );
        let seen = block(observe(&mut dir, &lease_dn(), "a")).unwrap();
        assert_eq!(
            seen,
            Observed {
                lease: None,
                mine: false
            }
        );
        assert!(
            block(tick(&mut dir, &lease_dn(), "b", at(31), d))
                .unwrap()
                .mine
        );
        assert_eq!(values(&mut dir).len(), 1);
        assert!(
            !block(tick(&mut dir, &lease_dn(), "a", at(32), d))
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
