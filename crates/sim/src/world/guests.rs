//! The toolstack's work on whole guests and their QEMUs: starting the device model,
//! saving and resuming it, a user's pause, destruction, and what QEMU's xen-bus does to
//! xenstore (an unplugged device's directories, every device's on `quit`).

use std::collections::BTreeMap;

use xsio_device::{Force, MultiDev, MultiEvent};
use xsio_dm::{
    Action as DmAction, Control, ControlConfig, Save, SaveConfig, Shutdown, ShutdownConfig,
    StartConfig, StartUp,
};
use xsio_harness::{Conn, HarnessError};
use xsio_ops::{DomainState, Op, ProcessExit, Txn, TxnOp, XsOp};

use super::{Phase, Role, Sim, SimActor, SimEvent, ToolOp, device_config};
use crate::qemu::Tray;
use crate::scenario::{Action, DeviceKind};
use crate::trace::Lane;

impl Sim {
    /// Starts guest `domid`'s QEMU (once): the process, then `xsio-dm`'s start-up.
    pub(super) fn start_qemu(&mut self, domid: u32) {
        let Some(dom) = self.domains.get_mut(&domid) else {
            return;
        };
        if dom.qemu_started || dom.destroyed {
            return;
        }
        dom.qemu_started = true;
        let qmp = dom.qmp;
        let trays: BTreeMap<String, Tray> = self
            .by_domain
            .get(&domid)
            .into_iter()
            .flatten()
            .filter(|&&i| self.devices[i].kind == Some(DeviceKind::Cdrom))
            .map(|&i| {
                let d = &self.devices[i];
                let params = match &d.ends {
                    super::Ends::Block(block) => block.params.clone(),
                    super::Ends::Vif { .. } | super::Ends::Display { .. } => String::new(),
                };
                let medium = (!params.is_empty()).then_some(params);
                let tray = Tray {
                    open: false,
                    medium,
                    from_fd: None,
                };
                // QEMU names the drive as libxl's command line does: `ide-<devid>`.
                (xsio_cdrom::drive_id(d.areas.devid), tray)
            })
            .collect();
        self.store.0.spawn_qemu(domid, qmp, "prelaunch", trays);
        self.say(
            Lane::Qemu,
            format!("qemu d{domid}"),
            "started (-S: prelaunch), QMP socket pre-opened".into(),
        );
        let start = StartUp::new(StartConfig::fresh(), self.harness.now());
        self.add_op(Role::Domain(domid, "dm"), qmp, SimActor::Start(start));
    }

    /// A step on a whole domain; `on_command`: a crash waits for that QMP command.
    pub(super) fn domain_action(
        &mut self,
        domid: u32,
        action: Action,
        on_command: Option<&str>,
    ) -> Result<(), HarnessError> {
        let Some(dom) = self.domains.get(&domid) else {
            return Ok(());
        };
        let (qmp, destroyed) = (dom.qmp, dom.destroyed);
        let who = format!("toolstack d{domid}");
        if destroyed && action != Action::CrashQemu {
            self.say(
                Lane::Toolstack,
                who,
                format!("{action:?}: domain destroyed, skipped"),
            );
            return Ok(());
        }
        let now = self.harness.now();
        match action {
            Action::Save => {
                let save = Save::new(
                    SaveConfig::to(format!("/var/lib/xen/qemu-save.{domid}")),
                    now,
                );
                self.say(Lane::Toolstack, who, "save the device model".into());
                self.add_op(Role::Domain(domid, "dm"), qmp, SimActor::Save(save));
            }
            Action::Resume => {
                let cont = Control::new(ControlConfig::new(DmAction::Resume), now);
                self.say(Lane::Toolstack, who, "resume the device model".into());
                self.add_op(Role::Domain(domid, "dm"), qmp, SimActor::Control(cont));
            }
            Action::Pause | Action::Unpause => {
                let state = if action == Action::Pause {
                    DomainState::Paused
                } else {
                    DomainState::Running
                };
                self.store.0.domains.insert(domid, state);
                self.say(
                    Lane::Toolstack,
                    who,
                    format!("(user) domain {state:?}, QEMU stays"),
                );
            }
            Action::CrashQemu if let Some(name) = on_command => {
                self.say(
                    Lane::Qemu,
                    format!("qemu d{domid}"),
                    format!("(fault) will crash on the next {name}"),
                );
                self.store.0.crash_on.insert(domid, name.to_owned());
            }
            Action::CrashQemu => {
                self.say(
                    Lane::Qemu,
                    format!("qemu d{domid}"),
                    "(fault) crashes".into(),
                );
                self.store
                    .0
                    .exit(&mut self.harness, domid, ProcessExit::Signalled(11))?;
            }
            Action::Destroy => self.destroy(domid),
            Action::Create
            | Action::Remove
            | Action::Insert
            | Action::Eject
            | Action::CrashDomain => {}
        }
        Ok(())
    }

