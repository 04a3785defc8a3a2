//! Several domains in one forest: which domain an object belongs to, and whether the Global
//! Catalog carries the attributes pcsync searches. Pure: decided from search results.
//!
//! Each domain has a `crossRef` object under `CN=Partitions,CN=Configuration,…` whose `nCName`
//! is the domain's DN and whose `dnsRoot` is its DNS name; `systemFlags` bit 2
//! (FLAG_CR_NTDS_DOMAIN) marks it as a domain rather than the configuration, the schema or an
//! application partition. An object belongs to the domain whose `nCName` is the longest that
//! holds its DN.

use crate::model::{Attributes, Dn};

/// The filter and attributes of the one search under `CN=Partitions`.
pub(crate) const PARTITIONS_FILTER: &str = "(objectClass=crossRef)";
pub(crate) const PARTITIONS_ATTRS: &[&str] = &["nCName", "dnsRoot", "systemFlags"];
/// `systemFlags` bit of a domain's crossRef (MS-ADTS FLAG_CR_NTDS_DOMAIN).
const FLAG_CR_NTDS_DOMAIN: u32 = 0x2;

/// The filter and attributes of the search in the schema naming context that
/// [`missing_from_partial_attribute_set`] reads.
pub(crate) const PAS_ATTRS: &[&str] = &["lDAPDisplayName", "isMemberOfPartialAttributeSet"];

/// One domain of the forest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    /// Its naming context (`DC=fabrikam,DC=com`).
    pub(crate) nc: Dn,
    /// Its DNS name (`fabrikam.com`): where its DCs answer.
    pub(crate) dns_root: String,
}

/// The domains of a forest, from its crossRef objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Forest {
    domains: Vec<Domain>,
}

impl Forest {
    /// The domains among the entries of the [`PARTITIONS_FILTER`] search; a crossRef without a
    /// parsable `nCName` or a `dnsRoot`, or without the domain flag, is not a domain.
    pub(crate) fn from_cross_refs(entries: &[(Dn, Attributes)]) -> Forest {
        let mut domains: Vec<Domain> = entries
            .iter()
            .filter(|(_, a)| {
                a.texts("systemFlags")
                    .next()
                    .and_then(|f| f.trim().parse::<i64>().ok())
                    .is_some_and(|f| f as u32 & FLAG_CR_NTDS_DOMAIN != 0)
            })
            .filter_map(|(_, a)| {
                let nc = Dn::parse(a.texts("nCName").next()?).ok()?;
                let dns_root = a.texts("dnsRoot").next()?.trim().to_ascii_lowercase();
                (!dns_root.is_empty()).then_some(Domain { nc, dns_root })
            })
            .collect();
        domains.sort_by(|a, b| a.dns_root.cmp(&b.dns_root));
        domains.dedup_by(|a, b| a.nc == b.nc);
        Forest { domains }
    }

    /// Every domain, by DNS name.
    pub(crate) fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// The domain that holds `dn`: the one with the longest naming context above it.
    pub(crate) fn domain_of(&self, dn: &Dn) -> Option<&Domain> {
        self.domains
            .iter()
            .filter(|d| dn == &d.nc || dn.is_within(&d.nc))
            .max_by_key(|d| d.nc.as_str().len())
    }
}

