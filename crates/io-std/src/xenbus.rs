//! The xenbus machines' operations on a xenstore client: the one translation of
//! [`xsio_xenbus::XsOp`] into [`xsio_xs_client::Client`] commands, and of the client's
//! completions back into [`xsio_xenbus::Reply`].
//!
//! The xenbus machines (L2) never name a client type, so every driver needs this bridge.
//! It is written once, for the client *machine*: [`submit`] starts an operation and
//! [`to_reply`] maps the client's `Done` result, so an in-process driver (a simulator, the
//! `xsio demo` bus) uses it as it is; [`execute`] runs one operation to completion on a
//! blocking [`XsConn`].
//!
//! The mapping:
//!
//! - `Read`: the value (`None` for `ENOENT`);
//! - `Watch` / `Unwatch`: `Done`. The client wants a watch id to unwatch, the machines name
//!   the token: [`Watches`] remembers which is which. An `Unwatch` of a token never
//!   watched is answered `Done` at once, without asking the daemon;
//! - `Transaction`: the guard (if any) is read first inside the transaction, so a missing
//!   guard fails it with `ENOENT`, which answers `Skipped`; otherwise `Committed`;
//! - errors: `EACCES` is [`XsErrorKind::Access`] (the machines treat an unreadable peer
//!   `state` as missing), anything else [`XsErrorKind::Other`] with the client's message.
//!
//! ```no_run
//! use xsio_io_std::xenbus::{Watches, execute};
//! use xsio_io_std::xenstore::XsConn;
//! use xsio_xenbus::{Reply, XsOp};
//!
//! let mut xs = XsConn::open()?;
//! let mut watches = Watches::default();
//! let read = XsOp::Read { path: "/local/domain/1/device/vbd/51712/state".into() };
//! match execute(&mut xs, &read, &mut watches) {
//!     Ok(Reply::Value(state)) => println!("frontend state: {state:?}"),
//!     other => println!("read failed: {other:?}"),
//! }
//! # Ok::<(), xsio_io_std::xenstore::XsError>(())
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use xsio_core::OpId;
use xsio_xenbus::{Reply, Txn, TxnOp, XsError, XsErrorKind, XsOp};
use xsio_xs_client::{Client, Error, Response, TxOp};
use xsio_xs_wire::ErrorKind;

use crate::unix::now;
use crate::xenstore::{self, XsConn};

/// The watches registered through [`submit`] on one client: token → the client's watch id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watches {
    ids: BTreeMap<String, OpId>,
}

impl Watches {
    /// Whether a watch with this token is registered.
    pub fn contains(&self, token: &str) -> bool {
        self.ids.contains_key(token)
    }

    /// How many watches are registered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no watch is registered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What [`submit`] did with an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Started on the client: map its `Done { id, result }` with [`to_reply`].
    Started(OpId),
    /// Nothing to ask the daemon (an `Unwatch` of a token never watched): the answer.
    Answered(Result<Reply, XsError>),
}

/// Starts `op` on `client`, registering or forgetting its watch in `watches`.
pub fn submit(client: &mut Client, now: Instant, op: &XsOp, watches: &mut Watches) -> Submitted {
    match op {
        XsOp::Read { path } => Submitted::Started(client.read(now, None, path)),
        XsOp::Watch { path, token } => {
            let id = client.watch(now, path, token);
            watches.ids.insert(token.clone(), id);
            Submitted::Started(id)
        }
        XsOp::Unwatch { token, .. } => match watches.ids.remove(token) {
            Some(watch) => Submitted::Started(client.unwatch(now, watch)),
            None => Submitted::Answered(Ok(Reply::Done)),
        },
        XsOp::Transaction(txn) => Submitted::Started(client.transact(now, tx_ops(txn))),
    }
}

