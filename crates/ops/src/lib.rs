//! The operation vocabulary of the toolstack (L2) machines.
//!
//! An L2 machine (the xenbus handshake, device add and removal, the device model, CD-ROM
//! media change) never sees bytes, a socket or a clock, and never names a protocol
//! client's type. It asks its driver to do things ([`Output::Request`] carrying an
//! [`Op`]) and is told the results ([`Input::Reply`]) and what happened
//! ([`Input::Watch`]). A driver connects these to real clients (io-std, io-tokio), to an
//! in-process simulator, or to another toolstack's own libraries; because every L2 machine
//! speaks this one vocabulary, one driver loop serves them all.
//!
//! Every L2 machine implements [`xsio_core::Machine`] with
//! `Input<'a> = Input<'a>`, `Output = Output<Event>` and `Error = InputError`:
//!
//! ```
//! use std::time::Instant;
//! use xsio_core::{Machine, OpId};
//! use xsio_ops::{Input, Op, Output, Reply, XsOp};
//!
//! /// Drains `machine`, answering every read with "missing" and everything else with Done.
//! fn answer_all<M, E>(machine: &mut M, now: Instant) -> Vec<E>
//! where
//!     M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>>,
//! {
//!     let mut events = Vec::new();
//!     while let Some(output) = machine.poll_output() {
//!         match output {
//!             Output::Request(request) => {
//!                 let reply = match request.op {
//!                     Op::Xs(XsOp::Read { .. }) => Reply::Value(None),
//!                     Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
//!                     _ => Reply::Done,
//!                 };
//!                 let _ = machine.handle_input(now, Input::Reply { id: request.id, result: Ok(reply) });
//!             }
//!             Output::Event(event) => events.push(event),
//!         }
//!     }
//!     events
//! }
//! # let _ = answer_all::<NoMachine, ()>;
//! # struct NoMachine;
//! # impl Machine for NoMachine {
//! #     type Input<'a> = Input<'a>;
//! #     type Output = Output<()>;
//! #     type Error = xsio_ops::InputError;
//! #     fn handle_input(&mut self, _: Instant, _: Input<'_>) -> Result<(), Self::Error> { Ok(()) }
//! #     fn handle_timeout(&mut self, _: Instant) {}
//! #     fn poll_output(&mut self) -> Option<Output<()>> { None }
//! #     fn poll_timeout(&self) -> Option<Instant> { None }
//! # }
//! # let _ = OpId::from_raw(0);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use thiserror::Error;
use xsio_core::OpId;
/// The permission entries of [`TxnOp::SetPerms`]: `xsio-xs-wire`'s value types, so that the
/// workspace has one permission type and a driver passes them to its client unchanged.
pub use xsio_xs_wire::{Access, Perm};

/// One step of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Create the node (and missing parents) with an empty value; no-op if it exists.
    Mkdir {
        /// Absolute path.
        path: String,
    },
    /// Write a value, creating the node and missing parents.
    Write {
        /// Absolute path.
        path: String,
        /// The value.
        value: String,
    },
    /// Replace the node's permission list.
    SetPerms {
        /// Absolute path.
        path: String,
        /// Owner first.
        perms: Vec<Perm>,
    },
    /// Remove the node and everything below it; removing a missing node is not an error.
    Rm {
        /// Absolute path.
        path: String,
    },
}

impl TxnOp {
    /// A write of `value` at `path`.
    pub fn write(path: impl Into<String>, value: impl Into<String>) -> TxnOp {
        TxnOp::Write {
            path: path.into(),
            value: value.into(),
        }
    }

    /// The path this step touches.
    pub fn path(&self) -> &str {
        match self {
            TxnOp::Mkdir { path }
            | TxnOp::Write { path, .. }
            | TxnOp::SetPerms { path, .. }
            | TxnOp::Rm { path } => path,
        }
    }
}

/// Steps applied atomically in one xenstore transaction.
///
/// The driver starts a transaction, checks the guard, applies the steps in order and
/// commits; when the commit conflicts (`EAGAIN`) it starts over (the steps are blind writes,
/// so a retry is always correct). A single unguarded step may be sent as a plain request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn {
    /// When set, the transaction applies only if this node exists at commit time; otherwise
    /// nothing is written and the result is [`Reply::Skipped`]. Machines guard their own
    /// `state` writes with it so that a torn-down device directory is never recreated.
    pub only_if_exists: Option<String>,
    /// The steps, in order.
    pub ops: Vec<TxnOp>,
}

/// A xenstore operation a machine asks its driver to perform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum XsOp {
    /// Read a node. Answer [`Reply::Value`] (`None` for `ENOENT`).
    Read {
        /// Absolute path.
        path: String,
    },
    /// Register a watch. Answer [`Reply::Done`]. As xenstored does, the watch fires once
    /// right after registration; the driver passes events in as [`Input::Watch`].
    Watch {
        /// Absolute path.
        path: String,
        /// Token echoed in every event of this watch.
        token: String,
    },
    /// Remove a watch. Answer [`Reply::Done`].
    Unwatch {
        /// Absolute path.
        path: String,
        /// The token it was registered with.
        token: String,
    },
    /// Apply a transaction. Answer [`Reply::Committed`] or [`Reply::Skipped`].
    Transaction(Txn),
}

