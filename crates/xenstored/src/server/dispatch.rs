//! Requests: decoding with `xsio-xs-wire`'s lenient grammar, the checks every type shares
//! (known type, privilege, transaction id) in the C daemon's order, dispatch to the
//! operations, and the reply, encoded by `xsio-xs-wire`.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use xsio_xs_wire::{
    Body, DOMID_SELF, EncodeError, ErrorKind, FrameRef, Header, MsgType, Packet, PayloadError,
    Perm, Reply, Request, path,
};

use super::flow::Hold;
use super::{ConnId, INTRODUCE_DOMAIN, RELEASE_DOMAIN, Server};
use crate::Quotas;
use crate::ops::{self, Answer};
use crate::perms::Perms;
use crate::view::{TxState, View};

/// A node request with its path taken out.
enum NodeOp {
    Read,
    Directory,
    DirectoryPart { offset: u32 },
    GetPerms,
    Write { value: Bytes },
    Mkdir,
    Rm,
    SetPerms { perms: Vec<Perm> },
}

impl NodeOp {
    /// The path and the operation of a node request; the request back if it is none.
    fn split(request: Request) -> Result<(String, NodeOp), Request> {
        Ok(match request {
            Request::Read { path } => (path, NodeOp::Read),
            Request::Directory { path } => (path, NodeOp::Directory),
            Request::DirectoryPart { path, offset } => (path, NodeOp::DirectoryPart { offset }),
            Request::GetPerms { path } => (path, NodeOp::GetPerms),
            Request::Write { path, value } => (path, NodeOp::Write { value }),
            Request::Mkdir { path } => (path, NodeOp::Mkdir),
            Request::Rm { path } => (path, NodeOp::Rm),
            Request::SetPerms { path, perms } => (path, NodeOp::SetPerms { perms }),
            other => return Err(other),
        })
    }
}

/// Types only a privileged connection may send (EACCES otherwise, before anything else).
fn needs_privilege(kind: MsgType) -> bool {
    matches!(
        kind,
        MsgType::Control
            | MsgType::Introduce
            | MsgType::Release
            | MsgType::IsDomainIntroduced
            | MsgType::Resume
            | MsgType::SetTarget
    )
}

/// The types whose transaction id Xen 4.17 looks up right after the privilege check (an
/// unknown one is ENOENT before the arguments are looked at): every type it serves but
/// WATCH and UNWATCH, which ignore it.
fn looks_up_transaction(kind: MsgType) -> bool {
    matches!(
        kind,
        MsgType::Control
            | MsgType::Directory
            | MsgType::Read
            | MsgType::GetPerms
            | MsgType::TransactionStart
            | MsgType::TransactionEnd
            | MsgType::Introduce
            | MsgType::Release
            | MsgType::GetDomainPath
            | MsgType::Write
            | MsgType::Mkdir
            | MsgType::Rm
            | MsgType::SetPerms
            | MsgType::IsDomainIntroduced
            | MsgType::Resume
            | MsgType::SetTarget
            | MsgType::ResetWatches
            | MsgType::DirectoryPart
    )
}

