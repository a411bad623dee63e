//! The device model (QEMU) over QMP, as sans-IO operations.
//!
//! A restricted QEMU cannot reach xenstore or the file system, so the toolstack learns that
//! it is up, and has it save its device state, only through QMP. Each job is an operation
//! machine with one typed completion:
//!
//! | operation | steps | completes with |
//! |---|---|---|
//! | [`StartUp`] | connect on the pre-opened socket, `query-status` is `prelaunch` (fresh `-S`) or `inmigrate`/`paused` (restore), within 60 s | [`Ready`] / [`StartError`] (QEMU exiting first: [`StartError::Exited`] with its status) |
//! | [`Save`] | connect, `stop`, open the file write-only and truncated, `add-fd`, `xen-save-devices-state`, `remove-fd` on every path, within a deadline | [`Saved`] / [`SaveError`] |
//! | [`Control`] | connect, `cont` ([`Action::Resume`]) or `stop` ([`Action::Pause`]) | `()` / [`ControlError`] |
//! | [`Shutdown`] | connect, `quit`, the connection's end and the process's exit; a kill when that fails or takes too long | [`Stopped`] / [`ShutdownError`] |
//!
//! The machines speak the operations of [`xsio_ops`] ([`QmpOp`](xsio_ops::QmpOp),
//! [`FileOp`](xsio_ops::FileOp), [`ProcessOp`](xsio_ops::ProcessOp)) and never hold a
//! descriptor, a socket or a process: the driver owns those (`xsio_io_std::dm` and
//! `xsio_io_tokio::dm` spawn QEMU with the pre-opened socket and run them), and so does a
//! simulator, which is how the tests here run them with virtual time.
//!
//! # Run loop
//! 1. `Operation::new(config, now)` on a connection to one QEMU (the driver knows which).
//! 2. Drain [`poll_output`](xsio_core::Machine::poll_output) until `None`: execute each
//!    [`Output::Request`](xsio_ops::Output::Request) and answer it with
//!    [`Input::Reply`](xsio_ops::Input::Reply) (now or later, exactly once); the one
//!    [`Output::Event`](xsio_ops::Output::Event) is the completion.
//! 3. Hand what QEMU reports on its own to every operation on its connection:
//!    [`Input::Peer`](xsio_ops::Input::Peer) with a QMP event, the connection's end, the
//!    process's exit.
//! 4. Wait for an answer, a peer event or [`poll_timeout`](xsio_core::Machine::poll_timeout),
//!    whichever is first; call [`handle_timeout`](xsio_core::Machine::handle_timeout) when the
//!    deadline passes. Go on until `is_settled()`: the completion reported and every request
//!    answered (cleanup included).
//!
//! `xsio-harness` is that loop; with one machine and a closure answering requests:
//!
//! ```
//! use std::time::Instant;
//! use xsio_core::Machine;
//! use xsio_dm::{StartConfig, StartUp};
//! use xsio_ops::{Input, Op, Output, QemuVersion, QmpOp, QmpSession, Reply};
//!
//! # #[allow(clippy::disallowed_methods)] // a doc example's epoch
//! let now = Instant::now();
//! let mut start = StartUp::new(StartConfig::fresh(), now);
//! let mut completion = None;
//! while let Some(output) = start.poll_output() {
//!     match output {
//!         Output::Request(request) => {
//!             let reply = match request.op {
//!                 Op::Qmp(QmpOp::Connect) => Reply::QmpConnected(QmpSession {
//!                     version: QemuVersion { major: 7, minor: 2, micro: 22 },
//!                     package: "Debian 1:7.2+dfsg-7+deb12u18+b3".into(),
//!                 }),
//!                 _ => Reply::Qmp(serde_json::json!({"status": "prelaunch", "running": false})),
//!             };
//!             start.handle_input(now, Input::Reply { id: request.id, result: Ok(reply) })?;
//!         }
//!         Output::Event(result) => completion = Some(result),
//!     }
//! }
//! assert_eq!(completion.unwrap().unwrap().status, "prelaunch");
//! assert!(start.is_settled());
//! # Ok::<(), xsio_ops::InputError>(())
//! ```
//!
//! # What it guarantees (the invariants its tests name)
//! - **D1** every operation completes exactly once: one `Output::Event` with its typed
//!   result, whatever the answers, their order, the peer events and the time.
//! - **D2** every [`FdHandle`](xsio_ops::FdHandle) an operation is given is consumed: passed
//!   with a command or closed ([`FileOp::Close`](xsio_ops::FileOp::Close)), also one that
//!   arrives after the operation gave up.
//! - **D3** every fd set an operation created (`add-fd` answered) is removed with `remove-fd`
//!   while the connection lasts, on success and on failure, also one created after the
//!   operation gave up.
//! - **D4** time only comes from arguments; deadlines are computed with
//!   [`xsio_core::deadline`], so a timeout of `Duration::MAX` means none, never a panic.
//! - **D5** no input panics; an answer to a request not in flight is refused
//!   ([`InputError::UnknownOp`](xsio_ops::InputError::UnknownOp)) and changes nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod control;
mod requests;
mod save;
mod shutdown;
mod startup;

pub use control::{Action, Control, ControlConfig, ControlError};
pub use save::{SAVE_OPAQUE, Save, SaveConfig, SaveError, SaveStep, Saved};
pub use shutdown::{Shutdown, ShutdownConfig, ShutdownError, Stopped};
pub use startup::{PRELAUNCH, RESTORE, Ready, START_TIMEOUT, StartConfig, StartError, StartUp};

use xsio_ops::ProcessExit;

/// How an exit reads in an error message.
fn exit_text(exit: &Option<ProcessExit>) -> String {
    match exit {
        Some(exit) => exit.to_string(),
        None => "status unknown (not the driver's child)".to_owned(),
    }
}

/// The surface every operation shares, from its `requests` table: `result`, `is_settled`,
/// `in_flight` and `poll_output`, and [`xsio_core::Machine`] over its inherent
/// `handle_reply`, `handle_peer`, `handle_timeout` and `poll_timeout`.
macro_rules! operation {
    ($machine:ty, $completion:ty) => {
        impl $machine {
            /// The result, once complete.
            pub fn result(&self) -> Option<&$completion> {
                self.requests.completed()
            }

            /// Complete, with every request answered (cleanup included): nothing more will
            /// come out.
            pub fn is_settled(&self) -> bool {
                self.requests.is_settled()
            }

            /// How many requests await an answer.
            pub fn in_flight(&self) -> usize {
                self.requests.in_flight()
            }

            /// The next output, `None` when drained.
            pub fn poll_output(&mut self) -> Option<xsio_ops::Output<$completion>> {
                self.requests.poll_output()
            }
        }

        xsio_ops::impl_machine!($machine, $completion, peer: handle_peer);
    };
}
pub(crate) use operation;
