//! Connections: who each one is, its input (answered while its outstanding requests are
//! under the quota) and its output queue (whole messages, see `flow`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::BytesMut;
use xsio_xs_wire::{EncodeError, FrameDecoder};

use super::dispatch::decode_request;
use super::flow::{Hold, Queued};
use super::watch::Watch;
use super::{CloseReason, ConnId, Origin, Output, Server};
use crate::view::TxState;

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) domid: u32,
    pub(super) privileged: bool,
    /// `/local/domain/<domid>`: where relative paths resolve.
    pub(super) home: String,
    pub(super) watches: Vec<Watch>,
    pub(super) txs: BTreeMap<u32, TxState>,
    pub(super) next_tx_id: u32,
    pub(super) decoder: FrameDecoder,
    /// Encoded messages not yet handed to the driver.
    pub(super) out: BytesMut,
    /// One entry per message in `out`, in order.
    pub(super) queued: VecDeque<Queued>,
    /// Replies in `out`.
    pub(super) queued_replies: usize,
    /// Requests of this connection not yet complete (see `flow`).
    pub(super) outstanding: usize,
    /// The driver cannot take more output now.
    pub(super) paused: bool,
    /// Whole requests may be waiting in `decoder`: a quota stopped answering them.
    pub(super) blocked: bool,
    /// The bytes of `out` and `decoder` counted in its domain's memory.
    pub(super) charged_io: usize,
}

impl Server {
    /// Opens a connection.
    pub fn connect(&mut self, now: Instant, origin: Origin) -> ConnId {
        self.advance(now);
        let (domid, privileged) = match origin {
            Origin::Socket => (0, true),
            Origin::Domain(domid) => (domid, domid == 0),
        };
        if !privileged {
            self.usage.entry(domid).or_default();
        }
        self.conns.insert(Conn {
            domid,
            privileged,
            home: xsio_xs_wire::path::domain_path(domid),
            watches: Vec::new(),
            txs: BTreeMap::new(),
            next_tx_id: 1,
            decoder: FrameDecoder::default(),
            out: BytesMut::new(),
            queued: VecDeque::new(),
            queued_replies: 0,
            outstanding: 0,
            paused: false,
            blocked: false,
            charged_io: 0,
        })
    }

    /// Forgets a connection: its watches, open transactions and queued messages go with it.
    /// Unknown ids are ignored.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        self.remove_conn(conn);
        self.unblock();
    }

    /// Whether `conn` is open.
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Replies queued for `conn` and not yet taken with [`poll_output`](Server::poll_output).
    pub fn queued_replies(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.queued_replies)
    }

    /// Bytes received from `conn` that wait to be handled: an incomplete message, or whole
    /// ones held back by a quota.
    pub fn buffered_input(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.decoder.buffered())
    }

    /// Whether the driver should read more from `conn`: not while a quota holds its
    /// requests back (its outstanding requests or its domain's memory; its own socket
    /// buffer then absorbs a flood), nor for an unknown connection. A driver asks before
    /// every read.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| !c.blocked && self.may_answer(c))
    }

    /// Answers buffered requests of `conn` while its quotas allow; marks it blocked when they
    /// stop it with whole requests possibly left.
    pub(super) fn pump(&mut self, conn_id: ConnId) {
        loop {
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            let may_answer = self.may_answer(conn);
            let conn = self.conns.get_mut(&conn_id).expect("looked up above");
            if !may_answer {
                conn.blocked = true;
                self.blocked.insert(conn_id);
                self.charge(conn_id);
                return;
            }
            if conn.blocked {
                conn.blocked = false;
                self.blocked.remove(&conn_id);
            }
            // Decoded where it lies in the buffer; then the connection is free to change.
            let (header, request) = match conn.decoder.next_frame_ref() {
                Ok(Some(frame)) => (
                    frame.header,
                    decode_request(conn.privileged, &conn.txs, &self.config.quotas, frame),
                ),
                Ok(None) => {
                    self.charge(conn_id);
                    return;
                }
                Err(err) => {
                    self.drop_conn(conn_id, CloseReason::Protocol(err));
                    return;
                }
            };
            self.answer_frame(conn_id, header, request);
            self.charge(conn_id);
        }
    }

    /// Answers what the blocked connections may answer now that requests completed.
    pub(super) fn unblock(&mut self) {
        while let Some(conn_id) = self
            .blocked
            .iter()
            .copied()
            .find(|id| self.conns.get(id).is_some_and(|c| self.may_answer(c)))
        {
            self.pump(conn_id);
        }
    }

    /// Closes `conn_id` for `reason`: the driver is told with [`Output::Close`].
    pub(super) fn drop_conn(&mut self, conn_id: ConnId, reason: CloseReason) {
        if self.remove_conn(conn_id) {
            self.notices.push_back(Output::Close {
                conn: conn_id,
                reason,
            });
        }
    }

    fn remove_conn(&mut self, conn_id: ConnId) -> bool {
        self.clear_watches(conn_id);
        self.end_transactions(conn_id);
        let Some(conn) = self.conns.remove(&conn_id) else {
            return false;
        };
        self.ready.retain(|c| *c != conn_id);
        self.blocked.remove(&conn_id);
        self.uncharge(&conn);
        self.discard_output(conn.queued);
        true
    }

    /// Appends one message to the output of `conn_id` with `encode`, marking the connection
    /// ready and attributing the message to `hold`. Returns whether a message was queued:
    /// not when the connection is gone, nor when `encode` fails (it leaves the buffer as it
    /// was).
    pub(super) fn enqueue(
        &mut self,
        conn_id: ConnId,
        hold: Hold,
        expires: Option<Instant>,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        if !conn
            .outbox()
            .push(conn_id, &mut self.ready, hold, expires, encode)
        {
            return false;
        }
        if let Hold::Source(source) = hold {
            self.hold_source(source);
        }
        self.charge(conn_id);
        true
    }
}

/// Bytes a connection's output buffer starts with: a short reply and an event fit, so the
/// usual request costs one allocation of it.
const OUT_START: usize = 64;

/// The parts of a connection a message is queued into, borrowed apart from the rest (so a
/// watch's token can be read while its event is encoded).
pub(super) struct Outbox<'a> {
    pub(super) out: &'a mut BytesMut,
    pub(super) queued: &'a mut VecDeque<Queued>,
    pub(super) paused: bool,
}

impl Conn {
    pub(super) fn outbox(&mut self) -> Outbox<'_> {
        Outbox {
            out: &mut self.out,
            queued: &mut self.queued,
            paused: self.paused,
        }
    }
}

impl Outbox<'_> {
    /// Appends one message with `encode` and lists it in the queue; puts the connection
    /// (`id`) in `ready` if its output was empty and it is not paused. The caller then holds
    /// a `Hold::Source` and charges the connection. `false` if `encode` failed (nothing changed).
    pub(super) fn push(
        self,
        id: ConnId,
        ready: &mut VecDeque<ConnId>,
        hold: Hold,
        expires: Option<Instant>,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> bool {
        let was_empty = self.out.is_empty();
        if self.out.capacity() == 0 {
            self.out.reserve(OUT_START);
        }
        let start = self.out.len();
        if encode(self.out).is_err() {
            return false;
        }
        self.queued.push_back(Queued {
            len: self.out.len() - start,
            hold,
            expires,
        });
        if was_empty && !self.paused {
            ready.push_back(id);
        }
        true
    }
}
