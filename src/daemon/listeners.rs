//! The listeners (SIP over UDP, TCP and TLS; HTTP): one supervised task each, serving the socket
//! bound at start-up and following the configuration.
//!
//! On a reload that changes a listener, [`keep_listening`] binds the new address *first* and
//! only then stops serving the old socket, so a failed bind (address in use, no permission, a
//! bad certificate) leaves the old socket serving, logged and shown as the listener's failed
//! attempt in `/healthz`. A reload that changes only limits keeps the socket and serves it
//! with the new ones. Connections already open are not cut: they run on their own tasks and
//! end as they would have (idle timeout, the peer closing, shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::tree::TaskName;
use super::{Daemon, Error, http};
use crate::config::Settings;
use crate::redirector::server_config;
use crate::sip::{self, tcp, tls, udp};

/// One kind of listener.
pub(crate) trait Transport: Send + Sync + 'static {
    /// What the listener is configured with (address and limits); `None` when it is off.
    type Config: Clone + PartialEq + Send + Sync + 'static;
    /// A bound socket, and what serving it needs that is loaded with it (a TLS acceptor).
    type Socket: Send + Sync + 'static;
    const NAME: TaskName;

    fn config(settings: &Settings) -> Option<Self::Config>;

    /// The configured address (port 0 included).
    fn addr(config: &Self::Config) -> SocketAddr;

    /// The address actually bound.
    fn local_addr(socket: &Self::Socket) -> Option<SocketAddr>;

    /// Binds `config`; `current` is the socket in force when its configured address is the
    /// same as `config`'s: it is kept, and only what goes with it (a certificate) is loaded.
    fn bind(
        config: &Self::Config,
        current: Option<&Self::Socket>,
    ) -> impl Future<Output = Result<Self::Socket, Error>> + Send;

    /// Serves `socket` until `token` is cancelled, or until the caller drops the future.
    fn serve(
        daemon: &Arc<Daemon>,
        socket: &Self::Socket,
        config: &Self::Config,
        token: &CancellationToken,
    ) -> impl Future<Output = ()> + Send;
}

/// A listener bound at start-up, handed to its task.
pub(crate) type Bound<T> = Option<(<T as Transport>::Config, <T as Transport>::Socket)>;

/// Binds `T` as configured in `settings` (`None` when off); an error ends start-up.
pub(crate) async fn bind_at_start<T: Transport>(settings: &Settings) -> Result<Bound<T>, Error> {
    match T::config(settings) {
        Some(config) => Ok(Some((config.clone(), T::bind(&config, None).await?))),
        None => Ok(None),
    }
}

/// The bound address, for the start-up line.
pub(crate) fn bound_addr<T: Transport>(bound: &Bound<T>) -> Option<SocketAddr> {
    bound.as_ref().and_then(|(_, s)| T::local_addr(s))
}

/// Serves `bound` and follows the configuration until `token` is cancelled.
pub(crate) async fn keep_listening<T: Transport>(
    daemon: Arc<Daemon>,
    mut bound: Bound<T>,
    token: CancellationToken,
) {
    let mut settings = daemon.settings.subscribe();
    loop {
        let wanted = {
            let serving = async {
                match &bound {
                    Some((config, socket)) => T::serve(&daemon, socket, config, &token).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(serving);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    () = &mut serving => return,
                    changed = settings.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let wanted = T::config(&settings.borrow_and_update());
                        if wanted != bound.as_ref().map(|(c, _)| c.clone()) {
                            break wanted;
                        }
                    }
                }
            }
        };
        bound = rebind::<T>(&daemon, bound, wanted).await;
    }
}

/// The listener after a reload asked for `wanted`: the new socket when it could be bound, else
/// the old one, still serving.
async fn rebind<T: Transport>(
    daemon: &Daemon,
    bound: Bound<T>,
    wanted: Option<T::Config>,
) -> Bound<T> {
    let name = T::NAME;
    let old = bound.as_ref().map(|(c, _)| T::addr(c));
    let Some(config) = wanted else {
        if let Some(old) = old {
            info!(listener = %name, %old, "listener turned off by the reloaded configuration");
        }
        return None;
    };
    let addr = T::addr(&config);
    let current = bound
        .as_ref()
        .filter(|(c, _)| T::addr(c) == addr)
        .map(|(_, s)| s);
    match T::bind(&config, current).await {
        Ok(socket) => {
            daemon.status.attempt(name, Ok(()), Utc::now());
            if old != Some(addr) {
                info!(listener = %name, old = ?old, new = %addr, "listener moved");
            }
            // The old socket is dropped here, once the new one is bound.
            Some((config, socket))
        }
        Err(e) => {
            let kept = old.map_or("it stays off".to_string(), |a| {
                format!("still serving on {a}")
            });
            let message = format!("{e}; {kept}");
            error!(listener = %name, "{message}");
            daemon.status.attempt(name, Err(message), Utc::now());
            bound
        }
    }
}

// === SIP over UDP ===

/// SIP over UDP.
pub(crate) struct SipUdp;

/// `[redirector] udp` and `udp_workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpListen {
    addr: SocketAddr,
    workers: usize,
}

impl Transport for SipUdp {
    type Config = UdpListen;
    /// Shared with the receive threads, which hold clones of it while they run.
    type Socket = Arc<std::net::UdpSocket>;
    const NAME: TaskName = TaskName::SipUdp;

