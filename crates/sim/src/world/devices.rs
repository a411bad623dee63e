//! The toolstack's work on single devices (`xsio-device`'s add and removal, a failed one
//! undone with force on), both ends of a device started once its directories exist, what
//! they report, and the conflict fault on the toolstack's transactions.

use xsio_device::{AddSpec, Completion, DeviceEvent, DeviceOp, Force};
use xsio_harness::{HarnessError, Owner};
use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent, XenbusState};
use xsio_xs_client::Response;

use super::{Phase, Role, Sim, SimActor, SimEvent, device_config};
use crate::describe;
use crate::gate::Gated;
use crate::trace::Lane;

impl Sim {
    pub(super) fn create(&mut self, i: usize) {
        let name = self.device_name(i);
        let who = format!("toolstack {name}");
        if self.devices[i].phase != Phase::Absent || self.domains[&self.devices[i].domid].destroyed
        {
            self.say(
                Lane::Toolstack,
                who,
                "add: already exists or domain destroyed, skipped".into(),
            );
            return;
        }
        let d = &self.devices[i];
        let (backend_keys, frontend_keys) = d.ends.toolstack_keys(d.areas.devid, d.script());
        let spec = AddSpec {
            device: d.device(),
            backend_keys,
            frontend_keys,
        };
        let what = format!(
            "add {} (device id {}, backend {})",
            d.name, d.areas.devid, d.areas.backend_kind
        );
        self.say(Lane::Toolstack, who, what);
        self.devices[i].phase = Phase::Creating;
        let op = DeviceOp::add(device_config(), spec, self.harness.now());
        let toolstack = self.toolstack;
        self.add_op(
            Role::Device(i, Lane::Toolstack),
            toolstack,
            SimActor::Device(op),
        );
    }

    pub(super) fn remove(&mut self, i: usize, force: Force) {
        let phase = self.devices[i].phase;
        if phase != Phase::Running && !(phase == Phase::Creating && force == Force::On) {
            let name = self.device_name(i);
            self.say(
                Lane::Toolstack,
                format!("toolstack {name}"),
                format!("remove: device is {phase:?}, skipped"),
            );
            return;
        }
        self.devices[i].phase = Phase::Removing;
        let op = DeviceOp::remove(
            device_config(),
            self.devices[i].device(),
            force,
            self.harness.now(),
        );
        let toolstack = self.toolstack;
        self.add_op(
            Role::Device(i, Lane::Toolstack),
            toolstack,
            SimActor::Device(op),
        );
    }

    /// The backend (QEMU's, when it runs, or blkback's) and the guest's frontend of a
    /// device whose directories were just written.
    pub(super) fn start_ends(&mut self, i: usize) {
        let d = &self.devices[i];
        let dom = &self.domains[&d.domid];
        let (qemu_xs, guest) = (dom.qemu_xs, dom.guest);
        let now = self.harness.now();
        let driver = d.areas.backend_domid;
        let backend_conn = if driver != 0 {
            match self.drivers.get(&driver) {
                Some(dd) if dd.alive => Some(dd.conn),
                _ => {
                    let name = self.device_name(i);
                    self.say(
                        Lane::Backend,
                        format!("backend {name}"),
                        format!("driver domain d{driver} is dead: no backend"),
                    );
                    None
                }
            }
        } else if d.qemu_backed() {
            if !self.store.0.qemu_alive(d.domid) {
                let name = self.device_name(i);
                self.say(
                    Lane::Qemu,
                    format!("qemu {name}"),
                    "no QEMU runs: no backend".into(),
                );
                None
            } else {
                Some(qemu_xs)
            }
        } else {
            Some(self.blkback)
        };
        if let Some(conn) = backend_conn {
            let d = &self.devices[i];
            let backend = Backend::new(d.ends.backend_config(d.areas.clone()), now);
            let id = self.add_actor(
                Role::Device(i, Lane::Backend),
                conn,
                SimActor::Backend(Gated::new(backend)),
            );
            self.devices[i].backend = Some(id);
        }
        if self.devices[i].silent {
            let name = self.device_name(i);
            self.say(
                Lane::Frontend,
                format!("frontend {name}"),
                "(fault) the guest ignores this device".into(),
            );
            return;
        }
        let d = &self.devices[i];
        let n = u32::try_from(i).unwrap_or(u32::MAX);
        let frontend = Frontend::new(d.ends.frontend_config(d.areas.clone(), n), now);
        let id = self.add_actor(
            Role::Device(i, Lane::Frontend),
            guest,
            SimActor::Frontend(Gated::new(frontend)),
        );
        self.devices[i].frontend = Some(id);
    }

