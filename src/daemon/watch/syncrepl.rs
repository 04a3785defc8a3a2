//! The syncrepl live watch (OpenLDAP with syncprov): an RFC 4533 refreshAndPersist search on
//! the endpoint container ([`crate::ldap::Directory::syncrepl`]) whose every event triggers a
//! table refresh through the refresh worker (built whole, validated, published), so a change
//! reaches the redirector within a second instead of a poll interval.
//!
//! The persist phase says nothing while nothing changes; the consumer probes the connection
//! after a third of `watch_timeout` of silence, and a stream that has not been heard from (no
//! event, no probe answered) for `watch_timeout` is replaced by a new connection, whose refresh
//! phase brings what was missed.
//!
//! The consumer runs in its own task: ldap3's sync parsers panic on malformed BER, and a panic
//! there ends only that task, which this loop treats as a dropped connection. The newest cookie
//! is kept in `state.dir/syncrepl.cookie` ([`CookieStore`]) so a reconnect or restart resumes
//! rather than re-reading the container; LDAP 4096 (e-syncRefreshRequired) drops it.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::{End, Link, Mechanism, ask_refresh};
use crate::config::Settings;
use crate::daemon::Daemon;
use crate::ldap::{Directory, SyncEnd, SyncEvent};
use crate::model::Dn;
use crate::schedule::Trigger;
use crate::util::{from_hex, hex};

/// The cookie file's name in `state.dir`.
pub(crate) const COOKIE_FILE: &str = "syncrepl.cookie";

/// Why the cookie store failed; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CookieError {
    #[error("cannot read the syncrepl cookie {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the syncrepl cookie {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("syncrepl cookie {path} is malformed: {reason}; it is ignored (full refresh)")]
    Malformed { path: PathBuf, reason: String },
}

/// The newest syncrepl cookie, persisted as two lines: the search base it belongs to and the
/// cookie in hex. A cookie for another base (the configuration changed) is ignored.
#[derive(Debug, Clone)]
pub(crate) struct CookieStore {
    path: PathBuf,
    base: String,
}

impl CookieStore {
    pub(crate) fn new(state_dir: &Path, base: &Dn) -> CookieStore {
        CookieStore {
            path: state_dir.join(COOKIE_FILE),
            base: base.normalized().to_string(),
        }
    }

    /// The stored cookie for this base; `None` when there is none (or it is for another base).
    pub(crate) fn load(&self) -> Result<Option<Vec<u8>>, CookieError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CookieError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut lines = text.lines();
        let (Some(base), Some(hex), None) = (lines.next(), lines.next(), lines.next()) else {
            return Err(self.malformed("expected two lines: base DN, hex cookie"));
        };
        if base != self.base {
            return Ok(None);
        }
        from_hex(hex)
            .map(Some)
            .ok_or_else(|| self.malformed("the cookie is not hex"))
    }

    /// Replaces the stored cookie atomically ([`crate::private::write_atomic`]).
    pub(crate) fn save(&self, cookie: &[u8]) -> Result<(), CookieError> {
        let err = |source| CookieError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::private::create_dir(dir).map_err(err)?;
        let text = format!("{}\n{}\n", self.base, hex(cookie));
        crate::private::write_atomic(&self.path, text.as_bytes()).map_err(err)
    }

    /// Forgets the cookie (the server said it is stale).
    pub(crate) fn clear(&self) -> Result<(), CookieError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CookieError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn malformed(&self, reason: &str) -> CookieError {
        CookieError::Malformed {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

/// What the watch does with one event: whether it asks for a table refresh, and the cookie to
/// persist. Every event, `Alive` included, proves the connection alive.
pub(crate) fn handle(event: SyncEvent) -> (bool, Option<Vec<u8>>) {
    match event {
        SyncEvent::Changed | SyncEvent::RefreshDone => (true, None),
        SyncEvent::Cookie(c) => (false, Some(c)),
        SyncEvent::Alive => (false, None),
    }
}

/// The syncrepl watch's state across connections: the cookie, and whether the next stream
/// must ask for a full reload.
pub(crate) struct Syncrepl {
    base: Dn,
    store: CookieStore,
    cookie: Option<Vec<u8>>,
    reload: bool,
}

impl Syncrepl {
    pub(crate) fn new(settings: &Settings) -> Syncrepl {
        let base = settings.layout.endpoint_container.clone();
        let store = CookieStore::new(&settings.state.dir, &base);
        let cookie = store.load().unwrap_or_else(|e| {
            warn!("{e}");
            None
        });
        Syncrepl {
            base,
            store,
            cookie,
            reload: false,
        }
    }

    /// Streams on `dir` until the connection is lost, goes silent for `watch_timeout`, or the
    /// server asks for a full refresh.
    pub(crate) async fn watch(
        &mut self,
        daemon: &Daemon,
        settings: &Settings,
        dir: Directory,
        link: &mut Link<'_>,
    ) -> End {
        link.connected(Mechanism::Syncrepl);
        info!(base = %self.base, resume = self.cookie.is_some(), "syncrepl watch connected");
        // Changes made while disconnected arrive in the refresh phase; a refresh now covers a
        // server that restarted without the cookie's history too.
        let _ = daemon.refresh.try_send(Trigger::Watch);
        let reloaded = std::mem::take(&mut self.reload);
        let end = self.consume(daemon, settings, dir, link, reloaded).await;
        match end {
            // Asked again right after a full reload: back off rather than spin.
            SyncEnd::RefreshRequired if reloaded => {
                End::Lost("the server requires a full refresh (LDAP 4096) even after one".into())
            }
            SyncEnd::RefreshRequired => {
                info!("syncrepl: the server requires a full refresh (LDAP 4096); cookie dropped");
                self.cookie = None;
                self.reload = true;
                if let Err(e) = self.store.clear() {
                    warn!("{e}");
                }
                End::Again
            }
            SyncEnd::Unsupported => End::Unsupported,
            SyncEnd::Stopped => End::Stopped,
            SyncEnd::Lost(reason) => End::Lost(reason),
        }
    }

    /// One stream: the consumer in its own task (aborted if this future is dropped), its
    /// events applied here, and the silence deadline.
    async fn consume(
        &mut self,
        daemon: &Daemon,
        settings: &Settings,
        dir: Directory,
        link: &Link<'_>,
        reload: bool,
    ) -> SyncEnd {
        let silence = settings.daemon.watch_timeout;
        let url = dir.url().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Probed after a third of the silence allowed, so two probes can go unanswered in
        // time before the connection is given up.
        let stream = dir.syncrepl(
            self.base.clone(),
            self.cookie.clone(),
            reload,
            silence / 3,
            tx,
        );
        let mut task = AbortOnDropHandle::new(tokio::spawn(stream));
        let deadline = tokio::time::sleep(silence);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => {
                        link.heard();
                        deadline.as_mut().reset(tokio::time::Instant::now() + silence);
                        self.apply(daemon, event);
                    }
                    None => break,
                },
                () = &mut deadline => {
                    return SyncEnd::Lost(format!(
                        "nothing heard from {url} for {silence:?} (watch_timeout): replacing the connection"
                    ));
                }
            }
        }
        end_of_task((&mut task).await)
    }

    fn apply(&mut self, daemon: &Daemon, event: SyncEvent) {
        let (refresh, new_cookie) = handle(event);
        if refresh {
            ask_refresh(daemon);
        }
        if let Some(c) = new_cookie {
            if let Err(e) = self.store.save(&c) {
                warn!("{e}");
            }
            self.cookie = Some(c);
        }
    }
}

