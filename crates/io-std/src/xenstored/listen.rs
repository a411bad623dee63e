//! The listening sockets: binding them, and accepting with a back-off while the process is
//! out of descriptors.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};
use rustix::process::umask;
use tracing::{debug, warn};
use xsio_xenstored::Origin;

/// How long accepting pauses after it failed for lack of descriptors, unless a connection
/// closes first.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A bound listening socket, with the lock that keeps a second daemon off its path.
pub(super) struct Bound {
    pub(super) listener: UnixListener,
    path: PathBuf,
    lock_path: PathBuf,
    /// Held (an exclusive `flock`) for as long as the daemon serves.
    _lock: OwnedFd,
}

impl Bound {
    /// Removes the socket file and the lock file (on a clean stop).
    pub(super) fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Binds a listening socket at `path` with exactly `mode` (0600 for owner-only), whatever the
/// process umask, without ever taking the socket of a live daemon:
/// - `<path>.lock` is locked first (an exclusive `flock`, held while the daemon runs), so two
///   of our daemons never race for one path;
/// - an existing socket file is removed only if nothing answers a connect on it (a stale one
///   left by a crash); one that answers belongs to a running daemon (ours or Xen's), and
///   binding is refused.
///
/// Every error names the path.
pub(super) fn bind(path: &Path, mode: u32) -> io::Result<Bound> {
    let named = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let lock_path = lock_path_of(path);
    let lock = open(
        &lock_path,
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        named(
            e.into(),
            &format!("lock file {} of socket", lock_path.display()),
        )
    })?;
    match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "socket {} is in use: another xenstored holds {}",
                    path.display(),
                    lock_path.display()
                ),
            ));
        }
        Err(e) => return Err(named(e.into(), "locking socket")),
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("socket {} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(path).map_err(|e| named(e, "removing stale socket"))?;
        }
    }
    // The socket file takes its mode from the umask at bind time: make it owner-only then
    // (the process has no other thread yet), and set the exact mode after.
    let old_umask = umask(Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    umask(old_umask);
    let listener = listener.map_err(|e| named(e, "binding socket"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| named(e, "setting the mode of socket"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| named(e, "socket"))?;
    Ok(Bound {
        listener,
        path: path.to_owned(),
        lock_path,
        _lock: lock,
    })
}

fn lock_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The listeners, each with the origin of its clients.
///
/// When `accept` fails because the process or the system has no descriptor left
/// (EMFILE/ENFILE, or the kernel is short of memory), the pending connection stays in the
/// backlog and the listener stays readable: polling it would spin. So the listeners are not
/// polled until a connection closes (a descriptor is free again) or [`ACCEPT_BACKOFF`]
/// passed, and the episode is logged once.
pub(super) struct Listeners {
    sockets: Vec<(Bound, Origin)>,
    paused_until: Option<Instant>,
    /// Accepting failed and the backlog has not been emptied since: the episode was logged.
    starved: bool,
}

impl Listeners {
    pub(super) fn new(sockets: Vec<(Bound, Origin)>) -> Listeners {
        Listeners {
            sockets,
            paused_until: None,
            starved: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Removes every socket file and lock file (on a clean stop).
    pub(super) fn remove_files(&self) {
        for (bound, _) in &self.sockets {
            bound.remove_files();
        }
    }

    /// One poll entry per listener: readable is wanted unless accepting is paused.
    pub(super) fn poll_fds(&self) -> impl Iterator<Item = PollFd<'_>> {
        let flags = if self.paused_until.is_some() {
            PollFlags::empty()
        } else {
            PollFlags::IN
        };
        self.sockets
            .iter()
            .map(move |(b, _)| PollFd::new(&b.listener, flags))
    }

    /// When a paused accept is tried again.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Resumes accepting if the pause is over.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|at| at <= now) {
            self.paused_until = None;
        }
    }

    /// A connection closed: a descriptor is free, so accepting may work again.
    pub(super) fn descriptor_freed(&mut self) {
        self.paused_until = None;
    }

    /// Accepts every pending connection of listener `idx` (non-blocking), with its origin.
    pub(super) fn accept(&mut self, idx: usize, now: Instant) -> Vec<(UnixStream, Origin)> {
        let mut accepted = Vec::new();
        let Some((bound, origin)) = self.sockets.get(idx) else {
            return accepted;
        };
        let listener = &bound.listener;
        loop {
            match listener.accept() {
                Ok((stream, _)) => accepted.push((stream, *origin)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Every waiting client got in: the episode is over.
                    if self.starved {
                        self.starved = false;
                        debug!("accepting connections again");
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_descriptors(&e) => {
                    if !self.starved {
                        self.starved = true;
                        warn!(
                            error = %e,
                            "accept failed: no descriptor left; pausing accepts until a \
                             connection closes (retrying every {ACCEPT_BACKOFF:?})"
                        );
                    }
                    // Overflow would mean a clock at the end of time: retry at once then.
                    self.paused_until =
                        Some(xsio_core::deadline(now, ACCEPT_BACKOFF).unwrap_or(now));
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    break;
                }
            }
        }
        accepted
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::MFILE
                | rustix::io::Errno::NFILE
                | rustix::io::Errno::NOBUFS
                | rustix::io::Errno::NOMEM
        )
    )
}