    pub(super) fn device_event(&mut self, i: usize, lane: Lane, who: String, event: SimEvent) {
        match &event {
            SimEvent::Backend(e) => {
                if let BackendEvent::StateChanged { from, to } = e {
                    self.transition(i, Lane::Backend, *from, *to);
                }
                if let BackendEvent::Online(online) = e {
                    self.devices[i].online = *online;
                }
                if matches!(
                    e,
                    BackendEvent::Failed(_)
                        | BackendEvent::ConnectFailed(_)
                        | BackendEvent::BadFrontendState(_)
                ) {
                    self.devices[i].problems.push(format!("backend: {e:?}"));
                }
                if let Some(what) = describe::backend_event(e) {
                    self.say(lane, who, what);
                }
                // QEMU unplugs a device closed with online=0: both directories go.
                let unplugged = matches!(
                    e,
                    BackendEvent::StateChanged {
                        to: XenbusState::Closed,
                        ..
                    }
                ) && !self.devices[i].online
                    && self.devices[i].qemu_backed();
                let domid = self.devices[i].domid;
                let closed_by_driver = matches!(
                    e,
                    BackendEvent::StateChanged {
                        to: XenbusState::Closed,
                        ..
                    }
                ) && !self.devices[i].online
                    && self.devices[i].areas.backend_domid != 0;
                if closed_by_driver {
                    self.driver_removes_backend(i);
                }
                if unplugged && self.store.0.qemu_alive(domid) {
                    let conn = self.domains[&domid].qemu_xs;
                    self.qemu_removes_dirs(i, conn, false);
                    // The device is gone from QEMU: its backend ends here.
                    if let Some(id) = self.devices[i].backend
                        && let SimActor::Backend(b) = self.harness.actor_mut(id)
                    {
                        b.kill();
                    }
                }
            }
            SimEvent::Frontend(e) => {
                if let FrontendEvent::StateChanged { from, to } = e {
                    self.transition(i, Lane::Frontend, *from, *to);
                }
                if matches!(
                    e,
                    FrontendEvent::Failed(_)
                        | FrontendEvent::ConnectFailed(_)
                        | FrontendEvent::BadBackendState(_)
                ) && self.devices[i].phase == Phase::Running
                    && self.backend_alive(i)
                {
                    self.devices[i].problems.push(format!("frontend: {e:?}"));
                }
                if let Some(what) = describe::frontend_event(e) {
                    self.say(lane, who, what);
                }
            }
            SimEvent::Device(e) => {
                self.say(lane, who.clone(), describe::device_event(e));
                match e {
                    DeviceEvent::Created => self.start_ends(i),
                    DeviceEvent::Done(Completion::Added(Ok(_)))
                        if self.devices[i].phase == Phase::Creating =>
                    {
                        self.devices[i].phase = Phase::Running;
                    }
                    DeviceEvent::Done(Completion::Added(Err(err))) => {
                        // libxl undoes a failed add: the device is destroyed (force on).
                        self.devices[i]
                            .notes
                            .push(format!("add failed ({err}), undone"));
                        if self.devices[i].phase == Phase::Creating {
                            self.remove(i, Force::On);
                        }
                    }
                    DeviceEvent::Done(Completion::Removed(removal)) => match &removal.result {
                        Ok(removed) => {
                            self.devices[i].forced |= removed.escalated;
                            self.devices[i].phase = Phase::Removed;
                            self.devices[i].removed_ms = Some(self.elapsed_ms());
                            self.say(lane, who, "removed".into());
                        }
                        Err(err) => {
                            let destroyed = self.domains[&self.devices[i].domid].destroyed;
                            if destroyed && removal.pruned {
                                // Domain destruction goes on past a failed step: the
                                // areas are gone, which is what counts.
                                self.devices[i].phase = Phase::Removed;
                                self.devices[i].removed_ms = Some(self.elapsed_ms());
                                self.devices[i]
                                    .notes
                                    .push(format!("removed despite: {err}"));
                            } else if removal.pruned {
                                self.devices[i].phase = Phase::Removed;
                                self.devices[i].removed_ms = Some(self.elapsed_ms());
                                self.devices[i]
                                    .notes
                                    .push(format!("removed despite: {err}"));
                            } else if !self.devices[i].forced_retry {
                                // As after a failed `xl block-detach`: the toolstack destroys
                                // the device (force on), which leaves nothing behind.
                                self.devices[i].forced_retry = true;
                                self.devices[i]
                                    .notes
                                    .push(format!("removal failed ({err}), destroyed"));
                                self.devices[i].phase = Phase::Running;
                                self.remove(i, Force::On);
                            } else {
                                self.devices[i]
                                    .problems
                                    .push(format!("removal failed: {err}"));
                            }
                        }
                    },
                    _ => {}
                }
            }
            SimEvent::Media(result) => self.medium_changed(i, lane, who, result),
            _ => {}
        }
        if self.devices[i].connected_ms.is_none() && self.both_connected(i) {
            self.devices[i].connected_ms = Some(self.elapsed_ms());
        }
    }

