//! The real xenstored core as a [`Store`]: every xenstore operation goes through an
//! `xsio-xs-client` machine, as bytes, to the in-process `xsio-xenstored` server.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::xs::{self, Submitted, Watches};
use xsio_core::{Input, OpId};
use xsio_ops::{Op, XsOp};
use xsio_xenstored::{ConnId, Origin, Server};
use xsio_xs_client::{Client, Error, Response};

use crate::harness::{Actor, Conn, Harness, HarnessError, Owner, Store};

/// How many operations one connection executes at once. A transaction of the toolstack's
/// may be some forty requests on the wire; sixteen of them stay well inside the client's
/// in-flight limit (1024 by default), as a real toolstack throttles itself.
pub const MAX_OPS_PER_CONN: usize = 16;

/// One harness connection's client and what it has in flight.
#[derive(Debug)]
struct Party {
    conn: ConnId,
    client: Client,
    /// Client op → the harness request it executes.
    pending: BTreeMap<OpId, (Owner, OpId, XsOp)>,
    watches: Watches,
}

/// The in-process xenstored core, one xenstore client machine per harness connection.
///
/// Each [`step`](Store::step) submits the requests waiting in the harness, moves the
/// clients' bytes to the daemon and the daemon's bytes back, and hands the completions
/// and watch events to the harness. Time is virtual: every message the daemon delivers
/// takes one millisecond, so a run is the same every time.
#[derive(Debug)]
pub struct XenstoredStore {
    server: Server,
    /// Indexed by [`Conn::index`].
    parties: Vec<Party>,
    /// The party of each daemon connection.
    by_server_conn: BTreeMap<ConnId, usize>,
    /// Parties whose client was handed bytes or operations since its output was last
    /// taken: only these can have output (the others are not asked, each step).
    touched: BTreeSet<usize>,
}

impl XenstoredStore {
    /// A daemon with the default configuration, started at `epoch`.
    pub fn new(epoch: Instant) -> XenstoredStore {
        XenstoredStore {
            server: Server::new(xsio_xenstored::Config::default(), epoch),
            parties: Vec::new(),
            by_server_conn: BTreeMap::new(),
            touched: BTreeSet::new(),
        }
    }

    /// The daemon, to introduce domains or check its invariants.
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Opens a dom0 (privileged, socket) connection for `harness`.
    pub fn connect_dom0<A: Actor>(&mut self, harness: &mut Harness<A>) -> Conn {
        self.connect(harness, Origin::Socket)
    }

    /// Opens a connection from `origin` (introduce a guest domain first).
    pub fn connect<A: Actor>(&mut self, harness: &mut Harness<A>, origin: Origin) -> Conn {
        let now = harness.now();
        let conn = harness.connect();
        debug_assert_eq!(conn.index(), self.parties.len(), "one store per harness");
        let server_conn = self.server.connect(now, origin);
        self.by_server_conn.insert(server_conn, self.parties.len());
        self.parties.push(Party {
            conn: server_conn,
            client: Client::new(xsio_xs_client::Config::default(), now),
            pending: BTreeMap::new(),
            watches: Watches::default(),
        });
        conn
    }

    /// Runs one client operation on `conn` outside the machines (a toolstack's own read or
    /// listing) and returns its result. Other connections' bytes reach their clients and
    /// are handled on the next step.
    pub fn call<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        conn: Conn,
        start: impl FnOnce(&mut Client, Instant) -> OpId,
    ) -> Result<Result<Response, Error>, HarnessError> {
        let now = harness.now();
        let party = self
            .parties
            .get_mut(conn.index())
            .ok_or(HarnessError::Unknown)?;
        let id = start(&mut party.client, now);
        self.touched.insert(conn.index());
        for _ in 0..10_000 {
            let mut moved = false;
            let party = &mut self.parties[conn.index()];
            while let Some(output) = party.client.poll_output() {
                moved = true;
                match output {
                    xsio_xs_client::Output::Transmit(t) => {
                        self.server.handle_input(now, party.conn, &t.bytes);
                    }
                    xsio_xs_client::Output::Done { id: done, result } if done == id => {
                        return Ok(result);
                    }
                    // Completions of the machines' own operations are not expected while
                    // the caller waits: the harness is quiet when it calls.
                    _ => {}
                }
            }
            while let Some(output) = self.server.poll_output() {
                moved = true;
                if let xsio_xenstored::Output::Transmit { conn, bytes } = output {
                    if let Some(&index) = self.by_server_conn.get(&conn) {
                        self.touched.insert(index);
                        self.parties[index]
                            .client
                            .handle_input(now, Input::<OwnedFd>::Bytes(&bytes));
                    }
                }
            }
            if !moved {
                break;
            }
        }
        Err(HarnessError::Store(format!(
            "a call on connection {} did not complete",
            conn.index()
        )))
    }
}

