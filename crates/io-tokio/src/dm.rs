//! The device model on tokio: QEMU spawned on a pre-opened QMP socket, and the toolstack
//! operations (`xsio-dm`'s machines, or any machine speaking `xsio-ops`' QMP, file and
//! process operations) run against it.
//!
//! [`Qemu::spawn`] binds and listens on the QMP socket itself and starts QEMU with the
//! listening socket as its standard input and
//! `-chardev socket,id=xsio-qmp,fd=0,server=on,wait=off -mon chardev=xsio-qmp,mode=control`
//! appended, so connecting never races QEMU's start and nothing polls; [`Qemu::attach`]
//! leads to a QEMU someone else started (found by the connection's peer credentials and
//! watched through a pidfd). [`Qemu::run`] drives one machine until it has completed and
//! every request it made has been answered: QMP commands go through this crate's
//! [`qmp`](crate::qmp::connect) connection with their descriptors attached, files are opened
//! and held under [`FdHandle`](xsio_ops::FdHandle)s, the process is killed on request;
//! QEMU's events, the connection's end and the process's exit reach the machine as
//! [`PeerEvent`]s, and its deadlines are tokio timers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use xsio_dm::{StartConfig, StartUp};
//! use xsio_io_tokio::dm::Qemu;
//!
//! let mut command = tokio::process::Command::new("qemu-system-x86_64");
//! command.args(["-machine", "pc", "-S", "-nodefaults", "-display", "none"]);
//! let mut qemu = Qemu::spawn(command, "/run/xen/qmp-dom1.sock".as_ref())?;
//! let now = tokio::time::Instant::now().into_std();
//! let ready = qemu.run(&mut StartUp::new(StartConfig::fresh(), now)).await??;
//! println!("{} after start-up", ready.status);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use xsio_core::{Machine, OpId};
use xsio_harness::qmp::{
    self as harness_qmp, Handles, connection_error, not_a_qemu_op, session_of,
};
use xsio_io_unix::{exit_of, kill_answer, kill_pidfd, listen, open_file};
use xsio_ops::{
    FileOp, Input, InputError, Op, OpError, Output, PeerEvent, ProcessExit, ProcessOp, QmpCommand,
    QmpEvent, QmpOp, QmpSession, Reply, Request,
};
use xsio_qmp::{Config, Event};

use crate::qmp::{self, QmpHandle};

/// The chardev id of the QMP monitor [`Qemu::spawn`] adds.
pub const CHARDEV_ID: &str = "xsio-qmp";

