//! The media-change machine: its steps, and the cleanup every failure runs.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::Value;
use xsio_core::{OpId, deadline};
use xsio_device::Device;
use xsio_ops::{
    DomainState, FdHandle, HostOp, InputError, Op, OpError, OpErrorKind, Output, PeerEvent,
    ProcessExit, QemuVersion, QmpCommand, QmpOp, Reply, Request, TxnId, TxnOp, XsOp, expect_domain,
    expect_done, expect_fd, expect_qmp, expect_session, expect_txn_started, expect_value,
    split_checked,
};
use xsio_vbd::Vbd;

mod end;
mod qmp;
mod txn;

use crate::config::{Change, Config, DeviceModel, params};
use crate::error::{CdromError, Changed, QmpStep};

/// What a request in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    DomainInfo,
    Lock,
    Unlock,
    ReadKind,
    ReadDmVersion,
    ReadStubdom,
    ReadBackend,
    ReadDeviceType,
    ReadBackendType,
    Connect,
    QueryVersion,
    Eject,
    Open,
    AddFd,
    ChangeMedium,
    RemoveFd,
    Close,
    /// Connecting again to learn what QEMU holds, after the connection ended.
    Reconnect,
    QueryBlock,
    TxnStart,
    TxnRead,
    TxnApply,
    TxnEnd,
}

/// The three xenstore writes of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Write {
    /// After the eject, before the insert: the drive is empty.
    Intermediate,
    /// The change's result.
    Final,
    /// After a failure: what QEMU holds.
    Reconcile,
}

/// A transaction writing `type` and `params` into the backend and the toolstack entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TxnRun {
    write: Write,
    params: String,
    /// Open on the daemon.
    id: Option<TxnId>,
    /// Writes still to apply.
    steps: VecDeque<TxnOp>,
    /// Commits tried.
    attempts: u32,
}

/// The per-domain lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lock {
    NotAsked,
    Waiting(OpId),
    Held(OpId),
    /// Given back (or the wait withdrawn).
    Released,
}

/// Inserts a medium into, or ejects it from, a guest's emulated CD-ROM drive.
///
/// See the [crate documentation](crate) for the steps. The machine holds no descriptor
/// and no socket: the per-domain lock is [`HostOp::Lock`], the image is opened by the
/// driver ([`FileOp::Open`](xsio_ops::FileOp::Open), read-only) and passed along with
/// `add-fd`. It completes exactly once with a [`Changed`] or a [`CdromError`]; a failure is reported after the
/// cleanup (transaction aborted, descriptor closed, fd set removed, xenstore set to what
/// QEMU holds, lock given back), a timeout at once (the cleanup then goes on).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MediaChange {
    config: Config,
    change: Change,
    devid: u32,
    device: Option<Device>,
    /// The backend's `type` (`qdisk`, `phy`).
    backend_type: String,
    next_id: u64,
    in_flight: BTreeMap<OpId, Purpose>,
    out: VecDeque<Output<Result<Changed, CdromError>>>,
    completed: Option<Result<Changed, CdromError>>,
    deadline: Option<Instant>,
    /// The first failure; the change completes with it once the cleanup is through.
    failure: Option<CdromError>,
    lock: Lock,
    qemu: Option<QemuVersion>,
    qmp_closed: bool,
    exited: Option<Option<ProcessExit>>,
    /// `eject` was sent: QEMU's drive may differ from xenstore until the final write.
    eject_sent: bool,
    /// A descriptor given to the machine and not passed on.
    fd: Option<FdHandle>,
    /// An fd set whose descriptor is still in QEMU.
    fdset: Option<u64>,
    /// The fd set of the new medium.
    new_fdset: Option<u64>,
    txn: Option<TxnRun>,
    reconciled: bool,
    final_written: bool,
    /// What QEMU holds, as this change's own answered commands tell (`params` form): the
    /// cleanup's fallback when QEMU cannot be asked.
    held: Option<String>,
    /// `remove-fd` failed after the medium went in: reported once xenstore says so.
    cleanup_error: Option<CdromError>,
    tray_moves: u32,
}

type Completion = Result<Changed, CdromError>;

