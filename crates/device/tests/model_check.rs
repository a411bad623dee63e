//! The removal explored over every interleaving with the xenbus machines: the toolstack's
//! `DeviceOp`, the backend (as QEMU runs it) and the guest's frontend, each on its own
//! connection of one `xsio_harness::Harness`, against `MemStore` (interactive transactions
//! with xenstored's conflict rule). Every choice is a move of the harness: execute the
//! oldest request of a connection (host operations answered from the scenario), deliver
//! the oldest answer or watch event of a connection, fire the earliest deadline once
//! nothing else can move (time jumps there), and the environment's own moves (the guest closes its frontend; QEMU exits
//! cleanly and both directories vanish).
//!
//! A depth-first search over whole-world states (deduplicated by a 64-bit hash). In every
//! final state (nothing left to do): the removal completed exactly once (D1); a removal
//! that says it pruned left no node of its areas (D3); no transaction is left open (D4).
//! Each scenario also says which outcomes must be reachable. The state counts are printed
//! (`cargo nextest run -p xsio-device --test model_check --no-capture`) and kept in the
//! README.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use xsio_device::{Completion, Config, Device, DeviceEvent, DeviceOp, Force, Removal, RemoveError};
use xsio_harness::{ActorId, Conn, Harness, MemStore, Record};
use xsio_ops::{DomainState, HostOp, Op, Reply, TxnOp, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent, XenbusState};

xsio_harness::actors! {
    /// The toolstack's removal, the backend, the frontend.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    enum Machine / Event {
        Op(DeviceOp, DeviceEvent),
        Backend(Backend, BackendEvent),
        Frontend(Frontend, FrontendEvent),
    }
}

const TOOLSTACK: usize = 0;
const BACKEND: usize = 1;
const FRONTEND: usize = 2;

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    force: Force,
    guest: DomainState,
    dm_alive: Option<bool>,
    /// A backend machine plays QEMU.
    backend: bool,
    /// A frontend machine plays the guest (a paused or dead guest has none).
    frontend: bool,
    /// The guest dies once connected: its frontend, Connected, never moves again.
    frozen: bool,
    /// The guest may close its frontend once, at any moment.
    guest_close: bool,
    /// QEMU may exit cleanly once, at any moment (both directories vanish).
    vanish: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct World {
    h: Harness<Machine>,
    store: MemStore,
    op: ActorId,
    frontend: Option<ActorId>,
    guest: DomainState,
    dm_alive: Option<bool>,
    closes: u8,
    vanishes: u8,
    dones: u8,
    frozen: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Execute(usize),
    Deliver(usize),
    Timer(ActorId),
    GuestClose,
    Vanish,
}

fn disk() -> BlockDevice {
    let mut disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        "/srv/disk.img",
        Mode::ReadWrite,
    );
    disk.sectors = 2048;
    disk
}

fn device() -> Device {
    Device::new("vbd", 1, disk().devid()).with_backend(0, "qdisk")
}

impl World {
    /// The device created and connected (driven to quiet), then the removal started.
    fn new(s: &Scenario, now: Instant) -> World {
        let mut h: Harness<Machine> = Harness::new(now);
        h.set_log(true);
        let conns = [h.connect(), h.connect(), h.connect()];
        let mut store = MemStore::new();
        let dev = disk();
        let areas = dev.areas(0, 1);
        let d = device();
        let mut create = areas.create(
            &dev.toolstack_backend_keys(),
            &dev.toolstack_frontend_keys(),
        );
        create.ops.push(TxnOp::write(
            format!("{}/backend", d.toolstack_path()),
            d.backend_path(),
        ));
        let created = store.execute(conns[TOOLSTACK], &Op::Xs(XsOp::Transaction(create)));
        assert!(created.result.is_ok());
        let transport = BlockTransport {
            ring_ref: 8,
            event_channel: 5,
            protocol: Some(Protocol::X86_64),
        };
        if s.backend {
            let backend = Backend::new(dev.backend_config(areas.clone()), now);
            let id = h.add(conns[BACKEND], Machine::Backend(backend));
            h.drain(id);
        }
        let frontend = s.frontend.then(|| {
            let frontend = Frontend::new(dev.frontend_config(areas.clone(), &transport), now);
            let id = h.add(conns[FRONTEND], Machine::Frontend(frontend));
            h.drain(id);
            id
        });
        h.drive(&mut store).expect("the device connects");
        let config = Config {
            transaction_attempts: 3,
            ..Config::default()
        };
        let op = h.add(
            conns[TOOLSTACK],
            Machine::Op(DeviceOp::remove(config, d, s.force, h.now())),
        );
        h.drain(op);
        h.take_log();
        World {
            h,
            store,
            op,
            frontend,
            guest: s.guest,
            dm_alive: s.dm_alive,
            closes: u8::from(s.guest_close),
            vanishes: u8::from(s.vanish),
            dones: 0,
            frozen: s.frozen,
        }
    }