/// Why [`Qemu::run`] stopped before the machine completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The machine refused an answer or event (a bug of the machine or of this driver).
    #[error("the machine refused an input: {0}")]
    Refused(#[from] InputError),
    /// A task executing a request failed (it panicked or was cancelled).
    #[error("a request's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One QEMU: its socket, its process (when known), its QMP connection (when open), and the
/// descriptors held for the machines.
#[derive(Debug)]
pub struct Qemu {
    socket: PathBuf,
    config: Config,
    process: Option<Process>,
    exit_reported: bool,
    qmp: Option<Connection>,
    handles: Handles<OwnedFd>,
}

#[derive(Debug)]
enum Process {
    Child(Child),
    Other { pid: u32, pidfd: AsyncFd<OwnedFd> },
}

#[derive(Debug)]
struct Connection {
    handle: QmpHandle,
    events: mpsc::Receiver<Event>,
    session: QmpSession,
}

/// The connect in progress, and the other `Connect` requests waiting for its answer.
#[derive(Default)]
struct Connects {
    running: Option<OpId>,
    waiting: Vec<OpId>,
}

/// What a request's task hands back.
struct Finished {
    id: OpId,
    result: Result<Reply, OpError>,
    /// A connect that succeeded: the connection, and the process found behind it.
    connected: Option<(Connection, Option<Process>)>,
}

impl Qemu {
    /// Starts `qemu` with a QMP monitor on a socket at `socket` that this process binds and
    /// listens on first (an existing file there is replaced if nothing listens on it,
    /// refused otherwise). QEMU keeps its own stdout and stderr; its stdin is the socket.
    /// Call it inside a tokio runtime.
    pub fn spawn(mut qemu: Command, socket: &Path) -> io::Result<Qemu> {
        let listener = listen(socket)?;
        qemu.stdin(Stdio::from(OwnedFd::from(listener)))
            .arg("-chardev")
            .arg(format!("socket,id={CHARDEV_ID},fd=0,server=on,wait=off"))
            .arg("-mon")
            .arg(format!("chardev={CHARDEV_ID},mode=control"))
            .kill_on_drop(true);
        let child = qemu.spawn()?;
        // Our copy of the listening socket goes with the command.
        drop(qemu);
        Ok(Qemu::new(socket, Some(Process::Child(child))))
    }

    /// Leads to the QEMU already listening on `socket`; its process is found when the
    /// first [`QmpOp::Connect`] connects.
    pub fn attach(socket: &Path) -> Qemu {
        Qemu::new(socket, None)
    }

    fn new(socket: &Path, process: Option<Process>) -> Qemu {
        Qemu {
            socket: socket.to_owned(),
            config: Config::default(),
            process,
            exit_reported: false,
            qmp: None,
            handles: Handles::default(),
        }
    }

    /// QMP connections opened from now on use `config`.
    pub fn with_config(mut self, config: Config) -> Qemu {
        self.config = config;
        self
    }

    /// The process id, when known.
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Some(Process::Child(child)) => child.id(),
            Some(Process::Other { pid, .. }) => Some(*pid),
            None => None,
        }
    }

    /// How many descriptors are held for the machines (given out, not consumed).
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Closes the QMP connection (QEMU serves one client per monitor at a time); a later
    /// [`QmpOp::Connect`] opens a new one.
    pub async fn disconnect(&mut self) {
        if let Some(connection) = self.qmp.take() {
            connection.handle.close().await;
        }
    }

    /// Drives `machine` until it has completed and every request it made is answered;
    /// returns its completion (its first event). Peer events that come meanwhile (QMP
    /// events, the connection's end, the exit) are handed to it.
    pub async fn run<M, E>(&mut self, machine: &mut M) -> Result<E, RunError>
    where
        M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>, Error = InputError>,
    {
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut answers: VecDeque<(OpId, Result<Reply, OpError>)> = VecDeque::new();
        let mut connects = Connects::default();
        let mut completion = None;
        loop {
            while let Some(output) = machine.poll_output() {
                match output {
                    Output::Request(request) => {
                        self.start(request, &mut tasks, &mut answers, &mut connects)
                    }
                    Output::Event(event) => {
                        completion.get_or_insert(event);
                    }
                }
            }
            if let Some((id, result)) = answers.pop_front() {
                machine.handle_input(now(), Input::Reply { id, result })?;
                continue;
            }
            if tasks.is_empty() {
                if let Some(event) = completion.take() {
                    return Ok(event);
                }
            }
            let deadline = machine.poll_timeout();
            let event = tokio::select! {
                finished = tasks.join_next(), if !tasks.is_empty() => {
                    // `join_next` only answers `None` for an empty set, which is excluded.
                    let Some(finished) = finished else { continue };
                    let finished = finished?;
                    if connects.running == Some(finished.id) {
                        connects.running = None;
                        if let Some((connection, process)) = finished.connected {
                            if self.process.is_none() {
                                self.process = process;
                            }
                            self.qmp = Some(connection);
                        }
                        // Every Connect asked meanwhile gets the same answer.
                        for id in connects.waiting.drain(..) {
                            answers.push_back((id, finished.result.clone()));
                        }
                    }
                    answers.push_back((finished.id, finished.result));
                    continue;
                }
                exit = wait_exit(&mut self.process), if !self.exit_reported => {
                    self.exit_reported = true;
                    PeerEvent::Exited(exit)
                }
                event = next_event(&mut self.qmp) => match event {
                    Some(event) => PeerEvent::Qmp(QmpEvent { name: event.name, data: event.data }),
                    None => {
                        self.qmp = None;
                        PeerEvent::QmpClosed
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    machine.handle_timeout(now());
                    continue;
                }
            };
            machine.handle_input(now(), Input::Peer(&event))?;
        }
    }

    /// Starts one request: answered at once into `answers`, or by a task in `tasks`.
    fn start(
        &mut self,
        request: Request,
        tasks: &mut JoinSet<Finished>,
        answers: &mut VecDeque<(OpId, Result<Reply, OpError>)>,
        connects: &mut Connects,
    ) {
        let Request { id, op } = request;
        let answer = match op {
            Op::Qmp(QmpOp::Connect) => {
                if let Some(connection) = &self.qmp {
                    Ok(Reply::QmpConnected(connection.session.clone()))
                } else if connects.running.is_some() {
                    connects.waiting.push(id);
                    return;
                } else {
                    let socket = self.socket.clone();
                    let config = self.config.clone();
                    let find_process = self.process.is_none();
                    connects.running = Some(id);
                    tasks.spawn(async move {
                        match connect(&socket, config, find_process).await {
                            Ok(connected) => Finished {
                                id,
                                result: Ok(Reply::QmpConnected(connected.0.session.clone())),
                                connected: Some(connected),
                            },
                            Err(err) => Finished {
                                id,
                                result: Err(err),
                                connected: None,
                            },
                        }
                    });
                    return;
                }
            }
            Op::Qmp(QmpOp::Command(command)) => match self.command(command) {
                Ok((handle, command)) => {
                    tasks.spawn(async move {
                        let result = reply_of(handle.execute(command).await);
                        Finished {
                            id,
                            result,
                            connected: None,
                        }
                    });
                    return;
                }
                Err(err) => Err(err),
            },
            Op::File(FileOp::Open(open)) => {
                open_file(&open).map(|fd| Reply::Fd(self.handles.hold(fd)))
            }
            Op::File(FileOp::Close(fd)) => self.handles.close(fd),
            Op::Process(ProcessOp::Kill) => self.kill(),
            _ => Err(not_a_qemu_op()),
        };
        answers.push_back((id, answer));
    }

    /// The connection and the command with its descriptors attached; the descriptors are
    /// closed here when it cannot go.
    fn command(&mut self, command: QmpCommand) -> Result<(QmpHandle, xsio_qmp::Command), OpError> {
        let qemu_command = self.handles.command(command)?;
        let Some(connection) = &self.qmp else {
            return Err(connection_error("no QMP connection"));
        };
        Ok((connection.handle.clone(), qemu_command))
    }

    fn kill(&mut self) -> Result<Reply, OpError> {
        kill_answer(match &mut self.process {
            Some(Process::Child(child)) => Some(child.start_kill()),
            Some(Process::Other { pidfd, .. }) => Some(kill_pidfd(pidfd.get_ref().as_fd())),
            None => None,
        })
    }
}

