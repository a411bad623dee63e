//! What an operation reports: its steps as they happen, and its completion (once).

use std::fmt;

use thiserror::Error;
use xsio_ops::{DomainState, OpError, ProcessExit};
use xsio_xenbus::XenbusState;

use crate::device::Force;

/// What a [`DeviceOp`](crate::DeviceOp) reports while it runs, and once at the end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The guest's state, as the host reported it.
    Guest(DomainState),
    /// The device model's liveness (`None`: the host could not tell).
    DeviceModel {
        /// Whether it is alive, if known.
        alive: Option<bool>,
    },
    /// A transaction's commit conflicted; it starts again from fresh reads.
    Conflict {
        /// Which transaction.
        txn: TxnKind,
        /// Commits tried so far.
        attempts: u32,
    },
    /// The removal request committed: `online`=0, and backend `state`=5 unless it was
    /// already Closed; with force, the frontend directory removed in the same transaction.
    RemovalRequested {
        /// The backend state read inside the transaction.
        backend: XenbusState,
        /// The force the request was made with.
        force: Force,
    },
    /// The device's directories and the toolstack entry were written (add).
    Created,
    /// Waiting for a node (with a watch, re-reading it on every event).
    Waiting(WaitFor),
    /// A node waited for holds a value that does not end the wait (an intermediate or
    /// stale state).
    StillWaiting {
        /// The wait.
        wait: WaitFor,
        /// The value read (garbage reads as Unknown).
        state: XenbusState,
    },
    /// The wait ended as wanted.
    Reached(WaitFor),
    /// The backend's `state` node is gone (a backend domain or QEMU that removed its
    /// directory): the device needs no closing; the same clean outcome whenever it is seen.
    BackendGone,
    /// The removal timed out with force AUTO and starts again with force ON.
    Escalated,
    /// The toolstack will close a QEMU backend itself after this blind wait (device model
    /// liveness unknown, guest not running).
    BodgeWait(std::time::Duration),
    /// The toolstack closed a QEMU backend itself (wrote state 6, unless already 6).
    Bodged {
        /// Whether it had to write (false: the backend was already Closed).
        wrote: bool,
    },
    /// A hotplug script started.
    ScriptStarted {
        /// Its arguments, `argv[0]` first.
        argv: Vec<String>,
    },
    /// The script ran past the hotplug timeout and was killed.
    ScriptKilled,
    /// A hotplug script ended.
    ScriptEnded(ProcessExit),
    /// What the failed script left in the backend's `hotplug-error`.
    HotplugError(String),
    /// The device's areas were removed (each node, then its ancestors left empty).
    Pruned {
        /// The directories removed, with their empty ancestors.
        paths: Vec<String>,
    },
    /// The operation ended. Reported exactly once.
    Done(Completion),
}

/// Which transaction a [`DeviceEvent::Conflict`] or a conflict error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnKind {
    /// Add: the toolstack entry, both directories, their keys.
    Create,
    /// Removal: `online`=0, backend `state`=5 (and the frontend with force).
    RemovalRequest,
    /// The toolstack writing backend state 6 itself.
    Bodge,
    /// The final removal of the areas and their empty ancestors.
    Prune,
}

/// What a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitFor {
    /// Add: the backend reaching InitWait (or later: Initialised, Connected).
    BackendUp,
    /// Removal: the backend reaching Closed.
    BackendClosed,
    /// Removal: a live frontend leaving its ring (Closed, gone, or never connected) before
    /// the hotplug step.
    FrontendClosed,
    /// Removal of a backend in another (driver) domain: that domain removing the backend
    /// directory.
    BackendRemoved,
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitFor::BackendUp => "the backend to reach InitWait",
            WaitFor::BackendClosed => "the backend to reach Closed",
            WaitFor::FrontendClosed => "the frontend to reach Closed",
            WaitFor::BackendRemoved => "the driver domain to remove the backend",
        })
    }
}

/// How an operation ended: one variant per kind of operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Completion {
    /// An add.
    Added(Result<Added, AddError>),
    /// A removal, and whether its areas were removed.
    Removed(Removal),
}

