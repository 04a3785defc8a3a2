//! The optional keyed chain: `[audit] key_file` holds HMAC-SHA-256 keys, so that a rewritten
//! log cannot be re-hashed into a valid one by someone who can write the log but not read the
//! key.
//!
//! With a key, every record carries `mac` = HMAC(key, "pcsync audit record", seq, prev), and
//! the anchor carries HMAC(key, "pcsync audit anchor", seq, head). `prev` is the SHA-256 of the
//! previous line, so a record's MAC vouches for the whole previous record, and the anchor's
//! MAC for the last one: changing any record and re-hashing the chain needs the key. The two
//! labels keep a record's MAC from being replayed as an anchor's (which would let a truncated
//! log pass). A MAC is written `<key id>:<hex>`, the key id being the first 8 hex digits of
//! the key's SHA-256, so a verifier with several keys knows which one to use.
//!
//! The key file: one key per line, base64 of at least 32 random bytes (`openssl rand -base64
//! 32`); the first line signs, every line verifies (rotation: put a new key on the first line
//! and keep the old ones below it). Blank lines and `#` comments are ignored. The file must be
//! private (no group or other permissions); a key is never printed or logged.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::Error;
use crate::util::hex;

/// Fewest key bytes accepted: HMAC-SHA-256 is as strong as a 256-bit key.
const MIN_KEY_BYTES: usize = 32;

/// What a MAC is computed over: a record's `(seq, prev)` or the anchor's `(seq, head)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signed {
    Record,
    Anchor,
}

impl Signed {
    fn label(self) -> &'static [u8] {
        match self {
            Signed::Record => b"pcsync audit record\n",
            Signed::Anchor => b"pcsync audit anchor\n",
        }
    }
}

/// Why a MAC does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MacError {
    /// No `mac` where one is required.
    Missing,
    /// Not `<8 hex>:<64 hex>`.
    Malformed,
    /// Made with a key that is not in the key file.
    UnknownKey(String),
    /// Made with this key id, but over other contents: re-hashed without the key.
    Mismatch(String),
}

impl std::fmt::Display for MacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MacError::Missing => write!(f, "no `mac`, though the log is keyed"),
            MacError::Malformed => write!(f, "`mac` is not <key id>:<HMAC-SHA-256 hex>"),
            MacError::UnknownKey(id) => write!(
                f,
                "`mac` was made with key {id}, which is not in the key file (add the old key below the new one)"
            ),
            MacError::Mismatch(id) => write!(
                f,
                "`mac` does not match (key {id}): the chain was re-hashed without the key"
            ),
        }
    }
}

/// One key and its id.
struct Key {
    id: String,
    bytes: Vec<u8>,
}

/// The keys of `[audit] key_file`: the first signs, all verify. Never printed.
pub(crate) struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

