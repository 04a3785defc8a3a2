//! SIP URI normalisation and the redirector's Request-URI matching. Any text through
//! `SipUri::parse`, `SipUri::from_parts` and `message::uri_user_host`; checks invariants, not
//! just "no panic":
//! - a parsed address re-parses from its own text and from its normalised form to an equal
//!   address, and normalising is idempotent;
//! - equality, ordering and hashing agree;
//! - `from_parts(user(), host())` gives the same address;
//! - the mapping table finds an address by any spelling that parses to it (the Request-URI path
//!   `lookup(user, host)` and the `get(&SipUri)` path agree).
#![no_main]

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use libfuzzer_sys::fuzz_target;
use pcsync::mapping::table::{Entry, MappingTable};
use pcsync::model::{Dn, SipUri};
use pcsync::sip::message::uri_user_host;

fn hash(u: &SipUri) -> u64 {
    let mut h = DefaultHasher::new();
    u.hash(&mut h);
    h.finish()
}

fn same(a: &SipUri, b: &SipUri) {
    assert_eq!(a, b);
    assert_eq!(a.cmp(b), Ordering::Equal);
    assert_eq!(hash(a), hash(b));
    assert_eq!(a.normalized(), b.normalized());
}

fn table(uri: &SipUri) -> MappingTable {
    let entry = Entry {
        sip_uri: uri.clone(),
        pool: "pcpool1.contoso.com".into(),
        dn: Dn::parse("cn=x,dc=contoso,dc=com").unwrap(),
    };
    let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
    MappingTable::new(vec![entry], &["pcpool1.contoso.com"], 1, at).unwrap()
}

fn check(uri: &SipUri) {
    let again = SipUri::parse(uri.as_str()).expect("an address re-parses from its own text");
    same(uri, &again);
    let norm = SipUri::parse(uri.normalized()).expect("the normalised form parses");
    same(uri, &norm);
    assert_eq!(norm.normalized(), norm.as_str(), "normalising is idempotent");
    let parts = SipUri::from_parts(uri.user(), uri.host()).expect("from_parts(user, host)");
    same(uri, &parts);
    assert_eq!(uri.user_normalized(), norm.user());
    assert_eq!(uri.host_normalized(), norm.host());
    let t = table(uri);
    assert!(t.get(uri).is_some());
    assert!(t.get(&norm).is_some());
    assert!(t.lookup(uri.user(), uri.host()).is_some(), "lookup by the text as written");
    assert!(t.lookup(norm.user(), norm.host()).is_some(), "lookup by the normalised text");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = SipUri::parse(text) {
        check(&uri);
    }
    // The redirector's path: a Request-URI split into user and host, matched against a table
    // holding whatever address those parts make.
    if let Some((Some(user), host)) = uri_user_host(text) {
        if let Ok(uri) = SipUri::from_parts(user, host) {
            check(&uri);
            let t = table(&uri);
            assert!(t.lookup(user, host).is_some(), "Request-URI {text:?} must match {uri}");
        }
    }
    // Two halves as separate parts: from_parts must agree with parse of the joined text.
    if let Some((user, host)) = text.split_once('\u{0}') {
        let joined = SipUri::parse(&format!("sip:{user}@{host}"));
        match SipUri::from_parts(user, host) {
            Ok(uri) => {
                check(&uri);
                if !host.contains('@') {
                    same(&uri, &joined.expect("parse agrees with from_parts"));
                }
            }
            Err(_) => {
                if !user.trim().is_empty() && user.trim() == user && host.trim() == host {
                    assert!(joined.is_err() || host.contains('@') || user.contains('@'));
                }
            }
        }
    }
});