impl Completion {
    /// Whether the operation succeeded.
    pub fn is_ok(&self) -> bool {
        match self {
            Completion::Added(result) => result.is_ok(),
            Completion::Removed(removal) => removal.result.is_ok(),
        }
    }

    /// The error, as text, if the operation failed.
    pub fn error(&self) -> Option<String> {
        match self {
            Completion::Added(Err(err)) => Some(err.to_string()),
            Completion::Removed(Removal {
                result: Err(err), ..
            }) => Some(err.to_string()),
            _ => None,
        }
    }
}

/// A successful add.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Added {
    /// Hotplug scripts run (all exited 0).
    pub scripts: u32,
}

/// How a removal ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Removal {
    /// The outcome.
    pub result: Result<Removed, RemoveError>,
    /// Whether the frontend, toolstack and backend areas (those this domain may remove)
    /// were removed with their empty ancestors. False only after an error with force AUTO
    /// or OFF (xenstore left as it was, for a retry or a look), or when the removal itself
    /// failed ([`RemoveError::Prune`]).
    pub pruned: bool,
}

/// A successful removal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Removed {
    /// How the backend ended.
    pub backend: BackendEnd,
    /// Whether force AUTO timed out and the removal went on with force ON.
    pub escalated: bool,
    /// Hotplug scripts run (all exited 0).
    pub scripts: u32,
}

/// How the backend of a removed device ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendEnd {
    /// It reached Closed.
    Closed,
    /// Its `state` node was gone (before the request, or while waiting).
    Gone,
    /// The toolstack closed it itself (the QEMU bodge).
    Bodged,
    /// Its driver domain removed its directory.
    RemovedByDriverDomain,
    /// No state machine: a console or vuart, only removed from xenstore.
    NotNegotiated,
}

/// A hotplug script that did not exit 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptFailure {
    /// What ran.
    pub argv: Vec<String>,
    /// How it ended.
    pub exit: ProcessExit,
    /// Whether it was killed for running past the hotplug timeout.
    pub timed_out: bool,
    /// The backend's `hotplug-error`, if the script wrote one.
    pub hotplug_error: Option<String>,
}

impl fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.argv.first().map_or("?", String::as_str);
        if self.timed_out {
            write!(f, "{program} ran past the hotplug timeout ({})", self.exit)?;
        } else {
            write!(f, "{program}: {}", self.exit)?;
        }
        if let Some(error) = &self.hotplug_error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

/// Why an add failed. No cleanup follows (as libxl: the caller removes the device or
/// destroys the domain), so what was written stays.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum AddError {
    /// The toolstack entry already exists: the device was added before.
    #[error("the device already exists ({0})")]
    Exists(String),
    /// A xenstore operation failed.
    #[error("xenstore, {step}: {error}")]
    Xenstore {
        /// What the operation was for.
        step: &'static str,
        /// The error.
        error: OpError,
    },
    /// The transaction conflicted on every attempt.
    #[error("the {txn:?} transaction conflicted {attempts} times")]
    Conflicts {
        /// Which transaction.
        txn: TxnKind,
        /// Attempts made.
        attempts: u32,
    },
    /// The backend did not come up in time.
    #[error("timed out waiting for {wait}; last state seen: {}", seen(*.last))]
    TimedOut {
        /// The wait.
        wait: WaitFor,
        /// The last state read, if any.
        last: Option<XenbusState>,
    },
    /// The backend's `state` node went away while the add waited for it.
    #[error("the backend's state node went away during the add")]
    BackendGone,
    /// A hotplug script failed.
    #[error("hotplug script failed: {0}")]
    Script(ScriptFailure),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
}

