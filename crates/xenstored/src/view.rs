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
use crate::tree::{Base, Node, NodeId, NodeRef, Tree};
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
    /// The committed nodes its copies read their child names from, pinned in the tree until
    /// it ends ([`TxState::release`]).
    pinned: Vec<Base>,
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

    /// The committed nodes its copies read from, pinned until it ends.
    pub(crate) fn pinned(&self) -> &[Base] {
        &self.pinned
    }

    /// Ends the transaction without committing: the tree no longer keeps what its copies
    /// read.
    pub(crate) fn release(self, tree: &mut Tree) {
        for base in self.pinned {
            tree.unpin(base);
        }
    }

    /// Commits onto `tree`: `Err(EAGAIN)` and no effect if any node the transaction looked
    /// at changed since; otherwise applies the writes and returns the changes to fire.
    pub(crate) fn commit(mut self, tree: &mut Tree) -> Result<Vec<Change>, ErrorKind> {
        // Released first: applying must not keep copies of the lists this transaction
        // changes (it only needs the names it added).
        for base in std::mem::take(&mut self.pinned) {
            tree.unpin(base);
        }
        if self.failed {
            return Err(ErrorKind::Enomem);
        }
        for (path, entry) in &self.overlay {
            if tree.get(path).map(|n| n.generation()) != entry.observed {
                return Err(ErrorKind::Eagain);
            }
        }
        let touched: BTreeMap<String, usize> = self
            .overlay
            .iter()
            .map(|(path, entry)| (path.clone(), entry.touched))
            .collect();
        let written: Vec<(String, Option<Node>)> = self
            .overlay
            .into_iter()
            .filter(|(_, entry)| entry.modified)
            .map(|(path, entry)| (path, entry.node))
            .collect();
        tree.apply(&written);
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

/// Where [`View::find`] found a node.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    /// In the committed tree (outside a transaction).
    Tree(NodeId),
    /// In the transaction's copy.
    Copy,
}

/// Reads and writes nodes, through a transaction or directly.
pub(crate) struct View<'a> {
    tree: &'a mut Tree,
    tx: Option<&'a mut TxState>,
    /// Changes made outside a transaction, for the caller to fire.
    pub(crate) changes: Vec<Change>,
}

impl<'a> View<'a> {
    /// A view recording its changes (outside a transaction) in `changes`, which should be
    /// empty.
    pub(crate) fn new(
        tree: &'a mut Tree,
        tx: Option<&'a mut TxState>,
        changes: Vec<Change>,
    ) -> Self {
        View { tree, tx, changes }
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

    pub(crate) fn get(&mut self, path: &str) -> Option<NodeRef<'_>> {
        let found = self.find(path)?;
        Some(self.node(path, found))
    }

    /// Looks `path` up (in a transaction, taking the snapshot that records the access);
    /// [`View::node`] then borrows what was found without a second search.
    pub(crate) fn find(&mut self, path: &str) -> Option<Found> {
        let Some(tx) = self.tx.as_deref_mut() else {
            return self.tree.lookup(path).map(Found::Tree);
        };
        if !tx.overlay.contains_key(path) {
            let visible = visible_in_snapshot(&tx.overlay, self.tree, path);
            let main = self.tree.lookup(path);
            let observed = main.map(|id| self.tree.slot(id).generation);
            let node = main.filter(|_| visible).map(|id| {
                let node = self.tree.detach(id);
                tx.pinned.extend(node.children.base());
                node
            });
            let entry = TxEntry {
                observed,
                node,
                modified: false,
                touched: tx.overlay.len(),
            };
            tx.overlay.insert(path.to_owned(), entry);
        }
        tx.overlay
            .get(path)
            .is_some_and(|e| e.node.is_some())
            .then_some(Found::Copy)
    }

    /// The node [`View::find`] found at `path`.
    pub(crate) fn node(&self, path: &str, found: Found) -> NodeRef<'_> {
        match (found, self.tx.as_deref()) {
            (Found::Copy, Some(tx)) => {
                let node = tx.overlay.get(path).and_then(|e| e.node.as_ref());
                NodeRef::Detached(self.tree, node.expect("found by View::find"))
            }
            (Found::Tree(id), _) => NodeRef::Tree(self.tree, id),
            (Found::Copy, None) => unreachable!("a copy is only found in a transaction"),
        }
    }

    /// Creates the node at `path` (its parent exists, in this view) and lists it in its
    /// parent.
    pub(crate) fn create(&mut self, path: &str, value: &[u8], perms: &Perms) {
        if self.tx.is_none() {
            self.tree.create(path, value, perms);
            return;
        }
        if let Some(parent) = path::parent(path) {
            let name = path::base_name(path);
            self.change_copy(parent, |node, _| node.children.push(name));
        }
        self.store(path, Some(Node::new(value, perms.clone())));
    }

    /// Replaces the value of the existing node at `path`.
    pub(crate) fn set_value(&mut self, path: &str, value: &[u8]) {
        if self.tx.is_none() {
            self.tree.set_value(path, value);
            return;
        }
        self.change_copy(path, |node, _| node.value = value.into());
    }

    /// Replaces the permissions of the existing node at `path`.
    pub(crate) fn set_perms(&mut self, path: &str, perms: &Perms) {
        if self.tx.is_none() {
            self.tree.set_perms(path, perms);
            return;
        }
        self.change_copy(path, |node, _| node.perms = perms.clone());
    }

    /// Removes the node at `path` (and, outside a transaction, what is below it: a caller
    /// in a transaction removes every descendant itself, so each is recorded) and takes it
    /// out of its parent's list.
    pub(crate) fn delete(&mut self, path: &str) {
        if self.tx.is_none() {
            self.tree.remove(path);
            return;
        }
        if let Some(parent) = path::parent(path) {
            let name = path::base_name(path);
            self.change_copy(parent, |node, tree| node.children.remove(tree, name));
        }
        self.store(path, None);
    }

    /// Changes the transaction's copy of the existing node at `path` (taking the copy first,
    /// which records the access). Does nothing if it is missing.
    fn change_copy(&mut self, path: &str, change: impl FnOnce(&mut Node, &Tree)) {
        self.get(path);
        let Some(tx) = self.tx.as_deref_mut() else {
            return;
        };
        if let Some(entry) = tx.overlay.get_mut(path) {
            if let Some(node) = entry.node.as_mut() {
                change(node, self.tree);
                entry.modified = true;
            }
        }
    }

    fn store(&mut self, path: &str, node: Option<Node>) {
        let observed = self.tree.get(path).map(|n| n.generation());
        let Some(tx) = self.tx.as_deref_mut() else {
            return;
        };
        let touched = tx.overlay.len();
        match tx.overlay.entry(path.to_owned()) {
            Entry::Occupied(mut e) => {
                let e = e.get_mut();
                e.node = node;
                e.modified = true;
            }
            Entry::Vacant(e) => {
                e.insert(TxEntry {
                    observed,
                    node,
                    modified: true,
                    touched,
                });
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
fn visible_in_snapshot(overlay: &BTreeMap<String, TxEntry>, tree: &Tree, path: &str) -> bool {
    let mut below = path;
    while let Some(ancestor) = path::parent(below) {
        if let Some(entry) = overlay.get(ancestor) {
            let name = path::base_name(below);
            return entry
                .node
                .as_ref()
                .is_some_and(|n| n.children.contains(tree, name));
        }
        below = ancestor;
    }
    true
}
