//! Searches: paged where the server advertises it, streamed one entry at a time so memory stays
//! bounded by the page size. Continuation references (AD sends them for other naming contexts)
//! are counted and ignored, never chased. Every search checks its final result code, so a size
//! limit is an error rather than a silently short answer.

use std::borrow::Cow;

use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{LdapResult, ResultEntry, Scope};
use tracing::debug;

use super::entry::{Malformed, RawEntry, readable};
use super::{Directory, Error, SIP_ENABLED_FILTER};
use crate::model::{Classifier, DirectoryObject, Dn, DnCache, Finding, attr};

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

    /// Streams the entries `search` finds (paged where advertised) to `on_entry`, one at a
    /// time; intermediate messages are skipped and continuation references counted, never
    /// chased. Returns the number of references.
    pub(super) async fn stream_entries(
        &mut self,
        search: &Search<'_>,
        mut on_entry: impl FnMut(Result<RawEntry<'_>, Malformed>),
    ) -> Result<u64, Error> {
        let op = format!("{} under {}", search.op, search.base);
        let adapters = self.search_adapters();
        let mut stream = self
            .ldap
            .with_timeout(self.timeout)
            .streaming_search_with(
                adapters,
                search.base.as_str(),
                Scope::Subtree,
                &search.filter,
                search.attrs,
            )
            .await
            .map_err(|e| self.op_error(&op, e))?;
        let mut references = 0;
        loop {
            let entry: ResultEntry = match stream.next().await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(self.op_error(&op, e));
                }
            };
            if entry.is_ref() {
                references += 1;
            } else if !entry.is_intermediate() {
                on_entry(RawEntry::new(&entry.0));
            }
        }
        let result = stream.finish().await;
        self.check_search_result(search.what, search.base.as_str(), &op, result)?;
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

    /// The adapters of a subtree search: paging only where the server advertises it (every AD
    /// and slapd does). ldap3 sends the control non-critical (pinned by a unit test), so even a
    /// wrong guess could not cost the connection; no other control is ever attached to a search.
    fn search_adapters(&self) -> Vec<Box<dyn Adapter<'static, &'static str, Attrs>>> {
        let mut adapters: Vec<Box<dyn Adapter<'static, &'static str, Attrs>>> = Vec::new();
        if self.capabilities.paged_results {
            adapters.push(Box::new(PagedResults::new(self.page_size as i32)));
        }
        adapters
    }
}
