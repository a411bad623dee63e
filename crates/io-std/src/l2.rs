//! Toolstack (L2) machines against real xenstore connections, with the real clock: the
//! blocking driver of [`xsio_harness::Harness`].
//!
//! [`XsLinks`] is a [`Store`] whose connections are blocking [`XsConn`]s: it executes each
//! request the machines issued on its connection (one at a time, each bounded by the
//! client's own deadline) and passes the watch events that arrived (a watch whose events
//! overflowed its queue gets one event on its watched path: re-read). With a [`Host`] it
//! also executes host operations: hotplug scripts as child processes (answered when they
//! exit), domain info and device-model liveness from the caller. [`run_until`] is the
//! event loop: step, check the caller's condition, sleep in `poll(2)` on every connection
//! and every child's pidfd until one is readable or the machines' next deadline, repeat,
//! give up at a deadline.
//!
//! ```no_run
//! use std::time::Duration;
//! use xsio_harness::Harness;
//! use xsio_io_std::l2::{XsLinks, run_until};
//! use xsio_io_std::xenstore::XsConn;
//! use xsio_xenbus::{StateWaiter, WaiterConfig, XenbusState};
//!
//! let now = xsio_io_std::unix::now();
//! let mut world: Harness<StateWaiter> = Harness::new(now);
//! let mut links = XsLinks::default();
//! let dom0 = links.add(&mut world, XsConn::open()?);
//! let config = WaiterConfig {
//!     path: "/local/domain/0/backend/vbd/1/51712/state".into(),
//!     wanted: vec![XenbusState::Closed],
//!     timeout: Duration::from_secs(10),
//!     token: "wait".into(),
//! };
//! let waiter = world.add(dom0, StateWaiter::new(config, now));
//! world.drain(waiter);
//! run_until(&mut world, &mut links, Duration::from_secs(11), |w| w.actor(waiter).is_done())?;
//! println!("{:?}", world.actor(waiter).result());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use thiserror::Error;
use xsio_harness::xs::Watches;
use xsio_harness::{Actor, Conn, Harness, HarnessError, Store};
use xsio_ops::{Op, OpError, OpErrorKind};

use crate::host::Host;
use crate::unix::now;
use crate::xenbus::execute;
use crate::xenstore::XsConn;

/// The xenstore connections of a harness, one [`XsConn`] per harness connection, and
/// optionally the [`Host`] that executes host operations (domain info, device-model
/// liveness, hotplug scripts); without one they are answered
/// [`OpErrorKind::Unsupported`].
#[derive(Debug, Default)]
pub struct XsLinks {
    links: Vec<(XsConn, Watches)>,
    host: Option<Host>,
}

/// How often a child without a pidfd, or a lock another holds, is checked on.
const CHILD_CHECK: Duration = Duration::from_millis(10);

/// Why [`run_until`] stopped without the condition holding.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DriveError {
    /// The time limit passed.
    #[error("the machines did not get there within {0:?}")]
    TimedOut(Duration),
    /// The harness found a broken promise (a machine refused its input, ...).
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// Waiting on the sockets failed.
    #[error("poll: {0}")]
    Poll(#[from] std::io::Error),
}

impl XsLinks {
    /// Adds `conn` as a new connection of `harness`.
    pub fn add<A: Actor>(&mut self, harness: &mut Harness<A>, conn: XsConn) -> Conn {
        let id = harness.connect();
        self.links.push((conn, Watches::default()));
        id
    }

    /// The same links, with `host` executing the machines' host operations.
    pub fn with_host(mut self, host: Host) -> XsLinks {
        self.host = Some(host);
        self
    }

    /// The host, if any.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// The connection behind `conn`, for the caller's own operations.
    pub fn conn_mut(&mut self, conn: Conn) -> Option<&mut XsConn> {
        self.links.get_mut(conn.index()).map(|(c, _)| c)
    }
}

impl Pollable for XsLinks {
    fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> =
            self.links.iter().map(|(conn, _)| conn.as_fd()).collect();
        if let Some(host) = &self.host {
            fds.extend(host.pidfds().map(AsFd::as_fd));
        }
        fds
    }

    fn recheck_at(&self) -> Option<Instant> {
        let host = self.host.as_ref()?;
        if host.needs_polling() {
            xsio_core::deadline(now(), CHILD_CHECK)
        } else {
            None
        }
    }
}

