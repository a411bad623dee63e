//! A xenstore client as a state machine with no I/O.
//!
//! [`Client`] turns commands (`read`, `write`, `watch`, `transact`, ...) into frames of the
//! xenstore wire protocol ([`xsio_xs_wire`]) and the daemon's replies back into completions
//! and watch events. It keeps many requests in flight, routes each reply by its `req_id`,
//! tells watch events apart from replies whatever order they come in, retries conflicting
//! transactions, and fails every pending operation exactly once when the connection goes.
//! A driver (`xsio-io-std`'s blocking client, a simulator, your event loop) moves the bytes.
//! Drivers hold watch events for slow consumers in [`WatchQueue`]s: bounded per watch, with an
//! explicit [`Overflow`] item instead of silent loss.
//!
//! ```
//! use std::time::Instant;
//! use xsio_core::Input;
//! use xsio_xs_client::{Client, Config, Output, Response, TxOp};
//! use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};
//!
//! let now = Instant::now(); // tidy:allow (a test epoch)
//! let mut client = Client::new(Config::default(), now);
//! let op = client.transact(now, vec![TxOp::Write("/vm/1/name".into(), "guest".into())]);
//!
//! // A daemon that answers every request; the first commit conflicts once.
//! let mut decoder = FrameDecoder::default();
//! let mut conflicts = 1;
//! let mut done = None;
//! while done.is_none() {
//!     let mut replies = Vec::new();
//!     while let Some(output) = client.poll_output() {
//!         match output {
//!             Output::Transmit(t) => decoder.feed(&t.bytes),
//!             Output::Done { id, result } => done = Some((id, result)),
//!             _ => {}
//!         }
//!     }
//!     while let Some(frame) = decoder.next_frame()? {
//!         let request = Packet::<Request>::decode(&frame)?;
//!         let body = match request.body {
//!             Request::TransactionStart => Reply::TransactionStart(7),
//!             Request::TransactionEnd { .. } if conflicts > 0 => {
//!                 conflicts -= 1;
//!                 Reply::Error(xsio_xs_wire::ErrorKind::Eagain)
//!             }
//!             Request::TransactionEnd { .. } => Reply::TransactionEnd,
//!             _ => Reply::Write,
//!         };
//!         replies.extend_from_slice(&request.reply(body).to_bytes()?);
//!     }
//!     client.handle_input(now, Input::<std::os::fd::OwnedFd>::Bytes(&replies));
//! }
//! assert_eq!(done, Some((op, Ok(Response::List(vec![Response::Unit])))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod jobs;
pub mod location;
mod types;
pub mod watch_queue;

pub use client::{Client, CloseReason, ProtocolError};
pub use types::{
    Config, DeviceArea, Error, Output, Response, TxId, TxOp, ValueError, WatchEvent, XsValue,
};
pub use watch_queue::{Overflow, WatchItem, WatchQueue, WatchQueues};