    fn conn(&self, index: usize) -> Conn {
        self.h.conns().nth(index).unwrap()
    }

    fn removal(&self) -> Option<&Removal> {
        match self.h.actor(self.op) {
            Machine::Op(op) => match op.completion() {
                Some(Completion::Removed(removal)) => Some(removal),
                _ => None,
            },
            _ => None,
        }
    }

    fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        for c in 0..3 {
            if c == FRONTEND && self.frozen {
                continue;
            }
            if self.h.has_request(self.conn(c)) {
                actions.push(Action::Execute(c));
            }
            if self.h.has_delivery(self.conn(c)) {
                actions.push(Action::Deliver(c));
            }
        }
        // Time moves in order: the earliest deadline fires next, once nothing else can
        // happen (a timeout is what a silent peer leads to; its races with messages in
        // flight are the property tests' and the fuzz target's).
        let earliest = self
            .h
            .actors()
            .filter_map(|(id, a)| Some((xsio_core::Machine::poll_timeout(a)?, id)))
            .min();
        if let (Some((_, id)), true) = (earliest, actions.is_empty()) {
            actions.push(Action::Timer(id));
        }
        if self.closes > 0 {
            if let Some(Machine::Frontend(f)) = self.frontend.map(|id| self.h.actor(id)) {
                if f.state() == XenbusState::Connected {
                    actions.push(Action::GuestClose);
                }
            }
        }
        if self.vanishes > 0 && self.store.has_under(&device().backend_path()) {
            actions.push(Action::Vanish);
        }
        actions
    }

    fn step(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Execute(c) => {
                let conn = self.conn(c);
                if let Some((owner, request)) = self
                    .h
                    .take_request_where(conn, |op| matches!(op, Op::Host(_)))
                {
                    let answer = match request.op {
                        Op::Host(HostOp::DomainInfo { .. }) => Ok(Reply::Domain(self.guest)),
                        Op::Host(HostOp::DeviceModelAlive { .. }) => match self.dm_alive {
                            Some(alive) => Ok(Reply::DeviceModel { alive }),
                            None => Err(xsio_ops::OpError::new(
                                xsio_ops::OpErrorKind::Unsupported,
                                "cannot tell",
                            )),
                        },
                        // A QEMU disk runs no script.
                        _ => return Err(format!("unexpected {:?}", request.op)),
                    };
                    self.h
                        .reply(owner, request.id, answer)
                        .map_err(|e| e.to_string())?;
                } else {
                    self.store
                        .execute_next(&mut self.h, conn)
                        .map_err(|e| e.to_string())?;
                }
            }
            Action::Deliver(c) => {
                let conn = self.conn(c);
                self.h.deliver_from(conn).map_err(|e| e.to_string())?;
            }
            Action::Timer(id) => {
                let at = xsio_core::Machine::poll_timeout(self.h.actor(id)).unwrap();
                self.h.advance_to(at);
                self.h.fire_timer(id);
            }
            Action::GuestClose => {
                self.closes -= 1;
                let id = self.frontend.unwrap();
                let now = self.h.now();
                if let Machine::Frontend(f) = self.h.actor_mut(id) {
                    f.close(now);
                }
                self.h.drain(id);
            }
            Action::Vanish => {
                self.vanishes -= 1;
                let d = device();
                let rm = |path: String| TxnOp::Rm { path };
                let exit = Op::Xs(XsOp::Transaction(xsio_ops::Txn {
                    only_if_exists: None,
                    ops: vec![rm(d.backend_path()), rm(d.frontend_path())],
                }));
                let done = self.store.execute(self.conn(BACKEND), &exit);
                for w in done.fired {
                    self.h.watch_event(w.conn, &w.path, &w.token);
                }
            }
        }
        for record in self.h.take_log() {
            if let Record::Event {
                event: Event::Op(DeviceEvent::Done(_)),
                ..
            } = record
            {
                self.dones += 1;
            }
        }
        Ok(())
    }

    /// The properties of a final state; its outcome, for the scenario's reachability.
    fn check_final(&self) -> Result<String, String> {
        if self.dones != 1 {
            return Err(format!("D1: completed {} times", self.dones));
        }
        let removal = self.removal().ok_or("no completion")?;
        let d = device();
        if removal.pruned {
            for area in [d.frontend_path(), d.backend_path(), d.toolstack_path()] {
                if self.store.has_under(&area) {
                    return Err(format!("D3: {area} left after a prune: {removal:?}"));
                }
            }
        } else if removal.result.is_ok() {
            return Err("D3: a success without a prune".into());
        }
        if self.store.transactions() != 0 {
            return Err("D4: a transaction left open".into());
        }
        Ok(match &removal.result {
            Ok(r) => format!(
                "ok {:?}{}",
                r.backend,
                if r.escalated { " escalated" } else { "" }
            ),
            Err(RemoveError::TimedOut { wait, .. }) => format!("timed out: {wait:?}"),
            Err(RemoveError::Conflicts { .. }) => "conflicts".into(),
            Err(other) => format!("error: {other}"),
        })
    }
}

