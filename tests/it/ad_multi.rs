//! pcsync against two replicating Samba AD DCs with a KDC (`common::samba_pair`): DC1, the PDC
//! emulator, on 127.0.0.2 and DC2 on 127.0.0.3. Every test takes the pair's lock, so they run one
//! at a time; each puts the seed back on both DCs when it ends.

use std::time::Instant;

use crate::common::samba_pair::{self, REPLICATION_TIMEOUT, wait_until};

/// The fixture itself: an object added on either DC reaches the other, with the same objectGUID.
#[test]
fn the_two_dcs_replicate_both_ways() {
    let pair = samba_pair::samba_pair();
    let names = [
        "CN=Replicated From DC1,CN=Users,DC=contoso,DC=com",
        "CN=Replicated From DC2,CN=Users,DC=contoso,DC=com",
    ];
    for (dn, from, to) in [
        (names[0], &pair.dc1, &pair.dc2),
        (names[1], &pair.dc2, &pair.dc1),
    ] {
        from.add(&format!("dn: {dn}\nobjectClass: contact\n"));
        let began = Instant::now();
        wait_until(
            REPLICATION_TIMEOUT,
            &format!("{dn} on the other DC"),
            || to.exists(dn),
        );
        eprintln!("{dn}: replicated in {:.1}s", began.elapsed().as_secs_f64());
        let guid = |dc: &crate::common::samba::SambaDc| {
            dc.search_entries(dn, "(objectClass=*)", &["objectGUID"])[0].binary("objectGUID")
        };
        assert_eq!(guid(from), guid(to), "{dn}: one object on both DCs");
    }
    pair.restore_seed(&names);
    for dc in pair.dcs() {
        for dn in names {
            assert!(!dc.exists(dn), "{dn} still on {}", dc.ldaps_url);
        }
    }
}
