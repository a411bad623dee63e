//! A tiny xenstore: nodes and watches, executed at once. For the model checker, benches and
//! property tests, where the real daemon's bytes, permissions and quotas are not the point.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use xsio_ops::{Op, OpError, OpErrorKind, Reply, Txn, TxnOp, XsOp};

use crate::harness::{Actor, Conn, Harness, HarnessError, Store};

/// A watch registered on a [`MemStore`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemWatch {
    /// The connection that registered it (its events go there).
    pub conn: Conn,
    /// The watched path.
    pub path: String,
    /// The token its events carry.
    pub token: String,
}

/// What [`MemStore::execute`] did: the answer, and the watches that fired, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The answer to the operation.
    pub result: Result<Reply, OpError>,
    /// The watches that fired (each once, a new watch included: xenstored fires a watch
    /// once when it is registered).
    pub fired: Vec<MemWatch>,
}

/// A xenstore reduced to what the toolstack machines see: nodes with values and watches.
///
/// Every operation executes at once and atomically: a transaction checks its guard, applies
/// its steps and commits, and is never retried. Writes and `mkdir` create missing parents;
/// `rm` removes a whole subtree. A change fires every watch on the changed path and on its
/// parents; a removal also fires the watches below it. Permissions are not modelled
/// (`SetPerms` fires watches and changes nothing else): the real daemon
/// ([`XenstoredStore`](crate::XenstoredStore)) and the peer tests check them. Listings are
/// answered; interactive transactions and operations other than [`Op::Xs`] are answered
/// with [`OpErrorKind::Unsupported`].
///
/// As a [`Store`], each step executes every waiting request, connection by connection, in
/// order; a model checker picks one connection with [`execute_next`](MemStore::execute_next).
/// It hashes and compares by value, so a model checker can keep it in its states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemStore {
    nodes: BTreeMap<String, String>,
    watches: BTreeSet<MemWatch>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// The value of `path`, `None` when it does not exist.
    pub fn read(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).map(String::as_str)
    }

    /// Whether any node lives at or below `dir`.
    pub fn has_under(&self, dir: &str) -> bool {
        // Keys below `dir` sort right after "dir/" (a sibling "dir-x" sorts before it).
        let below = format!("{dir}/");
        self.nodes.contains_key(dir)
            || self
                .nodes
                .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
                .next()
                .is_some_and(|(k, _)| k.starts_with(&below))
    }

    /// The registered watches, in order (connection, path, token).
    pub fn watches(&self) -> impl ExactSizeIterator<Item = &MemWatch> {
        self.watches.iter()
    }

    /// Executes `op` for connection `conn`, outside any harness (a setup step, a replay).
    pub fn execute(&mut self, conn: Conn, op: &Op) -> Executed {
        let mut fired = BTreeSet::new();
        let result = match op {
            Op::Xs(XsOp::Read { path }) => Ok(Reply::Value(self.nodes.get(path).cloned())),
            Op::Xs(XsOp::Watch { path, token }) => {
                let watch = MemWatch {
                    conn,
                    path: path.clone(),
                    token: token.clone(),
                };
                self.watches.insert(watch.clone());
                // As xenstored: a new watch fires once, after the reply.
                fired.insert(watch);
                Ok(Reply::Done)
            }
            Op::Xs(XsOp::Unwatch { path, token }) => {
                self.watches
                    .retain(|w| !(w.conn == conn && &w.path == path && &w.token == token));
                Ok(Reply::Done)
            }
            Op::Xs(XsOp::Transaction(txn)) => Ok(self.apply(txn, &mut fired)),
            Op::Xs(XsOp::Directory { path }) => Ok(Reply::Children(self.children(path))),
            Op::Xs(
                XsOp::TxnStart
                | XsOp::TxnRead { .. }
                | XsOp::TxnDirectory { .. }
                | XsOp::TxnApply { .. }
                | XsOp::TxnEnd { .. },
            ) => Err(OpError::new(
                OpErrorKind::Unsupported,
                "MemStore has no interactive transactions",
            )),
            // Host operations, and whatever kind of operation comes next.
            _ => Err(OpError::new(
                OpErrorKind::Unsupported,
                "not a xenstore operation",
            )),
        };
        Executed {
            result,
            fired: fired.into_iter().collect(),
        }
    }

    /// Executes the oldest request waiting on `conn` in `harness`: its answer and the
    /// events it fired join the harness's queues. `Ok(false)` when none waits.
    pub fn execute_next<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        conn: Conn,
    ) -> Result<bool, HarnessError> {
        let Some((owner, request)) = harness.take_request(conn) else {
            return Ok(false);
        };
        let executed = self.execute(conn, &request.op);
        harness.reply(owner, request.id, executed.result)?;
        for watch in executed.fired {
            harness.watch_event(watch.conn, &watch.path, &watch.token);
        }
        Ok(true)
    }

    fn apply(&mut self, txn: &Txn, fired: &mut BTreeSet<MemWatch>) -> Reply {
        if let Some(guard) = &txn.only_if_exists {
            if !self.nodes.contains_key(guard) {
                return Reply::Skipped;
            }
        }
        for op in &txn.ops {
            let path = op.path();
            let removed = match op {
                TxnOp::Mkdir { .. } => {
                    self.create_parents(path);
                    self.nodes.entry(path.to_owned()).or_default();
                    false
                }
                TxnOp::Write { value, .. } => {
                    self.create_parents(path);
                    self.nodes.insert(path.to_owned(), value.clone());
                    false
                }
                TxnOp::SetPerms { .. } => {
                    if !self.nodes.contains_key(path) {
                        continue;
                    }
                    false
                }
                TxnOp::Rm { .. } => {
                    self.nodes.retain(|k, _| k != path && !is_below(k, path));
                    true
                }
            };
            for w in &self.watches {
                let on_or_above = w.path == path || is_below(path, &w.path);
                if on_or_above || (removed && is_below(&w.path, path)) {
                    fired.insert(w.clone());
                }
            }
        }
        Reply::Committed
    }

    /// The names of the children of `path`, `None` when it does not exist.
    fn children(&self, path: &str) -> Option<Vec<String>> {
        // The root always exists (it is not stored).
        if path != "/" && !self.nodes.contains_key(path) {
            return None;
        }
        let below = format!("{}/", path.trim_end_matches('/'));
        let names = self
            .nodes
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&below))
            .filter_map(|k| k.get(below.len()..))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect();
        Some(names)
    }

    fn create_parents(&mut self, path: &str) {
        let mut at = path;
        while let Some(idx) = at.rfind('/') {
            at = &at[..idx];
            if at.is_empty() {
                break;
            }
            self.nodes.entry(at.to_owned()).or_default();
        }
    }
}

