//! DirSync (MS-ADTS 3.1.1.3.4.1.3, control 1.2.840.113556.1.4.841): AD's change feed, one
//! cookie per naming context. A search with the cookie returns the objects whose requested
//! attributes changed since it, deleted ones as tombstones (`isDeleted`, moved to `CN=Deleted
//! Objects`), and a new cookie; `moreResults` says to ask again at once.
//!
//! pcsync sends it with flags 0, which needs "Replicating Directory Changes" on the NC head
//! (checked by `Directory::verify_dirsync` first) and shows tombstones; critical, since only a
//! server that advertised it (and accepted the probe) ever gets it. ldap3 has no DirSync type, so
//! the control is built and its response read here with `ldap3::asn1`; the response is read
//! without ldap3's control parsers, which panic on bad input.

use bytes::BytesMut;
use ldap3::Scope;
use ldap3::asn1::{
    ASNTag, Integer, OctetString, Sequence, StructureTag, Tag, TagClass, Types, parse_tag,
    parse_uint, write,
};
use ldap3::controls::RawControl;

use super::entry::readable;
use super::{Directory, Error, oid};
use crate::model::Dn;

/// One DirSync answer.
#[derive(Debug, Default)]
pub(crate) struct DirSyncPage {
    /// DNs of the objects returned (changed, added, or tombstones).
    pub dns: Vec<String>,
    /// The cookie for the next request.
    pub cookie: Vec<u8>,
    /// The server has more changes: ask again with `cookie` now.
    pub more: bool,
}

impl Directory {
    /// One DirSync search of naming context `nc` from `cookie` (empty: everything, the
    /// baseline) for `attrs`: objects are returned when one of those changed.
    pub(crate) async fn dirsync(
        &mut self,
        nc: &str,
        cookie: &[u8],
        attrs: &[&str],
    ) -> Result<DirSyncPage, Error> {
        let op = format!("DirSync of {nc}");
        let result = self
            .ldap
            .with_timeout(self.timeout)
            .with_controls(control(cookie))
            .search(nc, Scope::Subtree, "(objectClass=*)", attrs.to_vec())
            .await
            .map_err(|e| self.op_error(&op, e))?;
        let (entries, res) = (result.0, result.1);
        let response = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == oid::DIRSYNC)
            .and_then(|c| c.1.val.as_deref())
            .and_then(parse_response);
        self.check_search_result("naming context", nc, &op, res)?;
        let Some((more, cookie)) = response else {
            return Err(Error::Operation {
                op,
                url: self.url.to_string(),
                rc: 0,
                text: "the server answered without a readable DirSync response control".into(),
            });
        };
        let dns = readable(&entries)
            .map(|e| e.dn_shown().into_owned())
            .collect();
        Ok(DirSyncPage { dns, cookie, more })
    }

    /// The naming context (from the root DSE) holding `dn`, where DirSync must be rooted.
    pub(crate) fn naming_context_of(&self, dn: &Dn) -> Option<String> {
        super::naming_context_of(&self.root_dse.naming_contexts, dn)
    }
}

/// The DirSync control from `cookie` (empty: the baseline, or the rights probe of
/// `Directory::verify_dirsync`), critical: only a server that advertised it ever gets it.
pub(super) fn control(cookie: &[u8]) -> RawControl {
    RawControl {
        ctype: oid::DIRSYNC.to_string(),
        crit: true,
        val: Some(request_value(cookie)),
    }
}

/// BER of the request: SEQUENCE { flags INTEGER 0, maxBytes INTEGER 0 (server default),
/// cookie OCTET STRING }.
pub(super) fn request_value(cookie: &[u8]) -> Vec<u8> {
    let integer = |inner| {
        Tag::Integer(Integer {
            inner,
            ..Default::default()
        })
    };
    let value = Tag::Sequence(Sequence {
        inner: vec![
            integer(0),
            integer(0),
            Tag::OctetString(OctetString {
                inner: cookie.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    });
    let mut out = BytesMut::with_capacity(cookie.len() + 16);
    // Writing into memory cannot fail; an error here could only come from a broken encoder,
    // and an empty value is then refused by the server rather than crashing pcsync.
    let _ = write::encode_into(&mut out, value.into_structure());
    out.to_vec()
}

/// `(moreResults, cookie)` from the response value SEQUENCE { moreResults INTEGER, unused
/// INTEGER, cookie OCTET STRING }; `None` when it is not that.
pub(super) fn parse_response(value: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (_, tag) = parse_tag(value).ok()?;
    let mut parts = tag.expect_constructed()?.into_iter();
    let integer = |t: StructureTag| {
        t.match_class(TagClass::Universal)
            .and_then(|t| t.match_id(Types::Integer as u64))
            .and_then(StructureTag::expect_primitive)
    };
    let more = integer(parts.next()?)?;
    let (_, more) = parse_uint(&more).ok()?;
    integer(parts.next()?)?;
    let cookie = parts
        .next()?
        .match_class(TagClass::Universal)
        .and_then(|t| t.match_id(Types::OctetString as u64))
        .and_then(StructureTag::expect_primitive)?;
    Some((more != 0, cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_is_the_probe_and_long_cookies_get_long_lengths() {
        assert_eq!(
            request_value(b""),
            [0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00]
        );
        let cookie = vec![0xab; 300];
        let v = request_value(&cookie);
        // 30 82 01 36 | 02 01 00 02 01 00 | 04 82 01 2c | cookie: 6 + 4 + 300 = 0x136.
        assert_eq!(&v[..4], &[0x30, 0x82, 0x01, 0x36]);
        assert_eq!(&v[4..10], &[0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
        assert_eq!(&v[10..14], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(&v[14..], &cookie[..]);
        assert_eq!(v.len() - 4, 0x136);
    }

    #[test]
    fn responses_parse_and_garbage_does_not_panic() {
        // SEQUENCE { 1, 0, "MSDS" }
        let v = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x04, 0x04, b'M', b'S', b'D', b'S',
        ];
        assert_eq!(parse_response(&v), Some((true, b"MSDS".to_vec())));
        let mut done = v;
        done[4] = 0;
        assert_eq!(parse_response(&done), Some((false, b"MSDS".to_vec())));
        for garbage in [
            &[][..],
            &[0x30],
            &[0x30, 0x02, 0x02, 0x01],
            &[0x04, 0x00],
            &v[..9],
        ] {
            assert_eq!(parse_response(garbage), None, "{garbage:?}");
        }
    }
}
