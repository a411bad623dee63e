//! A QEMU in a box, for worlds with virtual time: a [`Store`] that answers the QEMU
//! operations of the toolstack machines (QMP, files, the process) the way QEMU 7.2 does:
//! run state, fd sets, block devices with trays and media, `quit`. It holds the driver's
//! descriptors as [`TrackedFd`]s (so a test counts leaks), and can be told to delay,
//! refuse, hang, drop the connection or die on any request ([`Fate`]). The device model's
//! tests (`xsio-dm`) and the CD-ROM media change's (`xsio-cdrom`) run on it.
//!
//! It takes only the QEMU operations of its connection, so it shares a connection with a
//! xenstore store: `(SimQemu, (FixedHost, XenstoredStore))`.
//!
//! What it simplifies: a removed fd set's descriptor is closed at once, whatever the run
//! state (QEMU 7.2 closes it only while the guest runs), and a set goes away once it has
//! neither a descriptor nor a block device using it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xsio_core::{FdLedger, Machine, OpId, TrackedFd};
use xsio_ops::{
    FdHandle, FileOp, Input, InputError, Op, OpError, OpErrorKind, Output, PeerEvent, ProcessExit,
    ProcessOp, QemuVersion, QmpCommand, QmpErrorClass, QmpEvent, QmpOp, QmpSession, Reply,
};

use crate::harness::{Actor, Conn, Harness, HarnessError, Owner, Store};

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

impl Fate {
    /// The fates of a run that goes well up to one request: the first `answered` answered
    /// at once, then `then` (later requests are answered at once too).
    pub fn after_answers(answered: usize, then: Fate) -> Vec<Fate> {
        let mut fates = vec![Fate::Answer(Duration::ZERO); answered];
        fates.push(then);
        fates
    }
}

/// What the box reports, in order, for the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// A command arrived (name, arguments, number of descriptors).
    Command(String, Option<Value>, usize),
    /// The connection ended (it may be opened again).
    Closed,
    /// QEMU died.
    Died,
    /// An fd set was created.
    FdSetAdded(u64),
    /// An fd set went away (its descriptor removed, no block device using it).
    FdSetRemoved(u64),
    /// A drive's medium changed: the drive's id and its file (`None`: empty).
    Medium(String, Option<String>),
}

/// One of QEMU's fd sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdSet {
    /// The `opaque` label `add-fd` gave its descriptor.
    pub opaque: String,
    /// Whether its descriptor is still there (not yet `remove-fd`ed).
    pub has_fd: bool,
    /// How many block devices opened `/dev/fdset/N` (each holds a duplicate).
    pub users: u32,
}

impl FdSet {
    /// A set holding one descriptor labelled `opaque`, used by no block device (what
    /// `add-fd` makes).
    pub fn with_fd(opaque: &str) -> FdSet {
        FdSet {
            opaque: opaque.to_owned(),
            has_fd: true,
            users: 0,
        }
    }
}

/// A removable drive (an `ide-cd`): its tray and medium.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Drive {
    /// The tray is open.
    pub tray_open: bool,
    /// The guest locked the tray (`eject` needs `force`).
    pub locked: bool,
    /// The medium: file name and format driver; `None`: empty.
    pub medium: Option<(String, String)>,
}

/// The QEMU behind connection `conn` of a harness.
#[derive(Debug)]
pub struct SimQemu {
    /// The connection leading to it.
    pub conn: Conn,
    /// Its version (the greeting's and `query-version`'s).
    pub version: QemuVersion,
    /// Its run state (`query-status`).
    pub status: String,
    /// The driver's descriptors (what [`FileOp::Open`] gave out).
    pub ledger: FdLedger,
    /// The driver's descriptors, by handle.
    handles: BTreeMap<FdHandle, TrackedFd>,
    next_handle: u64,
    /// QEMU's fd sets by id.
    pub fdsets: BTreeMap<u64, FdSet>,
    /// Removable drives by device id (`ide-5632`).
    pub drives: BTreeMap<String, Drive>,
    next_fdset: u64,
    connected: bool,
    alive: bool,
    /// Answers on their way: (due, owner, id, result).
    in_transit: Vec<(Instant, Owner, OpId, Result<Reply, OpError>)>,
    /// Requests nobody will answer while QEMU lives.
    hung: Vec<(Owner, OpId)>,
    /// The fate of each request in the order they arrive; `Answer(0)` once exhausted.
    fates: Vec<Fate>,
    taken: usize,
    /// When QEMU dies with the connection open: the exit before the connection's end.
    pub exit_first: bool,
    /// What it saw and did, in order.
    pub seen: Vec<Seen>,
}

