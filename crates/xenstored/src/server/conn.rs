//! Connections: who each one is, its input (answered while its outstanding requests are
//! under the quota) and its output queue (whole messages, see `flow`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::BytesMut;
use xsio_xs_wire::{EncodeError, FrameDecoder};

use super::flow::{Queued, SourceId};
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
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let (domid, privileged) = match origin {
            Origin::Socket => (0, true),
            Origin::Domain(domid) => (domid, domid == 0),
        };
        if !privileged {
            self.usage.entry(domid).or_default();
        }
        self.conns.insert(
            id,
            Conn {
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
            },
        );
        id
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
            match conn.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.answer_frame(conn_id, &frame);
                    self.charge(conn_id);
                }
                Ok(None) => {
                    self.charge(conn_id);
                    return;
                }
                Err(err) => {
                    self.drop_conn(conn_id, CloseReason::Protocol(err));
                    return;
                }
            }
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
    /// ready and attributing the message to `source`. Returns whether a message was queued:
    /// not when the connection is gone, nor when `encode` fails (it leaves the buffer as it
    /// was).
    pub(super) fn enqueue(
        &mut self,
        conn_id: ConnId,
        source: Option<SourceId>,
        expires: Option<Instant>,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        let was_empty = conn.out.is_empty();
        let start = conn.out.len();
        if encode(&mut conn.out).is_err() {
            return false;
        }
        conn.queued.push_back(Queued {
            len: conn.out.len() - start,
            source,
            expires,
        });
        if was_empty && !conn.paused {
            self.ready.push_back(conn_id);
        }
        if let Some(source) = source {
            self.hold_source(source);
        }
        self.charge(conn_id);
        true
    }
}
