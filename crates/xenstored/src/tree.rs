//! The committed tree: every node by path, the generation counter and per-owner node counts.

use std::collections::BTreeMap;

use xsio_xs_wire::{XENSTORE_ABS_PATH_MAX, path};

use crate::perms::{Access, Perms};

/// One node: its value, its children in creation order, its permissions, and the generation
/// it was last written at (globally unique, so a node deleted and re-created differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) value: Box<[u8]>,
    pub(crate) children: Vec<Box<str>>,
    pub(crate) perms: Perms,
    pub(crate) generation: u64,
}

impl Node {
    pub(crate) fn new(value: &[u8], perms: Perms) -> Node {
        Node {
            value: value.into(),
            children: Vec::new(),
            perms,
            generation: 0,
        }
    }

    /// The size xenstored charges against the node-size quota: value, child names with their
    /// NULs, and 8 bytes per permission entry.
    pub(crate) fn charged_size(&self) -> usize {
        let children: usize = self.children.iter().map(|c| c.len() + 1).sum();
        self.value.len() + children + 8 * self.perms.entries().len()
    }

    /// The child names as the wire lists them: each followed by a NUL.
    pub(crate) fn children_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for child in &self.children {
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
    entries_by_owner: BTreeMap<u32, u32>,
}

impl Default for Tree {
    fn default() -> Self {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            next_generation: 1,
            entries_by_owner: BTreeMap::new(),
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
            entries_by_owner: BTreeMap::new(),
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
        self.entries_by_owner.get(&domid).copied().unwrap_or(0)
    }

    /// Stores `node` at `path` with a fresh generation, replacing what was there and keeping
    /// the per-owner counts right. The caller keeps the parent's child list consistent.
    pub(crate) fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation;
        self.next_generation += 1;
        self.count_owner(node.perms.owner(), 1);
        if let Some(old) = self.nodes.insert(path.into(), node) {
            self.count_owner(old.perms.owner(), -1);
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
        self.count_owner(old.perms.owner(), -1);
        Some(old)
    }

    /// Adds `name` to the child list of `parent` (bumping its generation) if it is missing.
    pub(crate) fn link_child(&mut self, parent: &str, name: &str) {
        let listed = self
            .nodes
            .get(parent)
            .is_some_and(|n| n.children.iter().any(|c| &**c == name));
        if !listed {
            self.modify(parent, |node| node.children.push(name.into()));
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
        change(node);
        node.generation = self.next_generation;
        self.next_generation += 1;
        let new_owner = node.perms.owner();
        if new_owner != old_owner {
            self.count_owner(old_owner, -1);
            self.count_owner(new_owner, 1);
        }
        true
    }

    fn count_owner(&mut self, domid: u32, delta: i32) {
        let count = self.entries_by_owner.entry(domid).or_insert(0);
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            self.entries_by_owner.remove(&domid);
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
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for (path, node) in &self.nodes {
            *counts.entry(node.perms.owner()).or_insert(0) += 1;
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
                let listed = parent_node
                    .children
                    .iter()
                    .filter(|c| &***c == name)
                    .count();
                if listed != 1 {
                    return Err(format!("{parent} lists {path} {listed} times"));
                }
            }
            for child in &node.children {
                let child_path = path::join(path, child);
                if !self.nodes.contains_key(child_path.as_str()) {
                    return Err(format!("{path} lists missing child {child}"));
                }
            }
        }
        if counts != self.entries_by_owner {
            return Err(format!(
                "owner counts {:?} differ from a recount {:?}",
                self.entries_by_owner, counts
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
