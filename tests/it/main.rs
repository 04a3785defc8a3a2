//! The one integration-test binary: every module here runs against real servers
//! started by `common`, on free loopback ports, in a temp dir per test; except the Samba AD DC,
//! whose ports are fixed, so it is started once per run and shared (`common::samba`).

// Test code may panic on a broken fixture: that is how a test fails. clippy's
// allow-unwrap-in-tests covers #[test] functions only, not the shared helpers here.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test binary exports nothing: its helpers are `pub` only to be shared between its modules.
#![allow(unreachable_pub)]

mod ad;
mod ad_live;
mod ad_multi;
mod ad_multi_domain;
mod ad_reconcile;
mod architecture;
mod audit;
mod cli;
mod common;
mod daemon;
mod demo;
mod directory;
mod faults;
mod golden;
mod hostile;
mod json_schema;
mod packaging;
mod reconcile;
mod restore;
mod scenario;
mod schema;
mod security;
mod sip;
mod sip_limits;
mod swap_safety;
