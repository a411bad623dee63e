//! The QMP client machine.

use std::collections::{BTreeSet, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use xsio_core::{Input, OpId, OpIds, Transmit, deadline};

use crate::command::{Command, Return};
use crate::error::{CloseReason, CommandError, ProtocolError};
use crate::wire::{self, Event, Framer, Greeting, Message, MessageId};

/// Limits and deadlines of one [`Client`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Deadline for the greeting and the answer to `qmp_capabilities`, from [`Client::new`].
    /// One too large to represent (`Duration::MAX`) means no deadline.
    pub negotiation_timeout: Duration,
    /// Default deadline of a command, counted from its submission. One too large to
    /// represent (`Duration::MAX`) means no deadline.
    pub command_timeout: Duration,
    /// Longest message accepted from QEMU, in bytes.
    pub max_message: usize,
    /// In-band commands sent and not yet answered, at most. The QMP spec asks for at most 8
    /// when out-of-band execution is enabled, so that QEMU keeps reading.
    pub max_in_flight: usize,
    /// Commands submitted and not yet sent, at most; beyond it a command fails with
    /// [`CommandError::Overloaded`].
    pub max_queued: usize,
    /// Events held undrained, at most; beyond it new events are dropped and counted.
    pub max_events: usize,
    /// Enables the `oob` capability when QEMU offers it.
    pub enable_oob: bool,
    /// Most bytes put into one transmit when several commands are ready.
    pub max_transmit: usize,
    /// Sends in-band commands without `id` and matches their replies by order.
    ///
    /// QEMU answers in-band commands strictly in order, and handling an `id` costs it about
    /// a sixth of a `query-status` round trip (measured on QEMU 7.2), so this is faster.
    /// The price: an id-less error QEMU sends for input it could not parse would be taken
    /// for the reply to the oldest command. This crate never sends unparsable input, so that
    /// takes a corrupted stream. Out-of-band commands always carry an id.
    pub match_by_order: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            negotiation_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
            max_message: 16 << 20,
            max_in_flight: 8,
            max_queued: 4096,
            max_events: 4096,
            enable_oob: false,
            max_transmit: 64 << 10,
            match_by_order: false,
        }
    }
}

/// What the client asks the driver to do or tells it. Drain with [`Client::poll_output`]
/// after every input and every command.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output<F = OwnedFd> {
    /// Write these bytes, in order, after those of earlier transmits. Attach the fds to the
    /// write that carries the first byte, then drop them (closing our copies).
    Transmit(Transmit<F>),
    /// Negotiation finished: the connection is in command mode.
    Connected(Session),
    /// A command finished. Each [`OpId`] appears here exactly once.
    Done {
        /// The command, as returned by [`Client::execute`].
        id: OpId,
        /// The reply, or why there is none.
        result: Result<Return, CommandError>,
    },
    /// An event from QEMU, in the order it arrived relative to replies.
    Event(Event),
    /// The connection is over; close the socket. Comes once, after the `Done` of every
    /// command that was pending.
    Closed(CloseReason),
}

/// What negotiation settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// QEMU's greeting.
    pub greeting: Greeting,
    /// Whether out-of-band execution is enabled.
    pub oob: bool,
}

/// Counters of things the client dropped rather than failed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Replies whose `id` matched no command (late replies to timed-out commands are not
    /// counted here).
    pub unknown_replies: u64,
    /// Events dropped because `Config::max_events` were waiting to be drained.
    pub events_dropped: u64,
    /// Descriptors QEMU sent us (QMP never should); they were closed.
    pub fds_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingGreeting,
    Negotiating,
    Ready,
    Closed,
}

/// A command waiting to be sent.
#[derive(Debug)]
struct Unsent<F> {
    op: OpId,
    wire_id: u64,
    command: Command<F>,
    /// `None`: the timeout was too large to represent, the command waits for ever.
    deadline: Option<Instant>,
}

/// A command on the wire, not yet answered.
#[derive(Debug)]
struct InFlight {
    op: OpId,
    wire_id: u64,
    carries_fds: bool,
    out_of_band: bool,
    eof_is_success: bool,
    deadline: Option<Instant>,
    /// Already completed (timed out or cancelled); kept until QEMU answers because QEMU may
    /// still run it, and it still holds its place in the window and the fd rule.
    abandoned: bool,
}

/// The wire id of `qmp_capabilities`; commands count from 1.
const NEGOTIATION_ID: u64 = 0;

