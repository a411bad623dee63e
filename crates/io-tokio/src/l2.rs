//! Toolstack (L2) machines against real xenstore connections on tokio: the async twin of
//! `xsio_io_std::l2`, the driver of [`xsio_harness::Harness`] with the real clock.
//!
//! [`XsLinks`] is a [`Store`] whose connections are async clients ([`XsHandle`]): each
//! request a machine issued is handed to its connection's task, which runs it through the
//! one translation ([`xsio_harness::xs`]) on its machine, alongside the connection's other
//! traffic; answers and watch events come back through the link's inbox. A watch whose
//! events overflow their bound ([`xsio_xs_client::Config::max_queued_events`]) is handed to
//! its machine as one event on the watched path: the machines re-read what they watch on
//! every event, which is what an overflow asks for. With a [`Host`]
//! ([`XsLinks::with_host`]) the links also execute host operations: hotplug scripts as
//! tokio child processes (answered when they exit), domain info and device-model liveness
//! from the caller. Other operations (QMP, files) are answered
//! [`OpErrorKind::Unsupported`] unless a store in front of the links takes them (a pair of
//! stores is a store: `(FixedHost, XsLinks)` answers the host operations of a virtual
//! host). [`run_until`] is the event loop over any store that says when to look again
//! ([`Arrivals`]): step, check the caller's condition once nothing is in flight, then
//! sleep until an answer or event arrives, a child exits or the machines' next deadline,
//! give up at a time limit.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use xsio_harness::Harness;
//! use xsio_io_tokio::l2::{XsLinks, run_until};
//! use xsio_io_tokio::xenstore;
//! use xsio_xenbus::{StateWaiter, WaiterConfig, XenbusState};
//!
//! let now = xsio_io_tokio::l2::now();
//! let mut world: Harness<StateWaiter> = Harness::new(now);
//! let mut links = XsLinks::default();
//! let dom0 = links.add(&mut world, xenstore::open(Default::default()).await?);
//! let config = WaiterConfig {
//!     path: "/local/domain/0/backend/vbd/1/51712/state".into(),
//!     wanted: vec![XenbusState::Closed],
//!     timeout: Duration::from_secs(10),
//!     token: "wait".into(),
//! };
//! let waiter = world.add(dom0, StateWaiter::new(config, now));
//! world.drain(waiter);
//! run_until(&mut world, &mut links, Duration::from_secs(11), |w| w.actor(waiter).is_done())
//!     .await?;
//! println!("{:?}", world.actor(waiter).result());
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::Notify;
use xsio_core::OpId;
use xsio_harness::{Actor, Conn, FixedHost, Harness, HarnessError, Owner, Store};
use xsio_ops::{Op, OpError, OpErrorKind, Reply};
use xsio_xs_client::{WatchEvent, WatchItem, WatchQueues};

use crate::host::Host;
use crate::xenstore::{L2Submit, XsHandle, connection_gone};

/// Who an L2 operation's answer is for.
pub(crate) type Tag = (Owner, OpId);

/// An L2 operation's answer, for its owner.
type Answer = (Tag, Result<Reply, OpError>);

/// The real clock, as the machines are fed it (tokio's, so a paused test clock drives
/// them too).
pub fn now() -> Instant {
    crate::xenstore::now()
}

/// Where a connection's task leaves the answers and watch events of the L2 operations:
/// answers in order, events in per-watch bounded queues. The task never waits on it.
#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    notify: Arc<Notify>,
}

#[derive(Debug)]
struct InboxState {
    replies: VecDeque<Answer>,
    events: WatchQueues,
}

impl Inbox {
    fn new(bound: usize, notify: Arc<Notify>) -> Inbox {
        Inbox {
            state: Mutex::new(InboxState {
                replies: VecDeque::new(),
                events: WatchQueues::new(bound),
            }),
            notify,
        }
    }

    fn lock(&self) -> MutexGuard<'_, InboxState> {
        // Every step under the lock is one push or one take: a poisoned lock still holds
        // consistent queues.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An answer (at most one per request the harness has in flight, so bounded by it).
    pub(crate) fn reply(&self, tag: Tag, result: Result<Reply, OpError>) {
        self.lock().replies.push_back((tag, result));
        self.notify.notify_one();
    }

    /// A watch event of watch on `watched`.
    pub(crate) fn event(&self, watched: &str, event: WatchEvent) {
        self.lock().events.push(watched, event);
        self.notify.notify_one();
    }

    fn take(&self) -> (Vec<Answer>, Vec<WatchItem>) {
        let mut state = self.lock();
        let replies = state.replies.drain(..).collect();
        let events = std::iter::from_fn(|| state.events.pop()).collect();
        (replies, events)
    }
}

/// The xenstore connections of a harness, one async client per harness connection, and
/// optionally the [`Host`] that executes host operations (domain info, device-model
/// liveness, hotplug scripts); without one they are answered [`OpErrorKind::Unsupported`].
#[derive(Debug, Default)]
pub struct XsLinks {
    links: Vec<(XsHandle, Arc<Inbox>)>,
    /// Woken by every inbox when something arrives.
    notify: Arc<Notify>,
    host: Option<Host>,
}

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
}

impl XsLinks {
    /// Adds `handle` as a new connection of `harness`. Its watch events are bounded by the
    /// connection's [`max_queued_events`](xsio_xs_client::Config::max_queued_events) per
    /// watch.
    pub fn add<A: Actor>(&mut self, harness: &mut Harness<A>, handle: XsHandle) -> Conn {
        let id = harness.connect();
        let bound = handle.config().max_queued_events;
        let inbox = Arc::new(Inbox::new(bound, self.notify.clone()));
        self.links.push((handle, inbox));
        id
    }

