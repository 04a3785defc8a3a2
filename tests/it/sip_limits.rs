//! The redirector's protections, end to end in `pcsync run` (for its `/metrics`): the TCP
//! connection cap (issue #8, Load: connections up to the cap are held and served, beyond it they
//! are refused cleanly while UDP goes on being answered) and the per-source rate limit (issue #8,
//! Security: a flooding source is dropped and counted, a well-behaved one is served, and the
//! flooder is served again after the window).
//!
//! "Refused cleanly" is exact here: a connection over the cap is accepted and closed by the
//! server at once, so the client reads end-of-stream (not a hang in the kernel's backlog); it is
//! counted in `pcsync_sip_dropped_total{reason="connection_cap"}` and one warning says so.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::daemon::Daemon;
use crate::common::redirect::{
    FIXTURE_CONTACT, FIXTURE_USER, READY_TIMEOUT, Redirector, options_status_within, sipp,
    tool_or_install_hint,
};
use crate::common::slapd::Slapd;
use crate::daemon::{parse_prometheus, value};

/// How long the server may take to answer or close, on a loaded machine.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn invite(via: SocketAddr, transport: &str, call: &str) -> String {
    format!(
        "INVITE sip:{FIXTURE_USER}@contoso.com SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK{call}\r\n\
         From: <sip:alice@contoso.com>;tag=a\r\nTo: <sip:{FIXTURE_USER}@contoso.com>\r\nCall-ID: {call}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn options(via: SocketAddr, call: &str) -> String {
    format!(
        "OPTIONS sip:{FIXTURE_USER}@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{call}\r\n\
         From: <sip:flood@contoso.com>;tag=f\r\nTo: <sip:{FIXTURE_USER}@contoso.com>\r\nCall-ID: {call}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends an INVITE on `stream` and returns the response head (up to the blank line).
fn redirect_over(stream: &mut TcpStream, call: &str) -> String {
    let local = stream.local_addr().unwrap();
    stream
        .write_all(invite(local, "TCP", call).as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{call}: no response: {e}"));
        assert!(n > 0, "{call}: connection closed by the server");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn metric(d: &Daemon, name: &str, label: Option<(&str, &str)>) -> f64 {
    value(&parse_prometheus(&d.metrics()), name, label)
}

fn wait_for_the_fixture(d: &Daemon, from: &str) {
    let socket = UdpSocket::bind(format!("{from}:0")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    d.wait_until(
        "the fixture's endpoint is mapped",
        Duration::from_secs(30),
        || {
            socket
                .send_to(invite(local, "UDP", "wait").as_bytes(), d.sip)
                .unwrap();
            let mut buf = [0u8; 4096];
            socket
                .recv(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"SIP/2.0 302 "))
        },
    );
}

#[test]
fn tcp_connections_up_to_the_cap_are_held_and_served_beyond_it_refused_while_udp_answers() {
    const CAP: usize = 16;
    const FLOOD: usize = 1000;
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[("PCSYNC__REDIRECTOR__TCP_MAX_CONNECTIONS", &CAP.to_string())],
    );
    wait_for_the_fixture(&d, "127.0.0.1");

    // Up to the cap: every connection is held and served.
    let mut held: Vec<TcpStream> = (0..CAP)
        .map(|i| {
            let mut s = TcpStream::connect(d.sip).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let head = redirect_over(&mut s, &format!("held-{i}"));
            assert!(
                head.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
                "{head}"
            );
            s
        })
        .collect();
    assert_eq!(metric(&d, "pcsync_sip_connections", None), CAP as f64);

    // Beyond the cap, a flood of connections on a thread, while UDP is asked: OPTIONS one after
    // another on another thread, and a sipp call on this one.
    let server = d.sip;
    let flooding = Arc::new(AtomicBool::new(true));
    let still = Arc::clone(&flooding);
    let prober = std::thread::spawn(move || {
        let target = format!("sip:{FIXTURE_USER}@contoso.com");
        let (mut answered, mut unanswered) = (0, 0);
        while still.load(Ordering::Relaxed) || answered == 0 {
            match options_status_within(server, &target, IO_TIMEOUT) {
                Some(200) => answered += 1,
                _ => unanswered += 1,
            }
        }
        (answered, unanswered)
    });
    let flood = std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..FLOOD {
            let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut byte = [0u8; 1];
            let started = Instant::now();
            // Closed by the server without a byte: end-of-stream.
            outcomes.push((s.read(&mut byte).map_err(|e| e.kind()), started.elapsed()));
        }
        outcomes
    });
    let run = sipp("invite_302.xml", d.sip, "u1", FIXTURE_USER, work.path());
    let outcomes = flood.join().unwrap();
    flooding.store(false, Ordering::Relaxed);
    let (udp_answers, udp_unanswered) = prober.join().unwrap();
    run.assert_ok();
    let got = run.received("SIP/2.0 302 Moved Temporarily");
    assert_eq!(got.len(), 1, "{}", run.messages);
    assert!(
        got[0].contains(&format!("Contact: {FIXTURE_CONTACT}")),
        "{}",
        got[0]
    );
    assert_eq!(
        udp_unanswered, 0,
        "UDP OPTIONS unanswered during the flood ({udp_answers} answered)"
    );
    let refused = outcomes.iter().filter(|(r, _)| *r == Ok(0)).count();
    assert_eq!(
        refused, FLOOD,
        "every connection over the cap must be closed by the server (read 0 bytes): {outcomes:?}"
    );
    let slowest = outcomes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!(
        "cap {CAP}: {CAP} held and served; {refused} of {FLOOD} over the cap closed by the server \
         (slowest close {slowest:?}); {udp_answers} UDP OPTIONS answered and a sipp call redirected during the flood"
    );

    // The held connections were not disturbed: each is still served.
    for (i, s) in held.iter_mut().enumerate() {
        let head = redirect_over(s, &format!("held-again-{i}"));
        assert!(
            head.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
            "{head}"
        );
    }
    assert_eq!(
        metric(
            &d,
            "pcsync_sip_dropped_total",
            Some(("reason", "connection_cap"))
        ),
        FLOOD as f64
    );
    assert_eq!(metric(&d, "pcsync_sip_connections", None), CAP as f64);
    let log = d.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("TCP connection cap reached: refused"))
        .count();
    // One at the first refusal, then at most one per 10 s.
    assert!((1..=3).contains(&warnings), "{warnings} warnings:\n{log}");

    // A freed slot is taken again.
    drop(held.pop());
    d.wait_until("the closed connection's slot is free", IO_TIMEOUT, || {
        metric(&d, "pcsync_sip_connections", None) == (CAP - 1) as f64
    });
    let mut again = TcpStream::connect(d.sip).unwrap();
    again.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = redirect_over(&mut again, "after-free");
    assert!(
        head.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{head}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_rate_limit_drops_and_counts_a_flooding_source_serves_others_and_forgives_after_the_window() {
    const LIMIT: usize = 50;
    const WINDOW: Duration = Duration::from_secs(3);
    const FLOOD: usize = 1000;
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &slapd,
        work.path(),
        &[(
            "PCSYNC__REDIRECTOR__RATE_LIMIT",
            &format!("{LIMIT}/{}s", WINDOW.as_secs()),
        )],
    );
    // The whole 127.0.0.0/8 is loopback on Linux: one address per source.
    wait_for_the_fixture(&d, "127.0.0.4");

    // The flooder, 127.0.0.2: a burst of OPTIONS, far over the limit, then its answers.
    let flooder = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    flooder.set_recv_buffer_size(4 << 20).unwrap();
    flooder
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let flooder: UdpSocket = flooder.into();
    let flood_addr = flooder.local_addr().unwrap();
    for i in 0..FLOOD {
        flooder
            .send_to(options(flood_addr, &format!("flood-{i}")).as_bytes(), d.sip)
            .unwrap();
    }

    // The well-behaved source, 127.0.0.3, at 10 INVITEs/s (the limit allows about 16/s): every
    // one gets its 302.
    let polite = UdpSocket::bind("127.0.0.3:0").unwrap();
    polite.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let polite_addr = polite.local_addr().unwrap();
    for i in 0..20 {
        polite
            .send_to(
                invite(polite_addr, "UDP", &format!("polite-{i}")).as_bytes(),
                d.sip,
            )
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = polite
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("the well-behaved source got no answer to INVITE {i}: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The flooder's answers: at most the limit per window (the burst may straddle two).
    flooder
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    loop {
        match flooder.recv(&mut buf) {
            Ok(_) => answered += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("flooder: {e}"),
        }
    }
    assert!(
        (LIMIT..=2 * LIMIT).contains(&answered),
        "{answered} of {FLOOD} flood messages answered; limit {LIMIT} per {WINDOW:?}"
    );
    let dropped = metric(
        &d,
        "pcsync_sip_dropped_total",
        Some(("reason", "rate_limited")),
    );
    assert_eq!(dropped, (FLOOD - answered) as f64);
    let log = d.log_text();
    assert!(
        log.lines().any(
            |l| l.contains("rate limit: a source sent more than the limit")
                && l.contains("127.0.0.2")
        ),
        "{log}"
    );
    assert!(
        !log.contains("127.0.0.3"),
        "the well-behaved source was reported:\n{log}"
    );

    // After the window the flooder is served again.
    let started = Instant::now();
    let mut call = 0;
    d.wait_until("the flooder is served again", WINDOW * 3, || {
        call += 1;
        flooder
            .send_to(
                options(flood_addr, &format!("again-{call}")).as_bytes(),
                d.sip,
            )
            .unwrap();
        flooder
            .recv(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"SIP/2.0 200 OK"))
    });
    eprintln!(
        "flood: {FLOOD} sent, {answered} answered, {dropped} dropped (metric); served again after {:?}",
        started.elapsed()
    );
}

/// The default cap (1024 connections on the TCP listener) needs more file descriptors than a
/// shell's usual soft limit of 1024: without room, `accept` fails past the limit and new
/// connections wait unaccepted instead of being refused. pcsync raises the soft limit up to the
/// hard one, or says at start-up that it cannot.
#[test]
fn a_low_open_file_limit_is_raised_for_the_connection_cap_or_reported() {
    let slapd = Slapd::start();
    let prlimit = tool_or_install_hint("prlimit", "util-linux");
    let start = |limits: &str| {
        let work = tempfile::tempdir().unwrap();
        let mut program = std::process::Command::new(&prlimit);
        program
            .arg(format!("--nofile={limits}"))
            .arg(assert_cmd::cargo::cargo_bin("pcsync"));
        let r = Redirector::spawn_program(program, &slapd, work.path(), &[]);
        r.wait_for(FIXTURE_USER, 200, READY_TIMEOUT);
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", r.pid())).unwrap();
        let open_files = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        (r, work, open_files)
    };

    // Room under the hard limit: raised to the cap plus a reserve of 128.
    let (r, _work, open_files) = start("256:4096");
    assert_eq!(open_files, "1152 4096");
    let log = r.log_text();
    assert!(log.contains("raised the open-file limit"), "{log}");
    assert!(!log.contains("too low"), "{log}");

    // No room: it still serves, and says why the cap cannot hold.
    let (r, _work, open_files) = start("256:256");
    assert_eq!(open_files, "256 256");
    let log = r.log_text();
    assert!(
        log.contains("the open-file limit is too low for tcp_max_connections"),
        "{log}"
    );
}
