//! The redirect decision over literal SIP text: no sockets.

use super::*;
use crate::mapping::table::{Entry, MappingTable};
use crate::model::{Dn, SipUri};

fn table() -> MappingTable {
    let entry = |uri: &str, pool: &str| Entry {
        sip_uri: SipUri::parse(uri).unwrap(),
        pool: pool.to_string(),
        dn: Dn::parse("cn={4c2f},cn=Application Contacts,dc=contoso,dc=com").unwrap(),
    };
    MappingTable::new(
        vec![
            entry("sip:OCSChat@contoso.com", "pcpool1.contoso.com"),
            Entry {
                dn: Dn::parse("cn=two,dc=x").unwrap(),
                ..entry("sip:chat@fabrikam.com", "pcpool2.contoso.com")
            },
        ],
        &["pcpool1.contoso.com", "pcpool2.contoso.com"],
        7,
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    )
    .unwrap()
}

fn config() -> ResponderConfig {
    ResponderConfig {
        contact_port: 5061,
        contact_transport: "tls",
        server: "pcsync/test".into(),
    }
}

fn udp_from(addr: &str) -> Source {
    Source {
        addr: addr.parse().unwrap(),
        datagram: true,
    }
}

const SRC: &str = "192.0.2.10:5070";

/// The response text, or `None` for silence.
fn answer_from(text: &str, source: Source) -> Option<String> {
    let t = table();
    match respond(text.as_bytes(), &t, source).1 {
        Decision::Reply(r) => Some(String::from_utf8(r.to_bytes(&config())).unwrap()),
        Decision::Silent(_) => None,
    }
}

fn answer(text: &str) -> Option<String> {
    answer_from(text, udp_from(SRC))
}

fn status_line(text: &str) -> String {
    answer(text)
        .map(|a| a.lines().next().unwrap().to_string())
        .unwrap_or_else(|| "(silent)".into())
}

fn header<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    response
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

fn request(method: &str, uri: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\n\
         To: <{uri}>\r\n\
         From: \"Alice\" <sip:alice@contoso.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.contoso.com\r\n\
         CSeq: 314159 {method}\r\n\
         Contact: <sip:alice@192.0.2.10:5070>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_mapped_invite_gets_the_exact_302() {
    let got = answer(&request("INVITE", "sip:ocschat@contoso.com")).unwrap();
    let tag = format!(
        "{:016x}",
        to_tag(
            Some("a84b4c76e66710@pc33.contoso.com"),
            Some("1928301774"),
            Some("z9hG4bK776asdhds")
        )
    );
    assert_eq!(
        got,
        format!(
            "SIP/2.0 302 Moved Temporarily\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds\r\n\
             From: \"Alice\" <sip:alice@contoso.com>;tag=1928301774\r\n\
             To: <sip:ocschat@contoso.com>;tag={tag}\r\n\
             Call-ID: a84b4c76e66710@pc33.contoso.com\r\n\
             CSeq: 314159 INVITE\r\n\
             Contact: <sip:OCSChat@pcpool1.contoso.com:5061;transport=tls>\r\n\
             Server: pcsync/test\r\n\
             X-Pcsync-Mapping: version=7\r\n\
             Content-Length: 0\r\n\r\n"
        )
    );
}

#[test]
fn every_redirectable_method_gets_302_and_unmapped_gets_404() {
    for m in ["INVITE", "MESSAGE", "SUBSCRIBE", "INFO", "NOTIFY", "REFER"] {
        assert_eq!(
            status_line(&request(m, "sip:chat@fabrikam.com")),
            "SIP/2.0 302 Moved Temporarily",
            "{m}"
        );
        assert_eq!(
            status_line(&request(m, "sip:nobody@contoso.com")),
            "SIP/2.0 404 Not Found",
            "{m}"
        );
    }
    assert_eq!(
        status_line(&request("INVITE", "tel:+15551234567")),
        "SIP/2.0 404 Not Found"
    );
    assert_eq!(
        status_line(&request("INVITE", "sip:contoso.com")),
        "SIP/2.0 404 Not Found"
    );
}