impl SimQemu {
    /// A live QEMU of `version` in run state `status`, not yet connected.
    pub fn new(conn: Conn, version: QemuVersion, status: &str) -> SimQemu {
        SimQemu {
            conn,
            version,
            status: status.to_owned(),
            ledger: FdLedger::default(),
            handles: BTreeMap::new(),
            next_handle: 0,
            fdsets: BTreeMap::new(),
            drives: BTreeMap::new(),
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
    pub fn qemu_7_2(conn: Conn, status: &str) -> SimQemu {
        SimQemu::new(
            conn,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22,
            },
            status,
        )
    }

    /// The fate of each request in the order they arrive (then `Answer(0)`).
    pub fn with_fates(mut self, fates: Vec<Fate>) -> SimQemu {
        self.fates = fates;
        self
    }

    /// Adds an empty removable drive (an `ide-cd`) with device id `id`.
    pub fn with_cdrom(mut self, id: &str) -> SimQemu {
        self.drives.insert(id.to_owned(), Drive::default());
        self
    }

    /// Handles the driver still holds (given out, not consumed).
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Whether it still runs.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// The names of the commands it received, in order.
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
    pub fn die<A: Actor>(
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
    pub fn drop_connection<A: Actor>(
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
    fn execute<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        owner: Owner,
        id: OpId,
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
                After::Event(event) => harness.peer_event(self.conn, PeerEvent::Qmp(event)),
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
                self.fdsets.insert(id, FdSet::with_fd(&opaque));
                self.seen.push(Seen::FdSetAdded(id));
                Ok(Reply::Qmp(json!({"fdset-id": id, "fd": 12})))
            }
            "xen-save-devices-state" => {
                let filename = args["filename"].as_str().unwrap_or_default();
                if args.get("live").is_some() && !self.version.at_least(2, 11) {
                    return Err(unexpected("live"));
                }
                match fdset_of(filename) {
                    Some(set) if self.fdsets.get(&set).is_some_and(|s| s.has_fd) => {
                        Ok(Reply::Qmp(json!({})))
                    }
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
                    .map(|(id, set)| {
                        let fds: Vec<Value> = if set.has_fd {
                            vec![json!({"fd": 12, "opaque": set.opaque})]
                        } else {
                            Vec::new()
                        };
                        json!({"fdset-id": id, "fds": fds})
                    })
                    .collect();
                Ok(Reply::Qmp(Value::Array(sets)))
            }
            "remove-fd" => {
                let set = args["fdset-id"].as_u64().unwrap_or(u64::MAX);
                match self.fdsets.get_mut(&set) {
                    Some(fdset) if fdset.has_fd => {
                        fdset.has_fd = false;
                        self.free_unused(set);
                        Ok(Reply::Qmp(json!({})))
                    }
                    _ => Err(qmp_error(
                        QmpErrorClass::GenericError,
                        &format!("File descriptor named 'fdset-id:{set}' not found"),
                    )),
                }
            }
            "query-version" => Ok(Reply::Qmp(json!({
                "qemu": {
                    "major": self.version.major,
                    "minor": self.version.minor,
                    "micro": self.version.micro,
                },
                "package": "sim",
            }))),
            "query-block" => {
                let drives: Vec<Value> = self
                    .drives
                    .iter()
                    .map(|(id, drive)| {
                        let mut info = json!({
                            "device": "",
                            "qdev": id,
                            "removable": true,
                            "locked": drive.locked,
                            "tray_open": drive.tray_open,
                        });
                        if let Some((file, drv)) = &drive.medium {
                            info["inserted"] = json!({"file": file, "drv": drv, "ro": true});
                        }
                        info
                    })
                    .collect();
                Ok(Reply::Qmp(Value::Array(drives)))
            }
            "eject" => {
                let id = self.drive_named(&args)?;
                let force = args["force"].as_bool().unwrap_or(false);
                let drive = self.drives.get_mut(&id).ok_or_else(|| no_device(&id))?;
                if drive.locked && !force {
                    return Err(qmp_error(
                        QmpErrorClass::GenericError,
                        &format!("Device '{id}' is locked and force was not specified"),
                    ));
                }
                if !drive.tray_open {
                    drive.tray_open = true;
                    after.push(After::Event(tray_moved(&id, true)));
                }
                self.set_medium(&id, None);
                Ok(Reply::Qmp(json!({})))
            }
            name @ ("blockdev-change-medium" | "change") => {
                let id = self.drive_named(&args)?;
                let (filename, format) = if name == "change" {
                    (args["target"].as_str(), args["arg"].as_str())
                } else {
                    (args["filename"].as_str(), args["format"].as_str())
                };
                let filename = filename.unwrap_or_default().to_owned();
                let format = format.unwrap_or("raw").to_owned();
                if !self.drives.contains_key(&id) {
                    return Err(no_device(&id));
                }
                if !KNOWN_FORMATS.contains(&format.as_str()) {
                    return Err(qmp_error(
                        QmpErrorClass::GenericError,
                        &format!("Unknown driver '{format}'"),
                    ));
                }
                if let Some(set) = fdset_of(&filename) {
                    match self.fdsets.get_mut(&set) {
                        Some(fdset) if fdset.has_fd => fdset.users += 1,
                        _ => {
                            return Err(qmp_error(
                                QmpErrorClass::GenericError,
                                &format!("Could not open '{filename}': No such file or directory"),
                            ));
                        }
                    }
                }
                let drive = self.drives.entry(id.clone()).or_default();
                let was_open = drive.tray_open;
                drive.tray_open = false;
                if !was_open {
                    after.push(After::Event(tray_moved(&id, true)));
                }
                self.set_medium(&id, Some((filename, format)));
                after.push(After::Event(tray_moved(&id, false)));
                Ok(Reply::Qmp(json!({})))
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

    /// The drive a block command names: `id` (QEMU 2.8 and later) or `device`.
    fn drive_named(&self, args: &Value) -> Result<String, OpError> {
        if let Some(id) = args.get("id").and_then(Value::as_str) {
            if !self.version.at_least(2, 8) {
                return Err(unexpected("id"));
            }
            return Ok(id.to_owned());
        }
        match args.get("device").and_then(Value::as_str) {
            Some(device) => Ok(device.to_owned()),
            None => Err(qmp_error(
                QmpErrorClass::GenericError,
                "Parameter 'id' is missing",
            )),
        }
    }

    /// Replaces drive `id`'s medium, releasing the fd set the old one used.
    fn set_medium(&mut self, id: &str, medium: Option<(String, String)>) {
        let Some(drive) = self.drives.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut drive.medium, medium.clone());
        if old == medium {
            return;
        }
        self.seen
            .push(Seen::Medium(id.to_owned(), medium.map(|(file, _)| file)));
        if let Some(set) = old.and_then(|(file, _)| fdset_of(&file)) {
            if let Some(fdset) = self.fdsets.get_mut(&set) {
                fdset.users = fdset.users.saturating_sub(1);
            }
            self.free_unused(set);
        }
    }

    /// Frees fd set `set` once it has neither its descriptor nor a user.
    fn free_unused(&mut self, set: u64) {
        if self
            .fdsets
            .get(&set)
            .is_some_and(|s| !s.has_fd && s.users == 0)
        {
            self.fdsets.remove(&set);
            self.seen.push(Seen::FdSetRemoved(set));
        }
    }

    /// Delivers the answers due by now (all of them with `all`); true when any was.
    fn flush_due<A: Actor>(
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
    Event(QmpEvent),
}

/// The format drivers it knows.
const KNOWN_FORMATS: &[&str] = &["raw", "qcow", "qcow2", "vpc", "qed", "host_device"];

/// `N` of `/dev/fdset/N`.
fn fdset_of(filename: &str) -> Option<u64> {
    filename.strip_prefix("/dev/fdset/")?.parse().ok()
}

fn unexpected(parameter: &str) -> OpError {
    qmp_error(
        QmpErrorClass::GenericError,
        &format!("Parameter '{parameter}' is unexpected"),
    )
}

fn no_device(id: &str) -> OpError {
    qmp_error(
        QmpErrorClass::DeviceNotFound,
        &format!("Device '{id}' not found"),
    )
}

fn tray_moved(id: &str, open: bool) -> QmpEvent {
    QmpEvent {
        name: "DEVICE_TRAY_MOVED".into(),
        data: json!({"device": "", "id": id, "tray-open": open}),
    }
}

impl<A: Actor> Store<A> for SimQemu {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        while let Some((owner, request)) = harness.take_request_where(self.conn, |op| {
            matches!(op, Op::Qmp(_) | Op::File(_) | Op::Process(_))
        }) {
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

/// A connection error with `detail`.
pub fn connection(detail: &str) -> OpError {
    OpError::new(OpErrorKind::Connection, detail)
}

/// QEMU's error reply of `class` with `desc`.
pub fn qmp_error(class: QmpErrorClass, desc: &str) -> OpError {
    OpError::new(OpErrorKind::Qmp(class), desc)
}

/// A machine with the time of its completion and the number of completions it reported
/// (every event it reports counts as a completion: the operations of `xsio-dm` and
/// `xsio-cdrom` report only that).
#[derive(Debug)]
pub struct Timed<M> {
    /// The machine.
    pub machine: M,
    last_input: Instant,
    /// When each completion came (the time of the input that caused it).
    pub completions: Vec<Instant>,
}

impl<M> Timed<M> {
    /// Wraps `machine`, made at `now`.
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
