//! A tiny xenstore: nodes, watches and per-connection FIFOs, enough to run the machines.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use xsio_core::OpId;
use xsio_ops::{Op, OpError, Reply, Request, Txn, TxnOp, XsOp};

/// Who sent a request (and so who gets the reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    Backend(u8),
    Frontend(u8),
    Waiter(u8),
    Toolstack(u8),
}

/// What a connection delivers to its owners, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Inbound {
    Reply {
        owner: Owner,
        id: OpId,
        result: Result<Reply, OpError>,
    },
    Event {
        owner: Owner,
        path: String,
        token: String,
    },
}

/// One connection: requests not yet executed, and replies/events not yet delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Conn {
    pub(crate) outbound: VecDeque<(Owner, Request)>,
    pub(crate) inbound: VecDeque<Inbound>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WatchReg {
    pub(crate) conn: usize,
    pub(crate) path: String,
    pub(crate) token: String,
    pub(crate) owner: Owner,
}

/// Nodes and watches. Permissions are not modelled (the peer tests check them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Store {
    pub(crate) nodes: BTreeMap<String, String>,
    pub(crate) watches: BTreeSet<WatchReg>,
}

impl Store {
    pub(crate) fn read(&self, path: &str) -> Option<String> {
        self.nodes.get(path).cloned()
    }

    /// Whether any node lives at or below `dir`.
    pub(crate) fn has_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.nodes
            .keys()
            .any(|k| k == dir || k.starts_with(&prefix))
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

    /// Applies a transaction atomically; returns the reply and the changed paths.
    fn apply(&mut self, txn: &Txn) -> (Reply, Vec<(String, bool)>) {
        if let Some(guard) = &txn.only_if_exists {
            if !self.nodes.contains_key(guard) {
                return (Reply::Skipped, Vec::new());
            }
        }
        let mut changed = Vec::new();
        for op in &txn.ops {
            match op {
                TxnOp::Mkdir { path } => {
                    self.create_parents(path);
                    self.nodes.entry(path.clone()).or_default();
                    changed.push((path.clone(), false));
                }
                TxnOp::Write { path, value } => {
                    self.create_parents(path);
                    self.nodes.insert(path.clone(), value.clone());
                    changed.push((path.clone(), false));
                }
                TxnOp::SetPerms { path, .. } => {
                    if self.nodes.contains_key(path) {
                        changed.push((path.clone(), false));
                    }
                }
                TxnOp::Rm { path } => {
                    let prefix = format!("{path}/");
                    self.nodes
                        .retain(|k, _| k != path && !k.starts_with(&prefix));
                    changed.push((path.clone(), true));
                }
            }
        }
        (Reply::Committed, changed)
    }

    /// Executes one request from `conn`, queueing its reply and any watch events.
    pub(crate) fn execute(
        &mut self,
        conns: &mut [Conn],
        conn: usize,
        owner: Owner,
        request: Request,
    ) {
        let mut fired: BTreeSet<WatchReg> = BTreeSet::new();
        let mut registration = None;
        let Op::Xs(op) = &request.op else {
            unreachable!("xenbus machines only ask xenstore operations")
        };
        let reply = match op {
            XsOp::Read { path } => Reply::Value(self.read(path)),
            XsOp::Watch { path, token } => {
                let reg = WatchReg {
                    conn,
                    path: path.clone(),
                    token: token.clone(),
                    owner,
                };
                self.watches.insert(reg.clone());
                registration = Some(reg);
                Reply::Done
            }
            XsOp::Unwatch { path, token } => {
                self.watches
                    .retain(|w| !(w.conn == conn && &w.path == path && &w.token == token));
                Reply::Done
            }
            XsOp::Transaction(txn) => {
                let (reply, changed) = self.apply(txn);
                for (path, removed) in changed {
                    for w in &self.watches {
                        let below = path.starts_with(&format!("{}/", w.path));
                        let above = removed && w.path.starts_with(&format!("{path}/"));
                        if w.path == path || below || above {
                            fired.insert(w.clone());
                        }
                    }
                }
                reply
            }
            other => unreachable!("xenbus machines never ask {other:?}"),
        };
        conns[conn].inbound.push_back(Inbound::Reply {
            owner,
            id: request.id,
            result: Ok(reply),
        });
        // As xenstored: a new watch fires once, after the reply.
        if let Some(reg) = registration {
            fired.insert(reg);
        }
        for w in fired {
            conns[w.conn].inbound.push_back(Inbound::Event {
                owner: w.owner,
                path: w.path.clone(),
                token: w.token.clone(),
            });
        }
    }
}