#[test]
fn uri_case_parameters_and_port_are_ignored() {
    for uri in [
        "sip:OCSCHAT@CONTOSO.COM",
        "sip:ocschat@contoso.com:5061",
        "sip:ocschat@contoso.com;transport=tls",
        "sips:ocschat@Contoso.Com:5061;transport=tls;maddr=x?subject=hi",
        "SIP:ocschat@contoso.com",
        "sip:ocschat:secret@contoso.com",
    ] {
        let got = answer(&request("INVITE", uri)).unwrap();
        assert!(got.starts_with("SIP/2.0 302 "), "{uri}: {got}");
        assert_eq!(
            header(&got, "Contact"),
            ["<sip:OCSChat@pcpool1.contoso.com:5061;transport=tls>"],
            "{uri}"
        );
    }
    assert_eq!(
        status_line(&request("INVITE", "sip:ocschat2@contoso.com")),
        "SIP/2.0 404 Not Found"
    );
}

#[test]
fn compact_header_forms_are_understood_and_echoed() {
    let text = "INVITE sip:ocschat@contoso.com SIP/2.0\r\n\
                v: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKc1\r\n\
                f: <sip:alice@contoso.com>;tag=88\r\n\
                t: <sip:ocschat@contoso.com>\r\n\
                i: compact-1\r\n\
                CSeq: 1 INVITE\r\n\
                l: 0\r\n\r\n";
    let got = answer(text).unwrap();
    assert!(got.starts_with("SIP/2.0 302 "), "{got}");
    assert_eq!(
        header(&got, "Via"),
        ["SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKc1"]
    );
    assert_eq!(header(&got, "From"), ["<sip:alice@contoso.com>;tag=88"]);
    assert!(header(&got, "To")[0].starts_with("<sip:ocschat@contoso.com>;tag="));
    assert_eq!(header(&got, "Call-ID"), ["compact-1"]);
}

#[test]
fn lf_only_line_ends_are_accepted() {
    let text = request("INVITE", "sip:ocschat@contoso.com").replace("\r\n", "\n");
    let got = answer(&text).unwrap();
    assert!(got.starts_with("SIP/2.0 302 "), "{got}");
    // The answer itself always uses CRLF.
    assert!(got.ends_with("Content-Length: 0\r\n\r\n"));
    assert_eq!(header(&got, "Call-ID"), ["a84b4c76e66710@pc33.contoso.com"]);
}

#[test]
fn folded_headers_are_unfolded_in_the_answer() {
    let text = "INVITE sip:ocschat@contoso.com SIP/2.0\r\n\
                Via: SIP/2.0/UDP 192.0.2.10:5070\r\n  ;branch=z9hG4bKfold\r\n\
                From: \"Alice\"\r\n\t<sip:alice@contoso.com>;tag=9\r\n\
                To: <sip:ocschat@contoso.com>\r\n\
                Call-ID: fold-1\r\n\
                CSeq: 1\r\n INVITE\r\n\r\n";
    let got = answer(text).unwrap();
    assert!(got.starts_with("SIP/2.0 302 "), "{got}");
    assert_eq!(
        header(&got, "Via"),
        ["SIP/2.0/UDP 192.0.2.10:5070 ;branch=z9hG4bKfold"]
    );
    assert_eq!(
        header(&got, "From"),
        ["\"Alice\" <sip:alice@contoso.com>;tag=9"]
    );
    assert_eq!(header(&got, "CSeq"), ["1 INVITE"]);
}

#[test]
fn ipv6_addresses_in_uri_via_and_source() {
    let text = "OPTIONS sip:[2001:db8::1]:5060 SIP/2.0\r\n\
                Via: SIP/2.0/UDP [2001:db8::10]:5070;branch=z9hG4bK6;rport\r\n\
                From: <sip:alice@[2001:db8::10]>;tag=6\r\n\
                To: <sip:[2001:db8::1]>\r\n\
                Call-ID: v6\r\n\
                CSeq: 2 OPTIONS\r\n\r\n";
    let t = table();
    let Decision::Reply(r) = respond(text.as_bytes(), &t, udp_from("[2001:db8::10]:40000")).1
    else {
        panic!("no reply");
    };
    assert_eq!(r.status, ResponseStatus::Ok);
    assert_eq!(r.destination, Some("[2001:db8::10]:40000".parse().unwrap()));
    let got = String::from_utf8(r.to_bytes(&config())).unwrap();
    assert_eq!(
        header(&got, "Via"),
        ["SIP/2.0/UDP [2001:db8::10]:5070;branch=z9hG4bK6;rport=40000;received=2001:db8::10"]
    );
    assert_eq!(header(&got, "Allow"), [ALLOW]);
    let mapped_v6 = request("INVITE", "sip:ocschat@contoso.com").replace(
        "Via: SIP/2.0/UDP 192.0.2.10:5070",
        "Via: SIP/2.0/UDP [::1]:5070",
    );
    let got = answer_from(&mapped_v6, udp_from("[::1]:5070")).unwrap();
    assert!(got.starts_with("SIP/2.0 302 "), "{got}");
}

