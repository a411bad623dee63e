//! The server: connections, domains, request dispatch, watch fan-out and output queues.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use xsio_xs_wire::{FrameDecoder, Header};

use crate::path;
use crate::perms::{Access, Caller, Perms};
use crate::tree::Tree;
use crate::view::{Change, TxState, View};
use crate::{Config, ErrorKind, ops};

/// Message type numbers (from the wire crate) as constants, so requests can be matched on
/// their raw number: unknown numbers must still get an `ENOSYS` reply.
pub(crate) mod kind {
    use xsio_xs_wire::MsgType;

    pub(crate) const CONTROL: u32 = MsgType::Control.as_u32();
    pub(crate) const DIRECTORY: u32 = MsgType::Directory.as_u32();
    pub(crate) const READ: u32 = MsgType::Read.as_u32();
    pub(crate) const GET_PERMS: u32 = MsgType::GetPerms.as_u32();
    pub(crate) const WATCH: u32 = MsgType::Watch.as_u32();
    pub(crate) const UNWATCH: u32 = MsgType::Unwatch.as_u32();
    pub(crate) const TRANSACTION_START: u32 = MsgType::TransactionStart.as_u32();
    pub(crate) const TRANSACTION_END: u32 = MsgType::TransactionEnd.as_u32();
    pub(crate) const INTRODUCE: u32 = MsgType::Introduce.as_u32();
    pub(crate) const RELEASE: u32 = MsgType::Release.as_u32();
    pub(crate) const GET_DOMAIN_PATH: u32 = MsgType::GetDomainPath.as_u32();
    pub(crate) const WRITE: u32 = MsgType::Write.as_u32();
    pub(crate) const MKDIR: u32 = MsgType::Mkdir.as_u32();
    pub(crate) const RM: u32 = MsgType::Rm.as_u32();
    pub(crate) const SET_PERMS: u32 = MsgType::SetPerms.as_u32();
    pub(crate) const WATCH_EVENT: u32 = MsgType::WatchEvent.as_u32();
    pub(crate) const ERROR: u32 = MsgType::Error.as_u32();
    pub(crate) const IS_DOMAIN_INTRODUCED: u32 = MsgType::IsDomainIntroduced.as_u32();
    pub(crate) const RESUME: u32 = MsgType::Resume.as_u32();
    pub(crate) const SET_TARGET: u32 = MsgType::SetTarget.as_u32();
    pub(crate) const RESET_WATCHES: u32 = MsgType::ResetWatches.as_u32();
    pub(crate) const DIRECTORY_PART: u32 = MsgType::DirectoryPart.as_u32();
}

/// `DOMID_SELF`, which IS_DOMAIN_INTRODUCED always answers `T` for.
const DOMID_SELF: i64 = xsio_xs_wire::DOMID_SELF as i64;
/// The special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// Identifies one client connection of a [`Server`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The raw number (for logs).
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Where a connection comes from, which decides who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The daemon's Unix socket: the control domain, privileged, home `/local/domain/0`.
    Socket,
    /// A domain's ring (here, a socket standing in for it): domain 0 is privileged, any other
    /// is not; home `/local/domain/<domid>`.
    Domain(u32),
}

/// One request, already framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The message type number.
    pub kind: u32,
    /// Echoed in the reply.
    pub req_id: u32,
    /// The transaction, or 0.
    pub tx_id: u32,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why the server dropped a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client broke the framing (a header announcing more than 4096 payload bytes).
    Protocol(xsio_xs_wire::FrameError),
    /// The client let more watch events pile up than the configured bound.
    TooSlow,
    /// Its domain was released.
    DomainReleased,
}

/// What the server asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Write `bytes` (whole messages) to `conn`, after everything written to it before.
    Transmit {
        /// The destination.
        conn: ConnId,
        /// One or more encoded messages.
        bytes: Bytes,
    },
    /// Close `conn` after sending what was queued for it; the server has already forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

#[derive(Clone, Debug)]
struct Watch {
    /// The resolved path (or the special name).
    path: String,
    token: Box<[u8]>,
    /// Given relative: events report paths relative to the connection's home.
    relative: bool,
}