impl MediaChange {
    /// Starts `change` of the drive `config` names at `now`.
    pub fn new(config: Config, change: Change, now: Instant) -> MediaChange {
        let mut op = MediaChange {
            deadline: deadline(now, config.timeout),
            devid: 0,
            device: None,
            backend_type: String::new(),
            next_id: 0,
            in_flight: BTreeMap::new(),
            out: VecDeque::new(),
            completed: None,
            failure: None,
            lock: Lock::NotAsked,
            qemu: None,
            qmp_closed: false,
            exited: None,
            eject_sent: false,
            fd: None,
            fdset: None,
            new_fdset: None,
            txn: None,
            reconciled: false,
            final_written: false,
            held: None,
            cleanup_error: None,
            tray_moves: 0,
            config,
            change,
        };
        match Vbd::parse(&op.config.vdev) {
            Ok(vbd) => op.devid = vbd.number(),
            Err(err) => {
                let reason = err.to_string();
                let vdev = op.config.vdev.clone();
                op.complete(Err(CdromError::BadVdev { vdev, reason }));
                return op;
            }
        }
        if op.change.medium().is_some_and(|m| m.path.is_empty()) {
            op.complete(Err(CdromError::EmptyImagePath));
            return op;
        }
        let domid = op.config.domid;
        op.request(Purpose::DomainInfo, HostOp::DomainInfo { domid });
        op
    }

    /// An insert of `medium`.
    pub fn insert(config: Config, medium: crate::Medium, now: Instant) -> MediaChange {
        MediaChange::new(config, Change::Insert(medium), now)
    }

    /// An eject.
    pub fn eject(config: Config, now: Instant) -> MediaChange {
        MediaChange::new(config, Change::Eject, now)
    }

    /// What it was asked.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The change asked for.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// The result, once complete.
    pub fn result(&self) -> Option<&Completion> {
        self.completed.as_ref()
    }

    /// Complete, every request answered, nothing left to drain: nothing more will come out.
    pub fn is_settled(&self) -> bool {
        self.completed.is_some() && self.in_flight.is_empty() && self.out.is_empty()
    }

    /// Requests awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many `DEVICE_TRAY_MOVED` events QEMU sent during the change.
    pub fn tray_moves(&self) -> u32 {
        self.tray_moves
    }