impl<A: Actor> Store<A> for XenstoredStore {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        let now = harness.now();
        // Requests the machines issued since the last step, in order per connection.
        for conn in harness.requesting_conns() {
            let index = conn.index();
            let Some(party) = self.parties.get_mut(index) else {
                continue;
            };
            // Backpressure: a connection takes no more than MAX_OPS_PER_CONN operations at
            // once; the rest wait in the harness (a transaction is many requests on the
            // wire, and the client refuses past its own in-flight limit).
            while party.client.ops_in_flight() < MAX_OPS_PER_CONN {
                let Some((owner, request)) = harness.take_request(conn_at(index)) else {
                    break;
                };
                moved = true;
                let Op::Xs(op) = request.op else {
                    harness.reply(
                        owner,
                        request.id,
                        Err(xsio_ops::OpError::new(
                            xsio_ops::OpErrorKind::Unsupported,
                            "not a xenstore operation",
                        )),
                    )?;
                    continue;
                };
                self.touched.insert(index);
                match xs::submit(&mut party.client, now, &op, &mut party.watches) {
                    Submitted::Started(client_op) => {
                        party.pending.insert(client_op, (owner, request.id, op));
                    }
                    Submitted::Answered(reply) => harness.reply(owner, request.id, reply)?,
                }
            }
        }
        // The clients' bytes to the daemon; what the clients completed before this round.
        let mut done = Vec::new();
        let mut events = Vec::new();
        for index in std::mem::take(&mut self.touched) {
            let party = &mut self.parties[index];
            while let Some(output) = party.client.poll_output() {
                moved = true;
                match output {
                    xsio_xs_client::Output::Transmit(t) => {
                        self.server.handle_input(now, party.conn, &t.bytes);
                    }
                    xsio_xs_client::Output::Done { id, result } => done.push((index, id, result)),
                    xsio_xs_client::Output::Event(event) => events.push((index, event)),
                    xsio_xs_client::Output::Closed(reason) => {
                        return Err(HarnessError::Store(format!(
                            "client {index} closed: {reason}"
                        )));
                    }
                    _ => {}
                }
            }
        }
        // The daemon's bytes to the clients, one virtual millisecond per message.
        while let Some(output) = self.server.poll_output() {
            moved = true;
            match output {
                xsio_xenstored::Output::Transmit { conn, bytes } => {
                    harness.advance(Duration::from_millis(1));
                    let index = *self
                        .by_server_conn
                        .get(&conn)
                        .ok_or(HarnessError::Unknown)?;
                    self.touched.insert(index);
                    self.parties[index]
                        .client
                        .handle_input(harness.now(), Input::<OwnedFd>::Bytes(&bytes));
                }
                xsio_xenstored::Output::Close { conn, reason } => {
                    return Err(HarnessError::Store(format!(
                        "xenstored closed connection {conn:?}: {reason:?}"
                    )));
                }
                _ => {}
            }
        }
        for (index, id, result) in done {
            if let Some((owner, request, op)) = self.parties[index].pending.remove(&id) {
                harness.reply(owner, request, xs::to_reply(&op, result))?;
            }
        }
        for (index, event) in events {
            harness.watch_event(conn_at(index), &event.path, &event.token);
        }
        Ok(moved)
    }
}

/// Harness connections and store parties are opened together, so their indices agree.
fn conn_at(index: usize) -> Conn {
    Conn::at(index)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use xsio_ops::{DomainState, HostOp, OpError, OpErrorKind, Reply};
    use xsio_xenbus::StateWaiter;

    use super::*;
    use crate::Record;

    /// Answers every host operation with "running", leaving xenstore's to the next store.
    struct Host;

    impl<A: Actor> Store<A> for Host {
        fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
            let mut moved = false;
            for conn in harness.conns().collect::<Vec<_>>() {
                while let Some((owner, request)) =
                    harness.take_request_where(conn, |op| matches!(op, Op::Host(_)))
                {
                    moved = true;
                    harness.reply(owner, request.id, Ok(Reply::Domain(DomainState::Running)))?;
                }
            }
            Ok(moved)
        }
    }

    fn answers(harness: &mut Harness<StateWaiter>) -> Vec<Result<Reply, OpError>> {
        harness
            .take_log()
            .into_iter()
            .filter_map(|record| match record {
                Record::Reply { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn host_operations_go_to_the_host_store_in_front() {
        #[allow(clippy::disallowed_methods)] // a unit-test epoch
        let now = Instant::now(); // tidy:allow: a unit-test epoch
        let info = Op::Host(HostOp::DomainInfo { domid: 3 });
        let read = Op::Xs(XsOp::Read { path: "/x".into() });

        // xenstore alone: a typed refusal, not a panic.
        let mut store = XenstoredStore::new(now);
        let mut harness: Harness<StateWaiter> = Harness::new(now);
        let dom0 = store.connect_dom0(&mut harness);
        harness.submit(dom0, info.clone());
        harness.drive(&mut store).unwrap();
        let refused = answers(&mut harness);
        assert!(
            matches!(&refused[..], [Err(e)] if e.kind == OpErrorKind::Unsupported),
            "{refused:?}"
        );

        // A host in front: it takes the host operation, xenstore the read queued before it.
        let mut stores = (Host, XenstoredStore::new(now));
        let mut harness: Harness<StateWaiter> = Harness::new(now);
        let dom0 = stores.1.connect_dom0(&mut harness);
        harness.submit(dom0, read);
        harness.submit(dom0, info);
        harness.drive(&mut stores).unwrap();
        let mut both = answers(&mut harness);
        both.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            both,
            [
                Ok(Reply::Domain(DomainState::Running)),
                Ok(Reply::Value(None))
            ]
        );
    }
}
