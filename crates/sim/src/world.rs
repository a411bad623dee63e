//! One simulated host: the toolstack, the backends (in dom0, as QEMU runs them) and the
//! guests' frontends on the in-process xenstored, driven by a scenario and a seed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use xsio_core::OpId;
use xsio_device::{Completion, Config, Device, DeviceEvent, DeviceOp, Force};
use xsio_harness::{
    ActorId, Conn, FixedHost, Harness, HarnessError, Owner, Record, Store, XenstoredStore,
};
use xsio_ops::{Op, OpError, Reply, Txn, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Backend, BackendEvent, DeviceAreas, Frontend, FrontendEvent, XenbusState};
use xsio_xenstored::Origin;

use crate::describe;
use crate::scenario::{Action, DeviceKind, Scenario};
use crate::trace::{Lane, Trace};

xsio_harness::actors! {
    /// Every machine of a simulated host.
    #[derive(Debug)]
    pub(crate) enum SimActor / SimEvent {
        Backend(Backend, BackendEvent),
        Frontend(Frontend, FrontendEvent),
        Removal(DeviceOp, DeviceEvent),
    }
}

/// The most world steps one run may take before it counts as stuck.
const MAX_STEPS: usize = 1_000_000;

/// Where a device is in its life, as the toolstack sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not created yet.
    Absent,
    /// Its areas are being written.
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
    /// The guest's name for it.
    pub(crate) vdev: Vbd,
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
    block: BlockDevice,
    backend: Option<ActorId>,
    frontend: Option<ActorId>,
    removal: Option<ActorId>,
}

/// What one of the toolstack's own transactions was for.
#[derive(Clone, Copy, Debug)]
enum ToolOp {
    Create(usize),
}

/// A simulated host running one scenario under one seed.
pub(crate) struct Sim {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    rng: ChaCha8Rng,
    pub(crate) harness: Harness<SimActor>,
    /// The host (running guests, live device models) in front of the xenstored core.
    pub(crate) store: (FixedHost, XenstoredStore),
    toolstack: Conn,
    backends: Conn,
    guests: BTreeMap<u32, Conn>,
    pub(crate) devices: Vec<SimDevice>,
    steps: VecDeque<crate::scenario::Step>,
    tool_ops: BTreeMap<OpId, ToolOp>,
    /// Actor → its device and lane (indexed by `ActorId::index`).
    roles: Vec<(usize, Lane)>,
    /// Domain → its devices' indices.
    by_domain: BTreeMap<u32, Vec<usize>>,
    pub(crate) trace: Trace,
    pub(crate) steps_taken: usize,
}

