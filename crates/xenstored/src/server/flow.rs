//! Output flow control, with C xenstored 4.17's rules (XSA-326).
//!
//! Every connection queues whole messages until the driver takes them with `poll_output`
//! (a driver whose socket is full pauses the connection, and the messages wait here). A
//! request stays *outstanding* for its connection until its reply has been taken and, for an
//! unprivileged connection, until every watch event it caused has been taken or dropped: so a
//! guest that causes events faster than the watchers read them is throttled by its
//! outstanding-request quota, and no watcher is ever disconnected for a burst. An event
//! queued for an unprivileged connection and not taken within the watch-event timeout is
//! dropped and counted. Privileged connections (dom0) are never disconnected for events,
//! their events never expire, and events do not hold their requests (as in C, where dom0 has
//! no outstanding quota).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{ConnId, Output, Server};

/// The largest output buffer a connection keeps between transmits.
const KEPT_OUT: usize = 16 * 1024;

/// Identifies an outstanding request in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SourceId(u32);

/// A request whose reply or events are still queued somewhere.
#[derive(Debug)]
struct Source {
    conn: ConnId,
    /// The requester's domain, when its outstanding requests count against a domain quota.
    domain: Option<u32>,
    /// Messages not yet taken or dropped, plus one while the request is being answered.
    pending: u32,
}

/// The outstanding requests, in a slab (ids are reused), so that queueing a message and
/// taking it cost no search.
#[derive(Debug, Default)]
pub(super) struct Sources {
    slots: Vec<Option<Source>>,
    free: Vec<u32>,
}

/// What a queued message holds outstanding until it is taken or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Nothing.
    Nothing,
    /// One request of its own connection (the reply of a privileged connection, whose
    /// requests only wait for their replies: no slab entry needed).
    Own,
    /// The request `SourceId` (a guest's: its reply and every event it caused).
    Source(SourceId),
}

/// One message in a connection's output queue.
#[derive(Debug)]
pub(super) struct Queued {
    /// Its length in the output buffer, header included.
    pub(super) len: usize,
    /// The request that stays outstanding until this message is taken or dropped.
    pub(super) hold: Hold,
    /// For an event to an unprivileged connection: when it is dropped if still queued.
    pub(super) expires: Option<Instant>,
}

impl Server {
    /// Starts answering a request of `conn_id`: it is outstanding from now until
    /// [`Server::finish_source`] and every message attributed to it are done.
    pub(super) fn open_source(&mut self, conn_id: ConnId) -> SourceId {
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        conn.outstanding += 1;
        let domain = (!conn.privileged).then_some(conn.domid);
        if let Some(domid) = domain {
            self.usage.entry(domid).or_default().outstanding += 1;
        }
        let source = Source {
            conn: conn_id,
            domain,
            pending: 1,
        };
        let sources = &mut self.sources;
        let id = match sources.free.pop() {
            Some(slot) => {
                sources.slots[slot as usize] = Some(source);
                slot
            }
            None => {
                sources.slots.push(Some(source));
                // More outstanding requests than u32 slots would need more memory than
                // exists; the connection count bounds them long before.
                (sources.slots.len() - 1) as u32
            }
        };
        SourceId(id)
    }

    /// Attributes one more queued message to `source`.
    pub(super) fn hold_source(&mut self, source: SourceId) {
        if let Some(Some(s)) = self.sources.slots.get_mut(source.0 as usize) {
            s.pending += 1;
        }
    }

    /// One message of `source` (or its answering) is done; the request completes when none
    /// is left, and its connection may be read again.
    pub(super) fn finish_source(&mut self, source: SourceId) {
        let Some(slot) = self.sources.slots.get_mut(source.0 as usize) else {
            return;
        };
        let Some(s) = slot else {
            return;
        };
        s.pending -= 1;
        if s.pending > 0 {
            return;
        }
        let Some(done) = slot.take() else {
            return;
        };
        self.sources.free.push(source.0);
        if let Some(domid) = done.domain {
            if let Some(usage) = self.usage.get_mut(&domid) {
                usage.outstanding -= 1;
            }
        }
        if let Some(conn) = self.conns.get_mut(&done.conn) {
            conn.outstanding -= 1;
        }
    }

