//! The device model's driver: QEMU spawned on a pre-opened QMP socket, and the QMP, file
//! and process operations of the toolstack machines (`xsio-dm`, later CD-ROM) executed
//! against it, with real descriptors passed by `SCM_RIGHTS`.
//!
//! [`QemuLinks`] is a [`Store`] (and [`Pollable`]) for [`xsio_harness::Harness`]: each
//! harness connection it makes leads to one QEMU.
//!
//! - [`spawn`](QemuLinks::spawn) binds and listens on the QMP socket itself, then starts
//!   QEMU with the listening socket as its standard input and
//!   `-chardev socket,id=xsio-qmp,fd=0,server=on,wait=off -mon chardev=xsio-qmp,mode=control`
//!   appended, and closes its own copy. A connection to the path succeeds from then on
//!   (the kernel queues it), and QEMU's greeting on it is the sign that QEMU is up: no
//!   connect race and no polling. Passing the socket as stdin needs no `unsafe` `pre_exec`
//!   and no descriptor left inheritable for other children to pick up.
//! - [`attach`](QemuLinks::attach) leads to a QEMU someone else started, by its socket
//!   path; its process is found from the connection's peer credentials (`SO_PEERCRED`)
//!   and watched through a pidfd, so its exit is seen too (without a status: it is not our
//!   child).
//!
//! What each operation does: [`QmpOp::Connect`] connects to the socket and negotiates
//! (answered once QEMU's greeting and `qmp_capabilities` are through; at once when already
//! connected); [`QmpOp::Command`] runs the command on that connection, with the
//! descriptors of its handles attached to its first byte; [`FileOp::Open`] opens a file
//! (mode 0600 when created) and keeps the descriptor under a fresh
//! [`FdHandle`](xsio_ops::FdHandle); [`FileOp::Close`] closes one; [`ProcessOp::Kill`]
//! sends `SIGKILL`. QEMU's events, the connection's end and the process's exit (reaped,
//! with its status, when it is our child) reach every machine on the connection as
//! [`PeerEvent`]s, the exit first when both are seen at once.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use xsio_dm::{StartConfig, StartUp};
//! use xsio_harness::Harness;
//! use xsio_io_std::dm::QemuLinks;
//! use xsio_io_std::l2::run_until;
//!
//! let now = xsio_io_std::now();
//! let mut world: Harness<StartUp> = Harness::new(now);
//! let mut links = QemuLinks::default();
//! let mut qemu = Command::new("qemu-system-x86_64");
//! qemu.args(["-machine", "pc", "-S", "-nodefaults", "-display", "none"]);
//! let conn = links.spawn(&mut world, qemu, "/run/xen/qmp-dom1.sock".as_ref())?;
//! let start = world.add(conn, StartUp::new(StartConfig::fresh(), now));
//! world.drain(start);
//! run_until(&mut world, &mut links, Duration::from_secs(61), |w| w.actor(start).is_settled())?;
//! println!("{:?}", world.actor(start).result());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use xsio_core::OpId;
use xsio_harness::qmp::{self, Handles, connection_error, is_qemu_op, not_a_qemu_op, session_of};
use xsio_harness::{Actor, Conn, Harness, HarnessError, Owner, Store};
use xsio_io_unix::{exit_of, kill_answer, kill_pidfd, listen, open_file};
use xsio_ops::{
    FileOp, Op, OpError, OpErrorKind, PeerEvent, ProcessOp, QmpCommand, QmpEvent, QmpOp, Reply,
};
use xsio_qmp::Config;

use crate::l2::Pollable;
use crate::qmp::{QmpConn, QmpIoError};
use crate::unix::UnixConn;

/// The chardev id of the QMP monitor [`QemuLinks::spawn`] adds.
pub const CHARDEV_ID: &str = "xsio-qmp";

/// The QEMUs of a harness, one per harness connection made here.
#[derive(Debug, Default)]
pub struct QemuLinks {
    links: Vec<Link>,
    config: Config,
    record: bool,
}