/// The checks in the order of the C daemon, then the decoding of a request that arrived on
/// a connection (`privileged`, with open transactions `txs`): a type it knows (ENOSYS),
/// privilege (EACCES), the transaction id of every type but WATCH and UNWATCH (ENOENT),
/// then the arguments (EINVAL, or ENOSYS for a type a client may not send). The frame is
/// read where it lies.
pub(super) fn decode_request(
    privileged: bool,
    txs: &BTreeMap<u32, TxState>,
    quotas: &Quotas,
    frame: FrameRef<'_>,
) -> Result<Request, ErrorKind> {
    let kind = MsgType::from_u32(frame.header.msg_type).ok_or(ErrorKind::Enosys)?;
    if needs_privilege(kind) && !privileged {
        return Err(ErrorKind::Eacces);
    }
    let tx_id = frame.header.tx_id;
    if looks_up_transaction(kind) && tx_id != 0 && !txs.contains_key(&tx_id) {
        return Err(ErrorKind::Enoent);
    }
    match Packet::<Request>::decode_lenient_ref(frame) {
        Ok(packet) => Ok(packet.body),
        Err(PayloadError::UnsupportedType(_)) => Err(ErrorKind::Enosys),
        // Xen counts SET_PERMS entries (ENOSPC past the quota, for an unprivileged
        // caller) before it parses them (EINVAL).
        Err(_) if kind == MsgType::SetPerms && !privileged => {
            let strings = frame.payload.iter().filter(|&&b| b == 0).count();
            if strings.saturating_sub(1) > quotas.perms_per_node {
                Err(ErrorKind::Enospc)
            } else {
                Err(ErrorKind::Einval)
            }
        }
        Err(_) => Err(ErrorKind::Einval),
    }
}

impl Server {
    /// Answers one framed request of a known connection, decoded by [`decode_request`].
    pub(super) fn answer_frame(
        &mut self,
        conn_id: ConnId,
        header: Header,
        request: Result<Request, ErrorKind>,
    ) {
        let tx_id = header.tx_id;
        self.answer(conn_id, header.req_id, tx_id, |server, after| {
            request.and_then(|request| server.execute(conn_id, tx_id, request, after))
        });
    }

    /// Answers one typed request of a known connection.
    pub(super) fn answer_packet(&mut self, conn_id: ConnId, packet: Packet<Request>) {
        let Packet {
            req_id,
            tx_id,
            body,
        } = packet;
        self.answer(conn_id, req_id, tx_id, |server, after| {
            server
                .check_privilege(conn_id, body.msg_type())
                .and_then(|()| server.execute(conn_id, tx_id, body, after))
        });
    }

    /// Runs `handle` as one outstanding request of `conn_id` (see `flow`: the events an
    /// unprivileged connection's request causes hold it outstanding) and queues its reply.
    fn answer(
        &mut self,
        conn_id: ConnId,
        req_id: u32,
        tx_id: u32,
        handle: impl FnOnce(&mut Self, &mut Vec<(String, String)>) -> Result<Answer, ErrorKind>,
    ) {
        // A privileged connection's request waits only for its reply; a guest's is a slab
        // entry that the events it causes hold too.
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let hold = if conn.privileged {
            conn.outstanding += 1;
            Hold::Own
        } else {
            Hold::Source(self.open_source(conn_id))
        };
        self.answering = match hold {
            Hold::Source(source) => Some(source),
            _ => None,
        };
        let mut after = Vec::new();
        let result = handle(self, &mut after);
        self.send_reply(conn_id, hold, req_id, tx_id, result, after);
        self.answering = None;
        if let Hold::Source(source) = hold {
            self.finish_source(source);
        }
    }

    fn check_privilege(&self, conn_id: ConnId, kind: MsgType) -> Result<(), ErrorKind> {
        if needs_privilege(kind) && !self.conns[&conn_id].privileged {
            return Err(ErrorKind::Eacces);
        }
        Ok(())
    }

