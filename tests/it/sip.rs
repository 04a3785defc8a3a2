//! The redirect server end to end: `pcsync redirect` serving the table it built from a real
//! slapd, driven by real sipp scenarios (tests/sipp/) over UDP and TCP, and by `pcsync probe`.

use std::time::Duration;

use crate::common::redirect::{FIXTURE_CONTACT, FIXTURE_USER, Redirector, options_status, sipp};
use crate::common::slapd::Slapd;
use crate::common::{output, pcsync, pcsync_bare};

fn contact_of(message: &str) -> Option<&str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Contact: "))
        .map(str::trim)
}

#[test]
fn invite_gets_302_with_the_exact_contact_over_udp_and_tcp() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let server = Redirector::start(&slapd, work.path());
    for transport in ["u1", "t1"] {
        let run = sipp(
            "invite_302.xml",
            server.addr,
            transport,
            FIXTURE_USER,
            work.path(),
        );
        run.assert_ok();
        let got = run.received("SIP/2.0 302 Moved Temporarily");
        assert_eq!(got.len(), 1, "{transport}: {}", run.messages);
        assert_eq!(
            contact_of(&got[0]),
            Some(FIXTURE_CONTACT),
            "{transport}: {}",
            got[0]
        );
        assert!(
            got[0].contains("\nX-Pcsync-Mapping: version=1"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("\nServer: pcsync/"), "{}", got[0]);
        // The To tag was added; Call-ID and CSeq are echoed.
        let to = got[0].lines().find(|l| l.starts_with("To: ")).unwrap();
        assert!(to.contains(";tag="), "{to}");
        assert!(got[0].contains("\nCSeq: 1 INVITE"), "{}", got[0]);
    }
}

#[test]
fn unmapped_gets_404_ack_is_absorbed_and_options_gets_200() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let server = Redirector::start(&slapd, work.path());
    for transport in ["u1", "t1"] {
        let run = sipp(
            "invite_404.xml",
            server.addr,
            transport,
            "nobody",
            work.path(),
        );
        run.assert_ok();
        assert_eq!(
            run.received("SIP/2.0 404 Not Found").len(),
            1,
            "{}",
            run.messages
        );

        let run = sipp(
            "ack_options.xml",
            server.addr,
            transport,
            FIXTURE_USER,
            work.path(),
        );
        run.assert_ok();
        let ok = run.received("SIP/2.0 200 OK");
        assert_eq!(ok.len(), 2, "{}", run.messages);
        assert!(
            ok[0].contains("\nAllow: INVITE, ACK, CANCEL, OPTIONS"),
            "{}",
            ok[0]
        );
        // Nothing answered the ACK: the only responses are the two 200s.
        assert_eq!(
            run.messages.matches("message received").count(),
            2,
            "{}",
            run.messages
        );
    }
}

#[test]
fn a_refresh_is_seen_by_the_next_request_and_the_cache_serves_without_the_directory() {
    let mut slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let mut server = Redirector::start(&slapd, work.path());
    let run = sipp("invite_404.xml", server.addr, "u1", "ocschat", work.path());
    run.assert_ok();

    // An administrator creates a legacy endpoint (New-CsPersistentChatEndpoint) on pool 2.
    slapd.add(&format!(
        "dn: CN={{9d1e0c55-1111-4222-8333-944455556666}},{container}\n\
         objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: contact\n\
         cn: {{9d1e0c55-1111-4222-8333-944455556666}}\nsn: endpoint\n\
         msRTCSIP-PrimaryUserAddress: sip:OCSChat@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {pool}\n",
        container = slapd.endpoint_container(),
        pool = slapd.pool_dn("1:3"),
    ));
    server.wait_for("ocschat", 200, Duration::from_secs(20));
    let run = sipp("invite_302.xml", server.addr, "u1", "ocschat", work.path());
    run.assert_ok();
    let got = run.received("SIP/2.0 302 Moved Temporarily");
    assert_eq!(
        contact_of(&got[0]),
        Some("<sip:OCSChat@pcpool2.contoso.com:5061;transport=tls>")
    );
    assert!(got[0].contains("X-Pcsync-Mapping: version=2"), "{}", got[0]);

    // Disabling it unmaps it on the next refresh.
    slapd.modify(&format!(
        "dn: CN={{9d1e0c55-1111-4222-8333-944455556666}},{}\nchangetype: modify\n\
         replace: msRTCSIP-UserEnabled\nmsRTCSIP-UserEnabled: FALSE\n",
        slapd.endpoint_container()
    ));
    server.wait_for("ocschat", 404, Duration::from_secs(20));

    // The directory goes away: the table is kept (refreshes fail loudly). Wait (bounded) for a
    // failed refresh to be logged, then ask.
    slapd.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server
        .log_text()
        .contains("mapping refresh failed, keeping table version 3")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        options_status(server.addr, &format!("sip:{FIXTURE_USER}@contoso.com")),
        Some(200)
    );
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert!(
        log.contains("mapping refresh failed, keeping table version 3"),
        "{log}"
    );

    // A restart with the directory still down serves the last-known-good table at once.
    let cache = std::fs::read_to_string(server.state_dir.join("mappings.json")).unwrap();
    assert!(cache.contains("\"version\": 3"), "{cache}");
    let again = Redirector::spawn(&slapd, work.path(), &[]);
    again.wait_for(FIXTURE_USER, 200, Duration::from_secs(20));
    let run = sipp(
        "invite_302.xml",
        again.addr,
        "t1",
        FIXTURE_USER,
        work.path(),
    );
    run.assert_ok();
    let got = run.received("SIP/2.0 302 Moved Temporarily");
    assert_eq!(contact_of(&got[0]), Some(FIXTURE_CONTACT));
    assert!(got[0].contains("X-Pcsync-Mapping: version=3"), "{}", got[0]);
}

