//! The world the model checker explores: devices (backend, frontend, toolstack), the
//! xenstore model, and every action that can happen next.

use std::time::{Duration, Instant};

use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{
    Backend, BackendEvent, DeviceAreas, Frontend, FrontendEvent, StateWaiter, WaitEvent,
    WaiterConfig, XenbusState, backend_transition_allowed, frontend_transition_allowed,
};

use xsio_ops::{Op, Output, TxnOp, XsOp};

use super::store::{Conn, Inbound, Owner, Store};

/// Set by a replay to print every machine output.
pub(crate) static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn trace(who: &str, what: &dyn std::fmt::Debug) {
    if TRACE.load(std::sync::atomic::Ordering::Relaxed) {
        println!("  {who}: {what:?}");
    }
}

/// Connection numbers: the toolstack's, the backend domain's, the guest's.
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
    pub(crate) backend: Backend,
    pub(crate) frontend: Frontend,
    pub(crate) waiter: Option<StateWaiter>,
    pub(crate) tool: Tool,
    pub(crate) last: Last,
    pub(crate) removed: bool,
    pub(crate) closes: u8,
    pub(crate) backend_closes: u8,
    pub(crate) removals: u8,
    pub(crate) restarts: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct World {
    pub(crate) now: Instant,
    pub(crate) store: Store,
    pub(crate) conns: [Conn; 3],
    pub(crate) devices: Vec<Device>,
    pub(crate) spurious: u8,
}

