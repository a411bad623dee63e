//! One process, one in-memory xenstored, one xenstore client per party, and the xenbus
//! machines connected to them: the driver the demo runs on.
//!
//! Bytes go client → `xsio-xenstored` core → client; nothing touches a socket. Time is
//! virtual: every message the daemon delivers takes one millisecond, so the trace is the
//! same on every run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xsio_core::{Input, OpId};
use xsio_io_std::xenbus::{self, Submitted, Watches};
use xsio_xenbus::{
    Backend, BackendEvent, Frontend, FrontendEvent, Output, Reply, Request, StateWaiter, TxnOp,
    WaitEvent, XenbusState, XsError, XsOp,
};
use xsio_xenstored::{ConnId, Origin, Server};
use xsio_xs_client::{Client, Error, Response, WatchEvent};
use xsio_xs_wire::ErrorKind;

/// Who acts. The index is the device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Actor {
    Toolstack(usize),
    Waiter(usize),
    Backend(usize),
    Frontend(usize),
}

/// A xenstore connection and its client.
struct Party {
    conn: ConnId,
    client: Client,
    /// Client op → who asked, their op id, and whether a missing guard means "skipped".
    pending: BTreeMap<OpId, (Actor, OpId, XsOp)>,
    /// The client's watches, by token (`xsio-io-std`'s translation keeps them).
    watches: Watches,
    /// Watch token → who registered it, to route its events.
    watchers: BTreeMap<String, Actor>,
}

/// The toolstack's own transactions, told apart from the machines' requests.
pub(crate) const TOOLSTACK_OP: OpId = OpId::from_raw(u64::MAX);

/// A device's machines.
pub(crate) struct DeviceMachines {
    pub(crate) name: String,
    pub(crate) backend: Backend,
    pub(crate) frontend: Frontend,
    pub(crate) waiter: Option<StateWaiter>,
    /// Results of the toolstack's transactions, in order.
    pub(crate) toolstack_results: Vec<Result<Reply, XsError>>,
    pub(crate) history: Vec<(&'static str, XenbusState)>,
    /// Failures the machines reported (none expected).
    pub(crate) problems: Vec<String>,
}

/// The world of the demo.
pub(crate) struct Bus {
    epoch: Instant,
    now: Instant,
    server: Server,
    parties: Vec<Party>,
    /// Requests answered without the daemon, delivered on the next step.
    answered: Vec<(Actor, OpId, XsOp, Result<Reply, XsError>)>,
    pub(crate) devices: Vec<DeviceMachines>,
    pub(crate) trace: Vec<String>,
    echo: bool,
}

const TOOLSTACK: usize = 0;
const BACKEND: usize = 1;
const FRONTEND: usize = 2;

impl Bus {
    /// A daemon with three connections: the toolstack and the backend (dom0), the guest.
    pub(crate) fn new(epoch: Instant, guest: u32, echo: bool) -> Bus {
        let mut server = Server::new(xsio_xenstored::Config::default(), epoch);
        server.introduce_domain(epoch, guest);
        let mut parties = Vec::new();
        for origin in [Origin::Socket, Origin::Socket, Origin::Domain(guest)] {
            parties.push(Party {
                conn: server.connect(epoch, origin),
                client: Client::new(xsio_xs_client::Config::default(), epoch),
                pending: BTreeMap::new(),
                watches: Watches::default(),
                watchers: BTreeMap::new(),
            });
        }
        Bus {
            epoch,
            now: epoch,
            server,
            parties,
            answered: Vec::new(),
            devices: Vec::new(),
            trace: Vec::new(),
            echo,
        }
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now.duration_since(self.epoch)
    }

    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    pub(crate) fn say(&mut self, who: &str, what: impl AsRef<str>) {
        let ms = self.elapsed().as_millis();
        let line = format!("{ms:>5} ms  {who:<14} {}", what.as_ref());
        if self.echo {
            println!("{line}");
        }
        self.trace.push(line);
    }

    pub(crate) fn actor_name(&self, actor: Actor) -> String {
        let (role, i) = match actor {
            Actor::Toolstack(i) => ("toolstack", i),
            Actor::Waiter(i) => ("toolstack", i),
            Actor::Backend(i) => ("backend", i),
            Actor::Frontend(i) => ("frontend", i),
        };
        let device = self.devices.get(i).map_or("?", |d| d.name.as_str());
        format!("{role} {device}")
    }

