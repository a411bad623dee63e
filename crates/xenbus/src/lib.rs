//! The xenbus frontend/backend state handshake as sans-IO machines.
//!
//! A paravirtual device has two xenstore directories: the backend's
//! (`/local/domain/<backend>/backend/<kind>/<guest>/<devid>`) and the frontend's
//! (`/local/domain/<guest>/device/<kind>/<devid>`). Each end announces its progress in its
//! `state` node ([`XenbusState`]) and watches the other's:
//!
//! ```text
//!   toolstack     both state=1 (Initialising), backend online=1        [DeviceAreas::create]
//!   backend       features, state=2 (InitWait)                          [Backend]
//!   frontend      ring-ref, event-channel, protocol, state=3            [Frontend]
//!   backend       reads the transport; sectors, info, sector-size, 4    [Backend]
//!   frontend      reads sectors, info, sector-size; state=4 (Connected) [Frontend]
//!   toolstack     online=0, backend state=5 (Closing)                   [xsio-device]
//!   frontend      state=6 (Closed); backend state=6                     [Frontend, Backend]
//!   toolstack     waits for backend 6, removes both directories         [xsio-device]
//! ```
//!
//! This crate provides each participant as a machine that does no I/O:
//!
//! - [`Backend`]: what QEMU's XenDevice and Linux blkback do.
//! - [`Frontend`]: what Linux blkfront does in the guest.
//! - [`StateWaiter`]: the toolstack's wait for a `state` value with a timeout (libxl's
//!   devstate wait).
//! - [`DeviceAreas`]: the directories, their permissions, and the toolstack's create
//!   transaction. The removal (the request, the wait, the hotplug step, the prune) is one
//!   algorithm in the workspace: `xsio-device`'s `DeviceOp`.
//! - [`block`]: the block device keys for QEMU's `xen-disk` and `xen-cdrom`.
//!
//! # Operations, not bytes
//!
//! The machines speak the toolstack vocabulary of [`xsio_ops`] ([`XsOp`]: read, watch,
//! unwatch, and a guarded transaction of writes, mkdirs, permission changes and removals)
//! and are told results ([`Reply`], [`OpError`]) and watch events. They never name a xenstore client type: a
//! driver connects them to one (io-std, a simulator, or another toolstack's own library).
//! Timers are the machines' `poll_timeout` / `handle_timeout`.
//!
//! [`XsOp`]: xsio_ops::XsOp
//! [`Reply`]: xsio_ops::Reply
//! [`OpError`]: xsio_ops::OpError
//!
//! The shape is the same as every machine in the workspace ([`xsio_core::Machine`], which
//! each machine here implements): `new(config, now)`, `handle_*(now, ..)`,
//! `poll_output()` drained until `None`, `poll_timeout()`. A driver need not write this
//! loop: `xsio-harness` runs any set of them against a store ([`XenbusMachine`] is the
//! three as one type).
//!
//! ```
//! use std::time::Instant;
//! use xsio_vbd::Vbd;
//! use xsio_xenbus::block::{BlockDevice, BlockKind, Mode};
//! use xsio_ops::{Answer, Op, Output, Reply, XsOp};
//! use xsio_xenbus::{Backend, XenbusState};
//!
//! # #[allow(clippy::disallowed_methods)] // a doc example's epoch
//! let now = Instant::now();
//! let disk = BlockDevice::new(BlockKind::Disk, Vbd::parse("xvda")?, "/srv/disk.img", Mode::ReadWrite);
//! let mut backend = Backend::new(disk.backend_config(disk.areas(0, 1)), now);
//!
//! // A driver executes every request and answers it. Here: pretend each succeeds.
//! while let Some(output) = backend.poll_output() {
//!     match output {
//!         Output::Request(request) => {
//!             let reply = match request.op {
//!                 Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
//!                 _ => Reply::Done,
//!             };
//!             backend.handle_reply(now, Answer::new(request.id, Ok(reply)))?;
//!         }
//!         Output::Event(event) => println!("{event:?}"),
//!     }
//! }
//! assert_eq!(backend.state(), XenbusState::InitWait);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Checked over every interleaving
//!
//! `tests/model_check.rs` runs both machines and the toolstack (removal request, waiter,
//! destroy) on `xsio-harness`, against its small xenstore model, over every interleaving of their steps, watch
//! deliveries (with duplicate events), guest close and restart, backend close, for one
//! device and for two devices sharing connections. It asserts that both ends reach Connected when nobody
//! closes, that any close ends with both Closed in a bounded number of steps (the state
//! graph has no cycle), that each machine's state only moves along the documented
//! transitions, that nothing is written after Closed except a reconnect, and that a
//! destroyed directory is never recreated.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod any;
mod areas;
mod backend;
pub mod block;
mod frontend;
mod keys;
mod requests;
mod state;
mod waiter;

pub use any::{XenbusEvent, XenbusMachine};
pub use areas::DeviceAreas;
pub use backend::{Backend, BackendConfig, BackendEvent};
pub use frontend::{Frontend, FrontendConfig, FrontendEvent};
pub use keys::{KeyCheck, KeyError, KeySpec};
pub use state::{ALL_STATES, StateError, XenbusState};
pub use waiter::{StateWaiter, WaitError, WaitEvent, WaiterConfig};
/// The permission entries of [`xsio_ops::TxnOp::SetPerms`]: `xsio-xs-wire`'s value types, so that the
/// workspace has one permission type and a driver passes them to its client unchanged.
pub use xsio_xs_wire::{Access, Perm};

/// The transitions of a backend's own state that the machines may make: the documented
/// handshake, closes from any live state, and the reconnect from Closed.
pub fn backend_transition_allowed(from: XenbusState, to: XenbusState) -> bool {
    use XenbusState::*;
    matches!(
        (from, to),
        (Initialising, InitWait)
            | (InitWait, Connected)
            | (InitWait | Connected, Closing)
            | (InitWait | Connected | Closing, Closed)
            | (Closed, InitWait)
    )
}

/// The transitions of a frontend's own state that the machines may make.
pub fn frontend_transition_allowed(from: XenbusState, to: XenbusState) -> bool {
    use XenbusState::*;
    matches!(
        (from, to),
        (Initialising, Initialised)
            | (Initialised, Connected)
            | (Initialised | Connected, Closing)
            | (Initialising | Initialised | Connected | Closing, Closed)
            | (Closed, Initialising)
    )
}
