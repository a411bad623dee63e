//! A blocking QMP connection: the [`xsio_qmp::Client`] machine over a Unix socket.
//!
//! ```no_run
//! use xsio_io_std::qmp::QmpConn;
//! use xsio_qmp::{Config, typed};
//!
//! let mut qemu = QmpConn::connect("/run/qemu/dom1.qmp", Config::default())?;
//! let status: typed::StatusInfo = qemu.execute(typed::query_status())?.parse()?;
//! println!("QEMU {:?} is {}", qemu.session().greeting.version.qemu, status.status);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Commands can also be pipelined: [`submit`](QmpConn::submit) several, then
//! [`wait`](QmpConn::wait) for each. Events that arrive meanwhile are kept (up to
//! `Config::max_events`, then counted as dropped) for [`next_event`](QmpConn::next_event).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use xsio_core::{Input, OpId};
use xsio_qmp::wire::Framer;
use xsio_qmp::{
    Client, CloseReason, Command, CommandError, Config, Event, Output, Return, Session,
};

use crate::unix::{Outgoing, UnixConn, now};

/// Why a blocking QMP call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QmpIoError {
    /// The socket failed (connect, read or write).
    #[error("QMP socket: {0}")]
    Io(#[from] io::Error),
    /// The command completed with an error.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The connection ended before negotiation finished.
    #[error("QMP connection ended: {0}")]
    Closed(CloseReason),
    /// `wait` was given an id that is not pending (never submitted, or already waited for).
    #[error("no pending QMP command {0}")]
    UnknownOp(OpId),
}

/// One QMP connection driven by blocking calls.
#[derive(Debug)]
pub struct QmpConn {
    conn: UnixConn,
    /// Transmits not yet written: a QEMU that stops reading must not block us past the
    /// machine's deadlines, so writes only go as far as the socket takes them.
    outgoing: Outgoing,
    client: Client<OwnedFd>,
    max_events: usize,
    done: HashMap<OpId, Result<Return, CommandError>>,
    pending: HashSet<OpId>,
    events: VecDeque<Event>,
    events_dropped: u64,
    session: Option<Session>,
    closed: Option<CloseReason>,
    io_error: Option<io::Error>,
    buf: Vec<u8>,
    transcript: Option<Transcript>,
}

impl QmpConn {
    /// Connects to QEMU's QMP socket at `path` and negotiates capabilities.
    pub fn connect(path: impl AsRef<Path>, config: Config) -> Result<QmpConn, QmpIoError> {
        let conn = UnixConn::connect(path)?;
        QmpConn::with_conn(conn, config)
    }

    /// Negotiates over an already connected socket (one handed over by a parent, say).
    pub fn with_conn(conn: UnixConn, config: Config) -> Result<QmpConn, QmpIoError> {
        let mut qmp = QmpConn::unnegotiated(conn, config);
        qmp.negotiate()?;
        Ok(qmp)
    }

    /// Like [`with_conn`](QmpConn::with_conn), recording every message both ways (see
    /// [`transcript`](QmpConn::transcript)).
    pub fn with_conn_recorded(conn: UnixConn, config: Config) -> Result<QmpConn, QmpIoError> {
        let mut qmp = QmpConn::unnegotiated(conn, config);
        qmp.transcript = Some(Transcript::new());
        qmp.negotiate()?;
        Ok(qmp)
    }

    /// Starts a connection without waiting for negotiation, for drivers that wait on many
    /// things at once: call [`poll`](QmpConn::poll) when the socket is readable (it is
    /// [`AsFd`]), and [`try_session`](QmpConn::try_session) says when negotiation is done.
    /// Commands may be submitted at once; they go out after negotiation. `record` keeps a
    /// [`transcript`](QmpConn::transcript).
    pub fn start(conn: UnixConn, config: Config, record: bool) -> QmpConn {
        let mut qmp = QmpConn::unnegotiated(conn, config);
        if record {
            qmp.transcript = Some(Transcript::new());
        }
        qmp
    }

    fn unnegotiated(conn: UnixConn, config: Config) -> QmpConn {
        QmpConn {
            conn,
            outgoing: Outgoing::default(),
            max_events: config.max_events,
            client: Client::new(config, now()),
            done: HashMap::new(),
            pending: HashSet::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            session: None,
            closed: None,
            io_error: None,
            buf: vec![0; 64 << 10],
            transcript: None,
        }
    }

