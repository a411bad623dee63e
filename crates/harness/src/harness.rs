//! The one harness: machines on connections, their requests and answers in queues, and a
//! virtual clock.

use crate::timers::Timers;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;
use xsio_core::{Machine, OpId};
use xsio_ops::{Input, InputError, Op, OpError, Output, PeerEvent, Reply, Request, XsOp};

/// A toolstack machine as the harness drives it: any [`Machine`] that speaks the
/// [`xsio_ops`] vocabulary. Implemented for every such machine; several kinds of machine
/// share one harness through an enum made with [`actors!`](crate::actors).
pub trait Actor {
    /// What the machine reports besides requests.
    type Event;

    /// Feeds a reply or a watch event.
    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError>;
    /// Time reached `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The next output, `None` when drained.
    fn poll_output(&mut self) -> Option<Output<Self::Event>>;
    /// The machine's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl<M, E> Actor for M
where
    M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>, Error = InputError>,
{
    type Event = E;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        Machine::handle_input(self, now, input)
    }

    fn handle_timeout(&mut self, now: Instant) {
        Machine::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Output<E>> {
        Machine::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Machine::poll_timeout(self)
    }
}

/// A machine's place in a [`Harness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(usize);

impl ActorId {
    /// The index, in the order machines were added (0, 1, ...).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A xenstore connection of a [`Harness`] (the store decides what it is connected to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conn(usize);

impl Conn {
    pub(crate) fn at(index: usize) -> Conn {
        Conn(index)
    }

    /// The index, in the order connections were opened (0, 1, ...).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who issued a request: a machine, or the harness's caller ([`Harness::submit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A machine added with [`Harness::add`].
    Actor(ActorId),
    /// The caller; its answers appear only in the [log](Harness::take_log).
    Caller,
}

/// What happened, in order, for whoever watches a run (a trace, a property check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<E> {
    /// A machine (or the caller) issued a request.
    Request {
        /// Who asked.
        owner: Owner,
        /// The request.
        request: Request,
    },
    /// A request was answered and the answer handed to its owner.
    Reply {
        /// Who asked.
        owner: Owner,
        /// The request's id.
        id: OpId,
        /// What was asked.
        op: Op,
        /// The answer.
        result: Result<Reply, OpError>,
    },
    /// A watch event was handed to whoever registered the watch.
    Watch {
        /// The machine, or the caller.
        owner: Owner,
        /// The path that fired.
        path: String,
        /// The watch's token.
        token: String,
    },
    /// The peer of a connection reported something on its own (a QMP event, the QMP
    /// connection's end, QEMU's exit); it was handed to every machine on the connection.
    Peer {
        /// The connection.
        conn: Conn,
        /// What happened.
        event: PeerEvent,
    },
    /// A machine's deadline fired.
    Timeout {
        /// The machine.
        actor: ActorId,
    },
    /// A machine reported an event.
    Event {
        /// The machine.
        actor: ActorId,
        /// The event.
        event: E,
    },
}

/// A broken promise, found while driving: the harness stops rather than go on from a world
/// that cannot happen.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A machine refused an input it was handed.
    #[error("machine {actor:?} refused an input: {source}")]
    Refused {
        /// The machine.
        actor: ActorId,
        /// Why.
        source: InputError,
    },
    /// A store answered a request that was not in flight (twice, or never issued).
    #[error("request {id} of {owner:?} answered but not in flight")]
    NotInFlight {
        /// Who it was for.
        owner: Owner,
        /// The request.
        id: OpId,
    },
    /// No such machine or connection.
    #[error("unknown machine or connection")]
    Unknown,
    /// [`Harness::drive`] went on for its whole step budget.
    #[error("the world did not settle in {0} steps")]
    NoProgress(usize),
    /// The store failed (its connection closed, its daemon refused a frame).
    #[error("store: {0}")]
    Store(String),
}

/// The connections whose inbound queue is not empty: by the sequence number of their head
/// (for [`Harness::deliver`]'s global order) and as a list (for a seeded pick).
#[derive(Clone, Debug, Default)]
struct Ready {
    heads: BTreeSet<(u64, usize)>,
    list: Vec<usize>,
    /// Connection → its index in `list`.
    pos: Vec<Option<usize>>,
}

