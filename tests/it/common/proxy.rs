//! A small TCP proxy between pcsync and a server (slapd), in the test process, to make the
//! network misbehave on demand:
//!
//! - [`Proxy::freeze_open_connections`]: every connection open now stops carrying bytes in
//!   both directions, and neither side is closed (a silent partition: no packets, no FIN, no
//!   RST; the proxy's kernel still acknowledges, so TCP keepalive does not notice either),
//!   while connections opened later are forwarded normally;
//! - [`Proxy::rewrite`]: replaces a byte string in what the server sends with another of the
//!   same length (so LDAP's BER lengths stay right), e.g. to plant a byte that is not UTF-8 in a
//!   DN.
//!
//! Plain threads, loopback only; every blocking call has a timeout so the threads notice the
//! proxy being dropped.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How often a pump thread looks at its flags while idle or frozen.
const TICK: Duration = Duration::from_millis(20);

pub struct Proxy {
    /// Where pcsync connects.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// One flag per connection ever accepted: frozen or not.
    connections: Mutex<Vec<Arc<AtomicBool>>>,
    /// `(from, to)` replacements applied to server-to-client bytes.
    rewrites: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Replacements made so far.
    rewritten: AtomicUsize,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || accept_loop(&listener, upstream, &s));
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// Freezes every connection open now; returns how many.
    pub fn freeze_open_connections(&self) -> usize {
        let conns = self.shared.connections.lock().unwrap();
        for c in conns.iter() {
            c.store(true, Ordering::SeqCst);
        }
        conns.len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.lock().unwrap().len()
    }

    /// From now on, `from` in what the server sends becomes `to` (same length).
    pub fn rewrite(&self, from: &[u8], to: &[u8]) {
        assert_eq!(from.len(), to.len(), "a rewrite keeps the length");
        assert!(!from.is_empty());
        self.shared
            .rewrites
            .lock()
            .unwrap()
            .push((from.to_vec(), to.to_vec()));
    }

    /// Replacements made so far.
    pub fn rewritten(&self) -> usize {
        self.shared.rewritten.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(TICK);
                continue;
            }
            Err(_) => continue,
        };
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
            continue; // the client sees its connection closed
        };
        let frozen = Arc::new(AtomicBool::new(false));
        shared.connections.lock().unwrap().push(Arc::clone(&frozen));
        for (from, to, rewrite) in [
            (client.try_clone(), server.try_clone(), false),
            (server.try_clone(), client.try_clone(), true),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let (shared, frozen) = (Arc::clone(shared), Arc::clone(&frozen));
            thread::spawn(move || pump(from, to, &shared, &frozen, rewrite));
        }
    }
}

/// Copies `from` to `to` until either side closes or the proxy stops. While frozen it reads
/// nothing, so the bytes wait in the kernel, unacknowledged by the application.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &Shared,
    frozen: &AtomicBool,
    rewrite: bool,
) {
    let _ = from.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if frozen.load(Ordering::SeqCst) {
            thread::sleep(TICK);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let chunk = &mut buf[..n];
        if rewrite {
            apply_rewrites(chunk, shared);
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    if !frozen.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

fn apply_rewrites(chunk: &mut [u8], shared: &Shared) {
    let rewrites = shared.rewrites.lock().unwrap();
    for (from, to) in rewrites.iter() {
        let mut i = 0;
        while i + from.len() <= chunk.len() {
            if &chunk[i..i + from.len()] == from.as_slice() {
                chunk[i..i + from.len()].copy_from_slice(to);
                shared.rewritten.fetch_add(1, Ordering::SeqCst);
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
}