    fn negotiate(&mut self) -> Result<(), QmpIoError> {
        while self.session.is_none() {
            if let Some(reason) = &self.closed {
                return Err(QmpIoError::Closed(reason.clone()));
            }
            self.step(None);
        }
        Ok(())
    }

    /// What negotiation settled: QEMU's greeting and whether out-of-band is on.
    pub fn session(&self) -> &Session {
        // `negotiate` returns only once a session exists.
        self.session.as_ref().expect("negotiated")
    }

    /// What negotiation settled, once it has (see [`start`](QmpConn::start)).
    pub fn try_session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// One turn that never blocks: sends what is queued, reads what the socket already
    /// has, fires the machine's deadline if it passed.
    pub fn poll(&mut self) {
        self.flush();
        if self.closed.is_none() {
            let mut fds = [PollFd::new(self.conn.stream(), PollFlags::IN)];
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&zero)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => {}
                Ok(_) => self.read(),
                Err(e) => self.fail(e.into()),
            }
        }
        let t = now();
        if self.client.poll_timeout().is_some_and(|d| d <= t) {
            self.client.handle_timeout(t);
        }
        self.flush();
    }

    /// Whether bytes wait to be written (the socket was full): a driver that waits on many
    /// things should come back soon, or wait for the socket to be writable.
    pub fn has_unsent(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The result of command `op` if it has completed (`None`: not yet, or not pending).
    pub fn take_done(&mut self, op: OpId) -> Option<Result<Return, QmpIoError>> {
        let result = self.done.remove(&op)?;
        self.pending.remove(&op);
        Some(result.map_err(QmpIoError::from))
    }

    /// The oldest event received and not yet taken, without waiting.
    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs one command and waits for its reply (or its deadline).
    pub fn execute(&mut self, command: Command) -> Result<Return, QmpIoError> {
        let op = self.submit(command);
        self.wait(op)
    }

    /// Submits a command without waiting; it is sent at once when the window allows.
    pub fn submit(&mut self, command: Command) -> OpId {
        let op = self.client.execute(now(), command);
        self.pending.insert(op);
        // Sending now keeps pipelined commands flowing; a send error closes the client, which
        // then fails the command.
        self.flush();
        op
    }

    /// Cancels command `op`: unless it already completed, it completes with
    /// [`CommandError::Cancelled`] (collect that with [`wait`](QmpConn::wait)); if it was not
    /// sent yet, it never will be and its descriptors are closed. A command already sent may
    /// still run in QEMU; its reply is then ignored. Returns whether it was still pending.
    pub fn cancel(&mut self, op: OpId) -> bool {
        let cancelled = self.client.cancel(now(), op);
        self.flush();
        cancelled
    }

    /// Waits until command `op` completes and returns its result.
    pub fn wait(&mut self, op: OpId) -> Result<Return, QmpIoError> {
        if !self.pending.remove(&op) {
            return Err(QmpIoError::UnknownOp(op));
        }
        loop {
            if let Some(result) = self.done.remove(&op) {
                return result.map_err(QmpIoError::from);
            }
            self.step(None);
        }
    }

    /// The next event, waiting until `deadline` (`None`: as long as the connection lives).
    /// Returns `Ok(None)` at the deadline or once the connection has closed.
    pub fn next_event(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, QmpIoError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if self.closed.is_some() || deadline.is_some_and(|d| now() >= d) {
                return Ok(None);
            }
            self.step(deadline);
        }
    }

    /// Why the connection ended, once it has.
    pub fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Events dropped because `Config::max_events` were waiting, here and in the machine.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped + self.client.stats().events_dropped
    }

    /// The messages exchanged so far, one per line: `> ` sent (`> [fds=N] ` when fds rode
    /// along), `< ` received, `# closed` when QEMU closed the socket. Only for connections
    /// made with [`with_conn_recorded`](QmpConn::with_conn_recorded).
    pub fn transcript(&self) -> Option<&str> {
        self.transcript.as_ref().map(|t| t.text.as_str())
    }

    /// Ends the connection now and keeps the connection object: every pending command
    /// completes with `Disconnected` (for [`take_done`](QmpConn::take_done)) and
    /// [`closed`](QmpConn::closed) says so.
    pub fn disconnect(&mut self) {
        self.client.close(now());
        self.flush();
    }

    /// Fails every pending command, then shuts the socket (also done on drop).
    pub fn close(mut self) {
        self.client.close(now());
        self.flush();
    }

    /// Drains the machine's outputs (queues transmits, files completions and events), then
    /// writes what the socket takes without blocking.
    fn flush(&mut self) {
        loop {
            self.drain();
            if self.closed.is_some() || self.outgoing.is_empty() {
                return;
            }
            match self.outgoing.write_ready(&self.conn) {
                Ok(()) => return,
                // The machine fails every command; drain again to file that.
                Err(e) => self.fail(e),
            }
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.client.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Some(t) = &mut self.transcript {
                        t.sent(&transmit.bytes, transmit.fds.len());
                    }
                    // A refused transmit drops the fds (closing them) and ends the connection.
                    if let Err(e) = self.outgoing.push(transmit) {
                        self.fail(e);
                    }
                }
                Output::Done { id, result } => {
                    self.done.insert(id, result);
                }
                Output::Event(event) => {
                    if self.events.len() >= self.max_events {
                        self.events_dropped += 1;
                    } else {
                        self.events.push_back(event);
                    }
                }
                Output::Connected(session) => self.session = Some(session),
                Output::Closed(reason) => {
                    // What was not written goes nowhere now; its fds are closed.
                    self.outgoing.clear();
                    let _ = self.conn.stream().shutdown(std::net::Shutdown::Both);
                    self.closed = Some(reason);
                }
                // Outputs added by later versions of the machine carry nothing to act on here.
                _ => {}
            }
        }
    }

    /// One turn of the loop: flush, wait for the socket (readable, or writable while
    /// transmits wait) or the earliest deadline, feed what happened to the machine.
    ///
    /// A socket error ends the connection like an end of stream: the machine then fails
    /// every pending command, which is what callers see. The error itself is kept for
    /// [`io_error`](QmpConn::io_error).
    fn step(&mut self, user_deadline: Option<Instant>) {
        self.flush();
        if self.closed.is_some() {
            // Nothing more will happen; completions were all filed by the flush.
            return;
        }
        let machine_deadline = self.client.poll_timeout();
        let deadline = match (machine_deadline, user_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // While transmits wait, room in the socket wakes us too; the flush below writes.
        match self.conn.wait(deadline, !self.outgoing.is_empty()) {
            Ok(ready) if ready.readable => self.read(),
            Ok(_) => {}
            Err(e) => self.fail(e),
        }
        let t = now();
        if self.client.poll_timeout().is_some_and(|d| d <= t) {
            self.client.handle_timeout(t);
        }
        self.flush();
    }

    fn read(&mut self) {
        let mut fds = Vec::new();
        let result = self.conn.recv(&mut self.buf, &mut fds);
        let t = now();
        if !fds.is_empty() {
            self.client.handle_input(t, Input::Fds(fds));
        }
        match result {
            Ok(0) => {
                if let Some(tr) = &mut self.transcript {
                    tr.line("# closed");
                }
                self.client.handle_input(t, Input::Closed);
            }
            Ok(n) => {
                if let Some(tr) = &mut self.transcript {
                    tr.received(&self.buf[..n]);
                }
                self.client.handle_input(t, Input::Bytes(&self.buf[..n]));
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, error: io::Error) {
        if let Some(tr) = &mut self.transcript {
            tr.line("# closed");
        }
        self.io_error.get_or_insert(error);
        self.client.handle_input(now(), Input::Closed);
    }

    /// The socket error that ended the connection, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io_error.as_ref()
    }
}

impl AsFd for QmpConn {
    /// The socket, to wait until it is readable.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.stream().as_fd()
    }
}

impl Drop for QmpConn {
    fn drop(&mut self) {
        // Completions nobody will read; the point is closing unsent fds and the socket.
        self.client.close(now());
        while self.client.poll_output().is_some() {}
    }
}

/// Records messages both ways as text lines.
#[derive(Debug)]
struct Transcript {
    text: String,
    framer: Framer,
}

impl Transcript {
    fn new() -> Self {
        Transcript {
            text: String::new(),
            framer: Framer::new(usize::MAX),
        }
    }

    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn sent(&mut self, bytes: &[u8], n_fds: usize) {
        for (i, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
            let marker = if i == 0 && n_fds > 0 {
                format!("> [fds={n_fds}] ")
            } else {
                "> ".to_owned()
            };
            self.line(&format!("{marker}{line}"));
        }
    }

    fn received(&mut self, mut bytes: &[u8]) {
        while let Ok(Some(frame)) = self.framer.next_frame(&mut bytes) {
            let line = format!("< {}", String::from_utf8_lossy(&frame));
            self.line(&line);
        }
    }
}
