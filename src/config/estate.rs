//! The `[directory]` keys for real Active Directory estates: how pcsync authenticates
//! (`auth`, `[directory.kerberos]`), which server receives its writes (`write_server`), and the
//! Global Catalog of a forest with several domains (`global_catalog`).

use std::path::PathBuf;

use super::kerberos::{KerberosSettings, first_principal, require_host_name};
use super::reader::{Item, Section};
use super::settings::WriteServerChoice;
use super::{LdapScheme, LdapUrl};

/// What these keys resolve to.
pub(super) struct EstateKeys {
    pub(super) kerberos: Option<KerberosSettings>,
    pub(super) write_server: WriteServerChoice,
    pub(super) global_catalog: Option<LdapUrl>,
}

/// Reads `auth`, `[directory.kerberos]`, `write_server` and `global_catalog` from the
/// `[directory]` section `s`. `urls` are the parsed `url` values with their item, and
/// `simple_bind` says whether `bind_dn` or a password source is set.
pub(super) fn estate_keys(
    s: &mut Section<'_>,
    urls: Option<&(Vec<LdapUrl>, Item)>,
    simple_bind: bool,
    starttls: bool,
    allow_insecure: bool,
) -> EstateKeys {
    let gssapi = auth_is_gssapi(s);
    let kerberos = kerberos_keys(s, urls, gssapi, simple_bind);
    let write_server = write_server_choice(s);
    let global_catalog = global_catalog_url(s, gssapi, simple_bind && !starttls && !allow_insecure);
    EstateKeys {
        kerberos,
        write_server,
        global_catalog,
    }
}

/// `auth`: `"simple"` (the default) or `"gssapi"`.
fn auth_is_gssapi(s: &mut Section<'_>) -> bool {
    let issues = s.issues();
    match s.string("auth") {
        None => false,
        Some((text, item)) => match text.as_str() {
            "simple" => false,
            "gssapi" => true,
            other => {
                item.bad(
                    issues,
                    format!("expected \"simple\" or \"gssapi\", found {other:?}"),
                );
                false
            }
        },
    }
}

/// `[directory.kerberos]`: required with `auth = "gssapi"` (a keytab, its principal read from
/// it unless given, and host names in every URL, since Kerberos names the service by host),
/// refused without it.
fn kerberos_keys(
    s: &mut Section<'_>,
    urls: Option<&(Vec<LdapUrl>, Item)>,
    gssapi: bool,
    simple_bind: bool,
) -> Option<KerberosSettings> {
    let issues = s.issues();
    let mut k = s.section("kerberos");
    let keytab = k.string("keytab");
    let principal = k.string("principal");
    k.finish();
    if !gssapi {
        for (_, item) in keytab.iter().chain(principal.iter()) {
            item.bad(issues, "only used with auth = \"gssapi\"");
        }
        return None;
    }
    if simple_bind {
        issues.push(
            "directory.bind_dn",
            issues.file_origin(),
            "auth = \"gssapi\" binds with the keytab: remove bind_dn and the password source",
        );
    }
    if let Some((urls, item)) = urls {
        for url in urls {
            if let Err(e) = require_host_name(url) {
                item.bad(issues, e);
            }
        }
    }
    let Some((path, item)) = keytab else {
        issues.push(
            "directory.kerberos.keytab",
            issues.file_origin(),
            "required with auth = \"gssapi\": the keytab of the service account (or gMSA)",
        );
        return None;
    };
    let path = absolute(&path);
    let principal = match principal {
        _ if !path.is_file() => Err(format!("{} does not exist", path.display())),
        Some((p, _)) => Ok(p),
        None => first_principal(&path),
    };
    match principal {
        Ok(principal) => Some(KerberosSettings {
            keytab: path,
            principal,
        }),
        Err(e) => {
            item.bad(issues, e);
            None
        }
    }
}

/// `write_server`: `"pdc"` (the PDC emulator, the default) or `"first"` (the first URL).
fn write_server_choice(s: &mut Section<'_>) -> WriteServerChoice {
    let issues = s.issues();
    match s.string("write_server") {
        None => WriteServerChoice::Pdc,
        Some((text, item)) => match text.as_str() {
            "pdc" => WriteServerChoice::Pdc,
            "first" => WriteServerChoice::First,
            other => {
                item.bad(
                    issues,
                    format!("expected \"pdc\" or \"first\", found {other:?}"),
                );
                WriteServerChoice::Pdc
            }
        },
    }
}

