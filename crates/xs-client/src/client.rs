//! The client machine: commands in, frames out, replies routed back to their operations.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use xsio_core::{Input, OpId, OpIds, Transmit, deadline};
use xsio_xs_wire::{
    Body, ErrorKind, FrameDecoder, FrameError, MsgType, Packet, Perm, Reply, Request, path,
};

use crate::jobs::{DirJob, Role, TxJob};

mod transact;
use crate::types::{Config, DeviceArea, Error, Output, Response, TxId, TxOp, WatchEvent, XsValue};

/// A xenstore client connection as a state machine, with no I/O.
///
/// # Rules
///
/// - **Commands** (`read`, `write`, `watch`, `transact`, ...) take `now` and return an
///   [`OpId`]. Each id comes back exactly once in [`Output::Done`], whatever happens: a reply,
///   an error reply, a timeout, the connection closing, or a request that could not be sent
///   at all (then `Done` is queued at once).
/// - **Inputs**: feed what the socket gives to [`Client::handle_input`] (bytes in any split,
///   then [`Input::Closed`] at end of stream), and call [`Client::handle_timeout`] when
///   [`Client::poll_timeout`] passes. `now` never goes backwards.
/// - **Drain** [`Client::poll_output`] until `None` after every call: it yields the bytes to
///   write (one [`Output::Transmit`] holding every request queued since the last drain),
///   completions, and watch events.
///
/// Many requests may be in flight: each gets its own `req_id` (counting from 0), and replies
/// may come back in any order. Watch events are told apart from replies by their type, so an
/// event arriving between a request and its reply is routed to its watch.
///
/// ```
/// use std::time::Instant;
/// use xsio_xs_client::{Client, Config, Output, Response};
/// use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};
///
/// let now = Instant::now(); // tidy:allow (a test epoch)
/// let mut client = Client::new(Config::default(), now);
/// let id = client.read(now, None, "/vm/name");
///
/// // The request goes out: the exact bytes Xen's xenstore-read sends.
/// let Some(Output::Transmit(t)) = client.poll_output() else { panic!() };
/// assert_eq!(&t.bytes[..], b"\x02\0\0\0\0\0\0\0\0\0\0\0\x09\0\0\0/vm/name\0");
///
/// // The daemon answers; the operation completes.
/// let reply = Packet::new(0, 0, Reply::Read("guest1".into())).to_bytes()?;
/// client.handle_input(now, xsio_core::Input::<std::os::fd::OwnedFd>::Bytes(&reply));
/// let Some(Output::Done { id: done, result }) = client.poll_output() else { panic!() };
/// assert_eq!((done, result), (id, Ok(Response::Value("guest1".into()))));
/// assert!(client.poll_output().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    config: Config,
    ids: OpIds,
    next_req_id: u32,
    decoder: FrameDecoder,
    out: BytesMut,
    outputs: VecDeque<Output>,
    /// Requests on the wire, by req_id.
    pending: BTreeMap<u32, Pending>,
    /// Operations not yet done, with their deadline.
    ops: BTreeMap<OpId, Option<Instant>>,
    /// Multi-request operations, by the operation's id.
    tx_jobs: BTreeMap<OpId, TxJob>,
    /// Registered watches, by the id `watch` returned.
    watches: BTreeMap<OpId, Watch>,
    /// The same watches by token (unique among them): an event finds its watch without a
    /// look at every watch (a backend process holds thousands).
    by_token: BTreeMap<String, OpId>,
    closed: bool,
}

#[derive(Debug)]
struct Pending {
    op: Option<OpId>,
    sent: MsgType,
    role: Role,
}

#[derive(Debug)]
struct Watch {
    path: String,
    token: String,
    /// An unwatch was sent: drop its events from now on.
    removing: bool,
}

