//! One way to read and write nodes whether or not a transaction is open.
//!
//! Outside a transaction a [`View`] reads and writes the committed [`Tree`] directly. Inside
//! one it works on the transaction's overlay: the first access to a node takes a snapshot of
//! it (or of its absence) and records its generation; later accesses see that snapshot plus
//! the transaction's own writes. At commit every recorded generation is compared with the tree
//! (the C daemon's rule: any change to a node the transaction looked at, including one it
//! found missing, fails the commit with EAGAIN), and only then are the written nodes applied.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::perms::Perms;
use crate::tree::{Node, Tree};
use xsio_xs_wire::{ErrorKind, path};

/// A change that may fire watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The node that changed.
    pub(crate) path: String,
    /// Fire only watches set exactly on `path` (a removed descendant), not those above it.
    pub(crate) exact: bool,
    /// The node's permissions (for a removal, those it had).
    pub(crate) perms: Perms,
    /// On a permission change, the permissions before it: readers under either list see it.
    pub(crate) old_perms: Option<Perms>,
}

impl Change {
    /// A change of the node at `path` (its value, its existence): fires watches on `path`
    /// and above it, for readers under `perms`.
    pub(crate) fn node(path: &str, perms: Perms) -> Change {
        Change {
            path: path.to_owned(),
            exact: false,
            perms,
            old_perms: None,
        }
    }
}

/// The state of one open transaction.
#[derive(Clone, Debug, Default)]
pub(crate) struct TxState {
    overlay: BTreeMap<String, TxEntry>,
    /// Changes in the order they happened, fired on a successful commit.
    pub(crate) changes: Vec<Change>,
    /// Net nodes created minus removed that the caller's domain owns.
    pub(crate) own_entry_delta: i64,
    /// A write in it failed the node-size quota: Xen's daemon then refuses to commit it
    /// (ENOMEM), whatever else happened.
    pub(crate) failed: bool,
}

#[derive(Clone, Debug)]
struct TxEntry {
    /// Generation in the tree at first access; `None` if the node did not exist.
    observed: Option<u64>,
    node: Option<Node>,
    modified: bool,
    /// How many nodes the transaction had touched before this one: the commit fires its
    /// events in this first-touch order, as Xen's daemon does.
    touched: usize,
}

impl TxState {
    /// How many distinct nodes the transaction has touched.
    pub(crate) fn accessed(&self) -> usize {
        self.overlay.len()
    }

    /// Commits onto `tree`: `Err(EAGAIN)` and no effect if any node the transaction looked
    /// at changed since; otherwise applies the writes and returns the changes to fire.
    pub(crate) fn commit(self, tree: &mut Tree) -> Result<Vec<Change>, ErrorKind> {
        if self.failed {
            return Err(ErrorKind::Enomem);
        }
        for (path, entry) in &self.overlay {
            if tree.get(path).map(|n| n.generation) != entry.observed {
                return Err(ErrorKind::Eagain);
            }
        }
        let touched: BTreeMap<String, usize> = self
            .overlay
            .iter()
            .map(|(path, entry)| (path.clone(), entry.touched))
            .collect();
        for (path, entry) in self.overlay {
            if !entry.modified {
                continue;
            }
            match entry.node {
                Some(node) => tree.put(&path, node),
                None => {
                    tree.remove(&path);
                }
            }
        }
        // One event per changed node, in the order the transaction first touched them (a
        // removed subtree: its root first, as it was read first).
        let mut seen = std::collections::BTreeSet::new();
        let mut changes: Vec<Change> = self
            .changes
            .into_iter()
            .filter(|c| seen.insert(c.path.clone()))
            .collect();
        changes.sort_by_key(|c| touched.get(&c.path).copied().unwrap_or(usize::MAX));
        Ok(changes)
    }
}

/// Reads and writes nodes, through a transaction or directly.
pub(crate) struct View<'a> {
    tree: &'a mut Tree,
    tx: Option<&'a mut TxState>,
    /// Changes made outside a transaction, for the caller to fire.
    pub(crate) changes: Vec<Change>,
}

impl<'a> View<'a> {
    pub(crate) fn new(tree: &'a mut Tree, tx: Option<&'a mut TxState>) -> Self {
        View {
            tree,
            tx,
            changes: Vec::new(),
        }
    }

