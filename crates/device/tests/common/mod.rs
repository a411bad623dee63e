//! The world the device tests run in: the harness with the real xenstored core
//! (`XenstoredStore`, one virtual millisecond per message), a simulated host in front of
//! it (guest state, device-model liveness, hotplug scripts that exit, fail or hang), and
//! a fault injector in front of both.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xsio_core::OpId;
use xsio_device::{Completion, Device, DeviceOp};
use xsio_harness::{
    Actor, ActorId, Conn, Harness, HarnessError, Owner, Record, Store, XenstoredStore,
};
use xsio_ops::{
    Access, DomainState, HostOp, Op, OpError, OpErrorKind, Perm, ProcessExit, Reply, Txn, TxnOp,
    XsOp,
};
use xsio_xs_client::Response;

/// How one spawned script behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Script {
    /// Exits with `code` after `after`.
    Exit { after: Duration, code: i32 },
    /// Never exits by itself (only SIGKILL ends it).
    Hang,
    /// Killed, and never reaped (the driver never answers).
    Unreapable,
    /// Cannot be started.
    NoStart,
}

#[derive(Debug)]
struct Running {
    owner: Owner,
    id: OpId,
    /// When it ends and how; `None`: not (yet).
    ends: Option<(Instant, ProcessExit)>,
    unreapable: bool,
}

/// A program the host started: its argv and the environment it was given.
pub(crate) type Spawned = (Vec<String>, Vec<(String, String)>);

/// The host: answers `Op::Host` requests from its settings.
#[derive(Debug)]
pub(crate) struct SimHost {
    /// The guest's state; `None`: domain info fails.
    pub(crate) guest: Option<DomainState>,
    /// The device model's liveness; `None`: the host cannot tell (Unsupported).
    pub(crate) dm_alive: Option<bool>,
    /// Behaviour of each spawn in order; when empty, scripts exit 0 after 5 ms.
    pub(crate) scripts: VecDeque<Script>,
    /// Every program started: argv and env.
    pub(crate) spawned: Vec<Spawned>,
    /// Kill requests received.
    pub(crate) kills: usize,
    /// Domain info requests received.
    pub(crate) domain_infos: usize,
    /// Device-model liveness requests received.
    pub(crate) dm_queries: usize,
    running: Vec<Running>,
}

impl Default for SimHost {
    fn default() -> SimHost {
        SimHost {
            guest: Some(DomainState::Running),
            dm_alive: Some(true),
            scripts: VecDeque::new(),
            spawned: Vec::new(),
            kills: 0,
            domain_infos: 0,
            dm_queries: 0,
            running: Vec::new(),
        }
    }
}

impl SimHost {
    /// Scripts started and not ended.
    pub(crate) fn still_running(&self) -> usize {
        self.running.len()
    }
}

