//! The committed tree, compact: about 76 bytes per node.
//!
//! Nodes live in one arena of fixed-size slots (`Slot`, 72 bytes) linked to their parent,
//! first and last child and siblings, so the child list keeps creation order at no cost of
//! its own. A name or value of up to 15 bytes is stored inline, a longer one in a slab; a
//! permission list is stored once for all the nodes that share it. A directory with
//! `INDEX_FROM` children or more gets a sorted index of them (4 bytes a child), so looking a
//! name up is a binary search there and a short scan elsewhere: no hashing, so no order
//! that depends on a seed and no collisions a guest could aim at. The generation counter
//! and the per-owner counts (nodes, memory) are kept as before.

mod node;
mod snapshots;
mod store;

use std::collections::BTreeMap;

use xsio_xs_wire::{XENSTORE_ABS_PATH_MAX, path};

use crate::perms::{Access, Perms};

use node::BaseNames;
pub(crate) use node::{Children, NODE_RECORD, Node, NodeRef};
pub(crate) use snapshots::Base;
use snapshots::Snapshots;
use store::{Longs, PermTable, Short, place};

/// A node's place in the arena.
pub(crate) type NodeId = u32;
/// No node.
pub(crate) const NONE: NodeId = u32::MAX;
const ROOT: NodeId = 0;
/// A directory with this many children gets a sorted index of them.
const INDEX_FROM: usize = 8;

/// One node in the arena. A free slot has generation 0.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) generation: u64,
    pub(crate) parent: NodeId,
    pub(crate) first_child: NodeId,
    pub(crate) last_child: NodeId,
    pub(crate) next: NodeId,
    pub(crate) prev: NodeId,
    perms: u32,
    /// The child names with their NULs, in bytes (the node-size quota counts them).
    pub(crate) children_bytes: u32,
    /// The node's sorted child index in `Tree::dirs`, or `NONE`.
    dir: u32,
    name: Short,
    value: Short,
}

/// What one domain owns in the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) nodes: u32,
    pub(crate) memory: usize,
}

/// All committed nodes.
#[derive(Debug)]
pub(crate) struct Tree {
    slots: Vec<Slot>,
    free: Vec<NodeId>,
    /// Sorted child indexes of the large directories (by name).
    dirs: Vec<Vec<NodeId>>,
    free_dirs: Vec<u32>,
    longs: Longs,
    perms: PermTable,
    next_generation: u64,
    /// Per owner: how many nodes, and the memory they are charged.
    owners: BTreeMap<u32, Owned>,
    len: usize,
    /// The generations open transactions took their copies from (see `snapshots`).
    snapshots: Snapshots,
}

impl Default for Tree {
    /// The initial tree of xenstored: `/`, `/tool`, `/tool/xenstored`, owned by dom0.
    fn default() -> Self {
        let mut tree = Tree::empty_root();
        let perms = Perms::owned_by(0, Access::None);
        tree.create("/tool", b"", &perms);
        tree.create("/tool/xenstored", b"", &perms);
        tree
    }
}

impl Tree {
    /// A tree holding only the root, for loading saved state.
    pub(crate) fn empty_root() -> Tree {
        let mut tree = Tree {
            slots: Vec::new(),
            free: Vec::new(),
            dirs: Vec::new(),
            free_dirs: Vec::new(),
            longs: Longs::default(),
            perms: PermTable::default(),
            next_generation: 1,
            owners: BTreeMap::new(),
            len: 0,
            snapshots: Snapshots::default(),
        };
        let root = tree.alloc(NONE, "", b"", &Perms::owned_by(0, Access::None), 1);
        debug_assert_eq!(root, ROOT);
        tree
    }

    pub(crate) fn slot(&self, id: NodeId) -> &Slot {
        &self.slots[id as usize]
    }

    pub(crate) fn name_of(&self, id: NodeId) -> &str {
        // Names come from checked paths: ASCII.
        std::str::from_utf8(self.slot(id).name.get(&self.longs)).unwrap_or_default()
    }

    pub(crate) fn value_of(&self, id: NodeId) -> &[u8] {
        self.slot(id).value.get(&self.longs)
    }