impl Ready {
    /// `conn`'s queue was empty and now has a head numbered `seq`.
    fn insert(&mut self, conn: usize, seq: u64) {
        self.heads.insert((seq, conn));
        if let Some(slot) = self.pos.get_mut(conn) {
            *slot = Some(self.list.len());
            self.list.push(conn);
        }
    }

    /// `conn`'s head `seq` was delivered; `next` is its new head, if any.
    fn advance(&mut self, conn: usize, seq: u64, next: Option<u64>) {
        self.heads.remove(&(seq, conn));
        match next {
            Some(next) => {
                self.heads.insert((next, conn));
            }
            None => {
                let Some(at) = self.pos.get_mut(conn).and_then(Option::take) else {
                    return;
                };
                self.list.swap_remove(at);
                if let Some(&moved) = self.list.get(at) {
                    self.pos[moved] = Some(at);
                }
            }
        }
    }
}

/// Something that executes the requests a [`Harness`] holds: takes them with
/// [`Harness::take_request`] and answers with [`Harness::reply`] and
/// [`Harness::watch_event`], at once or over later steps.
pub trait Store<A: Actor> {
    /// Executes what it can. `Ok(true)` when anything moved (a request taken, bytes
    /// exchanged, an answer queued).
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError>;

    /// When the store itself will have something to do without being asked (a simulated
    /// program that exits at a set time): [`Harness::drive`] jumps the clock no further
    /// than this. `None` (the default): only the machines' deadlines count.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// A store lent to a pair for a while (a test's fault injector in front of it).
impl<A: Actor, S: Store<A>> Store<A> for &mut S {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        (**self).step(harness)
    }

    fn next_deadline(&self) -> Option<Instant> {
        (**self).next_deadline()
    }
}

/// Two stores as one: the first steps first, so it takes the requests it executes before
/// the second sees them (a host simulator in front of a xenstore that answers host
/// operations with [`OpErrorKind::Unsupported`](xsio_ops::OpErrorKind::Unsupported)).
impl<A: Actor, S: Store<A>, T: Store<A>> Store<A> for (S, T) {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let first = self.0.step(harness)?;
        let second = self.1.step(harness)?;
        Ok(first || second)
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.0.next_deadline(), self.1.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// An answer or an event on its way to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Delivery {
    Reply {
        owner: Owner,
        id: OpId,
        op: Op,
        result: Result<Reply, OpError>,
    },
    Watch {
        owner: Owner,
        path: String,
        token: String,
    },
    /// For every machine on the connection.
    Peer { event: PeerEvent },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Slot<A> {
    actor: A,
    conn: Conn,
}

/// Machines, their xenstore connections, what waits to be executed and delivered, and a
/// virtual clock: a whole world that a [`Store`] and the caller move step by step.
///
/// Every request a machine issues is queued on its connection ([`take_request`]); every
/// answer comes back through [`reply`] (exactly once: a second answer is an error) and
/// waits in the connection's inbound queue with a sequence number, together with watch
/// events; [`deliver`] hands the oldest to its machine and drains the machine's outputs
/// into the queues and the [log](Harness::take_log). A model checker picks which queue
/// moves with [`deliver_from`] and [`take_request`]; [`drive`] moves them in order.
///
/// [`take_request`]: Harness::take_request
/// [`reply`]: Harness::reply
/// [`deliver`]: Harness::deliver
/// [`deliver_from`]: Harness::deliver_from
/// [`drive`]: Harness::drive
///
/// Two harnesses are equal (and hash alike) when their worlds are: the log is what was
/// seen, not part of the world, so a model checker can hash harnesses to find states it
/// has visited.
#[derive(Debug)]
pub struct Harness<A: Actor> {
    epoch: Instant,
    now: Instant,
    actors: Vec<Slot<A>>,
    /// Per connection: requests waiting to be executed.
    outbound: Vec<VecDeque<(Owner, Request)>>,
    /// Which connections have requests waiting (derived from `outbound`).
    requesting: BTreeSet<usize>,
    /// Per connection: (sequence, delivery) waiting to be handed over.
    inbound: Vec<VecDeque<(u64, Delivery)>>,
    /// Which connections have something to deliver (derived from `inbound`).
    ready: Ready,
    next_seq: u64,
    /// Requests taken by a store and not yet answered, with what they asked.
    in_flight: BTreeMap<(Owner, OpId), (Conn, Op)>,
    /// Watch tokens per connection → who registered them.
    watchers: BTreeMap<(Conn, String), Owner>,
    next_caller_op: u64,
    log: Vec<Record<A::Event>>,
    keep_log: bool,
    /// The machines' deadlines, sorted (derived from `actors`: not part of the world).
    timers: Timers,
}

impl<A: Actor> Harness<A> {
    /// An empty world whose clock starts at `epoch`. It keeps a log ([`take_log`]); call
    /// [`set_log`](Harness::set_log) to switch it off where nobody reads it.
    ///
    /// [`take_log`]: Harness::take_log
    pub fn new(epoch: Instant) -> Harness<A> {
        Harness {
            epoch,
            now: epoch,
            actors: Vec::new(),
            outbound: Vec::new(),
            requesting: BTreeSet::new(),
            inbound: Vec::new(),
            ready: Ready::default(),
            next_seq: 0,
            in_flight: BTreeMap::new(),
            watchers: BTreeMap::new(),
            next_caller_op: 0,
            log: Vec::new(),
            keep_log: true,
            timers: Timers::default(),
        }
    }