/// `global_catalog`: an LDAP URL, with a host name under Kerberos; refused over plain LDAP to
/// a remote host when a password would cross in clear text (`clear_password`).
fn global_catalog_url(s: &mut Section<'_>, gssapi: bool, clear_password: bool) -> Option<LdapUrl> {
    let issues = s.issues();
    let (text, item) = s.string("global_catalog")?;
    let url = match LdapUrl::parse(text.trim()) {
        Ok(url) => url,
        Err(e) => {
            item.bad(issues, e);
            return None;
        }
    };
    if gssapi && let Err(e) = require_host_name(&url) {
        item.bad(issues, e);
        return None;
    }
    if clear_password && url.scheme == LdapScheme::Ldap && !url.is_loopback() {
        item.bad(
            issues,
            format!(
                "{url} would send the bind password in clear text; use ldaps:// (port 3269) \
                 or set starttls = true (port 3268)"
            ),
        );
        return None;
    }
    Some(url)
}

/// `path` made absolute against the working directory (Kerberos is handed it through the
/// environment, so it must not depend on where it is read).
fn absolute(path: &str) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::super::WriteServerChoice;
    use super::super::{ConfigError, Settings};

    /// A directory section with `extra` keys; `[directory.layout]` and the rest follow.
    fn config(directory: &str, after: &str) -> String {
        format!(
            r#"
[directory]
base_dn = "DC=contoso,DC=com"
{directory}
{after}
[directory.layout]
endpoint_container = "CN=Application Contacts,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"

[[pools]]
fqdn = "pcpool.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,CN=RTC Service,CN=Services,CN=Configuration,DC=contoso,DC=com"

[[migrations]]
well_known_uri = "sip:ocschat@contoso.com"
target_pool = "pcpool.contoso.com"
"#
        )
    }

    fn load(text: &str) -> Result<Settings, ConfigError> {
        super::super::tests::load(text, &[])
    }

    fn errors(text: &str) -> Vec<String> {
        super::super::tests::errors(text, &[])
    }

    /// A keytab holding one key of `svc-pcsync@CONTOSO.COM`.
    fn keytab(dir: &std::path::Path) -> String {
        let mut entry = Vec::new();
        entry.extend(1u16.to_be_bytes());
        for part in ["CONTOSO.COM", "svc-pcsync"] {
            entry.extend((part.len() as u16).to_be_bytes());
            entry.extend(part.as_bytes());
        }
        entry.extend([0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 18, 0, 1, 7]);
        let mut bytes = vec![5, 2];
        bytes.extend((entry.len() as i32).to_be_bytes());
        bytes.extend(entry);
        let path = dir.join("pcsync.keytab");
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    #[test]
    fn gssapi_takes_the_keytabs_first_principal_unless_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let kt = keytab(dir.path());
        let s = load(&config(
            "url = [\"ldaps://dc2.contoso.com\", \"ldap://dc1.contoso.com\"]\nauth = \"gssapi\"",
            &format!("[directory.kerberos]\nkeytab = \"{kt}\"\n"),
        ))
        .unwrap();
        let k = s.directory.kerberos.unwrap();
        assert_eq!(k.principal, "svc-pcsync@CONTOSO.COM");
        assert_eq!(k.keytab.display().to_string(), kt);
        assert!(s.directory.bind.is_none());
        assert_eq!(s.directory.write_server, WriteServerChoice::Pdc);

        let s = load(&config(
            "url = \"ldaps://dc1.contoso.com\"\nauth = \"gssapi\"\nwrite_server = \"first\"",
            &format!("[directory.kerberos]\nkeytab = \"{kt}\"\nprincipal = \"pcsync-gmsa$@CONTOSO.COM\"\n"),
        ))
        .unwrap();
        assert_eq!(
            s.directory.kerberos.unwrap().principal,
            "pcsync-gmsa$@CONTOSO.COM"
        );
        assert_eq!(s.directory.write_server, WriteServerChoice::First);
    }

    #[test]
    fn kerberos_mistakes_are_one_line_each_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let kt = keytab(dir.path());
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret").unwrap();
        let kerberos = format!("[directory.kerberos]\nkeytab = \"{kt}\"\n");

        assert_eq!(
            errors(&config(
                "url = \"ldaps://127.0.0.2:636\"\nauth = \"gssapi\"",
                &kerberos
            )),
            [
                "pcsync.toml: directory.url: ldaps://127.0.0.2:636: Kerberos needs the server's DNS \
              name, not an IP address (its service principal is ldap/<DNS name>); name the DC, \
              e.g. ldaps://dc1.contoso.com:636"
            ]
        );
        assert_eq!(
            errors(&config(
                "url = \"ldaps://dc1.contoso.com\"\nauth = \"gssapi\"",
                ""
            )),
            [
                "pcsync.toml: directory.kerberos.keytab: required with auth = \"gssapi\": the \
              keytab of the service account (or gMSA)"
            ]
        );
        let missing = config(
            "url = \"ldaps://dc1.contoso.com\"\nauth = \"gssapi\"",
            "[directory.kerberos]\nkeytab = \"/nonexistent/pcsync.keytab\"\n",
        );
        assert_eq!(
            errors(&missing),
            ["pcsync.toml: directory.kerberos.keytab: /nonexistent/pcsync.keytab does not exist"]
        );
        let both = config(
            &format!(
                "url = \"ldaps://dc1.contoso.com\"\nauth = \"gssapi\"\nbind_dn = \"CN=x,DC=contoso,DC=com\"\nbind_password_file = \"{}\"",
                pw.display()
            ),
            &kerberos,
        );
        assert_eq!(
            errors(&both),
            [
                "pcsync.toml: directory.bind_dn: auth = \"gssapi\" binds with the keytab: remove \
              bind_dn and the password source"
            ]
        );
        assert_eq!(
            errors(&config(
                "url = \"ldaps://dc1.contoso.com\"\nauth = \"kerberos\"",
                ""
            )),
            ["pcsync.toml: directory.auth: expected \"simple\" or \"gssapi\", found \"kerberos\""]
        );
        assert_eq!(
            errors(&config("url = \"ldaps://dc1.contoso.com\"", &kerberos)),
            ["pcsync.toml: directory.kerberos.keytab: only used with auth = \"gssapi\""]
        );
        assert_eq!(
            errors(&config(
                "url = \"ldaps://dc1.contoso.com\"\nwrite_server = \"dc1\"",
                ""
            )),
            ["pcsync.toml: directory.write_server: expected \"pdc\" or \"first\", found \"dc1\""]
        );
        let e = errors(&config(
            "url = \"ldaps://dc1.contoso.com\"\nauth = \"gssapi\"",
            "[directory.kerberos]\nkeytab = \"/\"\nkeytabs = 1\n",
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(
                "pcsync.toml: directory.kerberos.keytabs: unknown key (did you mean `keytab`?)"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_global_catalog_is_an_ldap_url_kept_off_clear_text_binds() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret").unwrap();
        let simple = format!(
            "url = \"ldaps://dc1.contoso.com\"\nbind_dn = \"CN=x,DC=contoso,DC=com\"\nbind_password_file = \"{}\"",
            pw.display()
        );
        let s = load(&config(
            &format!("{simple}\nglobal_catalog = \"ldaps://gc.contoso.com:3269\""),
            "",
        ))
        .unwrap();
        assert_eq!(
            s.directory.global_catalog.unwrap().to_string(),
            "ldaps://gc.contoso.com:3269"
        );
        assert_eq!(
            errors(&config(
                &format!("{simple}\nglobal_catalog = \"ldap://gc.contoso.com:3268\""),
                ""
            )),
            [
                "pcsync.toml: directory.global_catalog: ldap://gc.contoso.com:3268 would send the \
              bind password in clear text; use ldaps:// (port 3269) or set starttls = true (port \
              3268)"
            ]
        );
        assert!(
            load(&config(
                &format!(
                    "{simple}\nstarttls = true\nglobal_catalog = \"ldap://gc.contoso.com:3268\""
                ),
                ""
            ))
            .is_ok()
        );
    }
}