    /// Domain destruction: the guest stops (its frontends with it), QEMU is told to quit,
    /// and every device is removed with force ON, at the same time.
    pub(super) fn destroy(&mut self, domid: u32) {
        let Some(dom) = self.domains.get_mut(&domid) else {
            return;
        };
        dom.destroyed = true;
        let (qmp, started) = (dom.qmp, dom.qemu_started);
        self.store.0.domains.insert(domid, DomainState::Dying);
        self.say(
            Lane::Toolstack,
            format!("toolstack d{domid}"),
            "destroy: the guest is dying; quit QEMU and remove every device (force on)".into(),
        );
        for &i in self.by_domain.get(&domid).into_iter().flatten() {
            if let Some(id) = self.devices[i].frontend
                && let SimActor::Frontend(f) = self.harness.actor_mut(id)
            {
                f.kill();
            }
        }
        let now = self.harness.now();
        if started && self.store.0.qemu_alive(domid) {
            let quit = Shutdown::new(ShutdownConfig::default(), now);
            self.add_op(Role::Domain(domid, "dm"), qmp, SimActor::Shutdown(quit));
        }
        let all = MultiDev::remove_all(device_config(), domid, Force::On, now);
        let toolstack = self.toolstack;
        self.add_op(
            Role::Domain(domid, "destroy"),
            toolstack,
            SimActor::Destroy(all),
        );
        for &i in self.by_domain.get(&domid).into_iter().flatten() {
            if matches!(self.devices[i].phase, Phase::Running | Phase::Creating) {
                self.devices[i].phase = Phase::Removing;
            }
        }
    }

