//! The simulated host in front of xenstored: the hypervisor's answers (domain states),
//! hotplug scripts (with seeded delays, failures and hangs), and one simulated QEMU per
//! guest, reached through the real `xsio-qmp` client machine, bytes and descriptors and
//! all. A [`Store`]: it takes the host, QMP, file and process operations before the
//! xenstored store sees them, as the harness's `FixedHost` does in the machines' tests.
//!
//! Descriptors are [`TrackedFd`]s of one [`FdLedger`]: the driver's (files the machines
//! opened, held under [`FdHandle`]s), those on their way inside the QMP client, and those
//! QEMU holds (fd sets, a saved state's duplicate, a medium). Whatever QEMU holds goes when
//! it dies; at the end of a run nothing may be open.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use xsio_core::{FdLedger, OpId, TrackedFd};
use xsio_harness::qmp::{Handles, connection_error, reply_of, session_of};
use xsio_harness::{Actor, Conn, DomainLocks, Harness, HarnessError, Owner, Store};
use xsio_ops::{
    DomainState, FileOp, HostOp, Op, OpError, OpErrorKind, PeerEvent, ProcessExit, ProcessOp,
    QmpCommand, QmpEvent, QmpOp, Reply,
};
use xsio_qmp::{Client, Output as QmpOutput};

use crate::qemu::{Effect, SimQemu, Tray};
use crate::world::{chance, index};

/// How hotplug scripts behave, drawn per run of a script from the seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ScriptFaults {
    /// The chance that a script takes `slow_ms` instead of 5 ms.
    pub(crate) slow: f64,
    /// How long a slow script takes.
    pub(crate) slow_ms: u64,
    /// The chance that a script exits 1.
    pub(crate) fail: f64,
    /// The chance that a script never ends (until killed).
    pub(crate) hang: f64,
}

/// What the world must act on (it owns the xenstore side of QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// QEMU of this guest answered `quit`: its xen-bus removes its devices' directories,
    /// then the process exits ([`SimHost::exit`]).
    Quitting(u32),
}

/// One guest's QEMU process and the toolstack's QMP connection to it.
#[derive(Debug)]
struct QemuProc {
    domid: u32,
    /// The harness connection of the machines that drive this QEMU.
    conn: Conn,
    /// `None` once the process ended.
    process: Option<SimQemu>,
    /// The client side of the QMP connection, while open.
    client: Option<Client<TrackedFd>>,
    connecting: Vec<(Owner, OpId)>,
    /// Client command → the harness request it executes.
    commands: BTreeMap<OpId, (Owner, OpId)>,
    quitting: bool,
}

/// A running hotplug script.
#[derive(Debug)]
struct Script {
    owner: Owner,
    id: OpId,
    /// When it ends by itself (`None`: never).
    due: Option<Instant>,
    exit: ProcessExit,
}

/// The host: domains, scripts, QEMUs.
#[derive(Debug)]
pub(crate) struct SimHost {
    rng: ChaCha8Rng,
    /// The chance that QEMU dies as a command reaches it.
    pub(crate) qemu_crash: f64,
    /// Guest → the QMP command its QEMU dies on when it next arrives (a `crash-qemu` step
    /// with `on_command`).
    pub(crate) crash_on: BTreeMap<u32, String>,
    pub(crate) scripts: ScriptFaults,
    pub(crate) domains: BTreeMap<u32, DomainState>,
    qemus: Vec<QemuProc>,
    /// Each QEMU's index in `qemus`, by its connection's index.
    qemu_of_conn: BTreeMap<usize, usize>,
    /// Each QEMU's index in `qemus`, by its guest (a host of ten thousand guests looks one
    /// up at every spawn, exit and liveness question).
    qemu_of_domid: BTreeMap<u32, usize>,
    /// The QEMUs a step must visit even without requests on their connection: spawned or
    /// exited since, or with a command, a connection or a client deadline pending. The
    /// others have nothing to move: a host of ten thousand guests visits a few, not all.
    awake: BTreeSet<usize>,
    pub(crate) ledger: FdLedger,
    handles: Handles<TrackedFd>,
    /// The file each descriptor opened for the machines names, by [`TrackedFd::id`]: what
    /// a medium QEMU opened from an fd set is.
    files: BTreeMap<u64, String>,
    /// The per-domain locks on device changes (a media change takes its guest's).
    locks: DomainLocks,
    running: Vec<Script>,
    notices: Vec<Notice>,
    /// QMP commands received by QEMUs, and QEMU crashes, for the trace: (domid, text).
    pub(crate) seen: Vec<(u32, String)>,
}