/// Whether `path` lies strictly below `dir`.
fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

impl<A: Actor> Store<A> for MemStore {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        for conn in harness.conns() {
            while self.execute_next(harness, conn)? {
                moved = true;
            }
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(ops: Vec<TxnOp>) -> Op {
        Op::Xs(XsOp::Transaction(Txn {
            only_if_exists: None,
            ops,
        }))
    }

    fn watch(path: &str, token: &str) -> Op {
        Op::Xs(XsOp::Watch {
            path: path.into(),
            token: token.into(),
        })
    }

    fn tokens(executed: &Executed) -> Vec<&str> {
        executed.fired.iter().map(|w| w.token.as_str()).collect()
    }

    #[test]
    fn writes_create_parents_and_fire_watches_on_the_path_and_above() {
        let mut store = MemStore::new();
        let c = Conn::at(0);
        for (path, token) in [("/a", "a"), ("/a/b/c", "c"), ("/a/bee", "bee"), ("/x", "x")] {
            let done = store.execute(c, &watch(path, token));
            assert_eq!(done.result, Ok(Reply::Done));
            assert_eq!(tokens(&done), [token], "a new watch fires once");
        }
        let write = store.execute(
            c,
            &txn(vec![
                TxnOp::write("/a/b/c", "1"),
                TxnOp::write("/a/b-x", "2"),
            ]),
        );
        assert_eq!(write.result, Ok(Reply::Committed));
        assert_eq!(tokens(&write), ["a", "c"], "not /a/bee, not /x");
        assert_eq!(store.read("/a/b"), Some(""), "parents created empty");
        assert_eq!(store.read("/a/b/c"), Some("1"));
        assert!(store.has_under("/a/b") && store.has_under("/a"));
        assert!(!store.has_under("/a/b/c/d") && !store.has_under("/a/b/"));
        assert!(
            !store.has_under("/a/b-"),
            "/a/b-x is a sibling of /a/b-, not below"
        );

        let rm = store.execute(c, &txn(vec![TxnOp::Rm { path: "/a".into() }]));
        // In watch order (by path): /a, /a/b/c, /a/bee.
        assert_eq!(tokens(&rm), ["a", "c", "bee"], "a removal fires below it");
        assert!(!store.has_under("/a"));
        assert_eq!(store.read("/a/b/c"), None);
    }

