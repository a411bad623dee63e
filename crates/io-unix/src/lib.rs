//! What both drivers of the toolstack machines, `xsio-io-std` (blocking) and
//! `xsio-io-tokio` (async), do with the operating system the same way, once: a file opened
//! for a `FileOp::Open`, the QMP socket bound for a QEMU started on it, a hotplug script's
//! command line and how a child ended, the answer to a kill. Each driver waits in its own
//! way (`poll(2)`, tokio's reactor); what it asks the system is here.
//!
//! ```
//! use xsio_io_unix::open_file;
//! use xsio_ops::{FileAccess, OpenFile};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("saved-state");
//! let open = OpenFile {
//!     path: path.display().to_string(),
//!     access: FileAccess::WriteOnly,
//!     create: true,
//!     truncate: true,
//! };
//! let fd = open_file(&open).expect("created");
//! drop(fd);
//! use std::os::unix::fs::PermissionsExt;
//! assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use xsio_ops::{FileAccess, OpError, OpErrorKind, OpenFile, ProcessExit, Reply};

/// Opens the file of a `FileOp::Open` (created with mode 0600, so only this user reads a
/// saved state); a failure is [`OpErrorKind::File`] with the path.
pub fn open_file(open: &OpenFile) -> Result<OwnedFd, OpError> {
    let mut options = OpenOptions::new();
    match open.access {
        FileAccess::ReadOnly => options.read(true),
        FileAccess::WriteOnly => options.write(true),
        FileAccess::ReadWrite => options.read(true).write(true),
    };
    options
        .create(open.create)
        .truncate(open.truncate)
        .mode(0o600);
    let file = options
        .open(&open.path)
        .map_err(|err| OpError::new(OpErrorKind::File, format!("{}: {err}", open.path)))?;
    Ok(file.into())
}

/// Binds and listens on `socket` (a QEMU's QMP socket, to be its standard input),
/// replacing a stale socket file (nothing listening), never a live one (`AddrInUse`).
///
/// ```
/// use std::io::ErrorKind;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("qmp.sock");
/// let first = xsio_io_unix::listen(&path)?;
/// assert_eq!(xsio_io_unix::listen(&path).unwrap_err().kind(), ErrorKind::AddrInUse);
/// drop(first);
/// assert!(path.exists(), "the file stays behind; nothing listens on it any more");
/// let _second = xsio_io_unix::listen(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn listen(socket: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(socket) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(socket).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: something is listening there", socket.display()),
                ));
            }
            std::fs::remove_file(socket)?;
            UnixListener::bind(socket)
        }
        other => other,
    }
}

/// The command of a `HostOp::Spawn` (`argv`, with `env` added to ours), run as libxl runs
/// hotplug scripts: stdin `/dev/null`, stdout to this process's stderr. An empty `argv` or
/// a stderr that cannot be shared is the reason it fails to start.
///
/// ```
/// let argv = ["/bin/sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
/// let mut command = xsio_io_unix::script_command(&argv, &[])?;
/// let status = command.status().map_err(|e| e.to_string())?;
/// assert_eq!(xsio_io_unix::exit_of(status), xsio_ops::ProcessExit::Exited(3));
/// assert!(xsio_io_unix::script_command(&[], &[]).is_err());
/// # Ok::<(), String>(())
/// ```
pub fn script_command(argv: &[String], env: &[(String, String)]) -> Result<Command, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    let stdout = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("stdout: {e}"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout));
    Ok(command)
}

/// Why `command` did not start, as a `Spawn`'s [`ProcessExit::FailedToStart`] says it.
pub fn start_failure(command: &Command, err: &io::Error) -> String {
    format!("{}: {err}", command.get_program().to_string_lossy())
}

/// How a reaped child ended (a hotplug script, the device model).
pub fn exit_of(status: ExitStatus) -> ProcessExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessExit::Exited(code),
        (None, Some(signal)) => ProcessExit::Signalled(signal),
        (None, None) => ProcessExit::FailedToStart(format!("unknown end: {status}")),
    }
}

/// Sends `SIGKILL` to the process behind `pidfd` (one that is not our child, found by a
/// socket's peer credentials).
pub fn kill_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL)
        .map_err(io::Error::from)
}

/// The answer to a `ProcessOp::Kill` from what sending the signal gave: done when it was
/// sent or the process is already gone (`ESRCH`; a child already reaped, which the
/// process libraries report as `InvalidInput`); without a process known,
/// [`OpErrorKind::Unsupported`].
///
/// ```
/// use std::io;
/// use xsio_io_unix::kill_answer;
/// use xsio_ops::{OpErrorKind, Reply};
///
/// assert_eq!(kill_answer(Some(Ok(()))), Ok(Reply::Done));
/// assert_eq!(kill_answer(Some(Err(io::Error::from_raw_os_error(3)))), Ok(Reply::Done));
/// let denied = kill_answer(Some(Err(io::Error::from_raw_os_error(1)))).unwrap_err();
/// assert_eq!(denied.kind, OpErrorKind::Other);
/// assert_eq!(kill_answer(None).unwrap_err().kind, OpErrorKind::Unsupported);
/// ```
pub fn kill_answer(sent: Option<io::Result<()>>) -> Result<Reply, OpError> {
    match sent {
        None => Err(OpError::new(
            OpErrorKind::Unsupported,
            "no QEMU process is known for this connection",
        )),
        Some(Ok(())) => Ok(Reply::Done),
        // Already gone: what a kill wants.
        Some(Err(err))
            if err.kind() == io::ErrorKind::InvalidInput
                || err.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) =>
        {
            Ok(Reply::Done)
        }
        Some(Err(err)) => Err(OpError::new(OpErrorKind::Other, format!("kill: {err}"))),
    }
}
