//! An in-memory xenstore daemon core: the tree, permissions, watches, transactions and quotas
//! of Xen's xenstored, as a deterministic machine with no I/O.
//!
//! A [`Server`] holds the tree and every client connection. A driver (the `xsio xenstored`
//! daemon, a simulator, a test) opens a connection per client with [`Server::connect`],
//! feeds it requests, and drains [`Server::poll_output`] after each one, sending every
//! message to the connection it names.
//!
//! ```
//! use std::time::Instant;
//! use xsio_xenstored::{Config, Origin, Output, Request, Server};
//!
//! # #[allow(clippy::disallowed_methods)] // A doc example is its own driver.
//! let now = Instant::now();
//! let mut server = Server::new(Config::default(), now);
//! let dom0 = server.connect(now, Origin::Socket);
//!
//! // WRITE (11) of a relative path: it lands under dom0's home, /local/domain/0.
//! server.handle_request(now, dom0, Request { kind: 11, req_id: 1, tx_id: 0, payload: b"vm/name\0demo" });
//! server.handle_request(now, dom0, Request { kind: 2, req_id: 2, tx_id: 0, payload: b"/local/domain/0/vm/name\0" });
//!
//! let mut replies = Vec::new();
//! while let Some(output) = server.poll_output() {
//!     if let Output::Message { message, .. } = output {
//!         replies.push(message.payload);
//!     }
//! }
//! assert_eq!(replies, [&b"OK\0"[..], &b"demo"[..]]);
//! server.check_invariants().unwrap();
//! ```
//!
//! # Semantics
//! The C daemon of Xen 4.17 is the reference: error names and their precedence (a missing
//! node the caller may not see is EACCES, never ENOENT), relative paths under the connection's
//! home, permission inheritance, the initial watch event, recursive watch matching, and the
//! transaction conflict rule (a commit fails with EAGAIN when any node the transaction looked
//! at, including one it found missing, changed since). Quotas bind unprivileged domains only.
//!
//! # Panics
//! No input makes the server panic; a panic means a broken internal invariant (a bug).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod errno;
mod ops;
mod path;
mod perms;
mod server;
mod state;
mod tree;
mod view;

pub use config::{Config, Quotas};
pub use errno::Errno;
pub use perms::{Access, Perm, Perms};
pub use server::{
    CloseReason, ConnId, INTRODUCE_DOMAIN, Message, Origin, Output, RELEASE_DOMAIN, Request, Server,
};
pub use state::LoadError;
