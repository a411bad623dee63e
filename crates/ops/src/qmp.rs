//! The vocabulary of QMP work: commands to a QEMU with descriptors the driver holds, the
//! files those descriptors come from, the QEMU process behind a connection, and what QEMU
//! reports on its own (events, the connection's end, its exit).
//!
//! See [`FdHandle`](crate::FdHandle) for the life of a descriptor the driver holds.

use serde_json::Value;

use crate::ProcessExit;

/// A file descriptor the driver holds on behalf of a machine: the machine only ever sees
/// this number.
///
/// A toolstack machine that drives QEMU (the device model's start-up and save, CD-ROM media
/// change) holds no descriptor and no socket. It names things: a QMP connection is the
/// machine's own connection (the driver knows which QEMU it leads to and opens it on
/// [`QmpOp::Connect`]); a descriptor is an `FdHandle`: the driver opens the file when asked
/// ([`FileOp::Open`]) and keeps the descriptor; the machine passes the handle along with a
/// command ([`QmpCommand::fds`]) or gives it back ([`FileOp::Close`]).
///
/// A handle is given out once, in [`Reply::Fd`](crate::Reply::Fd), and is then *consumed*
/// exactly once:
///
/// - by the first [`QmpCommand`] that lists it: the driver sends the descriptor with the
///   command's bytes and closes its copy, or closes it when the command fails before being
///   sent (the connection is gone);
/// - or by [`FileOp::Close`].
///
/// A handle used twice, or never given out, makes the driver fail the operation with
/// [`OpErrorKind::Invalid`](crate::OpErrorKind::Invalid). When a connection ends for good the
/// driver closes whatever handles are still open on it, so nothing leaks even from a
/// machine with a bug; but every machine of this workspace consumes each handle it is given
/// (their tests count them), including one that arrives after the machine gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdHandle(u64);

impl FdHandle {
    /// Wraps a raw number (drivers and simulators hand these out).
    pub const fn from_raw(raw: u64) -> FdHandle {
        FdHandle(raw)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for FdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fd#{}", self.0)
    }
}

/// How a file is opened, which is also what QEMU matches when it picks a descriptor from an
/// fd set (`/dev/fdset/N` opened write-only takes a write-only descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileAccess {
    /// `O_RDONLY`.
    ReadOnly,
    /// `O_WRONLY`.
    WriteOnly,
    /// `O_RDWR`.
    ReadWrite,
}

/// A file for the driver to open, keeping the descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpenFile {
    /// The path, as the driver's process sees it (relative to its working directory).
    pub path: String,
    /// The access mode.
    pub access: FileAccess,
    /// Create it when missing (mode 0600).
    pub create: bool,
    /// Empty it (`O_TRUNC`): a save never leaves an older, longer state's tail behind.
    pub truncate: bool,
}

/// Descriptors the driver holds for a machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileOp {
    /// Open a file. Answer [`Reply::Fd`](crate::Reply::Fd) with a fresh handle.
    Open(OpenFile),
    /// Close a handle the machine holds and will not pass on. Answer
    /// [`Reply::Done`](crate::Reply::Done).
    Close(FdHandle),
}

/// One QMP command, with the descriptors that travel with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QmpCommand {
    /// The command name (`stop`, `add-fd`, ...).
    pub command: String,
    /// The `arguments` member, a JSON object; `None` sends none.
    pub arguments: Option<Value>,
    /// Handles whose descriptors go with the command's first byte (`SCM_RIGHTS`). The
    /// command consumes them: the driver closes its copies once sent, or when the command
    /// fails before being sent.
    pub fds: Vec<FdHandle>,
}

impl QmpCommand {
    /// A command without arguments or descriptors.
    ///
    /// ```
    /// use xsio_ops::{FdHandle, QmpCommand};
    ///
    /// let add = QmpCommand::new("add-fd")
    ///     .arguments(serde_json::json!({"opaque": "saved_state"}))
    ///     .fd(FdHandle::from_raw(3));
    /// assert_eq!((add.command.as_str(), add.fds.len()), ("add-fd", 1));
    /// ```
    pub fn new(command: impl Into<String>) -> QmpCommand {
        QmpCommand {
            command: command.into(),
            arguments: None,
            fds: Vec::new(),
        }
    }

    /// Sets the `arguments` object.
    pub fn arguments(mut self, arguments: Value) -> QmpCommand {
        self.arguments = Some(arguments);
        self
    }

    /// Adds a handle to pass with the command.
    pub fn fd(mut self, fd: FdHandle) -> QmpCommand {
        self.fds.push(fd);
        self
    }
}