#[test]
fn responses_go_where_rfc_3261_18_2_2_says() {
    let t = table();
    let dest = |text: &str, src: &str| match respond(text.as_bytes(), &t, udp_from(src)).1 {
        Decision::Reply(r) => r.destination,
        Decision::Silent(_) => panic!("silent"),
    };
    let base = request("INVITE", "sip:ocschat@contoso.com");
    // No rport: the source IP (received) and the sent-by port.
    assert_eq!(
        dest(&base, "198.51.100.7:40000"),
        Some("198.51.100.7:5070".parse().unwrap())
    );
    // rport: the source port too.
    let rport = base.replace("branch=z9hG4bK776asdhds", "branch=z9hG4bK776asdhds;rport");
    assert_eq!(
        dest(&rport, "198.51.100.7:40000"),
        Some("198.51.100.7:40000".parse().unwrap())
    );
    // No port in sent-by: 5060.
    let noport = base.replace("192.0.2.10:5070", "192.0.2.10");
    assert_eq!(
        dest(&noport, "192.0.2.10:41000"),
        Some("192.0.2.10:5060".parse().unwrap())
    );
    // received is added when sent-by is not the source.
    let got = answer_from(&base, udp_from("198.51.100.7:40000")).unwrap();
    assert_eq!(
        header(&got, "Via"),
        ["SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds;received=198.51.100.7"]
    );
    // On a stream the destination is only the fallback for a closed connection (§18.2.2): the
    // source IP and the sent-by port, never the source's (ephemeral) port; 5060 by default.
    let stream = Source {
        addr: "192.0.2.10:40001".parse().unwrap(),
        datagram: false,
    };
    let Decision::Reply(r) = respond(base.as_bytes(), &t, stream).1 else {
        panic!()
    };
    assert_eq!(r.destination, Some("192.0.2.10:5070".parse().unwrap()));
    let no_port = base.replace("192.0.2.10:5070", "client.contoso.com");
    let Decision::Reply(r) = respond(no_port.as_bytes(), &t, stream).1 else {
        panic!()
    };
    assert_eq!(r.destination, Some("192.0.2.10:5060".parse().unwrap()));
}

#[test]
fn options_ack_cancel_and_other_methods() {
    assert_eq!(
        status_line(&request("OPTIONS", "sip:192.0.2.1:5060")),
        "SIP/2.0 200 OK"
    );
    assert_eq!(
        status_line(&request("OPTIONS", "sip:ocschat@contoso.com")),
        "SIP/2.0 200 OK"
    );
    assert_eq!(
        status_line(&request("OPTIONS", "sip:nobody@contoso.com")),
        "SIP/2.0 404 Not Found"
    );
    assert_eq!(
        header(
            &answer(&request("OPTIONS", "sip:pcsync.contoso.com")).unwrap(),
            "Allow"
        ),
        [ALLOW]
    );
    assert_eq!(answer(&request("ACK", "sip:ocschat@contoso.com")), None);
    assert_eq!(
        status_line(&request("CANCEL", "sip:ocschat@contoso.com")),
        "SIP/2.0 200 OK"
    );
    for m in ["REGISTER", "BYE", "PUBLISH", "UPDATE", "FOO"] {
        let got = answer(&request(m, "sip:ocschat@contoso.com")).unwrap();
        assert!(
            got.starts_with("SIP/2.0 405 Method Not Allowed\r\n"),
            "{m}: {got}"
        );
        assert_eq!(header(&got, "Allow"), [ALLOW], "{m}");
    }
}

#[test]
fn max_forwards_zero_is_too_many_hops_except_for_options() {
    let invite =
        request("INVITE", "sip:ocschat@contoso.com").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status_line(&invite), "SIP/2.0 483 Too Many Hops");
    let options = request("OPTIONS", "sip:ocschat@contoso.com")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status_line(&options), "SIP/2.0 200 OK");
    let one =
        request("INVITE", "sip:ocschat@contoso.com").replace("Max-Forwards: 70", "Max-Forwards: 1");
    assert_eq!(status_line(&one), "SIP/2.0 302 Moved Temporarily");
}

