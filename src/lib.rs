//! # pcsync
//!
//! Keeps legacy Group Chat clients working after a move to Lync Server 2013 / Skype for
//! Business Persistent Chat: finds leftover well-known Group Chat users in the directory, swaps
//! each for a legacy endpoint contact homed on the right pool, and serves the resulting
//! SIP URI → pool table from an embedded SIP redirect server.
//!
//! # Layout
//! - [`config`]: TOML + `PCSYNC__*` environment, validated into typed [`config::Settings`].
//! - [`model`]: case-insensitive [`model::SipUri`] and [`model::Dn`], and
//!   [`model::DirectoryObject`], independent of ldap3.
//! - [`ldap`]: the only module that talks to ldap3: connect, bind, paged streaming searches.
//! - [`estate`]: several DCs, one write server (the PDC emulator), replication counts, and the
//!   domains of a forest.
//! - [`inventory`]: one streamed scan over both places SIP objects live.
//! - [`plan`]: the pure planner (desired + observed + now -> plan) and its renderings.
//! - [`reconcile`]: one run (scan, plan, guards, audited apply), shared by `reconcile` and `run`.
//! - [`apply`]: executes a plan through the `DirectoryWriter` trait, journaled, with rollback
//!   and crash recovery; also `restore`.
//! - [`audit`]: the hash-chained JSON Lines audit log: writer with rotation, streaming
//!   verified reader, review (filters, runs, diffs), LDIF export.
//! - [`lock`]: the state-dir lock that keeps two reconciles on one host apart.
//! - [`private`]: state and audit files 0600, directories 0700, whatever the umask.
//! - [`mapping`]: the SIP URI → pool table: build, validate, publish (arc-swap), cache.
//! - [`sip`]: the embedded SIP redirect server (the only user of `rsipstack`).
//! - [`redirector`]: table + listeners + refresh worker, as one subsystem (`pcsync redirect`).
//! - [`schedule`]: cron trigger → one worker; [`shutdown`]: signals → cancellation.
//! - [`daemon`]: `pcsync run`: scheduled runs, live watch, redirector, HTTP health/metrics, lease.
//! - [`cli`]: clap definitions and the commands; the binary only calls [`cli::main`].
//! - [`clock`]: the wall clock, read only by the edges (cli, daemon, schedule).
//! - [`exit`]: the documented process exit codes; [`util`]: hex and serde variant names.

#![forbid(unsafe_code)]
// The documentation is built with --document-private-items (scripts/test.sh): the crate is a
// binary first, and the few items tests and fuzz targets reach are `pub` only for them, so their
// docs may link to the crate-private items around them.
#![allow(rustdoc::private_intra_doc_links)]

pub mod apply;
pub mod audit;
mod blob;
mod cli;
mod clock;
pub mod config;
mod daemon;
mod estate;
mod exit;
pub mod inventory;
pub mod ldap;
pub mod lock;
pub mod mapping;
pub mod model;
pub mod plan;
mod private;
mod progress;
pub mod reconcile;
mod redirector;
mod schedule;
mod shutdown;
pub mod sip;
mod util;

pub use cli::main;
