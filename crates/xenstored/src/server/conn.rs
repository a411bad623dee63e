//! Connections: who each one is, its input buffer (read while its outstanding replies are
//! under the limit) and its output queue (whole messages, handed to the driver in order).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::BytesMut;
use xsio_xs_wire::{EncodeError, FrameDecoder};

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
    /// Replies in `out` (the outstanding-request limit counts them).
    pub(super) queued_replies: usize,
    /// Watch events in `out`.
    pub(super) queued_events: usize,
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
                queued_replies: 0,
                queued_events: 0,
            },
        );
        id
    }

    /// Forgets a connection: its watches and open transactions go with it. Unknown ids are
    /// ignored.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        self.conns.remove(&conn);
        self.ready.retain(|c| *c != conn);
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
    /// ones held back because too many of its replies are queued. A driver stops reading a
    /// connection while this is large, so a flooding client is held at its own socket.
    pub fn buffered_input(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.decoder.buffered())
    }

    /// The next thing for the driver to do, or `None` when drained. Taking a connection's
    /// bytes frees its outstanding-request budget, so requests it had waiting are answered
    /// here and come out in later calls.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some((conn, reason)) = self.closes.pop_front() {
            return Some(Output::Close { conn, reason });
        }
        let conn_id = self.ready.pop_front()?;
        let conn = self.conns.get_mut(&conn_id)?;
        let bytes = conn.out.split().freeze();
        let had_waiting = conn.queued_replies > 0 && conn.decoder.buffered() > 0;
        conn.queued_replies = 0;
        conn.queued_events = 0;
        if had_waiting {
            self.pump(conn_id);
        }
        Some(Output::Transmit {
            conn: conn_id,
            bytes,
        })
    }

    /// Answers buffered requests of `conn` while its queued replies are under the limit.
    pub(super) fn pump(&mut self, conn_id: ConnId) {
        loop {
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            if conn.queued_replies >= self.outstanding_limit(conn) {
                return;
            }
            let conn = self.conns.get_mut(&conn_id).expect("looked up above");
            match conn.decoder.next_frame() {
                Ok(Some(frame)) => self.answer_frame(conn_id, &frame),
                Ok(None) => return,
                Err(err) => {
                    self.drop_conn(conn_id, CloseReason::Protocol(err));
                    return;
                }
            }
        }
    }

    pub(super) fn drop_conn(&mut self, conn_id: ConnId, reason: CloseReason) {
        if self.conns.remove(&conn_id).is_some() {
            self.ready.retain(|c| *c != conn_id);
            self.closes.push_back((conn_id, reason));
        }
    }

    /// Appends one message to the output of `conn_id` with `encode`, marking the connection
    /// ready. Returns whether a message was queued: not when the connection is gone, nor
    /// when `encode` fails (it leaves the buffer as it was).
    pub(super) fn enqueue(
        &mut self,
        conn_id: ConnId,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        let was_empty = conn.out.is_empty();
        if encode(&mut conn.out).is_err() {
            return false;
        }
        if was_empty {
            self.ready.push_back(conn_id);
        }
        true
    }
}
