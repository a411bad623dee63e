//! A QEMU in a box, for the harness: a [`Store`] that answers the dm operations' requests
//! the way QEMU 7.2 does (run state, fd sets, `quit`), holds the driver's descriptors as
//! [`TrackedFd`]s, and can be told to delay, refuse, hang, drop the connection or die on
//! any request. Time is the harness's virtual clock.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xsio_core::{FdLedger, Machine, TrackedFd};
use xsio_harness::{Conn, Harness, HarnessError, Owner, Store};
use xsio_ops::{
    FdHandle, FileOp, Input, InputError, Op, OpError, OpErrorKind, Output, PeerEvent, ProcessExit,
    ProcessOp, QemuVersion, QmpCommand, QmpErrorClass, QmpOp, QmpSession, Reply,
};

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Executed; the answer arrives after this long.
    Answer(Duration),
    /// Refused: a QMP error reply (a file error for an open, a connection error for a
    /// connect), after this long.
    Refuse(Duration),
    /// Never answered, until QEMU dies.
    Hang,
    /// The connection drops as the request arrives (QEMU lives on).
    Drop,
    /// QEMU dies as the request arrives.
    Die,
}

/// What the box reports, in order, for the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A command arrived (name, arguments, number of descriptors).
    Command(String, Option<Value>, usize),
    /// The connection ended (it may be opened again).
    Closed,
    /// QEMU died.
    Died,
    /// An fd set was created.
    FdSetAdded(u64),
    /// An fd set was removed.
    FdSetRemoved(u64),
}

/// The QEMU behind connection `conn` of a harness.
#[derive(Debug)]
pub struct FakeQemu {
    pub conn: Conn,
    pub version: QemuVersion,
    pub status: String,
    pub ledger: FdLedger,
    /// The driver's descriptors, by handle.
    handles: BTreeMap<FdHandle, TrackedFd>,
    next_handle: u64,
    /// QEMU's fd sets: id → opaque.
    pub fdsets: BTreeMap<u64, String>,
    next_fdset: u64,
    connected: bool,
    alive: bool,
    /// Answers on their way: (due, owner, id, result).
    in_transit: Vec<(Instant, Owner, xsio_core::OpId, Result<Reply, OpError>)>,
    /// Requests nobody will answer while QEMU lives.
    hung: Vec<(Owner, xsio_core::OpId)>,
    /// The fate of each request in the order they arrive; `Answer(0)` once exhausted.
    fates: Vec<Fate>,
    taken: usize,
    /// When QEMU dies with the connection open: the exit before the connection's end.
    pub exit_first: bool,
    pub seen: Vec<Seen>,
}

impl FakeQemu {
    /// A live QEMU of `version` in run state `status`, not yet connected.
    pub fn new(conn: Conn, version: QemuVersion, status: &str) -> FakeQemu {
        FakeQemu {
            conn,
            version,
            status: status.to_owned(),
            ledger: FdLedger::default(),
            handles: BTreeMap::new(),
            next_handle: 0,
            fdsets: BTreeMap::new(),
            next_fdset: 0,
            connected: false,
            alive: true,
            in_transit: Vec::new(),
            hung: Vec::new(),
            fates: Vec::new(),
            taken: 0,
            exit_first: true,
            seen: Vec::new(),
        }
    }