/// The client steps of a xenbus transaction: the guard read (if any), then the steps.
pub fn tx_ops(txn: &Txn) -> Vec<TxOp> {
    let mut ops = Vec::with_capacity(txn.ops.len() + 1);
    if let Some(guard) = &txn.only_if_exists {
        // A missing guard fails the read with ENOENT, which aborts the transaction.
        ops.push(TxOp::Read(guard.clone()));
    }
    for op in &txn.ops {
        ops.push(match op {
            TxnOp::Mkdir { path } => TxOp::Mkdir(path.clone()),
            TxnOp::Write { path, value } => TxOp::Write(path.clone(), Bytes::from(value.clone())),
            TxnOp::Rm { path } => TxOp::Rm(path.clone()),
            TxnOp::SetPerms { path, perms } => TxOp::SetPerms(path.clone(), perms.clone()),
        });
    }
    ops
}

/// The machine's answer to `op`, from the result the client completed it with.
pub fn to_reply(op: &XsOp, result: Result<Response, Error>) -> Result<Reply, XsError> {
    match (op, result) {
        (XsOp::Read { .. }, Ok(Response::Value(v))) => {
            Ok(Reply::Value(Some(String::from_utf8_lossy(&v).into_owned())))
        }
        (XsOp::Read { .. }, Err(Error::Xs(ErrorKind::Enoent))) => Ok(Reply::Value(None)),
        (XsOp::Watch { .. } | XsOp::Unwatch { .. }, Ok(_)) => Ok(Reply::Done),
        (XsOp::Transaction(_), Ok(_)) => Ok(Reply::Committed),
        (XsOp::Transaction(txn), Err(Error::Xs(ErrorKind::Enoent)))
            if txn.only_if_exists.is_some() =>
        {
            Ok(Reply::Skipped)
        }
        (_, Ok(other)) => Err(XsError::new(
            XsErrorKind::Other,
            format!("unexpected {other:?}"),
        )),
        (_, Err(Error::Xs(ErrorKind::Eacces))) => Err(XsError::new(XsErrorKind::Access, "EACCES")),
        (_, Err(e)) => Err(XsError::new(XsErrorKind::Other, e.to_string())),
    }
}

