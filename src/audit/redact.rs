//! Secrets never enter the audit log: password hashes, Kerberos keys, trust secrets, managed
//! and LAPS passwords, BitLocker recovery data and the like are dropped from every entry a
//! record carries (`before`, `after`) by the sink, before the line is written, and again from
//! what `audit show`, `audit list|export --format json` and `audit export --format ldif` print,
//! so a log written by an earlier version does not show them either.
//!
//! pcsync reads a user's before-image with `*`, so what it gets is whatever the bind account may
//! read: an OpenLDAP rootdn reads `userPassword` hashes, a Samba DC's administrator or an
//! account with replication rights may read `unicodePwd` and its kin. Restore never needs them:
//! Active Directory refuses them on an add (the hash attributes are system-only, and
//! `unicodePwd` takes only a new cleartext password), and a hash written back from a log would
//! bring back a password that was since changed. A user pcsync re-creates from a before-image
//! therefore has no password; set one if the account must bind.

use crate::model::{AttrValues, Entry};

use super::Record;

/// Attributes whose values are secrets (case-insensitive names), by where they come from.
///
/// - Samba's DSDB_SECRET_ATTRIBUTES, the attributes AD treats as secret: the NT and LM hashes
///   and their histories, Kerberos and cleartext supplemental credentials, trust and LSA
///   secrets (`currentValue`, `priorValue`, `initialAuth*`, `trustAuth*`).
/// - Other AD secrets: the gMSA password blob, the script password, legacy and Windows LAPS
///   passwords, BitLocker recovery data, the TPM owner password, credential roaming blobs.
/// - LDAP and UNIX password storage: `userPassword` (RFC 4519, the hashes an OpenLDAP rootdn
///   reads), `authPassword` (RFC 3112), ppolicy's `pwdHistory`, AD's and Samba's UNIX and NT
///   hashes, Kerberos principal keys (MIT and Heimdal schemas), and PKCS #12 private keys.
pub(crate) const SECRET_ATTRIBUTES: &[&str] = &[
    // Samba DSDB_SECRET_ATTRIBUTES
    "currentValue",
    "dBCSPwd",
    "initialAuthIncoming",
    "initialAuthOutgoing",
    "lmPwdHistory",
    "ntPwdHistory",
    "priorValue",
    "supplementalCredentials",
    "trustAuthIncoming",
    "trustAuthOutgoing",
    "unicodePwd",
    // Other Active Directory secrets
    "clearTextPassword",
    "msDS-ManagedPassword",
    "msDS-ExecuteScriptPassword",
    "ms-Mcs-AdmPwd",
    "msLAPS-Password",
    "msLAPS-EncryptedPassword",
    "msLAPS-EncryptedPasswordHistory",
    "msLAPS-EncryptedDSRMPassword",
    "msLAPS-EncryptedDSRMPasswordHistory",
    "msFVE-RecoveryPassword",
    "msFVE-KeyPackage",
    "msTPM-OwnerInformation",
    "msPKIAccountCredentials",
    "msPKIDPAPIMasterKeys",
    "msSFU30Password",
    "unixUserPassword",
    // LDAP and UNIX password storage
    "userPassword",
    "authPassword",
    "pwdHistory",
    "sambaNTPassword",
    "sambaLMPassword",
    "sambaPasswordHistory",
    "krbPrincipalKey",
    "krb5Key",
    "userPKCS12",
];

/// Whether `name` (any case) is a secret attribute.
pub(crate) fn is_secret(name: &str) -> bool {
    SECRET_ATTRIBUTES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Drops the secret attributes of `attributes`; true when one was there.
fn drop_secrets(attributes: &mut Vec<AttrValues>) -> bool {
    let before = attributes.len();
    attributes.retain(|a| !is_secret(a.name.as_str()));
    attributes.len() != before
}

/// Drops the secret attributes of `entry`; true when one was there.
pub(crate) fn entry(entry: &mut Entry) -> bool {
    drop_secrets(&mut entry.attributes)
}

/// Whether a record carries a secret attribute (a log written before pcsync dropped them).
pub(crate) fn holds_secrets(record: &Record) -> bool {
    [&record.before, &record.after]
        .into_iter()
        .flatten()
        .any(|e| e.attributes.iter().any(|a| is_secret(a.name.as_str())))
}

/// Drops the secret attributes of the entries a record carries (a log written before pcsync
/// dropped them); true when one was there, so the caller knows the line changed.
pub(crate) fn record(record: &mut Record) -> bool {
    let mut dropped = false;
    for image in [&mut record.before, &mut record.after]
        .into_iter()
        .flatten()
    {
        dropped |= entry(image);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_dropped_in_any_case_and_everything_else_is_kept() {
        let mut image = Entry {
            dn: crate::model::Dn::parse("cn=OCSChat,dc=contoso,dc=com").unwrap(),
            attributes: vec![
                AttrValues::text("cn", &["OCSChat"]),
                AttrValues::text("userpassword", &["{SSHA}abc"]),
                AttrValues::text("unicodePwd", &["x"]),
                AttrValues::text("msRTCSIP-PrimaryUserAddress", &["sip:ocschat@contoso.com"]),
                AttrValues::text("SupplementalCredentials", &["y"]),
            ],
        };
        assert!(entry(&mut image));
        let names: Vec<&str> = image.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["cn", "msRTCSIP-PrimaryUserAddress"]);
        assert!(!entry(&mut image), "nothing left to drop");
        assert!(is_secret("msDS-ManagedPassword"));
        assert!(!is_secret("pwdLastSet"), "a time stamp, not a secret");
    }
}
