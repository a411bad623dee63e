//! What the xenstore-driven machines share besides `xsio_ops::Requests` (their request
//! table): how a device end runs, how a checked reply goes on, and the guarded state write.
//! Each machine keeps only its own protocol logic.

use crate::state::XenbusState;
use xsio_ops::{InputError, OpError, Txn, TxnOp, XsOp, split_checked};

/// Whether a device end still runs, and why it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    Running,
    Finished,
    Failed,
}

/// Goes on after a checked reply: `on_ok` with the value while `running`, `fail` for an
/// error the peer reported, and `fail` plus the input error for a reply of the wrong kind
/// (the operation counts as failed).
pub(crate) fn after_check<M, T>(
    machine: &mut M,
    running: bool,
    checked: Result<Result<T, OpError>, InputError>,
    fail: impl FnOnce(&mut M, OpError),
    on_ok: impl FnOnce(&mut M, T),
) -> Result<(), InputError> {
    let (outcome, refused) = split_checked(checked);
    match outcome {
        Ok(value) if running => on_ok(machine, value),
        Ok(_) => {}
        Err(err) => fail(machine, err),
    }
    refused
}

/// Writes `state` (after the `extra` keys) to `state_path`, guarded by the node's existence
/// so that a destroyed directory is never recreated.
pub(crate) fn write_state(state_path: String, state: XenbusState, mut extra: Vec<TxnOp>) -> XsOp {
    extra.push(TxnOp::write(state_path.clone(), state.wire()));
    XsOp::Transaction(Txn {
        only_if_exists: Some(state_path),
        ops: extra,
    })
}
