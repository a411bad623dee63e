//! An async QMP connection: one task owns the [`xsio_qmp::Client`] machine and the socket;
//! callers hold a cloneable [`QmpHandle`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), xsio_io_tokio::qmp::Error> {
//! use xsio_io_tokio::qmp;
//! use xsio_qmp::{Config, typed};
//!
//! let (qemu, mut events) = qmp::connect("/run/qemu/dom1.qmp", Config::default()).await?;
//! let other = qemu.clone(); // any number of tasks may issue commands
//! let status: typed::StatusInfo = other.execute(typed::query_status()).await?.parse()?;
//! // A command is cancelled by id, or by dropping its future: it then completes with
//! // `CommandError::Cancelled` (unless QEMU answered first) and is never sent if it was
//! // still queued.
//! let stop = qemu.submit(typed::stop()).await;
//! qemu.cancel(stop.id()).await;
//! let _cancelled_or_answered = stop.await;
//! while let Some(event) = events.recv().await {
//!     println!("{} {}", event.name, event.data);
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use xsio_core::{Input, OpId, Transmit};
use xsio_qmp::{
    Client, CloseReason, Command, CommandError, Config, Event, Output, Return, Session,
};

/// At most this many descriptors travel with one transmit, or are accepted with one read.
const MAX_FDS: usize = 16;

/// Why an async QMP call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting failed.
    #[error("QMP socket: {0}")]
    Io(#[from] io::Error),
    /// The command completed with an error (including the connection closing first).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The connection ended before negotiation finished.
    #[error("QMP connection ended: {0}")]
    Closed(CloseReason),
}

/// A cloneable handle to one QMP connection. The connection closes when every handle is
/// dropped (pending commands then fail with [`CommandError::Disconnected`]) or on
/// [`close`](QmpHandle::close).
#[derive(Clone, Debug)]
pub struct QmpHandle {
    requests: mpsc::Sender<Request>,
    session: Arc<Session>,
    /// Shared by every clone, so that ids are unique on the connection.
    next_id: Arc<AtomicU64>,
}

/// Names a command submitted with [`QmpHandle::submit`], for [`QmpHandle::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommandId(u64);

type Completion = oneshot::Sender<Result<Return, CommandError>>;

#[derive(Debug)]
enum Request {
    Execute(CommandId, Command, Completion),
    // Through the same channel as `Execute`, so that a cancel never overtakes its command.
    Cancel(CommandId),
    Close,
}

/// A submitted command's result, to await. Dropping it before it completes cancels the
/// command (as [`QmpHandle::cancel`] does): the connection's task sees that nobody waits any
/// more and tells the machine.
#[derive(Debug)]
#[must_use = "dropping it cancels the command"]
pub struct PendingCommand {
    id: CommandId,
    result: oneshot::Receiver<Result<Return, CommandError>>,
}

impl PendingCommand {
    /// The command's id, for [`QmpHandle::cancel`].
    pub fn id(&self) -> CommandId {
        self.id
    }
}

impl Future for PendingCommand {
    type Output = Result<Return, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|result| match result {
                Ok(result) => result.map_err(Error::from),
                // The task ended without answering: only possible once the connection is gone.
                Err(_) => Err(CommandError::Disconnected.into()),
            })
    }
}

impl QmpHandle {
    /// What negotiation settled.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs a command and waits for its reply. Many may run at once, from many tasks: they
    /// are pipelined on the one connection. Dropping the future cancels the command.
    pub async fn execute(&self, command: Command) -> Result<Return, Error> {
        self.submit(command).await.await
    }

    /// Submits a command and returns its result to await, with an id for
    /// [`cancel`](QmpHandle::cancel). If the connection is gone, the result is
    /// [`CommandError::Disconnected`].
    pub async fn submit(&self, command: Command) -> PendingCommand {
        let id = CommandId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (done, result) = oneshot::channel();
        // If the task is gone the request (and `done`) is dropped: the result then says
        // Disconnected.
        let _ = self
            .requests
            .send(Request::Execute(id, command, done))
            .await;
        PendingCommand { id, result }
    }

