//! The operation machine: one device added or removed, start to completion.
//!
//! This module holds the machine's state and its public surface; the steps live in
//! `flow` (the order of things: guest and device model, waits, hotplug, finish) and
//! `txn` (the transactions and the prune).

use std::collections::VecDeque;
use std::time::Instant;

use xsio_core::OpId;
use xsio_ops::{
    Answer, DomainState, HostOp, InputError, OpError, OpErrorKind, Output, TxnId, XsOp,
};
use xsio_xenbus::XenbusState;

use crate::config::Config;
use crate::device::{Device, Force};
use crate::io::{Io, Purpose};
use crate::outcome::{
    AddError, BackendEnd, Completion, DeviceEvent, RemoveError, ScriptFailure, TxnKind, WaitFor,
};

/// What to add: the device and the keys of its two directories besides the generic ones
/// (`frontend`, `frontend-id`, `online`, `state` in the backend; `backend`, `backend-id`,
/// `state` in the frontend), which the add writes itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddSpec {
    /// The device.
    pub device: Device,
    /// Backend keys (`params`, `mode`, `script`, ...).
    pub backend_keys: Vec<(String, String)>,
    /// Frontend keys (`virtual-device`, `device-type`, ...).
    pub frontend_keys: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Job {
    Add(AddSpec),
    Remove,
}

/// Why the operation stops (converted to [`AddError`] or [`RemoveError`] at the end).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    DomainInfo(OpError),
    Xenstore {
        step: &'static str,
        error: OpError,
    },
    Conflicts {
        txn: TxnKind,
        attempts: u32,
    },
    TimedOut {
        wait: WaitFor,
        last: Option<XenbusState>,
    },
    BackendGone,
    Exists(String),
    Script(ScriptFailure),
    Cancelled,
}

impl Failure {
    pub(crate) fn xs(step: &'static str, error: OpError) -> Failure {
        Failure::Xenstore { step, error }
    }

    fn into_add(self) -> AddError {
        match self {
            Failure::DomainInfo(error) => AddError::Xenstore {
                step: "domain info",
                error,
            },
            Failure::Xenstore { step, error } => AddError::Xenstore { step, error },
            Failure::Conflicts { txn, attempts } => AddError::Conflicts { txn, attempts },
            Failure::TimedOut { wait, last } => AddError::TimedOut { wait, last },
            Failure::BackendGone => AddError::BackendGone,
            Failure::Exists(path) => AddError::Exists(path),
            Failure::Script(failure) => AddError::Script(failure),
            Failure::Cancelled => AddError::Cancelled,
        }
    }

    pub(crate) fn into_remove(self) -> RemoveError {
        match self {
            Failure::DomainInfo(error) => RemoveError::DomainInfo(error),
            Failure::Xenstore { step, error } => RemoveError::Xenstore { step, error },
            Failure::Conflicts { txn, attempts } => RemoveError::Conflicts { txn, attempts },
            Failure::TimedOut { wait, last } => RemoveError::TimedOut { wait, last },
            Failure::Script(failure) => RemoveError::Scripts(vec![failure]),
            Failure::Cancelled => RemoveError::Cancelled,
            // Not reached by a removal (a vanished backend is a clean end, an existing
            // entry only matters to an add); kept total rather than panic.
            Failure::BackendGone | Failure::Exists(_) => RemoveError::Xenstore {
                step: "removal",
                error: OpError::new(OpErrorKind::Other, "unexpected state"),
            },
        }
    }
}

/// Where the operation is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    DomainInfo,
    DeviceModel,
    /// The blind wait before the bodge (the deadline is armed).
    BodgeWait,
    Txn(Txn),
    Wait(Wait),
    ScriptKeys {
        pending: usize,
    },
    Script {
        spawn: OpId,
        argv: Vec<String>,
        killed: bool,
    },
    HotplugError {
        failure: ScriptFailure,
    },
    Done,
}

/// A transaction in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Txn {
    pub(crate) kind: TxnKind,
    pub(crate) id: Option<TxnId>,
    /// Commits tried, this one included.
    pub(crate) attempts: u32,
    pub(crate) step: TxStep,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TxStep {
    Starting,
    /// The read the transaction's writes depend on.
    Reading,
    Applying {
        pending: usize,
    },
    Pruning(Prune),
    Committing,
    Aborting(AfterAbort),
}