// See: #17 (8). Over UDP the datagram is the message: a Content-Length larger than the body
// it carries, or one that is not a number, is answered 400 (RFC 3261 §18.3), not 302; another
// SIP version is answered 505.
#[test]
fn an_impossible_content_length_gets_400_and_another_version_505() {
    let base = request("INVITE", "sip:ocschat@contoso.com");
    assert!(base.contains("Content-Length: 0\r\n"), "{base}");
    for (length, warning) in [
        (
            "Content-Length: 500",
            "message body shorter than its Content-Length",
        ),
        ("Content-Length: -1", "malformed Content-Length header"),
        ("l: 1", "message body shorter than its Content-Length"),
        ("Content-Length: 12x", "malformed Content-Length header"),
    ] {
        let broken = base.replace("Content-Length: 0", length);
        let got = answer(&broken).unwrap_or_else(|| panic!("silent for {broken}"));
        assert!(
            got.starts_with("SIP/2.0 400 Bad Request\r\n"),
            "{length}: {got}"
        );
        assert_eq!(
            header(&got, "Warning"),
            [format!("399 pcsync \"{warning}\"")]
        );
    }
    // A body that is all there (or longer: the rest is ignored) is fine.
    let with_body = base.replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 4\r\n\r\nv=0\n",
    );
    assert_eq!(status_line(&with_body), "SIP/2.0 302 Moved Temporarily");
    let longer = base.replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 2\r\n\r\nv=0\n",
    );
    assert_eq!(status_line(&longer), "SIP/2.0 302 Moved Temporarily");
    let v3 = base.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
    let got = answer(&v3).unwrap();
    assert!(
        got.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
        "{got}"
    );
    assert_eq!(
        header(&got, "Warning"),
        ["399 pcsync \"unsupported SIP version\""]
    );
}