impl Sim {
    /// A host with the scenario's domains introduced, nothing created yet.
    pub(crate) fn new(scenario: Scenario, seed: u64, epoch: Instant) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = XenstoredStore::new(epoch);
        let mut harness = Harness::new(epoch);
        let toolstack = store.connect_dom0(&mut harness);
        let backends = store.connect_dom0(&mut harness);
        let mut guests = BTreeMap::new();
        let mut devices = Vec::new();
        for domain in &scenario.domains {
            store.server().introduce_domain(epoch, domain.domid);
            guests.insert(
                domain.domid,
                store.connect(&mut harness, Origin::Domain(domain.domid)),
            );
            for dev in &domain.devices {
                let (kind, mode) = match dev.kind {
                    DeviceKind::Disk => (BlockKind::Disk, Mode::ReadWrite),
                    DeviceKind::Cdrom => (BlockKind::Cdrom, Mode::ReadOnly),
                };
                let mut block = BlockDevice::new(kind, dev.vdev, dev.params.clone(), mode);
                block.sectors = 2048;
                let silent = chance(&mut rng, scenario.faults.silent_frontend);
                devices.push(SimDevice {
                    domid: domain.domid,
                    vdev: dev.vdev,
                    areas: block.areas(0, domain.domid),
                    phase: Phase::Absent,
                    silent,
                    forced: false,
                    history: Vec::new(),
                    connected_ms: None,
                    removed_ms: None,
                    problems: Vec::new(),
                    block,
                    backend: None,
                    frontend: None,
                    removal: None,
                });
            }
        }
        let steps = scenario.steps.iter().cloned().collect();
        let mut by_domain: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            by_domain.entry(d.domid).or_default().push(i);
        }
        Sim {
            scenario,
            seed,
            rng,
            harness,
            store: (FixedHost::default(), store),
            toolstack,
            backends,
            guests,
            devices,
            steps,
            tool_ops: BTreeMap::new(),
            roles: Vec::new(),
            by_domain,
            trace: Trace::default(),
            steps_taken: 0,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.harness.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs the scenario to its end: every step applied and the world quiet.
    pub(crate) fn run(&mut self) -> Result<(), HarnessError> {
        loop {
            self.apply_due_steps();
            self.steps_taken += 1;
            if self.steps_taken > MAX_STEPS {
                return Err(HarnessError::NoProgress(MAX_STEPS));
            }
            let mut moved = self.store.step(&mut self.harness)?;
            moved |= self.deliver_all()?;
            moved |= self.harness.fire_due_timers();
            self.report();
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
                self.harness
                    .now()
                    .checked_add(Duration::from_millis(ms.saturating_sub(self.elapsed_ms())))
            });
            let next = match (next_step, self.harness.next_deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return Ok(()),
                },
            };
            self.harness.advance_to(next);
        }
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

    fn apply_due_steps(&mut self) {
        while let Some(step) = self.steps.front() {
            if step.at_ms > self.elapsed_ms() {
                return;
            }
            let Some(step) = self.steps.pop_front() else {
                return;
            };
            let domains: Vec<u32> = match step.domain {
                Some(domid) => vec![domid],
                None => self.by_domain.keys().copied().collect(),
            };
            let chosen: Vec<usize> = domains
                .iter()
                .flat_map(|domid| self.by_domain.get(domid).into_iter().flatten().copied())
                .filter(|&i| step.device.is_none_or(|v| v == self.devices[i].vdev))
                .collect();
            for i in chosen {
                match step.action {
                    Action::Create => self.create(i),
                    Action::Remove => self.remove(i),
                }
            }
            self.report();
        }
    }

    fn say(&mut self, lane: Lane, who: String, what: String) {
        let ms = self.elapsed_ms();
        self.trace.push(ms, lane, who, what);
    }

    fn device_name(&self, i: usize) -> String {
        let d = &self.devices[i];
        format!("d{} {}", d.domid, d.vdev)
    }

    fn tool_txn(&mut self, what: ToolOp, txn: Txn) {
        let id = self
            .harness
            .submit(self.toolstack, Op::Xs(XsOp::Transaction(txn)));
        self.tool_ops.insert(id, what);
    }

    fn create(&mut self, i: usize) {
        if self.devices[i].phase != Phase::Absent {
            let name = self.device_name(i);
            self.say(
                Lane::Toolstack,
                format!("toolstack {name}"),
                "create: already exists, skipped".into(),
            );
            return;
        }
        let d = &self.devices[i];
        let txn = d.areas.create(
            &d.block.toolstack_backend_keys(),
            &d.block.toolstack_frontend_keys(),
        );
        let name = self.device_name(i);
        self.say(
            Lane::Toolstack,
            format!("toolstack {name}"),
            format!("add {} (device id {})", d.vdev, d.vdev.number()),
        );
        self.devices[i].phase = Phase::Creating;
        self.tool_txn(ToolOp::Create(i), txn);
    }

    fn remove(&mut self, i: usize) {
        if self.devices[i].phase != Phase::Running {
            let name = self.device_name(i);
            let phase = self.devices[i].phase;
            self.say(
                Lane::Toolstack,
                format!("toolstack {name}"),
                format!("remove: device is {phase:?}, skipped"),
            );
            return;
        }
        let areas = &self.devices[i].areas;
        let device = Device::new(
            areas.frontend_kind.clone(),
            areas.frontend_domid,
            areas.devid,
        )
        .with_backend(areas.backend_domid, areas.backend_kind.clone());
        self.devices[i].phase = Phase::Removing;
        let op = DeviceOp::remove(Config::default(), device, Force::Auto, self.harness.now());
        let id = self.add_actor(i, Lane::Toolstack, self.toolstack, SimActor::Removal(op));
        self.devices[i].removal = Some(id);
    }

    /// Adds a machine of device `i` on `conn` and starts it.
    fn add_actor(&mut self, i: usize, lane: Lane, conn: Conn, actor: SimActor) -> ActorId {
        let id = self.harness.add(conn, actor);
        debug_assert_eq!(id.index(), self.roles.len());
        self.roles.push((i, lane));
        self.harness.drain(id);
        id
    }

    fn start_machines(&mut self, i: usize) {
        let d = &self.devices[i];
        let now = self.harness.now();
        let backend = Backend::new(d.block.backend_config(d.areas.clone()), now);
        let id = self.add_actor(i, Lane::Backend, self.backends, SimActor::Backend(backend));
        self.devices[i].backend = Some(id);
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
        let transport = BlockTransport {
            ring_ref: 8 + 8 * i as u32,
            event_channel: 20 + i as u32,
            protocol: Some(Protocol::X86_64),
        };
        let frontend = Frontend::new(d.block.frontend_config(d.areas.clone(), &transport), now);
        let conn = self.guests[&d.domid];
        let id = self.add_actor(i, Lane::Frontend, conn, SimActor::Frontend(frontend));
        self.devices[i].frontend = Some(id);
    }

    /// Turns the harness's log into trace lines and lets the toolstack react.
    fn report(&mut self) {
        for record in self.harness.take_log() {
            match record {
                Record::Request { owner, request } => {
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
                    if owner == Owner::Caller {
                        self.tool_done(id, result);
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
                // The simulated hosts have no QEMU on a QMP connection (yet): no peer events.
                Record::Peer { .. } => {}
            }
        }
    }

    fn tool_done(&mut self, id: OpId, result: Result<Reply, OpError>) {
        let Some(what) = self.tool_ops.remove(&id) else {
            return;
        };
        let (i, label) = match what {
            ToolOp::Create(i) => (i, "create"),
        };
        if let Err(err) = &result {
            let name = self.device_name(i);
            self.devices[i]
                .problems
                .push(format!("{label} failed: {err}"));
            self.say(
                Lane::Toolstack,
                format!("toolstack {name}"),
                format!("{label} failed: {err}"),
            );
            return;
        }
        match what {
            ToolOp::Create(i) => {
                self.devices[i].phase = Phase::Running;
                self.start_machines(i);
            }
        }
        self.report();
    }

    fn who(&self, owner: Owner, id: OpId) -> (Lane, String) {
        match owner {
            Owner::Caller => {
                let device = match self.tool_ops.get(&id) {
                    Some(ToolOp::Create(i)) => self.device_name(*i),
                    None => "host".into(),
                };
                (Lane::Toolstack, format!("toolstack {device}"))
            }
            Owner::Actor(actor) => match self.device_of(actor) {
                Some((i, lane)) => (lane, format!("{} {}", lane.name(), self.device_name(i))),
                None => (Lane::Toolstack, "?".into()),
            },
        }
    }

    fn device_of(&self, actor: ActorId) -> Option<(usize, Lane)> {
        self.roles.get(actor.index()).copied()
    }

    fn machine_event(&mut self, actor: ActorId, event: SimEvent) {
        let Some((i, lane)) = self.device_of(actor) else {
            return;
        };
        let who = format!("{} {}", lane.name(), self.device_name(i));
        match &event {
            SimEvent::Backend(e) => {
                if let BackendEvent::StateChanged { from, to } = e {
                    self.transition(i, Lane::Backend, *from, *to);
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
                {
                    self.devices[i].problems.push(format!("frontend: {e:?}"));
                }
                if let Some(what) = describe::frontend_event(e) {
                    self.say(lane, who, what);
                }
            }
            SimEvent::Removal(e) => {
                self.say(lane, who.clone(), describe::device_event(e));
                if let DeviceEvent::Done(Completion::Removed(removal)) = e {
                    match &removal.result {
                        Ok(removed) => {
                            self.devices[i].forced = removed.escalated;
                            self.devices[i].phase = Phase::Removed;
                            self.devices[i].removed_ms = Some(self.elapsed_ms());
                            self.say(lane, who, "removed".into());
                        }
                        Err(err) => self.devices[i]
                            .problems
                            .push(format!("removal failed: {err}")),
                    }
                }
            }
        }
        if self.devices[i].connected_ms.is_none() && self.both_connected(i) {
            self.devices[i].connected_ms = Some(self.elapsed_ms());
        }
    }

    fn transition(&mut self, i: usize, lane: Lane, from: XenbusState, to: XenbusState) {
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

    /// The state of the backend and frontend of device `i`, when they run.
    pub(crate) fn states(&self, i: usize) -> (Option<XenbusState>, Option<XenbusState>) {
        let d = &self.devices[i];
        let backend = d.backend.and_then(|id| match self.harness.actor(id) {
            SimActor::Backend(b) => Some(b.state()),
            _ => None,
        });
        let frontend = d.frontend.and_then(|id| match self.harness.actor(id) {
            SimActor::Frontend(f) => Some(f.state()),
            _ => None,
        });
        (backend, frontend)
    }

    fn both_connected(&self, i: usize) -> bool {
        self.states(i) == (Some(XenbusState::Connected), Some(XenbusState::Connected))
    }
}

/// True with probability `p` (0 to 1), from the seeded stream.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    // 53 random bits make a uniform f64 in [0, 1).
    let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    x < p
}

/// A uniform index below `n` (n > 0), from the seeded stream.
fn index(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}
