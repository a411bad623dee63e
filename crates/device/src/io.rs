//! Request bookkeeping: op ids, what each in-flight request is for (and in which epoch of
//! the operation it was asked), and the output queue.

use std::collections::VecDeque;

use xsio_core::OpId;
use xsio_ops::{InputError, Op, Output, Request};

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Purpose {
    DomainInfo,
    DeviceModel,
    TxnStart,
    TxnRead,
    TxnDirectory,
    TxnApply,
    TxnEnd { commit: bool },
    Watch,
    Unwatch,
    WaitRead,
    ScriptKey(usize),
    HotplugError,
    Spawn,
    Kill,
}

/// The in-flight requests of a machine and its queued outputs.
///
/// Every request carries the epoch it was asked in; a phase change bumps the epoch, so a
/// reply that arrives after its phase ended (a read racing a timeout) is recognised as
/// stale and dropped rather than misread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Io<E> {
    next: u64,
    // A short Vec: a handful of requests are in flight (more only while a transaction's
    // writes are pipelined), and model checkers clone and hash machines by the million.
    in_flight: Vec<(OpId, Purpose, u32)>,
    out: VecDeque<Output<E>>,
}

impl<E> Io<E> {
    pub(crate) fn new() -> Self {
        Io {
            next: 0,
            in_flight: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Queues `op` for `purpose` in `epoch`; returns its id.
    pub(crate) fn request(&mut self, purpose: Purpose, epoch: u32, op: impl Into<Op>) -> OpId {
        let id = OpId::from_raw(self.next);
        // 2^64 operations cannot happen; wrapping keeps this panic-free regardless.
        self.next = self.next.wrapping_add(1);
        self.in_flight.push((id, purpose, epoch));
        self.out
            .push_back(Output::Request(Request { id, op: op.into() }));
        id
    }

    pub(crate) fn event(&mut self, event: E) {
        self.out.push_back(Output::Event(event));
    }

    /// Removes `id` from the in-flight table: its purpose and epoch.
    pub(crate) fn finish(&mut self, id: OpId) -> Result<(Purpose, u32), InputError> {
        let index = self
            .in_flight
            .iter()
            .position(|(op, _, _)| *op == id)
            .ok_or(InputError::UnknownOp(id))?;
        let (_, purpose, epoch) = self.in_flight.remove(index);
        Ok((purpose, epoch))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output<E>> {
        self.out.pop_front()
    }
}
