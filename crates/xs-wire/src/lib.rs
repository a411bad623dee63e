//! The xenstore wire protocol, both directions, with no I/O.
//!
//! Every message is a 16-byte [`Header`] (four little-endian `u32`: type, req_id, tx_id, len)
//! and `len` payload bytes, at most [`XENSTORE_PAYLOAD_MAX`]. This crate cuts a byte stream
//! into [`Frame`]s whatever the read sizes ([`FrameDecoder`]), reads a frame as a typed
//! [`Packet`] of [`Request`] (what a client sends) or [`Reply`] (what a daemon sends: replies,
//! `ERROR`, `WATCH_EVENT`), and encodes packets back, byte for byte as Xen's libxenstore
//! does. It also holds the [`ErrorKind`] name table, [`Perm`] strings and [`path`] rules.
//!
//! ```
//! use xsio_xs_wire::{ErrorKind, FrameDecoder, Packet, Reply};
//!
//! // Two replies arrive in one read, the second split across reads.
//! let mut wire = Packet::new(1, 0, Reply::Read("xvda".into())).to_bytes()?.to_vec();
//! wire.extend_from_slice(&Packet::new(2, 0, Reply::Error(ErrorKind::Enoent)).to_bytes()?);
//!
//! let mut decoder = FrameDecoder::default();
//! let mut replies = Vec::new();
//! for chunk in wire.chunks(7) {
//!     decoder.feed(chunk);
//!     while let Some(frame) = decoder.next_frame()? {
//!         replies.push(Packet::<Reply>::decode(&frame)?);
//!     }
//! }
//! assert_eq!(replies[0].body, Reply::Read("xvda".into()));
//! assert_eq!((replies[1].req_id, &replies[1].body), (2, &Reply::Error(ErrorKind::Enoent)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Payload rules
//!
//! Text fields (paths, tokens, names, numbers) end with a NUL. A `WRITE` is `path\0` then
//! the raw value *without* a NUL; a `READ` reply is the raw value alone. Success replies
//! with nothing to say are `OK\0`; errors are the errno name (`ENOENT\0`). Numbers are
//! decimal. Decoding is strict so that decoding then encoding gives the same bytes: a field
//! count, a missing NUL, a non-canonical number or a non-UTF-8 path is a [`PayloadError`]
//! (a daemon answers it with `EINVAL`). Two exceptions follow the daemons: the payloads of
//! `TRANSACTION_START` and `RESET_WATCHES` are ignored, and permission domids are read as C's
//! `strtoul(.., 0)` reads them (`r0x10`), then printed in decimal.
//!
//! A daemon decodes requests with [`Packet::decode_lenient`] instead: the grammar of Xen's C
//! daemon, which is what Xen's clients may send (`+7`, `007` and ` 7` are domain 7, `r-1` is
//! domain 4294967295). Its number rules live in one place and are listed there.
//!
//! Paths are not checked by the codec, since a daemon must answer a bad path with an error
//! reply; [`path::check`] implements the rules.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod c_number;
mod error_kind;
mod frame;
mod header;
mod packet;
pub mod path;
mod payload;
mod perm;
mod reply;
mod request;

pub use c_number::parse_domid;
pub use error_kind::{ALL_ERROR_KINDS, ErrorKind};
pub use frame::{Frame, FrameDecoder, FrameError, FrameRef, decode_frame, parse_header};
pub use header::{ALL_MSG_TYPES, HEADER_LEN, Header, MsgType};
pub use packet::{Body, Packet};
pub use path::{XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};
pub use payload::{EncodeError, PayloadError};
pub use perm::{Access, Perm, PermError};
pub use reply::Reply;
pub use request::Request;

/// The largest payload a message may carry, header excluded (`xs_wire.h`).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;

/// The domid that means "the caller" in `IS_DOMAIN_INTRODUCED` (`DOMID_SELF`).
pub const DOMID_SELF: u32 = 0x7ff0;