/// The daemon's stream cannot be framed any more (reported in [`CloseReason::Protocol`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The daemon sent a frame that cannot be framed (oversize).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why the connection ended ([`Output::Closed`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The daemon closed the stream (or the driver saw it fail).
    #[error("xenstored closed the connection")]
    PeerClosed,
    /// The caller called [`Client::close`].
    #[error("closed by the caller")]
    ClosedByCaller,
    /// The daemon broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl Client {
    /// A client for a freshly connected socket.
    pub fn new(config: Config, now: Instant) -> Client {
        let _ = now; // Nothing is timed until the first command.
        Client {
            decoder: FrameDecoder::new(config.max_payload),
            config,
            ids: OpIds::default(),
            next_req_id: 0,
            out: BytesMut::new(),
            outputs: VecDeque::new(),
            pending: BTreeMap::new(),
            ops: BTreeMap::new(),
            tx_jobs: BTreeMap::new(),
            watches: BTreeMap::new(),
            by_token: BTreeMap::new(),
            closed: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the connection has closed (no command can succeed any more).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The path watch `watch` (an id [`Client::watch`] returned) was registered on, while
    /// it is registered.
    pub fn watched_path(&self, watch: OpId) -> Option<&str> {
        self.watches.get(&watch).map(|w| w.path.as_str())
    }

    /// Operations started and not yet done.
    pub fn ops_in_flight(&self) -> usize {
        self.ops.len()
    }

    // ---- commands -----------------------------------------------------------------------

    /// Reads a node's value: [`Response::Value`].
    pub fn read(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        self.simple(now, tx, path, |path| Request::Read { path })
    }

    /// Writes a node's value, creating missing ancestors: [`Response::Unit`].
    pub fn write(
        &mut self,
        now: Instant,
        tx: Option<TxId>,
        path: &str,
        value: impl Into<Bytes>,
    ) -> OpId {
        let value = value.into();
        self.simple(now, tx, path, |path| Request::Write { path, value })
    }

    /// Writes a typed value (`u32`, `i64`, `bool` as `0`/`1`, `String`, ...).
    pub fn set<V: XsValue>(
        &mut self,
        now: Instant,
        tx: Option<TxId>,
        path: &str,
        value: &V,
    ) -> OpId {
        self.write(now, tx, path, value.to_xs())
    }

    /// Creates a node (no-op if it exists): [`Response::Unit`].
    pub fn mkdir(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        self.simple(now, tx, path, |path| Request::Mkdir { path })
    }

    /// Removes a node and everything below it: [`Response::Unit`].
    pub fn rm(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        self.simple(now, tx, path, |path| Request::Rm { path })
    }

    /// Removes a subtree, succeeding also when it is already gone (as libxl's
    /// `xs_rm_checked`): [`Response::Unit`].
    pub fn rm_tree(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        let op = self.start(now);
        let request = Request::Rm {
            path: path.to_owned(),
        };
        self.send_checked(op, tx, path, request, Role::RmTree);
        op
    }

    /// Whether a node exists (a read that maps `ENOENT` to false): [`Response::Bool`].
    pub fn exists(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        let op = self.start(now);
        let request = Request::Read {
            path: path.to_owned(),
        };
        self.send_checked(op, tx, path, request, Role::Exists);
        op
    }

    /// Lists a node's children: [`Response::Names`]. A listing too large for one reply
    /// (`E2BIG`) is fetched again in chunks with `DIRECTORY_PART`, restarting if the node
    /// changes meanwhile.
    pub fn directory(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        let op = self.start(now);
        let request = Request::Directory {
            path: path.to_owned(),
        };
        let job = DirJob::new(path.to_owned(), tx);
        self.send_checked(op, tx, path, request, Role::Directory(job));
        op
    }

    /// A node's permissions, owner first: [`Response::Perms`].
    pub fn get_perms(&mut self, now: Instant, tx: Option<TxId>, path: &str) -> OpId {
        self.simple(now, tx, path, |path| Request::GetPerms { path })
    }

    /// Sets a node's permissions, owner first: [`Response::Unit`].
    pub fn set_perms(
        &mut self,
        now: Instant,
        tx: Option<TxId>,
        path: &str,
        perms: &[Perm],
    ) -> OpId {
        let perms = perms.to_vec();
        self.simple(now, tx, path, |path| Request::SetPerms { path, perms })
    }

    /// `/local/domain/<domid>`, as the daemon says: [`Response::Path`].
    pub fn get_domain_path(&mut self, now: Instant, domid: u32) -> OpId {
        let op = self.start(now);
        self.send_or_fail(op, 0, Request::GetDomainPath { domid }, Role::Plain);
        op
    }

    /// Sends any other request (`INTRODUCE`, `RELEASE`, `CONTROL`, ...) and completes with
    /// the reply mapped as for the named commands. Watches and transactions have their own
    /// commands, which keep the client's bookkeeping right; prefer them.
    pub fn request(&mut self, now: Instant, tx: Option<TxId>, request: Request) -> OpId {
        let op = self.start(now);
        self.send_or_fail(op, tx_raw(tx), request, Role::Plain);
        op
    }

    /// Registers a watch on `path` with `token`. The operation is done when the daemon
    /// acknowledges it; its id is also the watch's id, carried by every
    /// [`Output::Event`] of this watch, including the initial one the daemon sends at once.
    /// Tokens must be unique among this client's watches.
    pub fn watch(&mut self, now: Instant, path: &str, token: &str) -> OpId {
        let op = self.start(now);
        if let Err(source) = path::check(path) {
            self.finish_err(op, invalid(path, source));
            return op;
        }
        if self.by_token.contains_key(token) {
            self.finish_err(op, Error::DuplicateToken(token.to_owned()));
            return op;
        }
        let request = Request::Watch {
            path: path.to_owned(),
            token: token.to_owned(),
        };
        if self.send_or_fail(op, 0, request, Role::Watch) {
            self.by_token.insert(token.to_owned(), op);
            self.watches.insert(
                op,
                Watch {
                    path: path.to_owned(),
                    token: token.to_owned(),
                    removing: false,
                },
            );
        }
        op
    }

    /// Removes the watch `watch` (an id [`Client::watch`] returned). Its events stop at
    /// once, even those already on their way.
    pub fn unwatch(&mut self, now: Instant, watch: OpId) -> OpId {
        let op = self.start(now);
        let Some(w) = self.watches.get_mut(&watch).filter(|w| !w.removing) else {
            self.finish_err(op, Error::UnknownWatch(watch));
            return op;
        };
        w.removing = true;
        let request = Request::Unwatch {
            path: w.path.clone(),
            token: w.token.clone(),
        };
        self.send_or_fail(op, 0, request, Role::Unwatch(watch));
        op
    }

    /// Drops every watch and open transaction of this connection on the daemon
    /// (`RESET_WATCHES`); the client forgets its watches when the daemon acknowledges.
    pub fn reset_watches(&mut self, now: Instant) -> OpId {
        let op = self.start(now);
        self.send_or_fail(op, 0, Request::ResetWatches, Role::ResetWatches);
        op
    }

    /// Starts a transaction: [`Response::Tx`].
    pub fn transaction_start(&mut self, now: Instant) -> OpId {
        let op = self.start(now);
        self.send_or_fail(op, 0, Request::TransactionStart, Role::Plain);
        op
    }

    /// Ends a transaction, committing or aborting it: [`Response::Unit`], or
    /// `Error::Xs(ErrorKind::Eagain)` when a commit conflicted (start again).
    pub fn transaction_end(&mut self, now: Instant, tx: TxId, commit: bool) -> OpId {
        let op = self.start(now);
        self.send_or_fail(op, tx.0, Request::TransactionEnd { commit }, Role::Plain);
        op
    }

    /// Runs `ops` in one transaction and commits it, starting again on `EAGAIN` up to
    /// [`Config::transact_attempts`] times, then failing with [`Error::Conflict`]. Any other
    /// error aborts the transaction and fails the operation with it. On success:
    /// [`Response::List`] with one result per op.
    pub fn transact(&mut self, now: Instant, ops: Vec<TxOp>) -> OpId {
        let op = self.start(now);
        if let Some(bad) = ops
            .iter()
            .find_map(|o| path::check(o.path()).err().map(|e| (o, e)))
        {
            self.finish_err(op, invalid(bad.0.path(), bad.1));
            return op;
        }
        self.tx_jobs.insert(op, TxJob::new(ops));
        self.tx_begin(op);
        op
    }

    /// Writes every `(key, value)` under `dir` in one transaction, retried on conflict
    /// (libxl's `writev_atonce`).
    pub fn write_all(&mut self, now: Instant, dir: &str, kvs: &[(&str, Bytes)]) -> OpId {
        let ops = kvs
            .iter()
            .map(|(k, v)| TxOp::Write(path::join(dir, k), v.clone()))
            .collect();
        self.transact(now, ops)
    }

    /// Creates a frontend/backend device pair in one transaction: both directories, each
    /// owned by its domain and readable by the other, and their keys.
    pub fn create_device_area(&mut self, now: Instant, area: &DeviceArea) -> OpId {
        let (front, back) = (&area.frontend_path, &area.backend_path);
        let mut ops = Vec::new();
        ops.extend(shared_dir(front, area.frontend_domid, area.backend_domid));
        ops.extend(shared_dir(back, area.backend_domid, area.frontend_domid));
        for (dir, keys) in [(front, &area.frontend_keys), (back, &area.backend_keys)] {
            ops.extend(
                keys.iter()
                    .map(|(k, v)| TxOp::Write(path::join(dir, k), v.clone())),
            );
        }
        self.transact(now, ops)
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Ends the connection: every pending operation fails with [`Error::ConnectionLost`],
    /// then [`Output::Closed`] follows. The driver then closes the socket.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        self.connection_lost(CloseReason::ClosedByCaller);
    }

    /// Feeds what the socket gave: bytes (any split), or the end of the stream. Descriptors
    /// are not part of xenstore and are closed.
    ///
    /// When the stream ends or cannot be framed any more, every pending operation fails
    /// with [`Error::ConnectionLost`] and [`Output::Closed`] follows, once: close the
    /// socket then.
    pub fn handle_input<F>(&mut self, now: Instant, input: Input<'_, F>) {
        match input {
            Input::Bytes(bytes) => self.handle_bytes(now, bytes),
            Input::Fds(fds) => drop(fds),
            Input::Closed => self.connection_lost(CloseReason::PeerClosed),
        }
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.decoder.feed(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => self.handle_frame(now, &frame),
                Ok(None) => return,
                Err(err) => return self.connection_lost(ProtocolError::from(err).into()),
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: &xsio_xs_wire::Frame) {
        if frame.header.msg_type == MsgType::WatchEvent.as_u32() {
            if let Ok(Packet {
                body: Reply::WatchEvent { path, token },
                ..
            }) = Packet::<Reply>::decode(frame)
            {
                self.route_event(path, token);
            }
            return;
        }
        // A reply whose request is gone (timed out, or its op failed) is dropped.
        let Some(pending) = self.pending.remove(&frame.header.req_id) else {
            return;
        };
        let reply = match Packet::<Reply>::decode(frame) {
            Ok(packet) => packet.body,
            // As libxenstore: an error name outside the table reads as EINVAL.
            Err(xsio_xs_wire::PayloadError::UnknownErrorName(_)) => Reply::Error(ErrorKind::Einval),
            Err(err) => {
                self.fail_pending(pending, Error::Protocol(err.to_string()));
                return;
            }
        };
        let result = match reply {
            Reply::Error(kind) => Err(kind),
            body if body.msg_type() == pending.sent => Ok(body),
            body => {
                let msg = format!("{} reply to a {} request", body.msg_type(), pending.sent);
                self.fail_pending(pending, Error::Protocol(msg));
                return;
            }
        };
        self.on_reply(now, pending, result);
    }

    fn route_event(&mut self, path: String, token: String) {
        let watch = self
            .by_token
            .get(&token)
            .copied()
            .filter(|id| self.watches.get(id).is_some_and(|w| !w.removing));
        if let Some(watch) = watch {
            self.outputs
                .push_back(Output::Event(WatchEvent { watch, path, token }));
        }
    }

    fn on_reply(&mut self, now: Instant, pending: Pending, result: Result<Reply, ErrorKind>) {
        let Some(op) = pending.op else {
            return; // A fire-and-forget abort.
        };
        match pending.role {
            Role::Plain => self.finish(op, result.map(plain_response).map_err(Error::Xs)),
            Role::RmTree => match result {
                Ok(_) | Err(ErrorKind::Enoent) => self.finish(op, Ok(Response::Unit)),
                Err(kind) => self.finish_err(op, Error::Xs(kind)),
            },
            Role::Exists => match result {
                Ok(_) => self.finish(op, Ok(Response::Bool(true))),
                Err(ErrorKind::Enoent) => self.finish(op, Ok(Response::Bool(false))),
                Err(kind) => self.finish_err(op, Error::Xs(kind)),
            },
            Role::Watch => match result {
                Ok(_) => self.finish(op, Ok(Response::Unit)),
                Err(kind) => {
                    self.forget_watch(op);
                    self.finish_err(op, Error::Xs(kind));
                }
            },
            Role::Unwatch(watch) => match result {
                Ok(_) => {
                    self.forget_watch(watch);
                    self.finish(op, Ok(Response::Unit));
                }
                Err(kind) => {
                    if let Some(w) = self.watches.get_mut(&watch) {
                        w.removing = false;
                    }
                    self.finish_err(op, Error::Xs(kind));
                }
            },
            Role::ResetWatches => match result {
                Ok(_) => {
                    self.watches.clear();
                    self.by_token.clear();
                    self.finish(op, Ok(Response::Unit));
                }
                Err(kind) => self.finish_err(op, Error::Xs(kind)),
            },
            Role::Directory(job) => self.on_directory(op, job, result),
            Role::Tx(step) => self.on_tx_reply(now, op, step, result),
        }
    }

    fn on_directory(&mut self, op: OpId, mut job: DirJob, result: Result<Reply, ErrorKind>) {
        let limits = (
            self.config.directory_part_restarts,
            self.config.max_directory_bytes,
        );
        match job.on_reply(result, limits) {
            Ok(Some(names)) => self.finish(op, Ok(Response::Names(names))),
            Ok(None) => {
                let tx = job.tx;
                let request = job.next_request();
                self.send_or_fail(op, tx_raw(tx), request, Role::Directory(job));
            }
            Err(err) => self.finish_err(op, err),
        }
    }

    /// Tells the client that time has advanced: operations past their deadline fail with
    /// [`Error::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| d <= now))
            .map(|(op, _)| *op)
            .collect();
        for op in expired {
            self.finish_err(op, Error::Timeout);
        }
    }

    /// The next output, `None` when drained.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output> {
        if !self.out.is_empty() {
            let bytes = self.out.split().freeze();
            return Some(Output::Transmit(Transmit::bytes(bytes)));
        }
        self.outputs.pop_front()
    }

    /// The earliest deadline of a pending operation.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ops.values().flatten().min().copied()
    }

    // ---- plumbing -----------------------------------------------------------------------

    fn start(&mut self, now: Instant) -> OpId {
        let op = self.ids.next_id();
        // A timeout too large to represent means no deadline, as `None` does.
        let deadline = self.config.request_timeout.and_then(|t| deadline(now, t));
        self.ops.insert(op, deadline);
        op
    }

    fn simple(
        &mut self,
        now: Instant,
        tx: Option<TxId>,
        path: &str,
        make: impl FnOnce(String) -> Request,
    ) -> OpId {
        let op = self.start(now);
        let request = make(path.to_owned());
        self.send_checked(op, tx, path, request, Role::Plain);
        op
    }

    fn send_checked(
        &mut self,
        op: OpId,
        tx: Option<TxId>,
        path: &str,
        request: Request,
        role: Role,
    ) {
        if let Err(source) = path::check(path) {
            self.finish_err(op, invalid(path, source));
            return;
        }
        self.send_or_fail(op, tx_raw(tx), request, role);
    }

    /// Queues a request for `op`; if it cannot be sent, fails `op`. Returns whether it went.
    fn send_or_fail(&mut self, op: OpId, tx_id: u32, request: Request, role: Role) -> bool {
        match self.send(Some(op), tx_id, request, role) {
            Ok(()) => true,
            Err(err) => {
                self.finish_err(op, err);
                false
            }
        }
    }

    fn send(
        &mut self,
        op: Option<OpId>,
        tx_id: u32,
        request: Request,
        role: Role,
    ) -> Result<(), Error> {
        if self.closed {
            return Err(Error::NotConnected);
        }
        if self.pending.len() >= self.config.max_in_flight {
            return Err(Error::TooManyInFlight);
        }
        let req_id = self.alloc_req_id();
        let sent = request.msg_type();
        Packet::new(req_id, tx_id, request).encode(&mut self.out)?;
        self.pending.insert(req_id, Pending { op, sent, role });
        Ok(())
    }

    fn alloc_req_id(&mut self) -> u32 {
        // Count up from 0 (so a lone request is byte-identical to libxenstore's), skipping
        // ids still in flight after a wrap.
        loop {
            let id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn forget_watch(&mut self, watch: OpId) {
        if let Some(w) = self.watches.remove(&watch) {
            self.by_token.remove(&w.token);
        }
    }

    fn fail_pending(&mut self, pending: Pending, err: Error) {
        if let Some(op) = pending.op {
            self.finish_err(op, err);
        }
    }

    fn finish_err(&mut self, op: OpId, err: Error) {
        self.finish(op, Err(err));
    }

    /// Completes `op` once: removes every trace of it (requests still on the wire for it,
    /// its transaction job), and queues `Done`. A transaction left open on the daemon is
    /// aborted.
    fn finish(&mut self, op: OpId, result: Result<Response, Error>) {
        if self.ops.remove(&op).is_none() {
            return;
        }
        self.pending.retain(|_, p| p.op != Some(op));
        if let Some(job) = self.tx_jobs.remove(&op) {
            if let (Some(tx), false) = (job.tx, job.is_ending()) {
                // Best effort: nobody waits for this reply.
                let abort = Request::TransactionEnd { commit: false };
                let _ = self.send(None, tx.0, abort, Role::Plain);
            }
        }
        if result.is_err() {
            // A watch whose registration failed is not registered.
            if let Some(w) = self.watches.get(&op) {
                if !w.removing {
                    self.forget_watch(op);
                }
            }
        }
        self.outputs.push_back(Output::Done { id: op, result });
    }

    fn connection_lost(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.out.clear();
        self.pending.clear();
        self.watches.clear();
        self.by_token.clear();
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.finish_err(op, Error::ConnectionLost);
        }
        self.outputs.push_back(Output::Closed(reason));
    }
}