#[derive(Debug)]
struct Conn {
    domid: u32,
    privileged: bool,
    home: String,
    watches: Vec<Watch>,
    txs: BTreeMap<u32, TxState>,
    next_tx_id: u32,
    decoder: FrameDecoder,
    /// Encoded messages not yet handed to the driver.
    out: BytesMut,
    /// Replies in `out` (the outstanding-request limit counts them).
    queued_replies: usize,
    /// Watch events in `out`.
    queued_events: usize,
}

#[derive(Clone, Debug, Default)]
struct Domain {
    target: Option<u32>,
}

/// The in-memory xenstore daemon core.
///
/// Method groups:
/// - connections: [`connect`](Server::connect), [`disconnect`](Server::disconnect),
///   [`is_connected`](Server::is_connected);
/// - inputs: [`handle_input`](Server::handle_input) with the bytes read from a client (any
///   split), or [`handle_request`](Server::handle_request) with one already-framed request
///   (for in-process drivers such as a simulator); domains come and go with
///   [`introduce_domain`](Server::introduce_domain) and
///   [`release_domain`](Server::release_domain);
/// - outputs: [`poll_output`](Server::poll_output), drained until `None` after every input:
///   write each [`Output::Transmit`] to its connection in order, close each
///   [`Output::Close`];
/// - inspection: [`check_invariants`](Server::check_invariants),
///   [`node_count`](Server::node_count), [`queued_replies`](Server::queued_replies),
///   [`buffered_input`](Server::buffered_input), [`save`](Server::save).
///
/// The server reads no clock and does no I/O: `now` is accepted for the common machine shape
/// and future timers (it has none today), and every result depends only on the inputs, in
/// order.
#[derive(Debug)]
pub struct Server {
    config: Config,
    tree: Tree,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    domains: BTreeMap<u32, Domain>,
    special_perms: BTreeMap<&'static str, Perms>,
    ready: VecDeque<ConnId>,
    /// The latest `now` seen, for requests answered from inside `poll_output`.
    last_now: Instant,
    closes: VecDeque<(ConnId, CloseReason)>,
}

impl Server {
    /// A server with the initial tree (`/`, `/tool`, `/tool/xenstored`) and domain 0 known.
    pub fn new(config: Config, now: Instant) -> Self {
        Self::with_tree(config, Tree::default(), now)
    }

