//! The SIP URI → pool FQDN table the redirector serves.
//!
//! - [`table`]: the immutable, validated [`table::MappingTable`].
//! - [`store`]: the published table (arc-swap) and its version numbers.
//! - [`build`]: building a table from the directory's endpoint contacts, with findings.
//! - [`cache`]: the last-known-good copy in `state.dir` (temp file, fsync, rename).
//! - [`refresh`]: one refresh: build, guard against a suspicious empty result, publish, save.

pub mod build;
pub mod cache;
pub mod refresh;
pub mod store;
pub mod table;