/// One QEMU: its socket, its process (when known), the QMP connection (when open).
#[derive(Debug)]
struct Link {
    conn: Conn,
    socket: PathBuf,
    process: Option<Process>,
    exit_reported: bool,
    qmp: Option<QmpConn>,
    /// `Connect` requests waiting for negotiation to finish.
    connecting: Vec<(Owner, OpId)>,
    /// QMP client op → the harness request it executes.
    commands: BTreeMap<OpId, (Owner, OpId)>,
    /// Descriptors held for the machines.
    handles: Handles<OwnedFd>,
    /// The transcripts of this link's connections so far (when recording).
    transcript: String,
    /// The connection is another store's too: take only the QEMU operations.
    shared: bool,
}

#[derive(Debug)]
enum Process {
    /// Our child: reaped for its status.
    Child {
        child: Child,
        pidfd: Option<OwnedFd>,
    },
    /// Someone else's: watched through its pidfd, killed through it.
    Other { pid: u32, pidfd: OwnedFd },
}

impl QemuLinks {
    /// Links whose QMP connections use `config` (the default: `xsio_qmp::Config`'s).
    pub fn new(config: Config) -> QemuLinks {
        QemuLinks {
            links: Vec::new(),
            config,
            record: false,
        }
    }

    /// Records every QMP message both ways (see [`transcript`](QemuLinks::transcript)).
    pub fn recording(mut self) -> QemuLinks {
        self.record = true;
        self
    }

    /// Starts `qemu` with a QMP monitor on a socket at `socket` that this process binds
    /// and listens on first (an existing file there is replaced if nothing listens on it,
    /// refused otherwise), and opens a harness connection leading to it. `qemu` keeps its
    /// own stdout and stderr; its stdin is the listening socket.
    pub fn spawn<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        mut qemu: Command,
        socket: &Path,
    ) -> io::Result<Conn> {
        let listener = listen(socket)?;
        qemu.stdin(Stdio::from(OwnedFd::from(listener)))
            .arg("-chardev")
            .arg(format!("socket,id={CHARDEV_ID},fd=0,server=on,wait=off"))
            .arg("-mon")
            .arg(format!("chardev={CHARDEV_ID},mode=control"));
        let child = qemu.spawn()?;
        // Our copy of the listening socket goes with the command: QEMU holds the only one,
        // so connections are refused once it is gone.
        drop(qemu);
        let pidfd = pidfd_open(Pid::from_child(&child), PidfdFlags::empty()).ok();
        tracing::debug!(pid = child.id(), socket = %socket.display(), "spawned QEMU");
        Ok(self.add(harness, socket, Some(Process::Child { child, pidfd })))
    }

    /// Opens a harness connection leading to the QEMU already listening on `socket`.
    pub fn attach<A: Actor>(&mut self, harness: &mut Harness<A>, socket: &Path) -> Conn {
        self.add(harness, socket, None)
    }

    /// Leads `conn`, a connection another store serves (`xsio_io_std::l2::XsLinks`' for a
    /// machine that also speaks xenstore, such as a CD-ROM media change), also to the QEMU
    /// listening on `socket`. On it this store takes only the QEMU operations (QMP, files,
    /// the process) and leaves the rest to the other store; put it first in the pair,
    /// `(QemuLinks, XsLinks)`.
    pub fn attach_to(&mut self, conn: Conn, socket: &Path) {
        self.links.push(Link::new(conn, socket, None, true));
    }

    fn add<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        socket: &Path,
        process: Option<Process>,
    ) -> Conn {
        let conn = harness.connect();
        self.links.push(Link::new(conn, socket, process, false));
        conn
    }

    /// The process id of the QEMU behind `conn`, when known (spawned here, or found from
    /// the connection's credentials).
    pub fn pid(&self, conn: Conn) -> Option<u32> {
        match &self.link(conn)?.process {
            Some(Process::Child { child, .. }) => Some(child.id()),
            Some(Process::Other { pid, .. }) => Some(*pid),
            None => None,
        }
    }

    /// How many descriptors are held for the machines on `conn` (given out, not consumed).
    pub fn open_handles(&self, conn: Conn) -> usize {
        self.link(conn).map_or(0, |l| l.handles.len())
    }

    /// The messages exchanged on `conn` so far, as [`QmpConn::transcript`] writes them,
    /// every connection in turn (when [`recording`](QemuLinks::recording)).
    pub fn transcript(&self, conn: Conn) -> Option<String> {
        let link = self.link(conn)?;
        let mut text = link.transcript.clone();
        if let Some(open) = link.qmp.as_ref().and_then(QmpConn::transcript) {
            text.push_str(open);
        }
        Some(text)
    }

    /// Closes the QMP connection to the QEMU behind `conn` (QEMU serves one client per
    /// monitor: others get in once it is closed). Commands in flight fail with a connection
    /// error, and the machines on `conn` are told of the connection's end on the next step;
    /// a later [`QmpOp::Connect`] opens a new one.
    pub fn disconnect(&mut self, conn: Conn) {
        if let Some(qmp) = self
            .links
            .iter_mut()
            .find(|l| l.conn == conn)
            .and_then(|l| l.qmp.as_mut())
        {
            qmp.disconnect();
        }
    }

    /// Lets QEMU behind `conn` run on without us: closes the QMP connection and forgets the
    /// process (a child is neither killed nor waited for; it is reparented when this
    /// process exits). Returns its pid.
    pub fn detach(&mut self, conn: Conn) -> Option<u32> {
        let link = self.links.iter_mut().find(|l| l.conn == conn)?;
        let pid = match link.process.take() {
            Some(Process::Child { child, .. }) => Some(child.id()),
            Some(Process::Other { pid, .. }) => Some(pid),
            None => None,
        };
        link.qmp = None;
        link.handles.clear();
        pid
    }

    fn link(&self, conn: Conn) -> Option<&Link> {
        self.links.iter().find(|l| l.conn == conn)
    }
}

