//! One bounds-checked cursor over binary values from outside (keytabs, AD's replication blobs):
//! every read past the end is an error naming the byte, never a panic.

/// Byte order of a multi-byte read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Big,
    Little,
}

/// A cursor over `bytes`.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Where the next read starts.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// Whether every byte has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// Moves to `at`, which must lie within the bytes (or just past the last).
    pub(crate) fn seek(&mut self, at: usize) -> Result<(), String> {
        if at > self.bytes.len() {
            return Err(format!(
                "offset {at} past the end ({} bytes)",
                self.bytes.len()
            ));
        }
        self.at = at;
        Ok(())
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} of {}", self.at, self.bytes.len()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self, order: Order) -> Result<u16, String> {
        let b = self.array::<2>()?;
        Ok(match order {
            Order::Big => u16::from_be_bytes(b),
            Order::Little => u16::from_le_bytes(b),
        })
    }

    pub(crate) fn u32(&mut self, order: Order) -> Result<u32, String> {
        let b = self.array::<4>()?;
        Ok(match order {
            Order::Big => u32::from_be_bytes(b),
            Order::Little => u32::from_le_bytes(b),
        })
    }

    pub(crate) fn u64(&mut self, order: Order) -> Result<u64, String> {
        let b = self.array::<8>()?;
        Ok(match order {
            Order::Big => u64::from_be_bytes(b),
            Order::Little => u64::from_le_bytes(b),
        })
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_either_order_and_refuses_to_run_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.u16(Order::Big).unwrap(), 0x0102);
        assert_eq!(r.u16(Order::Little).unwrap(), 0x0403);
        assert_eq!(r.position(), 4);
        assert_eq!(
            r.u32(Order::Little).unwrap_err(),
            "truncated at byte 4 of 7"
        );
        assert_eq!(r.take(3).unwrap(), [5, 6, 7]);
        assert!(r.is_done());
        assert!(r.seek(8).is_err());
        r.seek(0).unwrap();
        assert_eq!(r.u8().unwrap(), 1);
        assert!(Reader::new(&[]).take(usize::MAX).is_err());
    }
}