    /// QEMU 7.2.22, as on this machine.
    pub fn qemu_7_2(conn: Conn, status: &str) -> FakeQemu {
        FakeQemu::new(
            conn,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22,
            },
            status,
        )
    }

    pub fn with_fates(mut self, fates: Vec<Fate>) -> FakeQemu {
        self.fates = fates;
        self
    }

    /// Handles the driver still holds (given out, not consumed).
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    pub fn is_alive(&self) -> bool {
        self.alive
    }

    pub fn commands(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Command(name, ..) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// QEMU dies now (with `exit`): everything in flight fails, the connection ends.
    pub fn die<A: xsio_harness::Actor>(
        &mut self,
        harness: &mut Harness<A>,
        exit: ProcessExit,
    ) -> Result<(), HarnessError> {
        if !self.alive {
            return Ok(());
        }
        self.alive = false;
        self.seen.push(Seen::Died);
        if self.exit_first {
            harness.peer_event(self.conn, PeerEvent::Exited(Some(exit.clone())));
        }
        self.drop_connection(harness)?;
        if !self.exit_first {
            harness.peer_event(self.conn, PeerEvent::Exited(Some(exit)));
        }
        Ok(())
    }

    /// The connection ends: what is in flight on it fails (answers already on their way
    /// still arrive, as bytes already read would).
    pub fn drop_connection<A: xsio_harness::Actor>(
        &mut self,
        harness: &mut Harness<A>,
    ) -> Result<(), HarnessError> {
        for (owner, id) in std::mem::take(&mut self.hung) {
            harness.reply(owner, id, Err(connection("QEMU closed the connection")))?;
        }
        if self.connected {
            self.connected = false;
            self.seen.push(Seen::Closed);
            harness.peer_event(self.conn, PeerEvent::QmpClosed);
        }
        Ok(())
    }

    fn fate(&mut self) -> Fate {
        let fate = self
            .fates
            .get(self.taken)
            .copied()
            .unwrap_or(Fate::Answer(Duration::ZERO));
        self.taken += 1;
        fate
    }

    /// Executes one request; `None` when the answer is not to come (hung, or dead).
    fn execute<A: xsio_harness::Actor>(
        &mut self,
        harness: &mut Harness<A>,
        owner: Owner,
        id: xsio_core::OpId,
        op: Op,
    ) -> Result<(), HarnessError> {
        let mut fate = self.fate();
        if !self.alive || matches!(op, Op::File(_)) {
            // Nothing is left to hang or die (the driver answers for a dead QEMU at once),
            // and files are the driver's own business, not QEMU's.
            fate = match fate {
                Fate::Hang | Fate::Drop | Fate::Die => Fate::Answer(Duration::ZERO),
                other => other,
            };
        }
        // Descriptors listed by a command are consumed whatever becomes of it.
        let mut handles_ok = true;
        if let Op::Qmp(QmpOp::Command(command)) = &op {
            for fd in &command.fds {
                handles_ok &= self.handles.remove(fd).is_some();
            }
            self.seen.push(Seen::Command(
                command.command.clone(),
                command.arguments.clone(),
                command.fds.len(),
            ));
        }
        let (delay, refuse) = match fate {
            Fate::Answer(delay) => (delay, false),
            Fate::Refuse(delay) => (delay, true),
            Fate::Hang => {
                self.hung.push((owner, id));
                return Ok(());
            }
            Fate::Drop => {
                self.hung.push((owner, id));
                return self.drop_connection(harness);
            }
            Fate::Die => {
                self.hung.push((owner, id));
                return self.die(harness, ProcessExit::Signalled(9));
            }
        };
        let mut after = Vec::new();
        let result = if !handles_ok {
            Err(OpError::new(OpErrorKind::Invalid, "unknown fd handle"))
        } else {
            self.answer(&op, refuse, &mut after)
        };
        let due = xsio_core::deadline(harness.now(), delay).unwrap_or(harness.now());
        self.in_transit.push((due, owner, id, result));
        for event in after {
            match event {
                After::Quit => {
                    // The reply first, then the end (QEMU answers `quit` before exiting).
                    self.flush_due(harness, true)?;
                    self.die(harness, ProcessExit::Exited(0))?;
                }
                After::Kill => self.die(harness, ProcessExit::Signalled(9))?,
            }
        }
        Ok(())
    }

    fn answer(&mut self, op: &Op, refuse: bool, after: &mut Vec<After>) -> Result<Reply, OpError> {
        match op {
            Op::Qmp(QmpOp::Connect) => {
                if !self.alive || refuse {
                    return Err(connection("connection refused"));
                }
                self.connected = true;
                Ok(Reply::QmpConnected(QmpSession {
                    version: self.version,
                    package: "fake".into(),
                }))
            }
            Op::Qmp(QmpOp::Command(command)) => {
                if !self.connected {
                    return Err(connection("not connected"));
                }
                if refuse {
                    return Err(qmp_error(QmpErrorClass::GenericError, "refused"));
                }
                self.command(command, after)
            }
            Op::File(FileOp::Open(open)) => {
                if refuse {
                    return Err(OpError::new(
                        OpErrorKind::File,
                        format!("{}: EACCES", open.path),
                    ));
                }
                let handle = FdHandle::from_raw(self.next_handle);
                self.next_handle += 1;
                self.handles.insert(handle, self.ledger.open());
                Ok(Reply::Fd(handle))
            }
            // close(2) frees the descriptor even when it reports an error: never refused.
            Op::File(FileOp::Close(fd)) => match self.handles.remove(fd) {
                Some(_) => Ok(Reply::Done),
                None => Err(OpError::new(OpErrorKind::Invalid, "unknown fd handle")),
            },
            Op::Process(ProcessOp::Kill) => {
                if refuse {
                    return Err(OpError::new(OpErrorKind::Other, "EPERM"));
                }
                after.push(After::Kill);
                Ok(Reply::Done)
            }
            _ => Err(OpError::new(
                OpErrorKind::Unsupported,
                "not a QEMU operation",
            )),
        }
    }

    fn command(&mut self, command: &QmpCommand, after: &mut Vec<After>) -> Result<Reply, OpError> {
        let args = command.arguments.clone().unwrap_or(Value::Null);
        match command.command.as_str() {
            "query-status" => Ok(Reply::Qmp(json!({
                "status": self.status,
                "singlestep": false,
                "running": self.status == "running",
            }))),
            "stop" => {
                self.status = "paused".into();
                Ok(Reply::Qmp(json!({})))
            }
            "cont" => {
                self.status = "running".into();
                Ok(Reply::Qmp(json!({})))
            }
            "add-fd" => {
                if command.fds.len() != 1 {
                    return Err(qmp_error(
                        QmpErrorClass::GenericError,
                        "No file descriptor supplied via SCM_RIGHTS",
                    ));
                }
                let id = self.next_fdset;
                self.next_fdset += 1;
                let opaque = args["opaque"].as_str().unwrap_or_default().to_owned();
                self.fdsets.insert(id, opaque);
                self.seen.push(Seen::FdSetAdded(id));
                Ok(Reply::Qmp(json!({"fdset-id": id, "fd": 12})))
            }
            "xen-save-devices-state" => {
                let filename = args["filename"].as_str().unwrap_or_default();
                let set = filename
                    .strip_prefix("/dev/fdset/")
                    .and_then(|n| n.parse::<u64>().ok());
                let live_known = self.version
                    >= QemuVersion {
                        major: 2,
                        minor: 11,
                        micro: 0,
                    };
                if args.get("live").is_some() && !live_known {
                    return Err(qmp_error(
                        QmpErrorClass::GenericError,
                        "Parameter 'live' is unexpected",
                    ));
                }
                match set {
                    Some(set) if self.fdsets.contains_key(&set) => Ok(Reply::Qmp(json!({}))),
                    _ => Err(qmp_error(
                        QmpErrorClass::GenericError,
                        "Could not open file: No such fd set",
                    )),
                }
            }
            "query-fdsets" => {
                let sets: Vec<Value> = self
                    .fdsets
                    .iter()
                    .map(|(id, opaque)| json!({"fdset-id": id, "fds": [{"fd": 12, "opaque": opaque}]}))
                    .collect();
                Ok(Reply::Qmp(Value::Array(sets)))
            }
            "remove-fd" => {
                let set = args["fdset-id"].as_u64().unwrap_or(u64::MAX);
                match self.fdsets.remove(&set) {
                    Some(_) => {
                        self.seen.push(Seen::FdSetRemoved(set));
                        Ok(Reply::Qmp(json!({})))
                    }
                    None => Err(qmp_error(
                        QmpErrorClass::GenericError,
                        &format!("File descriptor named 'fdset-id:{set}' not found"),
                    )),
                }
            }
            "quit" => {
                after.push(After::Quit);
                Ok(Reply::Qmp(json!({})))
            }
            other => Err(qmp_error(
                QmpErrorClass::CommandNotFound,
                &format!("The command {other} has not been found"),
            )),
        }
    }

    /// Delivers the answers due by now (all of them with `all`); true when any was.
    fn flush_due<A: xsio_harness::Actor>(
        &mut self,
        harness: &mut Harness<A>,
        all: bool,
    ) -> Result<bool, HarnessError> {
        let now = harness.now();
        let mut moved = false;
        self.in_transit.sort_by_key(|(due, ..)| *due);
        while let Some((due, ..)) = self.in_transit.first() {
            if !all && *due > now {
                break;
            }
            let (_, owner, id, result) = self.in_transit.remove(0);
            harness.reply(owner, id, result)?;
            moved = true;
        }
        Ok(moved)
    }
}