/// QMP work on the machine's connection to one QEMU.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QmpOp {
    /// Open the connection (if it is not open yet) and negotiate capabilities. Answer
    /// [`Reply::QmpConnected`](crate::Reply::QmpConnected) with QEMU's greeting; when the
    /// connection is already open, answer at once with the same greeting.
    Connect,
    /// Run a command on the open connection. Answer [`Reply::Qmp`](crate::Reply::Qmp) with its
    /// `return` value, or an error of kind [`OpErrorKind::Qmp`](crate::OpErrorKind::Qmp)
    /// (QEMU's error reply), `Connection` (the connection ended first, or was never
    /// opened) or `Timeout`.
    Command(QmpCommand),
}

/// The QEMU process behind the machine's connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProcessOp {
    /// Kill it (`SIGKILL`). Answer [`Reply::Done`](crate::Reply::Done) once the signal is
    /// sent (also when it had already ended); its end comes as [`PeerEvent::Exited`]. A
    /// driver that knows no process for the connection answers with an error. (A program
    /// the machine started itself is killed with [`HostOp::Kill`](crate::HostOp::Kill).)
    Kill,
}

/// A QEMU version, as the greeting states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QemuVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

impl QemuVersion {
    /// Whether this is `major.minor` or later.
    ///
    /// ```
    /// use xsio_ops::QemuVersion;
    ///
    /// let v = QemuVersion { major: 7, minor: 2, micro: 22 };
    /// assert!(v.at_least(2, 11) && v.at_least(7, 2) && !v.at_least(9, 1));
    /// ```
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// What negotiation on a QMP connection learned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QmpSession {
    /// QEMU's version.
    pub version: QemuVersion,
    /// The package string (a distribution's build name; may be empty).
    pub package: String,
}

/// An event QEMU sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QmpEvent {
    /// Its name (`STOP`, `DEVICE_TRAY_MOVED`, ...).
    pub name: String,
    /// Its `data` member (`null` when it had none).
    pub data: Value,
}

/// The class of a QMP error reply (QEMU may add classes: [`QmpErrorClass::Other`] keeps
/// the name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QmpErrorClass {
    /// Most errors.
    GenericError,
    /// No such command (or capability negotiation not done).
    CommandNotFound,
    /// The device exists but is not active.
    DeviceNotActive,
    /// No such device.
    DeviceNotFound,
    /// Any other class, by name.
    Other(String),
}

impl QmpErrorClass {
    /// The class named `name` as QEMU spells it.
    ///
    /// ```
    /// use xsio_ops::QmpErrorClass;
    ///
    /// assert_eq!(QmpErrorClass::from_name("DeviceNotFound"), QmpErrorClass::DeviceNotFound);
    /// assert_eq!(QmpErrorClass::from_name("KVMMissingCap").as_str(), "KVMMissingCap");
    /// ```
    pub fn from_name(name: &str) -> QmpErrorClass {
        match name {
            "GenericError" => QmpErrorClass::GenericError,
            "CommandNotFound" => QmpErrorClass::CommandNotFound,
            "DeviceNotActive" => QmpErrorClass::DeviceNotActive,
            "DeviceNotFound" => QmpErrorClass::DeviceNotFound,
            other => QmpErrorClass::Other(other.to_owned()),
        }
    }

    /// The class name as QEMU spells it.
    pub fn as_str(&self) -> &str {
        match self {
            QmpErrorClass::GenericError => "GenericError",
            QmpErrorClass::CommandNotFound => "CommandNotFound",
            QmpErrorClass::DeviceNotActive => "DeviceNotActive",
            QmpErrorClass::DeviceNotFound => "DeviceNotFound",
            QmpErrorClass::Other(name) => name,
        }
    }
}

/// Something that happened at the machine's peer on its own, not as the answer to a
/// request. A driver hands it to every machine on the connection, as
/// [`Input::Peer`](crate::Input::Peer).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerEvent {
    /// QEMU sent an event.
    Qmp(QmpEvent),
    /// The QMP connection ended (QEMU closed it, or it failed). Commands in flight are
    /// answered with errors of kind `Connection`; a later [`QmpOp::Connect`] may open a new
    /// connection.
    QmpClosed,
    /// The process behind the connection ended: how, when the driver could learn it (it
    /// is the driver's child), `None` otherwise (its status went to its own parent). A
    /// driver that sees the process end and the connection fail at once reports the exit
    /// first, so that a machine waiting on a command learns why it failed.
    Exited(Option<ProcessExit>),
}