/// Connects to `socket`, finds the process behind it when asked, negotiates.
async fn connect(
    socket: &Path,
    config: Config,
    find_process: bool,
) -> Result<(Connection, Option<Process>), OpError> {
    let connection_error =
        |err: &dyn std::fmt::Display| connection_error(format!("{}: {err}", socket.display()));
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| connection_error(&e))?;
    let process = if find_process {
        peer_process(&stream)
    } else {
        None
    };
    let (handle, events) = qmp::with_stream(stream, config)
        .await
        .map_err(|e| connection_error(&e))?;
    let session = session_of(handle.session());
    Ok((
        Connection {
            handle,
            events,
            session,
        },
        process,
    ))
}

/// The process at the other end of `stream`, from its credentials, watched through a pidfd.
fn peer_process(stream: &UnixStream) -> Option<Process> {
    let pid = stream.peer_cred().ok()?.pid()?;
    let pidfd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::NONBLOCK).ok()?;
    Some(Process::Other {
        pid: u32::try_from(pid).ok()?,
        pidfd: register(pidfd).ok()?,
    })
}

/// Registers `pidfd` with tokio's reactor.
///
/// Tokio deprecated the safe constructor because an arbitrary `AsRawFd` inner value could
/// close or swap its descriptor while registered; an `OwnedFd` owned by the `AsyncFd`
/// cannot, which is the contract its `unsafe` replacement asks the caller to uphold. The
/// safe call keeps this crate free of `unsafe`.
#[allow(deprecated)]
fn register(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::new(pidfd)
}

/// How the process ended, once it has; never, without a process.
async fn wait_exit(process: &mut Option<Process>) -> Option<ProcessExit> {
    match process {
        Some(Process::Child(child)) => match child.wait().await {
            Ok(status) => Some(exit_of(status)),
            Err(_) => None,
        },
        Some(Process::Other { pidfd, .. }) => {
            // Readable once the process has exited; its status is its parent's.
            match pidfd.readable().await {
                Ok(_) => None,
                Err(_) => std::future::pending().await,
            }
        }
        None => std::future::pending().await,
    }
}

/// The next QMP event; `None` when the connection ended; never, without a connection.
async fn next_event(connection: &mut Option<Connection>) -> Option<Event> {
    match connection {
        Some(connection) => connection.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        // `sleep` of what is left rather than `sleep_until`: a deadline near the end of
        // `Instant`'s range must not overflow in tokio's rounding.
        Some(deadline) => {
            let left = deadline.saturating_duration_since(now());
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    // tokio's clock, so that tests with a paused clock drive the deadlines too.
    tokio::time::Instant::now().into_std()
}

/// A QMP command's result in the vocabulary of the machines.
fn reply_of(result: Result<xsio_qmp::Return, qmp::Error>) -> Result<Reply, OpError> {
    match result {
        Ok(value) => harness_qmp::reply_of(Ok(value)),
        Err(qmp::Error::Command(err)) => harness_qmp::reply_of(Err(err)),
        Err(err @ (qmp::Error::Io(_) | qmp::Error::Closed(_))) => Err(connection_error(err)),
    }
}