    /// Cancels a submitted command: unless it already completed, it completes with
    /// [`CommandError::Cancelled`]; if it was not sent yet it never will be, and its
    /// descriptors are closed. A command already sent may still run in QEMU; its reply is
    /// then ignored.
    pub async fn cancel(&self, id: CommandId) {
        let _ = self.requests.send(Request::Cancel(id)).await;
    }

    /// Closes the connection: pending commands fail with [`CommandError::Disconnected`].
    pub async fn close(&self) {
        let _ = self.requests.send(Request::Close).await;
    }
}

/// Connects to the QMP socket at `path`, negotiates, and spawns the connection's task on
/// the current tokio runtime. Events arrive on the returned receiver (bounded by
/// `Config::max_events`; when nobody reads, further events are dropped).
pub async fn connect(
    path: impl AsRef<Path>,
    config: Config,
) -> Result<(QmpHandle, mpsc::Receiver<Event>), Error> {
    let stream = UnixStream::connect(path).await?;
    with_stream(stream, config).await
}

/// Like [`connect`], over a stream that is already connected.
pub async fn with_stream(
    stream: UnixStream,
    config: Config,
) -> Result<(QmpHandle, mpsc::Receiver<Event>), Error> {
    let (requests, request_rx) = mpsc::channel(64);
    let (event_tx, events) = mpsc::channel(config.max_events.max(1));
    let (ready_tx, ready) = oneshot::channel();
    let client = Client::new(config, now());
    let task = Task {
        stream,
        client,
        requests: request_rx,
        events: event_tx,
        ready: Some(ready_tx),
        waiting: HashMap::new(),
        ops: HashMap::new(),
        outgoing: VecDeque::new(),
        buf: vec![0; 64 << 10],
    };
    tokio::spawn(task.run());
    match ready.await {
        Ok(Ok(session)) => Ok((
            QmpHandle {
                requests,
                session: Arc::new(session),
                next_id: Arc::new(AtomicU64::new(0)),
            },
            events,
        )),
        Ok(Err(reason)) => Err(Error::Closed(reason)),
        Err(_) => Err(Error::Closed(CloseReason::PeerClosed)),
    }
}

fn now() -> std::time::Instant {
    // tokio's clock, so that tests with a paused clock drive the machine's deadlines too.
    Instant::now().into_std()
}

/// A transmit being written; `sent` bytes are out, and the fds went with the first of them.
struct Pending {
    transmit: Transmit,
    sent: usize,
}

struct Task {
    stream: UnixStream,
    client: Client,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<Event>,
    ready: Option<oneshot::Sender<Result<Session, CloseReason>>>,
    /// Commands not completed yet, with whom to tell.
    waiting: HashMap<OpId, (CommandId, Completion)>,
    /// The machine's id of each command in `waiting`.
    ops: HashMap<CommandId, OpId>,
    outgoing: VecDeque<Pending>,
    buf: Vec<u8>,
}