    /// Queues the reply (an `ERROR` for `Err`, `E2BIG` for a reply too large to send), then
    /// the events that must follow it (a new watch's first event).
    fn send_reply(
        &mut self,
        conn_id: ConnId,
        hold: Hold,
        req_id: u32,
        tx_id: u32,
        result: Result<Answer, ErrorKind>,
        after: Vec<(String, String)>,
    ) {
        let answer = result.unwrap_or_else(|errno| Answer::Reply(Reply::Error(errno)));
        let packet = match answer {
            Answer::Reply(reply) => Ok(Packet::new(req_id, tx_id, reply)),
            Answer::Value(id) => Err(id),
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let tree = &self.tree;
        let encode = |out: &mut BytesMut| {
            let first = match &packet {
                Ok(packet) => packet.encode(out),
                Err(id) => Reply::encode_read(req_id, tx_id, tree.value_of(*id), out),
            };
            let error = match first {
                Ok(()) => return Ok(()),
                Err(EncodeError::TooLarge { .. }) => ErrorKind::E2big,
                // Names, paths and tokens come from decoded text fields and hold no NUL, and
                // lists are never empty: any other failure is answered like a bad request.
                Err(_) => ErrorKind::Einval,
            };
            Packet::new(req_id, tx_id, Reply::Error(error)).encode(out)
        };
        let queued = conn
            .outbox()
            .push(conn_id, &mut self.ready, hold, None, encode);
        if queued {
            conn.queued_replies += 1;
            if let Hold::Source(source) = hold {
                self.hold_source(source);
            }
            self.charge(conn_id);
        }
        for (path, token) in after {
            self.queue_event(conn_id, &path, &token);
        }
    }

    /// Runs one request: a node operation on its path, or one of the requests that are not
    /// about one node.
    fn execute(
        &mut self,
        conn_id: ConnId,
        tx_id: u32,
        request: Request,
        after: &mut Vec<(String, String)>,
    ) -> Result<Answer, ErrorKind> {
        let request = match NodeOp::split(request) {
            Ok((path, op)) => return self.node_request(conn_id, tx_id, path, op),
            Err(other) => other,
        };
        let reply = match request {
            Request::TransactionStart => self.transaction_start(conn_id, tx_id),
            Request::TransactionEnd { commit } => self.transaction_end(conn_id, tx_id, commit),
            Request::Watch { path, token } => {
                let (reply, first_event) = self.watch(conn_id, path, token)?;
                after.push(first_event);
                Ok(reply)
            }
            Request::Unwatch { path, token } => self.unwatch(conn_id, path, token),
            Request::ResetWatches => {
                self.clear_watches(conn_id);
                self.end_transactions(conn_id);
                Ok(Reply::ResetWatches)
            }
            Request::GetDomainPath { domid } => Ok(Reply::GetDomainPath(path::domain_path(domid))),
            Request::IsDomainIntroduced { domid } => Ok(Reply::IsDomainIntroduced(
                domid == DOMID_SELF || self.domains.contains_key(&domid),
            )),
            Request::Introduce { domid, .. } => {
                if self.domains.contains_key(&domid) {
                    self.reset_domain(domid);
                } else {
                    self.add_domain(domid);
                }
                Ok(Reply::Introduce)
            }
            Request::Release { domid } => {
                if domid == 0 {
                    return Err(ErrorKind::Einval);
                }
                if !self.remove_domain(domid) {
                    return Err(ErrorKind::Enoent);
                }
                Ok(Reply::Release)
            }
            Request::Resume { domid } => {
                if domid == 0 {
                    return Err(ErrorKind::Einval); // as RELEASE: never the control domain
                }
                if self.domains.contains_key(&domid) {
                    Ok(Reply::Resume)
                } else {
                    Err(ErrorKind::Enoent)
                }
            }
            Request::SetTarget { domid, target } => {
                if !self.domains.contains_key(&target) {
                    return Err(ErrorKind::Enoent);
                }
                let domain = self.domains.get_mut(&domid).ok_or(ErrorKind::Enoent)?;
                domain.target = Some(target);
                Ok(Reply::SetTarget)
            }
            Request::Control { args } => self.control(&args),
            _ => Err(ErrorKind::Enosys),
        };
        reply.map(Answer::Reply)
    }

    fn node_request(
        &mut self,
        conn_id: ConnId,
        tx_id: u32,
        raw_path: String,
        op: NodeOp,
    ) -> Result<Answer, ErrorKind> {
        let caller = self.caller(&self.conns[&conn_id]);
        let quotas = self.config.quotas.clone();
        let quotas = &quotas;
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let tx = match tx_id {
            0 => None,
            id => Some(conn.txs.get_mut(&id).ok_or(ErrorKind::Enoent)?),
        };
        let path = path::resolve_owned(raw_path, &conn.home);
        let who = ops::Who { caller, quotas };

        // SET_PERMS checks its list before its path, in Xen's order (the list parsed at
        // decoding, EINVAL): too many entries for an unprivileged caller is ENOSPC.
        if let NodeOp::SetPerms { perms } = &op {
            if !caller.privileged && perms.len() > quotas.perms_per_node {
                return Err(ErrorKind::Enospc);
            }
        }
        // The one domid check we can make without a hypervisor: ids from DOMID_SELF
        // (0x7ff0) up name no domain, and Xen refuses such an owner with ENOENT, before it
        // looks at the path.
        if let NodeOp::SetPerms { perms } = &op
            && perms.first().is_some_and(|owner| owner.domid >= DOMID_SELF)
        {
            return Err(ErrorKind::Enoent);
        }
        if path.starts_with('@') {
            match op {
                // An `@` name is no node: Xen 4.17 answers GET_PERMS there with EINVAL (the
                // special permissions can be set, not read).
                NodeOp::GetPerms => return Err(ErrorKind::Einval),
                NodeOp::SetPerms { perms } => {
                    return self
                        .special_perms_request(who, &path, perms)
                        .map(Answer::Reply);
                }
                _ => {}
            }
        }
        path::check_node(&path, self.config.path_max).map_err(|_| ErrorKind::Einval)?;
        let mut view = View::new(&mut self.tree, tx, std::mem::take(&mut self.changes));
        if !caller.privileged {
            view.check_tx_size(quotas.nodes_per_transaction)?;
        }
        let reply = match op {
            NodeOp::Read => ops::read(&mut view, who, &path),
            NodeOp::Directory => ops::directory(&mut view, who, &path).map(Answer::Reply),
            NodeOp::DirectoryPart { offset } => {
                ops::directory_part(&mut view, who, &path, offset as usize).map(Answer::Reply)
            }
            NodeOp::GetPerms => ops::get_perms(&mut view, who, &path).map(Answer::Reply),
            NodeOp::Write { value } => {
                ops::write(&mut view, who, &path, &value).map(|()| Answer::Reply(Reply::Write))
            }
            NodeOp::Mkdir => {
                ops::mkdir(&mut view, who, &path).map(|()| Answer::Reply(Reply::Mkdir))
            }
            NodeOp::Rm => ops::rm(&mut view, who, &path).map(|()| Answer::Reply(Reply::Rm)),
            NodeOp::SetPerms { perms } => {
                let perms = Perms::from_entries(perms).ok_or(ErrorKind::Einval)?;
                ops::set_perms(&mut view, who, &path, perms)
                    .map(|()| Answer::Reply(Reply::SetPerms))
            }
        };
        let mut changes = std::mem::take(&mut view.changes);
        for change in &changes {
            self.fire(change, &changes);
        }
        changes.clear();
        self.changes = changes;
        reply
    }

    /// SET_PERMS on `@introduceDomain` / `@releaseDomain`, which decide who hears of
    /// domains coming and going (any other `@` name is no node: EINVAL). Unlike a node's,
    /// a special name's owner may change (no node quota hangs on it), as in Xen.
    fn special_perms_request(
        &mut self,
        who: ops::Who<'_>,
        path: &str,
        new: Vec<Perm>,
    ) -> Result<Reply, ErrorKind> {
        let name = [INTRODUCE_DOMAIN, RELEASE_DOMAIN]
            .into_iter()
            .find(|k| *k == path)
            .ok_or(ErrorKind::Einval)?;
        let current = &self.special_perms[name];
        let granted = current.granted(who.caller);
        if !(granted.write && granted.owner) {
            return Err(ErrorKind::Eacces);
        }
        let perms = Perms::from_entries(new).ok_or(ErrorKind::Einval)?;
        self.special_perms.insert(name, perms);
        Ok(Reply::SetPerms)
    }
}