    /// Stops handing `conn`'s messages to the driver: they wait in the server, where its
    /// outstanding requests and the event timeout apply to them. A driver calls this when
    /// the connection's socket did not take everything it was given.
    pub fn pause_output(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        if let Some(state) = self.conns.get_mut(&conn) {
            state.paused = true;
            self.ready.retain(|c| *c != conn);
        }
    }

    /// Hands `conn`'s messages to the driver again (after [`Server::pause_output`]), once its
    /// socket has taken what the driver held for it.
    pub fn resume_output(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        if let Some(state) = self.conns.get_mut(&conn) {
            if state.paused {
                state.paused = false;
                if !state.out.is_empty() {
                    self.ready.push_back(conn);
                }
            }
        }
    }

    /// The next thing for the driver to do, or `None` when drained. Taking a connection's
    /// messages completes the requests they were the last of, so requests that waited are
    /// answered here and come out in later calls.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.notices.pop_front() {
                return Some(output);
            }
            let conn_id = self.ready.pop_front()?;
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            if conn.paused || conn.out.is_empty() {
                continue;
            }
            // A copy of exactly the queued bytes (one allocation; a frozen split of the buffer
            // would allocate a shared header too), and the buffer is kept for the next
            // messages, unless a burst made it large.
            let bytes = Bytes::copy_from_slice(&conn.out);
            if conn.out.capacity() > KEPT_OUT {
                conn.out = BytesMut::new();
            } else {
                conn.out.clear();
            }
            conn.queued_replies = 0;
            let taken = std::mem::take(&mut conn.queued);
            let own = taken.iter().filter(|m| m.hold == Hold::Own).count();
            conn.outstanding -= own;
            self.release_all(&taken);
            self.recycle_queue(conn_id, taken);
            self.charge(conn_id);
            self.unblock();
            return Some(Output::Transmit {
                conn: conn_id,
                bytes,
            });
        }
    }

    /// Completes what `messages` held in the slab (a connection's own requests are the
    /// caller's to count).
    fn release_all(&mut self, messages: &VecDeque<Queued>) {
        for message in messages {
            if let Hold::Source(source) = message.hold {
                self.finish_source(source);
            }
        }
    }

    /// Gives an emptied queue's buffer back to its connection (no allocation per transmit).
    fn recycle_queue(&mut self, conn_id: ConnId, mut queue: VecDeque<Queued>) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            if conn.queued.is_empty() {
                queue.clear();
                conn.queued = queue;
            }
        }
    }

    /// Releases everything queued for a connection that is going away.
    pub(super) fn discard_output(&mut self, queued: VecDeque<Queued>) {
        self.release_all(&queued);
    }

    /// When the oldest event queued for an unprivileged connection expires; `None` if no
    /// event is queued there.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.queued.iter().find_map(|m| m.expires))
            .min()
    }

    /// Lets time pass to `now`: events queued for unprivileged connections longer than the
    /// watch-event timeout are dropped (and counted, and reported as
    /// [`Output::EventsDropped`]); the requests they held complete.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.last_now;
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.queued
                    .iter()
                    .any(|m| m.expires.is_some_and(|at| at <= now))
            })
            .map(|(id, _)| id)
            .collect();
        for conn_id in expired {
            self.drop_expired(conn_id, now);
        }
        self.unblock();
    }

    /// Removes the expired events from `conn_id`'s queue, keeping every other message.
    fn drop_expired(&mut self, conn_id: ConnId, now: Instant) {
        let conn = self.conns.get_mut(&conn_id).expect("listed by the caller");
        let old_out = conn.out.split();
        let old_queue = std::mem::take(&mut conn.queued);
        let mut dropped = Vec::new();
        let mut at = 0;
        for message in old_queue {
            let bytes = &old_out[at..at + message.len];
            at += message.len;
            if message.expires.is_some_and(|t| t <= now) {
                dropped.push(message);
            } else {
                conn.out.extend_from_slice(bytes);
                conn.queued.push_back(message);
            }
        }
        let domid = conn.domid;
        if conn.out.is_empty() {
            self.ready.retain(|c| *c != conn_id);
        }
        let count = dropped.len();
        for message in dropped {
            if let Hold::Source(source) = message.hold {
                self.finish_source(source);
            }
        }
        self.usage.entry(domid).or_default().dropped_events += count as u64;
        self.charge(conn_id);
        self.notices.push_back(Output::EventsDropped {
            conn: conn_id,
            domid,
            count,
        });
    }
}
