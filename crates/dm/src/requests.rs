//! The plumbing every operation shares: its request table (`xsio_ops::Requests`) and the
//! completion reported once.

use std::time::Instant;

use xsio_core::OpId;
use xsio_ops::{InputError, Op, Output, QmpOp};

/// The requests in flight of one operation (each with its purpose `P`), its queued outputs,
/// and its completion (reported once, as the only event).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Requests<P, T> {
    table: xsio_ops::Requests<P, T>,
    completed: Option<T>,
}

impl<P, T: Clone> Requests<P, T> {
    /// A new operation's table, its first request queued: the QMP connection (`connect`
    /// is its purpose). Every operation starts so.
    pub(crate) fn connecting(connect: P) -> Self {
        let mut requests = Requests {
            table: xsio_ops::Requests::new(),
            completed: None,
        };
        requests.request(connect, QmpOp::Connect);
        requests
    }

    /// Queues `op` for `purpose`.
    pub(crate) fn request(&mut self, purpose: P, op: impl Into<Op>) {
        self.table.request(purpose, op);
    }

    /// Matches a reply to its request: removes and returns the purpose of `id`. An id not in
    /// flight is refused and changes nothing.
    pub(crate) fn finish(&mut self, id: OpId) -> Result<P, InputError> {
        self.table.finish(id)
    }

    /// Reports the completion; later calls are ignored (exactly once).
    pub(crate) fn complete(&mut self, result: T) {
        if self.completed.is_none() {
            self.completed = Some(result.clone());
            self.table.event(result);
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.completed.is_some()
    }

    pub(crate) fn completed(&self) -> Option<&T> {
        self.completed.as_ref()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.table.in_flight()
    }

    /// Completed, nothing in flight, nothing left to drain: the operation will never
    /// output anything again.
    pub(crate) fn is_settled(&self) -> bool {
        self.completed.is_some() && self.table.in_flight() == 0 && self.table.is_drained()
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output<T>> {
        self.table.next_output()
    }

    /// `deadline` while the operation is not complete: a complete one waits for nothing.
    pub(crate) fn until_complete(&self, deadline: Option<Instant>) -> Option<Instant> {
        if self.is_complete() { None } else { deadline }
    }
}
