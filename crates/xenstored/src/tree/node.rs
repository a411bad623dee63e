//! Nodes as the rest of the crate sees them: a detached [`Node`] (what a transaction keeps
//! of a node it touched) and a [`NodeRef`], a borrowed view of a node wherever it lives.

use super::{NONE, NodeId, Tree};
use crate::perms::Perms;

/// What xenstored 4.17 charges a node's owner beyond the bytes it stores: its record header.
pub(crate) const NODE_RECORD: usize = 24;

/// A node's child names in creation order, each followed by a NUL (the wire's listing), in
/// one buffer: a transaction that touches a directory of ten thousand children copies it
/// with one allocation, not one per name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Children {
    names: String,
}

impl Children {
    pub(crate) fn push(&mut self, name: &str) {
        self.names.push_str(name);
        self.names.push('\0');
    }

    /// Removes `name` (every entry of it).
    pub(crate) fn remove(&mut self, name: &str) {
        if !self.contains(name) {
            return;
        }
        let mut kept = String::with_capacity(self.names.len());
        for child in self.iter().filter(|c| *c != name) {
            kept.push_str(child);
            kept.push('\0');
        }
        self.names = kept;
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.names.split_terminator('\0')
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.iter().any(|c| c == name)
    }

    /// The names with their NULs, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.names.len()
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
    /// A transaction's copy.
    Detached(&'a Node),
}

impl<'a> NodeRef<'a> {
    pub(crate) fn value(self) -> &'a [u8] {
        match self {
            NodeRef::Tree(tree, id) => tree.value_of(id),
            NodeRef::Detached(node) => &node.value,
        }
    }

    pub(crate) fn perms(self) -> &'a Perms {
        match self {
            NodeRef::Tree(tree, id) => tree.perms_of(id),
            NodeRef::Detached(node) => &node.perms,
        }
    }

    pub(crate) fn generation(self) -> u64 {
        match self {
            NodeRef::Tree(tree, id) => tree.slot(id).generation,
            NodeRef::Detached(node) => node.generation,
        }
    }

    /// The child names, in creation order.
    pub(crate) fn children(self) -> ChildNames<'a> {
        match self {
            NodeRef::Tree(tree, id) => ChildNames::Tree {
                tree,
                next: tree.slot(id).first_child,
            },
            NodeRef::Detached(node) => {
                ChildNames::Detached(node.children.names.split_terminator('\0'))
            }
        }
    }

    /// The child names with their NULs, in bytes.
    pub(crate) fn children_bytes(self) -> usize {
        match self {
            NodeRef::Tree(tree, id) => tree.slot(id).children_bytes as usize,
            NodeRef::Detached(node) => node.children.bytes(),
        }
    }

    /// The size xenstored charges against the node-size quota, the size of Xen's stored
    /// record: a 24-byte header, 8 bytes per permission entry, the value, and the child
    /// names with their NULs.
    pub(crate) fn charged_size(self) -> usize {
        NODE_RECORD + self.value().len() + self.children_bytes() + 8 * self.perms().entries().len()
    }

    /// The child names as the wire lists them: each followed by a NUL.
    pub(crate) fn children_wire(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.children_bytes());
        for child in self.children() {
            out.extend_from_slice(child.as_bytes());
            out.push(0);
        }
        out
    }

    /// A copy outside the tree.
    pub(crate) fn to_node(self) -> Node {
        let mut children = Children {
            names: String::with_capacity(self.children_bytes()),
        };
        for name in self.children() {
            children.push(name);
        }
        Node {
            value: self.value().into(),
            children,
            perms: self.perms().clone(),
            generation: self.generation(),
        }
    }
}

/// The child names of a [`NodeRef`], in creation order.
pub(crate) enum ChildNames<'a> {
    Tree { tree: &'a Tree, next: NodeId },
    Detached(std::str::SplitTerminator<'a, char>),
}

impl<'a> Iterator for ChildNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            ChildNames::Tree { tree, next } => {
                if *next == NONE {
                    return None;
                }
                let id = *next;
                *next = tree.slot(id).next;
                Some(tree.name_of(id))
            }
            ChildNames::Detached(names) => names.next(),
        }
    }
}