    // ---- time ------------------------------------------------------------------------

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.epoch)
    }

    /// Moves the clock forward by `by` (saturating: a huge step leaves the clock where it
    /// is rather than panic).
    pub fn advance(&mut self, by: Duration) {
        if let Some(later) = xsio_core::deadline(self.now, by) {
            self.now = later;
        }
    }

    /// Moves the clock to `at` if that is later; time never goes backwards.
    pub fn advance_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
    }

    // ---- machines and connections ------------------------------------------------------

    /// Opens a connection (its store side is up to the [`Store`]).
    pub fn connect(&mut self) -> Conn {
        self.outbound.push(VecDeque::new());
        self.inbound.push(VecDeque::new());
        self.ready.pos.push(None);
        Conn(self.outbound.len() - 1)
    }

    /// The connections opened so far.
    pub fn conns(&self) -> impl Iterator<Item = Conn> + use<A> {
        (0..self.outbound.len()).map(Conn)
    }

    /// Adds a machine on `conn`. Its first outputs stay in it until [`drain`]
    /// (so a caller decides when it starts).
    ///
    /// [`drain`]: Harness::drain
    pub fn add(&mut self, conn: Conn, actor: A) -> ActorId {
        self.actors.push(Slot { actor, conn });
        self.timers.mark_stale(self.actors.len() - 1);
        ActorId(self.actors.len() - 1)
    }

    /// The machine `id`. Panics on an id this harness never returned (a caller's bug).
    pub fn actor(&self, id: ActorId) -> &A {
        &self.actors[id.0].actor
    }

    /// The machine `id`, to call its own methods (a close, a restart); [`drain`] it after.
    ///
    /// [`drain`]: Harness::drain
    pub fn actor_mut(&mut self, id: ActorId) -> &mut A {
        self.timers.mark_stale(id.0);
        &mut self.actors[id.0].actor
    }

    /// The machines, in the order they were added.
    pub fn actors(&self) -> impl Iterator<Item = (ActorId, &A)> {
        self.actors
            .iter()
            .enumerate()
            .map(|(i, slot)| (ActorId(i), &slot.actor))
    }

    /// The connection of machine `id`.
    pub fn conn_of(&self, id: ActorId) -> Option<Conn> {
        self.actors.get(id.0).map(|slot| slot.conn)
    }

    /// Issues a request of the caller's own on `conn`; its answer appears in the log as a
    /// [`Record::Reply`] with [`Owner::Caller`].
    pub fn submit(&mut self, conn: Conn, op: Op) -> OpId {
        let id = OpId::from_raw(self.next_caller_op);
        self.next_caller_op = self.next_caller_op.wrapping_add(1);
        let request = Request { id, op };
        self.route_watch(conn, Owner::Caller, &request.op);
        self.record(|| Record::Request {
            owner: Owner::Caller,
            request: request.clone(),
        });
        if let Some(queue) = self.outbound.get_mut(conn.0) {
            queue.push_back((Owner::Caller, request));
            self.requesting.insert(conn.0);
        }
        id
    }

    /// Drains machine `id`'s outputs: requests to its connection's queue, events to the log.
    pub fn drain(&mut self, id: ActorId) {
        let Some(slot) = self.actors.get_mut(id.0) else {
            return;
        };
        let conn = slot.conn;
        self.timers.set(id.0, slot.actor.poll_timeout());
        while let Some(output) = slot.actor.poll_output() {
            match output {
                Output::Request(request) => {
                    Self::route_watch_in(&mut self.watchers, conn, Owner::Actor(id), &request.op);
                    if self.keep_log {
                        self.log.push(Record::Request {
                            owner: Owner::Actor(id),
                            request: request.clone(),
                        });
                    }
                    self.outbound[conn.0].push_back((Owner::Actor(id), request));
                    self.requesting.insert(conn.0);
                }
                Output::Event(event) => {
                    if self.keep_log {
                        self.log.push(Record::Event { actor: id, event });
                    }
                }
            }
        }
    }

    fn route_watch(&mut self, conn: Conn, owner: Owner, op: &Op) {
        Self::route_watch_in(&mut self.watchers, conn, owner, op);
    }

    /// Events are routed from the moment a watch is asked for until its removal is (as a
    /// client library drops them once unwatched).
    fn route_watch_in(
        watchers: &mut BTreeMap<(Conn, String), Owner>,
        conn: Conn,
        owner: Owner,
        op: &Op,
    ) {
        match op {
            Op::Xs(XsOp::Watch { token, .. }) => {
                watchers.insert((conn, token.clone()), owner);
            }
            Op::Xs(XsOp::Unwatch { token, .. }) => {
                watchers.remove(&(conn, token.clone()));
            }
            _ => {}
        }
    }

    // ---- the store's side ------------------------------------------------------------

    /// The connections on which requests wait, in order: a store visits these rather than
    /// every connection (a host of ten thousand guests has as many, nearly all idle).
    pub fn requesting_conns(&self) -> Vec<Conn> {
        self.requesting.iter().map(|&c| Conn(c)).collect()
    }

    /// Whether a request waits on `conn`.
    pub fn has_request(&self, conn: Conn) -> bool {
        self.outbound.get(conn.0).is_some_and(|q| !q.is_empty())
    }

    /// Takes the oldest request waiting on `conn`; it is in flight until [`reply`].
    ///
    /// [`reply`]: Harness::reply
    pub fn take_request(&mut self, conn: Conn) -> Option<(Owner, Request)> {
        let queue = self.outbound.get_mut(conn.0)?;
        let (owner, request) = queue.pop_front()?;
        if queue.is_empty() {
            self.requesting.remove(&conn.0);
        }
        self.in_flight
            .insert((owner, request.id), (conn, request.op.clone()));
        Some((owner, request))
    }

    /// Takes the oldest request waiting on `conn` whose operation `wanted` selects, leaving
    /// the others queued in order (a store that executes only some kinds of operation).
    pub fn take_request_where(
        &mut self,
        conn: Conn,
        wanted: impl Fn(&Op) -> bool,
    ) -> Option<(Owner, Request)> {
        let queue = self.outbound.get_mut(conn.0)?;
        let index = queue.iter().position(|(_, request)| wanted(&request.op))?;
        let (owner, request) = queue.remove(index)?;
        if queue.is_empty() {
            self.requesting.remove(&conn.0);
        }
        self.in_flight
            .insert((owner, request.id), (conn, request.op.clone()));
        Some((owner, request))
    }

    /// Answers request `id` of `owner` (exactly once); the answer waits on the owner's
    /// connection until delivered.
    pub fn reply(
        &mut self,
        owner: Owner,
        id: OpId,
        result: Result<Reply, OpError>,
    ) -> Result<(), HarnessError> {
        let (conn, op) = self
            .in_flight
            .remove(&(owner, id))
            .ok_or(HarnessError::NotInFlight { owner, id })?;
        let delivery = Delivery::Reply {
            owner,
            id,
            op,
            result,
        };
        self.push_delivery(conn, delivery)
    }

    fn push_delivery(&mut self, conn: Conn, delivery: Delivery) -> Result<(), HarnessError> {
        let seq = self.bump_seq();
        let queue = self.inbound.get_mut(conn.0).ok_or(HarnessError::Unknown)?;
        if queue.is_empty() {
            self.ready.insert(conn.0, seq);
        }
        queue.push_back((seq, delivery));
        Ok(())
    }

    /// A watch event for `conn`: queued for the machine that registered `token` there, or
    /// dropped when none did (a watch already removed: xenstored may still send its events).
    pub fn watch_event(&mut self, conn: Conn, path: &str, token: &str) {
        let Some(&owner) = self.watchers.get(&(conn, token.to_owned())) else {
            return;
        };
        let delivery = Delivery::Watch {
            owner,
            path: path.to_owned(),
            token: token.to_owned(),
        };
        // The watcher table only names connections that exist.
        let _ = self.push_delivery(conn, delivery);
    }

    /// Something the peer of `conn` reported on its own (see [`PeerEvent`]): queued for
    /// every machine on `conn`, in the order of everything else delivered there.
    pub fn peer_event(&mut self, conn: Conn, event: PeerEvent) {
        // An unknown connection has no machine to tell.
        let _ = self.push_delivery(conn, Delivery::Peer { event });
    }

    fn bump_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Whether an answer or event waits on `conn`.
    pub fn has_delivery(&self, conn: Conn) -> bool {
        self.inbound.get(conn.0).is_some_and(|q| !q.is_empty())
    }

    /// The connections with something to deliver, in a deterministic order (for a world
    /// that picks among them, as the simulator's seeded reordering does); kept up to date as
    /// answers come and go, so a host with thousands of connections pays nothing for the
    /// idle ones.
    pub fn ready_conns(&self) -> impl ExactSizeIterator<Item = Conn> + '_ {
        self.ready.list.iter().map(|&c| Conn(c))
    }

    /// Whom the next delivery on `conn` is for (`None` for an empty queue, or for a peer
    /// event, which is for every machine on `conn`).
    pub fn next_delivery_for(&self, conn: Conn) -> Option<Owner> {
        match &self.inbound.get(conn.0)?.front()?.1 {
            Delivery::Reply { owner, .. } | Delivery::Watch { owner, .. } => Some(*owner),
            Delivery::Peer { .. } => None,
        }
    }

    /// The requests taken and not yet answered (by the store).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether nothing waits anywhere: no request queued or in flight, nothing to deliver.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.outbound.iter().all(VecDeque::is_empty)
            && self.inbound.iter().all(VecDeque::is_empty)
    }

    // ---- moving --------------------------------------------------------------------------

    /// Hands the oldest waiting answer or event (over all connections) to its owner.
    /// `Ok(false)` when nothing waits.
    pub fn deliver(&mut self) -> Result<bool, HarnessError> {
        match self.ready.heads.first().copied() {
            Some((_, c)) => self.deliver_from(Conn(c)),
            None => Ok(false),
        }
    }

    /// Hands the oldest answer or event waiting on `conn` to its owner and drains it.
    /// `Ok(false)` when nothing waits there.
    pub fn deliver_from(&mut self, conn: Conn) -> Result<bool, HarnessError> {
        let Some(queue) = self.inbound.get_mut(conn.0) else {
            return Ok(false);
        };
        let Some((seq, delivery)) = queue.pop_front() else {
            return Ok(false);
        };
        let next_head = queue.front().map(|(next, _)| *next);
        self.ready.advance(conn.0, seq, next_head);
        let now = self.now;
        match delivery {
            Delivery::Reply {
                owner,
                id,
                op,
                result,
            } => {
                if self.keep_log {
                    self.log.push(Record::Reply {
                        owner,
                        id,
                        op,
                        result: result.clone(),
                    });
                }
                if let Owner::Actor(actor) = owner {
                    self.timers.mark_stale(actor.0);
                    self.actors[actor.0]
                        .actor
                        .handle_input(now, Input::Reply { id, result })
                        .map_err(|source| HarnessError::Refused { actor, source })?;
                    self.drain(actor);
                }
            }
            Delivery::Watch { owner, path, token } => {
                if self.keep_log {
                    self.log.push(Record::Watch {
                        owner,
                        path: path.clone(),
                        token: token.clone(),
                    });
                }
                let Owner::Actor(actor) = owner else {
                    return Ok(true);
                };
                self.timers.mark_stale(actor.0);
                self.actors[actor.0]
                    .actor
                    .handle_input(
                        now,
                        Input::Watch {
                            path: &path,
                            token: &token,
                        },
                    )
                    .map_err(|source| HarnessError::Refused { actor, source })?;
                self.drain(actor);
            }
            Delivery::Peer { event } => {
                if self.keep_log {
                    self.log.push(Record::Peer {
                        conn,
                        event: event.clone(),
                    });
                }
                let on_conn: Vec<ActorId> = (0..self.actors.len())
                    .filter(|&i| self.actors[i].conn == conn)
                    .map(ActorId)
                    .collect();
                for actor in on_conn {
                    self.timers.mark_stale(actor.0);
                    self.actors[actor.0]
                        .actor
                        .handle_input(now, Input::Peer(&event))
                        .map_err(|source| HarnessError::Refused { actor, source })?;
                    self.drain(actor);
                }
            }
        }
        Ok(true)
    }

    /// The earliest deadline of any machine.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.timers.is_enabled() {
            return self
                .actors
                .iter()
                .filter_map(|slot| slot.actor.poll_timeout())
                .min();
        }
        let fresh = self.timers.earliest_fresh();
        let stale = self
            .timers
            .stale()
            .iter()
            .filter_map(|&i| self.actors.get(i)?.actor.poll_timeout())
            .min();
        match (fresh, stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires machine `id`'s timer at the current time if it is due; true when it fired.
    pub fn fire_timer(&mut self, id: ActorId) -> bool {
        let now = self.now;
        let Some(slot) = self.actors.get_mut(id.0) else {
            return false;
        };
        if slot.actor.poll_timeout().is_none_or(|at| at > now) {
            return false;
        }
        self.timers.mark_stale(id.0);
        slot.actor.handle_timeout(now);
        if self.keep_log {
            self.log.push(Record::Timeout { actor: id });
        }
        self.drain(id);
        true
    }

    /// Fires every timer that is due at the current time; true when any fired.
    pub fn fire_due_timers(&mut self) -> bool {
        self.timers.enable(self.actors.len());
        self.refresh_timers();
        let mut fired = false;
        for i in self.timers.due(self.now) {
            fired |= self.fire_timer(ActorId(i));
        }
        fired
    }

    /// Reads again the deadline of every machine that may have changed.
    fn refresh_timers(&mut self) {
        for i in self.timers.take_stale() {
            if let Some(slot) = self.actors.get(i) {
                self.timers.set(i, slot.actor.poll_timeout());
            }
        }
    }

    /// Runs the world against `store` until nothing moves: the store executes, answers are
    /// delivered in the order they came, and when only timers are left the clock jumps to
    /// the earliest. Gives up after a million steps.
    pub fn drive<S: Store<A>>(&mut self, store: &mut S) -> Result<(), HarnessError> {
        self.drive_bounded(store, 1_000_000)
    }

    /// [`drive`](Harness::drive) with a step budget.
    pub fn drive_bounded<S: Store<A>>(
        &mut self,
        store: &mut S,
        max_steps: usize,
    ) -> Result<(), HarnessError> {
        for _ in 0..max_steps {
            if !self.step(store)? {
                let deadline = match (self.next_deadline(), store.next_deadline()) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => return Ok(()),
                };
                self.advance_to(deadline);
                self.fire_due_timers();
            }
        }
        Err(HarnessError::NoProgress(max_steps))
    }

    /// Runs the world against `store` until nothing moves, without moving the clock beyond
    /// what the store does (timers fire only if already due): what a caller wants before it
    /// acts again at the same moment.
    pub fn settle<S: Store<A>>(&mut self, store: &mut S) -> Result<(), HarnessError> {
        const MAX_STEPS: usize = 1_000_000;
        for _ in 0..MAX_STEPS {
            if !self.step(store)? {
                return Ok(());
            }
        }
        Err(HarnessError::NoProgress(MAX_STEPS))
    }

    /// One round: the store executes, then everything waiting is delivered and due timers
    /// fire. False when nothing moved.
    pub fn step<S: Store<A>>(&mut self, store: &mut S) -> Result<bool, HarnessError> {
        let mut moved = store.step(self)?;
        while self.deliver()? {
            moved = true;
        }
        moved |= self.fire_due_timers();
        Ok(moved)
    }

    // ---- the log -----------------------------------------------------------------------

    /// Keep the log (the default) or not (benches, model checkers that need no trace).
    pub fn set_log(&mut self, keep: bool) {
        self.keep_log = keep;
        if !keep {
            self.log.clear();
        }
    }

    /// Takes what happened since the last call, in order.
    pub fn take_log(&mut self) -> Vec<Record<A::Event>> {
        std::mem::take(&mut self.log)
    }

    fn record(&mut self, make: impl FnOnce() -> Record<A::Event>) {
        if self.keep_log {
            self.log.push(make());
        }
    }
}