impl<A: Actor> Store<A> for SimHost {
    fn step(&mut self, h: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        let now = h.now();
        for conn in h.conns().collect::<Vec<_>>() {
            while let Some((owner, request)) =
                h.take_request_where(conn, |op| matches!(op, Op::Host(_)))
            {
                moved = true;
                let Op::Host(op) = request.op else { continue };
                let answer = match op {
                    HostOp::DomainInfo { .. } => {
                        self.domain_infos += 1;
                        match self.guest {
                            Some(state) => Ok(Reply::Domain(state)),
                            None => Err(OpError::new(OpErrorKind::Other, "no hypervisor")),
                        }
                    }
                    HostOp::DeviceModelAlive { .. } => {
                        self.dm_queries += 1;
                        match self.dm_alive {
                            Some(alive) => Ok(Reply::DeviceModel { alive }),
                            None => Err(OpError::new(OpErrorKind::Unsupported, "cannot tell")),
                        }
                    }
                    HostOp::Spawn { argv, env } => {
                        self.spawned.push((argv, env));
                        let behaviour = self.scripts.pop_front().unwrap_or(Script::Exit {
                            after: Duration::from_millis(5),
                            code: 0,
                        });
                        let (ends, unreapable) = match behaviour {
                            Script::Exit { after, code } => {
                                (Some((now + after, ProcessExit::Exited(code))), false)
                            }
                            Script::Hang => (None, false),
                            Script::Unreapable => (None, true),
                            Script::NoStart => (
                                Some((now, ProcessExit::FailedToStart("ENOENT".into()))),
                                false,
                            ),
                        };
                        self.running.push(Running {
                            owner,
                            id: request.id,
                            ends,
                            unreapable,
                        });
                        continue; // answered when it ends
                    }
                    HostOp::Kill { spawn } => {
                        self.kills += 1;
                        if let Some(child) = self
                            .running
                            .iter_mut()
                            .find(|c| c.owner == owner && c.id == spawn && !c.unreapable)
                        {
                            child.ends = Some((now, ProcessExit::Signalled(9)));
                        }
                        Ok(Reply::Done)
                    }
                    // Device add and removal take no lock.
                    HostOp::Lock { .. } | HostOp::Unlock { .. } => Err(OpError::new(
                        OpErrorKind::Unsupported,
                        "no locks in this host",
                    )),
                };
                h.reply(owner, request.id, answer)?;
            }
        }
        let mut index = 0;
        while index < self.running.len() {
            match &self.running[index].ends {
                Some((at, _)) if *at <= now => {
                    let child = self.running.remove(index);
                    let (_, exit) = child.ends.unwrap();
                    h.reply(child.owner, child.id, Ok(Reply::Exited(exit)))?;
                    moved = true;
                }
                _ => index += 1,
            }
        }
        Ok(moved)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter_map(|c| c.ends.as_ref().map(|(at, _)| *at))
            .min()
    }
}

/// One injected failure: the next `times` requests `matches` selects are answered with
/// `error` instead of executed.
pub(crate) struct Fault {
    pub(crate) matches: Box<dyn Fn(&Op) -> bool>,
    pub(crate) error: OpError,
    pub(crate) times: usize,
}

/// Injected failures, in front of the other stores.
#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) rules: Vec<Fault>,
    /// Answers injected so far.
    pub(crate) injected: usize,
}

impl Faults {
    pub(crate) fn add(
        &mut self,
        times: usize,
        kind: OpErrorKind,
        matches: impl Fn(&Op) -> bool + 'static,
    ) {
        self.rules.push(Fault {
            matches: Box::new(matches),
            error: OpError::new(kind, "injected"),
            times,
        });
    }
}

impl<A: Actor> Store<A> for Faults {
    fn step(&mut self, h: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        for conn in h.conns().collect::<Vec<_>>() {
            loop {
                let rules = &self.rules;
                let armed = |op: &Op| rules.iter().any(|r| r.times > 0 && (r.matches)(op));
                let Some((owner, request)) = h.take_request_where(conn, armed) else {
                    break;
                };
                let rule = self
                    .rules
                    .iter_mut()
                    .find(|r| r.times > 0 && (r.matches)(&request.op))
                    .unwrap();
                rule.times -= 1;
                let error = rule.error.clone();
                h.reply(owner, request.id, Err(error))?;
                self.injected += 1;
                moved = true;
            }
        }
        Ok(moved)
    }
}

/// The stores, faults first, then the host, then xenstore.
pub(crate) type Stores = (Faults, (SimHost, XenstoredStore));

/// A harness of device operations (or multi-device operations) on one dom0 connection.
pub(crate) struct World<A: Actor = DeviceOp> {
    pub(crate) h: Harness<A>,
    pub(crate) stores: Stores,
    pub(crate) dom0: Conn,
    pub(crate) epoch: Instant,
    /// Every event reported, in order, with its time since the epoch.
    pub(crate) events: Vec<(Duration, A::Event)>,
    /// Every request issued by a machine, in order.
    pub(crate) requests: Vec<Op>,
    /// Everything the harness recorded, in order.
    pub(crate) log: Vec<Record<A::Event>>,
}

impl World<DeviceOp> {
    pub(crate) fn new() -> World {
        World::with()
    }