#[test]
fn probe_prints_the_status_line_and_contact() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let server = Redirector::start(&slapd, work.path());
    for transport in ["udp", "tcp"] {
        let assert = pcsync_bare(work.path())
            .args(["probe", "sip:PersistentChat@Contoso.com", "--server"])
            .arg(server.addr.to_string())
            .args(["--transport", transport])
            .assert();
        let (stdout, stderr) = output(&assert);
        assert.code(0);
        assert_eq!(
            stdout,
            format!("SIP/2.0 302 Moved Temporarily\nContact: {FIXTURE_CONTACT}\n"),
            "{stderr}"
        );
    }
    let assert = pcsync_bare(work.path())
        .args([
            "probe",
            "sip:nobody@contoso.com",
            "--method",
            "OPTIONS",
            "--server",
        ])
        .arg(server.addr.to_string())
        .assert();
    let (stdout, _) = output(&assert);
    assert.code(1);
    assert_eq!(stdout, "SIP/2.0 404 Not Found\n");
    // Nobody listening: one line, exit 1.
    let assert = pcsync_bare(work.path())
        .args([
            "probe",
            "sip:x@contoso.com",
            "--timeout",
            "300ms",
            "--server",
            "127.0.0.1:9",
        ])
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert!(
        stderr.starts_with("pcsync: error: no final response from 127.0.0.1:9 within 0s")
            || stderr.starts_with("pcsync: error: receive from 127.0.0.1:9"),
        "{stderr}"
    );
}

#[test]
fn mappings_prints_the_table_as_text_and_json() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let assert = pcsync(&slapd, work.path())
        .args(["mappings", "--format", "json"])
        .assert();
    let (stdout, stderr) = output(&assert);
    assert.code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["source"], "directory");
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["sip_uri"], "sip:persistentchat@contoso.com");
    assert_eq!(entries[0]["pool"], "pcpool1.contoso.com");
    assert!(
        entries[0]["dn"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .starts_with("cn={4c2f6a1e")
    );

    // An endpoint homed on an unknown pool is reported, not mapped.
    slapd.add(&format!(
        "dn: CN={{77777777-1111-4222-8333-944455556666}},{}\n\
         objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: contact\n\
         cn: {{77777777-1111-4222-8333-944455556666}}\nsn: endpoint\n\
         msRTCSIP-PrimaryUserAddress: sip:legacy@contoso.com\nmsRTCSIP-UserEnabled: TRUE\n\
         msRTCSIP-PrimaryHomeServer: {}\n",
        slapd.endpoint_container(),
        slapd.pool_dn("1:1"),
    ));
    let assert = pcsync(&slapd, work.path()).arg("mappings").assert();
    let (stdout, _) = output(&assert);
    assert.code(0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SIP URI"), "{stdout}");
    assert!(
        lines[1].starts_with("sip:persistentchat@contoso.com")
            && lines[1].contains("pcpool1.contoso.com"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("finding unknown_pool: ")
            && lines[2].contains("sip:legacy@contoso.com is homed on"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("version 1, 1 entry, built "),
        "{stdout}"
    );

    // --cached with no cache yet is an error that says why.
    let assert = pcsync(&slapd, work.path())
        .args(["mappings", "--cached"])
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert!(
        stderr.starts_with("pcsync: error: no cached mapping table at "),
        "{stderr}"
    );
}

#[test]
fn redirect_fails_with_one_line_when_its_port_is_taken() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let assert = pcsync(&slapd, work.path())
        .arg("redirect")
        .env("PCSYNC__REDIRECTOR__UDP", &addr)
        .env("PCSYNC__REDIRECTOR__TCP", "")
        .env("PCSYNC__STATE__DIR", work.path().join("state"))
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "pcsync: error: cannot listen for SIP over UDP on {addr}: "
        )),
        "{stderr}"
    );
}

