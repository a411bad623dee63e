//! The toolstack machines' xenstore operations on a xenstore client: the one translation
//! of [`xsio_ops::XsOp`] into [`xsio_xs_client::Client`] commands, and of the client's
//! completions back into [`xsio_ops::Reply`].
//!
//! The L2 machines never name a client type, so every driver needs this bridge. It is
//! written once, for the client *machine*: [`submit`] starts an operation and [`to_reply`]
//! maps the client's `Done` result, so an in-process store ([`XenstoredStore`]) and the
//! blocking driver in `xsio-io-std` use it as it is.
//!
//! [`XenstoredStore`]: crate::XenstoredStore
//!
//! The mapping:
//!
//! - `Read`: the value (`None` for `ENOENT`);
//! - `Watch` / `Unwatch`: `Done`. The client wants a watch id to unwatch, the machines name
//!   the token: [`Watches`] remembers which is which. An `Unwatch` of a token never
//!   watched is answered `Done` at once, without asking the daemon;
//! - `Transaction`: the guard (if any) is read first inside the transaction, so a missing
//!   guard fails it with `ENOENT`, which answers `Skipped`; otherwise `Committed`;
//! - `Directory` / `TxnDirectory`: the children (`None` for `ENOENT`);
//! - `TxnStart`: the client's transaction id; `TxnRead`, `TxnApply` (an `Rm` succeeds when
//!   the node is already gone), `TxnEnd` on that transaction: `Committed` for a commit,
//!   `Done` for an abort;
//! - errors: `EACCES` is [`OpErrorKind::Access`] (the machines treat an unreadable peer
//!   `state` as missing), `EAGAIN` (a conflicting commit) [`OpErrorKind::Conflict`],
//!   anything else [`OpErrorKind::Other`] with the client's message.
//!

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use xsio_core::OpId;
use xsio_ops::{OpError, OpErrorKind, Reply, Txn, TxnId, TxnOp, XsOp};
use xsio_xs_client::{Client, Error, Response, TxId, TxOp};
use xsio_xs_wire::ErrorKind;

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
    Answered(Result<Reply, OpError>),
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
        XsOp::Directory { path } => Submitted::Started(client.directory(now, None, path)),
        XsOp::TxnStart => Submitted::Started(client.transaction_start(now)),
        XsOp::TxnRead { txn, path } => Submitted::Started(client.read(now, Some(tx(*txn)), path)),
        XsOp::TxnDirectory { txn, path } => {
            Submitted::Started(client.directory(now, Some(tx(*txn)), path))
        }
        XsOp::TxnApply { txn, op } => {
            let tx = Some(tx(*txn));
            Submitted::Started(match op {
                TxnOp::Mkdir { path } => client.mkdir(now, tx, path),
                TxnOp::Write { path, value } => client.write(now, tx, path, value.clone()),
                TxnOp::SetPerms { path, perms } => client.set_perms(now, tx, path, perms),
                // A missing node is not an error (a missing parent neither).
                TxnOp::Rm { path } => client.rm_tree(now, tx, path),
            })
        }
        XsOp::TxnEnd { txn, commit } => {
            Submitted::Started(client.transaction_end(now, tx(*txn), *commit))
        }
    }
}

