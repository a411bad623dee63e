//! What the xenstore-driven machines share besides `xsio_ops::Requests` (their request
//! table): how a device end runs, how a checked reply goes on, and the guarded state write.
//! Each machine keeps only its own protocol logic.

use crate::state::XenbusState;
use xsio_core::OpId;
use xsio_ops::{Answer, InputError, OpError, Reply, Txn, TxnOp, XsOp, split_checked};

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

/// One of the `expect_*` reply checks of `xsio_ops`.
pub(crate) type Expect<T> =
    fn(OpId, Result<Reply, OpError>) -> Result<Result<T, OpError>, InputError>;

/// A device end (backend, frontend): how an answer to one of its requests goes on.
pub(crate) trait End: Sized {
    /// Still running: a successful answer goes on.
    fn running(&self) -> bool;

    /// A request failed: the end stops.
    fn fail(&mut self, err: OpError);

    /// Checks `answer` with `expect`, then goes on as [`after_check`] does.
    fn answered<T>(
        &mut self,
        answer: Answer,
        expect: Expect<T>,
        on_ok: impl FnOnce(&mut Self, T),
    ) -> Result<(), InputError> {
        let running = self.running();
        let checked = expect(answer.id, answer.result);
        after_check(self, running, checked, Self::fail, on_ok)
    }
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
