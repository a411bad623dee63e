//! The committed tree: every node by path, the generation counter and per-owner node counts.

use std::collections::BTreeMap;

use xsio_xs_wire::{XENSTORE_ABS_PATH_MAX, path};

use crate::perms::{Access, Perms};

/// What xenstored 4.17 charges a node's owner beyond the bytes it stores: its record header.
pub(crate) const NODE_RECORD: usize = 24;

/// A node's child names in creation order, with their total length (names and their NULs)
/// kept up to date, so a node's size costs no walk over its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Children {
    names: Vec<Box<str>>,
    bytes: usize,
}

impl Children {
    pub(crate) fn push(&mut self, name: &str) {
        self.bytes += name.len() + 1;
        self.names.push(name.into());
    }

    /// Removes `name` (every entry of it).
    pub(crate) fn remove(&mut self, name: &str) {
        let before = self.names.len();
        self.names.retain(|c| &**c != name);
        self.bytes -= (before - self.names.len()) * (name.len() + 1);
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.names.iter().map(|n| &**n)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|c| &**c == name)
    }

    /// The names with their NULs, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// One node: its value, its children in creation order, its permissions, and the generation
/// it was last written at (globally unique, so a node deleted and re-created differs).
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

    /// The size xenstored charges against the node-size quota, the size of Xen's stored
    /// record: a 24-byte header, 8 bytes per permission entry, the value, and the child
    /// names with their NULs.
    pub(crate) fn charged_size(&self) -> usize {
        NODE_RECORD + self.value.len() + self.children.bytes() + 8 * self.perms.entries().len()
    }

    /// The memory charged to the owner of the node at `path`: its record (header included)
    /// and its path too.
    pub(crate) fn memory(&self, path: &str) -> usize {
        path.len() + self.charged_size()
    }

    /// The child names as the wire lists them: each followed by a NUL.
    pub(crate) fn children_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for child in self.children.iter() {
            out.extend_from_slice(child.as_bytes());
            out.push(0);
        }
        out
    }
}

/// All committed nodes. Iteration order is the path order (a `BTreeMap`), so nothing that
/// reaches the wire or a saved file depends on hashing.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    nodes: BTreeMap<Box<str>, Node>,
    next_generation: u64,
    /// Per owner: how many nodes, and the memory they are charged.
    owners: BTreeMap<u32, Owned>,
}

/// What one domain owns in the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) nodes: u32,
    pub(crate) memory: usize,
}

impl Default for Tree {
    fn default() -> Self {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            next_generation: 1,
            owners: BTreeMap::new(),
        };
        let perms = Perms::owned_by(0, Access::None);
        tree.put("/", Node::new(b"", perms.clone()));
        tree.put("/tool", Node::new(b"", perms.clone()));
        tree.put("/tool/xenstored", Node::new(b"", perms));
        tree.link_child("/", "tool");
        tree.link_child("/tool", "xenstored");
        tree
    }
}

impl Tree {
    /// A tree holding only the root, for loading saved state.
    pub(crate) fn empty_root() -> Tree {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            next_generation: 1,
            owners: BTreeMap::new(),
        };
        tree.put("/", Node::new(b"", Perms::owned_by(0, Access::None)));
        tree
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes owned by `domid`.
    pub(crate) fn entries_of(&self, domid: u32) -> u32 {
        self.owners.get(&domid).map_or(0, |o| o.nodes)
    }

    /// Memory charged to `domid` for the nodes it owns.
    pub(crate) fn memory_of(&self, domid: u32) -> usize {
        self.owners.get(&domid).map_or(0, |o| o.memory)
    }

