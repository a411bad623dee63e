//! A sans-IO client for QMP, the QEMU Machine Protocol.
//!
//! The [`Client`] machine owns one QMP connection's state: the greeting and capability
//! negotiation, command ids, the in-flight window, replies matched to commands, events,
//! deadlines, and the file descriptors that ride along with commands (`add-fd`, `getfd`).
//! It does no I/O and reads no clock: a driver (`xsio-io-std`, `xsio-io-tokio`, a simulator)
//! feeds it bytes and time and carries out what it asks.
//!
//! # Run loop
//! 1. [`Client::new(config, now)`](Client::new) right after connecting.
//! 2. Feed what the socket gave with [`handle_input`](Client::handle_input), and submit
//!    commands with [`execute`](Client::execute) at any time (even before negotiation ends).
//! 3. After each of those, drain [`poll_output`](Client::poll_output) until `None`: write
//!    [`Output::Transmit`] bytes with their fds, hand [`Output::Done`] and [`Output::Event`]
//!    to their owners, close the socket on [`Output::Closed`].
//! 4. Wait for the socket or [`poll_timeout`](Client::poll_timeout), whichever is first, and
//!    call [`handle_timeout`](Client::handle_timeout) when the deadline passes.
//!
//! ```
//! use std::time::Instant;
//! use xsio_core::Input;
//! use xsio_qmp::{Client, Config, Output, typed};
//!
//! let now = Instant::now();
//! // The fd type is a parameter; a driver uses OwnedFd, this example plain numbers.
//! let mut qmp: Client<u32> = Client::new(Config::default(), now);
//! let status = qmp.execute(now, typed::query_status());
//!
//! qmp.handle_input(now, Input::Bytes(br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#));
//! let Some(Output::Transmit(t)) = qmp.poll_output() else { panic!() };
//! assert_eq!(&t.bytes[..], b"{\"execute\":\"qmp_capabilities\",\"id\":0}\n");
//! assert!(qmp.poll_output().is_none()); // query-status waits for negotiation to finish
//!
//! qmp.handle_input(now, Input::Bytes(b"{\"return\": {}, \"id\": 0}\r\n"));
//! assert!(matches!(qmp.poll_output(), Some(Output::Connected(_))));
//! let Some(Output::Transmit(t)) = qmp.poll_output() else { panic!() };
//! assert_eq!(&t.bytes[..], b"{\"execute\":\"query-status\",\"id\":1}\n");
//!
//! qmp.handle_input(now, Input::Bytes(br#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": 1}"#));
//! let Some(Output::Done { id, result }) = qmp.poll_output() else { panic!() };
//! assert_eq!(id, status);
//! let info: typed::StatusInfo = result?.parse()?;
//! assert!(info.running);
//! # Ok::<(), xsio_qmp::CommandError>(())
//! ```
//!
//! # What it guarantees (the invariants its tests name)
//! - **I1** every submitted command yields exactly one [`Output::Done`]: a reply,
//!   or [`CommandError`] `Qmp`, `Timeout`, `Cancelled`, `Disconnected`, `Protocol`, ...
//! - **I2** every fd handed to the client is given back exactly once inside a
//!   [`Output::Transmit`] or dropped (closed), on every path.
//! - **I3** nothing is delivered re-entrantly: outputs are queued and drained by the caller.
//! - **I4** memory is bounded by [`Config`]; an oversize message is a typed error.
//! - **I5** time only comes from arguments: the same inputs give the same outputs.
//! - **I6** at most one fd-carrying command is unanswered on the wire, because QEMU keeps
//!   only the fds of the latest message that carried any.
//! - **I7** any split of the byte stream gives the same outputs (framing by the end of each
//!   JSON value, so `pretty=on` multi-line output works too).
//!
//! # Panics and errors
//! No input from QEMU or the caller makes the client panic; bad input becomes a typed error.
//! A panic would be a bug in this crate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod command;
mod error;
pub mod typed;
pub mod wire;

#[cfg(test)]
mod client_tests;

pub use client::{Client, Config, Output, Session, Stats};
pub use command::{Command, Return};
pub use error::{CloseReason, CommandError, ErrorClass, ProtocolError, QmpError};
pub use wire::{Event, Greeting, QemuVersion, WireError};
