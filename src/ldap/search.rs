//! Searches: paged where the server advertises it, streamed one entry at a time so memory stays
//! bounded by the page size. Continuation references (AD sends them for other naming contexts)
//! are counted and ignored, never chased. Every search checks its final result code, so a size
//! limit is an error rather than a silently short answer.

use std::borrow::Cow;

use ldap3::asn1::{PL, TagClass, Types, parse_tag};
use ldap3::controls::{Control, PagedResults, RawControl};
use ldap3::{LdapResult, ResultEntry, Scope};
use tracing::debug;

use super::entry::{Malformed, RawEntry, readable};
use super::{Directory, Error, SIP_ENABLED_FILTER, oid};
use crate::model::{
    Classifier, DirectoryObject, Dn, DnCache, Finding, Listing, Sighting, attr, is_conflict_name,
};

/// The attribute list every search here passes: a fixed list of names.
type Attrs = &'static [&'static str];

/// One paged subtree search: under which base, for which objects, reading which attributes,
/// passing over which part of the tree.
#[derive(Debug, Clone)]
pub(crate) struct Search<'a> {
    /// Names the base in errors: "base DN", "endpoint container".
    pub what: &'static str,
    /// Names the search in errors ("search" under the base, "uSNChanged listing" under it).
    pub op: &'static str,
    pub base: &'a Dn,
    pub filter: Cow<'a, str>,
    pub attrs: Attrs,
    /// Entries at or below this DN are counted as skipped and not converted: the endpoint
    /// container when it lies under `base_dn`, so that no object is seen twice.
    pub skip_within: Option<&'a Dn>,
}

impl<'a> Search<'a> {
    /// Every SIP-enabled object under `base`, reading [`attr::SEARCHED`].
    pub(crate) fn sip_objects(what: &'static str, base: &'a Dn) -> Search<'a> {
        Search {
            what,
            op: "search",
            base,
            filter: Cow::Borrowed(SIP_ENABLED_FILTER),
            attrs: attr::SEARCHED,
            skip_within: None,
        }
    }

    /// The objects under `base` whose SIP address equals `normalized_uri`, reading
    /// [`attr::SEARCHED`].
    pub(crate) fn holders_of(what: &'static str, base: &'a Dn, normalized_uri: &str) -> Search<'a> {
        Search {
            filter: Cow::Owned(format!(
                "({}={})",
                attr::PRIMARY_USER_ADDRESS,
                ldap3::ldap_escape(normalized_uri)
            )),
            ..Search::sip_objects(what, base)
        }
    }

    /// The same search reading only `attrs` (which must include what the caller reads).
    pub(crate) fn reading(self, attrs: Attrs) -> Search<'a> {
        Search { attrs, ..self }
    }

    /// The same search passing over everything at or below `skip_within`.
    pub(crate) fn skipping(self, skip_within: Option<&'a Dn>) -> Search<'a> {
        Search {
            skip_within,
            ..self
        }
    }
}

/// The paged-results request control (RFC 2696) for one page: non-critical, so even a server
/// that did not mean what its root DSE said could only ignore it and send everything at once.
fn paged_request(page_size: u32, cookie: Vec<u8>) -> Vec<RawControl> {
    let size = i32::try_from(page_size).unwrap_or(i32::MAX);
    let control: RawControl = PagedResults { size, cookie }.into();
    vec![control]
}

/// The cookie of the paged-results response control (`SEQUENCE { size INTEGER, cookie OCTET
/// STRING }`) among a result's controls: `Ok(None)` without one, `Err` when it is unreadable.
/// Read here, never with ldap3's parser, which panics on bad input.
fn paged_response(controls: &[Control]) -> Result<Option<Vec<u8>>, ()> {
    let Some(raw) = controls.iter().find(|c| c.1.ctype == oid::PAGED_RESULTS) else {
        return Ok(None);
    };
    let value = raw.1.val.as_deref().ok_or(())?;
    let (_, tag) = parse_tag(value).map_err(|_| ())?;
    let PL::C(parts) = tag.payload else {
        return Err(());
    };
    match parts.as_slice() {
        [size, cookie]
            if size.class == TagClass::Universal
                && size.id == Types::Integer as u64
                && cookie.class == TagClass::Universal
                && cookie.id == Types::OctetString as u64 =>
        {
            match &cookie.payload {
                PL::P(cookie) => Ok(Some(cookie.clone())),
                PL::C(_) => Err(()),
            }
        }
        _ => Err(()),
    }
}

