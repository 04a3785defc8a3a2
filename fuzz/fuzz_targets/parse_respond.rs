//! Any bytes through the redirect decision and the response writer: must never panic, and any
//! response must be a well-formed SIP response head whose lines carry no control character
//! from the request.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pcsync::mapping::table::{Entry, MappingTable};
use pcsync::model::{Dn, SipUri};
use pcsync::sip::redirect::{Decision, ResponderConfig, Source, respond};

fn table() -> &'static MappingTable {
    static TABLE: OnceLock<MappingTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let entry = Entry {
            sip_uri: SipUri::parse("sip:persistentchat@contoso.com").unwrap(),
            pool: "pcpool1.contoso.com".into(),
            dn: Dn::parse("cn=x,dc=contoso,dc=com").unwrap(),
        };
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        MappingTable::new(vec![entry], &["pcpool1.contoso.com"], 1, at).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let config = ResponderConfig {
        contact_port: 5061,
        contact_transport: "tls",
        server: "pcsync-fuzz".into(),
    };
    for (addr, datagram) in [("192.0.2.1:5060", true), ("[2001:db8::1]:5061", false)] {
        let source = Source {
            addr: addr.parse().unwrap(),
            datagram,
        };
        if let Decision::Reply(r) = respond(data, table(), source).1 {
            let out = r.to_bytes(&config);
            assert!(out.starts_with(b"SIP/2.0 "));
            assert!(out.ends_with(b"\r\n\r\n"));
            // See: #8. Nothing copied from the request ends or splits a response line: every
            // LF is part of a CRLF, and no line holds a control character other than HT.
            let head = &out[..out.len() - 4];
            let lf = head.iter().filter(|b| **b == b'\n').count();
            let crlf = head.windows(2).filter(|w| w == b"\r\n").count();
            assert_eq!(lf, crlf, "a bare LF in {:?}", String::from_utf8_lossy(&out));
            for line in head.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(
                    !line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
                    "control character in the response line {:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
    }
});
