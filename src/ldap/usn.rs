//! uSNChanged change tracking on Active Directory: the two reads the AD live watch makes.
//!
//! Every write on a DC (originating or replicated) raises that DC's `highestCommittedUSN` and
//! stamps the written object's `uSNChanged` with it. [`Directory::usn_mark`] reads the first
//! from the root DSE (one tiny base search, no control); only when it moved does the watch pay
//! for [`Directory::usn_listing`]: `(DN, uSNChanged)` of every SIP-enabled object under a base.
//! Comparing two listings finds additions, modifications *and deletions* without tombstones
//! (which need the show-deleted control and a right the least-privilege account lacks), and an
//! object that lost its SIP address drops out of the listing like a deleted one. USNs are per
//! DC database, so a mark names the database it came from ([`database`]): the `invocationId`
//! of the DC's nTDSDSA object (`dsServiceName`), which changes when the DC is restored from a
//! backup and its USNs may repeat, while the nTDSDSA object's name stays. No control is ever
//! sent here.

use std::collections::BTreeMap;

use ldap3::Scope;

use super::entry::readable;
use super::search::Search;
use super::{Directory, Error};
use crate::model::Dn;

/// Where a DC's update sequence stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsnMark {
    /// The DC's database, as [`database`] names it: USNs are only comparable within one.
    pub dc: String,
    /// `highestCommittedUSN`.
    pub highest: u64,
}

/// The name of the DC database a mark comes from: its `invocationId` (read from the nTDSDSA
/// object the root DSE's `dsServiceName` names), which a restore from backup changes. Only when
/// the account may not read it, the nTDSDSA object's DN (a restored DC then goes unnoticed
/// until its USN moves), else the URL.
pub(crate) fn database(invocation_id: Option<String>, dsa: Option<String>, url: &str) -> String {
    invocation_id.or(dsa).unwrap_or_else(|| url.to_string())
}

/// `uSNChanged` by normalised DN, of the SIP-enabled objects under one base.
pub(crate) type UsnListing = BTreeMap<String, u64>;

impl Directory {
    /// The DC's highest committed USN; `None` when the root DSE has no `highestCommittedUSN`
    /// (not Active Directory).
    pub(crate) async fn usn_mark(&mut self) -> Result<Option<UsnMark>, Error> {
        let entries = self
            .search_all(
                "",
                Scope::Base,
                "(objectClass=*)",
                &["highestCommittedUSN", "dsServiceName"],
                "reading highestCommittedUSN",
            )
            .await?;
        let Some(entry) = readable(&entries).next() else {
            return Ok(None);
        };
        let Some(highest) = entry
            .first_text("highestCommittedUSN")
            .and_then(|v| v.trim().parse().ok())
        else {
            return Ok(None);
        };
        let dsa = entry.first_text("dsServiceName").map(str::to_string);
        let invocation_id = match &dsa {
            Some(dsa) => self.invocation_id(dsa).await?,
            None => None,
        };
        let dc = database(invocation_id, dsa, &self.url.to_string());
        Ok(Some(UsnMark { dc, highest }))
    }

    /// `uSNChanged` of every SIP-enabled object under `base` (subtree, paged where advertised;
    /// continuation references ignored). An entry without a readable `uSNChanged` counts as 0,
    /// so it still shows up as added or removed.
    pub(crate) async fn usn_listing(&mut self, base: &Dn) -> Result<UsnListing, Error> {
        let search = Search {
            op: "uSNChanged listing",
            ..Search::sip_objects("endpoint container", base).reading(&["uSNChanged"])
        };
        let mut listing = UsnListing::new();
        self.stream_entries(&search, |entry| {
            // An entry too broken to read cannot be listed; the next full reconcile reports it.
            let Ok(entry) = entry else { return };
            let usn = entry
                .first_text("uSNChanged")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let shown = entry.dn_shown();
            let key = Dn::parse(&shown)
                .map(|dn| dn.normalized().to_string())
                .unwrap_or_else(|_| shown.to_ascii_lowercase());
            listing.insert(key, usn);
        })
        .await?;
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSA: &str = "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=contoso,DC=com";

    #[test]
    fn a_mark_names_the_dcs_database_by_its_invocation_id_not_its_dsa() {
        let id = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b".to_string();
        assert_eq!(
            database(Some(id.clone()), Some(DSA.into()), "ldaps://dc1:636"),
            id
        );
        // The invocationId unreadable: the nTDSDSA object, else the URL.
        assert_eq!(database(None, Some(DSA.into()), "ldaps://dc1:636"), DSA);
        assert_eq!(database(None, None, "ldaps://dc1:636"), "ldaps://dc1:636");
    }
}