/// Why a removal failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The host could not say what state the guest is in.
    #[error("domain info of the guest: {0}")]
    DomainInfo(OpError),
    /// A xenstore operation failed.
    #[error("xenstore, {step}: {error}")]
    Xenstore {
        /// What the operation was for.
        step: &'static str,
        /// The error.
        error: OpError,
    },
    /// A transaction conflicted on every attempt.
    #[error("the {txn:?} transaction conflicted {attempts} times")]
    Conflicts {
        /// Which transaction.
        txn: TxnKind,
        /// Attempts made.
        attempts: u32,
    },
    /// A wait timed out (with force ON or OFF, or AUTO after its escalation).
    #[error("timed out waiting for {wait}; last state seen: {}", seen(*.last))]
    TimedOut {
        /// The wait.
        wait: WaitFor,
        /// The last state read, if any.
        last: Option<XenbusState>,
    },
    /// One or more remove scripts failed (every script still ran once; libxl loses this).
    #[error("{} hotplug script(s) failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Scripts(Vec<ScriptFailure>),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
    /// Removing the areas failed (after the removal itself succeeded, or after the error
    /// in `after`).
    #[error("removing the areas: {error}{}", .after.as_ref().map(|a| format!(" (after: {a})")).unwrap_or_default())]
    Prune {
        /// Why the removal transaction failed.
        error: Box<RemoveError>,
        /// The error the removal had already ended with, if any.
        after: Option<Box<RemoveError>>,
    },
}

impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceEvent::Guest(state) => write!(f, "guest is {state:?}"),
            DeviceEvent::DeviceModel { alive: Some(true) } => f.write_str("device model alive"),
            DeviceEvent::DeviceModel { alive: Some(false) } => f.write_str("device model gone"),
            DeviceEvent::DeviceModel { alive: None } => {
                f.write_str("device model liveness unknown")
            }
            DeviceEvent::Conflict { txn, attempts } => {
                write!(
                    f,
                    "{txn:?} transaction conflicted (attempt {attempts}); again"
                )
            }
            DeviceEvent::RemovalRequested { backend, force } => {
                let state = if *backend == XenbusState::Closed {
                    "backend already Closed: online=0".to_owned()
                } else {
                    format!("backend was {backend}: online=0 state=5")
                };
                write!(f, "removal requested ({state}, force {force})")?;
                if *force == Force::On {
                    f.write_str(", frontend removed")?;
                }
                Ok(())
            }
            DeviceEvent::Created => f.write_str("toolstack entry and both directories written"),
            DeviceEvent::Waiting(wait) => write!(f, "waiting for {wait}"),
            DeviceEvent::StillWaiting { wait, state } => {
                write!(f, "still waiting for {wait}: read {state}")
            }
            DeviceEvent::Reached(wait) => write!(f, "done waiting for {wait}"),
            DeviceEvent::BackendGone => f.write_str("backend state node gone: nothing to close"),
            DeviceEvent::Escalated => f.write_str("timed out with force auto: again with force on"),
            DeviceEvent::BodgeWait(wait) => {
                write!(
                    f,
                    "QEMU backend, guest not running: closing it myself in {wait:?}"
                )
            }
            DeviceEvent::Bodged { wrote: true } => f.write_str("wrote backend state=6 (bodge)"),
            DeviceEvent::Bodged { wrote: false } => f.write_str("backend already Closed (bodge)"),
            DeviceEvent::ScriptStarted { argv } => write!(f, "running {}", argv.join(" ")),
            DeviceEvent::ScriptKilled => {
                f.write_str("script ran past the hotplug timeout: SIGKILL")
            }
            DeviceEvent::ScriptEnded(exit) => write!(f, "script ended: {exit}"),
            DeviceEvent::HotplugError(text) => write!(f, "hotplug-error: {text}"),
            DeviceEvent::Pruned { paths } => write!(f, "removed {}", paths.join(" ")),
            DeviceEvent::Done(completion) => write!(f, "{completion}"),
        }
    }
}

impl fmt::Display for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Completion::Added(Ok(added)) => write!(f, "added ({} script(s) run)", added.scripts),
            Completion::Added(Err(err)) => write!(f, "add failed: {err}"),
            Completion::Removed(Removal { result, pruned }) => {
                match result {
                    Ok(removed) => {
                        write!(f, "removed (backend {:?}", removed.backend)?;
                        if removed.escalated {
                            f.write_str(", escalated to force on")?;
                        }
                        write!(f, ", {} script(s) run)", removed.scripts)?;
                    }
                    Err(err) => write!(f, "removal failed: {err}")?,
                }
                if !pruned {
                    f.write_str("; areas left in xenstore")?;
                }
                Ok(())
            }
        }
    }
}

/// The last state a wait read, for an error message.
fn seen(last: Option<XenbusState>) -> String {
    last.map_or_else(|| "none".to_owned(), |state| state.to_string())
}
