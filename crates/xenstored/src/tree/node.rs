//! Nodes as the rest of the crate sees them: a detached [`Node`] (what a transaction keeps
//! of a node it touched) and a [`NodeRef`], a borrowed view of a node wherever it lives.

use std::collections::BTreeSet;

use super::{Base, NONE, NodeId, Tree};
use crate::perms::Perms;

/// What xenstored 4.17 charges a node's owner beyond the bytes it stores: its record header.
pub(crate) const NODE_RECORD: usize = 24;

/// A transaction's copy of a node's child names: those of the committed node it was taken
/// from (its [`Base`], read from the tree, never copied) that the transaction did not
/// remove, then those it added, in order. A copy of a directory of ten thousand guests costs
/// what the transaction does to it, not ten thousand names. A node the transaction created
/// has no base.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Children {
    base: Option<Base>,
    /// Names of the base the transaction removed.
    removed: BTreeSet<Box<str>>,
    /// Their bytes with their NULs.
    removed_bytes: usize,
    /// Names the transaction added, in order, each followed by a NUL.
    added: String,
}

impl Children {
    /// The names of `base`, as the tree holds (or keeps) them for it.
    pub(crate) fn over(base: Base) -> Children {
        Children {
            base: Some(base),
            ..Children::default()
        }
    }

    /// Where the names come from: the committed node, if any.
    pub(crate) fn base(&self) -> Option<Base> {
        self.base
    }

    /// Adds `name` at the end (it is not listed).
    pub(crate) fn push(&mut self, name: &str) {
        self.added.push_str(name);
        self.added.push('\0');
    }

    /// Removes `name`, if listed.
    pub(crate) fn remove(&mut self, tree: &Tree, name: &str) {
        let mut at = 0;
        for added in self.added.split_terminator('\0') {
            if added == name {
                self.added.replace_range(at..at + name.len() + 1, "");
                return;
            }
            at += added.len() + 1;
        }
        let listed = self.base.is_some_and(|b| tree.base_contains(b, name));
        if listed && self.removed.insert(name.into()) {
            self.removed_bytes += name.len() + 1;
        }
    }

    pub(crate) fn contains(&self, tree: &Tree, name: &str) -> bool {
        self.added.split_terminator('\0').any(|c| c == name)
            || (!self.removed.contains(name)
                && self.base.is_some_and(|b| tree.base_contains(b, name)))
    }

    /// The names in order.
    pub(crate) fn iter<'a>(&'a self, tree: &'a Tree) -> ChildNames<'a> {
        ChildNames::Copy {
            base: match self.base {
                Some(base) => tree.base_names(base),
                None => BaseNames::Listed("".split_terminator('\0')),
            },
            removed: &self.removed,
            added: self.added.split_terminator('\0'),
        }
    }

    /// The names the transaction added, in order.
    pub(crate) fn added(&self) -> impl Iterator<Item = &str> + '_ {
        self.added.split_terminator('\0')
    }

    /// The names with their NULs, in bytes.
    pub(crate) fn bytes(&self, tree: &Tree) -> usize {
        let base = self.base.map_or(0, |b| tree.base_bytes(b));
        base - self.removed_bytes + self.added.len()
    }
}

/// A node outside the tree: its value, its children in creation order, its permissions,
/// and the generation it had (globally unique, so a node deleted and re-created differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) value: Box<[u8]>,
    pub(crate) children: Children,
    pub(crate) perms: Perms,
    pub(crate) generation: u64,
}

impl Node {
    pub(crate) fn new(value: &[u8], perms: Perms) -> Node {
        Node {
            value: value.into(),
            children: Children::default(),
            perms,
            generation: 0,
        }
    }
}

/// A node, borrowed from the tree or from a transaction's copy.
#[derive(Clone, Copy)]
pub(crate) enum NodeRef<'a> {
    /// Node `NodeId` of the committed tree.
    Tree(&'a Tree, NodeId),
    /// A transaction's copy (its child names partly in the tree).
    Detached(&'a Tree, &'a Node),
}

impl<'a> NodeRef<'a> {
    pub(crate) fn value(self) -> &'a [u8] {
        match self {
            NodeRef::Tree(tree, id) => tree.value_of(id),
            NodeRef::Detached(_, node) => &node.value,
        }
    }

    pub(crate) fn perms(self) -> &'a Perms {
        match self {
            NodeRef::Tree(tree, id) => tree.perms_of(id),
            NodeRef::Detached(_, node) => &node.perms,
        }
    }

    pub(crate) fn generation(self) -> u64 {
        match self {
            NodeRef::Tree(tree, id) => tree.slot(id).generation,
            NodeRef::Detached(_, node) => node.generation,
        }
    }

    /// The child names, in creation order.
    pub(crate) fn children(self) -> ChildNames<'a> {
        match self {
            NodeRef::Tree(tree, id) => ChildNames::Tree(BaseNames::Tree {
                tree,
                next: tree.slot(id).first_child,
            }),
            NodeRef::Detached(tree, node) => node.children.iter(tree),
        }
    }

    /// The child names with their NULs, in bytes.
    pub(crate) fn children_bytes(self) -> usize {
        match self {
            NodeRef::Tree(tree, id) => tree.slot(id).children_bytes as usize,
            NodeRef::Detached(tree, node) => node.children.bytes(tree),
        }
    }

    /// The size xenstored charges against the node-size quota, the size of Xen's stored
    /// record: a 24-byte header, 8 bytes per permission entry, the value, and the child
    /// names with their NULs.
    pub(crate) fn charged_size(self) -> usize {
        NODE_RECORD + self.value().len() + self.children_bytes() + 8 * self.perms().entries().len()
    }
}

/// The child names of a committed node: in the tree, or kept for a transaction once the
/// tree changed the node.
pub(crate) enum BaseNames<'a> {
    Tree { tree: &'a Tree, next: NodeId },
    Listed(std::str::SplitTerminator<'a, char>),
}

impl<'a> Iterator for BaseNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            BaseNames::Tree { tree, next } => {
                if *next == NONE {
                    return None;
                }
                let id = *next;
                *next = tree.slot(id).next;
                Some(tree.name_of(id))
            }
            BaseNames::Listed(names) => names.next(),
        }
    }
}

/// The child names of a [`NodeRef`], in creation order.
pub(crate) enum ChildNames<'a> {
    Tree(BaseNames<'a>),
    /// A transaction's copy: its base's names it did not remove, then those it added.
    Copy {
        base: BaseNames<'a>,
        removed: &'a BTreeSet<Box<str>>,
        added: std::str::SplitTerminator<'a, char>,
    },
}

impl<'a> Iterator for ChildNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            ChildNames::Tree(names) => names.next(),
            ChildNames::Copy {
                base,
                removed,
                added,
            } => base
                .find(|name| removed.is_empty() || !removed.contains(*name))
                .or_else(|| added.next()),
        }
    }
}