impl Drop for QemuLinks {
    /// A QEMU spawned here and not detached does not outlive its links.
    fn drop(&mut self) {
        for link in &mut self.links {
            if let Some(Process::Child { child, .. }) = &mut link.process {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl<A: Actor> Store<A> for QemuLinks {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        harness.advance_to(crate::now());
        let mut moved = false;
        for link in &mut self.links {
            // The exit first: a machine whose command fails with the connection then
            // knows why.
            moved |= link.report_exit(harness);
            while let Some((owner, request)) = link.take(harness) {
                moved = true;
                let answer = link.execute(owner, request.id, request.op, &self.config, self.record);
                if let Some(result) = answer {
                    harness.reply(owner, request.id, result)?;
                }
            }
            moved |= link.pump(harness)?;
        }
        harness.advance_to(crate::now());
        Ok(moved)
    }
}

impl Pollable for QemuLinks {
    fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = Vec::new();
        for link in &self.links {
            if let Some(qmp) = &link.qmp {
                fds.push(qmp.as_fd());
            }
            if !link.exit_reported {
                match &link.process {
                    Some(Process::Child {
                        pidfd: Some(pidfd), ..
                    })
                    | Some(Process::Other { pidfd, .. }) => fds.push(pidfd.as_fd()),
                    _ => {}
                }
            }
        }
        fds
    }

    fn recheck_at(&self) -> Option<std::time::Instant> {
        // A child without a pidfd (a kernel before 5.3) is checked on every 10 ms, and so is
        // a connection whose commands wait for room in the socket.
        let unwatched = self.links.iter().any(|l| {
            (!l.exit_reported && matches!(l.process, Some(Process::Child { pidfd: None, .. })))
                || l.qmp.as_ref().is_some_and(QmpConn::has_unsent)
        });
        if unwatched {
            xsio_core::deadline(crate::now(), std::time::Duration::from_millis(10))
        } else {
            None
        }
    }
}

impl Link {
    fn new(conn: Conn, socket: &Path, process: Option<Process>, shared: bool) -> Link {
        Link {
            conn,
            socket: socket.to_owned(),
            process,
            exit_reported: false,
            qmp: None,
            connecting: Vec::new(),
            commands: BTreeMap::new(),
            handles: Handles::default(),
            transcript: String::new(),
            shared,
        }
    }

    /// The next request of this link's connection that it executes.
    fn take<A: Actor>(&self, harness: &mut Harness<A>) -> Option<(Owner, xsio_ops::Request)> {
        if self.shared {
            harness.take_request_where(self.conn, is_qemu_op)
        } else {
            harness.take_request(self.conn)
        }
    }

    /// Executes one request; `None` when it is answered later.
    fn execute(
        &mut self,
        owner: Owner,
        id: OpId,
        op: Op,
        config: &Config,
        record: bool,
    ) -> Option<Result<Reply, OpError>> {
        match op {
            Op::Qmp(QmpOp::Connect) => self.connect(owner, id, config, record),
            Op::Qmp(QmpOp::Command(command)) => self.command(owner, id, command),
            Op::File(FileOp::Open(open)) => {
                Some(open_file(&open).map(|fd| Reply::Fd(self.handles.hold(fd))))
            }
            Op::File(FileOp::Close(fd)) => Some(self.handles.close(fd)),
            Op::Process(ProcessOp::Kill) => Some(self.kill()),
            _ => Some(Err(not_a_qemu_op())),
        }
    }

    fn connect(
        &mut self,
        owner: Owner,
        id: OpId,
        config: &Config,
        record: bool,
    ) -> Option<Result<Reply, OpError>> {
        if let Some(qmp) = &self.qmp {
            if let Some(session) = qmp.try_session() {
                return Some(Ok(Reply::QmpConnected(session_of(session))));
            }
            self.connecting.push((owner, id));
            return None;
        }
        let stream = match UnixStream::connect(&self.socket) {
            Ok(stream) => stream,
            Err(err) => {
                return Some(Err(OpError::new(
                    OpErrorKind::Connection,
                    format!("{}: {err}", self.socket.display()),
                )));
            }
        };
        if self.process.is_none() {
            // Someone else's QEMU: watch it through the peer's pid.
            self.process = peer_process(&stream);
        }
        self.qmp = Some(QmpConn::start(
            UnixConn::from_stream(stream),
            config.clone(),
            record,
        ));
        self.connecting.push((owner, id));
        None
    }

    fn command(
        &mut self,
        owner: Owner,
        id: OpId,
        command: QmpCommand,
    ) -> Option<Result<Reply, OpError>> {
        // The descriptors go with the command, or are closed here if it cannot go.
        let qemu_command = match self.handles.command(command) {
            Ok(qemu_command) => qemu_command,
            Err(err) => return Some(Err(err)),
        };
        let Some(qmp) = self.qmp.as_mut().filter(|q| q.closed().is_none()) else {
            return Some(Err(connection_error("no QMP connection")));
        };
        let op = qmp.submit(qemu_command);
        self.commands.insert(op, (owner, id));
        None
    }

    fn kill(&mut self) -> Result<Reply, OpError> {
        kill_answer(match &mut self.process {
            Some(Process::Child { child, .. }) => Some(child.kill()),
            Some(Process::Other { pidfd, .. }) => Some(kill_pidfd(pidfd.as_fd())),
            None => None,
        })
    }

    /// Reports the process's exit once, when it has happened. True when it did now.
    fn report_exit<A: Actor>(&mut self, harness: &mut Harness<A>) -> bool {
        if self.exit_reported {
            return false;
        }
        let exit = match &mut self.process {
            Some(Process::Child { child, .. }) => match child.try_wait() {
                Ok(Some(status)) => Some(Some(exit_of(status))),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            Some(Process::Other { pidfd, .. }) => readable_now(pidfd.as_fd()).then_some(None),
            None => None,
        };
        let Some(exit) = exit else {
            return false;
        };
        tracing::debug!(socket = %self.socket.display(), ?exit, "QEMU exited");
        self.exit_reported = true;
        harness.peer_event(self.conn, PeerEvent::Exited(exit));
        true
    }

    /// Moves the QMP connection along: negotiation, completions, events, its end.
    fn pump<A: Actor>(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let Some(qmp) = &mut self.qmp else {
            return Ok(false);
        };
        qmp.poll();
        let mut moved = false;
        if let Some(session) = qmp.try_session() {
            let session = session_of(session);
            for (owner, id) in self.connecting.drain(..) {
                moved = true;
                harness.reply(owner, id, Ok(Reply::QmpConnected(session.clone())))?;
            }
        }
        let done: Vec<OpId> = self.commands.keys().copied().collect();
        for op in done {
            if let Some(result) = qmp.take_done(op) {
                moved = true;
                let (owner, id) = self.commands.remove(&op).unwrap_or((Owner::Caller, op));
                harness.reply(owner, id, reply_of(result))?;
            }
        }
        while let Some(event) = qmp.take_event() {
            moved = true;
            harness.peer_event(
                self.conn,
                PeerEvent::Qmp(QmpEvent {
                    name: event.name,
                    data: event.data,
                }),
            );
        }
        if qmp.closed().is_some() {
            moved = true;
            // Every command completed when the connection closed (the client's promise).
            for (owner, id) in self.connecting.drain(..) {
                let closed = OpError::new(
                    OpErrorKind::Connection,
                    "QEMU closed the connection before negotiation ended",
                );
                harness.reply(owner, id, Err(closed))?;
            }
            if let Some(text) = qmp.transcript() {
                self.transcript.push_str(text);
            }
            self.qmp = None;
            // An exit already here goes first.
            self.report_exit(harness);
            harness.peer_event(self.conn, PeerEvent::QmpClosed);
        }
        Ok(moved)
    }
}

/// The process at the other end of `stream`, from its credentials, with a pidfd to watch
/// it.
fn peer_process(stream: &UnixStream) -> Option<Process> {
    let credentials = rustix::net::sockopt::socket_peercred(stream).ok()?;
    let pidfd = pidfd_open(credentials.pid, PidfdFlags::empty()).ok()?;
    let pid = u32::try_from(credentials.pid.as_raw_nonzero().get()).ok()?;
    Some(Process::Other { pid, pidfd })
}

fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// A QMP command's result in the vocabulary of the machines.
fn reply_of(result: Result<xsio_qmp::Return, QmpIoError>) -> Result<Reply, OpError> {
    match result {
        Ok(value) => qmp::reply_of(Ok(value)),
        Err(QmpIoError::Command(err)) => qmp::reply_of(Err(err)),
        Err(err @ (QmpIoError::Io(_) | QmpIoError::Closed(_))) => Err(connection_error(err)),
        Err(err @ QmpIoError::UnknownOp(_)) => {
            Err(OpError::new(OpErrorKind::Other, err.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use xsio_ops::QmpErrorClass;
    use xsio_qmp::CommandError;

    use super::*;

    #[test]
    fn qmp_errors_keep_their_class_and_description() {
        let err = xsio_qmp::QmpError {
            class: xsio_qmp::ErrorClass::DeviceNotFound,
            desc: "Device 'nosuch' not found".into(),
        };
        let reply = reply_of(Err(QmpIoError::Command(CommandError::Qmp(err))));
        assert_eq!(
            reply,
            Err(OpError::new(
                OpErrorKind::Qmp(QmpErrorClass::DeviceNotFound),
                "Device 'nosuch' not found"
            ))
        );
        let gone = reply_of(Err(QmpIoError::Command(CommandError::Disconnected)));
        assert_eq!(gone.unwrap_err().kind, OpErrorKind::Connection);
    }
}
