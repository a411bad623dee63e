//! The operation vocabulary of the toolstack (L2) machines.
//!
//! An L2 machine (the xenbus handshake, device add and removal, the device model, CD-ROM
//! media change) never sees bytes, a socket or a clock, and never names a protocol
//! client's type. It asks its driver to do things ([`Output::Request`] carrying an
//! [`Op`]) and is told the results ([`Input::Reply`]) and what happened
//! ([`Input::Watch`], [`Input::Peer`]). A driver connects these to real clients (io-std,
//! io-tokio), to an in-process simulator, or to another toolstack's own libraries; because
//! every L2 machine speaks this one vocabulary, one driver loop serves them all.
//!
//! - xenstore: [`XsOp`] (read, watch, unwatch, a guarded transaction);
//! - the host: [`HostOp`] (a domain's state, the device model's liveness, programs, the
//!   per-domain lock on device changes);
//! - QEMU: [`QmpOp`] (open the QMP connection, run a command with descriptors),
//!   [`FileOp`] (descriptors the driver holds as [`FdHandle`]s: a machine never holds an
//!   fd), [`ProcessOp`] (kill the QEMU), and what QEMU reports on its own, [`PeerEvent`]
//!   (an event, the connection's end, the process's exit).
//!
//! Every L2 machine implements [`xsio_core::Machine`] with
//! `Input<'a> = Input<'a>`, `Output = Output<Event>` and `Error = InputError`:
//!
//! ```
//! use std::time::Instant;
//! use xsio_core::{Machine, OpId};
//! use xsio_ops::{Input, Op, Output, Reply, XsOp};
//!
//! /// Drains `machine`, answering every read with "missing" and everything else with Done.
//! fn answer_all<M, E>(machine: &mut M, now: Instant) -> Vec<E>
//! where
//!     M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>>,
//! {
//!     let mut events = Vec::new();
//!     while let Some(output) = machine.poll_output() {
//!         match output {
//!             Output::Request(request) => {
//!                 let reply = match request.op {
//!                     Op::Xs(XsOp::Read { .. }) => Reply::Value(None),
//!                     Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
//!                     _ => Reply::Done,
//!                 };
//!                 let _ = machine.handle_input(now, Input::Reply { id: request.id, result: Ok(reply) });
//!             }
//!             Output::Event(event) => events.push(event),
//!         }
//!     }
//!     events
//! }
//! # let _ = answer_all::<NoMachine, ()>;
//! # struct NoMachine;
//! # impl Machine for NoMachine {
//! #     type Input<'a> = Input<'a>;
//! #     type Output = Output<()>;
//! #     type Error = xsio_ops::InputError;
//! #     fn handle_input(&mut self, _: Instant, _: Input<'_>) -> Result<(), Self::Error> { Ok(()) }
//! #     fn handle_timeout(&mut self, _: Instant) {}
//! #     fn poll_output(&mut self) -> Option<Output<()>> { None }
//! #     fn poll_timeout(&self) -> Option<Instant> { None }
//! # }
//! # let _ = OpId::from_raw(0);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod answer;
mod expect;
mod machine;
mod qmp;
mod requests;

pub use answer::Answer;
pub use expect::{
    Checked, expect_children, expect_committed, expect_device_model, expect_domain, expect_done,
    expect_exited, expect_fd, expect_qmp, expect_session, expect_state_value, expect_txn,
    expect_txn_started, expect_value, split_checked,
};
pub use qmp::{
    FdHandle, FileAccess, FileOp, OpenFile, PeerEvent, ProcessOp, QemuVersion, QmpCommand,
    QmpErrorClass, QmpEvent, QmpOp, QmpSession,
};
pub use requests::Requests;
use serde_json::Value;
use thiserror::Error;
use xsio_core::OpId;

/// What [`impl_machine!`] names through `$crate`; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use xsio_core;
}
/// The permission entries of [`TxnOp::SetPerms`]: `xsio-xs-wire`'s value types, so that the
/// workspace has one permission type and a driver passes them to its client unchanged.
pub use xsio_xs_wire::{Access, Perm};

/// One step of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Create the node (and missing parents) with an empty value; no-op if it exists.
    Mkdir {
        /// Absolute path.
        path: String,
    },
    /// Write a value, creating the node and missing parents.
    Write {
        /// Absolute path.
        path: String,
        /// The value.
        value: String,
    },
    /// Replace the node's permission list.
    SetPerms {
        /// Absolute path.
        path: String,
        /// Owner first.
        perms: Vec<Perm>,
    },
    /// Remove the node and everything below it; removing a missing node is not an error.
    Rm {
        /// Absolute path.
        path: String,
    },
}

