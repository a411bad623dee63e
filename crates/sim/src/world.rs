//! One simulated host: the toolstack (`xsio-device` adds and removals, `xsio-dm` device
//! model operations), each guest's QEMU (its QMP monitor in `host`, its qdisk backends
//! here, on its own xenstore connection), dom0's blkback backends, and the guests'
//! frontends, on the in-process xenstored, driven by a scenario and a seed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use xsio_cdrom::{CdromError, Changed, MediaChange};
use xsio_core::OpId;
use xsio_device::{Config, Device, DeviceEvent, DeviceOp, Force, MultiDev, MultiEvent};
use xsio_dm::{
    Control, ControlError, Ready, Save, SaveError, Saved, Shutdown, ShutdownError, StartError,
    StartUp, Stopped,
};
use xsio_harness::{ActorId, Conn, Harness, HarnessError, Owner, Record, Store, XenstoredStore};
use xsio_ops::{DomainState, Op, OpError, PeerEvent, ProcessExit, Reply, TxnOp, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, Mode};
use xsio_xenbus::{Backend, BackendEvent, DeviceAreas, Frontend, FrontendEvent, XenbusState};
use xsio_xenstored::Origin;

mod devices;
mod drivers;
mod ends;
mod guests;
mod media;

use crate::describe;
use crate::gate::Gated;
use crate::host::{Notice, ScriptFaults, SimHost};
use crate::scenario::{Action, DeviceKind, Scenario};
use crate::trace::{Lane, Trace};
use ends::Ends;

xsio_harness::actors! {
    /// Every machine of a simulated host.
    #[derive(Debug)]
    pub(crate) enum SimActor / SimEvent {
        Backend(Gated<Backend>, BackendEvent),
        Frontend(Gated<Frontend>, FrontendEvent),
        Device(DeviceOp, DeviceEvent),
        Destroy(MultiDev, MultiEvent),
        Start(StartUp, Result<Ready, StartError>),
        Save(Save, Result<Saved, SaveError>),
        Control(Control, Result<(), ControlError>),
        Shutdown(Shutdown, Result<Stopped, ShutdownError>),
        Media(MediaChange, Result<Changed, CdromError>),
    }
}

/// The most world steps one run may take before it counts as stuck.
const MAX_STEPS: usize = 1_000_000;
/// The steps a run may take per device, when that is more (scale-10000.toml takes about
/// 60).
const STEPS_PER_DEVICE: usize = 400;

/// Where a device is in its life, as the toolstack sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not created yet.
    Absent,
    /// Being added (`xsio-device`'s add: the toolstack entry and both directories, the
    /// wait for the backend, the hotplug script).
    Creating,
    /// Created; backend and frontend run.
    Running,
    /// Being removed (`xsio-device`'s removal: the request, the waits, the prune).
    Removing,
    /// Gone.
    Removed,
}

/// A device of the simulated host and what happened to it.
#[derive(Debug)]
pub(crate) struct SimDevice {
    /// The guest.
    pub(crate) domid: u32,
    /// The guest's name for a block device (a step names it).
    pub(crate) vdev: Option<Vbd>,
    /// Its name in traces: `xvda`, `vif0`.
    pub(crate) name: String,
    /// What it is (`None`: a network interface).
    pub(crate) kind: Option<DeviceKind>,
    /// Its directories.
    pub(crate) areas: DeviceAreas,
    /// Where it is.
    pub(crate) phase: Phase,
    /// Whether the guest ignores it (a seeded fault): no frontend runs.
    pub(crate) silent: bool,
    /// The removal timed out with force auto and went on with force on (the frontend
    /// directory removed under a guest that did not answer).
    pub(crate) forced: bool,
    /// Every state each end moved to, in order.
    pub(crate) history: Vec<(Lane, XenbusState)>,
    /// When both ends were first Connected, and when the areas were gone (virtual ms).
    pub(crate) connected_ms: Option<u64>,
    /// When the areas were removed (virtual ms).
    pub(crate) removed_ms: Option<u64>,
    /// Failures the machines reported, or illegal transitions.
    pub(crate) problems: Vec<String>,
    /// What the toolstack noted (a failed add undone, a removal's outcome).
    pub(crate) notes: Vec<String>,
    pub(crate) ends: Ends,
    /// The backend's last `online`.
    online: bool,
    /// Whether a failed removal was followed by a destruction with force on.
    forced_retry: bool,
    pub(crate) backend: Option<ActorId>,
    frontend: Option<ActorId>,
}