/// What follows an abort.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AfterAbort {
    BackendGone,
    AlreadyClosed,
    Fail(Failure),
}

/// Removing nodes and their empty ancestors inside the open transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Prune {
    /// (path, floor): remove `path`, then each ancestor strictly below `floor` that has an
    /// empty value and no children.
    pub(crate) targets: VecDeque<(String, String)>,
    pub(crate) current: String,
    pub(crate) floor: String,
    pub(crate) step: PruneStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PruneStep {
    Removing,
    ReadingValue,
    Listing,
}

/// A watch on a node, re-read on every event, with a deadline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Wait {
    pub(crate) what: WaitFor,
    pub(crate) path: String,
    pub(crate) token: String,
}

/// One device added or removed, as a machine: libxl's `ao_device` (the removal flowchart
/// with the QEMU bodge, the add with its hotplug scripts), with the flaws listed in the
/// crate docs fixed.
///
/// It asks for everything it cannot know ([`Output::Request`]: xenstore operations, the
/// guest's state, the device model's liveness, running and killing the hotplug script) and
/// is told the answers ([`Input`](xsio_ops::Input)); it reports its steps and, exactly once, its
/// [`Completion`] ([`DeviceEvent::Done`]).
///
/// ```
/// use std::time::Instant;
/// use xsio_core::Machine;
/// use xsio_device::{Config, Device, DeviceOp, Force};
/// use xsio_ops::{HostOp, Op, Output};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let disk = Device::new("vbd", 5, 51712).with_backend(0, "qdisk");
/// let mut op = DeviceOp::remove(Config::default(), disk, Force::Auto, now);
/// // In dom0 the removal first asks for the guest's state (the bodge depends on it).
/// let Some(Output::Request(first)) = op.poll_output() else { unreachable!() };
/// assert_eq!(first.op, Op::Host(HostOp::DomainInfo { domid: 5 }));
/// assert!(!op.is_done());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceOp {
    pub(crate) config: Config,
    pub(crate) device: Device,
    pub(crate) job: Job,
    pub(crate) force: Force,
    pub(crate) escalated: bool,
    pub(crate) phase: Phase,
    pub(crate) io: Io<DeviceEvent>,
    pub(crate) epoch: u32,
    pub(crate) deadline: Option<Instant>,
    pub(crate) guest: Option<DomainState>,
    /// The backend state read in the removal transaction.
    pub(crate) read_state: XenbusState,
    /// How the backend ended, once it did (for the hotplug step that follows).
    pub(crate) backend_end: BackendEnd,
    /// The last state a wait read.
    pub(crate) last_seen: Option<XenbusState>,
    pub(crate) watch_seq: u32,
    pub(crate) script_values: Vec<Option<String>>,
    pub(crate) num_exec: u32,
    pub(crate) scripts_ok: u32,
    pub(crate) failures: Vec<ScriptFailure>,
    /// The removal's result while its areas are being removed.
    pub(crate) pending: Option<Result<BackendEnd, Failure>>,
    pub(crate) pruned_paths: Vec<String>,
    pub(crate) completion: Option<Completion>,
}

impl DeviceOp {
    /// Starts adding a device: one transaction writes the toolstack entry and both
    /// directories (failing with [`AddError::Exists`] if the entry is there), then, unless
    /// QEMU provides the backend, waits for the backend's InitWait, then runs the hotplug
    /// scripts.
    pub fn add(config: Config, spec: AddSpec, now: Instant) -> DeviceOp {
        let device = spec.device.clone();
        let mut op = DeviceOp::new(config, device, Job::Add(spec), Force::Auto);
        op.start(now);
        op
    }

    /// Starts removing a device with `force`.
    pub fn remove(config: Config, device: Device, force: Force, now: Instant) -> DeviceOp {
        let mut op = DeviceOp::new(config, device, Job::Remove, force);
        op.start(now);
        op
    }