/// Makes one enum of several kinds of machine, so that they share one [`Harness`]: the
/// enum implements [`Machine`] (hence [`Actor`]) by delegation, and its event type wraps
/// each machine's events.
///
/// ```
/// use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent};
///
/// xsio_harness::actors! {
///     /// The two ends of a device.
///     #[derive(Clone, Debug)]
///     pub enum End / EndEvent {
///         Backend(Backend, BackendEvent),
///         Frontend(Frontend, FrontendEvent),
///     }
/// }
/// let _ = |harness: &mut xsio_harness::Harness<End>| harness.now();
/// ```
#[macro_export]
macro_rules! actors {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident / $event:ident {
            $($variant:ident($machine:ty, $machine_event:ty)),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $(
                #[allow(missing_docs)]
                $variant($machine),
            )+
        }

        #[doc = concat!("The events of a [`", stringify!($name), "`].")]
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis enum $event {
            $(
                #[allow(missing_docs)]
                $variant($machine_event),
            )+
        }

        impl $crate::__private::xsio_core::Machine for $name {
            type Input<'a> = $crate::__private::xsio_ops::Input<'a>;
            type Output = $crate::__private::xsio_ops::Output<$event>;
            type Error = $crate::__private::xsio_ops::InputError;

            fn handle_input(
                &mut self,
                now: ::std::time::Instant,
                input: $crate::__private::xsio_ops::Input<'_>,
            ) -> Result<(), $crate::__private::xsio_ops::InputError> {
                match self {
                    $($name::$variant(m) => $crate::__private::xsio_core::Machine::handle_input(m, now, input),)+
                }
            }

            fn handle_timeout(&mut self, now: ::std::time::Instant) {
                match self {
                    $($name::$variant(m) => $crate::__private::xsio_core::Machine::handle_timeout(m, now),)+
                }
            }

            fn poll_output(&mut self) -> Option<$crate::__private::xsio_ops::Output<$event>> {
                match self {
                    $($name::$variant(m) => $crate::__private::xsio_core::Machine::poll_output(m).map(|out| match out {
                        $crate::__private::xsio_ops::Output::Request(r) => $crate::__private::xsio_ops::Output::Request(r),
                        $crate::__private::xsio_ops::Output::Event(e) => $crate::__private::xsio_ops::Output::Event($event::$variant(e)),
                    }),)+
                }
            }

            fn poll_timeout(&self) -> Option<::std::time::Instant> {
                match self {
                    $($name::$variant(m) => $crate::__private::xsio_core::Machine::poll_timeout(m),)+
                }
            }
        }
    };
}