    /// The next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output<Completion>> {
        self.out.pop_front()
    }

    /// The deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.completed.is_some() {
            None
        } else {
            self.deadline
        }
    }

    /// Time passed: at the deadline the change completes with the failure it is cleaning
    /// up after, else [`CdromError::TimedOut`]; a wait for the lock is withdrawn; the
    /// cleanup goes on as the answers come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.completed.is_some() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        let failure = self
            .failure
            .take()
            .unwrap_or(CdromError::TimedOut(self.config.timeout));
        self.complete(Err(failure.clone()));
        self.failure = Some(failure);
        if let Lock::Waiting(lock) = self.lock {
            self.lock = Lock::Released;
            self.request(Purpose::Unlock, HostOp::Unlock { lock });
        }
        self.advance();
    }

    /// What QEMU reported on its own: its exit and the connection's end are remembered
    /// (the command in flight fails by itself), tray movements counted.
    pub fn handle_peer(&mut self, _now: Instant, event: &PeerEvent) {
        match event {
            PeerEvent::Exited(exit) => self.exited = Some(exit.clone()),
            PeerEvent::QmpClosed => self.qmp_closed = true,
            PeerEvent::Qmp(event) if event.name == "DEVICE_TRAY_MOVED" => {
                self.tray_moves = self.tray_moves.saturating_add(1);
            }
            _ => {}
        }
    }

    /// The answer to request `id`.
    pub fn handle_reply(
        &mut self,
        _now: Instant,
        id: OpId,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let purpose = self
            .in_flight
            .remove(&id)
            .ok_or(InputError::UnknownOp(id))?;
        let refused = self.on_reply(id, purpose, result);
        self.advance();
        refused
    }

    // ---- the steps ---------------------------------------------------------------------

    fn running(&self) -> bool {
        self.failure.is_none() && self.completed.is_none()
    }

    fn on_reply(
        &mut self,
        id: OpId,
        purpose: Purpose,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let domid = self.config.domid;
        match purpose {
            Purpose::DomainInfo => {
                let (state, refused) = split_checked(expect_domain(id, result));
                match state {
                    _ if !self.running() => {}
                    Ok(DomainState::Absent | DomainState::Dead) => {
                        self.fail(CdromError::NoSuchDomain(domid));
                    }
                    // A driver that cannot tell: the xenstore reads decide.
                    Err(err) if err.kind == OpErrorKind::Unsupported => self.take_lock(),
                    Err(source) => self.fail(CdromError::DomainInfo { domid, source }),
                    Ok(_) => self.take_lock(),
                }
                refused
            }
            Purpose::Lock => {
                let (locked, refused) = split_checked(expect_done(id, result));
                match (locked, self.lock) {
                    // Withdrawn: the Unlock already sent releases it if it was granted.
                    (_, Lock::Released) => {}
                    (Ok(()), _) => {
                        self.lock = Lock::Held(id);
                        if self.running() {
                            self.read(Purpose::ReadKind, format!("/libxl/{domid}/type"));
                        }
                    }
                    (Err(source), _) => {
                        self.lock = Lock::NotAsked;
                        self.fail(CdromError::Lock { domid, source });
                    }
                }
                refused
            }
            Purpose::Unlock | Purpose::Close => {
                // Nothing depends on them; a failed close still closed.
                split_checked(expect_done(id, result)).1
            }
            Purpose::ReadKind
            | Purpose::ReadDmVersion
            | Purpose::ReadStubdom
            | Purpose::ReadBackend
            | Purpose::ReadDeviceType
            | Purpose::ReadBackendType => {
                let (value, refused) = split_checked(expect_value(id, result));
                match value {
                    Ok(value) if self.running() => self.on_read(purpose, value),
                    Ok(_) => {}
                    Err(source) => self.fail(CdromError::Xenstore {
                        step: "reading the drive's description",
                        source,
                    }),
                }
                refused
            }
            Purpose::Connect | Purpose::Reconnect => {
                let (session, refused) = split_checked(expect_session(id, result));
                match session {
                    Ok(_) => {
                        self.qmp_closed = false;
                        if purpose == Purpose::Reconnect {
                            self.query_block();
                        } else if self.running() {
                            self.command(Purpose::QueryVersion, QmpCommand::new("query-version"));
                        }
                    }
                    // Reconnecting was a try: what the answers told will do.
                    Err(_) if purpose == Purpose::Reconnect => self.reconcile_from_answers(),
                    Err(source) => self.qmp_fail(QmpStep::Connect, source),
                }
                refused
            }
            Purpose::QueryVersion => {
                let (version, refused) = split_checked(expect_qmp(id, result));
                match version {
                    Ok(value) => match version_of(&value) {
                        Some(version) => {
                            self.qemu = Some(version);
                            if self.running() {
                                self.send_eject();
                            }
                        }
                        None => self.fail(CdromError::BadReply {
                            step: QmpStep::QueryVersion,
                            reply: value.to_string(),
                        }),
                    },
                    Err(source) => self.qmp_fail(QmpStep::QueryVersion, source),
                }
                refused
            }
            Purpose::Eject => {
                let (ejected, refused) = split_checked(expect_qmp(id, result));
                if ejected.is_ok() {
                    self.held = Some(String::new());
                }
                match ejected {
                    Ok(_) if self.running() => {
                        let write = match self.change {
                            Change::Insert(_) => Write::Intermediate,
                            Change::Eject => Write::Final,
                        };
                        self.start_txn(write);
                    }
                    Ok(_) => {}
                    Err(source) => self.qmp_fail(QmpStep::Eject, source),
                }
                refused
            }
            Purpose::Open => {
                let (fd, refused) = split_checked(expect_fd(id, result));
                match fd {
                    Ok(fd) if self.running() => self.add_fd(fd),
                    // Too late to pass on: the cleanup closes it.
                    Ok(fd) => self.fd = Some(fd),
                    Err(source) => {
                        let path = self.change.medium().map(|m| m.path.clone());
                        self.fail(CdromError::OpenImage {
                            path: path.unwrap_or_default(),
                            source,
                        });
                    }
                }
                refused
            }
            Purpose::AddFd => {
                let (added, refused) = split_checked(expect_qmp(id, result));
                match added {
                    Ok(value) => match value.get("fdset-id").and_then(Value::as_u64) {
                        Some(set) => {
                            self.fdset = Some(set);
                            if self.running() {
                                self.change_medium(set);
                            }
                        }
                        None => self.fail(CdromError::BadReply {
                            step: QmpStep::AddFd,
                            reply: value.to_string(),
                        }),
                    },
                    Err(source) => self.qmp_fail(QmpStep::AddFd, source),
                }
                refused
            }
            Purpose::ChangeMedium => {
                let (changed, refused) = split_checked(expect_qmp(id, result));
                match changed {
                    Ok(_) => {
                        self.new_fdset = self.fdset;
                        self.held = Some(params(&self.backend_type, self.change.medium()));
                        if self.running() {
                            // QEMU holds its own duplicate now: the set's descriptor goes.
                            if let Some(set) = self.fdset.take() {
                                self.remove_fd(set);
                            }
                        }
                    }
                    Err(source) => self.qmp_fail(QmpStep::ChangeMedium, source),
                }
                refused
            }
            Purpose::RemoveFd => {
                let (removed, refused) = split_checked(expect_qmp(id, result));
                if self.running() {
                    if let Err(source) = removed {
                        let fdset_id = self.new_fdset.unwrap_or_default();
                        self.cleanup_error = Some(CdromError::Cleanup { fdset_id, source });
                    }
                    self.start_txn(Write::Final);
                }
                refused
            }
            Purpose::QueryBlock => {
                let (block, refused) = split_checked(expect_qmp(id, result));
                match block {
                    Ok(value) => {
                        if let Some(params) = self.params_held(&value) {
                            self.start_txn_with(Write::Reconcile, params);
                        }
                    }
                    Err(_) => self.reconcile_from_answers(),
                }
                refused
            }
            Purpose::TxnStart => {
                let (txn, refused) = split_checked(expect_txn_started(id, result));
                match txn {
                    Ok(txn) => {
                        let Some(run) = &mut self.txn else {
                            return refused;
                        };
                        run.id = Some(txn);
                        let entry = self.toolstack_key("frontend");
                        if self.txn_goes_on() {
                            self.request(Purpose::TxnRead, XsOp::TxnRead { txn, path: entry });
                        }
                    }
                    Err(source) => self.txn_failed(CdromError::Xenstore {
                        step: "starting a transaction",
                        source,
                    }),
                }
                refused
            }
            Purpose::TxnRead => {
                let (value, refused) = split_checked(expect_value(id, result));
                match value {
                    Ok(Some(_)) => self.next_txn_step(),
                    Ok(None) => {
                        let entry = self.toolstack_key("frontend");
                        self.txn_failed(CdromError::DeviceVanished(entry));
                    }
                    Err(source) => self.txn_failed(CdromError::Xenstore {
                        step: "reading the toolstack entry",
                        source,
                    }),
                }
                refused
            }
            Purpose::TxnApply => {
                let (done, refused) = split_checked(expect_done(id, result));
                match done {
                    Ok(()) => self.next_txn_step(),
                    Err(source) => self.txn_failed(CdromError::Xenstore {
                        step: "writing type and params",
                        source,
                    }),
                }
                refused
            }
            Purpose::TxnEnd => self.on_txn_end(id, result),
        }
    }

    fn on_read(&mut self, purpose: Purpose, value: Option<String>) {
        let domid = self.config.domid;
        match purpose {
            Purpose::ReadKind => {
                match value {
                    Some(kind) if kind != "hvm" => {
                        return self.fail(CdromError::NotHvm { domid, kind });
                    }
                    _ => {}
                }
                self.read(Purpose::ReadDmVersion, format!("/libxl/{domid}/dm-version"));
            }
            Purpose::ReadDmVersion => {
                let model = self.config.device_model;
                match model.serves(value.as_deref()) {
                    Err(()) => {
                        return self.fail(CdromError::DmVersion(value.unwrap_or_default()));
                    }
                    Ok(false) => {
                        return self.fail(CdromError::WrongDeviceModel {
                            dm_version: value.unwrap_or_default(),
                            asked: model.as_str(),
                        });
                    }
                    Ok(true) => {}
                }
                let path = format!("/local/domain/{domid}/image/device-model-domid");
                self.read(Purpose::ReadStubdom, path);
            }
            Purpose::ReadStubdom => {
                if let Some(value) = value {
                    let path = format!("/local/domain/{domid}/image/device-model-domid");
                    match value.parse::<u32>() {
                        Ok(0) => {}
                        Ok(stubdom) => return self.fail(CdromError::StubDomain { domid, stubdom }),
                        Err(_) => {
                            return self.fail(CdromError::BadValue {
                                path,
                                value,
                                why: "not a domain id",
                            });
                        }
                    }
                }
                let entry = self.toolstack_key("backend");
                self.read(Purpose::ReadBackend, entry);
            }
            Purpose::ReadBackend => {
                let Some(backend) = value else {
                    let vdev = self.config.vdev.clone();
                    return self.fail(CdromError::NoSuchDevice { domid, vdev });
                };
                let devid = self.devid.to_string();
                match Device::from_toolstack_entry(domid, "vbd", &devid, &backend) {
                    Ok(device) => {
                        let path = device.backend_key("device-type");
                        self.device = Some(device);
                        self.read(Purpose::ReadDeviceType, path);
                    }
                    Err(_) => {
                        let path = self.toolstack_key("backend");
                        self.fail(CdromError::BadValue {
                            path,
                            value: backend,
                            why: "not this device's backend path",
                        });
                    }
                }
            }
            Purpose::ReadDeviceType => {
                if value.as_deref() != Some("cdrom") {
                    let vdev = self.config.vdev.clone();
                    let device_type = value.unwrap_or_default();
                    return self.fail(CdromError::NotCdrom { vdev, device_type });
                }
                if let Some(path) = self.device.as_ref().map(|d| d.backend_key("type")) {
                    self.read(Purpose::ReadBackendType, path);
                }
            }
            Purpose::ReadBackendType => {
                let kind = value.unwrap_or_default();
                if kind != "qdisk" && kind != "phy" {
                    return self.fail(CdromError::UnsupportedBackend(kind));
                }
                self.backend_type = kind;
                match self.config.device_model {
                    DeviceModel::Xenstore => self.start_txn(Write::Final),
                    DeviceModel::Qmp => {
                        self.request(Purpose::Connect, QmpOp::Connect);
                    }
                }
            }
            _ => {}
        }
    }

    /// QEMU cannot be asked: write what its answers told, if they told.
    fn reconcile_from_answers(&mut self) {
        if let Some(params) = self.held.clone() {
            self.start_txn_with(Write::Reconcile, params);
        }
    }

    fn take_lock(&mut self) {
        let domid = self.config.domid;
        let id = self.request(Purpose::Lock, HostOp::Lock { domid });
        self.lock = Lock::Waiting(id);
    }

    // ---- plumbing ------------------------------------------------------------------------

    fn request(&mut self, purpose: Purpose, op: impl Into<Op>) -> OpId {
        let id = OpId::from_raw(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.in_flight.insert(id, purpose);
        self.out
            .push_back(Output::Request(Request { id, op: op.into() }));
        id
    }

    fn read(&mut self, purpose: Purpose, path: String) {
        self.request(purpose, XsOp::Read { path });
    }

    fn command(&mut self, purpose: Purpose, command: QmpCommand) {
        self.request(purpose, QmpOp::Command(command));
    }

    /// A key of the drive's toolstack entry, `/libxl/<domid>/device/vbd/<devid>/<key>`.
    fn toolstack_key(&self, key: &str) -> String {
        let entry = Device::new("vbd", self.config.domid, self.devid).toolstack_path();
        format!("{entry}/{key}")
    }
}

/// `query-version`'s `{"qemu": {"major", "minor", "micro"}, ...}`.
fn version_of(value: &Value) -> Option<QemuVersion> {
    let qemu = value.get("qemu")?;
    let number = |key: &str| {
        qemu.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(QemuVersion {
        major: number("major")?,
        minor: number("minor")?,
        micro: number("micro")?,
    })
}

xsio_ops::impl_machine!(MediaChange, Completion, peer: handle_peer);