#[test]
fn tls_listener_redirects_and_answers_keepalives_and_retransmissions() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let pki = crate::common::slapd::write_test_pki(work.path(), "sip-");
    let tls_port = crate::common::slapd::free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let server = Redirector::spawn(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__REDIRECTOR__TLS_LISTEN", &tls_addr),
            (
                "PCSYNC__REDIRECTOR__TLS_CERT",
                pki.cert_file.to_str().unwrap(),
            ),
            (
                "PCSYNC__REDIRECTOR__TLS_KEY",
                pki.key_file.to_str().unwrap(),
            ),
        ],
    );
    server.wait_for(FIXTURE_USER, 200, Duration::from_secs(30));

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    for cert in CertificateDer::pem_file_iter(&pki.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(&tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    // A CRLF keep-alive ping gets a CRLF pong.
    tls.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    tls.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");

    let local = tls.sock.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:persistentchat@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\n\
         From: <sip:alice@contoso.com>;tag=t1\r\nTo: <sip:persistentchat@contoso.com>\r\nCall-ID: tls-1\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(invite.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\nContact: {FIXTURE_CONTACT}\r\n")),
        "{text}"
    );
    // A retransmission of the INVITE gets a byte-identical response (stateless UAS).
    tls.write_all(invite.as_bytes()).unwrap();
    let mut again = Vec::new();
    while again.len() < text.len() {
        let n = tls.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed before the retransmission's answer"
        );
        again.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8(again).unwrap(), text);

    // The same over plain TCP.
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let local = tcp.local_addr().unwrap();
    let invite = invite
        .replace(
            &format!("SIP/2.0/TLS {}", tls.sock.local_addr().unwrap()),
            &format!("SIP/2.0/TCP {local}"),
        )
        .replace("tls-1", "tcp-1");
    let mut answers = Vec::new();
    for _ in 0..2 {
        tcp.write_all(invite.as_bytes()).unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).unwrap();
            assert!(n > 0, "TCP connection closed");
            got.extend_from_slice(&buf[..n]);
        }
        answers.push(String::from_utf8(got).unwrap());
    }
    assert!(
        answers[0].starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{}",
        answers[0]
    );
    assert!(answers[0].contains("Call-ID: tcp-1\r\n"), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);

    // `pcsync probe --transport tls` trusts the private CA and checks the name.
    let probe = |extra: &[&str]| {
        let assert = pcsync_bare(work.path())
            .args(["probe", "sip:PersistentChat@Contoso.com", "--server"])
            .arg(&tls_addr)
            .args(["--transport", "tls", "--ca-file"])
            .arg(&pki.ca_file)
            .args(extra)
            .assert();
        let (stdout, stderr) = output(&assert);
        let code = assert.get_output().status.code();
        (code, stdout, stderr)
    };
    let (code, stdout, stderr) = probe(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("SIP/2.0 302 Moved Temporarily\nContact: {FIXTURE_CONTACT}\n")
    );
    let (code, _, stderr) = probe(&["--server-name", "localhost", "--method", "OPTIONS"]);
    assert_eq!(code, Some(0), "{stderr}");
    // A name the certificate does not carry: refused, one line, exit 1.
    let (code, stdout, stderr) = probe(&["--server-name", "sip.fabrikam.com"]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("pcsync: error: TLS: handshake with ")
            && stderr.contains("sip.fabrikam.com")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Without --ca-file the private CA is not trusted.
    let assert = pcsync_bare(work.path())
        .args(["probe", "sip:PersistentChat@Contoso.com", "--server"])
        .arg(&tls_addr)
        .args(["--transport", "tls"])
        .assert();
    let (_, stderr) = output(&assert);
    assert.code(1);
    assert!(stderr.starts_with("pcsync: error: TLS: "), "{stderr}");
}

