//! Property: the plan is idempotent. For any observed directory (generated holders of both
//! migrations' URIs: well-known users homed anywhere, endpoints right or wrong, contacts outside
//! the container, other objects), applying the ready changes of the plan to that state and
//! planning again gives a plan with nothing ready. The apply here is a pure model of what
//! `apply::execute` writes (the writer itself is tested against a fake and a real slapd).

use proptest::prelude::*;

use super::*;

/// One generated holder of a migration's URI.
#[derive(Debug, Clone)]
enum Holder {
    /// A user homed on: 0 legacy, 1 pool1, 2 pool2, 3 nothing.
    User {
        home: u8,
        enabled: u8,
        spelled: bool,
    },
    /// An endpoint in the container: home 0 pool1, 1 pool2, 2 legacy, 3 nothing; owner right?
    Endpoint {
        home: u8,
        enabled: u8,
        owner: bool,
        n: u8,
    },
    /// A contact outside the container.
    StrayContact,
    /// A group or other object holding the URI.
    Other,
}

fn holder() -> impl Strategy<Value = Holder> {
    prop_oneof![
        4 => (0..4u8, 0..3u8, any::<bool>())
            .prop_map(|(home, enabled, spelled)| Holder::User { home, enabled, spelled }),
        4 => (0..4u8, 0..3u8, any::<bool>(), 0..3u8)
            .prop_map(|(home, enabled, owner, n)| Holder::Endpoint { home, enabled, owner, n }),
        1 => Just(Holder::StrayContact),
        1 => Just(Holder::Other),
    ]
}

fn enabled(n: u8) -> Option<&'static str> {
    [Some("TRUE"), Some("FALSE"), None][n as usize % 3]
}

fn build(uri: &str, i: usize, h: &Holder) -> DirectoryObject {
    let mut pairs: Vec<(&str, &str)> = vec![("msRTCSIP-PrimaryUserAddress", uri)];
    let (dn, classes): (String, &[&str]) = match h {
        Holder::User {
            home,
            enabled: e,
            spelled,
        } => {
            if let Some(home) = [Some(LEGACY), Some(POOL1), Some(POOL2), None][*home as usize] {
                pairs.push(("msRTCSIP-PrimaryHomeServer", home));
            }
            if let Some(e) = enabled(*e) {
                pairs.push(("msRTCSIP-UserEnabled", e));
            }
            pairs.push(("msRTCSIP-OptionFlags", "256"));
            let cn = if *spelled {
                "OCSChat\\, Legacy \\+ Old"
            } else {
                "OCSChat"
            };
            (
                format!("CN={cn} {i},OU=Service Accounts,DC=contoso,DC=com"),
                &["top", "person", "user"],
            )
        }
        Holder::Endpoint {
            home,
            enabled: e,
            owner,
            n,
        } => {
            if let Some(home) = [Some(POOL1), Some(POOL2), Some(LEGACY), None][*home as usize] {
                pairs.push(("msRTCSIP-PrimaryHomeServer", home));
            }
            if let Some(e) = enabled(*e) {
                pairs.push(("msRTCSIP-UserEnabled", e));
            }
            pairs.push((
                "msRTCSIP-OwnerUrn",
                if *owner {
                    "urn:application:persistentchat"
                } else {
                    "urn:application:other"
                },
            ));
            (
                format!("CN={{{n}-{i}}},{CONTAINER}"),
                &["top", "person", "organizationalPerson", "contact"],
            )
        }
        Holder::StrayContact => (
            format!("CN=Stray {i},OU=Contacts,DC=contoso,DC=com"),
            &["top", "person", "contact"],
        ),
        Holder::Other => (format!("CN=Group {i},DC=contoso,DC=com"), &["top", "group"]),
    };
    object(&dn, classes, &pairs)
}

fn classifier() -> Classifier {
    Classifier::new(
        &["user".into(), "inetOrgPerson".into()],
        &["contact".into()],
    )
}

/// What the directory looks like after the ready changes of `p` are written.
fn apply_to(observed: &Observed, p: &Plan) -> Observed {
    let mut after = observed.clone();
    for c in p.ready() {
        let key = c.sip_uri().normalized().to_string();
        let holders = after.holders.entry(key).or_default();
        let dn = c.dn().clone();
        match c {
            // Deleted, or every msRTCSIP-* attribute cleared: either way it no longer holds
            // the URI, so a scan no longer returns it.
            Change::RetireUser(_) => holders.retain(|o| o.dn != dn),
            Change::CreateEndpoint(create) => {
                let mut a = Attributes::new();
                for av in &create.entry {
                    a.insert(av.name.as_str(), av.values.clone());
                }
                let o = DirectoryObject::from_attributes(
                    dn.as_str(),
                    a,
                    &classifier(),
                    &mut Vec::new(),
                );
                holders.push(o.unwrap());
            }
            Change::RepointEndpoint(repoint) => {
                let o = holders.iter_mut().find(|o| o.dn == dn).unwrap();
                // Each attribute of the change replaces the old values.
                let replaced = |n: &str| repoint.new_values.iter().any(|av| av.name.is(n));
                let mut a = Attributes::new();
                for (name, values) in o.attributes.iter().filter(|(n, _)| !replaced(n.as_str())) {
                    a.insert(name.as_str(), values.clone());
                }
                for av in &repoint.new_values {
                    a.insert(av.name.as_str(), av.values.clone());
                }
                *o = DirectoryObject::from_attributes(
                    o.dn.as_str(),
                    a,
                    &classifier(),
                    &mut Vec::new(),
                )
                .unwrap();
            }
        }
    }
    after
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn planning_the_applied_state_plans_nothing(
        contoso in proptest::collection::vec(holder(), 0..4),
        fabrikam in proptest::collection::vec(holder(), 0..4),
        disable in any::<bool>(),
        case in any::<bool>(),
    ) {
        let s = settings("", if disable { "disable" } else { "delete" });
        let mut objects = Vec::new();
        let contoso_uri = if case { "sip:OCSChat@Contoso.COM" } else { "sip:ocschat@contoso.com" };
        for (i, h) in contoso.iter().enumerate() {
            objects.push(build(contoso_uri, i, h));
        }
        for (i, h) in fabrikam.iter().enumerate() {
            objects.push(build("sip:ocschat@fabrikam.com", 10 + i, h));
        }
        let observed = observe(&s, objects);
        let desired = s.desired();
        let first = plan(&desired, &observed, now());
        let after = apply_to(&observed, &first);
        let second = plan(&desired, &after, now());
        prop_assert!(
            second.is_in_sync(),
            "first plan {:?}\nsecond plan {:?}",
            summary(&first),
            summary(&second)
        );
        // A blocked swap stays blocked (nothing was written for it) and nothing new is found.
        prop_assert_eq!(second.summary.blocked, first.summary.blocked);
        // And applying an empty plan changes nothing: the third plan equals the second.
        let third = plan(&desired, &apply_to(&after, &second), now());
        prop_assert_eq!(third, second);
    }
}