/// An operation with the id its result must carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Pass it back in [`Input::Reply`].
    pub id: OpId,
    /// What to do.
    pub op: Op,
}

/// An operation an L2 machine asks its driver to perform, by the peer it concerns.
///
/// New kinds of operation (QMP commands, hotplug scripts, domain information) are added
/// here as variants, so that one driver loop executes every machine's requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A xenstore operation on the machine's xenstore connection.
    Xs(XsOp),
}

impl From<XsOp> for Op {
    fn from(op: XsOp) -> Op {
        Op::Xs(op)
    }
}

/// What a driver tells an L2 machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The result of the request `id` (every request is answered exactly once).
    Reply {
        /// The request's id.
        id: OpId,
        /// Its result.
        result: Result<Reply, OpError>,
    },
    /// A xenstore watch the machine registered fired.
    Watch {
        /// The path that changed (or the watched path, for the initial event).
        path: &'a str,
        /// The token the machine registered the watch with.
        token: &'a str,
    },
}

/// The successful result of an [`XsOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// The value of a read; `None` when the node does not exist (`ENOENT`).
    Value(Option<String>),
    /// A watch or unwatch succeeded.
    Done,
    /// The transaction committed.
    Committed,
    /// The transaction's guard node was missing: nothing was written.
    Skipped,
}

/// The kind of a failed xenstore operation, as a driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpErrorKind {
    /// `EACCES`: permission denied.
    Access,
    /// `EINVAL`: the daemon refused the request.
    Invalid,
    /// `ENOENT` where it is an error (not for reads).
    NoEntry,
    /// `EQUOTA` / `ENOSPC`: a quota was exceeded.
    Quota,
    /// The connection to xenstore failed or closed.
    Connection,
    /// The driver's own time limit for the operation passed.
    Timeout,
    /// Any other error the daemon named.
    Other,
}

/// A failed xenstore operation, as a driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[error("xenstore {kind:?} error: {detail}")]
pub struct OpError {
    /// What went wrong.
    pub kind: OpErrorKind,
    /// Free text for logs (the daemon's error name, the I/O error).
    pub detail: String,
}

impl OpError {
    /// An error of `kind` with a detail text.
    pub fn new(kind: OpErrorKind, detail: impl Into<String>) -> OpError {
        OpError {
            kind,
            detail: detail.into(),
        }
    }
}

/// What a machine hands its driver: a request to execute, or an event to report.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output<E> {
    /// Execute this and answer with [`Input::Reply`].
    Request(Request),
    /// Something the caller may want to know (state changes, connection, completion).
    Event(E),
}

/// Why a `handle_*` call was refused. The machine's state is unchanged by a refused input,
/// except where the variant says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum InputError {
    /// No operation with this id is in flight (already answered, or never issued).
    #[error("no operation {0} is in flight")]
    UnknownOp(OpId),
    /// The reply's kind does not fit the operation (a `Value` for a transaction, ...). The
    /// operation counts as failed, as if the driver had reported an error.
    #[error("reply of the wrong kind for {id}: expected {expected}")]
    WrongReply {
        /// The operation.
        id: OpId,
        /// What the operation answers with.
        expected: &'static str,
    },
}

/// Checks a reply against the kind of operation it answers.
pub fn expect_value(
    id: OpId,
    result: Result<Reply, OpError>,
) -> Result<Result<Option<String>, OpError>, InputError> {
    match result {
        Ok(Reply::Value(value)) => Ok(Ok(value)),
        Ok(_) => Err(InputError::WrongReply {
            id,
            expected: "Value",
        }),
        Err(err) => Ok(Err(err)),
    }
}

/// Checks the reply to a read of the other end's `state`: as Linux's
/// `xenbus_read_driver_state`, a node we may not read counts as missing. (xenstored answers
/// EACCES, not ENOENT, for a missing node whose parent the reader may not see: that is
/// how a guest sees a destroyed backend directory.)
pub fn expect_state_value(
    id: OpId,
    result: Result<Reply, OpError>,
) -> Result<Result<Option<String>, OpError>, InputError> {
    match expect_value(id, result) {
        Ok(Err(err)) if err.kind == OpErrorKind::Access => Ok(Ok(None)),
        other => other,
    }
}

/// Checks a transaction reply; `Ok(true)` when committed, `Ok(false)` when skipped.
pub fn expect_txn(
    id: OpId,
    result: Result<Reply, OpError>,
) -> Result<Result<bool, OpError>, InputError> {
    match result {
        Ok(Reply::Committed) => Ok(Ok(true)),
        Ok(Reply::Skipped) => Ok(Ok(false)),
        Ok(_) => Err(InputError::WrongReply {
            id,
            expected: "Committed or Skipped",
        }),
        Err(err) => Ok(Err(err)),
    }
}

/// Checks a watch/unwatch reply.
pub fn expect_done(
    id: OpId,
    result: Result<Reply, OpError>,
) -> Result<Result<(), OpError>, InputError> {
    match result {
        Ok(Reply::Done) => Ok(Ok(())),
        Ok(_) => Err(InputError::WrongReply {
            id,
            expected: "Done",
        }),
        Err(err) => Ok(Err(err)),
    }
}