impl Task {
    async fn run(mut self) {
        let mut requests_open = true;
        loop {
            if self.drain() {
                return;
            }
            if let Err(e) = self.write_some() {
                let _ = e;
                self.client.handle_input(now(), Input::Closed);
                continue;
            }
            let deadline = self.client.poll_timeout().map(Instant::from_std);
            let want_write = !self.outgoing.is_empty();
            tokio::select! {
                readable = self.stream.readable() => {
                    match readable {
                        Ok(()) => self.read(),
                        Err(_) => self.client.handle_input(now(), Input::Closed),
                    }
                }
                writable = self.stream.writable(), if want_write => {
                    if writable.is_err() {
                        self.client.handle_input(now(), Input::Closed);
                    }
                }
                request = self.requests.recv(), if requests_open => match request {
                    Some(Request::Execute(id, command, done)) => {
                        let op = self.client.execute(now(), command);
                        self.waiting.insert(op, (id, done));
                        self.ops.insert(id, op);
                    }
                    Some(Request::Cancel(id)) => {
                        // Unknown: it already completed, and its result is on its way.
                        if let Some(&op) = self.ops.get(&id) {
                            self.client.cancel(now(), op);
                        }
                    }
                    Some(Request::Close) => self.client.close(now()),
                    None => {
                        // Every handle is gone: nobody can wait for anything any more.
                        requests_open = false;
                        self.client.close(now());
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.client.handle_timeout(now());
                }
                op = std::future::poll_fn(|cx| poll_abandoned(&mut self.waiting, cx)) => {
                    // Nobody waits for it any more: cancel it, once (it left `waiting`).
                    if let Some((id, _)) = self.waiting.remove(&op) {
                        self.ops.remove(&id);
                    }
                    self.client.cancel(now(), op);
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
                    self.outgoing.push_back(Pending { transmit, sent: 0 })
                }
                Output::Done { id, result } => {
                    if let Some((command, done)) = self.waiting.remove(&id) {
                        self.ops.remove(&command);
                        // The caller may have stopped waiting; that is its choice.
                        let _ = done.send(result);
                    }
                }
                Output::Event(event) => {
                    // Bounded: a reader that does not keep up loses events, never memory.
                    let _ = self.events.try_send(event);
                }
                Output::Connected(session) => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(session));
                    }
                }
                Output::Closed(reason) => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(reason));
                    }
                    closed = true;
                }
                _ => {}
            }
        }
        if closed {
            // Unsent transmits are dropped here, closing their fds.
            self.outgoing.clear();
        }
        closed
    }

    /// Writes as much as the socket takes without blocking.
    fn write_some(&mut self) -> io::Result<()> {
        while let Some(pending) = self.outgoing.front_mut() {
            let result = self.stream.try_io(Interest::WRITABLE, || {
                send_some(self.stream.as_fd(), pending)
            });
            match result {
                Ok(()) if pending.sent == pending.transmit.bytes.len() => {
                    self.outgoing.pop_front();
                }
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&mut self) {
        let mut fds = Vec::new();
        let result = self.stream.try_io(Interest::READABLE, || {
            recv_with_fds(self.stream.as_fd(), &mut self.buf, &mut fds)
        });
        let t = now();
        if !fds.is_empty() {
            self.client.handle_input(t, Input::Fds(fds));
        }
        match result {
            Ok(0) => self.client.handle_input(t, Input::Closed),
            Ok(n) => self.client.handle_input(t, Input::Bytes(&self.buf[..n])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.client.handle_input(t, Input::Closed),
        }
    }
}

/// Ready with a command whose [`PendingCommand`] was dropped (nobody awaits its result).
fn poll_abandoned(
    waiting: &mut HashMap<OpId, (CommandId, Completion)>,
    cx: &mut Context<'_>,
) -> Poll<OpId> {
    for (op, (_, done)) in waiting.iter_mut() {
        if done.poll_closed(cx).is_ready() {
            return Poll::Ready(*op);
        }
    }
    Poll::Pending
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        // `sleep` rather than `sleep_until`: tokio rounds a deadline up by adding to it,
        // which panics for one near the end of `Instant`'s range; `sleep` clamps instead.
        Some(deadline) => {
            tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await
        }
        None => std::future::pending().await,
    }
}

/// One nonblocking write of what remains of `pending`; the fds go with the first byte that
/// moves and are closed right after, never attached again.
fn send_some(socket: BorrowedFd<'_>, pending: &mut Pending) -> io::Result<()> {
    let rest = &pending.transmit.bytes[pending.sent..];
    let n = if pending.transmit.fds.is_empty() {
        rustix::net::send(socket, rest, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)?
    } else {
        if pending.transmit.fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many fds in one transmit",
            ));
        }
        let borrowed: Vec<BorrowedFd<'_>> = pending.transmit.fds.iter().map(AsFd::as_fd).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        let n = rustix::net::sendmsg(
            socket,
            &[IoSlice::new(rest)],
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?;
        // The kernel holds its own references now; close ours.
        pending.transmit.fds.clear();
        n
    };
    pending.sent += n;
    Ok(())
}

fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received_fds) = message {
            fds.extend(received_fds);
        }
    }
    Ok(received.bytes)
}