/// The client's transaction id of a machine's transaction (they are the same number).
fn tx(txn: TxnId) -> TxId {
    TxId(txn.0)
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
pub fn to_reply(op: &XsOp, result: Result<Response, Error>) -> Result<Reply, OpError> {
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
        (XsOp::TxnRead { .. }, Ok(Response::Value(v))) => {
            Ok(Reply::Value(Some(String::from_utf8_lossy(&v).into_owned())))
        }
        (XsOp::TxnRead { .. }, Err(Error::Xs(ErrorKind::Enoent))) => Ok(Reply::Value(None)),
        (XsOp::Directory { .. } | XsOp::TxnDirectory { .. }, Ok(Response::Names(names))) => {
            Ok(Reply::Children(Some(names)))
        }
        (XsOp::Directory { .. } | XsOp::TxnDirectory { .. }, Err(Error::Xs(ErrorKind::Enoent))) => {
            Ok(Reply::Children(None))
        }
        (XsOp::TxnStart, Ok(Response::Tx(id))) => Ok(Reply::TxnStarted(TxnId(id.0))),
        (XsOp::TxnApply { .. }, Ok(Response::Unit)) => Ok(Reply::Done),
        (XsOp::TxnEnd { commit: true, .. }, Ok(Response::Unit)) => Ok(Reply::Committed),
        (XsOp::TxnEnd { commit: false, .. }, Ok(Response::Unit)) => Ok(Reply::Done),
        (_, Err(Error::Xs(ErrorKind::Eagain))) => {
            Err(OpError::new(OpErrorKind::Conflict, "EAGAIN"))
        }
        (_, Ok(other)) => Err(OpError::new(
            OpErrorKind::Other,
            format!("unexpected {other:?}"),
        )),
        (_, Err(Error::Xs(ErrorKind::Eacces))) => Err(OpError::new(OpErrorKind::Access, "EACCES")),
        (_, Err(e)) => Err(OpError::new(OpErrorKind::Other, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use xsio_ops::{Access, Op, Perm};
    use xsio_xenbus::StateWaiter;
    use xsio_xenstored::Origin;

    use super::*;
    use crate::{Conn, Harness, Owner, Record, XenstoredStore};

    /// The in-memory daemon and the harness; the caller's operations only.
    struct World {
        store: XenstoredStore,
        harness: Harness<StateWaiter>,
    }

    impl World {
        fn new() -> World {
            #[allow(clippy::disallowed_methods)] // a unit-test epoch
            let now = Instant::now(); // tidy:allow: a unit-test epoch
            let mut store = XenstoredStore::new(now);
            store.server().introduce_domain(now, 1);
            World {
                store,
                harness: Harness::new(now),
            }
        }

        /// Runs `op` on `conn` and returns its answer, with the watch events seen.
        fn run(&mut self, conn: Conn, op: XsOp) -> (Result<Reply, OpError>, Vec<String>) {
            let id = self.harness.submit(conn, Op::Xs(op));
            self.harness
                .drive(&mut self.store)
                .expect("the world settles");
            let mut answer = None;
            let mut events = Vec::new();
            for record in self.harness.take_log() {
                match record {
                    Record::Reply {
                        owner: Owner::Caller,
                        id: done,
                        result,
                        ..
                    } if done == id => answer = Some(result),
                    Record::Watch { token, .. } => events.push(token),
                    _ => {}
                }
            }
            (answer.expect("answered"), events)
        }
    }

    fn read(path: &str) -> XsOp {
        XsOp::Read { path: path.into() }
    }

    fn txn(ops: Vec<TxnOp>) -> XsOp {
        XsOp::Transaction(Txn {
            only_if_exists: None,
            ops,
        })
    }

    #[test]
    fn every_operation_maps_to_its_reply() {
        let mut w = World::new();
        let dom0 = w.store.connect_dom0(&mut w.harness);
        let create = txn(vec![
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
        ]);
        assert_eq!(w.run(dom0, create).0, Ok(Reply::Committed));
        assert_eq!(
            w.run(dom0, read("/d/state")).0,
            Ok(Reply::Value(Some("1".into())))
        );
        assert_eq!(w.run(dom0, read("/d/gone")).0, Ok(Reply::Value(None)));

        let guarded = |guard: &str| {
            XsOp::Transaction(Txn {
                only_if_exists: Some(guard.into()),
                ops: vec![TxnOp::write("/d/state", "5")],
            })
        };
        assert_eq!(w.run(dom0, guarded("/d/missing")).0, Ok(Reply::Skipped));
        assert_eq!(
            w.run(dom0, read("/d/state")).0,
            Ok(Reply::Value(Some("1".into())))
        );
        assert_eq!(w.run(dom0, guarded("/d")).0, Ok(Reply::Committed));
        assert_eq!(
            w.run(dom0, read("/d/state")).0,
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
        let (reply, events) = w.run(dom0, watch);
        assert_eq!(reply, Ok(Reply::Done));
        assert_eq!(events, ["t"], "the watch fired once on registration");
        assert_eq!(w.run(dom0, unwatch.clone()).0, Ok(Reply::Done));
        // Unwatching a token that is not watched is answered at once, without the daemon.
        let mut client = Client::new(Default::default(), w.harness.now());
        let mut watches = Watches::default();
        assert_eq!(
            submit(&mut client, w.harness.now(), &unwatch, &mut watches),
            Submitted::Answered(Ok(Reply::Done))
        );
        assert!(client.poll_output().is_none(), "nothing was sent");
    }

    #[test]
    fn interactive_transactions_read_decide_and_commit() {
        let mut w = World::new();
        let dom0 = w.store.connect_dom0(&mut w.harness);
        let setup = txn(vec![
            TxnOp::write("/d/state", "4"),
            TxnOp::write("/d/x", ""),
        ]);
        assert_eq!(w.run(dom0, setup).0, Ok(Reply::Committed));
        let listing = XsOp::Directory { path: "/d".into() };
        assert_eq!(
            w.run(dom0, listing).0,
            Ok(Reply::Children(Some(vec!["state".into(), "x".into()])))
        );
        let missing = XsOp::Directory {
            path: "/nowhere".into(),
        };
        assert_eq!(w.run(dom0, missing).0, Ok(Reply::Children(None)));

        let start = |w: &mut World| match w.run(dom0, XsOp::TxnStart).0 {
            Ok(Reply::TxnStarted(t)) => t,
            other => panic!("not started: {other:?}"),
        };
        // Two transactions read and write the same node: the second commit conflicts.
        let (a, b) = (start(&mut w), start(&mut w));
        assert_ne!(a, b);
        for t in [a, b] {
            let read = XsOp::TxnRead {
                txn: t,
                path: "/d/state".into(),
            };
            assert_eq!(w.run(dom0, read).0, Ok(Reply::Value(Some("4".into()))));
            let write = XsOp::TxnApply {
                txn: t,
                op: TxnOp::write("/d/state", "5"),
            };
            assert_eq!(w.run(dom0, write).0, Ok(Reply::Done));
        }
        let end = |t, commit| XsOp::TxnEnd { txn: t, commit };
        assert_eq!(w.run(dom0, end(a, true)).0, Ok(Reply::Committed));
        let conflict = w.run(dom0, end(b, true)).0.unwrap_err();
        assert_eq!(conflict.kind, OpErrorKind::Conflict);

        // Inside a transaction: the listing, a removal of a missing node, an abort.
        let c = start(&mut w);
        let inner = XsOp::TxnDirectory {
            txn: c,
            path: "/d".into(),
        };
        assert_eq!(
            w.run(dom0, inner).0,
            Ok(Reply::Children(Some(vec!["state".into(), "x".into()])))
        );
        for path in ["/d/x", "/d/never"] {
            let rm = XsOp::TxnApply {
                txn: c,
                op: TxnOp::Rm { path: path.into() },
            };
            assert_eq!(w.run(dom0, rm).0, Ok(Reply::Done), "rm {path}");
        }
        let gone = XsOp::TxnRead {
            txn: c,
            path: "/d/x".into(),
        };
        assert_eq!(w.run(dom0, gone).0, Ok(Reply::Value(None)));
        assert_eq!(w.run(dom0, end(c, false)).0, Ok(Reply::Done));
        assert_eq!(
            w.run(dom0, read("/d/x")).0,
            Ok(Reply::Value(Some(String::new()))),
            "the abort wrote nothing"
        );
        assert_eq!(
            w.run(dom0, read("/d/state")).0,
            Ok(Reply::Value(Some("5".into())))
        );
    }

    #[test]
    fn errors_keep_eacces_apart() {
        let mut w = World::new();
        let dom0 = w.store.connect_dom0(&mut w.harness);
        let guest = w.store.connect(&mut w.harness, Origin::Domain(1));
        let secret = txn(vec![TxnOp::write("/secret", "s")]);
        assert_eq!(w.run(dom0, secret).0, Ok(Reply::Committed));
        let denied = w.run(guest, read("/secret")).0.unwrap_err();
        assert_eq!(denied.kind, OpErrorKind::Access);
        let write = txn(vec![TxnOp::write("/secret", "mine")]);
        assert_eq!(w.run(guest, write).0.unwrap_err().kind, OpErrorKind::Access);
        let bad_path = w.run(guest, read("no-slash//x")).0.unwrap_err();
        assert_eq!(bad_path.kind, OpErrorKind::Other);
        // A reply of the wrong shape is an error, not a guess.
        let odd = to_reply(&read("/x"), Ok(Response::Unit)).unwrap_err();
        assert_eq!(odd.kind, OpErrorKind::Other);
    }
}
