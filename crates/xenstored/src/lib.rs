//! An in-memory xenstore daemon core: the tree, permissions, watches, transactions and quotas
//! of Xen's xenstored, as a deterministic machine with no I/O.
//!
//! A [`Server`] holds the tree and every client connection. A driver (the `xsio xenstored`
//! daemon, a simulator, a test) opens a connection per client with [`Server::connect`],
//! feeds it the bytes it reads with [`Server::handle_input`] (framing is `xsio-xs-wire`'s),
//! and drains [`Server::poll_output`] after each call, writing every transmit to the
//! connection it names and closing the connections it is told to close.
//!
//! ```
//! use std::time::Instant;
//! use xsio_xenstored::{Config, Origin, Output, Server};
//! use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};
//!
//! # #[allow(clippy::disallowed_methods)] // A doc example is its own driver.
//! let now = Instant::now();
//! let mut server = Server::new(Config::default(), now);
//! let dom0 = server.connect(now, Origin::Socket);
//!
//! // A relative path lands under dom0's home, /local/domain/0.
//! let write = Request::Write { path: "vm/name".into(), value: "demo".into() };
//! let read = Request::Read { path: "/local/domain/0/vm/name".into() };
//! let mut wire = Packet::new(1, 0, write).to_bytes()?.to_vec();
//! wire.extend_from_slice(&Packet::new(2, 0, read).to_bytes()?);
//! server.handle_input(now, dom0, &wire);
//!
//! let mut decoder = FrameDecoder::default();
//! while let Some(output) = server.poll_output() {
//!     if let Output::Transmit { conn, bytes } = output {
//!         assert_eq!(conn, dom0);
//!         decoder.feed(&bytes);
//!     }
//! }
//! let mut replies = Vec::new();
//! while let Some(frame) = decoder.next_frame()? {
//!     replies.push(Packet::<Reply>::decode(&frame)?.body);
//! }
//! assert_eq!(replies, [Reply::Write, Reply::Read("demo".into())]);
//! server.check_invariants().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//! The C daemon of Xen 4.17 is the reference: error names and their precedence (a missing
//! node the caller may not see is EACCES, never ENOENT), relative paths under the connection's
//! home, permission inheritance, the initial watch event, recursive watch matching, and the
//! transaction conflict rule (a commit fails with EAGAIN when any node the transaction looked
//! at, including one it found missing, changed since). Quotas bind unprivileged domains only.
//!
//! Where we chose, knowingly:
//! - "Looked at" includes the nodes a write touches: the written node and, when it creates
//!   a node, the parent whose child list it extends. So a transaction conflicts with an
//!   outside write to a node it only wrote, or with a sibling created outside; commits are
//!   serializable, and clients retry on EAGAIN as they must anyway. It never conflicts on
//!   unrelated subtrees (oxenstored's coarser rule does).
//! - Every domid is valid in a permission list (there is no hypervisor to ask).
//! - The outstanding-request quota bounds the replies queued for one connection: past it,
//!   that connection's further requests wait, unread, until the driver takes the replies.
//! - Identical unsent watch events are not coalesced (spurious events are allowed).
//!
//! # Panics
//! No input makes the server panic; a panic means a broken internal invariant (a bug).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod ops;
mod path;
mod perms;
mod server;
mod state;
mod tree;
mod view;

pub use config::{Config, Quotas};
pub use perms::{Access, Perm, Perms};
pub use server::{
    CloseReason, ConnId, INTRODUCE_DOMAIN, Origin, Output, RELEASE_DOMAIN, Request, Server,
};
pub use state::LoadError;
pub use xsio_xs_wire::ErrorKind;