impl TxnOp {
    /// A write of `value` at `path`.
    pub fn write(path: impl Into<String>, value: impl Into<String>) -> TxnOp {
        TxnOp::Write {
            path: path.into(),
            value: value.into(),
        }
    }

    /// The path this step touches.
    pub fn path(&self) -> &str {
        match self {
            TxnOp::Mkdir { path }
            | TxnOp::Write { path, .. }
            | TxnOp::SetPerms { path, .. }
            | TxnOp::Rm { path } => path,
        }
    }
}

/// Steps applied atomically in one xenstore transaction.
///
/// The driver starts a transaction, checks the guard, applies the steps in order and
/// commits; when the commit conflicts (`EAGAIN`) it starts over (the steps are blind writes,
/// so a retry is always correct). A single unguarded step may be sent as a plain request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn {
    /// When set, the transaction applies only if this node exists at commit time; otherwise
    /// nothing is written and the result is [`Reply::Skipped`]. Machines guard their own
    /// `state` writes with it so that a torn-down device directory is never recreated.
    pub only_if_exists: Option<String>,
    /// The steps, in order.
    pub ops: Vec<TxnOp>,
}

/// A xenstore operation a machine asks its driver to perform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum XsOp {
    /// Read a node. Answer [`Reply::Value`] (`None` for `ENOENT`).
    Read {
        /// Absolute path.
        path: String,
    },
    /// Register a watch. Answer [`Reply::Done`]. As xenstored does, the watch fires once
    /// right after registration; the driver passes events in as [`Input::Watch`].
    Watch {
        /// Absolute path.
        path: String,
        /// Token echoed in every event of this watch.
        token: String,
    },
    /// Remove a watch. Answer [`Reply::Done`].
    Unwatch {
        /// Absolute path.
        path: String,
        /// The token it was registered with.
        token: String,
    },
    /// Apply a transaction. Answer [`Reply::Committed`] or [`Reply::Skipped`].
    Transaction(Txn),

    // ---- listings and interactive transactions (device add and removal) -----------------
    //
    // A [`Txn`] is a list of blind writes that the driver applies and retries by itself. A
    // machine whose writes depend on what it reads inside the transaction (libxl's removal:
    // "write Closing unless the backend is already Closed"; the prune of empty parents)
    // opens the transaction itself, reads and writes inside it, and commits; a conflicting
    // commit is reported to it ([`OpErrorKind::Conflict`]), so that it decides again from
    // fresh reads and bounds its own retries. Every transaction a machine opens it ends with
    // exactly one [`XsOp::TxnEnd`].
    /// List a node's children. Answer [`Reply::Children`] (`None` for `ENOENT`).
    Directory {
        /// Absolute path.
        path: String,
    },
    /// Open a transaction. Answer [`Reply::TxnStarted`] with its id.
    TxnStart,
    /// Read a node inside transaction `txn`. Answer [`Reply::Value`] (`None` for `ENOENT`).
    TxnRead {
        /// The open transaction.
        txn: TxnId,
        /// Absolute path.
        path: String,
    },
    /// List a node's children inside transaction `txn`. Answer [`Reply::Children`].
    TxnDirectory {
        /// The open transaction.
        txn: TxnId,
        /// Absolute path.
        path: String,
    },
    /// Apply one step inside transaction `txn` (an [`TxnOp::Rm`] of a missing node is not an
    /// error). Answer [`Reply::Done`].
    TxnApply {
        /// The open transaction.
        txn: TxnId,
        /// The step.
        op: TxnOp,
    },
    /// End transaction `txn`: commit it (answer [`Reply::Committed`]; a conflict fails with
    /// [`OpErrorKind::Conflict`] and nothing was written) or abort it (answer
    /// [`Reply::Done`]).
    TxnEnd {
        /// The open transaction.
        txn: TxnId,
        /// Commit (true) or abort (false).
        commit: bool,
    },
}

/// A transaction opened with [`XsOp::TxnStart`]: the id the daemon gave it on the
/// machine's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(pub u32);

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "txn#{}", self.0)
    }
}

/// An operation with the id its result must carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Pass it back in [`Input::Reply`].
    pub id: OpId,
    /// What to do.
    pub op: Op,
}