impl SimDevice {
    fn new(
        domid: u32,
        vdev: Option<Vbd>,
        name: String,
        kind: Option<DeviceKind>,
        areas: DeviceAreas,
        silent: bool,
        ends: Ends,
    ) -> SimDevice {
        SimDevice {
            domid,
            vdev,
            name,
            kind,
            areas,
            phase: Phase::Absent,
            silent,
            forced: false,
            history: Vec::new(),
            connected_ms: None,
            removed_ms: None,
            problems: Vec::new(),
            notes: Vec::new(),
            ends,
            online: true,
            forced_retry: false,
            backend: None,
            frontend: None,
        }
    }

    /// The hotplug script the toolstack names in the backend directory.
    fn script(&self) -> Option<&'static str> {
        match (self.kind, &self.ends) {
            (Some(DeviceKind::Phy), _) => Some("/etc/xen/scripts/block"),
            (_, Ends::Vif { .. }) => Some("/etc/xen/scripts/vif-bridge"),
            _ => None,
        }
    }

    /// Whether QEMU provides the backend (qdisk, vfb, vkbd).
    pub(crate) fn qemu_backed(&self) -> bool {
        xsio_device::QEMU_BACKEND_KINDS.contains(&self.areas.backend_kind.as_str())
    }

    pub(crate) fn device(&self) -> Device {
        let a = &self.areas;
        Device::new(a.frontend_kind.clone(), a.frontend_domid, a.devid)
            .with_backend(a.backend_domid, a.backend_kind.clone())
    }
}

/// A guest and its device model.
#[derive(Debug)]
pub(crate) struct SimDomain {
    pub(crate) domid: u32,
    /// The frontends' connection.
    guest: Conn,
    /// The machines that drive its QEMU over QMP.
    qmp: Conn,
    /// QEMU's own xenstore connection (its xen-bus: the qdisk backends).
    qemu_xs: Conn,
    /// Whether its QEMU was started.
    pub(crate) qemu_started: bool,
    /// How QEMU ended, once it did.
    pub(crate) qemu_exit: Option<ProcessExit>,
    /// Whether it is being (or was) destroyed.
    pub(crate) destroyed: bool,
    /// Removals QEMU's xen-bus still has to finish before the process exits (after `quit`).
    quit_removals: Option<usize>,
    /// The results of its device model operations and its destruction, in order.
    pub(crate) outcomes: Vec<String>,
}

/// A driver domain: it runs backends (blkback, netback) for the guests' devices.
#[derive(Debug)]
pub(crate) struct SimDriver {
    /// Its xenstore connection (its backends' and its own toolstack's).
    pub(crate) conn: Conn,
    /// Whether it still runs.
    pub(crate) alive: bool,
}

/// What an actor is, for the trace and the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// An end of device `i` or the toolstack's operation on it.
    Device(usize, Lane),
    /// A toolstack operation on a whole domain (device model, destruction).
    Domain(u32, &'static str),
}

/// What one of the world's own xenstore requests was for.
#[derive(Clone, Copy, Debug)]
enum ToolOp {
    /// QEMU's xen-bus removing a device's directories (after an unplug, or on `quit`).
    QemuRemove { domid: u32, quitting: bool },
    /// A driver domain removing the backend directory of a device it closed.
    DriverRemove { domid: u32 },
}

/// A simulated host running one scenario under one seed.
pub(crate) struct Sim {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    rng: ChaCha8Rng,
    pub(crate) harness: Harness<SimActor>,
    /// The host (domains, scripts, QEMUs) in front of the xenstored core.
    pub(crate) store: (SimHost, XenstoredStore),
    toolstack: Conn,
    /// dom0's blkback.
    blkback: Conn,
    /// Another dom0 process, rewriting what the toolstack's transactions read (the
    /// conflict fault).
    meddler: Conn,
    pub(crate) domains: BTreeMap<u32, SimDomain>,
    pub(crate) drivers: BTreeMap<u32, SimDriver>,
    pub(crate) devices: Vec<SimDevice>,
    steps: VecDeque<crate::scenario::Step>,
    tool_ops: BTreeMap<OpId, ToolOp>,
    /// Actor → its role (indexed by `ActorId::index`).
    roles: Vec<Role>,
    /// Completions each toolstack operation reported (indexed like `roles`; `None` for
    /// the ends of devices).
    pub(crate) completions: Vec<Option<u32>>,
    /// Domain → its devices' indices.
    by_domain: BTreeMap<u32, Vec<usize>>,
    pub(crate) trace: Trace,
    pub(crate) steps_taken: usize,
    /// The most nodes xenstored held at the end of a step.
    pub(crate) peak_nodes: usize,
}

