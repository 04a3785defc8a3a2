//! The desired state: the pools, the migrations, where endpoints live and how a well-known user
//! is retired.
//!
//! These types sit below `config`, which only parses into them, so that planning (and
//! everything it feeds: apply, audit, restore) never depends on how the configuration is read.
//! They hold no I/O and no defaults of their own: every value has been validated by `config`.

use chrono::{DateTime, Utc};

use crate::model::{Dn, SipUri};

/// `[directory.layout]`: which object classes mean what, and where endpoints go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub user_classes: Vec<String>,
    pub contact_classes: Vec<String>,
    pub endpoint_object_classes: Vec<String>,
    pub endpoint_container: Dn,
    pub owner_urn: String,
}

/// `[[pools]]`: a Persistent Chat pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub fqdn: String,
    pub home_server_dn: Dn,
}

/// `[[migrations]]`: one legacy Group Chat well-known user to swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub well_known_uri: SipUri,
    /// The FQDN of a configured pool (validated).
    pub target_pool: String,
    pub legacy_home_server_dn: Option<Dn>,
    pub not_before: Option<DateTime<Utc>>,
    /// `displayName` of the endpoint pcsync creates; `None` uses [`Migration::default_display_name`].
    pub display_name: Option<String>,
    /// Re-enable an existing endpoint contact an administrator disabled
    /// (`msRTCSIP-UserEnabled: FALSE`). Off by default: a disabled endpoint is the
    /// administrator's decision, reported as an `endpoint_disabled` finding and left alone.
    pub enable_endpoint: bool,
}

impl Migration {
    /// `Persistent Chat legacy endpoint (sip:ocschat@contoso.com)`.
    pub(crate) fn default_display_name(&self) -> String {
        format!("Persistent Chat legacy endpoint ({})", self.well_known_uri)
    }

    /// The configured display name, or the default.
    pub(crate) fn display_name(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| self.default_display_name())
    }
}

/// What happens to a retired well-known user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Retire {
    /// Delete the user object, as Microsoft's procedure says.
    Delete,
    /// Clear its msRTCSIP-* attributes (Disable-CsUser) and keep the account.
    Disable,
}

/// What planning reads of the desired state, borrowed from the validated settings
/// (`Settings::desired`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Desired<'a> {
    pub migrations: &'a [Migration],
    pub pools: &'a [Pool],
    pub layout: &'a Layout,
    pub retire: Retire,
    /// The directory is Active Directory (its root DSE says so), where an endpoint gets no `sn`:
    /// AD's `person` does not require it and Lync does not set it. Not configuration: the
    /// source being planned against decides it.
    pub active_directory: bool,
}

impl<'a> Desired<'a> {
    /// The pool with this FQDN (case-insensitive).
    pub(crate) fn pool(&self, fqdn: &str) -> Option<&'a Pool> {
        self.pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }
}
