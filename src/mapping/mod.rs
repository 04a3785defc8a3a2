//! The SIP URI → pool FQDN table the redirector serves.
//!
//! - [`table`]: the immutable, validated [`table::MappingTable`].
//! - [`store`]: the published table (arc-swap) and its version numbers.
//! - [`build`]: building a table from the directory's endpoint contacts, with findings.
//! - [`cache`]: the last-known-good copy in `state.dir` (temp file, fsync, rename).
//! - [`refresh`]: one refresh: build, guard against a suspicious empty result, publish, save.

pub(crate) mod build;
pub(crate) mod cache;
pub(crate) mod refresh;
pub(crate) mod store;
pub mod table;

/// Settings for unit tests: two pools, no bind, `state.dir` as given.
#[cfg(test)]
pub(crate) fn test_settings(state_dir: &std::path::Path) -> crate::config::Settings {
    let text = format!(
        r#"
[directory]
url = "ldap://127.0.0.1:389"
base_dn = "dc=contoso,dc=com"
[directory.layout]
endpoint_container = "cn=Application Contacts,cn=RTC Service,cn=Services,cn=Configuration,dc=contoso,dc=com"
[[pools]]
fqdn = "pcpool1.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:2,CN=Pools,DC=contoso,DC=com"
[[pools]]
fqdn = "pcpool2.contoso.com"
home_server_dn = "CN=Lc Services,CN=Microsoft,CN=1:3,CN=Pools,DC=contoso,DC=com"
[state]
dir = "{}"
"#,
        state_dir.display()
    );
    match crate::config::from_toml_str(&text, "test.toml", Some(Default::default())) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}