/// One step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Execute(usize),
    Deliver(usize),
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
        let mut world = World {
            now,
            store: Store::default(),
            conns: Default::default(),
            devices: Vec::new(),
            spurious: budgets.iter().map(|b| b.spurious).sum(),
        };
        for (i, (dev, budget)) in block_devices().into_iter().zip(budgets).enumerate() {
            let areas = dev.areas(0, 1);
            let create = areas.create(
                &dev.toolstack_backend_keys(),
                &dev.toolstack_frontend_keys(),
            );
            let mut scratch: [Conn; 3] = Default::default();
            let request = xsio_ops::Request {
                id: xsio_core::OpId::from_raw(0),
                op: Op::Xs(XsOp::Transaction(create)),
            };
            world
                .store
                .execute(&mut scratch, TOOLSTACK, Owner::Toolstack(i as u8), request);
            let transport = BlockTransport {
                ring_ref: 8 + i as u32,
                event_channel: 5 + i as u32,
                protocol: Some(Protocol::X86_64),
            };
            world.devices.push(Device {
                backend: Backend::new(dev.backend_config(areas.clone()), now),
                frontend: Frontend::new(dev.frontend_config(areas.clone(), &transport), now),
                areas,
                waiter: None,
                tool: Tool::Idle,
                last: Last::Nothing,
                removed: false,
                closes: budget.closes,
                backend_closes: budget.backend_closes,
                removals: budget.removals,
                restarts: budget.restarts,
            });
        }
        for i in 0..world.devices.len() {
            // Both started from the Initialising the toolstack wrote.
            world.drain_backend(i, XenbusState::Initialising).unwrap();
            world.drain_frontend(i, XenbusState::Initialising).unwrap();
        }
        world
    }

    /// Every action enabled now, protocol steps first.
    pub(crate) fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        for (c, conn) in self.conns.iter().enumerate() {
            if !conn.outbound.is_empty() {
                actions.push(Action::Execute(c));
            }
            if !conn.inbound.is_empty() {
                actions.push(Action::Deliver(c));
            }
        }
        for (i, dev) in self.devices.iter().enumerate() {
            if dev.frontend.poll_timeout().is_some() {
                actions.push(Action::FrontendTimer(i));
            }
        }
        let quiet = actions.is_empty();
        if self.spurious > 0 {
            for w in 0..self.store.watches.len() {
                actions.push(Action::Spurious(w));
            }
        }
        for (i, dev) in self.devices.iter().enumerate() {
            if dev.closes > 0 && !dev.frontend.is_stopped() {
                actions.push(Action::GuestClose(i));
            }
            if dev.backend_closes > 0 && !dev.backend.is_stopped() {
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
                && dev.frontend.state() == XenbusState::Closed
                && !dev.frontend.is_stopped()
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
            if let Action::Deliver(c) = *action {
                if self.delivery_is_independent(c) {
                    return vec![*action];
                }
            }
        }
        all
    }

    /// A delivery pops the head of one inbound queue into one machine, which pushes to the
    /// tail of its own outbound queue: that commutes with every execute, every other
    /// delivery and every duplicate event. Only the environment's actions on the same
    /// frontend (close, restart, timer) or backend (close) touch the same machine; a
    /// delivery to a waiter or the toolstack has no such partner.
    fn delivery_is_independent(&self, c: usize) -> bool {
        match self.conns[c].inbound.front() {
            Some(Inbound::Reply { owner, .. } | Inbound::Event { owner, .. }) => match owner {
                Owner::Frontend(i) => {
                    let dev = &self.devices[usize::from(*i)];
                    let stopped = dev.frontend.is_stopped();
                    (dev.closes == 0 || stopped)
                        && dev.frontend.poll_timeout().is_none()
                        && (dev.restarts == 0 || stopped)
                }
                Owner::Backend(i) => {
                    let dev = &self.devices[usize::from(*i)];
                    dev.backend_closes == 0 || dev.backend.is_stopped()
                }
                Owner::Waiter(_) | Owner::Toolstack(_) => true,
            },
            None => false,
        }
    }

    pub(crate) fn is_quiet(&self) -> bool {
        !self.actions().iter().any(|a| a.is_protocol())
    }

    /// Applies an action; an error names the violated property.
    pub(crate) fn step(&mut self, action: Action) -> Result<(), String> {
        trace("step", &action);
        match action {
            Action::Execute(c) => {
                let Some((owner, request)) = self.conns[c].outbound.pop_front() else {
                    return Err("execute on an empty queue".into());
                };
                trace(&format!("execute {owner:?}"), &request.op);
                self.store.execute(&mut self.conns, c, owner, request);
            }
            Action::Deliver(c) => {
                let Some(inbound) = self.conns[c].inbound.pop_front() else {
                    return Err("deliver on an empty queue".into());
                };
                trace("deliver", &inbound);
                self.deliver(inbound)?;
            }
            Action::FrontendTimer(i) => {
                let deadline = self.devices[i]
                    .frontend
                    .poll_timeout()
                    .ok_or("timer not armed")?;
                self.now = self.now.max(deadline);
                let before = self.devices[i].frontend.state();
                self.devices[i].frontend.handle_timeout(self.now);
                self.drain_frontend(i, before)?;
            }
            Action::Spurious(w) => {
                let reg = self
                    .store
                    .watches
                    .iter()
                    .nth(w)
                    .cloned()
                    .ok_or("no such watch")?;
                self.spurious -= 1;
                self.conns[reg.conn].inbound.push_back(Inbound::Event {
                    owner: reg.owner,
                    path: reg.path,
                    token: reg.token,
                });
            }
            Action::GuestClose(i) => {
                let dev = &mut self.devices[i];
                dev.closes -= 1;
                if !dev.removed {
                    dev.last = Last::Closed;
                }
                let before = dev.frontend.state();
                dev.frontend.close(self.now);
                self.drain_frontend(i, before)?;
            }
            Action::BackendClose(i) => {
                let dev = &mut self.devices[i];
                dev.backend_closes -= 1;
                if !dev.removed {
                    dev.last = Last::Closed;
                }
                let before = dev.backend.state();
                dev.backend.close(self.now);
                self.drain_backend(i, before)?;
            }
            Action::Removal(i) => {
                let now = self.now;
                let dev = &mut self.devices[i];
                dev.removals -= 1;
                dev.removed = true;
                dev.last = Last::Closed;
                dev.tool = Tool::Removing;
                let request = xsio_ops::Request {
                    id: xsio_core::OpId::from_raw(0),
                    op: Op::Xs(XsOp::Transaction(dev.areas.request_removal())),
                };
                self.conns[TOOLSTACK]
                    .outbound
                    .push_back((Owner::Toolstack(i as u8), request));
                let waiter = StateWaiter::new(
                    WaiterConfig {
                        path: dev.areas.backend_key("state"),
                        wanted: vec![XenbusState::Closed],
                        timeout: Duration::from_secs(10),
                        token: format!("waiter:{i}"),
                    },
                    now,
                );
                dev.waiter = Some(waiter);
                self.drain_waiter(i)?;
            }
            Action::Restart(i) => {
                let dev = &mut self.devices[i];
                dev.restarts -= 1;
                dev.last = Last::Restarted;
                let before = dev.frontend.state();
                if !dev.frontend.restart(self.now) {
                    return Err("restart refused by a Closed frontend".into());
                }
                self.drain_frontend(i, before)?;
            }
        }
        self.check_no_resurrection()
    }

    fn deliver(&mut self, inbound: Inbound) -> Result<(), String> {
        let now = self.now;
        let owner = match &inbound {
            Inbound::Reply { owner, .. } | Inbound::Event { owner, .. } => *owner,
        };
        match owner {
            Owner::Backend(i) => {
                let i = usize::from(i);
                let before = self.devices[i].backend.state();
                let backend = &mut self.devices[i].backend;
                match inbound {
                    Inbound::Reply { id, result, .. } => backend
                        .handle_reply(now, id, result)
                        .map_err(|e| format!("backend refused a reply: {e}"))?,
                    Inbound::Event { path, token, .. } => backend.handle_watch(now, &path, &token),
                }
                self.drain_backend(i, before)
            }
            Owner::Frontend(i) => {
                let i = usize::from(i);
                let before = self.devices[i].frontend.state();
                let frontend = &mut self.devices[i].frontend;
                match inbound {
                    Inbound::Reply { id, result, .. } => frontend
                        .handle_reply(now, id, result)
                        .map_err(|e| format!("frontend refused a reply: {e}"))?,
                    Inbound::Event { path, token, .. } => frontend.handle_watch(now, &path, &token),
                }
                self.drain_frontend(i, before)
            }
            Owner::Waiter(i) => {
                let i = usize::from(i);
                let Some(waiter) = self.devices[i].waiter.as_mut() else {
                    return Err("reply for a missing waiter".into());
                };
                match inbound {
                    Inbound::Reply { id, result, .. } => waiter
                        .handle_reply(now, id, result)
                        .map_err(|e| format!("waiter refused a reply: {e}"))?,
                    Inbound::Event { path, token, .. } => waiter.handle_watch(now, &path, &token),
                }
                self.drain_waiter(i)
            }
            Owner::Toolstack(i) => {
                let dev = &mut self.devices[usize::from(i)];
                if let Inbound::Reply { result, .. } = inbound {
                    result.map_err(|e| format!("toolstack transaction failed: {e}"))?;
                    if dev.tool == Tool::Destroying {
                        dev.tool = Tool::Destroyed;
                    }
                }
                Ok(())
            }
        }
    }

    fn drain_backend(&mut self, i: usize, mut state: XenbusState) -> Result<(), String> {
        while let Some(out) = self.devices[i].backend.poll_output() {
            trace(&format!("backend {i}"), &out);
            match out {
                Output::Request(request) => {
                    check_write_after_closed("backend", state, &request.op, XenbusState::InitWait)?;
                    self.conns[BACKEND]
                        .outbound
                        .push_back((Owner::Backend(i as u8), request));
                }
                Output::Event(BackendEvent::StateChanged { from, to }) => {
                    if from != state || !backend_transition_allowed(from, to) {
                        return Err(format!(
                            "backend {i}: transition {from} -> {to} (was {state})"
                        ));
                    }
                    state = to;
                }
                Output::Event(
                    event @ (BackendEvent::Failed(_)
                    | BackendEvent::ConnectFailed(_)
                    | BackendEvent::BadFrontendState(_)),
                ) => return Err(format!("backend {i}: {event:?}")),
                Output::Event(_) => {}
            }
        }
        Ok(())
    }

    fn drain_frontend(&mut self, i: usize, mut state: XenbusState) -> Result<(), String> {
        while let Some(out) = self.devices[i].frontend.poll_output() {
            trace(&format!("frontend {i}"), &out);
            match out {
                Output::Request(request) => {
                    check_write_after_closed(
                        "frontend",
                        state,
                        &request.op,
                        XenbusState::Initialising,
                    )?;
                    self.conns[FRONTEND]
                        .outbound
                        .push_back((Owner::Frontend(i as u8), request));
                }
                Output::Event(FrontendEvent::StateChanged { from, to }) => {
                    if from != state || !frontend_transition_allowed(from, to) {
                        return Err(format!(
                            "frontend {i}: transition {from} -> {to} (was {state})"
                        ));
                    }
                    state = to;
                }
                Output::Event(
                    event @ (FrontendEvent::Failed(_)
                    | FrontendEvent::ConnectFailed(_)
                    | FrontendEvent::BadBackendState(_)),
                ) => return Err(format!("frontend {i}: {event:?}")),
                Output::Event(_) => {}
            }
        }
        Ok(())
    }

    fn drain_waiter(&mut self, i: usize) -> Result<(), String> {
        loop {
            let dev = &mut self.devices[i];
            let Some(out) = dev.waiter.as_mut().and_then(StateWaiter::poll_output) else {
                return Ok(());
            };
            trace(&format!("waiter {i}"), &out);
            match out {
                Output::Request(request) => self.conns[TOOLSTACK]
                    .outbound
                    .push_back((Owner::Waiter(i as u8), request)),
                Output::Event(WaitEvent::Done(Ok(XenbusState::Closed))) => {
                    dev.tool = Tool::Destroying;
                    let request = xsio_ops::Request {
                        id: xsio_core::OpId::from_raw(1),
                        op: Op::Xs(XsOp::Transaction(dev.areas.destroy())),
                    };
                    self.conns[TOOLSTACK]
                        .outbound
                        .push_back((Owner::Toolstack(i as u8), request));
                }
                Output::Event(WaitEvent::Done(other)) => {
                    return Err(format!("waiter {i} ended with {other:?}"));
                }
                Output::Event(_) => {}
            }
        }
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
            let (be, fe) = (dev.backend.state(), dev.frontend.state());
            let be_node = self.store.read(&dev.areas.backend_key("state"));
            let fe_node = self.store.read(&dev.areas.frontend_key("state"));
            let ok = match (dev.removed, dev.last) {
                (true, _) => {
                    // The frontend may be cut off mid-handshake by the destroy: it must
                    // have noticed (stopped), whatever state it last wrote.
                    dev.tool == Tool::Destroyed
                        && be == XenbusState::Closed
                        && dev.backend.is_stopped()
                        && dev.frontend.is_stopped()
                        && be_node.is_none()
                        && fe_node.is_none()
                }
                (false, Last::Closed) => {
                    be == XenbusState::Closed
                        && fe == XenbusState::Closed
                        && be_node.as_deref() == Some("6")
                        && fe_node.as_deref() == Some("6")
                }
                (false, Last::Nothing | Last::Restarted) => {
                    be == XenbusState::Connected
                        && fe == XenbusState::Connected
                        && be_node.as_deref() == Some("4")
                        && fe_node.as_deref() == Some("4")
                }
            };
            if !ok {
                return Err(format!(
                    "device {i} quiet in a wrong state: removed={} last={:?} tool={:?} backend={be} ({be_node:?}) frontend={fe} ({fe_node:?})",
                    dev.removed, dev.last, dev.tool
                ));
            }
            if dev.waiter.as_ref().is_some_and(|w| !w.is_done()) {
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
