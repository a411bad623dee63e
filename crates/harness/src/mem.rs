//! A tiny xenstore: nodes and watches, executed at once. For the model checker, benches and
//! property tests, where the real daemon's bytes, permissions and quotas are not the point.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use xsio_ops::{Op, OpError, OpErrorKind, Reply, Txn, TxnId, TxnOp, XsOp};

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
/// answered; operations other than [`Op::Xs`] are answered with
/// [`OpErrorKind::Unsupported`].
///
/// Interactive transactions (`TxnStart` ... `TxnEnd`) work on a copy of the tree taken at
/// their start, and conflict at commit, as xenstored's rule says, when a node they read,
/// listed or changed (a change also touches the parent's list of children) was changed
/// since they started; a commit applies their steps and fires the watches then. Their ids
/// are the lowest free ones, so equal worlds hash alike.
///
/// As a [`Store`], each step executes every waiting request, connection by connection, in
/// order; a model checker picks one connection with [`execute_next`](MemStore::execute_next).
/// It hashes and compares by value, so a model checker can keep it in its states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemStore {
    nodes: BTreeMap<String, String>,
    watches: BTreeSet<MemWatch>,
    txns: BTreeMap<u32, MemTxn>,
}

/// An open interactive transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MemTxn {
    conn: Conn,
    /// The tree as this transaction sees it: a copy at its start, with its own steps.
    view: BTreeMap<String, String>,
    /// Its steps, applied to the tree at commit.
    ops: Vec<TxnOp>,
    /// The nodes it read, listed or changed.
    touched: BTreeSet<String>,
    /// The nodes changed outside it since it started.
    dirty: BTreeSet<String>,
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

    /// Interactive transactions open (started and not ended).
    pub fn transactions(&self) -> usize {
        self.txns.len()
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
            Op::Xs(XsOp::Directory { path }) => Ok(Reply::Children(children(&self.nodes, path))),
            Op::Xs(XsOp::TxnStart) => {
                let id = (1..).find(|id| !self.txns.contains_key(id)).unwrap_or(0);
                let txn = MemTxn {
                    conn,
                    view: self.nodes.clone(),
                    ops: Vec::new(),
                    touched: BTreeSet::new(),
                    dirty: BTreeSet::new(),
                };
                self.txns.insert(id, txn);
                Ok(Reply::TxnStarted(TxnId(id)))
            }
            Op::Xs(XsOp::TxnRead { txn, path }) => self.in_txn(conn, *txn, |t| {
                t.touched.insert(path.clone());
                Reply::Value(t.view.get(path).cloned())
            }),
            Op::Xs(XsOp::TxnDirectory { txn, path }) => self.in_txn(conn, *txn, |t| {
                t.touched.insert(path.clone());
                Reply::Children(children(&t.view, path))
            }),
            Op::Xs(XsOp::TxnApply { txn, op }) => self.in_txn(conn, *txn, |t| {
                t.touched.extend(
                    apply_op(&mut t.view, op)
                        .map(|c| c.dirty)
                        .unwrap_or_default(),
                );
                t.touched.insert(op.path().to_owned());
                t.ops.push(op.clone());
                Reply::Done
            }),
            Op::Xs(XsOp::TxnEnd { txn, commit }) => self.end(conn, *txn, *commit, &mut fired),
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
            self.apply_live(op, fired);
        }
        Reply::Committed
    }

    /// One step on the tree itself: its watches fire, and the open transactions that
    /// touched what it changed will conflict.
    fn apply_live(&mut self, op: &TxnOp, fired: &mut BTreeSet<MemWatch>) {
        let Some(change) = apply_op(&mut self.nodes, op) else {
            return;
        };
        let path = op.path();
        for w in &self.watches {
            let on_or_above = w.path == path || is_below(path, &w.path);
            if on_or_above || (change.removed && is_below(&w.path, path)) {
                fired.insert(w.clone());
            }
        }
        for txn in self.txns.values_mut() {
            txn.dirty.extend(change.dirty.iter().cloned());
        }
    }

    /// Runs `f` on transaction `id` of `conn`; an unknown one is `ENOENT`, as xenstored.
    fn in_txn(
        &mut self,
        conn: Conn,
        id: TxnId,
        f: impl FnOnce(&mut MemTxn) -> Reply,
    ) -> Result<Reply, OpError> {
        match self.txns.get_mut(&id.0) {
            Some(txn) if txn.conn == conn => Ok(f(txn)),
            _ => Err(OpError::new(OpErrorKind::NoEntry, "no such transaction")),
        }
    }

    fn end(
        &mut self,
        conn: Conn,
        id: TxnId,
        commit: bool,
        fired: &mut BTreeSet<MemWatch>,
    ) -> Result<Reply, OpError> {
        let txn = match self.txns.remove(&id.0) {
            Some(txn) if txn.conn == conn => txn,
            Some(other) => {
                self.txns.insert(id.0, other);
                return Err(OpError::new(OpErrorKind::NoEntry, "no such transaction"));
            }
            None => return Err(OpError::new(OpErrorKind::NoEntry, "no such transaction")),
        };
        if !commit {
            return Ok(Reply::Done);
        }
        if !txn.touched.is_disjoint(&txn.dirty) {
            return Err(OpError::new(OpErrorKind::Conflict, "EAGAIN"));
        }
        for op in &txn.ops {
            self.apply_live(op, fired);
        }
        Ok(Reply::Committed)
    }
}

