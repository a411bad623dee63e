//! The open connections, in a slab: a [`ConnId`] is a slot and the generation of that slot,
//! so finding a connection costs an index (every request looks its connection up many
//! times), and an id outlives its connection without ever naming the next one there.

use super::ConnId;
use super::conn::Conn;

#[derive(Debug, Default)]
pub(super) struct Conns {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
}

impl ConnId {
    fn new(slot: u32, generation: u32) -> ConnId {
        ConnId((u64::from(generation) << 32) | u64::from(slot))
    }

    /// The slot: connections are visited in slot order.
    pub(super) fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl Conns {
    pub(super) fn insert(&mut self, conn: Conn) -> ConnId {
        match self.free.pop() {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                entry.0 = entry.0.wrapping_add(1);
                entry.1 = Some(conn);
                ConnId::new(slot, entry.0)
            }
            None => {
                self.slots.push((0, Some(conn)));
                // Four billion open connections would need more descriptors than exist.
                ConnId::new((self.slots.len() - 1) as u32, 0)
            }
        }
    }

    pub(super) fn get(&self, id: &ConnId) -> Option<&Conn> {
        match self.slots.get(id.slot()) {
            Some((generation, conn)) if *generation == id.generation() => conn.as_ref(),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        match self.slots.get_mut(id.slot()) {
            Some((generation, conn)) if *generation == id.generation() => conn.as_mut(),
            _ => None,
        }
    }

    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<Conn> {
        let slot = id.slot();
        let conn = match self.slots.get_mut(slot) {
            Some((generation, conn)) if *generation == id.generation() => conn.take()?,
            _ => return None,
        };
        self.free.push(slot as u32);
        Some(conn)
    }

    /// The open connections, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, (generation, conn))| {
                Some((ConnId::new(slot as u32, *generation), conn.as_ref()?))
            })
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.slots.iter().filter_map(|(_, conn)| conn.as_ref())
    }
}

impl std::ops::Index<&ConnId> for Conns {
    type Output = Conn;

    /// The connection `id`; only for ids known to be open (a caller's own connection).
    fn index(&self, id: &ConnId) -> &Conn {
        self.get(id).expect("an open connection")
    }
}