    #[test]
    fn listings_and_what_it_cannot_do() {
        let mut store = MemStore::new();
        let c = Conn::at(0);
        let writes = ["/d/b/deep", "/d/a", "/d-sibling"].map(|p| TxnOp::write(p, "v"));
        store.execute(c, &txn(writes.to_vec()));
        let list = |path: &str| Op::Xs(XsOp::Directory { path: path.into() });
        let children = store.execute(c, &list("/d")).result;
        assert_eq!(
            children,
            Ok(Reply::Children(Some(vec!["a".into(), "b".into()])))
        );
        assert_eq!(
            store.execute(c, &list("/d/a")).result,
            Ok(Reply::Children(Some(vec![])))
        );
        assert_eq!(
            store.execute(c, &list("/nope")).result,
            Ok(Reply::Children(None))
        );
        let host = Op::Host(xsio_ops::HostOp::DomainInfo { domid: 1 });
        for op in [Op::Xs(XsOp::TxnStart), host] {
            let refused = store.execute(c, &op).result.unwrap_err();
            assert_eq!(refused.kind, OpErrorKind::Unsupported);
        }
    }

    #[test]
    fn a_guard_skips_and_unwatch_silences() {
        let mut store = MemStore::new();
        let (c, d) = (Conn::at(0), Conn::at(1));
        store.execute(c, &watch("/g", "t"));
        store.execute(d, &watch("/g", "t"));
        let guarded = |guard: &str| {
            Op::Xs(XsOp::Transaction(Txn {
                only_if_exists: Some(guard.into()),
                ops: vec![TxnOp::write("/g/state", "5")],
            }))
        };
        let skipped = store.execute(c, &guarded("/g"));
        assert_eq!(skipped.result, Ok(Reply::Skipped));
        assert!(skipped.fired.is_empty());
        assert_eq!(store.read("/g/state"), None);
        store.execute(c, &txn(vec![TxnOp::Mkdir { path: "/g".into() }]));
        let unwatch = Op::Xs(XsOp::Unwatch {
            path: "/g".into(),
            token: "t".into(),
        });
        store.execute(c, &unwatch);
        assert_eq!(
            store.watches().len(),
            1,
            "only connection c's watch is gone"
        );
        let written = store.execute(c, &guarded("/g"));
        assert_eq!(written.result, Ok(Reply::Committed));
        assert_eq!(written.fired.len(), 1);
        assert_eq!(written.fired[0].conn, d);
        assert_eq!(store.read("/g/state"), Some("5"));
    }
}
