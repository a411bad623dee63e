//! The plumbing every operation shares: request ids, what each request in flight is for,
//! the output queue, and the completion reported once.

use std::collections::VecDeque;

use xsio_core::OpId;
use xsio_ops::{InputError, Op, OpError, OpErrorKind, Output, Request};

/// The requests in flight of one operation (each with its purpose `P`), its queued outputs,
/// and its completion (reported once, as the only event).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Requests<P, T> {
    next: u64,
    in_flight: Vec<(OpId, P)>,
    out: VecDeque<Output<T>>,
    completed: Option<T>,
}

impl<P, T: Clone> Requests<P, T> {
    pub(crate) fn new() -> Self {
        Requests {
            next: 0,
            in_flight: Vec::new(),
            out: VecDeque::new(),
            completed: None,
        }
    }

    /// Queues `op` for `purpose`.
    pub(crate) fn request(&mut self, purpose: P, op: impl Into<Op>) {
        let id = OpId::from_raw(self.next);
        // 2^64 requests cannot happen; wrapping keeps this panic-free regardless.
        self.next = self.next.wrapping_add(1);
        self.in_flight.push((id, purpose));
        self.out
            .push_back(Output::Request(Request { id, op: op.into() }));
    }

    /// Matches a reply to its request: removes and returns the purpose of `id`. An id not in
    /// flight is refused and changes nothing.
    pub(crate) fn finish(&mut self, id: OpId) -> Result<P, InputError> {
        let index = self
            .in_flight
            .iter()
            .position(|(op, _)| *op == id)
            .ok_or(InputError::UnknownOp(id))?;
        Ok(self.in_flight.remove(index).1)
    }

    /// Reports the completion; later calls are ignored (exactly once).
    pub(crate) fn complete(&mut self, result: T) {
        if self.completed.is_none() {
            self.completed = Some(result.clone());
            self.out.push_back(Output::Event(result));
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.completed.is_some()
    }

    pub(crate) fn completed(&self) -> Option<&T> {
        self.completed.as_ref()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Completed, nothing in flight, nothing left to drain: the operation will never
    /// output anything again.
    pub(crate) fn is_settled(&self) -> bool {
        self.completed.is_some() && self.in_flight.is_empty() && self.out.is_empty()
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output<T>> {
        self.out.pop_front()
    }
}

/// What a checked reply gives: the value, or the error the operation fails with. A reply
/// of the wrong kind is refused (`Err` of the outer result) and also counts as a failure
/// of the request, as [`InputError::WrongReply`] says.
pub(crate) fn checked<V>(
    checked: Result<Result<V, OpError>, InputError>,
) -> (Result<V, OpError>, Result<(), InputError>) {
    match checked {
        Ok(result) => (result, Ok(())),
        Err(wrong) => (
            Err(OpError::new(OpErrorKind::Invalid, wrong.to_string())),
            Err(wrong),
        ),
    }
}
