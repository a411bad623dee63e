//! The toolstack's wait for a `state` node to reach a value (libxl's devstate wait).

use std::time::{Duration, Instant};

use thiserror::Error;
use xsio_core::deadline;

use crate::requests::after_check;
use crate::state::{StateError, XenbusState};
use xsio_ops::{
    Answer, InputError, OpError, Output, Requests, XsOp, expect_done, expect_state_value,
};

/// What a [`StateWaiter`] waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WaiterConfig {
    /// The `state` node.
    pub path: String,
    /// Any of these ends the wait. Include [`XenbusState::Unknown`] to accept a missing
    /// node (a device already destroyed); otherwise a node not there yet is waited for,
    /// and one that goes away ends the wait with [`WaitError::Vanished`].
    pub wanted: Vec<XenbusState>,
    /// How long to wait.
    pub timeout: Duration,
    /// The watch token (unique on the driver's connection).
    pub token: String,
}

/// Why a wait ended without reaching a wanted state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed.
    #[error("timed out waiting; last state seen: {last:?}")]
    TimedOut {
        /// The last state read, if any read succeeded.
        last: Option<XenbusState>,
    },
    /// The caller cancelled the wait.
    #[error("wait cancelled")]
    Cancelled,
    /// The node was there and went away (its directory was removed): it will not reach a
    /// wanted state (libxl's devstate wait fails the same way). A node not there yet is
    /// waited for.
    #[error("the node went away; last state seen: {last:?}")]
    Vanished {
        /// The last state read before it went.
        last: Option<XenbusState>,
    },
    /// A xenstore operation failed.
    #[error(transparent)]
    Xenstore(#[from] OpError),
}

/// What a [`StateWaiter`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitEvent {
    /// A state was read that does not end the wait (an intermediate or stale value).
    StillWaiting(XenbusState),
    /// The node holds garbage; the wait goes on (it may be rewritten).
    Garbage(StateError),
    /// The wait ended. Reported exactly once.
    Done(Result<XenbusState, WaitError>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Watch,
    Unwatch,
    Read,
}

/// Waits until a `state` node holds one of the wanted values, or a timeout passes.
///
/// It watches the node and re-reads it on every event (xenstore events carry no value, and
/// several changes may be seen as one): intermediate values, duplicate events and a node
/// not there yet only keep it waiting; a node that goes away ends the wait
/// ([`WaitError::Vanished`]). The watch fires once on registration, so a state reached
/// before the wait started is seen.
///
/// ```
/// use std::time::{Duration, Instant};
/// use xsio_ops::{Answer, Op, Output, Reply, XsOp};
/// use xsio_xenbus::{StateWaiter, WaitEvent, WaiterConfig, XenbusState};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut waiter = StateWaiter::new(WaiterConfig {
///     path: "/local/domain/0/backend/qdisk/1/51712/state".into(),
///     wanted: vec![XenbusState::Closed],
///     timeout: Duration::from_secs(10),
///     token: "wait".into(),
/// }, now);
/// let Some(Output::Request(watch)) = waiter.poll_output() else { unreachable!() };
/// waiter.handle_reply(now, Answer::new(watch.id, Ok(Reply::Done)))?;
/// waiter.handle_watch(now, "/local/domain/0/backend/qdisk/1/51712/state", "wait");
/// let Some(Output::Request(read)) = waiter.poll_output() else { unreachable!() };
/// assert!(matches!(read.op, Op::Xs(XsOp::Read { .. })));
/// waiter.handle_reply(now, Answer::new(read.id, Ok(Reply::Value(Some("6".into())))))?;
/// assert_eq!(waiter.poll_output(), Some(Output::Event(WaitEvent::Done(Ok(XenbusState::Closed)))));
/// # Ok::<(), xsio_ops::InputError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateWaiter {
    config: WaiterConfig,
    requests: Requests<Purpose, WaitEvent>,
    deadline: Option<Instant>,
    last: Option<XenbusState>,
    /// Whether a read found the node (a later missing read means it went away).
    seen: bool,
    result: Option<Result<XenbusState, WaitError>>,
}