    /// QEMU answered `quit`: its xen-bus removes the directories of the devices it serves,
    /// then the process exits.
    pub(super) fn qemu_quits(&mut self, domid: u32) -> Result<(), HarnessError> {
        let conn = self.domains[&domid].qemu_xs;
        let mine: Vec<usize> = self
            .by_domain
            .get(&domid)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| self.devices[i].qemu_backed() && self.backend_alive(i))
            .collect();
        let mut pending = 0;
        for i in mine {
            pending += self.qemu_removes_dirs(i, conn, true);
        }
        if pending == 0 {
            self.store
                .0
                .exit(&mut self.harness, domid, ProcessExit::Exited(0))?;
        } else if let Some(dom) = self.domains.get_mut(&domid) {
            dom.quit_removals = Some(pending);
        }
        Ok(())
    }

    /// QEMU's xen-bus removes both directories of device `i` (as QEMU does after an
    /// unplug and on its clean exit: `peer_xen_qemu_backend` shows it), each only if it is
    /// still there. Returns the requests made.
    pub(super) fn qemu_removes_dirs(&mut self, i: usize, conn: Conn, quitting: bool) -> usize {
        let d = &self.devices[i];
        let domid = d.domid;
        let name = self.device_name(i);
        // The frontend's directory first, then the backend's (`testdata/xen-qemu/`).
        let paths = [d.areas.frontend_path(), d.areas.backend_path()];
        let late_write = (!quitting && self.scenario.faults.qemu_late_write)
            .then(|| format!("{}/state", d.areas.backend_path()));
        self.say(
            Lane::Qemu,
            format!("qemu {name}"),
            "xen-bus: device gone, removing its frontend and backend directories".into(),
        );
        let mut txns = Vec::new();
        if let Some(state) = late_write {
            // QEMU 7.2 writes Closed a second time, unguarded, before its deletion
            // (`testdata/xen-qemu/unplug.txt`): landing after the toolstack's prune, it
            // recreates the parents, which QEMU's deletion of the device leaves behind.
            txns.push(Txn {
                only_if_exists: None,
                ops: vec![TxnOp::write(state, "6")],
            });
        }
        for path in &paths {
            txns.push(Txn {
                only_if_exists: Some(path.clone()),
                ops: vec![TxnOp::Rm { path: path.clone() }],
            });
        }
        let n = txns.len();
        for txn in txns {
            let id = self.harness.submit(conn, Op::Xs(XsOp::Transaction(txn)));
            self.tool_ops
                .insert(id, ToolOp::QemuRemove { domid, quitting });
        }
        n
    }

    pub(super) fn backend_alive(&self, i: usize) -> bool {
        self.devices[i]
            .backend
            .is_some_and(|id| match self.harness.actor(id) {
                SimActor::Backend(b) => b.is_alive(),
                _ => false,
            })
    }

    /// QEMU of `domid` is gone: its backends stop where they are.
    pub(super) fn qemu_gone(&mut self, domid: u32, exit: Option<ProcessExit>) {
        if let Some(dom) = self.domains.get_mut(&domid) {
            dom.qemu_exit = exit;
        }
        for &i in self.by_domain.get(&domid).into_iter().flatten() {
            if !self.devices[i].qemu_backed() {
                continue;
            }
            if let Some(id) = self.devices[i].backend
                && let SimActor::Backend(b) = self.harness.actor_mut(id)
            {
                b.kill();
            }
        }
    }

    pub(super) fn domain_event(&mut self, domid: u32, who: String, event: SimEvent) {
        let outcome = match &event {
            SimEvent::Start(result) => Some(match result {
                Ok(ready) => format!("start-up: ready ({})", ready.status),
                Err(err) => format!("start-up failed: {err}"),
            }),
            SimEvent::Save(result) => Some(match result {
                Ok(saved) => format!("save: done (fd set {})", saved.fdset_id),
                Err(err) => format!("save failed: {err}"),
            }),
            SimEvent::Control(result) => Some(match result {
                Ok(()) => "resume: the guest runs".to_owned(),
                Err(err) => format!("resume failed: {err}"),
            }),
            SimEvent::Shutdown(result) => Some(match result {
                Ok(stopped) => format!(
                    "shutdown: QEMU gone ({}{})",
                    stopped
                        .exit
                        .as_ref()
                        .map_or("status unknown".into(), ToString::to_string),
                    if stopped.killed { ", killed" } else { "" }
                ),
                Err(err) => format!("shutdown failed: {err}"),
            }),
            SimEvent::Destroy(MultiEvent::Done(result)) => Some(match result {
                Ok(done) if done.is_ok() => {
                    format!("destroy: {} device(s) removed", done.devices.len())
                }
                Ok(done) => format!(
                    "destroy: done with errors ({} device(s))",
                    done.devices.len()
                ),
                Err(err) => format!("destroy failed: {err}"),
            }),
            _ => None,
        };
        match &event {
            SimEvent::Start(Ok(_)) => {
                // libxl unpauses the guest once QEMU is up: `cont`.
                if let Some(dom) = self.domains.get(&domid)
                    && !dom.destroyed
                {
                    let qmp = dom.qmp;
                    let cont =
                        Control::new(ControlConfig::new(DmAction::Resume), self.harness.now());
                    self.add_op(Role::Domain(domid, "dm"), qmp, SimActor::Control(cont));
                }
            }
            SimEvent::Destroy(MultiEvent::Device { device, event }) => {
                let i = self
                    .by_domain
                    .get(&domid)
                    .into_iter()
                    .flatten()
                    .copied()
                    .find(|&i| {
                        self.devices[i].areas.devid == device.devid
                            && self.devices[i].areas.frontend_kind == device.kind
                    });
                if let Some(i) = i {
                    let name = self.device_name(i);
                    let lane = Lane::Toolstack;
                    self.device_event(
                        i,
                        lane,
                        format!("toolstack {name}"),
                        SimEvent::Device(event.clone()),
                    );
                }
                return;
            }
            SimEvent::Destroy(MultiEvent::Done(Ok(_))) => {
                self.store.0.domains.insert(domid, DomainState::Dead);
            }
            _ => {}
        }
        if let Some(outcome) = outcome {
            self.say(Lane::Toolstack, who, outcome.clone());
            if let Some(dom) = self.domains.get_mut(&domid) {
                dom.outcomes.push(outcome);
            }
        } else if let SimEvent::Destroy(MultiEvent::Found { devices, .. }) = &event {
            self.say(
                Lane::Toolstack,
                who,
                format!("destroy: found {} device(s)", devices.len()),
            );
        }
    }
}