/// A sans-IO QMP client for one connection.
///
/// # Method groups
/// - Creation: [`new(config, now)`](Client::new), right after connecting.
/// - Inputs: [`handle_input`](Client::handle_input) (bytes, fds, end of stream) and
///   [`handle_timeout`](Client::handle_timeout).
/// - Commands: [`execute`](Client::execute) returns an [`OpId`]; [`cancel`](Client::cancel);
///   [`close`](Client::close). Commands may be submitted before negotiation ends.
/// - Outputs: [`poll_output`](Client::poll_output) until `None`, then
///   [`poll_timeout`](Client::poll_timeout).
///
/// # Rules it keeps
/// - Every command completes exactly once (I1); every fd it was given is handed out in a
///   transmit or dropped, exactly once (I2); outputs are queued, never delivered from inside
///   a call (I3); memory is bounded by [`Config`] (I4); time comes only from arguments (I5).
/// - At most one fd-carrying command is unanswered on the wire (I6): QEMU keeps only the fds
///   of the latest message that carried any, so a second fd could replace the first before
///   its command ran. Commands without fds pipeline around it; order is never changed.
/// - In-band replies come in order but are matched by id; replies with unknown ids are
///   dropped and counted; an error reply without id is fatal.
#[derive(Debug)]
pub struct Client<F = OwnedFd> {
    config: Config,
    phase: Phase,
    /// `None`: negotiation may take for ever (a timeout too large to represent).
    negotiation_deadline: Option<Instant>,
    framer: Framer,
    ops: OpIds,
    next_wire_id: u64,
    unsent: VecDeque<Unsent<F>>,
    in_flight: VecDeque<InFlight>,
    in_band_in_flight: usize,
    fd_command_in_flight: bool,
    deadlines: BTreeSet<(Instant, u64)>,
    outputs: VecDeque<Output<F>>,
    events_queued: usize,
    stats: Stats,
    session: Option<Session>,
}

impl<F> Client<F> {
    /// A client for a connection just opened at `now`; it waits for QEMU's greeting.
    pub fn new(config: Config, now: Instant) -> Self {
        Client {
            negotiation_deadline: deadline(now, config.negotiation_timeout),
            framer: Framer::new(config.max_message),
            config,
            phase: Phase::AwaitingGreeting,
            ops: OpIds::default(),
            next_wire_id: NEGOTIATION_ID + 1,
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_band_in_flight: 0,
            fd_command_in_flight: false,
            deadlines: BTreeSet::new(),
            outputs: VecDeque::new(),
            events_queued: 0,
            stats: Stats::default(),
            session: None,
        }
    }