/// Counts from one paged search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Entries handed to the callback.
    pub entries: u64,
    /// Entries skipped by the caller's `skip_within`.
    pub skipped: u64,
    /// Continuation references received and ignored.
    pub references: u64,
}

impl SearchStats {
    /// Counts how reading one entry went and passes on what is to be handed on: a finding is
    /// counted as an entry and kept, `None` (within `skip_within`) as skipped.
    #[inline]
    fn admit<T>(
        &mut self,
        read: Result<Option<T>, Finding>,
        findings: &mut Vec<Finding>,
    ) -> Option<T> {
        match read {
            Ok(Some(read)) => {
                self.entries += 1;
                Some(read)
            }
            Ok(None) => {
                self.skipped += 1;
                None
            }
            Err(finding) => {
                self.entries += 1;
                findings.push(finding);
                None
            }
        }
    }
}

impl Directory {
    /// Whether an entry exists (a base-scope search; LDAP 32 means no).
    pub(crate) async fn exists(&mut self, dn: &Dn) -> Result<bool, Error> {
        match self
            .search_all(
                dn.as_str(),
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
                "reading",
            )
            .await
        {
            Ok(entries) => Ok(readable(&entries).next().is_some()),
            Err(Error::NoSuchBase { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams the objects `search` finds to `on_object`, each interpreted (problems become
    /// `findings`). Entries within `search.skip_within` are counted as skipped, not converted.
    pub(crate) async fn for_each_object(
        &mut self,
        search: &Search<'_>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        mut on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        let mut stats = SearchStats::default();
        let mut dn_cache = DnCache::default();
        stats.references = self
            .stream_entries(search, |entry| {
                // Parse the DN once, for the skip test and the object.
                let parsed = entry
                    .map_err(|malformed| malformed.finding())
                    .and_then(|entry| {
                        let text = entry.dn()?;
                        match Dn::parse(text) {
                            Ok(dn) => Ok((entry, dn)),
                            Err(e) => Err(Finding::malformed(text, format!("DN: {e}"))),
                        }
                    });
                let (entry, dn) = match parsed {
                    Ok(parsed) => parsed,
                    Err(finding) => {
                        stats.entries += 1;
                        findings.push(finding);
                        return;
                    }
                };
                if search.skip_within.is_some_and(|skip| dn.is_within(skip)) {
                    stats.skipped += 1;
                    return;
                }
                stats.entries += 1;
                on_object(DirectoryObject::from_parsed(
                    dn,
                    entry.to_attributes(),
                    classifier,
                    &mut dn_cache,
                    findings,
                ));
            })
            .await?;
        if stats.references > 0 {
            debug!(base = %search.base, references = stats.references, "ignored continuation references");
        }
        Ok(stats)
    }

    /// Streams each object `search` finds as `inventory` lists it ([`Listing`]), read in place
    /// from the raw entry: the DN is parsed only when it is not plain, DN-valued attributes once
    /// per distinct value, and nothing is allocated per object on the common path. The objects
    /// and findings are those of [`Directory::for_each_object`]: an entry whose DN is not UTF-8
    /// or not a DN is a finding and is not passed on.
    pub(crate) async fn for_each_listing(
        &mut self,
        search: &Search<'_>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        mut on_listing: impl FnMut(Listing<'_, '_>),
    ) -> Result<SearchStats, Error> {
        let mut stats = SearchStats::default();
        let mut dn_cache = DnCache::default();
        let mut scratch = String::new();
        stats.references = self
            .stream_entries(search, |entry| {
                let read = entry.map_err(|m| m.finding()).and_then(|entry| {
                    let text = entry.dn()?;
                    let bad_dn = |e| Finding::malformed(text, format!("DN: {e}"));
                    let (shown, parsed) = Dn::check(text).map_err(bad_dn)?;
                    let skip = match (search.skip_within, &parsed) {
                        (None, _) => false,
                        (Some(skip), Some(dn)) => dn.is_within(skip),
                        (Some(skip), None) => skip.holds(text).map_err(bad_dn)?,
                    };
                    let conflict = match &parsed {
                        Some(dn) => is_conflict_name(dn),
                        // Only a plain DN whose text says `CNF:` can name a conflict.
                        None => {
                            text.contains("CNF:")
                                && Dn::parse(text).is_ok_and(|dn| is_conflict_name(&dn))
                        }
                    };
                    Ok((!skip).then_some((entry, shown, conflict)))
                });
                let Some((entry, dn, conflict)) = stats.admit(read, findings) else {
                    return;
                };
                if conflict {
                    findings.push(Finding::conflict_object(dn));
                }
                on_listing(Listing::read(
                    dn,
                    entry,
                    classifier,
                    &mut dn_cache,
                    &mut scratch,
                    findings,
                ));
            })
            .await?;
        if stats.references > 0 {
            debug!(base = %search.base, references = stats.references, "ignored continuation references");
        }
        Ok(stats)
    }

    /// Streams what detection needs of each object `search` finds ([`Sighting`]: DN text, kind,
    /// SIP address) to `on_sighting`, read in place from the raw entry: no allocation and no
    /// DN parsing per object on the common path. Malformed addresses, DNs that are not UTF-8 and
    /// DNs the skip test cannot read become findings; objects without a valid address are
    /// counted, not passed on.
    pub(crate) async fn for_each_sighting(
        &mut self,
        search: &Search<'_>,
        classifier: &Classifier,
        findings: &mut Vec<Finding>,
        mut on_sighting: impl FnMut(Sighting<'_>),
    ) -> Result<SearchStats, Error> {
        let mut stats = SearchStats::default();
        let mut buffer = String::new();
        stats.references = self
            .stream_entries(search, |entry| {
                let read = entry.map_err(|m| m.finding()).and_then(|entry| {
                    let dn = entry.dn()?;
                    match search.skip_within.map(|skip| skip.holds(dn)) {
                        Some(Err(e)) => Err(Finding::malformed(dn, format!("DN: {e}"))),
                        Some(Ok(true)) => Ok(None),
                        _ => Ok(Some((entry, dn))),
                    }
                });
                let Some((entry, dn)) = stats.admit(read, findings) else {
                    return;
                };
                let sighting = Sighting::read(
                    dn,
                    entry.texts(attr::OBJECT_CLASS),
                    entry.values(attr::PRIMARY_USER_ADDRESS),
                    classifier,
                    &mut buffer,
                    findings,
                );
                if let Some(sighting) = sighting {
                    on_sighting(sighting);
                }
            })
            .await?;
        Ok(stats)
    }

    /// Streams the objects under `base` whose SIP address equals `normalized_uri` (the server's
    /// equality rule for the attribute is case-insensitive in AD and in our OpenLDAP schema).
    pub(crate) async fn for_each_holder_of(
        &mut self,
        what: &'static str,
        base: &Dn,
        normalized_uri: &str,
        skip_within: Option<&Dn>,
        classifier: &Classifier,
        on_object: impl FnMut(DirectoryObject),
    ) -> Result<SearchStats, Error> {
        // The full scan already reported these objects' malformed values.
        let mut findings = Vec::new();
        let search = Search::holders_of(what, base, normalized_uri).skipping(skip_within);
        self.for_each_object(&search, classifier, &mut findings, on_object)
            .await
    }

    /// Streams the entries `search` finds to `on_entry`, one at a time, a page at a time where
    /// the server advertises paging; intermediate messages are skipped and continuation
    /// references counted, never chased. Returns the number of references.
    ///
    /// Paging is done here rather than by ldap3's adapter, whose control parser panics on a
    /// malformed response and which costs a boxed future per entry: each page is one search
    /// carrying the cookie of the last, and a page's result code is checked before the next.
    /// A page's entries are received whole and handed on once the next page has been asked
    /// for, so that the server prepares the next page while this one is read: at most one page
    /// is held (`page_size` entries).
    pub(super) async fn stream_entries(
        &mut self,
        search: &Search<'_>,
        mut on_entry: impl FnMut(Result<RawEntry<'_>, Malformed>),
    ) -> Result<u64, Error> {
        let op = format!("{} under {}", search.op, search.base);
        let mut references = 0;
        let mut cookie = Vec::new();
        // The last page's entries, handed on once the next page has been asked for. Without
        // paging, or from a server that sends more than a page, entries are handed on as they
        // come, so that memory stays bounded by the page size.
        let mut page: Vec<ResultEntry> = Vec::new();
        let paged = self.capabilities.paged_results;
        let most = usize::try_from(self.page_size).unwrap_or(usize::MAX);
        let mut hand_on = |page: &mut Vec<ResultEntry>| {
            for entry in page.drain(..) {
                on_entry(RawEntry::new(&entry.0));
            }
        };
        loop {
            let ldap = self.ldap.with_timeout(self.timeout);
            if paged {
                ldap.with_controls(paged_request(self.page_size, std::mem::take(&mut cookie)));
            }
            let started = ldap
                .streaming_search(
                    search.base.as_str(),
                    Scope::Subtree,
                    &search.filter,
                    search.attrs,
                )
                .await;
            hand_on(&mut page);
            let mut stream = started.map_err(|e| self.op_error(&op, e))?;
            loop {
                let entry: ResultEntry = match stream.next().await {
                    Ok(Some(entry)) => entry,
                    Ok(None) => break,
                    Err(e) => {
                        hand_on(&mut page);
                        let _ = stream.finish().await;
                        return Err(self.op_error(&op, e));
                    }
                };
                if entry.is_ref() {
                    references += 1;
                } else if !entry.is_intermediate() {
                    page.push(entry);
                    if !paged || page.len() > most {
                        hand_on(&mut page);
                    }
                }
            }
            let result = stream.finish().await;
            let next = paged_response(&result.ctrls);
            if next.is_err() || result.rc != 0 {
                // The entries came before the answer that ends the scan.
                hand_on(&mut page);
            }
            self.check_search_result(search.what, search.base.as_str(), &op, result)?;
            match next {
                // No control: the server sent everything at once. An empty cookie: the last page.
                Ok(None) => break,
                Ok(Some(next)) if next.is_empty() => break,
                Ok(Some(next)) => cookie = next,
                Err(()) => {
                    return Err(Error::Operation {
                        op,
                        url: self.url.to_string(),
                        rc: 0,
                        text: "the server answered with an unreadable paged-results control".into(),
                    });
                }
            }
        }
        hand_on(&mut page);
        Ok(references)
    }

    /// A small unpaged search whose result fits in memory (root DSE, schema, one entry).
    pub(super) async fn search_all(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        op: &str,
    ) -> Result<Vec<ResultEntry>, Error> {
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| self.op_error(op, e))?;
        let (entries, res) = (result.0, result.1);
        self.check_search_result("entry", base, op, res)?;
        Ok(entries)
    }

    pub(super) fn check_search_result(
        &self,
        what: &'static str,
        base: &str,
        op: &str,
        res: LdapResult,
    ) -> Result<(), Error> {
        let url = self.url.to_string();
        match res.rc {
            0 => Ok(()),
            // A referral for the base itself: treat as absent here, never chase it.
            10 => Ok(()),
            4 => Err(Error::SizeLimit {
                base: base.to_string(),
                url,
                text: res.text,
            }),
            32 => Err(Error::NoSuchBase {
                what,
                dn: base.to_string(),
                url,
                text: res.text,
            }),
            3 => Err(Error::Timeout {
                op: op.to_string(),
                url,
                secs: self.timeout.as_secs_f64(),
            }),
            rc => Err(Error::Operation {
                op: op.to_string(),
                url,
                rc,
                text: res.text,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(value: Option<Vec<u8>>) -> Vec<Control> {
        vec![Control(
            None,
            RawControl {
                ctype: oid::PAGED_RESULTS.to_string(),
                crit: false,
                val: value,
            },
        )]
    }

    #[test]
    fn the_page_request_is_non_critical_and_carries_the_cookie() {
        let [control] = paged_request(500, b"c1".to_vec()).try_into().unwrap();
        assert!(!control.crit);
        let value = control.val.unwrap();
        // SEQUENCE { 500, "c1" }: the same reader reads it back.
        assert_eq!(
            paged_response(&response(Some(value))),
            Ok(Some(b"c1".to_vec()))
        );
    }

    #[test]
    fn paged_responses_are_read_and_garbage_is_an_error_never_a_panic() {
        // SEQUENCE { INTEGER 7, OCTET STRING "" }: the last page.
        let last = vec![0x30, 0x05, 0x02, 0x01, 0x07, 0x04, 0x00];
        assert_eq!(paged_response(&response(Some(last))), Ok(Some(vec![])));
        assert_eq!(paged_response(&[]), Ok(None));
        for garbage in [
            None,
            Some(vec![]),
            Some(vec![0x30]),
            Some(vec![0x04, 0x00]),
            Some(vec![0x30, 0x03, 0x02, 0x01, 0x07]),
            Some(vec![0x30, 0x05, 0x04, 0x00, 0x02, 0x01, 0x07]),
            Some(vec![0x30, 0x06, 0x02, 0x01, 0x07, 0x30, 0x01, 0x00]),
        ] {
            assert_eq!(
                paged_response(&response(garbage.clone())),
                Err(()),
                "{garbage:?}"
            );
        }
    }
}