impl Keyring {
    /// Reads the key file; an error names the file and what is wrong (never a key).
    pub(crate) fn load(path: &Path) -> Result<Keyring, Error> {
        let key_err = |reason: String| Error::Key {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| key_err(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_err(format!(
                "group or others may read it (mode {mode:o}); run `chmod 600 {}`",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
        let keys = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(n, l)| Key::parse(l).map_err(|why| key_err(format!("line {n}: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(key_err(
                "no key in it (one line of base64, e.g. from `openssl rand -base64 32`)".into(),
            ));
        }
        Ok(Keyring { keys })
    }

    /// A keyring of one key, for tests.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: &[u8]) -> Keyring {
        Keyring {
            keys: vec![Key::new(bytes.to_vec())],
        }
    }

    /// The id of the signing key.
    #[cfg(test)]
    pub(crate) fn signing_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or("")
    }

    /// `<key id>:<hex>` with the signing key.
    pub(crate) fn sign(&self, what: Signed, seq: u64, hash: &str) -> String {
        match self.keys.first() {
            Some(key) => format!("{}:{}", key.id, hex(&key.mac(what, seq, hash))),
            None => String::new(),
        }
    }

    /// Checks a MAC made by [`Keyring::sign`] with any key of the ring.
    pub(crate) fn check(
        &self,
        what: Signed,
        seq: u64,
        hash: &str,
        mac: Option<&str>,
    ) -> Result<(), MacError> {
        let mac = mac.ok_or(MacError::Missing)?;
        let (id, code) = mac.split_once(':').ok_or(MacError::Malformed)?;
        let well_formed = |s: &str, len| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !well_formed(id, 8) || !well_formed(code, 64) {
            return Err(MacError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| MacError::UnknownKey(id.to_string()))?;
        // A plain comparison: the verifier answers no one over a network, so there is no
        // timing oracle to protect.
        if hex(&key.mac(what, seq, hash)) == code {
            Ok(())
        } else {
            Err(MacError::Mismatch(id.to_string()))
        }
    }
}

impl Key {
    fn new(bytes: Vec<u8>) -> Key {
        let id = hex(&Sha256::digest(&bytes))[..8].to_string();
        Key { id, bytes }
    }

    fn parse(line: &str) -> Result<Key, String> {
        let bytes = BASE64
            .decode(line)
            .map_err(|_| "not base64 (e.g. from `openssl rand -base64 32`)".to_string())?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{} bytes; a key needs at least {MIN_KEY_BYTES}",
                bytes.len()
            ));
        }
        Ok(Key::new(bytes))
    }

    fn mac(&self, what: Signed, seq: u64, hash: &str) -> Vec<u8> {
        // HMAC takes a key of any length, so this cannot fail; the fallback is never used.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(what.label());
        mac.update(format!("{seq}\n{hash}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_with_its_key_only_and_records_and_anchors_differ() {
        let ring = Keyring::from_bytes(&[7; 32]);
        let mac = ring.sign(Signed::Record, 5, "ab");
        assert!(mac.starts_with(&format!("{}:", ring.signing_id())));
        assert_eq!(ring.check(Signed::Record, 5, "ab", Some(&mac)), Ok(()));
        let id = ring.signing_id().to_string();
        assert_eq!(
            ring.check(Signed::Record, 6, "ab", Some(&mac)),
            Err(MacError::Mismatch(id.clone()))
        );
        assert_eq!(
            ring.check(Signed::Anchor, 5, "ab", Some(&mac)),
            Err(MacError::Mismatch(id)),
            "a record's MAC is no anchor's"
        );
        let other = Keyring::from_bytes(&[8; 32]);
        assert!(matches!(
            other.check(Signed::Record, 5, "ab", Some(&mac)),
            Err(MacError::UnknownKey(_))
        ));
        assert_eq!(
            ring.check(Signed::Record, 5, "ab", None),
            Err(MacError::Missing)
        );
        assert_eq!(
            ring.check(Signed::Record, 5, "ab", Some("zz:00")),
            Err(MacError::Malformed)
        );
    }

    #[test]
    fn the_key_file_is_private_base64_and_long_enough_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let old = BASE64.encode([1u8; 32]);
        let new = BASE64.encode([2u8; 32]);
        write(&format!("{old}\n"), 0o644);
        let e = Keyring::load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        write(&format!("# audit key\n{old}\n"), 0o600);
        let old_ring = Keyring::load(&path).unwrap();
        let mac = old_ring.sign(Signed::Record, 1, "x");
        // Rotation: the new key signs, the old one still verifies.
        write(&format!("{new}\n{old}\n"), 0o600);
        let ring = Keyring::load(&path).unwrap();
        assert_ne!(ring.signing_id(), old_ring.signing_id());
        assert_eq!(ring.check(Signed::Record, 1, "x", Some(&mac)), Ok(()));
        write(&BASE64.encode([3u8; 16]), 0o600);
        let e = Keyring::load(&path).unwrap_err().to_string();
        assert!(e.contains("line 1: 16 bytes"), "{e}");
        assert!(!e.contains(&BASE64.encode([3u8; 16])), "never the key: {e}");
        write("not base64!\n", 0o600);
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not base64")
        );
        write("\n# nothing\n", 0o600);
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("no key")
        );
    }
}
