//! The demo's world: `xsio-harness`'s harness with the xenbus machines, the in-process
//! xenstored core as its store, and a trace of who did what.
//!
//! Bytes go client → `xsio-xenstored` core → client; nothing touches a socket. Time is
//! virtual: every message the daemon delivers takes one millisecond, so the trace is the
//! same on every run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use xsio_core::OpId;
use xsio_device::{DeviceEvent, DeviceOp};
use xsio_harness::{ActorId, Conn, FixedHost, Harness, Owner, Record, XenstoredStore};
use xsio_ops::{Op, OpError, Reply, XsOp};
use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent, XenbusState};
use xsio_xenstored::Origin;
use xsio_xs_client::{Client, Error, Response};
use xsio_xs_wire::ErrorKind;

xsio_harness::actors! {
    /// The demo's machines: each device's backend, frontend and the toolstack's removal.
    pub(crate) enum Machine / Event {
        Backend(Backend, BackendEvent),
        Frontend(Frontend, FrontendEvent),
        Removal(DeviceOp, DeviceEvent),
    }
}

/// A device's machines and what the demo saw of it.
pub(crate) struct DeviceMachines {
    pub(crate) name: String,
    pub(crate) backend: ActorId,
    pub(crate) frontend: ActorId,
    pub(crate) removal: Option<ActorId>,
    /// Results of the toolstack's transactions, in order.
    pub(crate) toolstack_results: Vec<Result<Reply, OpError>>,
    pub(crate) history: Vec<(&'static str, XenbusState)>,
    /// Failures the machines reported (none expected).
    pub(crate) problems: Vec<String>,
}

/// The world of the demo.
pub(crate) struct Bus {
    pub(crate) world: Harness<Machine>,
    /// The host (a running guest, a live QEMU) in front of the xenstored core.
    store: (FixedHost, XenstoredStore),
    /// The toolstack's and the backend's connections (dom0), the guest's.
    toolstack: Conn,
    backend: Conn,
    frontend: Conn,
    pub(crate) devices: Vec<DeviceMachines>,
    /// Which device each of the toolstack's own requests was for.
    toolstack_ops: BTreeMap<OpId, usize>,
    pub(crate) trace: Vec<String>,
    echo: bool,
}

impl Bus {
    /// A daemon with three connections: the toolstack and the backend (dom0), the guest.
    pub(crate) fn new(epoch: Instant, guest: u32, echo: bool) -> Bus {
        let mut store = XenstoredStore::new(epoch);
        store.server().introduce_domain(epoch, guest);
        let mut world = Harness::new(epoch);
        let toolstack = store.connect_dom0(&mut world);
        let backend = store.connect_dom0(&mut world);
        let frontend = store.connect(&mut world, Origin::Domain(guest));
        Bus {
            world,
            store: (FixedHost::default(), store),
            toolstack,
            backend,
            frontend,
            devices: Vec::new(),
            toolstack_ops: BTreeMap::new(),
            trace: Vec::new(),
            echo,
        }
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.world.elapsed()
    }

    pub(crate) fn now(&self) -> Instant {
        self.world.now()
    }

    pub(crate) fn say(&mut self, who: &str, what: impl AsRef<str>) {
        let ms = self.elapsed().as_millis();
        let line = format!("{ms:>5} ms  {who:<14} {}", what.as_ref());
        if self.echo {
            println!("{line}");
        }
        self.trace.push(line);
    }

    /// Adds a device's backend and frontend (not started until drained).
    pub(crate) fn add_device(&mut self, name: String, backend: Backend, frontend: Frontend) {
        let backend = self.world.add(self.backend, Machine::Backend(backend));
        let frontend = self.world.add(self.frontend, Machine::Frontend(frontend));
        self.devices.push(DeviceMachines {
            name,
            backend,
            frontend,
            removal: None,
            toolstack_results: Vec::new(),
            history: Vec::new(),
            problems: Vec::new(),
        });
    }

    /// Starts the toolstack's removal of device `i`.
    pub(crate) fn add_removal(&mut self, i: usize, removal: DeviceOp) {
        let id = self.world.add(self.toolstack, Machine::Removal(removal));
        self.devices[i].removal = Some(id);
        self.start(id);
    }

    /// Drains a machine's first outputs and reports them.
    pub(crate) fn start(&mut self, id: ActorId) {
        self.world.drain(id);
        self.report();
    }

    pub(crate) fn backend(&self, i: usize) -> &Backend {
        match self.world.actor(self.devices[i].backend) {
            Machine::Backend(b) => b,
            _ => unreachable!("device backends are backends"),
        }
    }

    pub(crate) fn frontend(&self, i: usize) -> &Frontend {
        match self.world.actor(self.devices[i].frontend) {
            Machine::Frontend(f) => f,
            _ => unreachable!("device frontends are frontends"),
        }
    }

    pub(crate) fn removal(&self, i: usize) -> Option<&DeviceOp> {
        match self.world.actor(self.devices[i].removal?) {
            Machine::Removal(op) => Some(op),
            _ => None,
        }
    }

    /// A transaction of the toolstack's own for device `i`.
    pub(crate) fn toolstack_txn(&mut self, i: usize, txn: xsio_ops::Txn) {
        let id = self
            .world
            .submit(self.toolstack, Op::Xs(XsOp::Transaction(txn)));
        self.toolstack_ops.insert(id, i);
        self.report();
    }

