//! The connection's task: owns the machine and the descriptor, runs callers' commands,
//! hands replies to their waiters and events to their watches' queues, never waiting on
//! anyone.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use xsio_core::{Input, OpId};
use xsio_harness::xs::{self, Submitted, Watches};
use xsio_ops::{OpError, OpErrorKind, XsOp};
use xsio_xs_client::{Client, Output, Response, TxId, WatchQueue};

use super::watch::{Guard, Parts, Shared};
use super::{ClientError, Start, Transport, now};
use crate::l2::{Inbox, Tag};

/// What a handle asks of the task (bounded channel: callers wait when it is full).
pub(crate) enum Request {
    /// Start a command and answer its result.
    Call(Start, oneshot::Sender<Result<Response, ClientError>>),
    /// Register a watch and hand back its queue.
    Watch {
        path: String,
        token: String,
        done: oneshot::Sender<Result<Parts, ClientError>>,
    },
    /// Close the connection.
    Close,
}

/// What is sent without waiting (from `Drop`, and from the L2 driver's synchronous
/// step): an unbounded channel, each message standing for something a caller holds or
/// a request a machine issued and waits for.
pub(crate) enum Control {
    /// Remove a watch (its stream was dropped, or `unwatch` waits for the answer).
    Unwatch(OpId, Option<oneshot::Sender<Result<Response, ClientError>>>),
    /// Abort a transaction whose future was dropped before it ended.
    Abort(TxId),
    /// Execute an L2 machine's operation.
    L2(L2Submit),
}

/// An L2 machine's xenstore operation, and where its answer goes.
pub(crate) struct L2Submit {
    pub(crate) op: XsOp,
    pub(crate) tag: Tag,
    pub(crate) inbox: Arc<Inbox>,
}

/// An answer an L2 operation still waits for.
struct L2Pending {
    op: XsOp,
    tag: Tag,
    inbox: Arc<Inbox>,
}

/// Bytes read from the descriptor at once.
const READ_CHUNK: usize = 64 << 10;

pub(crate) struct Task {
    io: AsyncFd<OwnedFd>,
    core: Core,
}

struct Core {
    transport: Transport,
    client: Client,
    requests: mpsc::Receiver<Request>,
    control_tx: mpsc::UnboundedSender<Control>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Callers waiting for a command's result.
    waiting: HashMap<OpId, oneshot::Sender<Result<Response, ClientError>>>,
    /// Watches being registered: their queue and who waits for it.
    registering: HashMap<OpId, oneshot::Sender<Result<Parts, ClientError>>>,
    /// Every watch with a stream, by id.
    watches: HashMap<OpId, Arc<Shared>>,
    /// The L2 driver's watches (token -> id, the one translation's bookkeeping) and where
    /// their events go.
    l2_watches: Watches,
    l2_inbox: Option<Arc<Inbox>>,
    l2_pending: HashMap<OpId, L2Pending>,
    /// Bytes to write, and how much of the first is written.
    outgoing: VecDeque<Bytes>,
    written: usize,
    buf: Vec<u8>,
}

impl Task {
    pub(crate) fn new(
        io: AsyncFd<OwnedFd>,
        transport: Transport,
        client: Client,
        requests: mpsc::Receiver<Request>,
        control_tx: mpsc::UnboundedSender<Control>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Task {
        Task {
            io,
            core: Core {
                transport,
                client,
                requests,
                control_tx,
                control,
                waiting: HashMap::new(),
                registering: HashMap::new(),
                watches: HashMap::new(),
                l2_watches: Watches::default(),
                l2_inbox: None,
                l2_pending: HashMap::new(),
                outgoing: VecDeque::new(),
                written: 0,
                buf: vec![0; READ_CHUNK],
            },
        }
    }

    pub(crate) async fn run(self) {
        let Task { io, mut core } = self;
        let mut requests_open = true;
        loop {
            if core.drain() {
                break;
            }
            let deadline = core
                .client
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let want_write = !core.outgoing.is_empty();
            tokio::select! {
                readable = io.readable() => match readable {
                    Ok(_ready) => core.read(&io),
                    Err(_) => core.client.handle_input(now(), Input::<OwnedFd>::Closed),
                },
                writable = io.writable(), if want_write => match writable {
                    Ok(_ready) => core.write(&io),
                    Err(_) => core.client.handle_input(now(), Input::<OwnedFd>::Closed),
                },
                request = core.requests.recv(), if requests_open => match request {
                    Some(request) => core.handle_request(request),
                    None => {
                        // Every handle, watch and transaction is gone: nobody can wait
                        // for anything any more.
                        requests_open = false;
                        core.client.close(now());
                    }
                },
                Some(control) = core.control.recv() => core.handle_control(control),
                () = sleep_until(deadline), if deadline.is_some() => {
                    core.client.handle_timeout(now());
                }
            }
        }
        core.finish();
    }
}

impl Core {
    fn handle_request(&mut self, request: Request) {
        let now = now();
        match request {
            Request::Call(start, done) => {
                let op = start(&mut self.client, now);
                self.waiting.insert(op, done);
            }
            Request::Watch { path, token, done } => {
                let id = self.client.watch(now, &path, &token);
                let bound = self.client.config().max_queued_events;
                let queue = WatchQueue::new(id, &path, &token, bound);
                // The queue exists before the daemon answers: the initial event may come
                // first.
                self.watches.insert(id, Arc::new(Shared::new(queue)));
                self.registering.insert(id, done);
            }
            Request::Close => self.client.close(now),
        }
    }