    pub(super) fn transition(&mut self, i: usize, lane: Lane, from: XenbusState, to: XenbusState) {
        let legal = match lane {
            Lane::Backend => xsio_xenbus::backend_transition_allowed(from, to),
            _ => xsio_xenbus::frontend_transition_allowed(from, to),
        };
        if !legal {
            self.devices[i]
                .problems
                .push(format!("{} moved {from} -> {to}", lane.name()));
        }
        self.devices[i].history.push((lane, to));
    }

    /// The state of the backend and frontend of device `i`, when they run (a machine whose
    /// process died counts as not running).
    pub(crate) fn states(&self, i: usize) -> (Option<XenbusState>, Option<XenbusState>) {
        let d = &self.devices[i];
        let backend = d.backend.and_then(|id| match self.harness.actor(id) {
            SimActor::Backend(b) if b.is_alive() => Some(b.inner().state()),
            _ => None,
        });
        let frontend = d.frontend.and_then(|id| match self.harness.actor(id) {
            SimActor::Frontend(f) if f.is_alive() => Some(f.inner().state()),
            _ => None,
        });
        (backend, frontend)
    }

    pub(super) fn both_connected(&self, i: usize) -> bool {
        self.states(i) == (Some(XenbusState::Connected), Some(XenbusState::Connected))
    }

    /// Whether the process that serves device `i`'s backend runs (QEMU, a driver domain).
    pub(crate) fn backend_process_alive(&self, i: usize) -> bool {
        let d = &self.devices[i];
        let driver = d.areas.backend_domid;
        if driver != 0 {
            self.drivers.get(&driver).is_some_and(|dd| dd.alive)
        } else {
            !d.qemu_backed() || self.store.0.qemu_alive(d.domid)
        }
    }

    /// Whether `owner` is one of the toolstack's operations.
    pub(super) fn is_toolstack(&self, owner: Owner) -> bool {
        let Owner::Actor(actor) = owner else {
            return false;
        };
        matches!(
            self.roles.get(actor.index()),
            Some(Role::Device(_, Lane::Toolstack) | Role::Domain(..))
        )
    }

    /// The conflict fault: another dom0 process rewrites `path` with the value it reads
    /// there, inside its own transaction (so it never writes a stale value: a change in
    /// between makes its own commit conflict, and it gives up). The toolstack's open
    /// transaction read `path`, so its commit conflicts.
    pub(super) fn meddle(&mut self, path: &str) -> Result<(), HarnessError> {
        let (store, harness, conn) = (&mut self.store.1, &mut self.harness, self.meddler);
        let Ok(Response::Tx(tx)) = store.call(harness, conn, |c, now| c.transaction_start(now))?
        else {
            return Ok(());
        };
        let value = match store.call(harness, conn, |c, now| c.read(now, Some(tx), path))? {
            Ok(Response::Value(value)) => Some(value),
            _ => None,
        };
        if let Some(value) = &value {
            let value = value.clone();
            let _ = store.call(harness, conn, |c, now| c.write(now, Some(tx), path, value))?;
        }
        let commit = value.is_some();
        let ended = store.call(harness, conn, |c, now| c.transaction_end(now, tx, commit))?;
        if commit && ended.is_ok() {
            self.say(
                Lane::Xenstore,
                "another dom0 process".into(),
                format!("(fault) rewrites {path}, under the toolstack's transaction"),
            );
        }
        Ok(())
    }
}