/// An operation an L2 machine asks its driver to perform, by the peer it concerns.
///
/// New kinds of operation (QMP commands, hotplug scripts, domain information) are added
/// here as variants, so that one driver loop executes every machine's requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A xenstore operation on the machine's xenstore connection.
    Xs(XsOp),

    // ---- the host: domains, device models, processes (device add and removal) ----------
    /// Something only the host knows or does: a domain's state, the device model's
    /// liveness, running a hotplug script. A driver without these (a pure xenstore store)
    /// answers them with [`OpErrorKind::Unsupported`].
    Host(HostOp),

    // ---- QEMU: QMP, descriptors the driver holds, the QEMU process -------------------
    /// QMP work on the machine's connection to a QEMU.
    Qmp(QmpOp),
    /// A descriptor the driver holds for the machine (see [`FdHandle`]).
    File(FileOp),
    /// The process behind the machine's connection (a QEMU).
    Process(ProcessOp),
}

/// What a toolstack machine asks of the host it runs on, rather than of xenstore.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostOp {
    /// The state of domain `domid`, as the hypervisor reports it. Answer [`Reply::Domain`].
    DomainInfo {
        /// The domain.
        domid: u32,
    },
    /// Whether the device model (QEMU) serving domain `domid` is alive, by its own signs: a
    /// QMP answer, its socket's end, its process's exit; not by the guest's state. Answer
    /// [`Reply::DeviceModel`]. A domain without a device model answers `alive: false`.
    DeviceModelAlive {
        /// The domain the device model serves.
        domid: u32,
    },
    /// Run a program (a hotplug script) with `argv` (`argv[0]` is its path) and `env` on
    /// top of the driver's own environment; stdin is `/dev/null`, stdout goes to the
    /// driver's stderr. The request stays in flight until the program ends: answer
    /// [`Reply::Exited`]. The machine keeps its own time limit and asks [`HostOp::Kill`].
    Spawn {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Variables added to the environment, in order.
        env: Vec<(String, String)>,
    },
    /// Kill (SIGKILL) the program started by this machine's [`HostOp::Spawn`] request
    /// `spawn`. Answer [`Reply::Done`], also when it had already ended; the `Spawn` then
    /// answers [`ProcessExit::Signalled`] (or how it ended, if it ended first).
    Kill {
        /// The id of the `Spawn` request.
        spawn: OpId,
    },
    /// Take the lock on device changes of domain `domid` (libxl's per-domain
    /// `libxl-device-changes-lock`), so that two changes to one domain's devices never
    /// interleave, whichever process makes them. The request stays in flight while another
    /// holder has it: answer [`Reply::Done`] once this machine holds it. A driver serves
    /// waiters in turn (in process: first come, first served; on a host: a lock file). The
    /// machine keeps its own deadline and gives the lock back with [`HostOp::Unlock`]; a
    /// driver that ends releases whatever its machines still hold.
    Lock {
        /// The domain whose device changes are serialised.
        domid: u32,
    },
    /// Give back the lock taken by this machine's [`HostOp::Lock`] request `lock`, or stop
    /// waiting for it: answer [`Reply::Done`]; a `Lock` still waiting is then answered with
    /// an error of kind [`OpErrorKind::Cancelled`].
    Unlock {
        /// The id of the `Lock` request.
        lock: OpId,
    },
}

/// A domain's state, as the hypervisor reports it (libxl's dominfo flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainState {
    /// Running (or runnable, or blocked).
    Running,
    /// Paused by the toolstack or a user.
    Paused,
    /// Shut down (poweroff, reboot, crash, suspend), not yet destroyed.
    Shutdown,
    /// Being destroyed: the hypervisor still holds some of its resources.
    Dying,
    /// Destroyed: nothing of it runs any more.
    Dead,
    /// No such domain.
    Absent,
}

/// How a program started with [`HostOp::Spawn`] ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProcessExit {
    /// It exited with this status (0 is success).
    Exited(i32),
    /// A signal ended it (9 after [`HostOp::Kill`]).
    Signalled(i32),
    /// It could not be started (no such file, not executable): why.
    FailedToStart(String),
}

impl ProcessExit {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self, ProcessExit::Exited(0))
    }
}

impl std::fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessExit::Exited(code) => write!(f, "exit status {code}"),
            ProcessExit::Signalled(signal) => write!(f, "killed by signal {signal}"),
            ProcessExit::FailedToStart(why) => write!(f, "failed to start: {why}"),
        }
    }
}

/// Each kind of operation is the [`Op`] variant that carries it.
macro_rules! op_from_kind {
    ($($kind:ty => $variant:ident),*) => {$(
        impl From<$kind> for Op {
            fn from(op: $kind) -> Op {
                Op::$variant(op)
            }
        }
    )*};
}

op_from_kind!(XsOp => Xs, HostOp => Host, QmpOp => Qmp, FileOp => File, ProcessOp => Process);

