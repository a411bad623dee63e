//! Device add and removal as one sans-IO machine: libxl's `ao_device` (the removal
//! flowchart with the QEMU bodge, the add with its hotplug scripts), with its flaws fixed.
//!
//! Removing a paravirtual device is subtle: the backend may be provided by QEMU, the guest
//! may be paused or dying, QEMU may be dying at the same time. [`DeviceOp`] does it in
//! one machine that does no I/O: what it cannot know it asks ([`xsio_ops::Op`]: xenstore
//! operations, interactive transactions included; the guest's state; the device model's
//! liveness; running and killing a hotplug script) and it is told the answers. Its steps
//! are reported as [`DeviceEvent`]s and its end exactly once as a [`Completion`].
//! [`MultiDev`] adds or removes all the devices of a domain in parallel and completes
//! once, when every one has, with each one's result.
//!
//! # Run loop
//!
//! 1. Make the operation: [`DeviceOp::add`] or [`DeviceOp::remove`] (or a [`MultiDev`]).
//! 2. Drain [`poll_output`](DeviceOp::poll_output) until `None`: execute every
//!    [`Output::Request`](xsio_ops::Output) and answer it with
//!    [`handle_reply`](DeviceOp::handle_reply) (a `Spawn` is answered when the program
//!    ends); show or log the events.
//! 3. Pass watch events to [`handle_watch`](DeviceOp::handle_watch); call
//!    [`handle_timeout`](DeviceOp::handle_timeout) at [`poll_timeout`](DeviceOp::poll_timeout).
//! 4. Repeat 2–3 until [`DeviceEvent::Done`].
//!
//! Every machine here implements [`xsio_core::Machine`], so `xsio-harness` runs it (with
//! virtual time in tests, with real daemons and processes in `xsio-io-std`'s `l2` driver).
//!
//! # Removal (force AUTO / ON / OFF)
//!
//! ```text
//!  dom0: domain info of the guest ──► QEMU backend? ──► device model alive? ─┐
//!  driver domain: ───────────────────────────────────────────────────────────┤
//!        alive, or not QEMU ─► txn: read be/state; gone ─► clean end          │
//!                              online=0, state=5 unless 6 (force ON: fe too)  │
//!                              ─► wait be/state=6 (destroy timeout)           │
//!        gone ─► bodge at once; unknown + guest not running ─► 2 s ─► bodge   │
//!        bodge = txn: read be/state, write 6 unless 6                       ◄─┘
//!  be 6 ─► live frontend (force not ON): wait fe/state=6 ─► hotplug scripts
//!  backend in another domain ─► wait for it to remove the backend directory
//!  timeout with AUTO ─► once, again from the top with force ON
//!  end: success or force ON ─► prune fe, /libxl entry, be (each, then its empty parents)
//! ```
//!
//! The add: one transaction writes the toolstack entry (`/libxl/<guest>/device/..`; if it
//! exists: [`AddError::Exists`]) and both directories; unless QEMU provides the backend,
//! a wait for the backend's InitWait; then the hotplug scripts, each killed after the
//! hotplug timeout. An add that fails leaves what it wrote (the caller removes the device).
//!
//! # Invariants (each named in the tests that check it)
//!
//! - D1 Every operation completes exactly once ([`DeviceEvent::Done`]), whatever the
//!   answers, their order, the timers, and the guest's or QEMU's fate.
//! - D2 No hotplug script runs twice for one step; a script that runs past the hotplug
//!   timeout is killed.
//! - D3 A removal that succeeds, or runs with force ON, leaves no area behind (frontend,
//!   toolstack entry, backend, and their ancestors left empty); otherwise the error says
//!   why ([`Removal::pruned`]).
//! - D4 Every transaction the machine opens it ends exactly once (commit or abort).
//! - D5 A closed backend (state 6) is never written Closing (5).
//!
//! # What libxl gets wrong, fixed here (design note, section 8)
//!
//! - Conflict retries are bounded: after [`Config::transaction_attempts`] conflicting
//!   commits the operation fails with a `Conflicts` error (libxl retries for ever).
//! - A failed remove script is reported ([`RemoveError::Scripts`]); libxl resets the
//!   result to success when it finds no further script.
//! - The bodge reads and writes the backend state inside one real transaction.
//! - A vanished backend `state` node (QEMU's clean exit deletes both directories) is the
//!   same clean end whenever it is seen: before the request or while waiting (libxl:
//!   success before, `ERROR_INVAL` after, leaving the areas with force AUTO/OFF).
//! - "Is QEMU gone?" is asked of the device model itself ([`xsio_ops::HostOp::DeviceModelAlive`]:
//!   a QMP answer, its socket's end, its process's exit): gone means the toolstack closes
//!   the backend at once; alive means QEMU does, so a guest a user merely paused is not
//!   closed blind. Only when the host cannot tell does libxl's rule apply (guest paused,
//!   dying or shut down: a blind 2 s, then the bodge).
//! - When the frontend is alive (guest running, or unknown in a driver domain) the
//!   machine waits for it to leave its ring (Closed; a frontend still Initialising never
//!   had one) before the hotplug step (xenopsd CA-314170).
//!
//! Other differences: a missing `script` key means no script (libxl fails); a backend
//! that raced past InitWait (Initialised, Connected) ends an add's wait; a killed script
//! that is not reaped within [`Config::kill_grace`] is given up on (libxl waits for ever).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod device;
pub mod disk;
mod flow;
mod hotplug;
mod io;
mod multi;
mod op;
mod outcome;
mod txn;

pub use config::{Config, ScaleError};
pub use device::{Device, EntryError, Force, QEMU_BACKEND_KINDS, toolstack_devices};
pub use multi::{MultiDev, MultiDone, MultiError, MultiEvent};
pub use op::{AddSpec, DeviceOp};
pub use outcome::{
    AddError, Added, BackendEnd, Completion, DeviceEvent, Removal, RemoveError, Removed,
    ScriptFailure, TxnKind, WaitFor,
};

/// `(key, value)` pairs as string slices: what the unit tests compare with literals.
#[cfg(test)]
fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