    /// Sends a request on behalf of `actor`.
    pub(crate) fn send(&mut self, actor: Actor, request: Request) {
        let party = match actor {
            Actor::Toolstack(_) | Actor::Waiter(_) => TOOLSTACK,
            Actor::Backend(_) => BACKEND,
            Actor::Frontend(_) => FRONTEND,
        };
        self.describe_request(actor, &request.op);
        let now = self.now;
        let p = &mut self.parties[party];
        match &request.op {
            XsOp::Watch { token, .. } => {
                p.watchers.insert(token.clone(), actor);
            }
            XsOp::Unwatch { token, .. } => {
                p.watchers.remove(token);
            }
            XsOp::Read { .. } | XsOp::Transaction(_) => {}
        }
        match xenbus::submit(&mut p.client, now, &request.op, &mut p.watches) {
            Submitted::Started(client_op) => {
                p.pending.insert(client_op, (actor, request.id, request.op));
            }
            Submitted::Answered(reply) => {
                self.answered.push((actor, request.id, request.op, reply))
            }
        }
    }

    fn describe_request(&mut self, actor: Actor, op: &XsOp) {
        let who = self.actor_name(actor);
        match op {
            XsOp::Watch { path, .. } => self.say(&who, format!("watch {path}")),
            XsOp::Unwatch { path, .. } => self.say(&who, format!("unwatch {path}")),
            XsOp::Read { .. } => {}
            XsOp::Transaction(txn) => {
                let mut parts = Vec::new();
                let mut perms = 0;
                for op in &txn.ops {
                    match op {
                        TxnOp::Write { path, value } => {
                            let key = path.rsplit('/').next().unwrap_or(path);
                            parts.push(match (key, XenbusState::parse(value)) {
                                ("state", Ok(state)) => format!("state={value} ({state})"),
                                _ => format!("{key}={value}"),
                            });
                        }
                        TxnOp::Rm { path } => parts.push(format!("rm {path}")),
                        TxnOp::Mkdir { path } => parts.push(format!("mkdir {path}")),
                        TxnOp::SetPerms { .. } => perms += 1,
                    }
                }
                if perms > 0 {
                    parts.push(format!("+{perms} set-perms"));
                }
                let guard = if txn.only_if_exists.is_some() {
                    " (if state exists)"
                } else {
                    ""
                };
                self.say(&who, format!("write{guard}: {}", parts.join(" ")));
            }
        }
    }

    /// Moves bytes and results until nothing is left to do.
    pub(crate) fn run_until_quiet(&mut self) -> anyhow::Result<()> {
        for _ in 0..100_000 {
            if !self.step()? {
                return Ok(());
            }
        }
        bail!("the demo did not settle in 100000 steps")
    }

    /// One round: client bytes to the daemon, daemon bytes to the clients, results to the
    /// machines. False when nothing moved.
    fn step(&mut self) -> anyhow::Result<bool> {
        let mut moved = !self.answered.is_empty();
        for (actor, machine_op, op, reply) in std::mem::take(&mut self.answered) {
            self.deliver(actor, machine_op, &op, reply)?;
        }
        let mut done = Vec::new();
        let mut events = Vec::new();
        for (index, party) in self.parties.iter_mut().enumerate() {
            while let Some(output) = party.client.poll_output() {
                moved = true;
                match output {
                    xsio_xs_client::Output::Transmit(t) => {
                        self.server.handle_input(self.now, party.conn, &t.bytes);
                    }
                    xsio_xs_client::Output::Done { id, result } => done.push((index, id, result)),
                    xsio_xs_client::Output::Event(event) => events.push((index, event)),
                    _ => {}
                }
            }
        }
        while let Some(output) = self.server.poll_output() {
            moved = true;
            match output {
                xsio_xenstored::Output::Transmit { conn, bytes } => {
                    self.now += Duration::from_millis(1);
                    let party = self
                        .parties
                        .iter_mut()
                        .find(|p| p.conn == conn)
                        .context("a transmit for an unknown connection")?;
                    party
                        .client
                        .handle_input(self.now, Input::<std::os::fd::OwnedFd>::Bytes(&bytes))
                        .map_err(|e| anyhow::anyhow!("client protocol error: {e}"))?;
                }
                xsio_xenstored::Output::Close { conn, reason } => {
                    bail!("xenstored closed connection {conn:?}: {reason:?}")
                }
                _ => {}
            }
        }
        for (index, id, result) in done {
            self.complete(index, id, result)?;
        }
        for (index, event) in events {
            self.fire(index, event)?;
        }
        Ok(moved)
    }