impl SimHost {
    pub(crate) fn new(seed: u64, qemu_crash: f64, scripts: ScriptFaults) -> SimHost {
        SimHost {
            // Its own stream, so that host faults do not shift the world's other draws.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5153_454d_5551_4f53),
            qemu_crash,
            crash_on: BTreeMap::new(),
            scripts,
            domains: BTreeMap::new(),
            qemus: Vec::new(),
            qemu_of_conn: BTreeMap::new(),
            qemu_of_domid: BTreeMap::new(),
            awake: BTreeSet::new(),
            ledger: FdLedger::default(),
            handles: Handles::default(),
            files: BTreeMap::new(),
            locks: DomainLocks::default(),
            running: Vec::new(),
            notices: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Starts guest `domid`'s QEMU (run state `status`, with these CD-ROM drives), reached
    /// by the machines on `conn`.
    pub(crate) fn spawn_qemu(
        &mut self,
        domid: u32,
        conn: Conn,
        status: &str,
        trays: BTreeMap<String, Tray>,
    ) {
        let process = SimQemu::new(status, trays, self.ledger.clone());
        let proc = QemuProc {
            domid,
            conn,
            process: Some(process),
            client: None,
            connecting: Vec::new(),
            commands: BTreeMap::new(),
            quitting: false,
        };
        let at = match self.qemu_of_domid.get(&domid) {
            Some(&at) => {
                let old = std::mem::replace(&mut self.qemus[at], proc);
                self.qemu_of_conn.remove(&old.conn.index());
                at
            }
            None => {
                self.qemus.push(proc);
                self.qemu_of_domid.insert(domid, self.qemus.len() - 1);
                self.qemus.len() - 1
            }
        };
        self.qemu_of_conn.insert(conn.index(), at);
        self.awake.insert(at);
    }

    /// Whether guest `domid`'s QEMU runs.
    pub(crate) fn qemu_alive(&self, domid: u32) -> bool {
        self.qemu(domid).is_some()
    }

    /// Guest `domid`'s QEMU, while it runs.
    pub(crate) fn qemu(&self, domid: u32) -> Option<&SimQemu> {
        let at = *self.qemu_of_domid.get(&domid)?;
        self.qemus[at].process.as_ref()
    }

    /// What drive `drive` of guest `domid`'s QEMU holds: `None` when no QEMU runs or it
    /// has no such drive; else the image's path (`None`: empty) and, for a medium passed as
    /// a descriptor, the format QEMU was told.
    pub(crate) fn medium(
        &self,
        domid: u32,
        drive: &str,
    ) -> Option<Option<(String, Option<String>)>> {
        let tray = self.qemu(domid)?.trays.get(drive)?;
        let held = tray.medium.as_ref().map(|file| match &tray.from_fd {
            Some((fd, format)) => {
                let path = self.files.get(fd).cloned();
                (path.unwrap_or_else(|| file.clone()), Some(format.clone()))
            }
            None => (file.clone(), None),
        });
        Some(held)
    }

    /// What the world must act on since the last call.
    pub(crate) fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Descriptors the driver holds for the machines (given out, not consumed).
    pub(crate) fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// QEMU of `domid` ends with `exit` (a crash, a kill, or its clean exit after `quit`):
    /// what it held is closed, the QMP connection ends, the machines on it are told (the
    /// exit first).
    pub(crate) fn exit<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        domid: u32,
        exit: ProcessExit,
    ) -> Result<(), HarnessError> {
        let Some(&at) = self.qemu_of_domid.get(&domid) else {
            return Ok(());
        };
        self.awake.insert(at);
        let q = &mut self.qemus[at];
        if q.process.take().is_none() {
            return Ok(());
        }
        self.seen.push((domid, format!("QEMU exits: {exit}")));
        harness.peer_event(q.conn, PeerEvent::Exited(Some(exit)));
        if let Some(client) = &mut q.client {
            client.handle_input(harness.now(), xsio_core::Input::Closed);
        }
        pump(q, harness, &mut self.notices)?;
        Ok(())
    }

    fn execute<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        at: usize,
        owner: Owner,
        id: OpId,
        op: Op,
    ) -> Result<(), HarnessError> {
        let now = harness.now();
        let answer = match op {
            Op::Qmp(QmpOp::Connect) => {
                let q = &mut self.qemus[at];
                let Some(process) = &mut q.process else {
                    return harness.reply(owner, id, Err(connection_error("connection refused")));
                };
                if let Some(session) = q.client.as_ref().and_then(Client::session) {
                    let session = session_of(session);
                    return harness.reply(owner, id, Ok(Reply::QmpConnected(session)));
                }
                if q.client.is_none() {
                    let mut client = Client::new(xsio_qmp::Config::default(), now);
                    client.handle_input(now, xsio_core::Input::Bytes(&process.greet()));
                    q.client = Some(client);
                }
                q.connecting.push((owner, id));
                return Ok(());
            }
            Op::Qmp(QmpOp::Command(command)) => {
                return self.command(harness, at, owner, id, command);
            }
            Op::File(FileOp::Open(open)) => {
                let fd = self.ledger.open();
                self.files.insert(fd.id(), open.path);
                Ok(Reply::Fd(self.handles.hold(fd)))
            }
            Op::File(FileOp::Close(fd)) => self.handles.close(fd),
            Op::Process(ProcessOp::Kill) => {
                let domid = self.qemus[at].domid;
                harness.reply(owner, id, Ok(Reply::Done))?;
                return self.exit(harness, domid, ProcessExit::Signalled(9));
            }
            _ => Err(OpError::new(
                OpErrorKind::Unsupported,
                "not an operation of the simulated QEMU",
            )),
        };
        harness.reply(owner, id, answer)
    }

