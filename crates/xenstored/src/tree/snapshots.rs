//! What lets a transaction see a committed node's child list without copying it.
//!
//! A transaction's copy of a node names the node and the generation it had when the
//! transaction first looked at it (a [`Base`]) instead of copying its child names: a
//! directory of ten thousand guests costs the transaction nothing until it lists it. The
//! transaction pins that generation; while the tree still holds the node at it, the names are
//! read from the tree. Before the tree changes a pinned node (its value, its permissions, its
//! children, or removes it), it keeps the names it had under that generation, so the
//! transaction still sees its snapshot (Xen's rule: what a transaction read keeps its value
//! until it ends, even when its commit is bound to fail). The kept list goes with the last
//! pin.

use std::collections::BTreeMap;

use super::NodeId;

/// The committed node `id` as it was at `generation`: where a transaction's copy of it takes
/// its child names from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    pub(crate) id: NodeId,
    pub(crate) generation: u64,
}

/// The pinned generations and the child lists kept for those the tree moved past.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshots {
    /// How many open transactions hold each generation.
    pins: BTreeMap<u64, u32>,
    /// The child names (each followed by a NUL) of pinned generations the tree no longer
    /// holds.
    kept: BTreeMap<u64, String>,
}

impl Snapshots {
    pub(super) fn pin(&mut self, generation: u64) {
        *self.pins.entry(generation).or_default() += 1;
    }

    /// One holder fewer of `generation`; its kept list goes with the last.
    pub(super) fn unpin(&mut self, generation: u64) {
        let Some(count) = self.pins.get_mut(&generation) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.pins.remove(&generation);
            self.kept.remove(&generation);
        }
    }

    /// Whether a transaction needs `generation`'s list kept once the tree changes it.
    pub(super) fn wants(&self, generation: u64) -> bool {
        self.pins.contains_key(&generation) && !self.kept.contains_key(&generation)
    }

    pub(super) fn keep(&mut self, generation: u64, names: String) {
        self.kept.insert(generation, names);
    }

    pub(super) fn kept(&self, generation: u64) -> Option<&str> {
        self.kept.get(&generation).map(String::as_str)
    }

    /// The pinned generations with their holders, for the invariant checks.
    pub(super) fn pins(&self) -> &BTreeMap<u64, u32> {
        &self.pins
    }

    pub(super) fn is_kept(&self, generation: u64) -> bool {
        self.kept.contains_key(&generation)
    }
}