    /// The client behind `conn`, for the caller's own operations (the toolstack's
    /// transactions, reads...).
    pub fn handle(&self, conn: Conn) -> Option<&XsHandle> {
        self.links.get(conn.index()).map(|(handle, _)| handle)
    }

    /// The same links, with `host` executing the machines' host operations; the driver
    /// then also wakes when one of its programs exits.
    pub fn with_host(mut self, host: Host) -> XsLinks {
        self.host = Some(host);
        self
    }

    /// The host, if any.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }
}

impl<A: Actor> Store<A> for XsLinks {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        harness.advance_to(now());
        let mut moved = false;
        for (index, (handle, inbox)) in self.links.iter().enumerate() {
            let conn = conn_at(harness, index)?;
            while let Some((owner, request)) = harness.take_request(conn) {
                moved = true;
                let op = match (request.op, &mut self.host) {
                    (Op::Xs(op), _) => op,
                    (Op::Host(op), Some(host)) => {
                        if let Some(answer) = host.execute(owner, request.id, op) {
                            harness.reply(owner, request.id, answer)?;
                        } // else a program: answered when it ends
                        continue;
                    }
                    _ => {
                        let error = OpError::new(
                            OpErrorKind::Unsupported,
                            "not an operation this driver executes",
                        );
                        harness.reply(owner, request.id, Err(error))?;
                        continue;
                    }
                };
                let submit = L2Submit {
                    op,
                    tag: (owner, request.id),
                    inbox: inbox.clone(),
                };
                if !handle.submit_l2(submit) {
                    // The connection's task is gone: answer here, once.
                    harness.reply(owner, request.id, Err(connection_gone()))?;
                }
            }
            let (replies, events) = inbox.take();
            for ((owner, id), result) in replies {
                moved = true;
                harness.reply(owner, id, result)?;
            }
            for item in events {
                moved = true;
                // An overflow's path is the watched path: the machine re-reads it.
                harness.watch_event(conn, item.path(), item.token());
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

/// What the async driver sleeps on between steps, the twin of io-std's `Pollable`: a
/// future that resolves when something may have arrived for the harness (an answer, a
/// watch event, a child's exit). Pairs of them are one, as pairs of [`Store`]s are one
/// store.
pub trait Arrivals {
    /// Resolves when there may be something new to step; may resolve early (the driver
    /// then steps and finds nothing).
    fn arrival(&mut self) -> impl Future<Output = ()> + '_;
}

impl Arrivals for XsLinks {
    fn arrival(&mut self) -> impl Future<Output = ()> + '_ {
        // A notification sent while nobody waited is kept (one permit), so an answer
        // that arrived between the last step and this wait is not slept through.
        let answered = self.notify.notified();
        let host = self.host.as_mut();
        async move {
            let exited = async {
                match host {
                    Some(host) => host.exited().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = answered => {}
                () = exited => {}
            }
        }
    }
}

impl Arrivals for FixedHost {
    fn arrival(&mut self) -> impl Future<Output = ()> + '_ {
        // Everything is answered in the step itself: nothing ever arrives later.
        std::future::pending()
    }
}

impl<S: Arrivals, T: Arrivals> Arrivals for (S, T) {
    fn arrival(&mut self) -> impl Future<Output = ()> + '_ {
        let (first, second) = self;
        async move {
            tokio::select! {
                () = first.arrival() => {}
                () = second.arrival() => {}
            }
        }
    }
}

/// Runs `harness` on `links` until `done` holds, for at most `limit` of real time: steps
/// while anything moves, checks `done` once nothing is in flight, fires the machines'
/// timers when due, and otherwise sleeps until something arrives ([`Arrivals`]) or the
/// next deadline.
pub async fn run_until<A: Actor, L: Store<A> + Arrivals>(
    harness: &mut Harness<A>,
    links: &mut L,
    limit: Duration,
    mut done: impl FnMut(&Harness<A>) -> bool,
) -> Result<(), DriveError> {
    run_until_with(harness, links, limit, |h| done(h)).await
}

/// [`run_until`] whose condition may change the harness: take its log as the run goes,
/// add machines (the ends of a device once its add has written their directories).
pub async fn run_until_with<A: Actor, L: Store<A> + Arrivals>(
    harness: &mut Harness<A>,
    links: &mut L,
    limit: Duration,
    mut done: impl FnMut(&mut Harness<A>) -> bool,
) -> Result<(), DriveError> {
    let give_up = xsio_core::deadline(now(), limit);
    loop {
        while harness.step(links)? {}
        // Only once everything issued has been answered: a machine's state may run ahead
        // of the writes it has issued.
        if harness.in_flight() == 0 && done(harness) {
            return Ok(());
        }
        // The condition may have added machines: send what they ask before sleeping.
        if harness.step(links)? {
            continue;
        }
        if give_up.is_some_and(|g| now() >= g) {
            return Err(DriveError::TimedOut(limit));
        }
        let wake = match (harness.next_deadline(), give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            () = links.arrival() => {}
            () = sleep_until(wake) => {}
        }
        harness.advance_to(now());
        harness.fire_due_timers();
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep(at.saturating_duration_since(now())).await,
        None => std::future::pending().await,
    }
}