impl<A: Actor + Clone> Clone for Harness<A>
where
    A::Event: Clone,
{
    fn clone(&self) -> Self {
        Harness {
            epoch: self.epoch,
            now: self.now,
            actors: self.actors.clone(),
            outbound: self.outbound.clone(),
            requesting: self.requesting.clone(),
            inbound: self.inbound.clone(),
            ready: self.ready.clone(),
            next_seq: self.next_seq,
            in_flight: self.in_flight.clone(),
            watchers: self.watchers.clone(),
            next_caller_op: self.next_caller_op,
            log: self.log.clone(),
            keep_log: self.keep_log,
            timers: self.timers.clone(),
        }
    }
}

impl<A: Actor + PartialEq> PartialEq for Harness<A> {
    fn eq(&self, other: &Self) -> bool {
        // Sequence numbers only order deliveries across connections; the queues'
        // contents are the world.
        let same_inbound =
            self.inbound.len() == other.inbound.len()
                && self.inbound.iter().zip(&other.inbound).all(|(a, b)| {
                    a.len() == b.len() && a.iter().zip(b).all(|((_, x), (_, y))| x == y)
                });
        self.now == other.now
            && self.actors == other.actors
            && self.outbound == other.outbound
            && same_inbound
            && self.in_flight == other.in_flight
            && self.watchers == other.watchers
            && self.next_caller_op == other.next_caller_op
    }
}

impl<A: Actor + Eq> Eq for Harness<A> {}

impl<A: Actor + std::hash::Hash> std::hash::Hash for Harness<A> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.now.hash(state);
        self.actors.hash(state);
        self.outbound.hash(state);
        for queue in &self.inbound {
            queue.len().hash(state);
            for (_, delivery) in queue {
                delivery.hash(state);
            }
        }
        self.in_flight.hash(state);
        self.watchers.hash(state);
        self.next_caller_op.hash(state);
    }
}