    fn command<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        at: usize,
        owner: Owner,
        id: OpId,
        command: QmpCommand,
    ) -> Result<(), HarnessError> {
        let now = harness.now();
        // The command takes its descriptors, closed with it if it goes nowhere.
        let qmp = match self.handles.command(command) {
            Ok(qmp) => qmp,
            Err(err) => return harness.reply(owner, id, Err(err)),
        };
        let q = &mut self.qemus[at];
        let Some(client) = q.client.as_mut().filter(|c| !c.is_closed()) else {
            return harness.reply(owner, id, Err(connection_error("no QMP connection")));
        };
        let op = client.execute(now, qmp);
        q.commands.insert(op, (owner, id));
        Ok(())
    }

    fn host_op<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        owner: Owner,
        id: OpId,
        op: HostOp,
    ) -> Result<(), HarnessError> {
        let now = harness.now();
        let answer = match op {
            HostOp::DomainInfo { domid } => Ok(Reply::Domain(
                self.domains
                    .get(&domid)
                    .copied()
                    .unwrap_or(DomainState::Absent),
            )),
            HostOp::DeviceModelAlive { domid } => Ok(Reply::DeviceModel {
                alive: self.qemu_alive(domid),
            }),
            HostOp::Spawn { .. } => {
                let f = self.scripts;
                let exit = if chance(&mut self.rng, f.fail) {
                    ProcessExit::Exited(1)
                } else {
                    ProcessExit::Exited(0)
                };
                let due = if chance(&mut self.rng, f.hang) {
                    None
                } else if chance(&mut self.rng, f.slow) {
                    xsio_core::deadline(now, Duration::from_millis(f.slow_ms))
                } else {
                    xsio_core::deadline(
                        now,
                        Duration::from_millis(5 + index(&mut self.rng, 5) as u64),
                    )
                };
                self.running.push(Script {
                    owner,
                    id,
                    due,
                    exit,
                });
                return Ok(());
            }
            HostOp::Kill { spawn } => {
                if let Some(at) = self
                    .running
                    .iter()
                    .position(|s| s.owner == owner && s.id == spawn)
                {
                    let script = self.running.remove(at);
                    harness.reply(
                        script.owner,
                        script.id,
                        Ok(Reply::Exited(ProcessExit::Signalled(9))),
                    )?;
                }
                Ok(Reply::Done)
            }
            HostOp::Lock { domid } => return self.locks.lock(harness, domid, owner, id),
            HostOp::Unlock { lock } => {
                self.locks.unlock(harness, owner, lock)?;
                Ok(Reply::Done)
            }
        };
        harness.reply(owner, id, answer)
    }
}

