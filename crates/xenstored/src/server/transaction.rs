//! TRANSACTION_START and TRANSACTION_END: ids per connection, the per-domain quotas, and the
//! commit, whose changes fire watches only once it succeeded.

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
            return Ok(Reply::TransactionEnd);
        }
        if !privileged && tx.own_entry_delta > 0 {
            let owned = i64::from(self.tree.entries_of(domid)) + tx.own_entry_delta;
            if owned > i64::from(self.config.quotas.nodes_per_domain) {
                return Err(ErrorKind::Enospc);
            }
        }
        let changes = tx.commit(&mut self.tree)?;
        for change in &changes {
            self.fire(change, &changes);
        }
        Ok(Reply::TransactionEnd)
    }
}