xsio_core::impl_protocol_machine!(impl Machine for Client {
    input<'a> = Input<'a, std::os::fd::OwnedFd>;
    output = Output;
    |client, now, input| client.handle_input(now, input)
});

/// The steps that make directory `dir`, owned by domain `owner` and readable by `reader`.
fn shared_dir(dir: &str, owner: u32, reader: u32) -> [TxOp; 2] {
    let perms = vec![
        Perm::new(xsio_xs_wire::Access::None, owner),
        Perm::new(xsio_xs_wire::Access::Read, reader),
    ];
    [
        TxOp::Mkdir(dir.to_owned()),
        TxOp::SetPerms(dir.to_owned(), perms),
    ]
}

fn tx_raw(tx: Option<TxId>) -> u32 {
    tx.map_or(0, |t| t.0)
}

fn invalid(path: &str, source: path::PathError) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn plain_response(reply: Reply) -> Response {
    match reply {
        Reply::Read(value) | Reply::Control(value) => Response::Value(value),
        Reply::Directory(names) => Response::Names(names),
        Reply::GetPerms(perms) => Response::Perms(perms),
        Reply::TransactionStart(id) => Response::Tx(TxId(id)),
        Reply::GetDomainPath(path) => Response::Path(path),
        Reply::IsDomainIntroduced(yes) => Response::Bool(yes),
        Reply::DirectoryPart { children, .. } => Response::Names(children),
        _ => Response::Unit,
    }
}
