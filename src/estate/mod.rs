//! The shape of a real directory estate: several DCs, one write server, replication between
//! them, and several domains in one forest.
//!
//! Writes are only coordinated while every writer uses the same DC: two compare-and-swaps from
//! the same old value, one on each DC, both succeed, and replication keeps the last. So every
//! write of a run, the writer lease's included, goes to one server ([`writer`]): by default the
//! PDC emulator, AD's own single-master role, found through `fSMORoleOwner`. Writes never fail
//! over; reads and the live watch may. After a swap, [`replication`] counts the DCs that
//! already hold it from their up-to-dateness vectors. [`forest`] maps objects to their domain
//! for Global Catalog deployments. The decisions ([`topology`], [`forest`], [`vector`]) are
//! pure functions over search results; only [`writer`] and [`replication`] do I/O.

pub(crate) mod check;
pub(crate) mod forest;
pub(crate) mod replication;
pub(crate) mod routed;
pub(crate) mod topology;
pub(crate) mod vector;
pub(crate) mod writer;

pub(crate) use replication::Replication;
pub(crate) use writer::WriteServer;

use crate::ldap;

/// Why the estate could not be worked out or the write server reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The write server did not answer; the run writes nothing (writes never fail over).
    #[error("write server {server} is unreachable: {source}; writes never fail over to another DC")]
    WriteServerDown {
        /// The server and why it is the write server.
        server: String,
        #[source]
        source: ldap::Error,
    },
    /// The PDC emulator could not be determined from the directory.
    #[error("cannot find the PDC emulator of {domain} on {url}: {reason}")]
    NoPdc {
        domain: String,
        url: String,
        reason: String,
    },
    /// Reading the directory failed.
    #[error(transparent)]
    Directory(#[from] ldap::Error),
}