    /// The committed tree, for quota counts.
    pub(crate) fn tree(&self) -> &Tree {
        self.tree
    }

    /// Nodes the caller's domain gained in this transaction so far (0 outside one).
    pub(crate) fn own_entry_delta(&self) -> i64 {
        self.tx.as_ref().map_or(0, |tx| tx.own_entry_delta)
    }

    pub(crate) fn add_own_entries(&mut self, delta: i64) {
        if let Some(tx) = self.tx.as_mut() {
            tx.own_entry_delta += delta;
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Option<&Node> {
        let Some(tx) = self.tx.as_deref_mut() else {
            return self.tree.get(path);
        };
        if !tx.overlay.contains_key(path) {
            let visible = visible_in_snapshot(&tx.overlay, path);
            let main = self.tree.get(path);
            let entry = TxEntry {
                observed: main.map(|n| n.generation),
                node: if visible { main.cloned() } else { None },
                modified: false,
                touched: tx.overlay.len(),
            };
            tx.overlay.insert(path.to_owned(), entry);
        }
        tx.overlay.get(path).and_then(|e| e.node.as_ref())
    }

    /// Stores `node` at `path`; the caller keeps child lists consistent.
    pub(crate) fn set(&mut self, path: &str, node: Node) {
        self.store(path, Some(node));
    }

    /// Changes the existing node at `path` in place (in the tree, or in the transaction's
    /// copy of it, which this records as accessed first). Does nothing if it is missing.
    pub(crate) fn modify(&mut self, path: &str, change: impl FnOnce(&mut Node)) {
        if self.tx.is_none() {
            self.tree.modify(path, change);
            return;
        }
        self.get(path);
        let tx = self.tx.as_deref_mut().expect("checked above");
        if let Some(entry) = tx.overlay.get_mut(path) {
            if let Some(node) = entry.node.as_mut() {
                change(node);
                entry.modified = true;
            }
        }
    }

    /// Removes the single node at `path`.
    pub(crate) fn delete(&mut self, path: &str) {
        self.store(path, None);
    }

    fn store(&mut self, path: &str, node: Option<Node>) {
        match self.tx.as_deref_mut() {
            None => match node {
                Some(node) => self.tree.put(path, node),
                None => {
                    self.tree.remove(path);
                }
            },
            Some(tx) => {
                let observed = self.tree.get(path).map(|n| n.generation);
                let e_len = tx.overlay.len();
                match tx.overlay.entry(path.to_owned()) {
                    Entry::Occupied(mut e) => {
                        let e = e.get_mut();
                        e.node = node;
                        e.modified = true;
                    }
                    Entry::Vacant(e) => {
                        let touched = e_len;
                        e.insert(TxEntry {
                            observed,
                            node,
                            modified: true,
                            touched,
                        });
                    }
                }
            }
        }
    }

    pub(crate) fn record(&mut self, change: Change) {
        match self.tx.as_deref_mut() {
            Some(tx) => tx.changes.push(change),
            None => self.changes.push(change),
        }
    }

    /// Marks the transaction (if any) as one that cannot commit.
    pub(crate) fn fail_transaction(&mut self) {
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.failed = true;
        }
    }

    /// Errors if an unprivileged transaction already touched `limit` nodes.
    pub(crate) fn check_tx_size(&self, limit: usize) -> Result<(), ErrorKind> {
        match self.tx.as_deref() {
            Some(tx) if tx.accessed() >= limit => Err(ErrorKind::Enospc),
            _ => Ok(()),
        }
    }
}

/// Whether a node not yet in the overlay is visible to the transaction: the nearest ancestor
/// the overlay knows must exist there and still list the next component. Nodes below an
/// ancestor the transaction removed, or created outside it after the transaction read the
/// parent, stay invisible.
fn visible_in_snapshot(overlay: &BTreeMap<String, TxEntry>, path: &str) -> bool {
    let mut below = path;
    while let Some(ancestor) = path::parent(below) {
        if let Some(entry) = overlay.get(ancestor) {
            let name = path::base_name(below);
            return entry
                .node
                .as_ref()
                .is_some_and(|n| n.children.contains(name));
        }
        below = ancestor;
    }
    true
}
