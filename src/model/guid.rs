//! A GUID as Active Directory stores it (`objectGUID`, `invocationId`, `schemaIDGUID`).

use std::fmt;

/// A GUID in AD's binary layout (the first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Guid(pub(crate) [u8; 16]);

impl Guid {
    /// The 16 bytes of an `objectGUID` or `invocationId` value.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Guid> {
        bytes.try_into().ok().map(Guid)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            g[8],
            g[9],
            g[10],
            g[11],
            g[12],
            g[13],
            g[14],
            g[15]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_in_ads_mixed_endian_form() {
        let g = Guid([
            0x14, 0x69, 0xd9, 0xd6, 0x92, 0xc6, 0x8e, 0x45, 0xa7, 0x66, 0x92, 0xac, 0x2d, 0xf7,
            0xf5, 0x37,
        ]);
        assert_eq!(g.to_string(), "d6d96914-c692-458e-a766-92ac2df7f537");
        assert_eq!(Guid::from_bytes(&[0; 15]), None);
    }
}