impl From<QmpCommand> for Op {
    fn from(command: QmpCommand) -> Op {
        Op::Qmp(QmpOp::Command(command))
    }
}

/// What a driver tells an L2 machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The result of the request `id` (every request is answered exactly once).
    Reply {
        /// The request's id.
        id: OpId,
        /// Its result.
        result: Result<Reply, OpError>,
    },
    /// A xenstore watch the machine registered fired.
    Watch {
        /// The path that changed (or the watched path, for the initial event).
        path: &'a str,
        /// The token the machine registered the watch with.
        token: &'a str,
    },
    /// The machine's peer reported something on its own (a QMP event, the QMP connection's
    /// end, the QEMU process's exit). Handed to every machine on the connection.
    Peer(&'a PeerEvent),
}

/// The successful result of an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reply {
    /// The value of a read; `None` when the node does not exist (`ENOENT`).
    Value(Option<String>),
    /// A watch or unwatch succeeded.
    Done,
    /// The transaction committed.
    Committed,
    /// The transaction's guard node was missing: nothing was written.
    Skipped,

    // ---- listings, interactive transactions, the host ----------------------------------
    /// The children of a node ([`XsOp::Directory`], [`XsOp::TxnDirectory`]); `None` when
    /// the node does not exist.
    Children(Option<Vec<String>>),
    /// The transaction [`XsOp::TxnStart`] opened.
    TxnStarted(TxnId),
    /// A domain's state ([`HostOp::DomainInfo`]).
    Domain(DomainState),
    /// The device model's liveness ([`HostOp::DeviceModelAlive`]).
    DeviceModel {
        /// Whether it is alive.
        alive: bool,
    },
    /// How a program ended ([`HostOp::Spawn`]).
    Exited(ProcessExit),

    // ---- QEMU ----------------------------------------------------------------------
    /// The `return` value of a [`QmpOp::Command`].
    Qmp(Value),
    /// A [`QmpOp::Connect`] succeeded: what negotiation learned.
    QmpConnected(QmpSession),
    /// A [`FileOp::Open`] succeeded: the driver holds the descriptor under this handle.
    Fd(FdHandle),
}

/// The kind of a failed operation, as a driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpErrorKind {
    /// `EACCES`: permission denied.
    Access,
    /// `EINVAL`: the daemon refused the request.
    Invalid,
    /// `ENOENT` where it is an error (not for reads).
    NoEntry,
    /// `EQUOTA` / `ENOSPC`: a quota was exceeded.
    Quota,
    /// The connection (to xenstore, to QEMU) failed, closed, or was never opened.
    Connection,
    /// The driver's own time limit for the operation passed.
    Timeout,
    /// QEMU answered a QMP command with an error of this class; the detail is its `desc`.
    Qmp(QmpErrorClass),
    /// A file could not be opened or closed (the detail says why: the OS error).
    File,
    /// Any other error the daemon named.
    Other,
    /// `EAGAIN` at the commit of an interactive transaction ([`XsOp::TxnEnd`]): another
    /// writer got there first; nothing was written.
    Conflict,
    /// The driver cannot execute this kind of operation (a host operation on a store that
    /// is only xenstore).
    Unsupported,
    /// The machine withdrew the request before it could be done (a [`HostOp::Lock`] still
    /// waiting when its [`HostOp::Unlock`] came).
    Cancelled,
}

/// A failed operation, as a driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[error("{kind:?} error: {detail}")]
pub struct OpError {
    /// What went wrong.
    pub kind: OpErrorKind,
    /// Free text for logs (the daemon's error name, QEMU's `desc`, the I/O error).
    pub detail: String,
}

impl OpError {
    /// An error of `kind` with a detail text.
    pub fn new(kind: OpErrorKind, detail: impl Into<String>) -> OpError {
        OpError {
            kind,
            detail: detail.into(),
        }
    }
}

/// What a machine hands its driver: a request to execute, or an event to report.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output<E> {
    /// Execute this and answer with [`Input::Reply`].
    Request(Request),
    /// Something the caller may want to know (state changes, connection, completion).
    Event(E),
}

/// Why a `handle_*` call was refused. The machine's state is unchanged by a refused input,
/// except where the variant says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum InputError {
    /// No operation with this id is in flight (already answered, or never issued).
    #[error("no operation {0} is in flight")]
    UnknownOp(OpId),
    /// The reply's kind does not fit the operation (a `Value` for a transaction, ...). The
    /// operation counts as failed, as if the driver had reported an error.
    #[error("reply of the wrong kind for {id}: expected {expected}")]
    WrongReply {
        /// The operation.
        id: OpId,
        /// What the operation answers with.
        expected: &'static str,
    },
}