impl<A: Actor> Store<A> for SimHost {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        let now = harness.now();
        // Scripts that ended by now.
        let mut ended = Vec::new();
        self.running.retain(|s| {
            let done = s.due.is_some_and(|due| due <= now);
            if done {
                ended.push((s.owner, s.id, s.exit.clone()));
            }
            !done
        });
        for (owner, id, exit) in ended {
            moved = true;
            harness.reply(owner, id, Ok(Reply::Exited(exit)))?;
        }
        // Host operations, from any connection with requests waiting (a host of thousands
        // of guests has as many connections, nearly all idle at any step).
        for conn in harness.requesting_conns() {
            while let Some((owner, request)) =
                harness.take_request_where(conn, |op| matches!(op, Op::Host(_)))
            {
                moved = true;
                if let Op::Host(op) = request.op {
                    self.host_op(harness, owner, request.id, op)?;
                }
            }
        }
        // Everything on a QEMU's connection: the QEMUs with requests waiting or awake.
        let mut visit = std::mem::take(&mut self.awake);
        for conn in harness.requesting_conns() {
            if let Some(&at) = self.qemu_of_conn.get(&conn.index()) {
                visit.insert(at);
            }
        }
        for at in visit {
            let conn = self.qemus[at].conn;
            // Xenstore operations on this connection (a media change's) are xenstored's.
            while let Some((owner, request)) =
                harness.take_request_where(conn, |op| !matches!(op, Op::Xs(_)))
            {
                moved = true;
                self.execute(harness, at, owner, request.id, request.op)?;
            }
            moved |= self.move_bytes(harness, at)?;
            let q = &self.qemus[at];
            let pending = !q.commands.is_empty()
                || !q.connecting.is_empty()
                || q.client.as_ref().and_then(Client::poll_timeout).is_some();
            if pending {
                self.awake.insert(at);
            }
        }
        Ok(moved)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let scripts = self.running.iter().filter_map(|s| s.due);
        // Only an awake QEMU's client has a deadline (see `awake`).
        let clients = self
            .awake
            .iter()
            .filter_map(|&at| self.qemus[at].client.as_ref()?.poll_timeout());
        scripts.chain(clients).min()
    }
}

