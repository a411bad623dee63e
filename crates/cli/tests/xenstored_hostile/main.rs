//! `xsio xenstored` as a hostile guest and a careless operator meet it: the real daemon
//! binary over its sockets. Watch-event bursts (`flow`), fd exhaustion (`accept`), a guest's memory
//! across its connections (`memory`), crash-safe
//! state files (`state`), socket ownership (`sockets`).
#![allow(clippy::disallowed_methods)] // A real daemon process: the tests wait on the wall clock.

mod accept;
mod flow;
mod memory;
mod sockets;
mod state;
mod support;
