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
//! Requests are read with `xsio-xs-wire`'s lenient grammar
//! ([`Packet::decode_lenient`](xsio_xs_wire::Packet::decode_lenient)), the C daemon's:
//! domids as `atoi` reads them (`+7`, `007` and ` 7` are domain 7, `-1` is 4294967295),
//! permission domids as `strtol(.., 0)` (`r0x10` is domain 16), extra arguments of
//! `INTRODUCE` and `SET_TARGET` ignored. The checks run in C's order: a known type (ENOSYS),
//! privilege (EACCES), a node request's transaction (ENOENT), then the arguments (EINVAL).
//!
//! # Accepted differences from C xenstored 4.17
//! The one list of them. `peer_xen_xenstored` (in `xsio-cli`) plays seeded random operation
//! sequences against Xen's own C xenstored (guests over real rings) and this daemon, and
//! fails on any difference not in this table; each row it recognises carries the name of
//! the test's rule. Rows marked *not compared* are kept out of the generated sequences
//! (Xen's answer is undefined or destroys state), and say why.
//!
//! | rule | case | C xenstored 4.17 | xsio-xenstored | why |
//! |---|---|---|---|---|
//! | `non-numeric-argument` | a domid or `DIRECTORY_PART` offset with no digits or trailing bytes (`abc`, `7abc`, empty) | reads a prefix or 0 (`GET_DOMAIN_PATH abc` is `/local/domain/0`) | EINVAL | garbage must not name dom0 (not sent inside transactions: Xen reads the node, we refuse first, so a later commit could conflict on one side only) |
//! | – | a domid beyond 32 bits (`4294967296`, `r4294967296`) | truncated (domain 0) | EINVAL | same (not generated) |
//! | – | a watch token that is not UTF-8 | accepted | EINVAL | tokens are text in every client we know (not generated) |
//! | `malformed-arguments` | WATCH, UNWATCH, SET_TARGET, INTRODUCE, SET_PERMS with missing or extra strings | a stale errno | EINVAL | malformed is EINVAL everywhere |
//! | *not compared* | a one-string request (READ, RM, TRANSACTION_END, ...) without its NUL or with extra strings | a stale errno, or, when that errno is 0, no answer at all and an abort (`assert(conn->in == NULL)`) on the connection's next request | EINVAL | the C answer is undefined and kills the daemon |
//! | *not compared* | a request announcing more than 4096 payload bytes | dropped silently | connection closed | the protocol calls it a violation |
//! | `directory-part-generation` | the generation in `DIRECTORY_PART` replies | its counter | ours | opaque to clients; the test checks the two correspond one to one per node, and accepts a chunk cut one name earlier or later because the generations differ in length |
//! | `directory-part-empty-name` | `DIRECTORY_PART` at an offset that points at the NUL ending a name | lists an empty name first | EINVAL | names are never empty (libxenstore only sends offsets at name starts) |
//! | `quota-off-by-one` | watches and open transactions of a guest | 129 and 11 admitted (the check is off by one) | 128 and 10 | the documented quota; the test starts C with limits one lower |
//! | `duplicate-events` | an event identical to one still queued for the connection (two watches, one token) | coalesced | both sent | spurious events are allowed; no scan of the queue |
//! | `doomed-transaction` | inside a transaction, a node created or removed outside after the transaction read its parent | shows the node as it is now | keeps the transaction's snapshot consistent (still missing, or still there) | the commit fails with EAGAIN on both, so nothing committed differs; the test accepts such a difference only if the transaction then fails, is aborted or reset |
//! | `special-path-set-perms` | SET_PERMS on `@` names other than the two special ones, or by a guest on one of them | a stale errno (ENOENT, EAGAIN) | EINVAL (other names), EACCES (guest) | the C answer is undefined |
//! | `signed-domid-print` | GET_PERMS of an entry set with a negative domid (`b-1`) | prints it signed (`b-1`) | prints the 32-bit id (`b4294967295`) | one grammar for domids on the wire |
//! | *not compared* | RELEASE of a domain another domain has as SET_TARGET target | no `@releaseDomain`; the domain stays (a second RELEASE succeeds) | released | the C connection stays referenced |
//! | *not compared* | RELEASE of a domain that owns `/` | deletes the whole store, `/` included (dom0 then gets EACCES everywhere) | removes the nodes it owns below `/` | never a sane outcome |
//! | – | a node created and removed in one transaction | no event at commit | an event | spurious events are allowed (not met by the test so far) |
//! | – | a permission entry naming a domain the hypervisor does not know (below 0x7ff0) | ignored; ENOENT as the owner | valid | no hypervisor to ask (ids from 0x7ff0 up are ENOENT as owner on both) |
//! | – | a guest's node write that would take it past its hard memory quota | ENOMEM | done; the guest is then not read until below | the quota still binds, one request late (not reached by the test's sequences) |
//! | – | memory of a guest's open transactions | charged | not charged (bounded by the transaction quotas) | simpler accounting |
//!
//! Where we chose, knowingly:
//! - "Looked at" includes the nodes a write touches: the written node and, when it creates
//!   a node, the parent whose child list it extends. So a transaction conflicts with an
//!   outside write to a node it only wrote, or with a sibling created outside; commits are
//!   serializable, and clients retry on EAGAIN as they must anyway. It never conflicts on
//!   unrelated subtrees (oxenstored's coarser rule does).
//!
//! # Flow control
//! C xenstored 4.17's rules (XSA-326). A request is outstanding until the driver took its
//! reply and, for an unprivileged connection, every watch event it caused (or they were
//! dropped). An unprivileged domain has [`Quotas::outstanding_requests`] (20) across all of
//! its connections; past it none of its further requests is answered, and
//! [`Server::wants_input`] tells the driver to stop reading them, so a guest that causes
//! events faster than the watchers read them is throttled instead of the watchers being cut
//! off. A driver whose socket is full pauses the connection ([`Server::pause_output`]); its
//! messages wait in the server. An event queued for an unprivileged connection and not
//! taken within [`Config::watch_event_timeout`] (20 s) is dropped and counted
//! ([`Output::EventsDropped`], `xenstore-control quota <domid>`). No connection is ever
//! closed for events; dom0's events never expire, and do not hold its requests (C has no
//! outstanding quota for dom0).
//!
//! # Memory
//! An unprivileged domain is charged, across all of its connections, for the nodes it owns
//! (each node's 24-byte record header, path, value, child names and 8 bytes per
//! permission, as C counts them), the messages queued for it, and the bytes it sent that
//! wait unanswered. Past [`Quotas::memory_per_domain`] (2.5 MiB) none of its requests is
//! answered and [`Server::wants_input`] is false for its connections, until it drops below;
//! others are served as before. Past [`Quotas::memory_per_domain_soft`] (2 MiB) it is
//! reported once ([`Output::MemoryQuota`]). `xenstore-control quota <domid>` shows it.
//!
//! # Panics
//! No input makes the server panic; a panic means a broken internal invariant (a bug).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod machine;
mod ops;
mod perms;
mod server;
mod state;
mod tree;
mod view;

pub use config::{Config, Quotas};
pub use machine::ServerInput;
pub use perms::{Access, Perm, Perms};
pub use server::{CloseReason, ConnId, INTRODUCE_DOMAIN, Origin, Output, RELEASE_DOMAIN, Server};
pub use state::LoadError;
pub use xsio_xs_wire::ErrorKind;