impl StateWaiter {
    /// Starts waiting: registers the watch and arms the timeout.
    pub fn new(config: WaiterConfig, now: Instant) -> StateWaiter {
        let mut waiter = StateWaiter {
            // A timeout too large for `Instant` means no deadline.
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::new(),
            last: None,
            seen: false,
            result: None,
        };
        let op = XsOp::Watch {
            path: waiter.config.path.clone(),
            token: waiter.config.token.clone(),
        };
        waiter.requests.request(Purpose::Watch, op);
        waiter
    }

    /// The result, once the wait ended.
    pub fn result(&self) -> Option<&Result<XenbusState, WaitError>> {
        self.result.as_ref()
    }

    /// Whether the wait ended.
    pub fn is_done(&self) -> bool {
        self.result.is_some()
    }

    /// How many requests await a reply.
    pub fn in_flight(&self) -> usize {
        self.requests.in_flight()
    }

    /// The caller gives up: the wait ends with [`WaitError::Cancelled`].
    pub fn cancel(&mut self, _now: Instant) {
        self.finish(Err(WaitError::Cancelled));
    }

    /// A watch event; other tokens, and events after the end, are ignored.
    pub fn handle_watch(&mut self, _now: Instant, _path: &str, token: &str) {
        if self.result.is_some() || token != self.config.token {
            return;
        }
        let path = self.config.path.clone();
        self.requests.request(Purpose::Read, XsOp::Read { path });
    }

    /// The result of a request.
    pub fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
        let Answer { id, result } = answer;
        let outcome = match self.requests.finish(id)? {
            Purpose::Watch | Purpose::Unwatch => expect_done(id, result).map(|r| r.map(|()| None)),
            Purpose::Read => expect_state_value(id, result).map(|r| r.map(Some)),
        };
        // A value after the end is dropped by `on_value`, so the reply goes on regardless.
        let fail = |me: &mut Self, err| me.finish(Err(WaitError::Xenstore(err)));
        after_check(self, true, outcome, fail, |me, read| {
            if let Some(value) = read {
                me.on_value(value);
            }
        })
    }

    /// Time passed: after the deadline the wait ends with [`WaitError::TimedOut`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            let last = self.last;
            self.finish(Err(WaitError::TimedOut { last }));
        }
    }

    /// The next output, or `None` when drained.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output<WaitEvent>> {
        self.requests.next_output()
    }

    /// The deadline while waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.result.is_none())
    }

    fn on_value(&mut self, value: Option<String>) {
        if self.result.is_some() {
            return;
        }
        if value.is_some() {
            self.seen = true;
        } else if self.seen && !self.config.wanted.contains(&XenbusState::Unknown) {
            let last = self.last;
            self.finish(Err(WaitError::Vanished { last }));
            return;
        }
        match XenbusState::from_node(value.as_deref()) {
            Ok(state) if self.config.wanted.contains(&state) => {
                self.last = Some(state);
                self.finish(Ok(state));
            }
            Ok(state) => {
                if value.is_some() {
                    self.last = Some(state);
                }
                self.requests.event(WaitEvent::StillWaiting(state));
            }
            Err(err) => self.requests.event(WaitEvent::Garbage(err)),
        }
    }

    fn finish(&mut self, result: Result<XenbusState, WaitError>) {
        if self.result.is_some() {
            return;
        }
        self.result = Some(result.clone());
        self.deadline = None;
        self.requests.event(WaitEvent::Done(result));
        let op = XsOp::Unwatch {
            path: self.config.path.clone(),
            token: self.config.token.clone(),
        };
        self.requests.request(Purpose::Unwatch, op);
    }
}

xsio_ops::impl_machine!(StateWaiter, WaitEvent, watch: handle_watch);