    fn config(settings: &Settings) -> Option<UdpListen> {
        let c = server_config(settings);
        c.udp.map(|addr| UdpListen {
            addr,
            workers: c.udp_workers,
        })
    }

    fn addr(config: &UdpListen) -> SocketAddr {
        config.addr
    }

    fn local_addr(socket: &Self::Socket) -> Option<SocketAddr> {
        socket.local_addr().ok()
    }

    async fn bind(
        config: &UdpListen,
        current: Option<&Self::Socket>,
    ) -> Result<Self::Socket, Error> {
        match current {
            Some(socket) => Ok(Arc::clone(socket)),
            None => Ok(Arc::new(udp::bind(config.addr)?)),
        }
    }

    async fn serve(
        daemon: &Arc<Daemon>,
        socket: &Self::Socket,
        config: &UdpListen,
        token: &CancellationToken,
    ) {
        // Dropping this future (a rebind) stops the receive threads through the guard.
        let threads = token.child_token();
        let _stop = threads.clone().drop_guard();
        let handles = match udp::spawn(
            socket,
            config.workers,
            &daemon.redirector.sip,
            &threads,
            &daemon.tracker,
        ) {
            Ok(h) => h,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        // A receive thread ends only when cancelled; a panic there is this task's death.
        let (ended, _, _) = futures_util::future::select_all(handles).await;
        if let Err(e) = ended
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

// === SIP over TCP and TLS ===

/// SIP over TCP (`TLS = false`) or TLS.
pub(crate) struct SipStream<const TLS: bool>;

/// `[redirector] tcp` or `tls_*`, with the stream limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamListen {
    addr: SocketAddr,
    /// Certificate and key files (TLS only).
    tls: Option<(PathBuf, PathBuf)>,
    limits: tcp::Limits,
}

impl<const TLS: bool> Transport for SipStream<TLS> {
    type Config = StreamListen;
    type Socket = (Arc<TcpListener>, Option<TlsAcceptor>);
    const NAME: TaskName = if TLS {
        TaskName::SipTls
    } else {
        TaskName::SipTcp
    };

    fn config(settings: &Settings) -> Option<StreamListen> {
        let c = server_config(settings);
        let limits = tcp::Limits {
            max_message_size: c.max_message_size,
            max_connections: c.tcp_max_connections,
            idle_timeout: c.tcp_idle_timeout,
        };
        let (addr, tls) = if TLS {
            let t = c.tls?;
            (t.addr, Some((t.cert, t.key)))
        } else {
            (c.tcp?, None)
        };
        Some(StreamListen { addr, tls, limits })
    }

    fn addr(config: &StreamListen) -> SocketAddr {
        config.addr
    }

    fn local_addr(socket: &Self::Socket) -> Option<SocketAddr> {
        socket.0.local_addr().ok()
    }

    async fn bind(
        config: &StreamListen,
        current: Option<&Self::Socket>,
    ) -> Result<Self::Socket, Error> {
        // The certificate is read again at every (re)bind, so a reload picks up new files.
        let acceptor = match &config.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let listener = match current.map(|(l, _)| l) {
            Some(l) => Arc::clone(l),
            None => {
                let transport = if TLS { "TLS" } else { "TCP" };
                Arc::new(tcp::bind(config.addr, transport).await?)
            }
        };
        Ok((listener, acceptor))
    }

    async fn serve(
        daemon: &Arc<Daemon>,
        socket: &Self::Socket,
        config: &StreamListen,
        token: &CancellationToken,
    ) {
        let (listener, acceptor) = socket;
        // Room under the open-file limit for the cap of every stream listener configured.
        let c = server_config(&daemon.current());
        let streams = u64::from(c.tcp.is_some()) + u64::from(c.tls.is_some());
        sip::ensure_fd_limit(config.limits.max_connections as u64 * streams);
        tcp::serve(
            listener,
            acceptor.as_ref(),
            &daemon.redirector.sip,
            config.limits,
            token,
            &daemon.tracker,
        )
        .await;
    }
}

// === HTTP ===

/// `/healthz` and `/metrics`.
pub(crate) struct Http;

impl Transport for Http {
    type Config = http::Listen;
    type Socket = Arc<TcpListener>;
    const NAME: TaskName = TaskName::Http;

    fn config(settings: &Settings) -> Option<http::Listen> {
        http::Listen::of(&settings.http)
    }

    fn addr(config: &http::Listen) -> SocketAddr {
        config.addr
    }

    fn local_addr(socket: &Self::Socket) -> Option<SocketAddr> {
        socket.local_addr().ok()
    }

    async fn bind(
        config: &http::Listen,
        current: Option<&Self::Socket>,
    ) -> Result<Self::Socket, Error> {
        if let Some(l) = current {
            return Ok(Arc::clone(l));
        }
        TcpListener::bind(config.addr)
            .await
            .map(Arc::new)
            .map_err(|source| Error::Http {
                addr: config.addr,
                source,
            })
    }

    async fn serve(
        daemon: &Arc<Daemon>,
        socket: &Self::Socket,
        config: &http::Listen,
        token: &CancellationToken,
    ) {
        http::serve(socket, daemon, config, token).await;
    }
}

/// `sip::Error` ends start-up like any other listener error.
impl From<sip::Error> for Error {
    fn from(e: sip::Error) -> Error {
        Error::Sip(e)
    }
}