    fn new(config: Config, device: Device, job: Job, force: Force) -> DeviceOp {
        DeviceOp {
            config,
            device,
            job,
            force,
            escalated: false,
            phase: Phase::DomainInfo,
            io: Io::new(),
            epoch: 0,
            deadline: None,
            guest: None,
            read_state: XenbusState::Unknown,
            backend_end: BackendEnd::Closed,
            last_seen: None,
            watch_seq: 0,
            script_values: Vec::new(),
            num_exec: 0,
            scripts_ok: 0,
            failures: Vec::new(),
            pending: None,
            pruned_paths: Vec::new(),
            completion: None,
        }
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The force now in effect (ON after an AUTO removal escalated).
    pub fn force(&self) -> Force {
        self.force
    }

    /// The completion, once the operation ended.
    pub fn completion(&self) -> Option<&Completion> {
        self.completion.as_ref()
    }

    /// Whether the operation ended.
    pub fn is_done(&self) -> bool {
        self.completion.is_some()
    }

    /// Requests that await an answer (after the end: unwatches, and a killed script that
    /// was not reaped in time, whose answers are accepted and dropped).
    pub fn in_flight(&self) -> usize {
        self.io.in_flight()
    }

    /// The caller gives up: a running script is killed, an open transaction aborted, a
    /// watch removed, and the operation completes with `Cancelled` (nothing is pruned).
    pub fn cancel(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Script {
                spawn,
                killed: false,
                ..
            } => {
                self.request(Purpose::Kill, HostOp::Kill { spawn });
            }
            Phase::Txn(Txn { id: Some(txn), .. }) => {
                let end = XsOp::TxnEnd { txn, commit: false };
                self.request(Purpose::TxnEnd { commit: false }, end);
            }
            Phase::Wait(wait) => self.unwatch(wait),
            _ => {}
        }
        let _ = now;
        self.complete_with(Failure::Cancelled);
    }

    /// A watch event: re-reads the node this operation waits for; other tokens, and events
    /// after the wait, are dropped.
    pub fn handle_watch(&mut self, _now: Instant, _path: &str, token: &str) {
        let Phase::Wait(wait) = &self.phase else {
            return;
        };
        if wait.token != token {
            return;
        }
        let read = XsOp::Read {
            path: wait.path.clone(),
        };
        self.io.request((Purpose::WaitRead, self.epoch), read);
    }

    /// The answer to request `id`.
    pub fn handle_reply(&mut self, now: Instant, answer: Answer) -> Result<(), InputError> {
        let Answer { id, result } = answer;
        let (purpose, epoch) = self.io.finish(id)?;
        self.dispatch(now, id, purpose, epoch == self.epoch, result)
    }

    /// Time passed: the deadline of the current wait, the blind bodge wait or the
    /// script fires when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|at| now >= at) {
            self.deadline = None;
            self.on_deadline(now);
        }
    }

    /// The next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output<DeviceEvent>> {
        self.io.next_output()
    }

    /// The deadline of the current step, if it has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ---- plumbing shared by the step modules ---------------------------------------------

    /// Starts a new phase: replies to requests of the old one are stale from now on.
    pub(crate) fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    pub(crate) fn request(&mut self, purpose: Purpose, op: impl Into<xsio_ops::Op>) -> OpId {
        self.io.request((purpose, self.epoch), op)
    }

    pub(crate) fn event(&mut self, event: DeviceEvent) {
        self.io.event(event);
    }

    pub(crate) fn unwatch(&mut self, wait: Wait) {
        let op = XsOp::Unwatch {
            path: wait.path,
            token: wait.token,
        };
        self.io.request((Purpose::Unwatch, self.epoch), op);
    }

    /// Ends the operation with `completion` (once).
    pub(crate) fn complete(&mut self, completion: Completion) {
        if self.completion.is_some() {
            return;
        }
        self.phase = Phase::Done;
        self.deadline = None;
        self.next_epoch();
        self.completion = Some(completion.clone());
        self.io.event(DeviceEvent::Done(completion));
    }

    /// Ends the operation with `failure`, without pruning.
    pub(crate) fn complete_with(&mut self, failure: Failure) {
        let completion = match &self.job {
            Job::Add(_) => Completion::Added(Err(failure.into_add())),
            Job::Remove => Completion::Removed(crate::outcome::Removal {
                result: Err(failure.into_remove()),
                pruned: false,
            }),
        };
        self.complete(completion);
    }
}

xsio_ops::impl_machine!(DeviceOp, DeviceEvent, watch: handle_watch);
