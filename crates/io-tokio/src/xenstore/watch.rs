//! A watch's stream: its bounded queue, shared between the connection's task (which
//! pushes, never waiting) and the consumer (which takes, waiting when it is empty).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::{mpsc, oneshot};
use xsio_core::OpId;
use xsio_xs_client::{WatchEvent, WatchItem, WatchQueue};

use super::{ClientError, Control, Error, XsHandle};

/// The queue of one watch and whoever waits on it.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    queue: WatchQueue,
    /// Sequence numbers for the queue (only this watch's order matters here).
    next_seq: u64,
    /// The watch is over (removed, or the connection closed): the stream ends once the
    /// queue is empty.
    ended: bool,
    waker: Option<Waker>,
}

impl Shared {
    pub(crate) fn new(queue: WatchQueue) -> Shared {
        Shared {
            state: Mutex::new(State {
                queue,
                next_seq: 0,
                ended: false,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a queue that is still consistent (every
        // step is a single push or pop), so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an event (the task calls this; it never waits on the consumer).
    pub(crate) fn push(&self, event: WatchEvent) {
        let waker = {
            let mut state = self.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            let _replaced = state.queue.push(seq, event);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the stream after what is queued.
    pub(crate) fn end(&self) {
        let waker = {
            let mut state = self.lock();
            state.ended = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<WatchItem>> {
        let mut state = self.lock();
        if let Some(item) = state.queue.pop() {
            return Poll::Ready(Some(item));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Removes its watch on the daemon when dropped while armed.
#[derive(Debug)]
pub(crate) struct Guard {
    id: OpId,
    control: mpsc::UnboundedSender<Control>,
    armed: bool,
}

impl Guard {
    pub(crate) fn new(id: OpId, control: mpsc::UnboundedSender<Control>) -> Guard {
        Guard {
            id,
            control,
            armed: true,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.control.send(Control::Unwatch(self.id, None));
        }
    }
}

/// What the task hands back for a registered watch.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) guard: Guard,
}

/// A registered watch: a stream of [`WatchItem`]s ([`Watch::next`], or
/// `futures_core::Stream`). It ends (`None`) when the connection closes. Dropping it
/// removes the watch from the daemon.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    guard: Guard,
    handle: XsHandle,
}

impl Watch {
    pub(crate) fn new(parts: Parts, handle: XsHandle) -> Watch {
        Watch {
            shared: parts.shared,
            guard: parts.guard,
            handle,
        }
    }

    /// The watch's id (as the machine's events carry it).
    pub fn id(&self) -> OpId {
        self.guard.id
    }

    /// The next item: an event, or an overflow marker (re-read what the watch covers);
    /// `None` once the connection is closed and everything queued was taken.
    pub async fn next(&mut self) -> Option<WatchItem> {
        std::future::poll_fn(|cx| self.shared.poll_item(cx)).await
    }

    /// Removes the watch from the daemon and waits for its answer.
    pub async fn unwatch(mut self) -> Result<(), Error> {
        self.guard.armed = false;
        let (done, result) = oneshot::channel();
        let unwatch = Control::Unwatch(self.guard.id, Some(done));
        if self.handle.control.send(unwatch).is_err() {
            return Err(ClientError::NotConnected.into());
        }
        match result.await {
            Ok(result) => result.map(drop).map_err(Error::Op),
            Err(_) => Err(ClientError::ConnectionLost.into()),
        }
    }
}

impl futures_core::Stream for Watch {
    type Item = WatchItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchItem>> {
        self.shared.poll_item(cx)
    }
}
