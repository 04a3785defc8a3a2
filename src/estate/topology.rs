//! Which DCs a domain has and which of them is the PDC emulator, decided from search results.
//!
//! The configuration naming context lists every DC of the forest under `CN=Sites`: a `server`
//! object (with the DC's `dNSHostName`) whose child `CN=NTDS Settings` is an `nTDSDSA` object
//! (with the `invocationId` of its database and the domain it holds in `msDS-hasDomainNCs`).
//! `fSMORoleOwner` on a domain's head names the nTDSDSA object of its PDC emulator. Pure: the
//! caller does the one subtree search and hands the entries over.

use crate::model::Guid;
use crate::model::{Attributes, Dn};

/// The attributes [`dcs_of_domain`] reads, in one subtree search under `CN=Sites`.
pub(crate) const SITES_ATTRS: &[&str] = &[
    "objectClass",
    "dNSHostName",
    "invocationId",
    "msDS-hasDomainNCs",
    "hasMasterNCs",
];
/// The filter of that search.
pub(crate) const SITES_FILTER: &str = "(|(objectClass=nTDSDSA)(objectClass=server))";

/// One domain controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dc {
    /// `dNSHostName` of its server object: the name to connect to (and Kerberos' `ldap/<name>`).
    pub(crate) host: String,
    /// Its nTDSDSA object (`CN=NTDS Settings,CN=<name>,CN=Servers,CN=<site>,CN=Sites,…`).
    pub(crate) dsa: Dn,
    /// Its database's `invocationId`; changes when the DC is restored from a backup.
    pub(crate) invocation_id: Option<Guid>,
}

/// The DCs holding `domain`, by host name, from the entries of the [`SITES_FILTER`] search. A
/// DC whose server object has no `dNSHostName` is skipped and named in the second list.
pub(crate) fn dcs_of_domain(domain: &Dn, entries: &[(Dn, Attributes)]) -> (Vec<Dc>, Vec<Dn>) {
    let mut dcs = Vec::new();
    let mut nameless = Vec::new();
    for (dn, attrs) in entries {
        if !has_class(attrs, "nTDSDSA") {
            continue;
        }
        let held = attrs
            .texts("msDS-hasDomainNCs")
            .chain(attrs.texts("hasMasterNCs"))
            .filter_map(|v| Dn::parse(v).ok())
            .any(|nc| &nc == domain);
        if !held {
            continue;
        }
        let Some(server) = dn.parent() else {
            continue;
        };
        let host = entries
            .iter()
            .find(|(d, a)| *d == server && has_class(a, "server"))
            .and_then(|(_, a)| a.texts("dNSHostName").next());
        match host {
            Some(host) => dcs.push(Dc {
                host: host.to_string(),
                dsa: dn.clone(),
                invocation_id: attrs
                    .get("invocationId")
                    .first()
                    .and_then(|v| Guid::from_bytes(v)),
            }),
            None => nameless.push(dn.clone()),
        }
    }
    dcs.sort_by_key(|dc| dc.host.to_ascii_lowercase());
    (dcs, nameless)
}

/// The PDC emulator among `dcs`, from the `fSMORoleOwner` value of the domain head.
pub(crate) fn pdc<'a>(role_owner: &str, dcs: &'a [Dc]) -> Result<&'a Dc, String> {
    let owner = Dn::parse(role_owner)
        .map_err(|e| format!("fSMORoleOwner {role_owner:?} is not a DN: {e}"))?;
    dcs.iter().find(|dc| dc.dsa == owner).ok_or_else(|| {
        if role_owner.contains("\\0ADEL:") {
            format!(
                "the PDC emulator role belongs to a deleted DC ({role_owner}): seize it onto a \
                 live DC (ntdsutil / Move-ADDirectoryServerOperationMasterRole)"
            )
        } else {
            format!(
                "the PDC emulator role owner {role_owner} is not among the domain's DCs under \
                 CN=Sites"
            )
        }
    })
}

