//! The request table every L2 machine keeps: op ids, what each request in flight is for,
//! and the queue of outputs. Each machine keeps only its own protocol logic.

use std::collections::VecDeque;

use xsio_core::OpId;

use crate::{InputError, Op, Output, Request};

/// The requests in flight of one machine, each with its purpose `P` (what its answer is
/// for), and the machine's queued outputs: requests and events `E`, in the order they
/// happened.
///
/// Ids start at 0 and never repeat. An answer to an id not in flight is refused with
/// [`InputError::UnknownOp`] and changes nothing, so a late or repeated answer cannot be
/// misread.
///
/// ```
/// use xsio_ops::{InputError, Output, Requests, XsOp};
///
/// let mut requests: Requests<&str, ()> = Requests::new();
/// let id = requests.request("state", XsOp::Read { path: "/be/state".into() });
/// assert!(matches!(requests.next_output(), Some(Output::Request(r)) if r.id == id));
/// assert_eq!(requests.finish(id), Ok("state"));
/// assert_eq!(requests.finish(id), Err(InputError::UnknownOp(id)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requests<P, E> {
    next: u64,
    // A short Vec, not a map: a handful of requests are in flight, and model checkers
    // clone and hash machines by the million.
    in_flight: Vec<(OpId, P)>,
    out: VecDeque<Output<E>>,
}

impl<P, E> Default for Requests<P, E> {
    fn default() -> Self {
        Requests::new()
    }
}

impl<P, E> Requests<P, E> {
    /// Nothing in flight, nothing queued; ids start at 0.
    pub fn new() -> Self {
        Requests {
            next: 0,
            in_flight: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Allocates an id for `op`, records its purpose and queues the request.
    pub fn request(&mut self, purpose: P, op: impl Into<Op>) -> OpId {
        let id = OpId::from_raw(self.next);
        // 2^64 requests cannot happen; wrapping keeps this panic-free regardless.
        self.next = self.next.wrapping_add(1);
        self.in_flight.push((id, purpose));
        self.out
            .push_back(Output::Request(Request { id, op: op.into() }));
        id
    }

    /// Queues an event, after the outputs queued before it.
    pub fn event(&mut self, event: E) {
        self.out.push_back(Output::Event(event));
    }

    /// Matches an answer to its request: removes and returns the purpose of `id`. An id
    /// not in flight is refused and changes nothing.
    pub fn finish(&mut self, id: OpId) -> Result<P, InputError> {
        let index = self
            .in_flight
            .iter()
            .position(|(op, _)| *op == id)
            .ok_or(InputError::UnknownOp(id))?;
        Ok(self.in_flight.remove(index).1)
    }

    /// How many requests await an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The purposes of the requests in flight, oldest first.
    pub fn purposes(&self) -> impl Iterator<Item = &P> {
        self.in_flight.iter().map(|(_, purpose)| purpose)
    }

    /// Nothing queued: every output has been polled.
    pub fn is_drained(&self) -> bool {
        self.out.is_empty()
    }

    /// Takes the next queued output, `None` when drained: what a machine's `poll_output`
    /// returns.
    pub fn next_output(&mut self) -> Option<Output<E>> {
        self.out.pop_front()
    }
}
