//! The plumbing the xenstore-driven machines share: op ids, what each in-flight request is
//! for, the output queue, and how a checked reply goes on. Each machine keeps only its own
//! protocol logic.

use std::collections::VecDeque;

use xsio_core::OpId;

use crate::state::XenbusState;
use xsio_ops::{InputError, OpError, OpErrorKind, Output, Request, Txn, TxnOp, XsOp};

/// Whether a device end still runs, and why it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    Running,
    Finished,
    Failed,
}

/// The in-flight requests of a machine (each with its purpose `P`) and its queued outputs
/// (events `E` and requests, in the order they happened).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Requests<P, E> {
    next: u64,
    // A short Vec, not a map: a handful of requests are in flight, and model checkers
    // clone and hash machines by the million.
    in_flight: Vec<(OpId, P)>,
    out: VecDeque<Output<E>>,
}

impl<P, E> Requests<P, E> {
    /// Nothing in flight, nothing queued; ids start at 0.
    pub(crate) fn new() -> Self {
        Requests {
            next: 0,
            in_flight: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Allocates an id for `op`, records its purpose and queues the request.
    pub(crate) fn request(&mut self, purpose: P, op: XsOp) {
        let id = OpId::from_raw(self.next);
        // 2^64 operations cannot happen; wrapping keeps this panic-free regardless.
        self.next = self.next.wrapping_add(1);
        self.in_flight.push((id, purpose));
        self.out
            .push_back(Output::Request(Request { id, op: op.into() }));
    }

    /// Queues an event.
    pub(crate) fn event(&mut self, event: E) {
        self.out.push_back(Output::Event(event));
    }

    /// Matches a reply to its request: removes and returns the purpose of `id`.
    pub(crate) fn finish(&mut self, id: OpId) -> Result<P, InputError> {
        let idx = self
            .in_flight
            .iter()
            .position(|(op, _)| *op == id)
            .ok_or(InputError::UnknownOp(id))?;
        Ok(self.in_flight.remove(idx).1)
    }

    /// How many requests await a reply.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The next output, or `None` when drained.
    pub(crate) fn poll_output(&mut self) -> Option<Output<E>> {
        self.out.pop_front()
    }
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
    match checked {
        Ok(Ok(value)) => {
            if running {
                on_ok(machine, value);
            }
            Ok(())
        }
        Ok(Err(err)) => {
            fail(machine, err);
            Ok(())
        }
        Err(wrong) => {
            fail(
                machine,
                OpError::new(OpErrorKind::Invalid, wrong.to_string()),
            );
            Err(wrong)
        }
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
