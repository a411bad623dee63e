//! The one harness of the xen-sansio toolstack machines.
//!
//! The toolstack (L2) machines speak operations ([`xsio_ops`]), never bytes; something has
//! to execute those operations, route the answers back, and keep time. This crate is that
//! something, once, for every driver: the simulator (`xsio-sim`), the model checkers, benches
//! and fuzz targets run it with virtual time (quinn's `Pair`, generalised), and `xsio-io-std`
//! runs it against real daemons with the real clock. It does no I/O itself.
//!
//! - [`Harness`]: the machines ([`Actor`]s), each on a xenstore connection; the requests
//!   they issued, waiting to be executed; the answers and watch events waiting to be
//!   delivered; a virtual clock. It knows nothing of how operations are executed, so a
//!   model checker can choose which queue moves next, and checks that every request is
//!   answered exactly once.
//! - [`xs`]: the one translation of xenstore operations onto the `xsio-xs-client` machine;
//!   [`qmp`]: that of QEMU's operations and answers, for the drivers on real QEMU.
//! - [`HostAnswers`]: the caller's answers to the host queries (a guest's state, its device
//!   model's liveness), the same in every driver on a real host.
//! - [`XenstoredStore`]: executes the xenstore operations on the real `xsio-xenstored` core
//!   through one `xsio-xs-client` machine per connection, bytes and all, in process.
//! - [`SimQemu`]: a QEMU in a box (QMP, fd sets, CD-ROM trays, faults on any request),
//!   and [`Timed`], a machine with the times of its completions, for the QEMU machines'
//!   tests.
//! - [`MemStore`]: a tiny xenstore (nodes and watches, no permissions) that executes at
//!   once: the store of the model checker, the benches and the property tests.
//! - [`Harness::drive`]: runs a harness against a [`Store`] until nothing moves, jumping
//!   the clock to the next deadline when only timers are left; [`Harness::settle`] stops
//!   instead of jumping.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use xsio_ops::{Op, Reply, Txn, TxnOp, XsOp};
//! use xsio_harness::{Harness, Record, XenstoredStore};
//! use xsio_xenbus::{StateWaiter, WaiterConfig, XenbusState};
//!
//! # #[allow(clippy::disallowed_methods)] // a doc example's epoch; all later times are virtual
//! let epoch = Instant::now();
//! let mut store = XenstoredStore::new(epoch);
//! let mut world: Harness<StateWaiter> = Harness::new(epoch);
//! let dom0 = store.connect_dom0(&mut world);
//!
//! // Wait for /demo/state to become Closed, then write it from outside.
//! let waiter = StateWaiter::new(
//!     WaiterConfig {
//!         path: "/demo/state".into(),
//!         wanted: vec![XenbusState::Closed],
//!         timeout: Duration::from_secs(10),
//!         token: "wait".into(),
//!     },
//!     world.now(),
//! );
//! let id = world.add(dom0, waiter);
//! world.drain(id);
//! world.settle(&mut store)?; // the watch is set, the waiter reads: still waiting
//! assert_eq!(world.actor(id).result(), None);
//! let write = Txn { only_if_exists: None, ops: vec![TxnOp::write("/demo/state", "6")] };
//! world.submit(dom0, Op::Xs(XsOp::Transaction(write)));
//! world.drive(&mut store)?;
//!
//! assert_eq!(world.actor(id).result(), Some(&Ok(XenbusState::Closed)));
//! let replies = world.take_log().into_iter().filter(|r| matches!(r, Record::Reply { .. }));
//! assert!(replies.count() >= 3); // watch, reads, the caller's transaction
//! # Ok::<(), xsio_harness::HarnessError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dm;
mod harness;
mod host;
pub mod host_answers;
mod mem;
pub mod qemu;
pub mod qmp;
mod store;
mod timers;
pub mod xs;

pub use harness::{Actor, ActorId, Conn, Harness, HarnessError, Owner, Record, Store};
pub use host::{DomainLocks, FixedHost};
pub use host_answers::HostAnswers;
pub use mem::{Executed, MemStore, MemWatch};
pub use qemu::{SimQemu, Timed};
pub use store::{MAX_OPS_PER_CONN, XenstoredStore};

/// What [`actors!`] expands to names; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use xsio_core;
    pub use xsio_ops;
}
