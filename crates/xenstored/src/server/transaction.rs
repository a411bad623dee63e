//! TRANSACTION_START and TRANSACTION_END: ids per connection, the per-domain quotas, and the
//! commit, whose changes fire watches only once it succeeded.

use std::collections::BTreeMap;

use xsio_xs_wire::{ErrorKind, Reply};

use super::{ConnId, Server};
use crate::view::TxState;

impl Server {
    pub(super) fn transaction_start(
        &mut self,
        conn_id: ConnId,
        tx_id: u32,
    ) -> Result<Reply, ErrorKind> {
        let conn = &self.conns[&conn_id];
        if tx_id != 0 {
            return Err(if conn.txs.contains_key(&tx_id) {
                ErrorKind::Ebusy
            } else {
                ErrorKind::Enoent
            });
        }
        self.check_transaction_quota(conn)?;
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let mut id = conn.next_tx_id;
        while id == 0 || conn.txs.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        conn.next_tx_id = id.wrapping_add(1);
        conn.txs.insert(id, TxState::default());
        Ok(Reply::TransactionStart(id))
    }

    pub(super) fn transaction_end(
        &mut self,
        conn_id: ConnId,
        tx_id: u32,
        commit: bool,
    ) -> Result<Reply, ErrorKind> {
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let privileged = conn.privileged;
        let domid = conn.domid;
        let tx = conn.txs.remove(&tx_id).ok_or(ErrorKind::Enoent)?;
        if !commit {
            tx.release(&mut self.tree);
            return Ok(Reply::TransactionEnd);
        }
        if !privileged && tx.own_entry_delta > 0 {
            let owned = i64::from(self.tree.entries_of(domid)) + tx.own_entry_delta;
            if owned > i64::from(self.config.quotas.nodes_per_domain) {
                tx.release(&mut self.tree);
                return Err(ErrorKind::Enospc);
            }
        }
        let changes = tx.commit(&mut self.tree)?;
        for change in &changes {
            self.fire(change, &changes);
        }
        Ok(Reply::TransactionEnd)
    }

    /// Ends every open transaction of `conn_id` without committing.
    pub(super) fn end_transactions(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        for tx in std::mem::take(&mut conn.txs).into_values() {
            tx.release(&mut self.tree);
        }
    }

    /// Whether the tree pins exactly the committed nodes the open transactions' copies
    /// read from.
    pub(super) fn check_pins(&self) -> Result<(), String> {
        let mut held: BTreeMap<u64, u32> = BTreeMap::new();
        let bases = self.conns.values().flat_map(|c| c.txs.values());
        for base in bases.flat_map(|tx| tx.pinned()) {
            *held.entry(base.generation).or_default() += 1;
        }
        if &held != self.tree.pins() {
            return Err(format!(
                "the tree pins {:?}, the open transactions hold {held:?}",
                self.tree.pins()
            ));
        }
        Ok(())
    }
}
