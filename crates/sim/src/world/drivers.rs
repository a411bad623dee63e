//! Driver domains: domains other than dom0 that run backends (blkback, netback) for the
//! guests' devices. Alive, such a domain removes the backend directory of a device it
//! closed with `online`=0 (its own toolstack does, `xl devd`; the guest's toolstack waits
//! for that); dead (the fault "backend domain death"), its backends stop answering and
//! nothing of it cleans up: the toolstack's removals time out, go on with force, and
//! prune what the dead domain left.

use xsio_ops::{DomainState, Op, Txn, TxnOp, XsOp};

use super::{Sim, SimActor, ToolOp};
use crate::trace::Lane;

impl Sim {
    /// Driver domain `domid` dies: its backends stop where they are.
    pub(super) fn driver_dies(&mut self, domid: u32) {
        let Some(driver) = self.drivers.get_mut(&domid) else {
            return;
        };
        if !driver.alive {
            return;
        }
        driver.alive = false;
        self.store.0.domains.insert(domid, DomainState::Dead);
        self.say(
            Lane::Backend,
            format!("driver d{domid}"),
            "(fault) the driver domain dies: its backends stop answering".into(),
        );
        for i in 0..self.devices.len() {
            if self.devices[i].areas.backend_domid != domid {
                continue;
            }
            if let Some(id) = self.devices[i].backend
                && let SimActor::Backend(b) = self.harness.actor_mut(id)
            {
                b.kill();
            }
        }
    }

    /// The driver domain of device `i` closed its backend with `online`=0: it removes the
    /// backend directory (once its hotplug script ran), as the guest's toolstack expects.
    pub(super) fn driver_removes_backend(&mut self, i: usize) {
        let domid = self.devices[i].areas.backend_domid;
        let Some(driver) = self.drivers.get(&domid).filter(|d| d.alive) else {
            return;
        };
        let conn = driver.conn;
        let path = self.devices[i].areas.backend_path();
        let name = self.device_name(i);
        self.say(
            Lane::Backend,
            format!("driver d{domid}"),
            format!("{name} closed: its hotplug script runs, its backend directory goes"),
        );
        let txn = Txn {
            only_if_exists: Some(path.clone()),
            ops: vec![TxnOp::Rm { path }],
        };
        let id = self.harness.submit(conn, Op::Xs(XsOp::Transaction(txn)));
        self.tool_ops.insert(id, ToolOp::DriverRemove { domid });
    }
}