impl Sim {
    /// A host with the scenario's domains introduced and running, nothing created yet.
    pub(crate) fn new(scenario: Scenario, seed: u64, epoch: Instant) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = XenstoredStore::new(epoch);
        let mut harness = Harness::new(epoch);
        let toolstack = store.connect_dom0(&mut harness);
        let blkback = store.connect_dom0(&mut harness);
        let meddler = store.connect_dom0(&mut harness);
        let f = scenario.faults;
        let mut host = SimHost::new(
            seed,
            f.qemu_crash,
            ScriptFaults {
                slow: f.script_slow,
                slow_ms: f.slow_script_ms,
                fail: f.script_fail,
                hang: f.script_hang,
            },
        );
        let mut domains = BTreeMap::new();
        let mut devices = Vec::new();
        for domain in &scenario.domains {
            store.server().introduce_domain(epoch, domain.domid);
            let guest = store.connect(&mut harness, Origin::Domain(domain.domid));
            let qmp = store.connect_dom0(&mut harness);
            let qemu_xs = store.connect_dom0(&mut harness);
            host.domains.insert(domain.domid, DomainState::Running);
            domains.insert(
                domain.domid,
                SimDomain {
                    domid: domain.domid,
                    guest,
                    qmp,
                    qemu_xs,
                    qemu_started: false,
                    qemu_exit: None,
                    destroyed: false,
                    quit_removals: None,
                    outcomes: Vec::new(),
                },
            );
            for dev in &domain.devices {
                let (kind, mode) = match dev.kind {
                    DeviceKind::Disk | DeviceKind::Phy => (BlockKind::Disk, Mode::ReadWrite),
                    DeviceKind::Cdrom => (BlockKind::Cdrom, Mode::ReadOnly),
                };
                let mut block = BlockDevice::new(kind, dev.vdev, dev.params.clone(), mode);
                block.sectors = 2048;
                let backend_kind = if dev.kind == DeviceKind::Phy {
                    block.backend_type = "phy".into();
                    "vbd"
                } else {
                    "qdisk"
                };
                let areas = DeviceAreas::new(
                    dev.backend,
                    backend_kind,
                    domain.domid,
                    "vbd",
                    block.devid(),
                );
                let silent = chance(&mut rng, scenario.faults.silent_frontend);
                devices.push(SimDevice::new(
                    domain.domid,
                    Some(dev.vdev),
                    dev.vdev.to_string(),
                    Some(dev.kind),
                    areas,
                    silent,
                    Ends::Block(block),
                ));
            }
            if domain.vfb {
                for kind in ["vfb", "vkbd"] {
                    let areas = DeviceAreas::new(0, kind, domain.domid, kind, 0);
                    let silent = chance(&mut rng, scenario.faults.silent_frontend);
                    devices.push(SimDevice::new(
                        domain.domid,
                        None,
                        format!("{kind}0"),
                        None,
                        areas,
                        silent,
                        Ends::Display { kind },
                    ));
                }
            }
            for (devid, vif) in (0u32..).zip(&domain.vifs) {
                let areas = DeviceAreas::new(vif.backend, "vif", domain.domid, "vif", devid);
                let silent = chance(&mut rng, scenario.faults.silent_frontend);
                let mac = format!(
                    "00:16:3e:{:02x}:{:02x}:{:02x}",
                    (domain.domid >> 8) & 0xff,
                    domain.domid & 0xff,
                    devid & 0xff
                );
                devices.push(SimDevice::new(
                    domain.domid,
                    None,
                    format!("vif{devid}"),
                    None,
                    areas,
                    silent,
                    Ends::Vif {
                        mac,
                        bridge: vif.bridge.clone(),
                    },
                ));
            }
        }
        let mut drivers = BTreeMap::new();
        for &domid in &scenario.drivers {
            store.server().introduce_domain(epoch, domid);
            let conn = store.connect(&mut harness, Origin::Domain(domid));
            host.domains.insert(domid, DomainState::Running);
            drivers.insert(domid, SimDriver { conn, alive: true });
        }
        let mut steps: VecDeque<crate::scenario::Step> = scenario.steps.iter().cloned().collect();
        driver_deaths(&scenario, &mut rng, &mut steps);
        let mut by_domain: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            by_domain.entry(d.domid).or_default().push(i);
        }
        Sim {
            scenario,
            seed,
            rng,
            harness,
            store: (host, store),
            toolstack,
            blkback,
            meddler,
            domains,
            drivers,
            devices,
            steps,
            tool_ops: BTreeMap::new(),
            roles: Vec::new(),
            completions: Vec::new(),
            by_domain,
            trace: Trace::default(),
            steps_taken: 0,
            peak_nodes: 0,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.harness.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs the scenario to its end: every step applied and the world quiet.
    pub(crate) fn run(&mut self) -> Result<(), HarnessError> {
        loop {
            self.apply_due_steps()?;
            self.steps_taken += 1;
            // A host of thousands of devices takes hundreds of steps for each.
            let max_steps = MAX_STEPS.max(self.devices.len().saturating_mul(STEPS_PER_DEVICE));
            if self.steps_taken > max_steps {
                return Err(HarnessError::NoProgress(max_steps));
            }
            let mut moved = self.store.step(&mut self.harness)?;
            moved |= self.host_news()?;
            moved |= self.deliver_all()?;
            moved |= self.harness.fire_due_timers();
            self.report()?;
            let nodes = self.store.1.server().node_count();
            self.peak_nodes = self.peak_nodes.max(nodes);
            if moved {
                let jitter = self.scenario.faults.max_jitter_ms;
                if jitter > 0 {
                    let ms = self.rng.next_u64() % (jitter + 1);
                    self.harness.advance(Duration::from_millis(ms));
                }
                continue;
            }
            // Quiet: jump to the next step or deadline, whichever comes first.
            let next_step = self.steps.front().map(|s| s.at_ms);
            let next_step = next_step.and_then(|ms| {
                let wait = Duration::from_millis(ms.saturating_sub(self.elapsed_ms()));
                xsio_core::deadline(self.harness.now(), wait)
            });
            let deadlines = [
                next_step,
                self.harness.next_deadline(),
                Store::<SimActor>::next_deadline(&self.store),
            ];
            let Some(next) = deadlines.into_iter().flatten().min() else {
                return Ok(());
            };
            self.harness.advance_to(next.max(self.harness.now()));
        }
    }

    /// What the host did on its own: QEMU's lines for the trace, QEMU quitting.
    fn host_news(&mut self) -> Result<bool, HarnessError> {
        let seen = std::mem::take(&mut self.store.0.seen);
        let moved = !seen.is_empty();
        for (domid, what) in seen {
            self.say(Lane::Qemu, format!("qemu d{domid}"), what);
        }
        for notice in self.store.0.take_notices() {
            match notice {
                Notice::Quitting(domid) => self.qemu_quits(domid)?,
            }
        }
        Ok(moved)
    }

    /// Hands every waiting answer to its machine: in the order produced, or, with the
    /// `reorder` fault, from a seeded random connection each time.
    fn deliver_all(&mut self) -> Result<bool, HarnessError> {
        let mut moved = false;
        if !self.scenario.faults.reorder {
            while self.harness.deliver()? {
                moved = true;
            }
            return Ok(moved);
        }
        loop {
            let n = self.harness.ready_conns().len();
            if n == 0 {
                return Ok(moved);
            }
            let pick = index(&mut self.rng, n);
            let Some(conn) = self.harness.ready_conns().nth(pick) else {
                return Ok(moved);
            };
            self.harness.deliver_from(conn)?;
            moved = true;
        }
    }

    fn apply_due_steps(&mut self) -> Result<(), HarnessError> {
        while let Some(step) = self.steps.front() {
            if step.at_ms > self.elapsed_ms() {
                return Ok(());
            }
            let Some(step) = self.steps.pop_front() else {
                return Ok(());
            };
            let domains: Vec<u32> = match step.domain {
                Some(domid) => vec![domid],
                None => self.domains.keys().copied().collect(),
            };
            match step.action {
                Action::Create | Action::Remove => {
                    let chosen: Vec<usize> = domains
                        .iter()
                        .flat_map(|domid| self.by_domain.get(domid).into_iter().flatten().copied())
                        .filter(|&i| step.device.is_none_or(|v| Some(v) == self.devices[i].vdev))
                        .collect();
                    if step.action == Action::Create {
                        for &domid in &domains {
                            self.start_qemu(domid);
                        }
                    }
                    for i in chosen {
                        match step.action {
                            Action::Create => self.create(i),
                            _ => self.remove(i, Force::Auto),
                        }
                    }
                }
                Action::CrashDomain => {
                    for domid in domains {
                        self.driver_dies(domid);
                    }
                }
                Action::Insert | Action::Eject => {
                    let cdroms: Vec<usize> = domains
                        .iter()
                        .flat_map(|domid| self.by_domain.get(domid).into_iter().flatten().copied())
                        .filter(|&i| self.devices[i].kind == Some(DeviceKind::Cdrom))
                        .filter(|&i| step.device.is_none_or(|v| Some(v) == self.devices[i].vdev))
                        .collect();
                    let medium = step
                        .medium
                        .clone()
                        .filter(|_| step.action == Action::Insert);
                    for i in cdroms {
                        self.change_medium(i, medium.clone());
                    }
                }
                other => {
                    for domid in domains {
                        self.domain_action(domid, other, step.on_command.as_deref())?;
                    }
                }
            }
            self.report()?;
        }
        Ok(())
    }

    fn say(&mut self, lane: Lane, who: String, what: String) {
        if !self.trace.keeps_lines() {
            self.trace.push(0, lane, String::new(), String::new());
            return;
        }
        let ms = self.elapsed_ms();
        self.trace.push(ms, lane, who, what);
    }

    fn device_name(&self, i: usize) -> String {
        let d = &self.devices[i];
        format!("d{} {}", d.domid, d.name)
    }

    /// Adds a toolstack operation and starts it.
    fn add_op(&mut self, role: Role, conn: Conn, actor: SimActor) -> ActorId {
        let id = self.add_actor(role, conn, actor);
        self.completions[id.index()] = Some(0);
        id
    }

    /// Adds a machine on `conn` and starts it.
    fn add_actor(&mut self, role: Role, conn: Conn, actor: SimActor) -> ActorId {
        let id = self.harness.add(conn, actor);
        debug_assert_eq!(id.index(), self.roles.len());
        self.roles.push(role);
        self.completions.push(None);
        self.harness.drain(id);
        id
    }

    /// Turns the harness's log into trace lines and lets the toolstack react.
    fn report(&mut self) -> Result<(), HarnessError> {
        for record in self.harness.take_log() {
            match record {
                Record::Request { owner, request } => {
                    // Permissions of each node the add writes: noise in a trace.
                    if matches!(
                        request.op,
                        Op::Xs(XsOp::TxnApply {
                            op: TxnOp::SetPerms { .. },
                            ..
                        })
                    ) {
                        continue;
                    }
                    if let Some(what) = describe::request(&request.op) {
                        let (lane, who) = self.who(owner, request.id);
                        self.say(lane, who, what);
                    }
                }
                Record::Reply {
                    owner,
                    id,
                    op,
                    result,
                } => {
                    if let Some(what) = describe::reply(&op, &result) {
                        let (lane, who) = self.who(owner, id);
                        self.say(lane, who, what);
                    }
                    if let (Op::Xs(XsOp::TxnRead { path, .. }), Ok(Reply::Value(Some(_)))) =
                        (&op, &result)
                        && self.is_toolstack(owner)
                        && chance(&mut self.rng, self.scenario.faults.conflicts)
                    {
                        self.meddle(path)?;
                    }
                    if owner == Owner::Caller {
                        self.tool_done(id, result)?;
                    }
                }
                Record::Watch { owner, path, .. } => {
                    let (lane, who) = self.who(owner, OpId::from_raw(u64::MAX));
                    self.say(lane, who, format!("watch fired: {path}"));
                }
                Record::Timeout { actor } => {
                    let (lane, who) = self.who(Owner::Actor(actor), OpId::from_raw(u64::MAX));
                    self.say(lane, who, "timer fired".into());
                }
                Record::Event { actor, event } => self.machine_event(actor, event),
                Record::Peer { conn, event } => {
                    let Some(domid) = self
                        .domains
                        .values()
                        .find(|d| d.qmp == conn)
                        .map(|d| d.domid)
                    else {
                        continue;
                    };
                    self.say(
                        Lane::Qemu,
                        format!("qemu d{domid}"),
                        describe::peer_event(&event),
                    );
                    if let PeerEvent::Exited(exit) = event {
                        self.qemu_gone(domid, exit);
                    }
                }
            }
        }
        Ok(())
    }

    fn tool_done(&mut self, id: OpId, result: Result<Reply, OpError>) -> Result<(), HarnessError> {
        let Some(what) = self.tool_ops.remove(&id) else {
            return Ok(());
        };
        match what {
            ToolOp::DriverRemove { .. } => {}
            ToolOp::QemuRemove { domid, quitting } => {
                if let Err(err) = &result {
                    self.say(
                        Lane::Qemu,
                        format!("qemu d{domid}"),
                        format!("xen-bus removal failed: {err}"),
                    );
                }
                if !quitting {
                    return Ok(());
                }
                let Some(dom) = self.domains.get_mut(&domid) else {
                    return Ok(());
                };
                let left = dom.quit_removals.map_or(0, |n| n.saturating_sub(1));
                dom.quit_removals = Some(left);
                if left == 0 {
                    self.store
                        .0
                        .exit(&mut self.harness, domid, ProcessExit::Exited(0))?;
                }
            }
        }
        Ok(())
    }

    fn who(&self, owner: Owner, id: OpId) -> (Lane, String) {
        match owner {
            Owner::Caller => match self.tool_ops.get(&id) {
                Some(ToolOp::QemuRemove { domid, .. }) => (Lane::Qemu, format!("qemu d{domid}")),
                Some(ToolOp::DriverRemove { domid }) => (Lane::Backend, format!("driver d{domid}")),
                None => (Lane::Toolstack, "toolstack".into()),
            },
            Owner::Actor(actor) => match self.roles.get(actor.index()) {
                Some(Role::Device(i, lane)) => {
                    (*lane, format!("{} {}", lane.name(), self.device_name(*i)))
                }
                Some(Role::Domain(domid, what)) => {
                    (Lane::Toolstack, format!("toolstack d{domid} {what}"))
                }
                None => (Lane::Toolstack, "?".into()),
            },
        }
    }

    fn machine_event(&mut self, actor: ActorId, event: SimEvent) {
        let Some(&role) = self.roles.get(actor.index()) else {
            return;
        };
        let (_, who) = self.who(Owner::Actor(actor), OpId::from_raw(u64::MAX));
        // A dm operation's one event is its completion.
        let completed = matches!(
            &event,
            SimEvent::Device(DeviceEvent::Done(_))
                | SimEvent::Destroy(MultiEvent::Done(_))
                | SimEvent::Start(_)
                | SimEvent::Save(_)
                | SimEvent::Control(_)
                | SimEvent::Shutdown(_)
                | SimEvent::Media(_)
        );
        if completed && let Some(Some(n)) = self.completions.get_mut(actor.index()) {
            *n += 1;
        }
        match role {
            Role::Domain(domid, _) => self.domain_event(domid, who, event),
            Role::Device(i, lane) => self.device_event(i, lane, who, event),
        }
    }
}

