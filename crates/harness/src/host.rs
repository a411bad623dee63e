//! A host that answers host operations from fixed settings, for worlds without a
//! hypervisor or processes (the machines' tests and examples): put it in front of a xenstore store,
//! `(FixedHost, XenstoredStore)`.

use std::collections::{BTreeMap, VecDeque};

use xsio_core::OpId;
use xsio_ops::{DomainState, HostOp, Op, OpError, OpErrorKind, ProcessExit, Reply};

use crate::harness::{Actor, Harness, HarnessError, Owner, Store};

/// Answers every [`HostOp`]: the guest's state and the device model's liveness from its
/// fields, a program as if it ran and exited 0 (`Kill`: done), at once; the per-domain lock
/// in process ([`HostOp::Lock`] is answered when the lock is free, waiters in the order they
/// asked; [`HostOp::Unlock`] releases it or withdraws a waiter).
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
    /// The per-domain locks: who holds each, who waits.
    locks: DomainLocks,
}

/// The per-domain locks on device changes, in process: a [`HostOp::Lock`] is answered
/// when the domain's lock is free, waiters in the order they asked; a [`HostOp::Unlock`]
/// releases it (handing it to the next waiter) or withdraws a waiter, whose `Lock` is then
/// answered [`OpErrorKind::Cancelled`]. The one implementation of every host of the
/// harness ([`FixedHost`], the simulator's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DomainLocks {
    /// Domain → the `Lock` request holding it.
    held: BTreeMap<u32, (Owner, OpId)>,
    /// `Lock` requests waiting, oldest first.
    waiting: VecDeque<(u32, Owner, OpId)>,
}

impl DomainLocks {
    /// Who holds the lock of domain `domid` (the owner and the id of its `Lock` request).
    pub fn holder(&self, domid: u32) -> Option<(Owner, OpId)> {
        self.held.get(&domid).copied()
    }

    /// How many `Lock` requests wait.
    pub fn waiters(&self) -> usize {
        self.waiting.len()
    }

    /// Takes `owner`'s request `id` for the lock of `domid`: answered now when free, else
    /// queued.
    pub fn lock<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        domid: u32,
        owner: Owner,
        id: OpId,
    ) -> Result<(), HarnessError> {
        if self.held.contains_key(&domid) {
            self.waiting.push_back((domid, owner, id));
            return Ok(());
        }
        self.held.insert(domid, (owner, id));
        harness.reply(owner, id, Ok(Reply::Done))
    }

    /// Releases the lock `lock` of `owner` (or withdraws it from the queue), handing it to
    /// the next waiter for that domain. The `Unlock` request itself is the caller's to
    /// answer.
    pub fn unlock<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        owner: Owner,
        lock: OpId,
    ) -> Result<(), HarnessError> {
        if let Some(at) = self
            .waiting
            .iter()
            .position(|&(_, o, id)| o == owner && id == lock)
        {
            self.waiting.remove(at);
            let cancelled = OpError::new(OpErrorKind::Cancelled, "unlocked while waiting");
            return harness.reply(owner, lock, Err(cancelled));
        }
        let Some(domid) = self
            .held
            .iter()
            .find(|(_, holder)| **holder == (owner, lock))
            .map(|(domid, _)| *domid)
        else {
            return Ok(());
        };
        self.held.remove(&domid);
        if let Some(at) = self.waiting.iter().position(|w| w.0 == domid) {
            if let Some((domid, owner, id)) = self.waiting.remove(at) {
                self.lock(harness, domid, owner, id)?;
            }
        }
        Ok(())
    }
}

impl FixedHost {
    /// Who holds the lock of domain `domid` (the owner and the id of its `Lock` request).
    pub fn lock_holder(&self, domid: u32) -> Option<(Owner, OpId)> {
        self.locks.holder(domid)
    }

    /// How many `Lock` requests wait.
    pub fn lock_waiters(&self) -> usize {
        self.locks.waiters()
    }
}

impl Default for FixedHost {
    /// Running guests with live device models.
    fn default() -> FixedHost {
        FixedHost {
            guest: DomainState::Running,
            device_model_alive: Some(true),
            locks: DomainLocks::default(),
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
                    HostOp::Lock { domid } => {
                        self.locks.lock(harness, domid, owner, request.id)?;
                        continue;
                    }
                    HostOp::Unlock { lock } => {
                        self.locks.unlock(harness, owner, lock)?;
                        Ok(Reply::Done)
                    }
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
