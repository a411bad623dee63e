//! The reply checks: whether an answer is of the kind its operation is answered with.

use serde_json::Value;
use xsio_core::OpId;

use crate::{
    DomainState, FdHandle, InputError, OpError, OpErrorKind, ProcessExit, QmpSession, Reply, TxnId,
};

/// A checked reply, what an `expect_*` function gives: `Err` for a reply of the wrong kind
/// (the machine refuses it), else the operation's outcome, its value or the error it failed
/// with.
pub type Checked<V> = Result<Result<V, OpError>, InputError>;

/// Splits a checked reply (what an `expect_*` function gives) into what the operation goes
/// on with and what its `handle_input` returns: the value or the error the request failed
/// with, and `Err` for a reply of the wrong kind, which fails the request too (as an
/// [`OpErrorKind::Invalid`] error), as [`InputError::WrongReply`] says.
///
/// ```
/// use xsio_core::OpId;
/// use xsio_ops::{InputError, OpErrorKind, Reply, expect_done, split_checked};
///
/// let id = OpId::from_raw(1);
/// let (outcome, refused) = split_checked(expect_done(id, Ok(Reply::Done)));
/// assert_eq!((outcome, refused), (Ok(()), Ok(())));
/// let (outcome, refused) = split_checked(expect_done(id, Ok(Reply::Value(None))));
/// assert_eq!(outcome.unwrap_err().kind, OpErrorKind::Invalid);
/// assert!(matches!(refused, Err(InputError::WrongReply { .. })));
/// ```
pub fn split_checked<V>(checked: Checked<V>) -> (Result<V, OpError>, Result<(), InputError>) {
    match checked {
        Ok(result) => (result, Ok(())),
        Err(wrong) => (
            Err(OpError::new(OpErrorKind::Invalid, wrong.to_string())),
            Err(wrong),
        ),
    }
}

/// The one check behind every `expect_*`: `take` gives the value of a reply of the kind
/// the operation is answered with and `None` for any other kind, which is refused as not
/// `expected`. An error answer is the operation's outcome.
fn check<V>(
    id: OpId,
    result: Result<Reply, OpError>,
    expected: &'static str,
    take: impl FnOnce(Reply) -> Option<V>,
) -> Checked<V> {
    match result {
        Ok(reply) => take(reply)
            .map(Ok)
            .ok_or(InputError::WrongReply { id, expected }),
        Err(err) => Ok(Err(err)),
    }
}

/// Declares `expect_*` functions, one a line: the name, the value it gives, the name of
/// the reply kind(s) for [`InputError::WrongReply`], and the reply patterns it takes.
macro_rules! expect_replies {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident -> $value:ty : $expected:literal, $($reply:pat => $taken:expr),+ ;
    )*) => {$(
        $(#[doc = $doc])*
        pub fn $name(id: OpId, result: Result<Reply, OpError>) -> Checked<$value> {
            check(id, result, $expected, |reply| match reply {
                $($reply => Some($taken),)+
                _ => None,
            })
        }
    )*};
}

expect_replies! {
    /// Checks a reply against the kind of operation it answers.
    expect_value -> Option<String>: "Value", Reply::Value(value) => value;
    /// Checks a transaction reply; `Ok(true)` when committed, `Ok(false)` when skipped.
    expect_txn -> bool: "Committed or Skipped", Reply::Committed => true, Reply::Skipped => false;
    /// Checks the reply to a [`QmpOp::Command`](crate::QmpOp::Command): its `return` value.
    expect_qmp -> Value: "Qmp", Reply::Qmp(value) => value;
    /// Checks the reply to a [`QmpOp::Connect`](crate::QmpOp::Connect).
    expect_session -> QmpSession: "QmpConnected", Reply::QmpConnected(session) => session;
    /// Checks the reply to a [`FileOp::Open`](crate::FileOp::Open).
    expect_fd -> FdHandle: "Fd", Reply::Fd(fd) => fd;
    /// Checks a watch/unwatch reply (and any other operation answered with [`Reply::Done`]).
    expect_done -> (): "Done", Reply::Done => ();
    /// Checks a listing reply ([`XsOp::Directory`](crate::XsOp::Directory),
    /// [`XsOp::TxnDirectory`](crate::XsOp::TxnDirectory)).
    expect_children -> Option<Vec<String>>: "Children", Reply::Children(children) => children;
    /// Checks the reply to [`XsOp::TxnStart`](crate::XsOp::TxnStart).
    expect_txn_started -> TxnId: "TxnStarted", Reply::TxnStarted(txn) => txn;
    /// Checks the reply to a committing [`XsOp::TxnEnd`](crate::XsOp::TxnEnd).
    expect_committed -> (): "Committed", Reply::Committed => ();
    /// Checks the reply to [`HostOp::DomainInfo`](crate::HostOp::DomainInfo).
    expect_domain -> DomainState: "Domain", Reply::Domain(state) => state;
    /// Checks the reply to [`HostOp::DeviceModelAlive`](crate::HostOp::DeviceModelAlive);
    /// `Ok(true)` when alive.
    expect_device_model -> bool: "DeviceModel", Reply::DeviceModel { alive } => alive;
}

/// Checks the reply to a read of the other end's `state`: as Linux's
/// `xenbus_read_driver_state`, a node we may not read counts as missing. (xenstored answers
/// EACCES, not ENOENT, for a missing node whose parent the reader may not see: that is
/// how a guest sees a destroyed backend directory.)
pub fn expect_state_value(id: OpId, result: Result<Reply, OpError>) -> Checked<Option<String>> {
    match expect_value(id, result) {
        Ok(Err(err)) if err.kind == OpErrorKind::Access => Ok(Ok(None)),
        other => other,
    }
}

/// Checks the reply to [`HostOp::Spawn`](crate::HostOp::Spawn). A driver's error (it cannot
/// run programs) is reported as the program failing to start.
pub fn expect_exited(id: OpId, result: Result<Reply, OpError>) -> Result<ProcessExit, InputError> {
    let outcome = check(id, result, "Exited", |reply| match reply {
        Reply::Exited(exit) => Some(exit),
        _ => None,
    })?;
    Ok(outcome.unwrap_or_else(|err| ProcessExit::FailedToStart(err.to_string())))
}
