//! SIP over UDP: one datagram is one message.
//!
//! Why blocking threads rather than a tokio task (unlike the async TCP and TLS listeners and
//! the usual tokio server shape): a blocking `recv_from` per datagram is the cheapest receive path there is,
//! one system call that sleeps in the kernel, with no readiness registration, wake-up or task
//! scheduling per message; it is what Kamailio's UDP workers do too, and the benchmark goal is
//! CPU per call. Each worker polls its cancellation token between datagrams and at least every
//! `RECV_POLL` when idle, so shutdown stays prompt. Workers run on the task tracker's blocking
//! pool, so the shutdown grace period covers them like every other task.
//!
//! A malformed datagram is counted and skipped (rsipstack `udp.rs`); a send error is counted and
//! the loop goes on. Nothing here ends the listener except cancellation.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use super::metrics::DropReason;
use super::redirect::Source;
use super::{Error, Shared};

/// How often an idle worker checks for shutdown.
const RECV_POLL: Duration = Duration::from_millis(100);
/// Largest UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Receive buffer asked of the kernel (capped by net.core.rmem_max), for bursts.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Binds the UDP socket (IPv6 `[::]` is dual-stack where the system allows it).
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let err = |source| Error::Bind {
        transport: "UDP",
        addr,
        source,
    };
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(err)?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
    socket.bind(&addr.into()).map_err(err)?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(RECV_POLL)).map_err(err)?;
    Ok(socket)
}

/// Starts `workers` receive loops on the socket; they stop when `token` is cancelled (within
/// `RECV_POLL`), each closing its handle on the socket.
pub(crate) fn spawn(
    socket: &UdpSocket,
    workers: usize,
    shared: &Arc<Shared>,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let local = socket.local_addr().map_err(Error::Thread)?;
    info!(%local, workers, "SIP UDP listener started");
    (0..workers.max(1))
        .map(|_| {
            let socket = socket.try_clone().map_err(Error::Thread)?;
            let (shared, token) = (Arc::clone(shared), token.clone());
            Ok(tracker.spawn_blocking(move || serve(&socket, &shared, &token)))
        })
        .collect()
}

/// One worker's receive loop.
fn serve(socket: &UdpSocket, shared: &Shared, token: &CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    let mut out = Vec::with_capacity(2048);
    while !token.is_cancelled() {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // e.g. ECONNREFUSED reported for an earlier send; the socket stays usable.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let source = Source {
            addr: from,
            datagram: true,
        };
        // Defence in depth: the reader is fuzzed and never panics, but if it ever did, one bad
        // datagram must not take a worker (and so the listener) down. Unwinding costs nothing
        // until it happens.
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.handle(&buf[..n], source, &mut out)
        }));
        let destination = match handled {
            Ok(d) => d,
            Err(_) => {
                shared.metrics.dropped(DropReason::Unanswerable);
                error!(%from, len = n, "BUG: a datagram made the SIP handler panic; dropped it");
                continue;
            }
        };
        if let Some(Some(to)) = destination
            && let Err(e) = socket.send_to(&out, to)
        {
            shared.metrics.dropped(DropReason::SendFailed);
            debug!(%to, error = %e, "UDP send failed");
        }
    }
}
