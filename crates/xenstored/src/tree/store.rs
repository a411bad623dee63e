//! The compact storage under the tree: short byte strings kept inline, longer ones in a slab,
//! and permission lists stored once however many nodes share them.

use std::collections::BTreeMap;

use crate::perms::Perms;

/// Marks a [`Short`] whose bytes live in [`Longs`].
const LONG: u8 = u8::MAX;
/// Bytes a [`Short`] holds inline.
const INLINE: usize = 15;

/// A byte string in 16 bytes: up to 15 bytes inline (most names and values), else the index
/// of its bytes in [`Longs`]. Owned by one node; freed with [`Short::free`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Short {
    len: u8,
    bytes: [u8; INLINE],
}

/// Byte strings too long for a [`Short`], in a slab (freed slots are reused).
#[derive(Debug, Default)]
pub(super) struct Longs {
    items: Vec<Box<[u8]>>,
    free: Vec<u32>,
}

impl Short {
    pub(super) fn new(data: &[u8], longs: &mut Longs) -> Short {
        let mut short = Short::default();
        if data.len() <= INLINE {
            short.len = data.len() as u8;
            short.bytes[..data.len()].copy_from_slice(data);
        } else {
            let at = place(&mut longs.items, &mut longs.free, data.into());
            short.len = LONG;
            short.bytes[..4].copy_from_slice(&at.to_le_bytes());
        }
        short
    }

    fn long_index(&self) -> Option<usize> {
        (self.len == LONG).then(|| {
            let mut at = [0; 4];
            at.copy_from_slice(&self.bytes[..4]);
            u32::from_le_bytes(at) as usize
        })
    }

    pub(super) fn get<'a>(&'a self, longs: &'a Longs) -> &'a [u8] {
        match self.long_index() {
            Some(at) => &longs.items[at],
            None => &self.bytes[..usize::from(self.len)],
        }
    }

    /// Gives the slab slot back, if the bytes were long.
    pub(super) fn free(self, longs: &mut Longs) {
        if let Some(at) = self.long_index() {
            longs.items[at] = Box::default();
            longs.free.push(at as u32);
        }
    }
}

/// Puts `item` in `items`, in a slot listed in `free` if there is one (reusing it), else at
/// the end; returns its index. The arena's slots, its child indexes, the long strings and
/// the permission lists are all kept this way.
pub(super) fn place<T>(items: &mut Vec<T>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(at) => {
            items[at as usize] = item;
            at
        }
        None => {
            items.push(item);
            // More than four billion items would need far more memory than a host has.
            (items.len() - 1) as u32
        }
    }
}

/// Permission lists, each stored once with the number of nodes using it.
#[derive(Debug, Default)]
pub(super) struct PermTable {
    lists: Vec<(Perms, u32)>,
    free: Vec<u32>,
    by_list: BTreeMap<Box<[u64]>, u32>,
}

/// A sortable key of a permission list (letter and domid of each entry).
fn key(perms: &Perms) -> Box<[u64]> {
    perms
        .entries()
        .iter()
        .map(|p| (u64::from(p.access.letter() as u32) << 32) | u64::from(p.domid))
        .collect()
}

impl PermTable {
    /// The id of `perms`, counting one more user.
    pub(super) fn acquire(&mut self, perms: &Perms) -> u32 {
        let key = key(perms);
        if let Some(&id) = self.by_list.get(&key) {
            self.lists[id as usize].1 += 1;
            return id;
        }
        let id = place(&mut self.lists, &mut self.free, (perms.clone(), 1));
        self.by_list.insert(key, id);
        id
    }

    /// One user fewer of list `id`; forgotten when none is left.
    pub(super) fn release(&mut self, id: u32) {
        let entry = &mut self.lists[id as usize];
        entry.1 -= 1;
        if entry.1 == 0 {
            self.by_list.remove(&key(&entry.0));
            self.free.push(id);
        }
    }

    pub(super) fn get(&self, id: u32) -> &Perms {
        &self.lists[id as usize].0
    }

    /// Lists in use and the users of each, for the invariant check.
    pub(super) fn users(&self) -> BTreeMap<u32, u32> {
        self.by_list
            .values()
            .map(|&id| (id, self.lists[id as usize].1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Access;

    #[test]
    fn short_strings_inline_and_long_ones_in_the_slab() {
        let mut longs = Longs::default();
        let short = Short::new(b"fifteen bytes!!", &mut longs);
        assert_eq!(short.get(&longs), b"fifteen bytes!!");
        assert!(longs.items.is_empty());
        let long = Short::new(b"sixteen bytes!!!", &mut longs);
        assert_eq!(long.get(&longs), b"sixteen bytes!!!");
        long.free(&mut longs);
        let again = Short::new(&[7; 300], &mut longs);
        assert_eq!(longs.items.len(), 1, "the freed slot is reused");
        assert_eq!(again.get(&longs), &[7; 300][..]);
        assert_eq!(size_of::<Short>(), 16);
    }

    #[test]
    fn permission_lists_are_shared_and_counted() {
        let mut table = PermTable::default();
        let a = Perms::owned_by(0, Access::None);
        let b = Perms::owned_by(3, Access::Read);
        let first = table.acquire(&a);
        assert_eq!(table.acquire(&a), first);
        let other = table.acquire(&b);
        assert_ne!(other, first);
        table.release(first);
        assert_eq!(table.users(), BTreeMap::from([(first, 1), (other, 1)]));
        table.release(first);
        assert_eq!(table.users(), BTreeMap::from([(other, 1)]));
        assert_eq!(table.acquire(&b), other);
        assert_eq!(table.get(other), &b);
    }
}