    fn complete(
        &mut self,
        party: usize,
        id: OpId,
        result: Result<Response, Error>,
    ) -> anyhow::Result<()> {
        let Some((actor, machine_op, op)) = self.parties[party].pending.remove(&id) else {
            return Ok(());
        };
        self.deliver(actor, machine_op, &op, xenbus::to_reply(&op, result))
    }

    /// Hands `actor` the answer to its request `machine_op`, tracing reads.
    fn deliver(
        &mut self,
        actor: Actor,
        machine_op: OpId,
        op: &XsOp,
        reply: Result<Reply, XsError>,
    ) -> anyhow::Result<()> {
        if let (XsOp::Read { path }, Err(err)) = (op, &reply) {
            let who = self.actor_name(actor);
            self.say(&who, format!("read {path}: {:?}", err.kind));
        }
        if let (XsOp::Read { path }, Ok(Reply::Value(value))) = (op, &reply) {
            let who = self.actor_name(actor);
            let shown = value.as_deref().map_or("(missing)".to_owned(), |v| {
                match (path.ends_with("/state"), XenbusState::parse(v)) {
                    (true, Ok(state)) => format!("{v} ({state})"),
                    _ => v.to_owned(),
                }
            });
            self.say(&who, format!("read {path} = {shown}"));
        }
        let now = self.now;
        match actor {
            Actor::Toolstack(i) => self.devices[i].toolstack_results.push(reply),
            Actor::Waiter(i) => {
                if let Some(waiter) = self.devices[i].waiter.as_mut() {
                    waiter.handle_reply(now, machine_op, reply)?;
                }
            }
            Actor::Backend(i) => self.devices[i]
                .backend
                .handle_reply(now, machine_op, reply)?,
            Actor::Frontend(i) => self.devices[i]
                .frontend
                .handle_reply(now, machine_op, reply)?,
        }
        self.drain(actor)
    }

    fn fire(&mut self, party: usize, event: WatchEvent) -> anyhow::Result<()> {
        let Some(actor) = self.parties[party].watchers.get(&event.token).copied() else {
            return Ok(());
        };
        let who = self.actor_name(actor);
        self.say(&who, format!("watch fired: {}", event.path));
        let now = self.now;
        match actor {
            Actor::Toolstack(_) => {}
            Actor::Waiter(i) => {
                if let Some(waiter) = self.devices[i].waiter.as_mut() {
                    waiter.handle_watch(now, &event.path, &event.token);
                }
            }
            Actor::Backend(i) => {
                self.devices[i]
                    .backend
                    .handle_watch(now, &event.path, &event.token)
            }
            Actor::Frontend(i) => {
                self.devices[i]
                    .frontend
                    .handle_watch(now, &event.path, &event.token)
            }
        }
        self.drain(actor)
    }