#[test]
fn defects_get_400_with_a_warning_when_addressable() {
    let base = request("INVITE", "sip:ocschat@contoso.com");
    for (broken, warning) in [
        (
            base.replace("Call-ID: a84b4c76e66710@pc33.contoso.com\r\n", ""),
            "missing Call-ID header",
        ),
        (
            base.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE"),
            "malformed CSeq header",
        ),
        (
            base.replace("CSeq: 314159 INVITE", "CSeq: abc INVITE"),
            "malformed CSeq header",
        ),
        (
            base.replace("Max-Forwards: 70", "Max-Forwards: many"),
            "malformed Max-Forwards header",
        ),
        (
            base.replace("To: <", "To: <sip:x@y>\r\nTo: <"),
            "duplicate To header",
        ),
        (
            base.replace("From: ", "From: x\r\nf: "),
            "duplicate From header",
        ),
        (
            base.replace("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
            "malformed header line",
        ),
    ] {
        let got = answer(&broken).unwrap_or_else(|| panic!("silent for {broken}"));
        assert!(got.starts_with("SIP/2.0 400 Bad Request\r\n"), "{got}");
        assert_eq!(
            header(&got, "Warning"),
            [format!("399 pcsync \"{warning}\"")]
        );
    }
}

/// Header lines of a response, split strictly at CRLF, with no other control character
/// anywhere in the head (what a careful peer would accept).
fn strict_lines(response: &str) -> Vec<&str> {
    let head = response
        .strip_suffix("\r\n\r\n")
        .unwrap_or_else(|| panic!("no final CRLF CRLF: {response:?}"));
    let lines: Vec<&str> = head.split("\r\n").collect();
    for line in &lines {
        assert!(
            !line.bytes().any(message::is_control),
            "control character in response line {line:?}"
        );
    }
    lines
}

// See: #8 (nothing from a request is reflected into response headers without sanitising).
#[test]
fn control_characters_in_echoed_headers_get_400_and_never_split_a_response_line() {
    let base = request("INVITE", "sip:ocschat@contoso.com");
    let injected = "X-Injected: yes";
    for (what, broken) in [
        (
            "bare CR in From",
            base.replace(";tag=1928301774", &format!(";tag=1928301774\r{injected}")),
        ),
        (
            "NUL in Call-ID",
            base.replace("a84b4c76e66710@", &format!("a84b4c76e66710\0{injected}@")),
        ),
        (
            "ESC, VT, FF, DEL in To",
            base.replace(
                "To: <sip:ocschat@contoso.com>",
                &format!("To: <sip:ocschat@contoso.com>\x1b[2J\x0b\x0c\x7f{injected}"),
            ),
        ),
        (
            "bare CR in the top Via",
            base.replace("z9hG4bK776asdhds", &format!("z9hG4bK776asdhds\r{injected}")),
        ),
        (
            "bare CR in CSeq",
            base.replace("314159 INVITE", &format!("314159 INVITE\r{injected}")),
        ),
        (
            "a Contact smuggled after a bare CR in To",
            base.replace(
                "To: <sip:ocschat@contoso.com>",
                "To: <sip:ocschat@contoso.com>\rContact: <sip:evil@attacker.example>",
            ),
        ),
    ] {
        let got = answer(&broken).unwrap_or_else(|| panic!("{what}: silent"));
        let lines = strict_lines(&got);
        assert_eq!(lines[0], "SIP/2.0 400 Bad Request", "{what}: {got:?}");
        assert!(
            lines.iter().all(|l| !l.starts_with("X-Injected")),
            "{what}: {got:?}"
        );
        assert!(header(&got, "Contact").is_empty(), "{what}: {got:?}");
        assert_eq!(
            header(&got, "Warning"),
            ["399 pcsync \"control character in a header\""],
            "{what}"
        );
        // Still addressed to the client: Call-ID and CSeq come back (sanitised).
        assert_eq!(header(&got, "Call-ID").len(), 1, "{what}: {got:?}");
        assert_eq!(header(&got, "CSeq").len(), 1, "{what}: {got:?}");
    }
}

#[test]
fn the_contact_comes_from_the_table_and_the_warning_and_reason_from_pcsync() {
    // The Request-URI and To spell the address their own way, with parameters and a display
    // name; the Contact is the table's spelling and pool, nothing of the request.
    let text = request("INVITE", "sip:OCSCHAT@Contoso.COM;x=<evil>").replace(
        "To: <sip:OCSCHAT@Contoso.COM;x=<evil>>",
        "To: \"Evil\" <sip:ocschat@contoso.com;maddr=attacker.example>",
    );
    let got = answer(&text).unwrap();
    assert_eq!(
        header(&got, "Contact"),
        ["<sip:OCSChat@pcpool1.contoso.com:5061;transport=tls>"]
    );
    assert!(!got.contains("attacker") || header(&got, "To")[0].contains("attacker"));
    // A defect's Warning is pcsync's fixed text, never request text.
    let defect = request("INVITE", "sip:ocschat@contoso.com")
        .replace("Max-Forwards: 70", "Max-Forwards: 70-evil-text");
    let got = answer(&defect).unwrap();
    assert_eq!(
        header(&got, "Warning"),
        ["399 pcsync \"malformed Max-Forwards header\""]
    );
    assert!(!got.contains("evil-text"), "{got}");
}

#[test]
fn write_unfolded_turns_every_control_character_into_one_space() {
    let mut out = Vec::new();
    message::write_unfolded(&mut out, "a\r\n  b\rc\0\0d\x1b\x7fe\tf\ng");
    assert_eq!(out, b"a b c d e\tf g");
    out.clear();
    message::write_unfolded(&mut out, "plain value; tag=1");
    assert_eq!(out, b"plain value; tag=1");
}

#[test]
fn unaddressable_messages_are_dropped() {
    let base = request("INVITE", "sip:ocschat@contoso.com");
    for text in [
        base.replace(
            "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds\r\n",
            "",
        ),
        base.replace("Via: SIP/2.0/UDP 192.0.2.10:5070", "Via: garbage"),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n".to_string(),
        "\r\n\r\n".to_string(),
        String::new(),
        "INVITE\r\n\r\n".to_string(),
        "just text".to_string(),
    ] {
        assert_eq!(answer(&text), None, "{text:?}");
    }
    let t = table();
    assert!(matches!(
        respond(&[0xff, 0xfe, b'\r', b'\n'], &t, udp_from(SRC)).1,
        Decision::Silent(Silence::Unanswerable)
    ));
}

#[test]
fn a_retransmission_gets_the_same_bytes_and_a_new_transaction_a_new_tag() {
    let req = request("INVITE", "sip:ocschat@contoso.com");
    assert_eq!(answer(&req), answer(&req));
    let other = req.replace("Call-ID: a84b4c76e66710", "Call-ID: zzzz");
    assert_ne!(
        header(&answer(&req).unwrap(), "To"),
        header(&answer(&other).unwrap(), "To")
    );
}

#[test]
fn an_existing_to_tag_is_kept() {
    let req = request("INVITE", "sip:ocschat@contoso.com").replace(
        "To: <sip:ocschat@contoso.com>",
        "To: <sip:ocschat@contoso.com>;tag=abc",
    );
    assert_eq!(
        header(&answer(&req).unwrap(), "To"),
        ["<sip:ocschat@contoso.com>;tag=abc"]
    );
}

#[test]
fn several_vias_are_echoed_in_order() {
    let req = request("INVITE", "sip:ocschat@contoso.com").replace(
        "Max-Forwards: 70\r\n",
        "Via: SIP/2.0/TCP proxy1.contoso.com;branch=z9hG4bKp1, SIP/2.0/TLS proxy2.contoso.com\r\nMax-Forwards: 70\r\n",
    );
    let got = answer_from(&req, udp_from("192.0.2.10:5070")).unwrap();
    assert_eq!(
        header(&got, "Via"),
        [
            "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds",
            "SIP/2.0/TCP proxy1.contoso.com;branch=z9hG4bKp1, SIP/2.0/TLS proxy2.contoso.com"
        ]
    );
}

#[test]
fn every_answer_is_a_response_rsipstack_reads_back() {
    use rsipstack::sip::{HeadersExt, SipMessage};
    for m in ["INVITE", "OPTIONS", "CANCEL", "BYE", "MESSAGE"] {
        let req = request(m, "sip:ocschat@contoso.com");
        let got = answer(&req).unwrap();
        let SipMessage::Response(r) = SipMessage::try_from(got.as_str()).unwrap() else {
            panic!("not a response");
        };
        assert_eq!(
            r.call_id_header().unwrap().value(),
            "a84b4c76e66710@pc33.contoso.com"
        );
        // The oracle reads the request the same way we do.
        let SipMessage::Request(parsed) = SipMessage::try_from(req.as_str()).unwrap() else {
            panic!()
        };
        assert_eq!(parsed.method.to_string(), m);
    }
}

#[test]
fn fuzz_regression_multibyte_character_in_the_uri_scheme() {
    // fuzz/artifacts/parse_respond/crash-5c571965…: `sip` followed by U+034F sliced mid-char.
    let text = request("INVITE", "sip\u{34f}ersistentchat@contoso.com");
    assert_eq!(status_line(&text), "SIP/2.0 404 Not Found");
    assert_eq!(message::uri_user_host("sips\u{34f}x@y"), None);
    assert_eq!(message::uri_user_host("s\u{e9}p:x@y"), None);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let t = table();
            let _ = respond(&bytes, &t, udp_from(SRC)).1;
        }

        #[test]
        fn on_mutated_requests(pos in 0usize..400, len in 0usize..20, byte in any::<u8>(), method in 0usize..4) {
            let m = ["INVITE", "OPTIONS", "ACK", "BYE"][method];
            let mut bytes = request(m, "sip:ocschat@contoso.com").into_bytes();
            let at = pos.min(bytes.len());
            let end = (at + len).min(bytes.len());
            bytes.splice(at..end, std::iter::repeat_n(byte, len % 3));
            let t = table();
            if let Decision::Reply(r) = respond(&bytes, &t, udp_from(SRC)).1 {
                let out = r.to_bytes(&config());
                prop_assert!(out.starts_with(b"SIP/2.0 "));
                prop_assert!(out.ends_with(b"\r\n\r\n"));
            }
        }

        // See: #8. A line break or other control bytes followed by a header line, inserted
        // anywhere in a request, never become a line of the response: every response line
        // is free of control characters and is a header pcsync writes.
        #[test]
        fn no_request_bytes_become_a_response_line(
            pos in 0usize..400,
            controls in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), Just(0x0b), Just(0x1b), Just(0x7f)],
                1..4,
            ),
            method in 0usize..3,
        ) {
            let m = ["INVITE", "OPTIONS", "BYE"][method];
            let mut bytes = request(m, "sip:ocschat@contoso.com").into_bytes();
            let at = pos.min(bytes.len());
            let mut insert = controls.clone();
            insert.extend_from_slice(b"X-Injected: 1");
            bytes.splice(at..at, insert);
            let t = table();
            if let Decision::Reply(r) = respond(&bytes, &t, udp_from(SRC)).1 {
                let out = String::from_utf8(r.to_bytes(&config())).unwrap();
                let lines = strict_lines(&out);
                for line in &lines[1..] {
                    let name = line.split(": ").next().unwrap_or("");
                    prop_assert!(
                        [
                            "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Allow", "Warning",
                            "Server", "X-Pcsync-Mapping", "Content-Length",
                        ]
                        .contains(&name),
                        "unexpected response line {:?} in {:?}", line, out
                    );
                }
            }
        }
    }
}
