//! The operation vocabulary the machines speak: what they ask a driver to do in xenstore,
//! and the results the driver hands back.
//!
//! The machines never see bytes or a xenstore connection. A driver (io-std, a simulator,
//! someone else's toolstack with its own xenstore library) executes each [`Request`] and
//! answers with `handle_reply(now, id, result)`; it passes watch events in with
//! `handle_watch(now, path, token)`.

use thiserror::Error;
use xsio_core::OpId;
use xsio_xs_wire::Perm;

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
    /// right after registration; the driver passes events in with `handle_watch`.
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
    /// Pass it back to `handle_reply`.
    pub id: OpId,
    /// What to do.
    pub op: XsOp,
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
pub enum XsErrorKind {
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
pub struct XsError {
    /// What went wrong.
    pub kind: XsErrorKind,
    /// Free text for logs (the daemon's error name, the I/O error).
    pub detail: String,
}

impl XsError {
    /// An error of `kind` with a detail text.
    pub fn new(kind: XsErrorKind, detail: impl Into<String>) -> XsError {
        XsError {
            kind,
            detail: detail.into(),
        }
    }
}

/// What a machine hands its driver: a request to execute, or an event to report.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output<E> {
    /// Execute this and answer with `handle_reply`.
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
pub(crate) fn expect_value(
    id: OpId,
    result: Result<Reply, XsError>,
) -> Result<Result<Option<String>, XsError>, InputError> {
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
pub(crate) fn expect_state_value(
    id: OpId,
    result: Result<Reply, XsError>,
) -> Result<Result<Option<String>, XsError>, InputError> {
    match expect_value(id, result) {
        Ok(Err(err)) if err.kind == XsErrorKind::Access => Ok(Ok(None)),
        other => other,
    }
}

/// Checks a transaction reply; `Ok(true)` when committed, `Ok(false)` when skipped.
pub(crate) fn expect_txn(
    id: OpId,
    result: Result<Reply, XsError>,
) -> Result<Result<bool, XsError>, InputError> {
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
pub(crate) fn expect_done(
    id: OpId,
    result: Result<Reply, XsError>,
) -> Result<Result<(), XsError>, InputError> {
    match result {
        Ok(Reply::Done) => Ok(Ok(())),
        Ok(_) => Err(InputError::WrongReply {
            id,
            expected: "Done",
        }),
        Err(err) => Ok(Err(err)),
    }
}