/// What one step changed: the nodes whose value or list of children changed (the node,
/// a removed subtree, created parents, the parent that gained or lost a child), and
/// whether it removed anything.
struct Change {
    dirty: BTreeSet<String>,
    removed: bool,
}

/// Applies `op` to `nodes`; `None` when it changed nothing (permissions of a missing node).
fn apply_op(nodes: &mut BTreeMap<String, String>, op: &TxnOp) -> Option<Change> {
    let path = op.path();
    let mut dirty = BTreeSet::from([path.to_owned()]);
    let existed = nodes.contains_key(path);
    let removed = match op {
        TxnOp::Mkdir { .. } | TxnOp::Write { .. } => {
            create_parents(nodes, path, &mut dirty);
            match op {
                TxnOp::Write { value, .. } => {
                    nodes.insert(path.to_owned(), value.clone());
                }
                _ => {
                    nodes.entry(path.to_owned()).or_default();
                }
            }
            false
        }
        TxnOp::SetPerms { .. } => {
            if !existed {
                return None;
            }
            false
        }
        TxnOp::Rm { .. } => {
            nodes.retain(|k, _| {
                let gone = k == path || is_below(k, path);
                if gone {
                    dirty.insert(k.clone());
                }
                !gone
            });
            true
        }
    };
    if existed == removed {
        // The node came or went: its parent's list of children changed.
        dirty.insert(parent(path).to_owned());
    }
    Some(Change { dirty, removed })
}

/// The names of the children of `path` in `nodes`, `None` when it does not exist.
fn children(nodes: &BTreeMap<String, String>, path: &str) -> Option<Vec<String>> {
    // The root always exists (it is not stored).
    if path != "/" && !nodes.contains_key(path) {
        return None;
    }
    let below = format!("{}/", path.trim_end_matches('/'));
    let names = nodes
        .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&below))
        .filter_map(|k| k.get(below.len()..))
        .filter(|rest| !rest.contains('/'))
        .map(str::to_owned)
        .collect();
    Some(names)
}

/// Creates the missing ancestors of `path`, each marked changed with its parent.
fn create_parents(nodes: &mut BTreeMap<String, String>, path: &str, dirty: &mut BTreeSet<String>) {
    let mut at = path;
    while let Some(idx) = at.rfind('/') {
        at = &at[..idx];
        if at.is_empty() {
            break;
        }
        if !nodes.contains_key(at) {
            nodes.insert(at.to_owned(), String::new());
            dirty.insert(at.to_owned());
            dirty.insert(parent(at).to_owned());
        }
    }
}