impl SimHost {
    /// Moves one QEMU's QMP bytes both ways until quiet; one virtual millisecond per
    /// message QEMU sends. A command may kill QEMU as it arrives (the crash fault).
    fn move_bytes<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        at: usize,
    ) -> Result<bool, HarnessError> {
        let mut moved = false;
        loop {
            let now = harness.now();
            let q = &mut self.qemus[at];
            let Some(client) = &mut q.client else {
                return Ok(moved);
            };
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            let mut transmits = Vec::new();
            let mut round = false;
            // Completions and events the client already has.
            let before = q.commands.len() + q.connecting.len();
            round |= pump_client(q, harness, &mut transmits)?;
            round |= q.commands.len() + q.connecting.len() != before;
            let domid = q.domid;
            for t in transmits {
                round = true;
                let mut crash = self.qemu_alive(domid) && chance(&mut self.rng, self.qemu_crash);
                if let Some(name) = self.crash_on.get(&domid)
                    && qmp_command_name(&t.bytes).as_deref() == Some(name.as_str())
                {
                    self.crash_on.remove(&domid);
                    crash = true;
                }
                let q = &mut self.qemus[at];
                let Some(process) = &mut q.process else {
                    // Bytes to a dead process are lost; its descriptors closed.
                    continue;
                };
                let text = String::from_utf8_lossy(&t.bytes).trim().to_owned();
                if crash {
                    self.seen
                        .push((domid, format!("(fault) QEMU crashes on {text}")));
                    drop(t);
                    self.exit(harness, domid, ProcessExit::Signalled(11))?;
                    continue;
                }
                let ms = u64::try_from(harness.elapsed().as_millis()).unwrap_or(u64::MAX);
                let effect = process.receive(ms, &t.bytes, t.fds);
                let replies = process.take_output();
                for reply in replies {
                    harness.advance(Duration::from_millis(1));
                    if let Some(client) = &mut q.client {
                        client.handle_input(harness.now(), xsio_core::Input::Bytes(&reply));
                    }
                }
                if effect == Effect::Quit && !q.quitting {
                    q.quitting = true;
                    self.notices.push(Notice::Quitting(domid));
                }
            }
            if !round {
                return Ok(moved);
            }
            moved = true;
        }
    }
}

/// Hands the client's completions, session and events to the harness; collects its bytes.
fn pump_client<A: Actor>(
    q: &mut QemuProc,
    harness: &mut Harness<A>,
    transmits: &mut Vec<xsio_core::Transmit<TrackedFd>>,
) -> Result<bool, HarnessError> {
    let Some(client) = &mut q.client else {
        return Ok(false);
    };
    let mut moved = false;
    let mut closed = false;
    while let Some(output) = client.poll_output() {
        moved = true;
        match output {
            QmpOutput::Transmit(t) => transmits.push(t),
            QmpOutput::Connected(session) => {
                for (owner, id) in q.connecting.drain(..) {
                    harness.reply(owner, id, Ok(Reply::QmpConnected(session_of(&session))))?;
                }
            }
            QmpOutput::Done { id, result } => {
                if let Some((owner, request)) = q.commands.remove(&id) {
                    harness.reply(owner, request, reply_of(result))?;
                }
            }
            QmpOutput::Event(event) => harness.peer_event(
                q.conn,
                PeerEvent::Qmp(QmpEvent {
                    name: event.name,
                    data: event.data,
                }),
            ),
            QmpOutput::Closed(_) => closed = true,
            _ => {}
        }
    }
    if closed {
        for (owner, id) in q.connecting.drain(..) {
            harness.reply(
                owner,
                id,
                Err(OpError::new(
                    OpErrorKind::Connection,
                    "QEMU closed the connection before negotiation ended",
                )),
            )?;
        }
        q.client = None;
        harness.peer_event(q.conn, PeerEvent::QmpClosed);
    }
    Ok(moved)
}

fn pump<A: Actor>(
    q: &mut QemuProc,
    harness: &mut Harness<A>,
    _notices: &mut Vec<Notice>,
) -> Result<(), HarnessError> {
    // A dead process reads nothing: what the client still sends is dropped.
    let mut transmits = Vec::new();
    pump_client(q, harness, &mut transmits)?;
    Ok(())
}

/// The name of the QMP command in `bytes` (`execute`), if they hold one.
fn qmp_command_name(bytes: &[u8]) -> Option<String> {
    let message: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(message.get("execute")?.as_str()?.to_owned())
}
