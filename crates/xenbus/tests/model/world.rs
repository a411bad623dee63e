//! The world the model checker explores: devices (backend, frontend, toolstack) as machines
//! of one `xsio_harness::Harness`, the tiny xenstore `MemStore`, and every action that can
//! happen next.
//!
//! The checker's choices are the harness's model-checker moves: `Execute(c)` is the store
//! executing the oldest request of connection `c` (`MemStore::execute_next`, which takes it
//! from the harness, answers it and queues the watch events it fired), `Deliver(c)` is
//! `Harness::deliver_from(c)`, the frontend's timer is `Harness::fire_timer` and a duplicate
//! watch event is `Harness::watch_event`. What the machines did is read from the harness's
//! log after every action: the transitions they reported, the requests they issued, the
//! answers to the toolstack's own transactions.

use std::time::Duration;
use std::time::Instant;

use xsio_harness::{ActorId, Conn, Harness, MemStore, Owner, Record};
use xsio_ops::{Op, TxnOp, XsOp};

use super::removal::{destroy, removal_request};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{
    Backend, BackendEvent, DeviceAreas, Frontend, FrontendEvent, StateWaiter, WaitEvent,
    WaiterConfig, XenbusEvent, XenbusMachine, XenbusState, backend_transition_allowed,
    frontend_transition_allowed,
};

/// Connection numbers, in the order they are opened: the toolstack's, the backend
/// domain's, the guest's.
const TOOLSTACK: usize = 0;
const BACKEND: usize = 1;
const FRONTEND: usize = 2;

/// What the environment may do, and how often.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Guest-side closes per device.
    pub(crate) closes: u8,
    /// Backend-side closes (unplug) per device.
    pub(crate) backend_closes: u8,
    /// Toolstack removals per device.
    pub(crate) removals: u8,
    /// Guest restarts per device (only when everything is quiet and the frontend Closed).
    pub(crate) restarts: u8,
    /// Duplicate watch events, in total.
    pub(crate) spurious: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tool {
    Idle,
    /// Removal requested, waiter running.
    Removing,
    /// Destroy transaction sent.
    Destroying,
    Destroyed,
}

/// The last lifecycle action taken on a device: decides what a quiet world must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Last {
    Nothing,
    Closed,
    Restarted,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Device {
    pub(crate) areas: DeviceAreas,
    pub(crate) backend: ActorId,
    pub(crate) frontend: ActorId,
    pub(crate) waiter: Option<ActorId>,
    /// The toolstack's destroy transaction, once sent.
    pub(crate) destroy: Option<xsio_core::OpId>,
    pub(crate) tool: Tool,
    pub(crate) last: Last,
    pub(crate) removed: bool,
    pub(crate) closes: u8,
    pub(crate) backend_closes: u8,
    pub(crate) removals: u8,
    pub(crate) restarts: u8,
}

/// The whole world; equal worlds hash alike (the harness leaves its log out).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct World {
    pub(crate) harness: Harness<XenbusMachine>,
    pub(crate) store: MemStore,
    pub(crate) devices: Vec<Device>,
    pub(crate) spurious: u8,
}

/// One step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Execute(Conn),
    Deliver(Conn),
    FrontendTimer(usize),
    Spurious(usize),
    GuestClose(usize),
    BackendClose(usize),
    Removal(usize),
    Restart(usize),
}

impl Action {
    /// Protocol steps; a world where none is enabled is quiet.
    fn is_protocol(self) -> bool {
        matches!(
            self,
            Action::Execute(_) | Action::Deliver(_) | Action::FrontendTimer(_)
        )
    }
}

/// Which machine of which device an actor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Backend(usize),
    Frontend(usize),
    Waiter(usize),
}

/// The devices the checker runs: a xen-disk `xvda` and a xen-cdrom `hdc` of domain 1.
pub(crate) fn block_devices() -> Vec<BlockDevice> {
    let mut disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        "/srv/disk.img",
        Mode::ReadWrite,
    );
    disk.sectors = 2048;
    let cdrom = BlockDevice::new(
        BlockKind::Cdrom,
        Vbd::parse("hdc").unwrap(),
        "/srv/cd.iso",
        Mode::ReadOnly,
    );
    vec![disk, cdrom]
}