    pub(crate) fn perms_of(&self, id: NodeId) -> &Perms {
        self.perms.get(self.slot(id).perms)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A number that grows with every change of the tree.
    pub(crate) fn generation(&self) -> u64 {
        self.next_generation
    }

    /// Nodes owned by `domid`.
    pub(crate) fn entries_of(&self, domid: u32) -> u32 {
        self.owners.get(&domid).map_or(0, |o| o.nodes)
    }

    /// Memory charged to `domid` for the nodes it owns.
    pub(crate) fn memory_of(&self, domid: u32) -> usize {
        self.owners.get(&domid).map_or(0, |o| o.memory)
    }

    pub(crate) fn get(&self, path: &str) -> Option<NodeRef<'_>> {
        self.lookup(path).map(|id| NodeRef::Tree(self, id))
    }

    /// The node at `path`.
    pub(crate) fn lookup(&self, path: &str) -> Option<NodeId> {
        let rest = path.strip_prefix('/')?;
        if rest.is_empty() {
            return Some(ROOT);
        }
        rest.split('/')
            .try_fold(ROOT, |dir, name| self.child(dir, name.as_bytes()))
    }

    /// The child of `dir` called `name`.
    fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let slot = self.slot(dir);
        if slot.dir != NONE {
            let at = self.index_search(slot.dir, name).ok()?;
            return Some(self.dirs[slot.dir as usize][at]);
        }
        let mut next = slot.first_child;
        while next != NONE {
            let child = self.slot(next);
            if child.name.get(&self.longs) == name {
                return Some(next);
            }
            next = child.next;
        }
        None
    }

    /// A transaction's copy of node `id`: its value and permissions, and its child names
    /// through a [`Base`] the tree keeps for the copy until [`Tree::unpin`].
    pub(crate) fn detach(&mut self, id: NodeId) -> Node {
        let base = Base {
            id,
            generation: self.slot(id).generation,
        };
        self.snapshots.pin(base.generation);
        Node {
            value: self.value_of(id).into(),
            children: Children::over(base),
            perms: self.perms_of(id).clone(),
            generation: base.generation,
        }
    }

    /// The copy taken from `base` is gone.
    pub(crate) fn unpin(&mut self, base: Base) {
        self.snapshots.unpin(base.generation);
    }

    /// Before node `id` changes or goes: keeps its child names if a copy reads them.
    fn retire(&mut self, id: NodeId) {
        let generation = self.slot(id).generation;
        if self.snapshots.wants(generation) {
            let mut names = String::with_capacity(self.slot(id).children_bytes as usize);
            for child in self.children_of(id) {
                names.push_str(self.name_of(child));
                names.push('\0');
            }
            self.snapshots.keep(generation, names);
        }
    }

    /// Whether the tree still holds node `base.id` at `base.generation`.
    fn holds(&self, base: Base) -> bool {
        self.slots
            .get(base.id as usize)
            .is_some_and(|s| s.generation == base.generation)
    }

    /// The child names of `base`, in order.
    pub(crate) fn base_names(&self, base: Base) -> BaseNames<'_> {
        if self.holds(base) {
            return BaseNames::Tree {
                tree: self,
                next: self.slot(base.id).first_child,
            };
        }
        let kept = self.snapshots.kept(base.generation).unwrap_or_default();
        BaseNames::Listed(kept.split_terminator('\0'))
    }

    pub(crate) fn base_contains(&self, base: Base, name: &str) -> bool {
        if self.holds(base) {
            return self.child(base.id, name.as_bytes()).is_some();
        }
        let kept = self.snapshots.kept(base.generation).unwrap_or_default();
        kept.split_terminator('\0').any(|c| c == name)
    }

    /// The child names of `base` with their NULs, in bytes.
    pub(crate) fn base_bytes(&self, base: Base) -> usize {
        if self.holds(base) {
            return self.slot(base.id).children_bytes as usize;
        }
        self.snapshots.kept(base.generation).map_or(0, str::len)
    }

    /// How many open copies read each generation's child names.
    pub(crate) fn pins(&self) -> &BTreeMap<u64, u32> {
        self.snapshots.pins()
    }

    /// The memory charged to the owner of node `id`, whose path is `path_len` bytes long:
    /// its record, its path, what it stores.
    fn memory(&self, id: NodeId, path_len: usize) -> usize {
        let slot = self.slot(id);
        NODE_RECORD
            + path_len
            + slot.value.get(&self.longs).len()
            + slot.children_bytes as usize
            + 8 * self.perms.get(slot.perms).entries().len()
    }

    fn owner(&self, id: NodeId) -> u32 {
        self.perms_of(id).owner()
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

    fn fresh_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// Puts a new node in a slot and links it under `parent` (none for the root).
    fn alloc(
        &mut self,
        parent: NodeId,
        name: &str,
        value: &[u8],
        perms: &Perms,
        path_len: usize,
    ) -> NodeId {
        let slot = Slot {
            generation: self.fresh_generation(),
            parent,
            first_child: NONE,
            last_child: NONE,
            next: NONE,
            prev: NONE,
            perms: self.perms.acquire(perms),
            children_bytes: 0,
            dir: NONE,
            name: Short::new(name.as_bytes(), &mut self.longs),
            value: Short::new(value, &mut self.longs),
        };
        let id = place(&mut self.slots, &mut self.free, slot);
        self.len += 1;
        if parent != NONE {
            self.link(parent, id);
        }
        let memory = self.memory(id, path_len);
        self.count_owner(perms.owner(), 1, memory, 0);
        id
    }

    /// Appends `child` to the child list of `dir` (indexing large directories), charging
    /// the name to the directory's owner.
    fn link(&mut self, dir: NodeId, child: NodeId) {
        let last = self.slot(dir).last_child;
        {
            let slot = &mut self.slots[child as usize];
            slot.parent = dir;
            slot.prev = last;
            slot.next = NONE;
        }
        if last == NONE {
            self.slots[dir as usize].first_child = child;
        } else {
            self.slots[last as usize].next = child;
        }
        let name_bytes = self.slot(child).name.get(&self.longs).len() + 1;
        let slot = &mut self.slots[dir as usize];
        slot.last_child = child;
        slot.children_bytes += name_bytes as u32;
        let owner = self.owner(dir);
        self.count_owner(owner, 0, name_bytes, 0);
        if self.slot(dir).dir != NONE {
            self.index_insert(dir, child);
        } else if self.children_of(dir).nth(INDEX_FROM - 1).is_some() {
            self.build_index(dir);
        }
    }

    /// Takes `child` out of its parent's child list.
    fn unlink(&mut self, child: NodeId) {
        let Slot {
            parent, prev, next, ..
        } = *self.slot(child);
        if prev == NONE {
            self.slots[parent as usize].first_child = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NONE {
            self.slots[parent as usize].last_child = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let name_bytes = self.slot(child).name.get(&self.longs).len() + 1;
        self.slots[parent as usize].children_bytes -= name_bytes as u32;
        let owner = self.owner(parent);
        self.count_owner(owner, 0, 0, name_bytes);
        let dir = self.slot(parent).dir;
        if dir != NONE {
            let name = self.slot(child).name;
            if let Ok(at) = self.index_search(dir, name.get(&self.longs)) {
                self.dirs[dir as usize].remove(at);
            }
            if self.dirs[dir as usize].is_empty() {
                self.dirs[dir as usize] = Vec::new();
                self.free_dirs.push(dir);
                self.slots[parent as usize].dir = NONE;
            }
        }
    }

    fn children_of(&self, dir: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut next = self.slot(dir).first_child;
        std::iter::from_fn(move || {
            (next != NONE).then(|| {
                let id = next;
                next = self.slot(id).next;
                id
            })
        })
    }

    fn build_index(&mut self, dir: NodeId) {
        let mut index: Vec<NodeId> = self.children_of(dir).collect();
        index.sort_by(|a, b| {
            self.slot(*a)
                .name
                .get(&self.longs)
                .cmp(self.slot(*b).name.get(&self.longs))
        });
        let at = place(&mut self.dirs, &mut self.free_dirs, index);
        self.slots[dir as usize].dir = at;
    }

    fn index_insert(&mut self, dir: NodeId, child: NodeId) {
        let at = self.slot(dir).dir;
        let name = self.slot(child).name;
        let position = self
            .index_search(at, name.get(&self.longs))
            .unwrap_or_else(|position| position);
        self.dirs[at as usize].insert(position, child);
    }

    /// Where `name` is (or would go) in the sorted child index `at`.
    fn index_search(&self, at: u32, name: &[u8]) -> Result<usize, usize> {
        self.dirs[at as usize].binary_search_by(|c| self.slot(*c).name.get(&self.longs).cmp(name))
    }

    /// Creates the node at `path` under its existing parent, with a fresh generation (the
    /// parent's child list changes, so the parent gets one too). `false` if the parent is
    /// missing or the node exists.
    pub(crate) fn create(&mut self, path: &str, value: &[u8], perms: &Perms) -> bool {
        let Some(parent) = path::parent(path).and_then(|p| self.lookup(p)) else {
            return false;
        };
        let name = path::base_name(path);
        if self.child(parent, name.as_bytes()).is_some() {
            return false;
        }
        self.retire(parent);
        self.alloc(parent, name, value, perms, path.len());
        self.slots[parent as usize].generation = self.fresh_generation();
        true
    }

    /// Replaces the value of the node at `path` (fresh generation). `false` if missing.
    pub(crate) fn set_value(&mut self, path: &str, value: &[u8]) -> bool {
        let Some(id) = self.lookup(path) else {
            return false;
        };
        self.retire(id);
        let old = self.slot(id).value;
        let old_len = old.get(&self.longs).len();
        old.free(&mut self.longs);
        self.slots[id as usize].value = Short::new(value, &mut self.longs);
        self.slots[id as usize].generation = self.fresh_generation();
        let owner = self.owner(id);
        self.count_owner(owner, 0, value.len(), old_len);
        true
    }

    /// Replaces the permissions of the node at `path` (fresh generation), moving its charge
    /// to its new owner. `false` if missing.
    pub(crate) fn set_perms(&mut self, path: &str, perms: &Perms) -> bool {
        let Some(id) = self.lookup(path) else {
            return false;
        };
        self.retire(id);
        let (old_owner, old_memory) = (self.owner(id), self.memory(id, path.len()));
        let new = self.perms.acquire(perms);
        self.perms.release(self.slot(id).perms);
        self.slots[id as usize].perms = new;
        self.slots[id as usize].generation = self.fresh_generation();
        let new_memory = self.memory(id, path.len());
        self.count_owner(old_owner, -1, 0, old_memory);
        self.count_owner(perms.owner(), 1, new_memory, 0);
        true
    }

    /// Removes the node at `path` and everything below it; its parent gets a fresh
    /// generation. `false` if missing (or the root, which stays).
    pub(crate) fn remove(&mut self, path: &str) -> bool {
        let Some(top) = self.lookup(path).filter(|id| *id != ROOT) else {
            return false;
        };
        // The subtree with the path length of each node, parents first.
        let mut doomed = vec![(top, path.len())];
        let mut at = 0;
        while at < doomed.len() {
            let (id, len) = doomed[at];
            for child in self.children_of(id) {
                doomed.push((
                    child,
                    len + 1 + self.slot(child).name.get(&self.longs).len(),
                ));
            }
            at += 1;
        }
        let parent = self.slot(top).parent;
        self.retire(parent);
        for (id, _) in &doomed {
            self.retire(*id);
        }
        self.unlink(top);
        for (id, path_len) in doomed.into_iter().rev() {
            let memory = self.memory(id, path_len);
            let owner = self.owner(id);
            self.count_owner(owner, -1, 0, memory);
            let slot = self.slots[id as usize];
            self.perms.release(slot.perms);
            slot.name.free(&mut self.longs);
            slot.value.free(&mut self.longs);
            if slot.dir != NONE {
                self.dirs[slot.dir as usize] = Vec::new();
                self.free_dirs.push(slot.dir);
            }
            self.slots[id as usize].generation = 0;
            self.free.push(id);
            self.len -= 1;
        }
        self.slots[parent as usize].generation = self.fresh_generation();
        true
    }

    /// Applies a committed transaction: `entries` (path order) are the nodes it removed
    /// (`None`) or wrote. A written node's children end in the transaction's order: those
    /// it kept where they were, then those it added (created, or removed and created again)
    /// in the order it added them.
    pub(crate) fn apply(&mut self, entries: &[(String, Option<Node>)]) {
        for (path, node) in entries {
            if node.is_none() {
                self.remove(path);
            }
        }
        // Parents sort before their children, so every parent exists when its child comes.
        for (path, node) in entries {
            let Some(node) = node else { continue };
            if self.lookup(path).is_some() {
                self.set_value(path, &node.value);
                self.set_perms(path, &node.perms);
            } else {
                self.create(path, &node.value, &node.perms);
            }
        }
        for (path, node) in entries {
            let Some(node) = node else { continue };
            let mut added = node.children.added().peekable();
            if added.peek().is_none() {
                continue;
            }
            let Some(dir) = self.lookup(path) else {
                continue;
            };
            for name in added {
                if let Some(child) = self.child(dir, name.as_bytes()) {
                    self.move_to_end(dir, child);
                }
            }
        }
    }

    /// Moves `child` to the end of the child list of `dir` (its parent).
    fn move_to_end(&mut self, dir: NodeId, child: NodeId) {
        let Slot { prev, next, .. } = *self.slot(child);
        if next == NONE {
            return;
        }
        if prev == NONE {
            self.slots[dir as usize].first_child = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        self.slots[next as usize].prev = prev;
        let last = self.slot(dir).last_child;
        self.slots[last as usize].next = child;
        let slot = &mut self.slots[child as usize];
        slot.prev = last;
        slot.next = NONE;
        self.slots[dir as usize].last_child = child;
    }

    /// Every node in a depth-first walk from the root, children in their list order: the
    /// order in which re-creating them rebuilds the same tree.
    pub(crate) fn walk(&self) -> Vec<(String, NodeRef<'_>)> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![(ROOT, "/".to_owned())];
        while let Some((id, node_path)) = stack.pop() {
            let children: Vec<NodeId> = self.children_of(id).collect();
            for child in children.into_iter().rev() {
                stack.push((child, path::join(&node_path, self.name_of(child))));
            }
            out.push((node_path, NodeRef::Tree(self, id)));
        }
        out
    }

    /// Checks the structural invariants; returns the first broken one as a sentence.
    pub(crate) fn check(&self) -> Result<(), String> {
        let root = self.slots.first().ok_or("the root node is missing")?;
        if root.generation == 0 || root.parent != NONE {
            return Err("the root is not a live parentless node".into());
        }
        let mut owners: BTreeMap<u32, Owned> = BTreeMap::new();
        let mut perm_users: BTreeMap<u32, u32> = BTreeMap::new();
        let mut generations = std::collections::BTreeSet::new();
        let mut seen = 0;
        let mut stack = vec![(ROOT, "/".to_owned())];
        while let Some((id, node_path)) = stack.pop() {
            seen += 1;
            if seen > self.len {
                return Err("the child lists reach more nodes than the tree holds".into());
            }
            let slot = self.slot(id);
            if slot.generation == 0 || slot.generation >= self.next_generation {
                return Err(format!("{node_path} has generation {}", slot.generation));
            }
            if path::check_node(&node_path, XENSTORE_ABS_PATH_MAX).is_err() {
                return Err(format!("{node_path} is not a valid node path"));
            }
            generations.insert(slot.generation);
            let owned = owners.entry(self.owner(id)).or_default();
            owned.nodes += 1;
            owned.memory += self.memory(id, node_path.len());
            *perm_users.entry(slot.perms).or_default() += 1;
            let mut bytes = 0;
            let mut prev = NONE;
            let mut names = Vec::new();
            for (count, child) in self.children_of(id).enumerate() {
                if count >= self.len {
                    return Err(format!("{node_path} has a child list that loops"));
                }
                let child_slot = self.slot(child);
                if child_slot.parent != id || child_slot.prev != prev {
                    return Err(format!("{node_path} has a broken child list"));
                }
                prev = child;
                let name = self.name_of(child);
                if names.contains(&name) {
                    return Err(format!("{node_path} lists {name} twice"));
                }
                names.push(name);
                bytes += name.len() + 1;
                stack.push((child, path::join(&node_path, name)));
            }
            if slot.last_child != prev {
                return Err(format!("{node_path} has a wrong last child"));
            }
            if bytes != slot.children_bytes as usize {
                return Err(format!(
                    "{node_path} counts {} child bytes, has {bytes}",
                    slot.children_bytes
                ));
            }
            if slot.dir != NONE {
                let index = &self.dirs[slot.dir as usize];
                let indexed: Vec<&str> = index.iter().map(|c| self.name_of(*c)).collect();
                let mut sorted = names.clone();
                sorted.sort_unstable();
                if indexed != sorted {
                    return Err(format!("{node_path} has a stale child index"));
                }
            }
        }
        if seen != self.len {
            return Err(format!(
                "{} nodes are not reachable from the root",
                self.len - seen
            ));
        }
        if owners != self.owners {
            return Err(format!(
                "owner counts {:?} differ from a recount {owners:?}",
                self.owners
            ));
        }
        if perm_users != self.perms.users() {
            return Err("permission list users differ from a recount".into());
        }
        // A transaction's copy reads its child names from the tree, or from the list kept
        // once the tree moved past the generation it was taken at.
        if let Some(lost) = self
            .pins()
            .keys()
            .find(|g| !generations.contains(*g) && !self.snapshots.is_kept(**g))
        {
            return Err(format!(
                "generation {lost} is pinned, neither held nor kept"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