/// What a driver of the harness can sleep on: descriptors that become readable when
/// something happens (sockets, pidfds), and when to look again regardless. Pairs of
/// them are one (as pairs of [`Store`]s are one store).
pub trait Pollable {
    /// The descriptors to wait on; readable means there may be something to do.
    fn poll_fds(&self) -> Vec<BorrowedFd<'_>>;

    /// When to look again even if nothing became readable (a child without a pidfd);
    /// `None`: only the descriptors and the machines' deadlines count.
    fn recheck_at(&self) -> Option<Instant> {
        None
    }
}

impl<S: Pollable, T: Pollable> Pollable for (S, T) {
    fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = self.0.poll_fds();
        fds.extend(self.1.poll_fds());
        fds
    }

    fn recheck_at(&self) -> Option<Instant> {
        earliest(self.0.recheck_at(), self.1.recheck_at())
    }
}

/// Waits until one of `links`' descriptors is readable or `deadline` passes (`None`: no
/// limit).
fn wait(links: &impl Pollable, deadline: Option<Instant>) -> std::io::Result<()> {
    let deadline = earliest(deadline, links.recheck_at());
    let borrowed = links.poll_fds();
    let mut fds: Vec<PollFd<'_>> = borrowed
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(now());
        Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    });
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<A: Actor> Store<A> for XsLinks {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        harness.advance_to(now());
        let mut moved = false;
        for (index, (conn, watches)) in self.links.iter_mut().enumerate() {
            let id = conn_at(harness, index)?;
            while let Some((owner, request)) = harness.take_request(id) {
                moved = true;
                let result = match (request.op, &mut self.host) {
                    (Op::Xs(op), _) => execute(conn, &op, watches),
                    (Op::Host(op), Some(host)) => match host.execute(owner, request.id, op) {
                        Some(answer) => answer,
                        None => continue, // a program: answered when it ends
                    },
                    _ => Err(OpError::new(
                        OpErrorKind::Unsupported,
                        "not an operation this driver executes",
                    )),
                };
                harness.reply(owner, request.id, result)?;
            }
            // Events already here, without waiting.
            loop {
                match conn.next_event(Some(now())) {
                    Ok(Some(item)) => {
                        moved = true;
                        // An overflow (the machine did not keep up) is handed over as an
                        // event on the watched path itself: the machines re-read what they
                        // watch on every event, which is what an overflow asks for.
                        harness.watch_event(id, item.path(), item.token());
                    }
                    Ok(None) => break,
                    Err(err) => {
                        return Err(HarnessError::Store(format!("connection {index}: {err}")));
                    }
                }
            }
        }
        if let Some(host) = &mut self.host {
            moved |= host.reap(harness)?;
        }
        harness.advance_to(now());
        Ok(moved)
    }
}

fn conn_at<A: Actor>(harness: &Harness<A>, index: usize) -> Result<Conn, HarnessError> {
    harness.conns().nth(index).ok_or(HarnessError::Unknown)
}

/// Runs `harness` on `links` until `done` holds, for at most `limit` of real time: steps
/// while anything moves, checks `done` once everything issued has been executed, fires
/// the machines' timers when due, and otherwise sleeps until a connection is readable or
/// the next deadline.
pub fn run_until<A: Actor, L: Store<A> + Pollable>(
    harness: &mut Harness<A>,
    links: &mut L,
    limit: Duration,
    mut done: impl FnMut(&Harness<A>) -> bool,
) -> Result<(), DriveError> {
    run_until_with(harness, links, limit, |h| done(h))
}

/// [`run_until`] whose condition may change the harness: take its log as the run goes
/// (a command printing each step when it happens), add machines.
pub fn run_until_with<A: Actor, L: Store<A> + Pollable>(
    harness: &mut Harness<A>,
    links: &mut L,
    limit: Duration,
    mut done: impl FnMut(&mut Harness<A>) -> bool,
) -> Result<(), DriveError> {
    let give_up = xsio_core::deadline(now(), limit);
    loop {
        // Settle first: a machine's state may run ahead of the writes it has issued.
        while harness.step(links)? {}
        if done(harness) {
            return Ok(());
        }
        // `done` may have added machines or issued operations: start them before sleeping,
        // or they would wait for the next unrelated answer or deadline.
        if harness.step(links)? {
            continue;
        }
        let current = now();
        if give_up.is_some_and(|g| current >= g) {
            return Err(DriveError::TimedOut(limit));
        }
        let wake = earliest(harness.next_deadline(), give_up);
        wait(links, wake)?;
        harness.advance_to(now());
        harness.fire_due_timers();
    }
}