impl World {
    /// The toolstack created the first `n` devices; backends and frontends just started.
    pub(crate) fn new(budgets: &[Budget], now: Instant) -> World {
        let mut harness = Harness::new(now);
        let conns = [harness.connect(), harness.connect(), harness.connect()];
        let mut world = World {
            harness,
            store: MemStore::new(),
            devices: Vec::new(),
            spurious: budgets.iter().map(|b| b.spurious).sum(),
        };
        for (i, (dev, budget)) in block_devices().into_iter().zip(budgets).enumerate() {
            let areas = dev.areas(0, 1);
            let create = areas.create(
                &dev.toolstack_backend_keys(),
                &dev.toolstack_frontend_keys(),
            );
            // Before anyone watches: nothing fires.
            let created = world
                .store
                .execute(conns[TOOLSTACK], &Op::Xs(XsOp::Transaction(create)));
            assert!(created.result.is_ok() && created.fired.is_empty());
            let transport = BlockTransport {
                ring_ref: 8 + i as u32,
                event_channel: 5 + i as u32,
                protocol: Some(Protocol::X86_64),
            };
            let backend = Backend::new(dev.backend_config(areas.clone()), now);
            let frontend = Frontend::new(dev.frontend_config(areas.clone(), &transport), now);
            world.devices.push(Device {
                backend: world
                    .harness
                    .add(conns[BACKEND], XenbusMachine::Backend(backend)),
                frontend: world
                    .harness
                    .add(conns[FRONTEND], XenbusMachine::Frontend(frontend)),
                areas,
                waiter: None,
                destroy: None,
                tool: Tool::Idle,
                last: Last::Nothing,
                removed: false,
                closes: budget.closes,
                backend_closes: budget.backend_closes,
                removals: budget.removals,
                restarts: budget.restarts,
            });
        }
        // Both started from the Initialising the toolstack wrote (their first transitions
        // wait in them, undrained).
        let before =
            vec![(XenbusState::Initialising, XenbusState::Initialising); world.devices.len()];
        for i in 0..world.devices.len() {
            world.harness.drain(world.devices[i].backend);
            world.harness.drain(world.devices[i].frontend);
        }
        world.check_log(&before).unwrap();
        world
    }

    fn conn(&self, index: usize) -> Conn {
        self.harness.conns().nth(index).unwrap() // the three are opened in `new`
    }

    // Device backends are backends, frontends frontends, waiters waiters (`new`, `step`).

    fn backend(&self, i: usize) -> &Backend {
        let id = self.devices[i].backend;
        self.harness.actor(id).backend().unwrap()
    }

    fn backend_mut(&mut self, i: usize) -> &mut Backend {
        let id = self.devices[i].backend;
        self.harness.actor_mut(id).backend_mut().unwrap()
    }

    fn frontend(&self, i: usize) -> &Frontend {
        let id = self.devices[i].frontend;
        self.harness.actor(id).frontend().unwrap()
    }

    fn frontend_mut(&mut self, i: usize) -> &mut Frontend {
        let id = self.devices[i].frontend;
        self.harness.actor_mut(id).frontend_mut().unwrap()
    }

    fn waiter(&self, i: usize) -> Option<&StateWaiter> {
        Some(
            self.harness
                .actor(self.devices[i].waiter?)
                .waiter()
                .unwrap(),
        )
    }

    fn role(&self, id: ActorId) -> Role {
        for (i, dev) in self.devices.iter().enumerate() {
            if dev.backend == id {
                return Role::Backend(i);
            }
            if dev.frontend == id {
                return Role::Frontend(i);
            }
            if dev.waiter == Some(id) {
                return Role::Waiter(i);
            }
        }
        unreachable!("every actor belongs to a device")
    }