    /// Drains one machine's outputs: requests go to its client, events to the trace.
    pub(crate) fn drain(&mut self, actor: Actor) -> anyhow::Result<()> {
        loop {
            let who = self.actor_name(actor);
            let line = match actor {
                Actor::Toolstack(_) => return Ok(()),
                Actor::Backend(i) => match self.devices[i].backend.poll_output() {
                    None => return Ok(()),
                    Some(Output::Request(r)) => {
                        self.send(actor, r);
                        continue;
                    }
                    Some(Output::Event(e)) => self.backend_event(i, e),
                },
                Actor::Frontend(i) => match self.devices[i].frontend.poll_output() {
                    None => return Ok(()),
                    Some(Output::Request(r)) => {
                        self.send(actor, r);
                        continue;
                    }
                    Some(Output::Event(e)) => self.frontend_event(i, e),
                },
                Actor::Waiter(i) => match self.devices[i]
                    .waiter
                    .as_mut()
                    .and_then(StateWaiter::poll_output)
                {
                    None => return Ok(()),
                    Some(Output::Request(r)) => {
                        self.send(actor, r);
                        continue;
                    }
                    Some(Output::Event(WaitEvent::Done(result))) => {
                        let line = format!("wait for backend Closed: {result:?}");
                        if let Ok(XenbusState::Closed) = result {
                            let destroy = self.devices[i].backend.config().areas.destroy();
                            self.say(&who, line);
                            self.send(
                                Actor::Toolstack(i),
                                Request {
                                    id: TOOLSTACK_OP,
                                    op: XsOp::Transaction(destroy),
                                },
                            );
                            continue;
                        }
                        Some(line)
                    }
                    Some(Output::Event(WaitEvent::StillWaiting(state))) => {
                        Some(format!("still waiting (backend {state})"))
                    }
                    Some(Output::Event(other)) => Some(format!("{other:?}")),
                },
            };
            if let Some(line) = line {
                self.say(&who, line);
            }
        }
    }

    fn backend_event(&mut self, i: usize, event: BackendEvent) -> Option<String> {
        match event {
            BackendEvent::StateChanged { from, to } => {
                self.devices[i].history.push(("backend", to));
                Some(format!("state {from} -> {to}"))
            }
            BackendEvent::FrontendState(_) => None,
            BackendEvent::Connected { frontend } => {
                Some(format!("connected: ring {}", kv(&frontend)))
            }
            other @ (BackendEvent::Failed(_)
            | BackendEvent::ConnectFailed(_)
            | BackendEvent::BadFrontendState(_)) => {
                let line = format!("{other:?}");
                self.devices[i].problems.push(format!("backend: {line}"));
                Some(line)
            }
            other => Some(format!("{other:?}")),
        }
    }

    fn frontend_event(&mut self, i: usize, event: FrontendEvent) -> Option<String> {
        match event {
            FrontendEvent::StateChanged { from, to } => {
                self.devices[i].history.push(("frontend", to));
                Some(format!("state {from} -> {to}"))
            }
            FrontendEvent::BackendState(_) => None,
            FrontendEvent::Connected { backend } => {
                Some(format!("connected: disk {}", kv(&backend)))
            }
            other @ (FrontendEvent::Failed(_)
            | FrontendEvent::ConnectFailed(_)
            | FrontendEvent::BadBackendState(_)) => {
                let line = format!("{other:?}");
                self.devices[i].problems.push(format!("frontend: {line}"));
                Some(line)
            }
            other => Some(format!("{other:?}")),
        }
    }

    /// Runs one xenstore operation for the toolstack and waits for it.
    pub(crate) fn toolstack_call(
        &mut self,
        call: impl FnOnce(&mut Client, Instant) -> OpId,
    ) -> anyhow::Result<Result<Response, Error>> {
        let now = self.now;
        let id = call(&mut self.parties[TOOLSTACK].client, now);
        for _ in 0..10_000 {
            let mut moved = false;
            let mut result = None;
            while let Some(output) = self.parties[TOOLSTACK].client.poll_output() {
                moved = true;
                match output {
                    xsio_xs_client::Output::Transmit(t) => {
                        let conn = self.parties[TOOLSTACK].conn;
                        self.server.handle_input(self.now, conn, &t.bytes);
                    }
                    xsio_xs_client::Output::Done {
                        id: done,
                        result: r,
                    } if done == id => result = Some(r),
                    _ => {}
                }
            }
            if let Some(result) = result {
                return Ok(result);
            }
            while let Some(output) = self.server.poll_output() {
                moved = true;
                if let xsio_xenstored::Output::Transmit { conn, bytes } = output {
                    // Other parties' bytes (if any) reach their clients too, to be
                    // handled by the next `run_until_quiet`.
                    if let Some(party) = self.parties.iter_mut().find(|p| p.conn == conn) {
                        party
                            .client
                            .handle_input(self.now, Input::<std::os::fd::OwnedFd>::Bytes(&bytes))
                            .map_err(|e| anyhow::anyhow!("client protocol error: {e}"))?;
                    }
                }
            }
            if !moved {
                break;
            }
        }
        bail!("a toolstack read did not complete")
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

fn kv(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
