//! The toolstack machines' xenstore operations on a blocking [`XsConn`]: [`execute`] runs
//! one operation to completion through the one translation in [`xsio_harness::xs`].
//!
//! ```no_run
//! use xsio_harness::xs::Watches;
//! use xsio_io_std::xenbus::execute;
//! use xsio_io_std::xenstore::XsConn;
//! use xsio_ops::{Reply, XsOp};
//!
//! let mut xs = XsConn::open()?;
//! let mut watches = Watches::default();
//! let read = XsOp::Read { path: "/local/domain/1/device/vbd/51712/state".into() };
//! match execute(&mut xs, &read, &mut watches) {
//!     Ok(Reply::Value(state)) => println!("frontend state: {state:?}"),
//!     other => println!("read failed: {other:?}"),
//! }
//! # Ok::<(), xsio_io_std::xenstore::XsError>(())
//! ```

use xsio_harness::xs::{Submitted, Watches, submit, to_reply};
use xsio_ops::{OpError, OpErrorKind, Reply, XsOp};

use crate::unix::now;
use crate::xenstore::{self, XsConn};

/// Runs `op` on a blocking connection and returns the machine's answer. A failure of the
/// connection itself (not of the operation) is [`OpErrorKind::Connection`].
pub fn execute(conn: &mut XsConn, op: &XsOp, watches: &mut Watches) -> Result<Reply, OpError> {
    match submit(conn.client_mut(), now(), op, watches) {
        Submitted::Answered(reply) => reply,
        Submitted::Started(id) => match conn.wait(id) {
            Ok(response) => to_reply(op, Ok(response)),
            Err(xenstore::XsError::Op(err)) => to_reply(op, Err(err)),
            Err(other) => Err(OpError::new(OpErrorKind::Connection, other.to_string())),
        },
    }
}