    /// Stores `node` at `path` with a fresh generation, replacing what was there and keeping
    /// the per-owner counts right. The caller keeps the parent's child list consistent.
    pub(crate) fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation;
        self.next_generation += 1;
        self.count_owner(node.perms.owner(), 1, node.memory(path), 0);
        if let Some(old) = self.nodes.insert(path.into(), node) {
            self.count_owner(old.perms.owner(), -1, 0, old.memory(path));
        }
    }

    /// A number that grows with every change of the tree.
    pub(crate) fn generation(&self) -> u64 {
        self.next_generation
    }

    /// Removes the node at `path` only (not its children).
    pub(crate) fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.next_generation += 1;
        self.count_owner(old.perms.owner(), -1, 0, old.memory(path));
        Some(old)
    }

    /// Adds `name` to the child list of `parent` (bumping its generation) if it is missing.
    pub(crate) fn link_child(&mut self, parent: &str, name: &str) {
        let listed = self
            .nodes
            .get(parent)
            .is_some_and(|n| n.children.contains(name));
        if !listed {
            self.modify(parent, |node| node.children.push(name));
        }
    }

    /// Changes the node at `path` in place with a fresh generation (no copy of its value or
    /// child list, which matters for directories with many children). Returns whether the
    /// node exists.
    pub(crate) fn modify(&mut self, path: &str, change: impl FnOnce(&mut Node)) -> bool {
        let Some(node) = self.nodes.get_mut(path) else {
            return false;
        };
        let old_owner = node.perms.owner();
        let old_memory = node.memory(path);
        change(node);
        node.generation = self.next_generation;
        self.next_generation += 1;
        let new_owner = node.perms.owner();
        let new_memory = node.memory(path);
        if new_owner == old_owner {
            if new_memory != old_memory {
                self.count_owner(new_owner, 0, new_memory, old_memory);
            }
        } else {
            self.count_owner(old_owner, -1, 0, old_memory);
            self.count_owner(new_owner, 1, new_memory, 0);
        }
        true
    }

    /// Moves `domid`'s counts: `nodes` more (or fewer), `added` then `removed` bytes.
    fn count_owner(&mut self, domid: u32, nodes: i32, added: usize, removed: usize) {
        let owned = self.owners.entry(domid).or_default();
        owned.nodes = owned.nodes.saturating_add_signed(nodes);
        owned.memory = (owned.memory + added).saturating_sub(removed);
        if owned.nodes == 0 {
            self.owners.remove(&domid);
        }
    }

    /// Every node in a depth-first walk from the root, children in their list order: the order
    /// in which re-creating them rebuilds the same tree.
    pub(crate) fn walk(&self) -> Vec<(String, &Node)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec!["/".to_owned()];
        while let Some(path) = stack.pop() {
            let Some(node) = self.nodes.get(path.as_str()) else {
                continue;
            };
            for child in node.children.iter().rev() {
                stack.push(path::join(&path, child));
            }
            out.push((path, node));
        }
        out
    }

    /// Checks the structural invariants; returns the first broken one as a sentence.
    pub(crate) fn check(&self) -> Result<(), String> {
        let root = self.nodes.get("/").ok_or("the root node is missing")?;
        if root.perms.entries().is_empty() {
            return Err("the root has no permissions".into());
        }
        let mut counts: BTreeMap<u32, Owned> = BTreeMap::new();
        for (path, node) in &self.nodes {
            let owned = counts.entry(node.perms.owner()).or_default();
            owned.nodes += 1;
            owned.memory += node.memory(path);
            if node.generation == 0 || node.generation >= self.next_generation {
                return Err(format!("{path} has generation {}", node.generation));
            }
            if path::check_node(path, XENSTORE_ABS_PATH_MAX).is_err() {
                return Err(format!("{path} is not a valid node path"));
            }
            if let Some(parent) = path::parent(path) {
                let parent_node = self
                    .nodes
                    .get(parent)
                    .ok_or_else(|| format!("{path} has no parent node"))?;
                let name = path::base_name(path);
                let listed = parent_node.children.iter().filter(|c| *c == name).count();
                if listed != 1 {
                    return Err(format!("{parent} lists {path} {listed} times"));
                }
            }
            for child in node.children.iter() {
                let child_path = path::join(path, child);
                if !self.nodes.contains_key(child_path.as_str()) {
                    return Err(format!("{path} lists missing child {child}"));
                }
            }
        }
        if counts != self.owners {
            return Err(format!(
                "owner counts {:?} differ from a recount {:?}",
                self.owners, counts
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_tree_is_consistent() {
        let tree = Tree::default();
        tree.check().unwrap();
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.entries_of(0), 3);
        let paths: Vec<String> = tree.walk().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/", "/tool", "/tool/xenstored"]);
    }

    #[test]
    fn check_notices_a_dangling_child() {
        let mut tree = Tree::default();
        tree.remove("/tool/xenstored");
        assert!(tree.check().unwrap_err().contains("missing child"));
    }
}