struct Report {
    states: usize,
    finals: usize,
    outcomes: BTreeMap<String, usize>,
}

fn hash(world: &World) -> u64 {
    let mut hasher = DefaultHasher::new();
    world.hash(&mut hasher);
    hasher.finish()
}

fn explore(root: World) -> Result<Report, String> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stack: Vec<(World, Vec<Action>)> = vec![(root, Vec::new())];
    let mut report = Report {
        states: 0,
        finals: 0,
        outcomes: BTreeMap::new(),
    };
    while let Some((world, path)) = stack.pop() {
        if !seen.insert(hash(&world)) {
            continue;
        }
        report.states += 1;
        let actions = world.actions();
        if actions.is_empty() {
            report.finals += 1;
            let outcome = world
                .check_final()
                .map_err(|e| format!("{e}\n  after {path:?}"))?;
            *report.outcomes.entry(outcome).or_default() += 1;
            continue;
        }
        for action in actions {
            let mut next = world.clone();
            next.step(action)
                .map_err(|e| format!("{action:?}: {e}\n  after {path:?}"))?;
            let mut next_path = path.clone();
            next_path.push(action);
            stack.push((next, next_path));
        }
    }
    Ok(report)
}

fn check(s: Scenario, must_reach: &[&str]) {
    #[allow(clippy::disallowed_methods)] // the checker's epoch; all later times are virtual
    let now = Instant::now();
    let report = explore(World::new(&s, now)).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    println!(
        "{}: {} states, {} final; outcomes {:?}",
        s.name, report.states, report.finals, report.outcomes
    );
    for outcome in must_reach {
        assert!(
            report.outcomes.contains_key(*outcome),
            "{}: {outcome:?} never reached: {:?}",
            s.name,
            report.outcomes
        );
    }
}

const LIVE: Scenario = Scenario {
    name: "",
    force: Force::Auto,
    guest: DomainState::Running,
    dm_alive: Some(true),
    backend: true,
    frontend: true,
    guest_close: false,
    vanish: false,
    frozen: false,
};

#[test]
fn removal_with_both_ends_live() {
    check(
        Scenario {
            name: "both ends live, force auto",
            ..LIVE
        },
        &["ok Closed"],
    );
}

#[test]
fn removal_with_force_on_and_off() {
    check(
        Scenario {
            name: "both ends live, force on",
            force: Force::On,
            ..LIVE
        },
        &["ok Closed"],
    );
    check(
        Scenario {
            name: "both ends live, force off",
            force: Force::Off,
            ..LIVE
        },
        &["ok Closed"],
    );
}

#[test]
fn removal_racing_the_guests_own_close() {
    check(
        Scenario {
            name: "guest close racing the removal",
            guest_close: true,
            ..LIVE
        },
        &["ok Closed"],
    );
}

#[test]
fn qemu_exiting_cleanly_at_any_moment() {
    check(
        Scenario {
            name: "QEMU's clean exit at any moment",
            vanish: true,
            ..LIVE
        },
        &["ok Closed", "ok Gone"],
    );
}

#[test]
fn dead_frontend_escalates() {
    check(
        Scenario {
            name: "guest dead after connecting, force auto",
            frozen: true,
            ..LIVE
        },
        &["ok Closed escalated"],
    );
}

#[test]
fn paused_guest_with_qemu_gone_is_bodged() {
    check(
        Scenario {
            name: "paused guest, QEMU gone",
            guest: DomainState::Paused,
            dm_alive: Some(false),
            backend: false,
            frontend: false,
            ..LIVE
        },
        &["ok Bodged"],
    );
    check(
        Scenario {
            name: "paused guest, QEMU liveness unknown",
            guest: DomainState::Paused,
            dm_alive: None,
            backend: false,
            frontend: false,
            ..LIVE
        },
        &["ok Bodged"],
    );
}

/// The bodge closes a QEMU backend that is gone; it must not need any other outcome.
#[test]
fn bodge_outcome_is_the_only_one_without_peers() {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let s = Scenario {
        name: "paused guest, QEMU gone (only outcome)",
        guest: DomainState::Paused,
        dm_alive: Some(false),
        backend: false,
        frontend: false,
        ..LIVE
    };
    let report = explore(World::new(&s, now)).unwrap();
    assert_eq!(report.outcomes.keys().collect::<Vec<_>>(), ["ok Bodged"]);
}