/// The attributes of `wanted` whose attributeSchema entry (among `schema_entries`, from a search
/// of the schema naming context for their `lDAPDisplayName`s) does not say
/// `isMemberOfPartialAttributeSet: TRUE`: a Global Catalog search for them would find nothing.
pub(crate) fn missing_from_partial_attribute_set(
    wanted: &[&str],
    schema_entries: &[(Dn, Attributes)],
) -> Vec<String> {
    wanted
        .iter()
        .filter(|name| {
            !schema_entries.iter().any(|(_, a)| {
                a.texts("lDAPDisplayName")
                    .any(|n| n.eq_ignore_ascii_case(name))
                    && a.texts("isMemberOfPartialAttributeSet")
                        .any(|v| v.eq_ignore_ascii_case("TRUE"))
            })
        })
        .map(|name| (*name).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cross_ref(nc: &str, dns_root: &str, flags: &str) -> (Dn, Attributes) {
        let mut a = Attributes::new();
        a.insert("nCName", vec![nc.as_bytes().to_vec()]);
        a.insert("dnsRoot", vec![dns_root.as_bytes().to_vec()]);
        a.insert("systemFlags", vec![flags.as_bytes().to_vec()]);
        let dn = format!("CN={dns_root},CN=Partitions,CN=Configuration,DC=contoso,DC=com");
        (Dn::parse(&dn).unwrap(), a)
    }

    #[test]
    fn each_object_maps_to_the_domain_with_the_longest_naming_context_above_it() {
        let forest = Forest::from_cross_refs(&[
            cross_ref("DC=contoso,DC=com", "contoso.com", "3"),
            cross_ref("DC=emea,DC=contoso,DC=com", "EMEA.contoso.com", "3"),
            cross_ref("DC=fabrikam,DC=com", "fabrikam.com", "3"),
            // The configuration and schema partitions and an application partition.
            cross_ref("CN=Configuration,DC=contoso,DC=com", "contoso.com", "1"),
            cross_ref(
                "CN=Schema,CN=Configuration,DC=contoso,DC=com",
                "contoso.com",
                "1",
            ),
            cross_ref(
                "DC=DomainDnsZones,DC=contoso,DC=com",
                "DomainDnsZones.contoso.com",
                "5",
            ),
        ]);
        let roots: Vec<&str> = forest
            .domains()
            .iter()
            .map(|d| d.dns_root.as_str())
            .collect();
        assert_eq!(roots, ["contoso.com", "emea.contoso.com", "fabrikam.com"]);
        let of = |dn: &str| {
            forest
                .domain_of(&Dn::parse(dn).unwrap())
                .map(|d| d.dns_root.clone())
        };
        assert_eq!(
            of("CN=A,OU=People,DC=emea,DC=contoso,DC=com").as_deref(),
            Some("emea.contoso.com")
        );
        assert_eq!(
            of("CN=B,CN=Users,DC=contoso,DC=com").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(
            of("cn=c,dc=fabrikam,dc=com").as_deref(),
            Some("fabrikam.com")
        );
        assert_eq!(of("DC=fabrikam,DC=com").as_deref(), Some("fabrikam.com"));
        assert_eq!(of("CN=D,DC=adatum,DC=com"), None);
        // The configuration NC lies within contoso.com's DN but is no domain object; callers
        // write endpoints there on the primary write server, never routed.
        assert_eq!(
            of("CN=E,CN=Application Contacts,CN=Configuration,DC=contoso,DC=com").as_deref(),
            Some("contoso.com")
        );
    }

    #[test]
    fn incomplete_cross_refs_are_no_domains() {
        let mut no_root = cross_ref("DC=x,DC=com", "", "3");
        no_root.1.insert("dnsRoot", Vec::new());
        let forest = Forest::from_cross_refs(&[
            no_root,
            cross_ref("not a dn", "y.com", "3"),
            cross_ref("DC=z,DC=com", "z.com", "junk"),
        ]);
        assert_eq!(forest.domains(), []);
    }

    #[test]
    fn attributes_outside_the_partial_attribute_set_are_named() {
        let schema = |name: &str, pas: Option<&str>| {
            let mut a = Attributes::new();
            a.insert("lDAPDisplayName", vec![name.as_bytes().to_vec()]);
            if let Some(v) = pas {
                a.insert("isMemberOfPartialAttributeSet", vec![v.as_bytes().to_vec()]);
            }
            (
                Dn::parse(&format!(
                    "CN={name},CN=Schema,CN=Configuration,DC=contoso,DC=com"
                ))
                .unwrap(),
                a,
            )
        };
        let entries = [
            schema("msRTCSIP-PrimaryUserAddress", Some("TRUE")),
            schema("msRTCSIP-UserEnabled", Some("FALSE")),
            schema("msRTCSIP-PrimaryHomeServer", None),
        ];
        assert_eq!(
            missing_from_partial_attribute_set(
                &[
                    "msRTCSIP-PrimaryUserAddress",
                    "msRTCSIP-UserEnabled",
                    "msRTCSIP-PrimaryHomeServer",
                    "msRTCSIP-OwnerUrn"
                ],
                &entries
            ),
            [
                "msRTCSIP-UserEnabled",
                "msRTCSIP-PrimaryHomeServer",
                "msRTCSIP-OwnerUrn"
            ]
        );
    }
}
