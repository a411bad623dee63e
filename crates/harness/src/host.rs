//! A host that answers host operations from fixed settings, for worlds without a
//! hypervisor or processes (the demo, the simulator): put it in front of a xenstore store,
//! `(FixedHost, XenstoredStore)`.

use xsio_ops::{DomainState, HostOp, Op, OpError, OpErrorKind, ProcessExit, Reply};

use crate::harness::{Actor, Harness, HarnessError, Store};

/// Answers every [`HostOp`] at once: the guest's state and the device model's liveness from
/// its fields, a program as if it ran and exited 0 (`Kill`: done).
///
/// ```
/// use std::time::Instant;
/// use xsio_harness::{FixedHost, Harness, Record, XenstoredStore};
/// use xsio_ops::{DomainState, HostOp, Op, Reply};
/// use xsio_xenbus::StateWaiter;
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut stores = (FixedHost::default(), XenstoredStore::new(now));
/// let mut world: Harness<StateWaiter> = Harness::new(now);
/// let dom0 = stores.1.connect_dom0(&mut world);
/// world.submit(dom0, Op::Host(HostOp::DomainInfo { domid: 1 }));
/// world.drive(&mut stores)?;
/// let answered = world.take_log().into_iter().any(|r| matches!(r,
///     Record::Reply { result: Ok(Reply::Domain(DomainState::Running)), .. }));
/// assert!(answered);
/// # Ok::<(), xsio_harness::HarnessError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FixedHost {
    /// Every guest's state.
    pub guest: DomainState,
    /// Whether device models are alive; `None`: cannot tell (answered `Unsupported`).
    pub device_model_alive: Option<bool>,
}

impl Default for FixedHost {
    /// Running guests with live device models.
    fn default() -> FixedHost {
        FixedHost {
            guest: DomainState::Running,
            device_model_alive: Some(true),
        }
    }
}

impl<A: Actor> Store<A> for FixedHost {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        for conn in harness.requesting_conns() {
            while let Some((owner, request)) =
                harness.take_request_where(conn, |op| matches!(op, Op::Host(_)))
            {
                moved = true;
                let Op::Host(op) = request.op else {
                    continue;
                };
                let answer = match op {
                    HostOp::DomainInfo { .. } => Ok(Reply::Domain(self.guest)),
                    HostOp::DeviceModelAlive { .. } => match self.device_model_alive {
                        Some(alive) => Ok(Reply::DeviceModel { alive }),
                        None => Err(OpError::new(OpErrorKind::Unsupported, "cannot tell")),
                    },
                    HostOp::Spawn { .. } => Ok(Reply::Exited(ProcessExit::Exited(0))),
                    HostOp::Kill { .. } => Ok(Reply::Done),
                };
                harness.reply(owner, request.id, answer)?;
            }
        }
        Ok(moved)
    }
}