enum After {
    Quit,
    Kill,
}

impl<A: xsio_harness::Actor> Store<A> for FakeQemu {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        while let Some((owner, request)) = harness.take_request(self.conn) {
            moved = true;
            self.execute(harness, owner, request.id, request.op)?;
        }
        moved |= self.flush_due(harness, false)?;
        Ok(moved)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.in_transit.iter().map(|(due, ..)| *due).min()
    }
}

pub fn connection(detail: &str) -> OpError {
    OpError::new(OpErrorKind::Connection, detail)
}

pub fn qmp_error(class: QmpErrorClass, desc: &str) -> OpError {
    OpError::new(OpErrorKind::Qmp(class), desc)
}

/// A machine with the time of its completion and the number of completions it reported.
#[derive(Debug)]
pub struct Timed<M> {
    pub machine: M,
    last_input: Instant,
    pub completions: Vec<Instant>,
}

impl<M> Timed<M> {
    pub fn new(machine: M, now: Instant) -> Timed<M> {
        Timed {
            machine,
            last_input: now,
            completions: Vec::new(),
        }
    }
}

impl<M, E> Machine for Timed<M>
where
    M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>, Error = InputError>,
{
    type Input<'a> = Input<'a>;
    type Output = Output<E>;
    type Error = InputError;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        self.last_input = now;
        self.machine.handle_input(now, input)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_input = now;
        self.machine.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<Output<E>> {
        let output = self.machine.poll_output();
        if let Some(Output::Event(_)) = &output {
            self.completions.push(self.last_input);
        }
        output
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }
}
