//! DN handling. Any text through `Dn::parse`, and any value through `Dn::child` (escaping) and
//! `leaf_value` (unescaping). Checks invariants, not just "no panic":
//! - a DN re-parses from its own text and from its normalised form to an equal DN, and
//!   normalising is idempotent; equality, ordering and hashing agree;
//! - `parent()` is one RDN shorter, and the DN is within it (and within itself);
//! - `child(parent, "cn", value)` escapes any value so that it parses, its parent is `parent`,
//!   and `leaf_value()` gives the value back unchanged.
#![no_main]

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use libfuzzer_sys::fuzz_target;
use pcsync::model::Dn;

fn hash(d: &Dn) -> u64 {
    let mut h = DefaultHasher::new();
    d.hash(&mut h);
    h.finish()
}

fn same(a: &Dn, b: &Dn) {
    assert_eq!(a, b);
    assert_eq!(a.cmp(b), Ordering::Equal);
    assert_eq!(hash(a), hash(b));
    assert_eq!(a.depth(), b.depth());
}

fn check(d: &Dn) {
    same(d, &Dn::parse(d.as_str()).expect("a DN re-parses from its own text"));
    let norm = Dn::parse(d.normalized()).expect("the normalised form parses");
    same(d, &norm);
    assert_eq!(norm.normalized(), d.normalized(), "normalising is idempotent");
    assert!(d.is_within(d));
    match d.parent() {
        Some(p) => {
            assert_eq!(p.depth() + 1, d.depth());
            assert!(d.is_within(&p));
            assert!(!p.is_within(d));
            assert_ne!(&p, d);
        }
        None => assert_eq!(d.depth(), 1),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `text` = DN, or `DN \0 value` for the escaping round-trip.
    let (dn_text, value) = match text.split_once('\u{0}') {
        Some((d, v)) => (d, Some(v)),
        None => (text, None),
    };
    let Ok(d) = Dn::parse(dn_text) else {
        return;
    };
    check(&d);
    if let Some(value) = value {
        let child = Dn::child(&d, "cn", value).expect("any value escapes into a valid RDN");
        check(&child);
        assert_eq!(child.parent().as_ref(), Some(&d), "the child's parent is the parent");
        assert!(child.is_within(&d));
        assert_eq!(child.depth(), d.depth() + 1);
        assert_eq!(child.leaf_value().as_deref(), Some(value), "escape/unescape round-trip");
    }
});
