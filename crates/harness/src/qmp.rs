//! The one translation between `xsio-ops`' QEMU operations and the `xsio-qmp` client
//! machine, for every driver that runs them on a real QEMU (`xsio-io-std`'s `QemuLinks`,
//! `xsio-io-tokio`'s `Qemu`), as [`xs`](crate::xs) is for xenstore: the descriptors held
//! for the machines under [`FdHandle`]s ([`Handles`]), the QMP command a [`QmpCommand`]
//! stands for with those descriptors attached, a negotiated [`Session`] and a command's
//! result in the machines' vocabulary.

use std::collections::BTreeMap;

use xsio_ops::{
    FdHandle, Op, OpError, OpErrorKind, QemuVersion, QmpCommand, QmpErrorClass, QmpSession, Reply,
};
use xsio_qmp::{Command, CommandError, Return, Session};

/// The descriptors a QEMU driver holds for its machines: each under the [`FdHandle`] that
/// a `FileOp::Open` answered, until a command takes it ([`Handles::command`]) or a
/// `FileOp::Close` closes it ([`Handles::close`]). `F` is the descriptor (`OwnedFd`;
/// `TrackedFd` in tests).
///
/// ```
/// use xsio_harness::qmp::Handles;
/// use xsio_ops::{OpErrorKind, QmpCommand, Reply};
///
/// let mut handles: Handles<&str> = Handles::default();
/// let image = handles.hold("image");
/// let other = handles.hold("other");
/// assert_ne!(image, other);
/// let mut add_fd = QmpCommand::new("add-fd");
/// add_fd.fds.push(image);
/// let command = handles.command(add_fd.clone()).unwrap();
/// assert_eq!(command.name(), "add-fd");
/// assert_eq!(handles.len(), 1, "the command took its descriptor");
/// // A handle is used once.
/// assert_eq!(handles.command(add_fd).unwrap_err().kind, OpErrorKind::Invalid);
/// assert_eq!(handles.close(other), Ok(Reply::Done));
/// assert_eq!(handles.close(other).unwrap_err().kind, OpErrorKind::Invalid);
/// assert!(handles.is_empty());
/// ```
#[derive(Debug)]
pub struct Handles<F> {
    held: BTreeMap<FdHandle, F>,
    next: u64,
}

impl<F> Default for Handles<F> {
    fn default() -> Self {
        Handles {
            held: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<F> Handles<F> {
    /// Holds `fd` under a fresh handle (the answer to its `FileOp::Open`).
    pub fn hold(&mut self, fd: F) -> FdHandle {
        let handle = FdHandle::from_raw(self.next);
        self.next = self.next.wrapping_add(1);
        self.held.insert(handle, fd);
        handle
    }

    /// Closes the descriptor under `handle` (a `FileOp::Close`); [`OpErrorKind::Invalid`]
    /// when none is held there.
    pub fn close(&mut self, handle: FdHandle) -> Result<Reply, OpError> {
        match self.held.remove(&handle) {
            Some(fd) => {
                drop(fd);
                Ok(Reply::Done)
            }
            None => Err(not_held(handle)),
        }
    }

    /// The QMP command `command` stands for, with the descriptors of its handles attached
    /// (taken from here: the command consumes them). When a handle is not held, the
    /// command fails [`OpErrorKind::Invalid`] and the descriptors already taken are closed.
    pub fn command(&mut self, command: QmpCommand) -> Result<Command<F>, OpError> {
        let mut fds = Vec::with_capacity(command.fds.len());
        for handle in &command.fds {
            fds.push(self.held.remove(handle).ok_or_else(|| not_held(*handle))?);
        }
        let mut qemu_command = Command::new(command.command);
        if let Some(arguments) = command.arguments {
            qemu_command = qemu_command.arguments(arguments);
        }
        Ok(fds.into_iter().fold(qemu_command, Command::fd))
    }

    /// How many descriptors are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Closes every descriptor held.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

fn not_held(handle: FdHandle) -> OpError {
    OpError::new(OpErrorKind::Invalid, format!("{handle} is not held"))
}

/// Whether a QEMU driver executes `op`: QMP, file and process operations.
pub fn is_qemu_op(op: &Op) -> bool {
    matches!(op, Op::Qmp(_) | Op::File(_) | Op::Process(_))
}

/// The answer of a QEMU driver to an operation it does not execute ([`is_qemu_op`] is
/// false): [`OpErrorKind::Unsupported`].
pub fn not_a_qemu_op() -> OpError {
    OpError::new(
        OpErrorKind::Unsupported,
        "not an operation of the QEMU driver",
    )
}

/// A negotiated QMP session in the machines' vocabulary (the answer to `QmpOp::Connect`).
pub fn session_of(session: &Session) -> QmpSession {
    let qemu = &session.greeting.version.qemu;
    QmpSession {
        version: QemuVersion {
            major: qemu.major,
            minor: qemu.minor,
            micro: qemu.micro,
        },
        package: session.greeting.version.package.clone(),
    }
}

/// A QMP command's result in the machines' vocabulary: QEMU's error class kept
/// ([`OpErrorKind::Qmp`]), a missed deadline [`OpErrorKind::Timeout`], a connection that
/// ended or broke the protocol [`OpErrorKind::Connection`] (as [`connection_error`]),
/// anything else [`OpErrorKind::Other`].
///
/// ```
/// use xsio_harness::qmp::reply_of;
/// use xsio_ops::{OpErrorKind, QmpErrorClass};
/// use xsio_qmp::{CommandError, ErrorClass, QmpError};
///
/// let refused = QmpError { class: ErrorClass::DeviceNotFound, desc: "Device 'cd9' not found".into() };
/// let err = reply_of(Err(CommandError::Qmp(refused))).unwrap_err();
/// assert_eq!(err.kind, OpErrorKind::Qmp(QmpErrorClass::DeviceNotFound));
/// assert_eq!(err.detail, "Device 'cd9' not found");
/// assert_eq!(reply_of(Err(CommandError::Timeout)).unwrap_err().kind, OpErrorKind::Timeout);
/// let gone = reply_of(Err(CommandError::Disconnected)).unwrap_err();
/// assert_eq!(gone.kind, OpErrorKind::Connection);
/// assert_eq!(reply_of(Err(CommandError::Overloaded)).unwrap_err().kind, OpErrorKind::Other);
/// ```
pub fn reply_of(result: Result<Return, CommandError>) -> Result<Reply, OpError> {
    match result {
        Ok(value) => value
            .to_value()
            .map(Reply::Qmp)
            .map_err(|err| OpError::new(OpErrorKind::Other, err.to_string())),
        Err(CommandError::Qmp(err)) => Err(OpError::new(
            OpErrorKind::Qmp(QmpErrorClass::from_name(err.class.as_str())),
            err.desc,
        )),
        Err(CommandError::Timeout) => Err(OpError::new(
            OpErrorKind::Timeout,
            "no reply before the command's deadline",
        )),
        Err(err @ (CommandError::Disconnected | CommandError::Protocol(_))) => {
            Err(connection_error(err))
        }
        Err(err) => Err(OpError::new(OpErrorKind::Other, err.to_string())),
    }
}

/// A QMP connection that failed or ended (the socket, negotiation) as the machines see it:
/// [`OpErrorKind::Connection`] with the reason.
pub fn connection_error(err: impl std::fmt::Display) -> OpError {
    OpError::new(OpErrorKind::Connection, err.to_string())
}