    pub(crate) fn completion(&self, id: ActorId) -> Option<Completion> {
        self.h.actor(id).completion().cloned()
    }
}

impl<A: Actor> World<A>
where
    A::Event: Clone,
{
    pub(crate) fn with() -> World<A> {
        #[allow(clippy::disallowed_methods)] // the tests' epoch; all later times are virtual
        let epoch = Instant::now();
        let mut xs = XenstoredStore::new(epoch);
        let mut h = Harness::new(epoch);
        let dom0 = xs.connect_dom0(&mut h);
        World {
            h,
            stores: (Faults::default(), (SimHost::default(), xs)),
            dom0,
            epoch,
            events: Vec::new(),
            requests: Vec::new(),
            log: Vec::new(),
        }
    }

    pub(crate) fn host(&mut self) -> &mut SimHost {
        &mut self.stores.1.0
    }

    pub(crate) fn faults(&mut self) -> &mut Faults {
        &mut self.stores.0
    }

    pub(crate) fn xs(&mut self) -> &mut XenstoredStore {
        &mut self.stores.1.1
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.h.elapsed()
    }

    /// Adds `op` and lets it run until only timers are left.
    pub(crate) fn start(&mut self, op: A) -> ActorId {
        let id = self.h.add(self.dom0, op);
        self.h.drain(id);
        self.settle();
        id
    }

    fn collect(&mut self) {
        let at = self.h.elapsed();
        for record in self.h.take_log() {
            match &record {
                Record::Event { event, .. } => self.events.push((at, event.clone())),
                Record::Request {
                    owner: Owner::Actor(_),
                    request,
                } => self.requests.push(request.op.clone()),
                _ => {}
            }
            self.log.push(record);
        }
    }

    /// Runs until nothing moves without moving the clock beyond the store's messages.
    pub(crate) fn settle(&mut self) {
        // A store deadline already due (a script that exits now) still counts.
        loop {
            self.h.settle(&mut self.stores).expect("the world settles");
            self.collect();
            let due = Store::<A>::next_deadline(&self.stores).is_some_and(|at| at <= self.h.now());
            if !due || !self.h.step(&mut self.stores).expect("a step") {
                break;
            }
        }
        self.collect();
    }

    /// Moves the clock by `by`, firing every deadline (machines' and the host's) on the
    /// way at its own time.
    pub(crate) fn advance(&mut self, by: Duration) {
        let target = self.h.now() + by;
        loop {
            let next = [
                self.h.next_deadline(),
                Store::<A>::next_deadline(&self.stores),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= target => {
                    self.h.advance_to(at);
                    self.h.fire_due_timers();
                    self.settle();
                }
                _ => break,
            }
        }
        self.h.advance_to(target);
        self.h.fire_due_timers();
        self.settle();
    }

    /// Runs until nothing is left to do, jumping the clock to each deadline.
    pub(crate) fn drive(&mut self) {
        self.h.drive(&mut self.stores).expect("the world settles");
        self.collect();
    }

    /// A write from outside (a backend, a frontend, a user), in one transaction.
    pub(crate) fn write(&mut self, path: &str, value: &str) {
        self.txn(vec![TxnOp::write(path, value)]);
    }

    /// Removes `path` (and everything below) from outside.
    pub(crate) fn rm(&mut self, path: &str) {
        self.txn(vec![TxnOp::Rm { path: path.into() }]);
    }

    pub(crate) fn txn(&mut self, ops: Vec<TxnOp>) {
        let txn = Txn {
            only_if_exists: None,
            ops,
        };
        self.h.submit(self.dom0, Op::Xs(XsOp::Transaction(txn)));
        self.settle();
    }

    /// A node's value, read from outside (`None`: absent).
    pub(crate) fn read(&mut self, path: &str) -> Option<String> {
        let path = path.to_owned();
        let dom0 = self.dom0;
        let (h, xs) = (&mut self.h, &mut self.stores.1.1);
        match xs.call(h, dom0, |c, now| c.read(now, None, &path)).unwrap() {
            Ok(Response::Value(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
            _ => None,
        }
    }

    /// Every path at or below `root`, sorted.
    pub(crate) fn tree(&mut self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_owned()];
        while let Some(path) = todo.pop() {
            let dom0 = self.dom0;
            let (h, xs) = (&mut self.h, &mut self.stores.1.1);
            let listed = xs
                .call(h, dom0, |c, now| c.directory(now, None, &path))
                .unwrap();
            let Ok(Response::Names(names)) = listed else {
                continue;
            };
            out.push(path.clone());
            for name in names {
                let child = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                todo.push(child);
            }
        }
        out.sort();
        out
    }

    /// The events of kind `pick`.
    pub(crate) fn saw(&self, pick: impl Fn(&A::Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| pick(e)).count()
    }

    /// How many requests `pick` selects.
    pub(crate) fn asked(&self, pick: impl Fn(&Op) -> bool) -> usize {
        self.requests.iter().filter(|op| pick(op)).count()
    }

    /// Writes the device as libxl leaves it after an add: the toolstack entry, both
    /// directories with their permissions and generic keys, backend `state` and frontend
    /// `state` as given, a `script` key when `script` is set.
    pub(crate) fn seed(
        &mut self,
        device: &Device,
        backend: &str,
        frontend: &str,
        script: Option<&str>,
    ) {
        let areas = device.areas();
        let mut be_keys = vec![("params".to_owned(), "/srv/disk.img".to_owned())];
        if let Some(script) = script {
            be_keys.push(("script".to_owned(), script.to_owned()));
        }
        let mut ops = areas.create(&be_keys, &[]).ops;
        ops.push(TxnOp::write(device.backend_key("state"), backend));
        ops.push(TxnOp::write(device.frontend_key("state"), frontend));
        let entry = device.toolstack_path();
        ops.push(TxnOp::write(
            format!("{entry}/frontend"),
            device.frontend_path(),
        ));
        ops.push(TxnOp::write(
            format!("{entry}/backend"),
            device.backend_path(),
        ));
        ops.push(TxnOp::SetPerms {
            path: entry,
            perms: vec![Perm::new(Access::None, 0)],
        });
        self.txn(ops);
    }

    /// Whether any of the device's three areas is left.
    pub(crate) fn areas_left(&mut self, device: &Device) -> Vec<String> {
        [
            device.frontend_path(),
            device.backend_path(),
            device.toolstack_path(),
        ]
        .into_iter()
        .filter(|p| self.read(p).is_some())
        .collect()
    }
}

/// A blkback-style disk of guest 1 in dom0.
pub(crate) fn vbd() -> Device {
    Device::new("vbd", 1, 51712)
}

/// A QEMU-backed disk of guest 1.
pub(crate) fn qdisk() -> Device {
    Device::new("vbd", 1, 51712).with_backend(0, "qdisk")
}

pub(crate) fn is_domain_info(op: &Op) -> bool {
    matches!(op, Op::Host(HostOp::DomainInfo { .. }))
}

pub(crate) fn is_spawn(op: &Op) -> bool {
    matches!(op, Op::Host(HostOp::Spawn { .. }))
}

pub(crate) fn is_commit(op: &Op) -> bool {
    matches!(op, Op::Xs(XsOp::TxnEnd { commit: true, .. }))
}

/// A write of `value` to `path` inside an interactive transaction.
pub(crate) fn is_txn_write(op: &Op, path: &str, value: &str) -> bool {
    matches!(op, Op::Xs(XsOp::TxnApply { op: TxnOp::Write { path: p, value: v }, .. }) if p == path && v == value)
}

pub(crate) fn is_txn_rm(op: &Op, path: &str) -> bool {
    matches!(op, Op::Xs(XsOp::TxnApply { op: TxnOp::Rm { path: p }, .. }) if p == path)
}

pub(crate) fn is_read_of(op: &Op, path: &str) -> bool {
    matches!(op, Op::Xs(XsOp::Read { path: p } | XsOp::TxnRead { path: p, .. }) if p == path)
}