    /// Every action enabled now, protocol steps first.
    pub(crate) fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        for conn in self.harness.conns() {
            if self.harness.has_request(conn) {
                actions.push(Action::Execute(conn));
            }
            if self.harness.has_delivery(conn) {
                actions.push(Action::Deliver(conn));
            }
        }
        for i in 0..self.devices.len() {
            if self.frontend(i).poll_timeout().is_some() {
                actions.push(Action::FrontendTimer(i));
            }
        }
        let quiet = actions.is_empty();
        if self.spurious > 0 {
            for w in 0..self.store.watches().len() {
                actions.push(Action::Spurious(w));
            }
        }
        for (i, dev) in self.devices.iter().enumerate() {
            let (backend, frontend) = (self.backend(i), self.frontend(i));
            if dev.closes > 0 && !frontend.is_stopped() {
                actions.push(Action::GuestClose(i));
            }
            if dev.backend_closes > 0 && !backend.is_stopped() {
                actions.push(Action::BackendClose(i));
            }
            if dev.tool != Tool::Idle {
                continue;
            }
            if dev.removals > 0 {
                actions.push(Action::Removal(i));
            }
            if quiet
                && dev.restarts > 0
                && frontend.state() == XenbusState::Closed
                && !frontend.is_stopped()
            {
                actions.push(Action::Restart(i));
            }
        }
        actions
    }

    /// The actions the reduced search takes: a single delivery when one is independent of
    /// every other action, all actions otherwise (an ample set, see `model_check.rs`).
    pub(crate) fn reduced_actions(&self) -> Vec<Action> {
        let all = self.actions();
        for action in &all {
            if let Action::Deliver(conn) = *action {
                if self.delivery_is_independent(conn) {
                    return vec![*action];
                }
            }
        }
        all
    }

    /// A delivery pops the head of one inbound queue into one machine, which pushes to the
    /// tail of its own outbound queue: that commutes with every execute, every other
    /// delivery and every duplicate event. (A machine that stops or finishes unwatches,
    /// and the harness drops the events of a watch from the moment its removal is asked
    /// for; had the execute come first, the event would have been queued and then ignored
    /// by the stopped machine: both orders reach the same quiet states.) Only the
    /// environment's actions on the same frontend (close, restart, timer) or backend
    /// (close) touch the same machine; a delivery to a waiter or to the toolstack has no
    /// such partner.
    fn delivery_is_independent(&self, conn: Conn) -> bool {
        let Some(owner) = self.harness.next_delivery_for(conn) else {
            return false;
        };
        let Owner::Actor(actor) = owner else {
            return true; // the toolstack's own transaction
        };
        match self.role(actor) {
            Role::Frontend(i) => {
                let dev = &self.devices[i];
                let frontend = self.frontend(i);
                let stopped = frontend.is_stopped();
                (dev.closes == 0 || stopped)
                    && frontend.poll_timeout().is_none()
                    && (dev.restarts == 0 || stopped)
            }
            Role::Backend(i) => self.devices[i].backend_closes == 0 || self.backend(i).is_stopped(),
            Role::Waiter(_) => true,
        }
    }

    pub(crate) fn is_quiet(&self) -> bool {
        !self.actions().iter().any(|a| a.is_protocol())
    }

    /// The (backend, frontend) states of every device.
    fn states(&self) -> Vec<(XenbusState, XenbusState)> {
        (0..self.devices.len())
            .map(|i| (self.backend(i).state(), self.frontend(i).state()))
            .collect()
    }

    /// Applies an action; an error names the violated property.
    pub(crate) fn step(&mut self, action: Action) -> Result<(), String> {
        let before = self.states();
        let now = self.harness.now();
        match action {
            Action::Execute(conn) => {
                let executed = self
                    .store
                    .execute_next(&mut self.harness, conn)
                    .map_err(|e| e.to_string())?;
                if !executed {
                    return Err("execute on an empty queue".into());
                }
            }
            Action::Deliver(conn) => {
                let delivered = self.harness.deliver_from(conn).map_err(|e| e.to_string())?;
                if !delivered {
                    return Err("deliver on an empty queue".into());
                }
            }
            Action::FrontendTimer(i) => {
                let deadline = self.frontend(i).poll_timeout().ok_or("timer not armed")?;
                self.harness.advance_to(deadline);
                if !self.harness.fire_timer(self.devices[i].frontend) {
                    return Err("the frontend's timer did not fire at its deadline".into());
                }
            }
            Action::Spurious(w) => {
                let watch = self
                    .store
                    .watches()
                    .nth(w)
                    .cloned()
                    .ok_or("no such watch")?;
                self.spurious -= 1;
                self.harness
                    .watch_event(watch.conn, &watch.path, &watch.token);
            }
            Action::GuestClose(i) => {
                let dev = &mut self.devices[i];
                dev.closes -= 1;
                if !dev.removed {
                    dev.last = Last::Closed;
                }
                self.frontend_mut(i).close(now);
                self.harness.drain(self.devices[i].frontend);
            }
            Action::BackendClose(i) => {
                let dev = &mut self.devices[i];
                dev.backend_closes -= 1;
                if !dev.removed {
                    dev.last = Last::Closed;
                }
                self.backend_mut(i).close(now);
                self.harness.drain(self.devices[i].backend);
            }
            Action::Removal(i) => {
                let toolstack = self.conn(TOOLSTACK);
                let dev = &mut self.devices[i];
                dev.removals -= 1;
                dev.removed = true;
                dev.last = Last::Closed;
                dev.tool = Tool::Removing;
                let removal = Op::Xs(XsOp::Transaction(removal_request(&dev.areas)));
                let waiter = StateWaiter::new(
                    WaiterConfig {
                        path: dev.areas.backend_key("state"),
                        wanted: vec![XenbusState::Closed],
                        timeout: Duration::from_secs(10),
                        token: format!("waiter:{i}"),
                    },
                    now,
                );
                self.harness.submit(toolstack, removal);
                let waiter = self.harness.add(toolstack, XenbusMachine::Waiter(waiter));
                self.devices[i].waiter = Some(waiter);
                self.harness.drain(waiter);
            }
            Action::Restart(i) => {
                let dev = &mut self.devices[i];
                dev.restarts -= 1;
                dev.last = Last::Restarted;
                if !self.frontend_mut(i).restart(now) {
                    return Err("restart refused by a Closed frontend".into());
                }
                self.harness.drain(self.devices[i].frontend);
            }
        }
        self.check_log(&before)?;
        self.check_no_resurrection()
    }

    /// Checks what the machines did during one action, from the harness's log, and acts
    /// as the toolstack on it: every transition reported must be allowed and start from
    /// the state the machine was in; after Closed a machine writes nothing but its state;
    /// no machine fails; the waiter ends with Closed, upon which the toolstack destroys the
    /// device; the toolstack's own transactions succeed.
    fn check_log(&mut self, before: &[(XenbusState, XenbusState)]) -> Result<(), String> {
        let mut states = before.to_vec();
        for record in self.harness.take_log() {
            match record {
                Record::Request {
                    owner: Owner::Actor(actor),
                    request,
                } => match self.role(actor) {
                    Role::Backend(i) => check_write_after_closed(
                        "backend",
                        states[i].0,
                        &request.op,
                        XenbusState::InitWait,
                    )?,
                    Role::Frontend(i) => check_write_after_closed(
                        "frontend",
                        states[i].1,
                        &request.op,
                        XenbusState::Initialising,
                    )?,
                    Role::Waiter(_) => {}
                },
                Record::Event { actor, event } => self.check_event(actor, event, &mut states)?,
                Record::Reply {
                    owner: Owner::Caller,
                    id,
                    result,
                    ..
                } => {
                    result.map_err(|e| format!("toolstack transaction failed: {e}"))?;
                    for dev in &mut self.devices {
                        if dev.destroy == Some(id) {
                            dev.tool = Tool::Destroyed;
                        }
                    }
                }
                Record::Request {
                    owner: Owner::Caller,
                    ..
                }
                | Record::Reply { .. }
                | Record::Watch { .. }
                | Record::Peer { .. }
                | Record::Timeout { .. } => {}
            }
        }
        // The records of what the toolstack did in reaction (a destroy): nothing to check.
        self.harness.take_log();
        Ok(())
    }

    fn check_event(
        &mut self,
        actor: ActorId,
        event: XenbusEvent,
        states: &mut [(XenbusState, XenbusState)],
    ) -> Result<(), String> {
        match (self.role(actor), event) {
            (Role::Backend(i), XenbusEvent::Backend(BackendEvent::StateChanged { from, to })) => {
                let state = &mut states[i].0;
                if from != *state || !backend_transition_allowed(from, to) {
                    return Err(format!(
                        "backend {i}: transition {from} -> {to} (was {state})"
                    ));
                }
                *state = to;
            }
            (
                Role::Backend(i),
                XenbusEvent::Backend(
                    event @ (BackendEvent::Failed(_)
                    | BackendEvent::ConnectFailed(_)
                    | BackendEvent::BadFrontendState(_)),
                ),
            ) => return Err(format!("backend {i}: {event:?}")),
            (
                Role::Frontend(i),
                XenbusEvent::Frontend(FrontendEvent::StateChanged { from, to }),
            ) => {
                let state = &mut states[i].1;
                if from != *state || !frontend_transition_allowed(from, to) {
                    return Err(format!(
                        "frontend {i}: transition {from} -> {to} (was {state})"
                    ));
                }
                *state = to;
            }
            (
                Role::Frontend(i),
                XenbusEvent::Frontend(
                    event @ (FrontendEvent::Failed(_)
                    | FrontendEvent::ConnectFailed(_)
                    | FrontendEvent::BadBackendState(_)),
                ),
            ) => return Err(format!("frontend {i}: {event:?}")),
            (Role::Waiter(i), XenbusEvent::Waiter(WaitEvent::Done(Ok(XenbusState::Closed)))) => {
                let toolstack = self.conn(TOOLSTACK);
                let destroy = Op::Xs(XsOp::Transaction(destroy(&self.devices[i].areas)));
                let id = self.harness.submit(toolstack, destroy);
                let dev = &mut self.devices[i];
                dev.tool = Tool::Destroying;
                dev.destroy = Some(id);
            }
            (Role::Waiter(i), XenbusEvent::Waiter(WaitEvent::Done(other))) => {
                return Err(format!("waiter {i} ended with {other:?}"));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_no_resurrection(&self) -> Result<(), String> {
        for (i, dev) in self.devices.iter().enumerate() {
            if dev.tool == Tool::Destroyed
                && (self.store.has_under(&dev.areas.backend_path())
                    || self.store.has_under(&dev.areas.frontend_path()))
            {
                return Err(format!("device {i}: a destroyed directory was recreated"));
            }
        }
        Ok(())
    }

    /// What must hold once nothing is left to do.
    pub(crate) fn check_quiet(&self) -> Result<(), String> {
        for (i, dev) in self.devices.iter().enumerate() {
            let (backend, frontend) = (self.backend(i), self.frontend(i));
            let (be, fe) = (backend.state(), frontend.state());
            let be_node = self.store.read(&dev.areas.backend_key("state"));
            let fe_node = self.store.read(&dev.areas.frontend_key("state"));
            let ok = match (dev.removed, dev.last) {
                (true, _) => {
                    // The frontend may be cut off mid-handshake by the destroy: it must
                    // have noticed (stopped), whatever state it last wrote.
                    dev.tool == Tool::Destroyed
                        && be == XenbusState::Closed
                        && backend.is_stopped()
                        && frontend.is_stopped()
                        && be_node.is_none()
                        && fe_node.is_none()
                }
                (false, Last::Closed) => {
                    be == XenbusState::Closed
                        && fe == XenbusState::Closed
                        && be_node == Some("6")
                        && fe_node == Some("6")
                }
                (false, Last::Nothing | Last::Restarted) => {
                    be == XenbusState::Connected
                        && fe == XenbusState::Connected
                        && be_node == Some("4")
                        && fe_node == Some("4")
                }
            };
            if !ok {
                return Err(format!(
                    "device {i} quiet in a wrong state: removed={} last={:?} tool={:?} backend={be} ({be_node:?}) frontend={fe} ({fe_node:?})",
                    dev.removed, dev.last, dev.tool
                ));
            }
            if self.waiter(i).is_some_and(|w| !w.is_done()) {
                return Err(format!(
                    "device {i}: the toolstack still waits while all is quiet"
                ));
            }
        }
        Ok(())
    }
}

/// After Closed a machine writes nothing but its state: Closed again, or the reconnect.
fn check_write_after_closed(
    who: &str,
    state: XenbusState,
    op: &Op,
    reconnect: XenbusState,
) -> Result<(), String> {
    let Op::Xs(XsOp::Transaction(txn)) = op else {
        return Ok(());
    };
    if state != XenbusState::Closed {
        return Ok(());
    }
    let Some(TxnOp::Write { path, value }) = txn.ops.last() else {
        return Err(format!("{who} wrote {txn:?} while Closed"));
    };
    let state_write = path.ends_with("/state");
    if state_write && value == reconnect.wire() {
        return Ok(());
    }
    if state_write && value == XenbusState::Closed.wire() && txn.ops.len() == 1 {
        return Ok(());
    }
    Err(format!("{who} wrote {txn:?} while Closed"))
}