    pub(crate) fn with_tree(config: Config, tree: Tree, now: Instant) -> Self {
        let mut domains = BTreeMap::new();
        domains.insert(0, Domain::default());
        let special = Perms::owned_by(0, Access::None);
        Server {
            config,
            tree,
            conns: BTreeMap::new(),
            next_conn: 0,
            domains,
            special_perms: BTreeMap::from([
                (INTRODUCE_DOMAIN, special.clone()),
                (RELEASE_DOMAIN, special),
            ]),
            ready: VecDeque::new(),
            last_now: now,
            closes: VecDeque::new(),
        }
    }

    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many nodes the committed tree holds.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }

    /// Checks the tree's structural invariants (every node's parent exists and lists it once,
    /// every listed child exists, per-owner counts match). `Err` names the first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.tree.check()
    }

    /// Opens a connection.
    pub fn connect(&mut self, _now: Instant, origin: Origin) -> ConnId {
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
                home: format!("/local/domain/{domid}"),
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
    pub fn disconnect(&mut self, _now: Instant, conn: ConnId) {
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

    /// Handles bytes received from `conn`, in any split: every complete request is answered,
    /// up to the outstanding-request limit (the rest wait in the buffer until the driver has
    /// taken the replies with [`poll_output`](Server::poll_output)). A header announcing more
    /// than 4096 payload bytes is a protocol violation: the connection is closed
    /// ([`Output::Close`]). Bytes for unknown connections are ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.decoder.feed(bytes);
        self.last_now = self.last_now.max(now);
        self.pump(now, conn);
    }

    /// Answers buffered requests of `conn` while its queued replies are under the limit.
    fn pump(&mut self, now: Instant, conn_id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            let limit = if conn.privileged {
                self.config.privileged_outstanding_requests
            } else {
                self.config.quotas.outstanding_requests
            };
            if conn.queued_replies >= limit {
                return;
            }
            match conn.decoder.next_frame() {
                Ok(Some(frame)) => self.handle_request(
                    now,
                    conn_id,
                    Request {
                        kind: frame.header.msg_type,
                        req_id: frame.header.req_id,
                        tx_id: frame.header.tx_id,
                        payload: &frame.payload,
                    },
                ),
                Ok(None) => return,
                Err(err) => {
                    self.drop_conn(conn_id, CloseReason::Protocol(err));
                    return;
                }
            }
        }
    }

    fn drop_conn(&mut self, conn_id: ConnId, reason: CloseReason) {
        if self.conns.remove(&conn_id).is_some() {
            self.ready.retain(|c| *c != conn_id);
            self.closes.push_back((conn_id, reason));
        }
    }

    /// Makes `domid` known (as INTRODUCE does) and fires `@introduceDomain` if it was not.
    pub fn introduce_domain(&mut self, _now: Instant, domid: u32) {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.domains.entry(domid) {
            entry.insert(Domain::default());
            self.fire_special(INTRODUCE_DOMAIN);
        }
    }

    /// Forgets `domid` (as RELEASE does): closes its connections and fires `@releaseDomain`.
    /// Returns whether it was known.
    pub fn release_domain(&mut self, _now: Instant, domid: u32) -> bool {
        if self.domains.remove(&domid).is_none() {
            return false;
        }
        let gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.domid == domid && !c.privileged)
            .map(|(id, _)| *id)
            .collect();
        for conn in gone {
            self.drop_conn(conn, CloseReason::DomainReleased);
        }
        self.fire_special(RELEASE_DOMAIN);
        true
    }

    /// The next thing for the driver to do, or `None` when drained. Taking a connection's
    /// bytes frees its outstanding-request budget, so requests it had waiting are answered
    /// here and come out in later calls.
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
            self.pump(self.last_now, conn_id);
        }
        Some(Output::Transmit {
            conn: conn_id,
            bytes,
        })
    }

    /// Handles one framed request from `conn`; its reply (and any watch events it causes) are
    /// queued for [`poll_output`](Server::poll_output). Requests on unknown connections are
    /// ignored.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, request: Request<'_>) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let mut after = Vec::new();
        let result = self.dispatch(now, conn, request, &mut after);
        let (reply_kind, payload) = match result {
            Ok(payload) if payload.len() <= ops::PAYLOAD_MAX => (request.kind, payload),
            Ok(_) => (
                kind::ERROR,
                nul_terminated(ErrorKind::E2big.name().as_bytes()),
            ),
            Err(errno) => (kind::ERROR, nul_terminated(errno.name().as_bytes())),
        };
        if let Some(state) = self.conns.get_mut(&conn) {
            state.queued_replies += 1;
        }
        self.queue(
            conn,
            Header {
                msg_type: reply_kind,
                req_id: request.req_id,
                tx_id: request.tx_id,
                len: payload.len() as u32,
            },
            &payload,
        );
        for (path, token) in after {
            self.queue_event(conn, &path, &token);
        }
    }

    fn caller(&self, conn: &Conn) -> Caller {
        Caller {
            domid: conn.domid,
            privileged: conn.privileged,
            target: self.domains.get(&conn.domid).and_then(|d| d.target),
        }
    }

    fn dispatch(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        request: Request<'_>,
        after: &mut Vec<(String, Box<[u8]>)>,
    ) -> Result<Vec<u8>, ErrorKind> {
        let conn = self.conns.get(&conn_id).expect("checked by the caller");
        let caller = self.caller(conn);
        let payload = request.payload;
        let needs_privilege = matches!(
            request.kind,
            kind::CONTROL
                | kind::INTRODUCE
                | kind::RELEASE
                | kind::IS_DOMAIN_INTRODUCED
                | kind::RESUME
                | kind::SET_TARGET
        );
        if needs_privilege && !caller.privileged {
            return Err(ErrorKind::Eacces);
        }
        match request.kind {
            kind::READ
            | kind::DIRECTORY
            | kind::DIRECTORY_PART
            | kind::GET_PERMS
            | kind::WRITE
            | kind::MKDIR
            | kind::RM
            | kind::SET_PERMS => self.node_request(conn_id, caller, request),
            kind::TRANSACTION_START => self.transaction_start(conn_id, request.tx_id),
            kind::TRANSACTION_END => self.transaction_end(conn_id, request),
            kind::WATCH => self.watch(conn_id, payload, after),
            kind::UNWATCH => self.unwatch(conn_id, payload),
            kind::RESET_WATCHES => {
                let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
                conn.watches.clear();
                conn.txs.clear();
                Ok(ok())
            }
            kind::GET_DOMAIN_PATH => {
                let domid = parse_domid(one_arg(payload)?)?;
                Ok(nul_terminated(format!("/local/domain/{domid}").as_bytes()))
            }
            kind::IS_DOMAIN_INTRODUCED => {
                let raw = std::str::from_utf8(one_arg(payload)?).map_err(|_| ErrorKind::Einval)?;
                let domid: i64 = raw.parse().map_err(|_| ErrorKind::Einval)?;
                let known = domid == DOMID_SELF
                    || u32::try_from(domid).is_ok_and(|d| self.domains.contains_key(&d));
                Ok(if known {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            kind::INTRODUCE => {
                let args = strings(payload);
                if args.len() < 3 {
                    return Err(ErrorKind::Einval);
                }
                let domid = parse_domid(args[0])?;
                self.introduce_domain(now, domid);
                Ok(ok())
            }
            kind::RELEASE => {
                let domid = parse_domid(one_arg(payload)?)?;
                if domid == 0 {
                    return Err(ErrorKind::Einval);
                }
                if !self.release_domain(now, domid) {
                    return Err(ErrorKind::Enoent);
                }
                Ok(ok())
            }
            kind::RESUME => {
                let domid = parse_domid(one_arg(payload)?)?;
                if self.domains.contains_key(&domid) {
                    Ok(ok())
                } else {
                    Err(ErrorKind::Enoent)
                }
            }
            kind::SET_TARGET => {
                let args = strings(payload);
                if args.len() != 2 {
                    return Err(ErrorKind::Einval);
                }
                let domid = parse_domid(args[0])?;
                let target = parse_domid(args[1])?;
                if !self.domains.contains_key(&target) {
                    return Err(ErrorKind::Enoent);
                }
                let domain = self.domains.get_mut(&domid).ok_or(ErrorKind::Enoent)?;
                domain.target = Some(target);
                Ok(ok())
            }
            kind::CONTROL => self.control(payload),
            _ => Err(ErrorKind::Enosys),
        }
    }

    fn node_request(
        &mut self,
        conn_id: ConnId,
        caller: Caller,
        request: Request<'_>,
    ) -> Result<Vec<u8>, ErrorKind> {
        let path_max = self.config.path_max;
        let quotas = self.config.quotas.clone();
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let tx = match request.tx_id {
            0 => None,
            id => Some(conn.txs.get_mut(&id).ok_or(ErrorKind::Enoent)?),
        };
        let payload = request.payload;
        // Every node request starts with a path; WRITE's value follows the first NUL.
        let (raw_path, rest) = match request.kind {
            kind::WRITE => {
                let cut = payload
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(ErrorKind::Einval)?;
                (&payload[..cut], &payload[cut + 1..])
            }
            kind::DIRECTORY_PART | kind::SET_PERMS => {
                let cut = payload
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(ErrorKind::Einval)?;
                (&payload[..cut], &payload[cut + 1..])
            }
            _ => (one_arg(payload)?, &[][..]),
        };
        let raw_path = std::str::from_utf8(raw_path).map_err(|_| ErrorKind::Einval)?;
        let path = path::resolve(&conn.home, raw_path);
        let who = ops::Who {
            caller,
            quotas: &quotas,
        };

        if path::is_special(&path) && matches!(request.kind, kind::GET_PERMS | kind::SET_PERMS) {
            return self.special_perms_request(who, &path, request.kind, rest);
        }
        if !path::is_valid_node(&path, path_max) {
            return Err(ErrorKind::Einval);
        }
        let new_perms = if request.kind == kind::SET_PERMS {
            let items = strings(rest);
            if items.is_empty() {
                return Err(ErrorKind::Einval);
            }
            if !caller.privileged && items.len() > quotas.perms_per_node {
                return Err(ErrorKind::Enospc);
            }
            Some(Perms::parse(items)?)
        } else {
            None
        };
        let mut view = View::new(&mut self.tree, tx);
        if !caller.privileged {
            view.check_tx_size(quotas.nodes_per_transaction)?;
        }
        let reply = match request.kind {
            kind::READ => ops::read(&mut view, who, &path),
            kind::DIRECTORY => ops::directory(&mut view, who, &path),
            kind::DIRECTORY_PART => {
                let offset = std::str::from_utf8(one_arg(rest)?)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or(ErrorKind::Einval)?;
                ops::directory_part(&mut view, who, &path, offset)
            }
            kind::GET_PERMS => ops::get_perms(&mut view, who, &path),
            kind::WRITE => ops::write(&mut view, who, &path, rest).map(|()| ok()),
            kind::MKDIR => ops::mkdir(&mut view, who, &path).map(|()| ok()),
            kind::RM => ops::rm(&mut view, who, &path).map(|()| ok()),
            _ => {
                let perms = new_perms.expect("parsed above for SET_PERMS");
                ops::set_perms(&mut view, who, &path, perms).map(|()| ok())
            }
        };
        let changes = std::mem::take(&mut view.changes);
        for change in &changes {
            self.fire(change);
        }
        reply
    }

    fn special_perms_request(
        &mut self,
        who: ops::Who<'_>,
        path: &str,
        kind: u32,
        rest: &[u8],
    ) -> Result<Vec<u8>, ErrorKind> {
        let name = *self
            .special_perms
            .keys()
            .find(|k| **k == path)
            .ok_or(ErrorKind::Enoent)?;
        let current = &self.special_perms[name];
        let granted = current.granted(who.caller);
        if kind == kind::GET_PERMS {
            return if granted.read {
                Ok(current.to_wire())
            } else {
                Err(ErrorKind::Eacces)
            };
        }
        if !(granted.write && granted.owner) {
            return Err(ErrorKind::Eacces);
        }
        let perms = Perms::parse(strings(rest))?;
        if !who.caller.privileged && perms.owner() != current.owner() {
            return Err(ErrorKind::Eperm);
        }
        self.special_perms.insert(name, perms);
        Ok(ok())
    }

    /// `count` summed over every connection of `domid`: per-domain quotas (transactions,
    /// watches) hold across all of a domain's connections, not per connection.
    fn domain_total(&self, domid: u32, count: impl Fn(&Conn) -> usize) -> usize {
        self.conns
            .values()
            .filter(|c| c.domid == domid)
            .map(count)
            .sum()
    }

    fn transaction_start(&mut self, conn_id: ConnId, tx_id: u32) -> Result<Vec<u8>, ErrorKind> {
        let conn = self.conns.get(&conn_id).expect("checked by the caller");
        if tx_id != 0 {
            return Err(if conn.txs.contains_key(&tx_id) {
                ErrorKind::Ebusy
            } else {
                ErrorKind::Enoent
            });
        }
        if !conn.privileged {
            let open = self.domain_total(conn.domid, |c| c.txs.len());
            if open >= self.config.quotas.transactions_per_domain {
                return Err(ErrorKind::Enospc);
            }
        }
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let mut id = conn.next_tx_id;
        while id == 0 || conn.txs.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        conn.next_tx_id = id.wrapping_add(1);
        conn.txs.insert(id, TxState::default());
        Ok(nul_terminated(id.to_string().as_bytes()))
    }

    fn transaction_end(
        &mut self,
        conn_id: ConnId,
        request: Request<'_>,
    ) -> Result<Vec<u8>, ErrorKind> {
        let commit = match one_arg(request.payload)? {
            b"T" => true,
            b"F" => false,
            _ => return Err(ErrorKind::Einval),
        };
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let privileged = conn.privileged;
        let domid = conn.domid;
        let tx = conn.txs.remove(&request.tx_id).ok_or(ErrorKind::Enoent)?;
        if !commit {
            return Ok(ok());
        }
        if !privileged && tx.own_entry_delta > 0 {
            let owned = i64::from(self.tree.entries_of(domid)) + tx.own_entry_delta;
            if owned > i64::from(self.config.quotas.nodes_per_domain) {
                return Err(ErrorKind::Enospc);
            }
        }
        let changes = tx.commit(&mut self.tree)?;
        for change in &changes {
            self.fire(change);
        }
        Ok(ok())
    }

    fn watch(
        &mut self,
        conn_id: ConnId,
        payload: &[u8],
        after: &mut Vec<(String, Box<[u8]>)>,
    ) -> Result<Vec<u8>, ErrorKind> {
        let (given, token) = two_args(payload)?;
        let watch = self.resolve_watch(conn_id, given, token)?;
        let conn = self.conns.get(&conn_id).expect("checked by the caller");
        if conn
            .watches
            .iter()
            .any(|w| w.path == watch.path && w.token == watch.token)
        {
            return Err(ErrorKind::Eexist);
        }
        if !conn.privileged {
            let held = self.domain_total(conn.domid, |c| c.watches.len());
            if held >= self.config.quotas.watches_per_domain {
                return Err(ErrorKind::E2big);
            }
        }
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        after.push((given.to_owned(), watch.token.clone()));
        conn.watches.push(watch);
        Ok(ok())
    }

    fn unwatch(&mut self, conn_id: ConnId, payload: &[u8]) -> Result<Vec<u8>, ErrorKind> {
        let (given, token) = two_args(payload)?;
        let watch = self.resolve_watch(conn_id, given, token)?;
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let idx = conn
            .watches
            .iter()
            .position(|w| w.path == watch.path && w.token == watch.token)
            .ok_or(ErrorKind::Enoent)?;
        conn.watches.remove(idx);
        Ok(ok())
    }

    fn resolve_watch(
        &self,
        conn_id: ConnId,
        given: &str,
        token: &[u8],
    ) -> Result<Watch, ErrorKind> {
        let conn = &self.conns[&conn_id];
        if path::is_special(given) {
            if given.len() > self.config.path_max {
                return Err(ErrorKind::Einval);
            }
            return Ok(Watch {
                path: given.to_owned(),
                token: token.into(),
                relative: false,
            });
        }
        let resolved = path::resolve(&conn.home, given);
        if !path::is_valid_node(&resolved, self.config.path_max) {
            return Err(ErrorKind::Einval);
        }
        Ok(Watch {
            path: resolved,
            token: token.into(),
            relative: !given.starts_with('/'),
        })
    }

    fn control(&mut self, payload: &[u8]) -> Result<Vec<u8>, ErrorKind> {
        let args = strings(payload);
        let reply = match args.first().copied() {
            Some(b"help") => "check\nhelp\nlog\nprint\nquota\n".to_owned(),
            Some(b"check") => match self.tree.check() {
                Ok(()) => "OK".to_owned(),
                Err(problem) => format!("FAILED: {problem}"),
            },
            Some(b"log") | Some(b"print") => String::new(),
            Some(b"quota") => {
                let q = &self.config.quotas;
                format!(
                    "Node quota: {}\nNode size: {}\nWatch quota: {}\nTransaction quota: {}\n\
                     Transaction node quota: {}\nPermissions per node: {}\nOutstanding requests: {}\n",
                    q.nodes_per_domain,
                    q.node_size,
                    q.watches_per_domain,
                    q.transactions_per_domain,
                    q.nodes_per_transaction,
                    q.perms_per_node,
                    q.outstanding_requests
                )
            }
            _ => return Err(ErrorKind::Einval),
        };
        Ok(nul_terminated(reply.as_bytes()))
    }

    /// Queues the events `change` causes on every connection whose watches match and which
    /// may read the node (under its new or, for a permission change, its old permissions) or
    /// its parent, as xenstored decides: a guest watching a directory it may read hears of
    /// children it may not read, but never of anything below a directory hidden from it.
    fn fire(&mut self, change: &Change) {
        let parent_perms = path::parent(&change.path)
            .and_then(|p| self.tree.get(p))
            .map(|n| &n.perms);
        let mut deliveries = Vec::new();
        for (conn_id, conn) in &self.conns {
            let caller = self.caller(conn);
            let can_read = change.perms.granted(caller).read
                || change
                    .old_perms
                    .as_ref()
                    .is_some_and(|p| p.granted(caller).read)
                || parent_perms.is_some_and(|p| p.granted(caller).read);
            if !can_read {
                continue;
            }
            for watch in &conn.watches {
                let matches = if change.exact {
                    watch.path == change.path
                } else {
                    path::is_at_or_below(&change.path, &watch.path)
                };
                if !matches {
                    continue;
                }
                let reported = match change.path.strip_prefix(conn.home.as_str()) {
                    Some(rest) if watch.relative && rest.starts_with('/') => &rest[1..],
                    _ => change.path.as_str(),
                };
                deliveries.push((*conn_id, reported.to_owned(), watch.token.clone()));
            }
        }
        for (conn_id, reported, token) in deliveries {
            self.queue_event(conn_id, &reported, &token);
        }
    }

    fn fire_special(&mut self, name: &str) {
        let perms = self.special_perms.get(name).cloned();
        let mut deliveries = Vec::new();
        for (conn_id, conn) in &self.conns {
            let caller = self.caller(conn);
            if !perms.as_ref().is_some_and(|p| p.granted(caller).read) {
                continue;
            }
            for watch in &conn.watches {
                if watch.path == name {
                    deliveries.push((*conn_id, watch.token.clone()));
                }
            }
        }
        for (conn_id, token) in deliveries {
            self.queue_event(conn_id, name, &token);
        }
    }

    fn queue_event(&mut self, conn_id: ConnId, path: &str, token: &[u8]) {
        let mut payload = Vec::with_capacity(path.len() + token.len() + 2);
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(token);
        payload.push(0);
        if payload.len() > ops::PAYLOAD_MAX {
            return; // xenstored drops an event that cannot fit in one message.
        }
        let limit = self.config.max_queued_events;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.queued_events >= limit {
            self.drop_conn(conn_id, CloseReason::TooSlow);
            return;
        }
        conn.queued_events += 1;
        self.queue(
            conn_id,
            Header {
                msg_type: kind::WATCH_EVENT,
                req_id: 0,
                tx_id: 0,
                len: payload.len() as u32,
            },
            &payload,
        );
    }

    fn queue(&mut self, conn_id: ConnId, header: Header, payload: &[u8]) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.out.is_empty() {
            self.ready.push_back(conn_id);
        }
        conn.out.extend_from_slice(&header.to_bytes());
        conn.out.extend_from_slice(payload);
    }
}

fn ok() -> Vec<u8> {
    b"OK\0".to_vec()
}

fn nul_terminated(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.extend_from_slice(bytes);
    out.push(0);
    out
}

/// The NUL-separated strings of a payload (a final NUL ends the last one).
fn strings(payload: &[u8]) -> Vec<&[u8]> {
    if payload.is_empty() {
        return Vec::new();
    }
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    body.split(|&b| b == 0).collect()
}

/// A payload that is exactly one NUL-terminated string.
fn one_arg(payload: &[u8]) -> Result<&[u8], ErrorKind> {
    match payload.iter().position(|&b| b == 0) {
        Some(end) if end + 1 == payload.len() => Ok(&payload[..end]),
        _ => Err(ErrorKind::Einval),
    }
}

/// A payload of exactly two NUL-terminated strings, the first of them text.
fn two_args(payload: &[u8]) -> Result<(&str, &[u8]), ErrorKind> {
    if !payload.ends_with(b"\0") {
        return Err(ErrorKind::Einval);
    }
    let args = strings(payload);
    let [first, second] = args[..] else {
        return Err(ErrorKind::Einval);
    };
    let first = std::str::from_utf8(first).map_err(|_| ErrorKind::Einval)?;
    Ok((first, second))
}

fn parse_domid(raw: &[u8]) -> Result<u32, ErrorKind> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or(ErrorKind::Einval)
}