/// The toolstack's device configuration: libxl's timeouts, and more commits per
/// transaction than `xsio-device`'s default 16. With QEMU removing its devices'
/// directories as it unplugs them (one short transaction each), a prune (a long
/// transaction that lists every parent up to the root) of many devices unplugged at once
/// conflicts more than 16 times in a row (`many-guests.toml`: 80 devices, seed 0; libxl
/// retries for ever).
fn device_config() -> Config {
    Config {
        transaction_attempts: 256,
        ..Config::default()
    }
}

/// The seeded fault "backend domain death": each driver domain dies with the chance
/// `driver_domain_death`, at a moment drawn between the first and the last step (as a
/// `crash-domain` step added to `steps`). No draw without driver domains, so that the
/// other scenarios' streams stay as they were.
fn driver_deaths(
    scenario: &Scenario,
    rng: &mut ChaCha8Rng,
    steps: &mut VecDeque<crate::scenario::Step>,
) {
    let first = scenario.steps.first().map_or(0, |s| s.at_ms);
    let last = scenario.steps.last().map_or(0, |s| s.at_ms);
    for &domid in &scenario.drivers {
        if !chance(rng, scenario.faults.driver_domain_death) {
            continue;
        }
        let span = usize::try_from(last - first).unwrap_or(usize::MAX);
        let at_ms = first + index(rng, span.saturating_add(1)) as u64;
        let at = steps
            .iter()
            .position(|s| s.at_ms > at_ms)
            .unwrap_or(steps.len());
        let death = crate::scenario::Step {
            at_ms,
            action: Action::CrashDomain,
            domain: Some(domid),
            device: None,
            medium: None,
            on_command: None,
        };
        steps.insert(at, death);
    }
}

/// True with probability `p` (0 to 1), from the seeded stream.
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    // 53 random bits make a uniform f64 in [0, 1).
    let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    x < p
}

/// A uniform index below `n` (n > 0), from the seeded stream.
pub(crate) fn index(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}
