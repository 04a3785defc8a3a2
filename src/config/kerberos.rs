//! `[directory.kerberos]`: whose keys pcsync binds with, from which keytab, checked when the
//! configuration loads: the keytab's first principal (a bounds-checked reader of the MIT keytab
//! format), and URLs that name each server (Kerberos' service principal is `ldap/<DNS name>`).

use std::path::{Path, PathBuf};

use super::{LdapScheme, LdapUrl};
use crate::blob::{Order, Reader};

/// `directory.auth = "gssapi"`: whose keys, from which keytab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosSettings {
    /// `[directory.kerberos] keytab`, absolute.
    pub keytab: PathBuf,
    /// `[directory.kerberos] principal`, or the keytab's first principal.
    pub principal: String,
}

/// Refuses a URL whose host is an IP address: the service principal is `ldap/<DNS name>`.
pub(crate) fn require_host_name(url: &LdapUrl) -> Result<(), String> {
    if url.host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{url}: Kerberos needs the server's DNS name, not an IP address (its service \
             principal is ldap/<DNS name>); name the DC, e.g. {}://dc1.contoso.com:{}",
            match url.scheme {
                LdapScheme::Ldap => "ldap",
                LdapScheme::Ldaps => "ldaps",
            },
            url.port
        ));
    }
    Ok(())
}

/// The first principal in the keytab at `path` (`name/instance@REALM`).
pub(crate) fn first_principal(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    keytab_principals(&bytes)
        .map_err(|e| format!("{}: not a keytab: {e}", path.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: the keytab holds no keys", path.display()))
}

/// Every principal of a keytab, in file order, each once. The MIT format: `0x05`, a version
/// (1: native byte order with the realm counted among the components; 2: big-endian), then
/// entries, each a signed 32-bit length (negative: a hole to skip) and the entry.
pub(crate) fn keytab_principals(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut r = Reader::new(bytes);
    if r.u8()? != 5 {
        return Err("it does not start with 0x05".to_string());
    }
    let version = r.u8()?;
    // Version 1 is in the writer's byte order; every platform we run on is little-endian.
    let order = match version {
        1 => Order::Little,
        2 => Order::Big,
        v => return Err(format!("unknown keytab version {v}")),
    };
    let mut principals: Vec<String> = Vec::new();
    while !r.is_done() {
        let size = r.u32(order)? as i32;
        if size < 0 {
            r.skip(size.unsigned_abs() as usize)?;
            continue;
        }
        let end = r.position() + size as usize;
        let mut count = r.u16(order)? as usize;
        if version == 1 {
            count = count.saturating_sub(1);
        }
        let realm = counted(&mut r, order)?;
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            parts.push(counted(&mut r, order)?);
        }
        let principal = format!("{}@{realm}", parts.join("/"));
        if !principals.contains(&principal) {
            principals.push(principal);
        }
        r.seek(end)
            .map_err(|_| "an entry runs past the end of the file".to_string())?;
    }
    Ok(principals)
}

/// A name component: a 16-bit length and that many bytes of UTF-8.
fn counted(r: &mut Reader<'_>, order: Order) -> Result<String, String> {
    let len = r.u16(order)? as usize;
    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 keytab entry for `parts@realm` with one dummy key.
    fn entry(realm: &str, parts: &[&str]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend((parts.len() as u16).to_be_bytes());
        for s in std::iter::once(&realm).chain(parts) {
            e.extend((s.len() as u16).to_be_bytes());
            e.extend(s.as_bytes());
        }
        e.extend(1u32.to_be_bytes()); // name type
        e.extend(0u32.to_be_bytes()); // timestamp
        e.push(2); // kvno
        e.extend(18u16.to_be_bytes()); // aes256
        e.extend(4u16.to_be_bytes());
        e.extend([1, 2, 3, 4]);
        let mut framed = (e.len() as i32).to_be_bytes().to_vec();
        framed.extend(e);
        framed
    }

    #[test]
    fn the_keytab_principals_are_read_in_order_once_each() {
        let mut keytab = vec![5, 2];
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        // A hole left by a removed entry.
        keytab.extend((-3i32).to_be_bytes());
        keytab.extend([0, 0, 0]);
        keytab.extend(entry("CONTOSO.COM", &["HTTP", "web.contoso.com"]));
        assert_eq!(
            keytab_principals(&keytab).unwrap(),
            ["svc-pcsync@CONTOSO.COM", "HTTP/web.contoso.com@CONTOSO.COM"]
        );
    }

    #[test]
    fn a_damaged_keytab_is_an_error_not_a_panic() {
        assert!(keytab_principals(b"").is_err());
        assert!(
            keytab_principals(b"\x05\x09")
                .unwrap_err()
                .contains("version 9")
        );
        let mut keytab = vec![5, 2];
        keytab.extend(entry("CONTOSO.COM", &["svc-pcsync"]));
        for cut in 3..keytab.len() {
            // Every truncation either parses the entries before it or says where it broke.
            let _ = keytab_principals(&keytab[..cut]);
        }
        keytab[5] = 0xff; // a length far past the end
        assert!(keytab_principals(&keytab).is_err());
        assert_eq!(keytab_principals(&[5, 2]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_ip_address_is_refused_naming_the_fix() {
        let url = LdapUrl::parse("ldaps://127.0.0.2:636").unwrap();
        assert_eq!(
            require_host_name(&url).unwrap_err(),
            "ldaps://127.0.0.2:636: Kerberos needs the server's DNS name, not an IP address \
             (its service principal is ldap/<DNS name>); name the DC, e.g. \
             ldaps://dc1.contoso.com:636"
        );
        assert!(require_host_name(&LdapUrl::parse("ldap://[::1]").unwrap()).is_err());
        assert!(require_host_name(&LdapUrl::parse("ldap://dc2.contoso.com").unwrap()).is_ok());
    }
}
