//! Blocking drivers for the xen-sansio machines.
//!
//! The machines in this workspace do no I/O. This crate is where the I/O happens for
//! programs that want plain blocking calls: it owns the sockets, reads the clock, waits with
//! `poll(2)`, and passes file descriptors with `SCM_RIGHTS`, all through `rustix`, so there is
//! no `unsafe` here either.
//!
//! Every driver is the same loop: wait until the socket is readable (or writable, while
//! bytes wait to be written) or the machine's deadline (`poll_timeout`) passes; feed what
//! happened to one `handle_*` call; drain `poll_output`, queueing each `Transmit` in an
//! [`unix::Outgoing`] that writes as much as the socket takes without blocking; repeat until
//! the operation the caller is waiting for completes. A peer that stops reading therefore
//! never holds a caller past the machine's deadlines.
//!
//! The base module, [`unix`], is the socket layer every driver shares. [`xenbus`] is the
//! one translation of the xenbus machines' operations into the xenstore client, for this
//! crate's blocking connection and for in-process drivers alike.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dm;
pub mod host;
pub mod l2;
pub mod qmp;
pub mod unix;
pub mod xenbus;
pub mod xenstore;
pub mod xenstored;

pub use unix::{UnixConn, now};