    /// Submits a command. It completes later, exactly once, as [`Output::Done`].
    pub fn execute(&mut self, now: Instant, command: Command<F>) -> OpId {
        let op = self.ops.next_id();
        if self.phase == Phase::Closed {
            self.complete(op, Err(CommandError::Disconnected));
            return op;
        }
        if self.unsent.len() >= self.config.max_queued {
            self.complete(op, Err(CommandError::Overloaded));
            return op;
        }
        let wire_id = self.next_wire_id;
        self.next_wire_id += 1;
        let timeout = command.timeout.unwrap_or(self.config.command_timeout);
        let deadline = deadline(now, timeout);
        if let Some(at) = deadline {
            self.deadlines.insert((at, wire_id));
        }
        let entry = Unsent {
            op,
            wire_id,
            command,
            deadline,
        };
        // Out-of-band first, then chained, then the rest, each in submission order.
        let rank = |u: &Unsent<F>| match (u.command.out_of_band, u.command.chained) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        };
        let my_rank = rank(&entry);
        if my_rank == 2 {
            self.unsent.push_back(entry);
        } else {
            let at = self
                .unsent
                .iter()
                .position(|u| rank(u) > my_rank)
                .unwrap_or(self.unsent.len());
            self.unsent.insert(at, entry);
        }
        op
    }

    /// Cancels a command. Returns `false` if it already completed.
    ///
    /// An unsent command is dropped with its fds; a sent one is forgotten (QEMU may still
    /// run it). Either way it completes with [`CommandError::Cancelled`].
    pub fn cancel(&mut self, now: Instant, op: OpId) -> bool {
        let _ = now;
        if let Some(at) = self.unsent.iter().position(|u| u.op == op) {
            let entry = self.unsent.remove(at).expect("position is in range");
            self.forget_deadline(entry.deadline, entry.wire_id);
            drop(entry.command.fds);
            self.complete(op, Err(CommandError::Cancelled));
            return true;
        }
        if let Some(entry) = self
            .in_flight
            .iter_mut()
            .find(|f| f.op == op && !f.abandoned)
        {
            entry.abandoned = true;
            let (at, wire_id) = (entry.deadline, entry.wire_id);
            self.forget_deadline(at, wire_id);
            self.complete(op, Err(CommandError::Cancelled));
            return true;
        }
        false
    }

    /// Ends the connection: every pending command fails with [`CommandError::Disconnected`],
    /// unsent fds are closed, and [`Output::Closed`] follows. The driver then closes the socket.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        self.shut(CloseReason::ClosedByCaller);
    }

    /// Feeds what the driver read from the socket.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_, F>) {
        // The order of the input and the deadline matters only for timers; messages are
        // handled as they come whatever the time.
        let _ = now;
        match input {
            Input::Bytes(mut bytes) => {
                while self.phase != Phase::Closed {
                    match self.framer.next_frame(&mut bytes) {
                        Ok(Some(frame)) => match wire::decode(&frame) {
                            Ok(message) => self.handle_message(message),
                            Err(e) => self.shut(ProtocolError::Wire(e).into()),
                        },
                        Ok(None) => break,
                        Err(e) => self.shut(ProtocolError::Wire(e).into()),
                    }
                }
            }
            Input::Fds(fds) => {
                // QMP never sends descriptors to its client; close them.
                self.stats.fds_received += fds.len() as u64;
            }
            Input::Closed => self.shut(CloseReason::PeerClosed),
        }
    }

    /// Tells the client the time is now `now`: fails commands and negotiation past deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let negotiation_late = self.negotiation_deadline.is_some_and(|d| now >= d);
        if self.phase != Phase::Ready && negotiation_late {
            self.shut(ProtocolError::NegotiationTimeout.into());
            return;
        }
        while let Some(&(deadline, wire_id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(at) = self.unsent.iter().position(|u| u.wire_id == wire_id) {
                let entry = self.unsent.remove(at).expect("position is in range");
                drop(entry.command.fds);
                self.complete(entry.op, Err(CommandError::Timeout));
            } else if let Some(entry) = self.in_flight.iter_mut().find(|f| f.wire_id == wire_id) {
                entry.abandoned = true;
                let op = entry.op;
                self.complete(op, Err(CommandError::Timeout));
            }
        }
    }

    /// The next output, or `None` when drained.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output<F>> {
        if let Some(out) = self.outputs.pop_front() {
            if matches!(out, Output::Event(_)) {
                self.events_queued -= 1;
            }
            return Some(out);
        }
        self.next_transmit().map(Output::Transmit)
    }

    /// When [`handle_timeout`](Client::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let command = self.deadlines.first().map(|&(d, _)| d);
        match self.phase {
            Phase::Closed => None,
            Phase::Ready => command,
            _ => match (command, self.negotiation_deadline) {
                (Some(c), Some(n)) => Some(c.min(n)),
                (c, n) => c.or(n),
            },
        }
    }

    /// What negotiation settled, once it has.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Commands submitted and not yet completed or sent.
    pub fn queued(&self) -> usize {
        self.unsent.len()
    }

    /// Counters of dropped replies, events and descriptors.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn complete(&mut self, id: OpId, result: Result<Return, CommandError>) {
        self.outputs.push_back(Output::Done { id, result });
    }

    fn handle_message(&mut self, message: Message) {
        match (self.phase, message) {
            (_, Message::Event(event)) => {
                if self.events_queued >= self.config.max_events {
                    self.stats.events_dropped += 1;
                } else {
                    self.events_queued += 1;
                    self.outputs.push_back(Output::Event(event));
                }
            }
            (Phase::AwaitingGreeting, Message::Greeting(greeting)) => {
                let oob = self.config.enable_oob && greeting.offers("oob");
                let arguments = oob.then(|| json!({"enable": ["oob"]}));
                let mut bytes = Vec::with_capacity(96);
                wire::encode_command(
                    &mut bytes,
                    "qmp_capabilities",
                    arguments.as_ref(),
                    Some(NEGOTIATION_ID),
                    false,
                );
                self.outputs
                    .push_back(Output::Transmit(Transmit::bytes(Bytes::from(bytes))));
                self.session = Some(Session { greeting, oob });
                self.phase = Phase::Negotiating;
            }
            (Phase::AwaitingGreeting, _) => self.shut(ProtocolError::ExpectedGreeting.into()),
            (_, Message::Greeting(_)) => self.shut(ProtocolError::UnexpectedGreeting.into()),
            (Phase::Negotiating, Message::Return { id, .. }) if is_negotiation(&id) => {
                self.phase = Phase::Ready;
                if let Some(session) = self.session.clone() {
                    self.outputs.push_back(Output::Connected(session));
                }
            }
            (Phase::Negotiating, Message::Error { id, error }) if is_negotiation(&id) => {
                self.shut(ProtocolError::NegotiationRefused(error).into());
            }
            (_, Message::Return { id: None, value }) => match self.oldest_in_band() {
                Some(at) => self.finish(at, Ok(Return::new(value))),
                None => self.shut(ProtocolError::UnattributedReturn.into()),
            },
            (_, Message::Error { id: None, error }) => match self.oldest_in_band() {
                Some(at) => self.finish(at, Err(CommandError::Qmp(error))),
                None => self.shut(ProtocolError::UnattributedError(error).into()),
            },
            (
                _,
                Message::Return {
                    id: Some(id),
                    value,
                },
            ) => self.handle_reply(&id, Ok(Return::new(value))),
            (
                _,
                Message::Error {
                    id: Some(id),
                    error,
                },
            ) => self.handle_reply(&id, Err(CommandError::Qmp(error))),
        }
    }

    fn handle_reply(&mut self, id: &MessageId, result: Result<Return, CommandError>) {
        let found = id
            .as_u64()
            .and_then(|wire_id| self.in_flight.iter().position(|f| f.wire_id == wire_id));
        let Some(at) = found else {
            self.stats.unknown_replies += 1;
            return;
        };
        self.finish(at, result);
    }

    /// Where the reply to an id-less command is: the oldest in-band command on the wire, when
    /// commands go without ids.
    fn oldest_in_band(&self) -> Option<usize> {
        if !self.config.match_by_order || self.phase != Phase::Ready {
            return None;
        }
        self.in_flight.iter().position(|f| !f.out_of_band)
    }

    /// Removes the in-flight command at `at` and completes it, unless it already was.
    fn finish(&mut self, at: usize, result: Result<Return, CommandError>) {
        let entry = self.in_flight.remove(at).expect("position is in range");
        if entry.carries_fds {
            self.fd_command_in_flight = false;
        }
        if !entry.out_of_band {
            self.in_band_in_flight -= 1;
        }
        if !entry.abandoned {
            self.forget_deadline(entry.deadline, entry.wire_id);
            self.complete(entry.op, result);
        }
    }

    /// Removes a command's deadline from the timer set (commands without one are not in it).
    fn forget_deadline(&mut self, deadline: Option<Instant>, wire_id: u64) {
        if let Some(at) = deadline {
            self.deadlines.remove(&(at, wire_id));
        }
    }

    /// Gathers the commands that may go now into one transmit.
    fn next_transmit(&mut self) -> Option<Transmit<F>> {
        if self.phase != Phase::Ready {
            return None;
        }
        let oob_enabled = self.session.as_ref().is_some_and(|s| s.oob);
        let mut bytes: Vec<u8> = Vec::new();
        let mut fds = Vec::new();
        while let Some(head) = self.unsent.front() {
            let out_of_band = head.command.out_of_band && oob_enabled;
            let carries_fds = !head.command.fds.is_empty();
            if !out_of_band && self.in_band_in_flight >= self.config.max_in_flight {
                break;
            }
            // I6, and the fds ride on the first byte of their own command's transmit.
            if carries_fds && (self.fd_command_in_flight || !bytes.is_empty()) {
                break;
            }
            if !bytes.is_empty() && bytes.len() >= self.config.max_transmit {
                break;
            }
            let entry = self.unsent.pop_front().expect("front exists");
            let command = entry.command;
            let id = (out_of_band || !self.config.match_by_order).then_some(entry.wire_id);
            wire::encode_command(
                &mut bytes,
                &command.name,
                command.arguments.as_ref(),
                id,
                out_of_band,
            );
            if carries_fds {
                fds = command.fds;
                self.fd_command_in_flight = true;
            }
            if !out_of_band {
                self.in_band_in_flight += 1;
            }
            self.in_flight.push_back(InFlight {
                op: entry.op,
                wire_id: entry.wire_id,
                carries_fds,
                out_of_band,
                eof_is_success: command.eof_is_success,
                deadline: entry.deadline,
                abandoned: false,
            });
        }
        if bytes.is_empty() {
            return None;
        }
        Some(Transmit::with_fds(Bytes::from(bytes), fds))
    }

    /// Fails everything pending, once, and reports why the connection ended.
    fn shut(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        let error = reason.command_error();
        for entry in std::mem::take(&mut self.in_flight) {
            if entry.abandoned {
                continue;
            }
            let result = if entry.eof_is_success && reason == CloseReason::PeerClosed {
                Ok(Return::empty())
            } else {
                Err(error.clone())
            };
            self.complete(entry.op, result);
        }
        for entry in std::mem::take(&mut self.unsent) {
            drop(entry.command.fds);
            self.complete(entry.op, Err(error.clone()));
        }
        self.deadlines.clear();
        self.in_band_in_flight = 0;
        self.fd_command_in_flight = false;
        self.outputs.push_back(Output::Closed(reason));
    }
}

fn is_negotiation(id: &Option<MessageId>) -> bool {
    id.as_ref().and_then(MessageId::as_u64) == Some(NEGOTIATION_ID)
}

xsio_core::impl_protocol_machine!(impl<F> Machine for Client<F> {
    input<'a> = Input<'a, F>;
    output = Output<F>;
    |client, now, input| client.handle_input(now, input)
});