#[test]
fn ipv6_listeners_answer_over_udp_and_tcp() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let port = crate::common::slapd::free_port();
    let addr = format!("[::1]:{port}");
    let _server = Redirector::spawn(
        &slapd,
        work.path(),
        &[
            ("PCSYNC__REDIRECTOR__UDP", &addr),
            ("PCSYNC__REDIRECTOR__TCP", &addr),
        ],
    );
    let probe = |transport: &str| {
        let assert = pcsync_bare(work.path())
            .args([
                "probe",
                "sip:persistentchat@contoso.com",
                "--timeout",
                "500ms",
            ])
            .args(["--server", &addr, "--transport", transport])
            .assert();
        output(&assert).0
    };
    // Poll (bounded) until the first refresh has published the fixture's endpoint.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        last = probe("udp");
        if last.starts_with("SIP/2.0 302") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last,
        format!("SIP/2.0 302 Moved Temporarily\nContact: {FIXTURE_CONTACT}\n")
    );
    assert_eq!(probe("tcp"), last);
}

/// RFC 3261 §18.2.2: the client's connection is gone (reset right after the INVITE), so the
/// 302 goes on a new connection to the source IP and the Via sent-by port, where the test
/// listens.
#[test]
fn a_tcp_response_whose_connection_is_gone_goes_to_the_via_sent_by_port() {
    use std::io::{Read, Write};

    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let server = Redirector::start(&slapd, work.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let back = listener.local_addr().unwrap();
    // Whether the server writes before the reset arrives is a race the test cannot control (a
    // write into a connection the peer has just closed succeeds locally); a few attempts make
    // it certain that one lands after the reset. A broken fallback fails every attempt.
    let mut received = None;
    for attempt in 0..10 {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        let mut stream: std::net::TcpStream = socket.into();
        let invite = format!(
            "INVITE sip:persistentchat@contoso.com SIP/2.0\r\nVia: SIP/2.0/TCP {back};branch=z9hG4bKgone{attempt}\r\n\
             From: <sip:alice@contoso.com>;tag=t1\r\nTo: <sip:persistentchat@contoso.com>\r\nCall-ID: gone-{attempt}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(invite.as_bytes()).unwrap();
        drop(stream); // linger 0: a reset, the connection is gone
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut text = String::new();
                    conn.read_to_string(&mut text).unwrap();
                    received = Some(text);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        if received.is_some() {
            eprintln!("the response arrived on a new connection at attempt {attempt}");
            break;
        }
    }
    let text = received.expect("no response arrived on a new connection in 10 attempts");
    assert!(
        text.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\nContact: {FIXTURE_CONTACT}\r\n")),
        "{text}"
    );
    assert!(text.contains("\r\nCall-ID: gone-"), "{text}");
}

/// One datagram to `server`; the status line of the answer, or `None` within 2 s.
fn udp_status_line(server: std::net::SocketAddr, text: &str) -> Option<String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(text.as_bytes(), server).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .map(str::to_string)
}

// See: #17 (8). Over UDP the datagram is the whole message: a Content-Length larger than the
// body it carries, or a negative one, gets 400 (RFC 3261 §18.3) instead of a 302; a request in
// another SIP version gets 505.
#[test]
fn impossible_content_lengths_get_400_and_sip_3_gets_505_over_udp() {
    let slapd = Slapd::start();
    let work = tempfile::tempdir().unwrap();
    let server = Redirector::start(&slapd, work.path());
    server.wait_for(FIXTURE_USER, 200, Duration::from_secs(30));
    let invite = |version: &str, length: &str| {
        format!(
            "INVITE sip:{FIXTURE_USER}@contoso.com {version}\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKcl{length}{version}\r\n\
             From: <sip:test@127.0.0.1>;tag=cl\r\nTo: <sip:{FIXTURE_USER}@contoso.com>\r\n\
             Call-ID: cl-{length}-{version}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
             Content-Length: {length}\r\n\r\n"
        )
    };
    let answer = |text: String| udp_status_line(server.addr, &text);
    assert_eq!(
        answer(invite("SIP/2.0", "0")).as_deref(),
        Some("SIP/2.0 302 Moved Temporarily")
    );
    for length in ["500", "-1"] {
        assert_eq!(
            answer(invite("SIP/2.0", length)).as_deref(),
            Some("SIP/2.0 400 Bad Request"),
            "Content-Length: {length}"
        );
    }
    assert_eq!(
        answer(invite("SIP/3.0", "0")).as_deref(),
        Some("SIP/2.0 505 Version Not Supported")
    );
}