/// How the consumer task ended; a panic (ldap3's parsers on malformed BER) is a lost
/// connection like any other.
fn end_of_task(joined: Result<SyncEnd, tokio::task::JoinError>) -> SyncEnd {
    match joined {
        Ok(end) => end,
        Err(e) if e.is_panic() => {
            SyncEnd::Lost("syncrepl consumer stopped on a malformed server message".to_string())
        }
        Err(e) => SyncEnd::Lost(format!("syncrepl consumer ended: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Dn {
        Dn::parse("CN=Application Contacts,CN=RTC Service,dc=contoso,dc=com").unwrap()
    }

    #[test]
    fn cookie_round_trips_atomically_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CookieStore::new(&dir.path().join("state"), &base());
        assert_eq!(store.load().unwrap(), None);
        store.save(b"rid=000,csn=20261124\x00\xff").unwrap();
        assert_eq!(
            store.load().unwrap().as_deref(),
            Some(&b"rid=000,csn=20261124\x00\xff"[..])
        );
        let mode = std::fs::metadata(store.path.as_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.save(b"newer").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"newer"[..]));
        assert_eq!(
            std::fs::read_dir(store.path.parent().unwrap())
                .unwrap()
                .count(),
            1,
            "only the cookie file, no temp file"
        );
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.clear().unwrap();
    }

    #[test]
    fn a_cookie_for_another_base_is_ignored_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        CookieStore::new(dir.path(), &base()).save(b"c").unwrap();
        let other = Dn::parse("ou=elsewhere,dc=contoso,dc=com").unwrap();
        assert_eq!(CookieStore::new(dir.path(), &other).load().unwrap(), None);
        std::fs::write(dir.path().join(COOKIE_FILE), "only one line").unwrap();
        let e = CookieStore::new(dir.path(), &base()).load().unwrap_err();
        assert!(e.to_string().contains(COOKIE_FILE), "{e}");
        let text = format!("{}\nzz\n", base().normalized());
        std::fs::write(dir.path().join(COOKIE_FILE), text).unwrap();
        let e = CookieStore::new(dir.path(), &base()).load().unwrap_err();
        assert!(e.to_string().contains("not hex"), "{e}");
    }

    #[tokio::test]
    async fn a_panicking_consumer_counts_as_a_lost_connection() {
        let task = tokio::spawn(async {
            if true {
                panic!("syncstate: failed to parse tag");
            }
            SyncEnd::Stopped
        });
        assert!(matches!(
            end_of_task(task.await),
            SyncEnd::Lost(m) if m.contains("malformed")
        ));
        let ok = tokio::spawn(async { SyncEnd::RefreshRequired });
        assert_eq!(end_of_task(ok.await), SyncEnd::RefreshRequired);
    }

    #[test]
    fn changes_and_refresh_done_refresh_the_table_and_cookies_are_kept() {
        assert_eq!(handle(SyncEvent::Changed), (true, None));
        assert_eq!(handle(SyncEvent::RefreshDone), (true, None));
        assert_eq!(handle(SyncEvent::Alive), (false, None));
        assert_eq!(
            handle(SyncEvent::Cookie(b"k".to_vec())),
            (false, Some(b"k".to_vec()))
        );
    }
}