fn has_class(attrs: &Attributes, class: &str) -> bool {
    attrs
        .texts("objectClass")
        .any(|c| c.eq_ignore_ascii_case(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "DC=contoso,DC=com";
    const SITE: &str =
        "CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=contoso,DC=com";

    fn entry(dn: &str, values: &[(&str, &[&[u8]])]) -> (Dn, Attributes) {
        let mut attrs = Attributes::new();
        for (name, vs) in values {
            attrs.insert(name, vs.iter().map(|v| v.to_vec()).collect());
        }
        (Dn::parse(dn).unwrap(), attrs)
    }

    fn server(name: &str, host: Option<&str>) -> (Dn, Attributes) {
        let mut values: Vec<(&str, &[&[u8]])> = vec![("objectClass", &[b"top", b"server"])];
        let host_value;
        if let Some(h) = host {
            host_value = [h.as_bytes()];
            values.push(("dNSHostName", &host_value));
        }
        entry(&format!("CN={name},{SITE}"), &values)
    }

    fn dsa(name: &str, domain: &str, guid: u8) -> (Dn, Attributes) {
        let id = [guid; 16];
        entry(
            &format!("CN=NTDS Settings,CN={name},{SITE}"),
            &[
                ("objectClass", &[b"top", b"applicationSettings", b"nTDSDSA"]),
                ("msDS-hasDomainNCs", &[domain.as_bytes()]),
                ("invocationId", &[&id]),
            ],
        )
    }

    #[test]
    fn the_dcs_of_a_domain_come_from_their_server_and_ntdsdsa_objects() {
        let entries = vec![
            server("DC2", Some("dc2.contoso.com")),
            dsa("DC2", "dc=contoso,dc=com", 2),
            server("DC1", Some("dc1.contoso.com")),
            dsa("DC1", DOMAIN, 1),
            // A DC of another domain of the forest, and one without a DNS name.
            server("FAB1", Some("fab1.fabrikam.com")),
            dsa("FAB1", "DC=fabrikam,DC=com", 3),
            server("DC3", None),
            dsa("DC3", DOMAIN, 4),
        ];
        let (dcs, nameless) = dcs_of_domain(&Dn::parse(DOMAIN).unwrap(), &entries);
        let hosts: Vec<&str> = dcs.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["dc1.contoso.com", "dc2.contoso.com"]);
        assert_eq!(dcs[1].invocation_id, Some(Guid([2; 16])));
        assert_eq!(
            nameless,
            [Dn::parse(&format!("CN=NTDS Settings,CN=DC3,{SITE}")).unwrap()]
        );

        let owner = format!("CN=NTDS Settings,CN=DC2,{SITE}").to_ascii_lowercase();
        assert_eq!(pdc(&owner, &dcs).unwrap().host, "dc2.contoso.com");
    }

    #[test]
    fn a_role_owner_that_is_no_live_dc_is_named() {
        let entries = vec![
            server("DC1", Some("dc1.contoso.com")),
            dsa("DC1", DOMAIN, 1),
        ];
        let (dcs, _) = dcs_of_domain(&Dn::parse(DOMAIN).unwrap(), &entries);
        let deleted = format!("CN=NTDS Settings\\0ADEL:0123,CN=OLD,{SITE}");
        assert!(
            pdc(&deleted, &dcs)
                .unwrap_err()
                .contains("belongs to a deleted DC")
        );
        let gone = format!("CN=NTDS Settings,CN=OLD,{SITE}");
        assert_eq!(
            pdc(&gone, &dcs).unwrap_err(),
            format!(
                "the PDC emulator role owner {gone} is not among the domain's DCs under CN=Sites"
            )
        );
        assert!(
            pdc("not a dn", &dcs)
                .unwrap_err()
                .starts_with("fSMORoleOwner")
        );
    }
}