/// Runs `op` on a blocking connection and returns the machine's answer. A failure of the
/// connection itself (not of the operation) is [`XsErrorKind::Connection`].
pub fn execute(conn: &mut XsConn, op: &XsOp, watches: &mut Watches) -> Result<Reply, XsError> {
    match submit(conn.client_mut(), now(), op, watches) {
        Submitted::Answered(reply) => reply,
        Submitted::Started(id) => match conn.wait(id) {
            Ok(response) => to_reply(op, Ok(response)),
            Err(xenstore::XsError::Op(err)) => to_reply(op, Err(err)),
            Err(other) => Err(XsError::new(XsErrorKind::Connection, other.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use xsio_core::Input;
    use xsio_xenbus::{Access, Perm};
    use xsio_xenstored::{ConnId, Origin, Server};
    use xsio_xs_client::Output;

    use super::*;

    /// A client on the in-memory daemon core, stepped until an operation completes.
    struct Pair {
        now: Instant,
        server: Server,
        conn: ConnId,
        client: Client,
        watches: Watches,
        events: Vec<String>,
    }

    impl Pair {
        fn new(origin: Origin) -> Pair {
            #[allow(clippy::disallowed_methods)] // a unit-test epoch
            let now = Instant::now();
            let mut server = Server::new(xsio_xenstored::Config::default(), now);
            server.introduce_domain(now, 1);
            let conn = server.connect(now, origin);
            let client = Client::new(xsio_xs_client::Config::default(), now);
            Pair {
                now,
                server,
                conn,
                client,
                watches: Watches::default(),
                events: Vec::new(),
            }
        }

        /// Submits `op` and moves bytes until it is answered.
        fn run(&mut self, op: &XsOp) -> Result<Reply, XsError> {
            let id = match submit(&mut self.client, self.now, op, &mut self.watches) {
                Submitted::Answered(reply) => return reply,
                Submitted::Started(id) => id,
            };
            for _ in 0..1000 {
                while let Some(output) = self.client.poll_output() {
                    match output {
                        Output::Transmit(t) => {
                            self.server.handle_input(self.now, self.conn, &t.bytes)
                        }
                        Output::Done { id: done, result } if done == id => {
                            return to_reply(op, result);
                        }
                        Output::Event(event) => self.events.push(event.token),
                        _ => {}
                    }
                }
                while let Some(output) = self.server.poll_output() {
                    if let xsio_xenstored::Output::Transmit { bytes, .. } = output {
                        self.client
                            .handle_input(self.now, Input::<OwnedFd>::Bytes(&bytes))
                            .expect("the daemon's bytes parse");
                    }
                }
            }
            panic!("{op:?} did not complete");
        }
    }

    fn read(path: &str) -> XsOp {
        XsOp::Read { path: path.into() }
    }

    #[test]
    fn every_operation_maps_to_its_reply() {
        let mut dom0 = Pair::new(Origin::Socket);
        let create = Txn {
            only_if_exists: None,
            ops: vec![
                TxnOp::Mkdir { path: "/d".into() },
                TxnOp::write("/d/state", "1"),
                TxnOp::SetPerms {
                    path: "/d/state".into(),
                    perms: vec![Perm::new(Access::None, 0), Perm::new(Access::Read, 1)],
                },
                TxnOp::write("/d/gone", "x"),
                TxnOp::Rm {
                    path: "/d/gone".into(),
                },
            ],
        };
        assert_eq!(dom0.run(&XsOp::Transaction(create)), Ok(Reply::Committed));
        assert_eq!(
            dom0.run(&read("/d/state")),
            Ok(Reply::Value(Some("1".into())))
        );
        assert_eq!(dom0.run(&read("/d/gone")), Ok(Reply::Value(None)));

        let guarded = |guard: &str| {
            XsOp::Transaction(Txn {
                only_if_exists: Some(guard.into()),
                ops: vec![TxnOp::write("/d/state", "5")],
            })
        };
        assert_eq!(dom0.run(&guarded("/d/missing")), Ok(Reply::Skipped));
        assert_eq!(
            dom0.run(&read("/d/state")),
            Ok(Reply::Value(Some("1".into())))
        );
        assert_eq!(dom0.run(&guarded("/d")), Ok(Reply::Committed));
        assert_eq!(
            dom0.run(&read("/d/state")),
            Ok(Reply::Value(Some("5".into())))
        );

        let watch = XsOp::Watch {
            path: "/d/state".into(),
            token: "t".into(),
        };
        let unwatch = XsOp::Unwatch {
            path: "/d/state".into(),
            token: "t".into(),
        };
        assert_eq!(dom0.run(&watch), Ok(Reply::Done));
        assert!(dom0.watches.contains("t") && dom0.watches.len() == 1);
        assert_eq!(dom0.run(&unwatch), Ok(Reply::Done));
        assert!(dom0.watches.is_empty());
        // Unwatching a token that is not watched is answered at once.
        assert_eq!(
            submit(&mut dom0.client, dom0.now, &unwatch, &mut dom0.watches),
            Submitted::Answered(Ok(Reply::Done))
        );
        assert_eq!(dom0.events, ["t"], "the watch fired once on registration");
    }

    #[test]
    fn errors_keep_eacces_apart() {
        let mut dom0 = Pair::new(Origin::Socket);
        let secret = Txn {
            only_if_exists: None,
            ops: vec![TxnOp::write("/secret", "s")],
        };
        assert_eq!(dom0.run(&XsOp::Transaction(secret)), Ok(Reply::Committed));
        let mut guest = Pair {
            conn: dom0.server.connect(dom0.now, Origin::Domain(1)),
            client: Client::new(xsio_xs_client::Config::default(), dom0.now),
            watches: Watches::default(),
            events: Vec::new(),
            ..dom0
        };
        let denied = guest.run(&read("/secret")).unwrap_err();
        assert_eq!(denied.kind, XsErrorKind::Access);
        let write = XsOp::Transaction(Txn {
            only_if_exists: None,
            ops: vec![TxnOp::write("/secret", "mine")],
        });
        assert_eq!(guest.run(&write).unwrap_err().kind, XsErrorKind::Access);
        let bad_path = guest.run(&read("no-slash//x")).unwrap_err();
        assert_eq!(bad_path.kind, XsErrorKind::Other);
        // A reply of the wrong shape is an error, not a guess.
        let odd = to_reply(&read("/x"), Ok(Response::Unit)).unwrap_err();
        assert_eq!(odd.kind, XsErrorKind::Other);
    }
}
