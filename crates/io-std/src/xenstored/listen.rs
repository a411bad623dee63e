//! The listening sockets: binding them, and accepting with a back-off while the process is
//! out of descriptors.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tracing::{debug, warn};
use xsio_xenstored::Origin;

/// How long accepting pauses after it failed for lack of descriptors, unless a connection
/// closes first.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Binds a listening socket, replacing a stale socket file left by a previous run.
pub(super) fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The listeners, each with the origin of its clients.
///
/// When `accept` fails because the process or the system has no descriptor left
/// (EMFILE/ENFILE, or the kernel is short of memory), the pending connection stays in the
/// backlog and the listener stays readable: polling it would spin. So the listeners are not
/// polled until a connection closes (a descriptor is free again) or [`ACCEPT_BACKOFF`]
/// passed, and the episode is logged once.
pub(super) struct Listeners {
    sockets: Vec<(UnixListener, Origin)>,
    paused_until: Option<Instant>,
    /// Accepting failed and the backlog has not been emptied since: the episode was logged.
    starved: bool,
}

impl Listeners {
    pub(super) fn new(sockets: Vec<(UnixListener, Origin)>) -> Listeners {
        Listeners {
            sockets,
            paused_until: None,
            starved: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// One poll entry per listener: readable is wanted unless accepting is paused.
    pub(super) fn poll_fds(&self) -> impl Iterator<Item = PollFd<'_>> {
        let flags = if self.paused_until.is_some() {
            PollFlags::empty()
        } else {
            PollFlags::IN
        };
        self.sockets.iter().map(move |(l, _)| PollFd::new(l, flags))
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
        let Some((listener, origin)) = self.sockets.get(idx) else {
            return accepted;
        };
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
                    self.paused_until = Some(now.checked_add(ACCEPT_BACKOFF).unwrap_or(now));
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
