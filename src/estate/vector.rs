//! Active Directory's replication bookkeeping, decoded: the up-to-dateness vector a DC keeps
//! per naming context (`replUpToDateVector`), a little-endian NDR blob (MS-DRSR). Every read
//! here is bounds-checked, so a damaged or unexpected value is an error, never a panic.

use crate::blob::{Order, Reader};
use crate::model::Guid;

/// One entry of an up-to-dateness vector: the DC holds every change that the DC with this
/// `invocation_id` originated up to `highest_usn`, in this naming context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) invocation_id: Guid,
    pub(crate) highest_usn: u64,
}

/// The cursors of a `replUpToDateVector` value (`replUpToDateVectorBlob`, version 1 or 2).
pub(crate) fn up_to_dateness(blob: &[u8]) -> Result<Vec<Cursor>, String> {
    let mut r = Reader::new(blob);
    let version = r.u32(Order::Little)?;
    // Each cursor: the source's invocationId, its highest USN held, and in version 2 the
    // time of the last successful sync (8 bytes).
    let extra = match version {
        1 => 0,
        2 => 8,
        v => return Err(format!("replUpToDateVector version {v}, expected 1 or 2")),
    };
    r.skip(4)?;
    let count = r.u32(Order::Little)? as usize;
    r.skip(4)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let invocation_id = Guid(r.array::<16>()?);
        let highest_usn = r.u64(Order::Little)?;
        r.skip(extra)?;
        out.push(Cursor {
            invocation_id,
            highest_usn,
        });
    }
    Ok(out)
}

/// The highest USN of changes originated by `invocation_id` that `cursors` say are held.
pub(crate) fn held_up_to(cursors: &[Cursor], invocation_id: &Guid) -> Option<u64> {
    cursors
        .iter()
        .filter(|c| &c.invocation_id == invocation_id)
        .map(|c| c.highest_usn)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DC1: Guid = Guid([
        0x14, 0x69, 0xd9, 0xd6, 0x92, 0xc6, 0x8e, 0x45, 0xa7, 0x66, 0x92, 0xac, 0x2d, 0xf7, 0xf5,
        0x37,
    ]);
    const DC2: Guid = Guid([0x22; 16]);

    fn utd(version: u32, cursors: &[(Guid, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(version.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((cursors.len() as u32).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        for (guid, usn) in cursors {
            b.extend(guid.0);
            b.extend(usn.to_le_bytes());
            if version == 2 {
                b.extend(0x01dc_0000_0000_0000u64.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn up_to_dateness_vectors_of_both_versions_decode() {
        for version in [1, 2] {
            let blob = utd(version, &[(DC1, 4711), (DC2, 12)]);
            let cursors = up_to_dateness(&blob).unwrap();
            assert_eq!(held_up_to(&cursors, &DC1), Some(4711));
            assert_eq!(held_up_to(&cursors, &DC2), Some(12));
            assert_eq!(held_up_to(&cursors, &Guid([0; 16])), None);
        }
        assert_eq!(up_to_dateness(&utd(2, &[])).unwrap(), []);
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let blob = utd(2, &[(DC1, 4711), (DC2, 12)]);
        for cut in 0..blob.len() {
            assert!(up_to_dateness(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            up_to_dateness(&utd(3, &[]))
                .unwrap_err()
                .contains("version 3")
        );
        let mut huge = utd(2, &[]);
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(up_to_dateness(&huge).is_err());
    }
}