    /// Moves bytes and results until nothing is left to do.
    pub(crate) fn run_until_quiet(&mut self) -> anyhow::Result<()> {
        for _ in 0..100_000 {
            let moved = self.world.step(&mut self.store)?;
            self.report();
            if !moved {
                return Ok(());
            }
        }
        bail!("the demo did not settle in 100000 steps")
    }

    /// Turns what the harness saw into trace lines.
    fn report(&mut self) {
        for record in self.world.take_log() {
            match record {
                Record::Request { owner, request } => {
                    self.describe_request(owner, request.id, &request.op)
                }
                Record::Reply {
                    owner,
                    id,
                    op,
                    result,
                } => self.describe_reply(owner, id, &op, result),
                Record::Watch { owner, path, .. } => {
                    let who = self.owner_name(owner, OpId::from_raw(u64::MAX));
                    self.say(&who, format!("watch fired: {path}"));
                }
                Record::Timeout { .. } | Record::Peer { .. } => {}
                Record::Event { actor, event } => self.describe_event(actor, event),
            }
        }
    }

    fn device_of(&self, actor: ActorId) -> Option<(usize, &'static str)> {
        self.devices.iter().enumerate().find_map(|(i, d)| {
            if d.backend == actor {
                Some((i, "backend"))
            } else if d.frontend == actor {
                Some((i, "frontend"))
            } else if d.removal == Some(actor) {
                Some((i, "toolstack"))
            } else {
                None
            }
        })
    }

    fn actor_name(&self, actor: ActorId) -> String {
        match self.device_of(actor) {
            Some((i, role)) => format!("{role} {}", self.devices[i].name),
            None => "?".to_owned(),
        }
    }

    fn owner_name(&self, owner: Owner, id: OpId) -> String {
        match owner {
            Owner::Actor(actor) => self.actor_name(actor),
            Owner::Caller => {
                let device = self
                    .toolstack_ops
                    .get(&id)
                    .and_then(|&i| self.devices.get(i))
                    .map_or("?", |d| d.name.as_str());
                format!("toolstack {device}")
            }
        }
    }

    fn describe_request(&mut self, owner: Owner, id: OpId, op: &Op) {
        if let Some(what) = xsio_sim::describe_request(op) {
            let who = self.owner_name(owner, id);
            self.say(&who, what);
        }
    }

    fn describe_reply(&mut self, owner: Owner, id: OpId, op: &Op, result: Result<Reply, OpError>) {
        if let Some(what) = xsio_sim::describe_reply(op, &result) {
            let who = self.owner_name(owner, id);
            self.say(&who, what);
        }
        if owner == Owner::Caller {
            if let Some(i) = self.toolstack_ops.remove(&id) {
                self.devices[i].toolstack_results.push(result);
            }
        }
    }

    fn describe_event(&mut self, actor: ActorId, event: Event) {
        let Some((i, _)) = self.device_of(actor) else {
            return;
        };
        let who = self.actor_name(actor);
        let line = match &event {
            Event::Backend(e) => {
                if let BackendEvent::StateChanged { to, .. } = e {
                    self.devices[i].history.push(("backend", *to));
                }
                if matches!(
                    e,
                    BackendEvent::Failed(_)
                        | BackendEvent::ConnectFailed(_)
                        | BackendEvent::BadFrontendState(_)
                ) {
                    self.devices[i].problems.push(format!("backend: {e:?}"));
                }
                xsio_sim::backend_event(e)
            }
            Event::Frontend(e) => {
                if let FrontendEvent::StateChanged { to, .. } = e {
                    self.devices[i].history.push(("frontend", *to));
                }
                if matches!(
                    e,
                    FrontendEvent::Failed(_)
                        | FrontendEvent::ConnectFailed(_)
                        | FrontendEvent::BadBackendState(_)
                ) {
                    self.devices[i].problems.push(format!("frontend: {e:?}"));
                }
                xsio_sim::frontend_event(e)
            }
            Event::Removal(e) => Some(xsio_sim::device_event(e)),
        };
        if let Some(line) = line {
            self.say(&who, line);
        }
    }

    /// Runs one xenstore operation for the toolstack and waits for it.
    pub(crate) fn toolstack_call(
        &mut self,
        call: impl FnOnce(&mut Client, Instant) -> OpId,
    ) -> anyhow::Result<Result<Response, Error>> {
        Ok(self.store.1.call(&mut self.world, self.toolstack, call)?)
    }

    /// The tree under `path`, one `name = "value"` line per node, indented per level.
    pub(crate) fn tree(&mut self, path: &str) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        self.tree_into(path, 0, &mut lines)?;
        Ok(lines)
    }

    fn tree_into(
        &mut self,
        path: &str,
        depth: usize,
        lines: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let value = match self.toolstack_call(|c, now| c.read(now, None, path))? {
            Ok(Response::Value(v)) => String::from_utf8_lossy(&v).into_owned(),
            Ok(other) => bail!("read {path}: unexpected {other:?}"),
            Err(Error::Xs(ErrorKind::Enoent)) => return Ok(()),
            Err(e) => bail!("read {path}: {e}"),
        };
        let name = if depth == 0 {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        lines.push(format!(
            "{:indent$}{name} = \"{value}\"",
            "",
            indent = depth
        ));
        let children = match self.toolstack_call(|c, now| c.directory(now, None, path))? {
            Ok(Response::Names(names)) => names,
            Ok(other) => bail!("directory {path}: unexpected {other:?}"),
            Err(e) => bail!("directory {path}: {e}"),
        };
        for child in children {
            let child_path = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            self.tree_into(&child_path, depth + 1, lines)?;
        }
        Ok(())
    }
}