    fn handle_control(&mut self, control: Control) {
        let now = now();
        match control {
            Control::Unwatch(id, done) => {
                if let Some(shared) = self.watches.remove(&id) {
                    shared.end();
                }
                let op = self.client.unwatch(now, id);
                if let Some(done) = done {
                    self.waiting.insert(op, done);
                }
            }
            Control::Abort(tx) => {
                // Nobody waits for this answer: its `Done` is dropped in `drain`.
                let _ = self.client.transaction_end(now, tx, false);
            }
            Control::L2(L2Submit { op, tag, inbox }) => {
                self.l2_inbox.get_or_insert_with(|| inbox.clone());
                match xs::submit(&mut self.client, now, &op, &mut self.l2_watches) {
                    Submitted::Started(id) => {
                        self.l2_pending.insert(id, L2Pending { op, tag, inbox });
                    }
                    Submitted::Answered(result) => inbox.reply(tag, result),
                }
            }
        }
    }

    /// Drains the machine; returns true once the connection is over.
    fn drain(&mut self) -> bool {
        let mut closed = false;
        while let Some(output) = self.client.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    // Xenstore carries no descriptors; any would be closed here.
                    self.outgoing.push_back(transmit.bytes);
                }
                Output::Done { id, result } => self.done(id, result),
                Output::Event(event) => {
                    if self.l2_watches.contains(&event.token) {
                        if let Some(inbox) = &self.l2_inbox {
                            let watched = self.client.watched_path(event.watch).unwrap_or("");
                            inbox.event(watched, event);
                        }
                    } else if let Some(shared) = self.watches.get(&event.watch) {
                        shared.push(event);
                    }
                }
                Output::Closed(_) => closed = true,
                _ => {}
            }
        }
        closed
    }

    fn done(&mut self, id: OpId, result: Result<Response, ClientError>) {
        if let Some(done) = self.waiting.remove(&id) {
            // The caller may have stopped waiting; that is its choice.
            let _ = done.send(result);
        } else if let Some(done) = self.registering.remove(&id) {
            match result {
                Ok(_) => {
                    let Some(shared) = self.watches.get(&id).cloned() else {
                        return;
                    };
                    let guard = Guard::new(id, self.control_tx.clone());
                    // If the caller stopped waiting, the parts come back and their
                    // guard removes the watch.
                    let _ = done.send(Ok(Parts { shared, guard }));
                }
                Err(err) => {
                    self.watches.remove(&id);
                    let _ = done.send(Err(err));
                }
            }
        } else if let Some(pending) = self.l2_pending.remove(&id) {
            let reply = xs::to_reply(&pending.op, result);
            pending.inbox.reply(pending.tag, reply);
        }
        // Anything else (an abort or unwatch nobody waits for) needs no answer.
    }

    fn read(&mut self, io: &AsyncFd<OwnedFd>) {
        let result = io.try_io(Interest::READABLE, |fd| {
            rustix::io::read(fd.as_fd(), &mut self.buf[..]).map_err(io::Error::from)
        });
        let now = now();
        match result {
            Ok(0) => self.client.handle_input(now, Input::<OwnedFd>::Closed),
            Ok(n) => self
                .client
                .handle_input(now, Input::<OwnedFd>::Bytes(&self.buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.client.handle_input(now, Input::<OwnedFd>::Closed),
        }
    }

    /// Writes what the descriptor takes without waiting.
    fn write(&mut self, io: &AsyncFd<OwnedFd>) {
        while let Some(bytes) = self.outgoing.front() {
            let rest = &bytes[self.written..];
            let transport = self.transport;
            let result = io.try_io(Interest::WRITABLE, |fd| {
                write_some(fd.as_fd(), transport, rest)
            });
            match result {
                Ok(n) => {
                    self.written += n;
                    if self.written >= bytes.len() {
                        self.outgoing.pop_front();
                        self.written = 0;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return;
                }
                Err(_) => {
                    self.client.handle_input(now(), Input::<OwnedFd>::Closed);
                    return;
                }
            }
        }
    }

    /// The connection is over: every answer the machine gave is out; end the watch
    /// streams, and answer the L2 operations that never reached the machine.
    fn finish(mut self) {
        self.outgoing.clear();
        for (_, shared) in self.watches.drain() {
            shared.end();
        }
        // After `close`, a send fails, so the sender answers it itself: nothing is left
        // unanswered between this drain and the channel's end.
        self.control.close();
        while let Ok(control) = self.control.try_recv() {
            if let Control::L2(L2Submit { tag, inbox, .. }) = control {
                inbox.reply(tag, Err(connection_gone()));
            }
        }
    }
}

/// The answer of an L2 operation whose connection is gone.
pub(crate) fn connection_gone() -> OpError {
    OpError::new(OpErrorKind::Connection, "xenstore connection closed")
}

/// One non-blocking write: `send` on a socket (no `SIGPIPE` if the daemon is gone),
/// `write` on the device.
fn write_some(fd: BorrowedFd<'_>, transport: Transport, bytes: &[u8]) -> io::Result<usize> {
    let n = match transport {
        Transport::Socket => {
            let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
            rustix::net::send(fd, bytes, flags)?
        }
        Transport::Device => rustix::io::write(fd, bytes)?,
    };
    if n == 0 && !bytes.is_empty() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        // `sleep` rather than `sleep_until`: tokio rounds a deadline up by adding to it,
        // which panics for one near the end of `Instant`'s range; `sleep` clamps instead.
        Some(deadline) => {
            tokio::time::sleep(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await
        }
        None => std::future::pending().await,
    }
}