/// The parent of an absolute path (`/` for a top-level node).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(idx) => &path[..idx],
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
        let refused = store.execute(c, &host).result.unwrap_err();
        assert_eq!(refused.kind, OpErrorKind::Unsupported);
    }

    fn start(store: &mut MemStore, c: Conn) -> TxnId {
        match store.execute(c, &Op::Xs(XsOp::TxnStart)).result {
            Ok(Reply::TxnStarted(id)) => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interactive_transactions_see_their_start_and_conflict_on_what_they_touched() {
        let mut store = MemStore::new();
        let (c, d) = (Conn::at(0), Conn::at(1));
        store.execute(
            c,
            &txn(vec![
                TxnOp::write("/be/state", "4"),
                TxnOp::write("/fe/x", "1"),
            ]),
        );
        store.execute(d, &watch("/be", "w"));
        let (a, b) = (start(&mut store, c), start(&mut store, c));
        assert_eq!((a, b), (TxnId(1), TxnId(2)), "lowest free ids");
        let read = |txn, path: &str| {
            Op::Xs(XsOp::TxnRead {
                txn,
                path: path.into(),
            })
        };
        let apply = |txn, op| Op::Xs(XsOp::TxnApply { txn, op });
        let end = |txn, commit| Op::Xs(XsOp::TxnEnd { txn, commit });
        assert_eq!(
            store.execute(c, &read(a, "/be/state")).result,
            Ok(Reply::Value(Some("4".into())))
        );
        store.execute(c, &apply(a, TxnOp::write("/be/state", "5")));
        assert_eq!(store.read("/be/state"), Some("4"), "not before the commit");
        assert_eq!(
            store.execute(c, &read(a, "/be/state")).result,
            Ok(Reply::Value(Some("5".into()))),
            "it sees its own write"
        );
        // b only touches the frontend: the two do not conflict.
        store.execute(
            c,
            &apply(
                b,
                TxnOp::Rm {
                    path: "/fe/x".into(),
                },
            ),
        );
        let committed = store.execute(c, &end(a, true));
        assert_eq!(committed.result, Ok(Reply::Committed));
        assert_eq!(tokens(&committed), ["w"], "watches fire at the commit");
        assert_eq!(store.execute(c, &end(b, true)).result, Ok(Reply::Committed));
        assert_eq!(store.read("/fe/x"), None);

        // A listing, then another writer adds a child: the commit conflicts, nothing written.
        let e = start(&mut store, c);
        let list = Op::Xs(XsOp::TxnDirectory {
            txn: e,
            path: "/be".into(),
        });
        assert_eq!(
            store.execute(c, &list).result,
            Ok(Reply::Children(Some(vec!["state".into()])))
        );
        store.execute(c, &apply(e, TxnOp::Rm { path: "/be".into() }));
        store.execute(d, &txn(vec![TxnOp::write("/be/new", "x")]));
        let conflict = store.execute(c, &end(e, true)).result.unwrap_err();
        assert_eq!(conflict.kind, OpErrorKind::Conflict);
        assert_eq!(store.read("/be/new"), Some("x"));
        // An aborted or unknown transaction is gone.
        let f = start(&mut store, c);
        assert_eq!(f, TxnId(1), "ids are reused");
        assert_eq!(store.execute(c, &end(f, false)).result, Ok(Reply::Done));
        let gone = store.execute(c, &read(f, "/be")).result.unwrap_err();
        assert_eq!(gone.kind, OpErrorKind::NoEntry);
        assert_eq!(
            store,
            {
                let mut same = MemStore::new();
                same.execute(
                    c,
                    &txn(vec![
                        TxnOp::write("/be/state", "5"),
                        TxnOp::write("/be/new", "x"),
                        TxnOp::Mkdir { path: "/fe".into() },
                    ]),
                );
                same.execute(d, &watch("/be", "w"));
                same
            },
            "no trace of the transactions is left"
        );
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
