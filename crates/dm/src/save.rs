//! Saving QEMU's device state into a file the driver opens and passes with `add-fd`.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;
use xsio_core::deadline;
use xsio_ops::{
    Answer, FdHandle, FileAccess, FileOp, InputError, OpError, OpErrorKind, OpenFile, PeerEvent,
    ProcessExit, QmpCommand, expect_done, expect_fd, expect_qmp, expect_session,
};

use crate::requests::Requests;

/// The `opaque` label of the save's fd set (what `query-fdsets` shows; libxl's too).
pub const SAVE_OPAQUE: &str = "saved_state";

/// What to save, where, and how long it may take.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaveConfig {
    /// The file to write; the driver opens it write-only, creating it (mode 0600) and
    /// truncating it.
    pub path: String,
    /// `live` of `xen-save-devices-state` (a live migration's checkpoint); sent only to QEMU
    /// 2.11 and later, which know the argument.
    pub live: bool,
    /// The whole save's deadline, from [`Save::new`]. One too large to represent
    /// (`Duration::MAX`) means none.
    pub timeout: Duration,
}

impl SaveConfig {
    /// A save into `path`, not live, within 30 s.
    ///
    /// ```
    /// let config = xsio_dm::SaveConfig::to("/var/lib/xen/qemu-save.1");
    /// assert!(!config.live);
    /// ```
    pub fn to(path: impl Into<String>) -> SaveConfig {
        SaveConfig {
            path: path.into(),
            live: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The device state is in the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Saved {
    /// The fd set the file went through (removed again).
    pub fdset_id: u64,
    /// The `live` argument sent (`None`: QEMU older than 2.11, not sent).
    pub live: Option<bool>,
}

/// A step of the save, to say which one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaveStep {
    /// Opening the QMP connection.
    Connect,
    /// `stop`.
    Stop,
    /// Opening the file.
    Open,
    /// `add-fd`.
    AddFd,
    /// `xen-save-devices-state`.
    SaveState,
}

impl fmt::Display for SaveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaveStep::Connect => "connect",
            SaveStep::Stop => "stop",
            SaveStep::Open => "open",
            SaveStep::AddFd => "add-fd",
            SaveStep::SaveState => "xen-save-devices-state",
        })
    }
}

/// Why a save failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The save did not finish in time (cleanup goes on as the answers come).
    #[error("the save did not finish within {0:?}")]
    TimedOut(Duration),
    /// QEMU exited during the save.
    #[error("QEMU exited during the save: {}", crate::exit_text(.0))]
    Exited(Option<ProcessExit>),
    /// A step failed.
    #[error("{step} failed: {source}")]
    Failed {
        /// Which.
        step: SaveStep,
        /// Why.
        source: OpError,
    },
    /// `add-fd` answered without an `fdset-id`.
    #[error("add-fd answered without an fdset-id: {0}")]
    BadReply(String),
    /// The state was saved, but the fd set could not be removed (QEMU still holds it).
    #[error("the state was saved, but remove-fd of fd set {fdset_id} failed: {source}")]
    Cleanup {
        /// The fd set left behind.
        fdset_id: u64,
        /// Why.
        source: OpError,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Connect,
    Stop,
    Open,
    AddFd,
    SaveState {
        fdset_id: u64,
    },
    /// Removing the fd set; `then` is the result to complete with, when still running.
    RemoveFd {
        fdset_id: u64,
    },
    /// Closing a handle nobody will use.
    Close,
}

/// Saves QEMU's device state (`xen-save-devices-state`) into a file.
///
/// The steps: [`QmpOp::Connect`](xsio_ops::QmpOp::Connect) (its greeting gives the version),
/// `stop`, the driver opens [`SaveConfig::path`] write-only and truncated ([`FileOp::Open`]),
/// `add-fd` passes the descriptor into a new fd set,
/// `xen-save-devices-state {filename: /dev/fdset/N, live}` (`live` only for QEMU 2.11 and
/// later) writes the state, and `remove-fd` removes the set again, whether the save succeeded
/// or failed: QEMU keeps a set until told (9.1 and later) or until the last monitor
/// disconnects (earlier), so the machine tells it. All within
/// [`SaveConfig::timeout`].
///
/// It never leaks: a handle that arrives after the save gave up is closed, and an fd set
/// created after it gave up is removed. QEMU dying mid-save fails it once (with
/// [`SaveError::Exited`] when the exit comes first, else with the failed step); the driver
/// closes the descriptor of the command that could not be sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Save {
    config: SaveConfig,
    requests: Requests<Purpose, Result<Saved, SaveError>>,
    deadline: Option<Instant>,
    live: Option<bool>,
    /// The QMP connection ended: remove-fd can no longer be sent.
    closed: bool,
    /// A failure waiting for its fd set's removal before it is reported.
    failure: Option<SaveError>,
}

impl Save {
    /// Starts the save at `now`: asks for the QMP connection.
    pub fn new(config: SaveConfig, now: Instant) -> Save {
        Save {
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::connecting(Purpose::Connect),
            live: None,
            closed: false,
            failure: None,
        }
    }

    /// The answer to a request.
    pub fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
        let running = !self.requests.is_complete() && self.failure.is_none();
        match self.requests.finish(answer.id)? {
            Purpose::Connect => {
                let (session, refused) = answer.check(expect_session);
                match session {
                    Ok(session) if running => {
                        let live = session.version.at_least(2, 11).then_some(self.config.live);
                        self.live = live;
                        self.requests
                            .request(Purpose::Stop, QmpCommand::new("stop"));
                    }
                    Ok(_) => {}
                    Err(source) => self.fail(SaveStep::Connect, source),
                }
                refused
            }
            Purpose::Stop => {
                let (stopped, refused) = answer.check(expect_qmp);
                match stopped {
                    Ok(_) if running => {
                        let open = OpenFile {
                            path: self.config.path.clone(),
                            access: FileAccess::WriteOnly,
                            create: true,
                            truncate: true,
                        };
                        self.requests.request(Purpose::Open, FileOp::Open(open));
                    }
                    Ok(_) => {}
                    Err(source) => self.fail(SaveStep::Stop, source),
                }
                refused
            }
            Purpose::Open => {
                let (fd, refused) = answer.check(expect_fd);
                match fd {
                    Ok(fd) if running => self.add_fd(fd),
                    // Too late to use it: give it back.
                    Ok(fd) => self.requests.request(Purpose::Close, FileOp::Close(fd)),
                    Err(source) => self.fail(SaveStep::Open, source),
                }
                refused
            }
            Purpose::AddFd => {
                let (added, refused) = answer.check(expect_qmp);
                match added {
                    Ok(value) => match value.get("fdset-id").and_then(Value::as_u64) {
                        Some(fdset_id) if running => self.save_state(fdset_id),
                        // Created after the save gave up: remove it all the same.
                        Some(fdset_id) => self.remove_fd(fdset_id),
                        None => self.finish(Err(SaveError::BadReply(value.to_string()))),
                    },
                    Err(source) => self.fail(SaveStep::AddFd, source),
                }
                refused
            }
            Purpose::SaveState { fdset_id } => {
                let (saved, refused) = answer.check(expect_qmp);
                if let Err(source) = saved {
                    // A connection error means there is nobody to send remove-fd to.
                    self.closed |= source.kind == OpErrorKind::Connection;
                    self.failure.get_or_insert(SaveError::Failed {
                        step: SaveStep::SaveState,
                        source,
                    });
                }
                self.remove_fd(fdset_id);
                refused
            }
            Purpose::RemoveFd { fdset_id } => {
                let (removed, refused) = answer.check(expect_qmp);
                let outcome = match (self.failure.take(), removed) {
                    (Some(failure), _) => Err(failure),
                    (None, Ok(_)) => Ok(Saved {
                        fdset_id,
                        live: self.live,
                    }),
                    (None, Err(source)) => Err(SaveError::Cleanup { fdset_id, source }),
                };
                self.finish(outcome);
                refused
            }
            Purpose::Close => {
                // Nothing depends on it; a failed close was still a close.
                let (_, refused) = answer.check(expect_done);
                refused
            }
        }
    }

    /// What QEMU reported on its own: its exit fails the save, the connection's end stops
    /// the cleanup (there is nobody left to tell).
    pub fn handle_peer(&mut self, _now: Instant, event: &PeerEvent) {
        match event {
            PeerEvent::Exited(exit) => {
                self.closed = true;
                let failure = self.failure.take();
                self.finish(Err(failure.unwrap_or(SaveError::Exited(exit.clone()))));
            }
            PeerEvent::QmpClosed => self.closed = true,
            _ => {}
        }
    }

    /// Time passed: after the deadline the save fails; cleanup goes on.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.requests.is_complete() && self.deadline.is_some_and(|d| now >= d) {
            self.failure = None;
            self.requests
                .complete(Err(SaveError::TimedOut(self.config.timeout)));
        }
    }

    /// The deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests.until_complete(self.deadline)
    }

    fn add_fd(&mut self, fd: FdHandle) {
        let add = QmpCommand::new("add-fd")
            .arguments(json!({ "opaque": SAVE_OPAQUE }))
            .fd(fd);
        self.requests.request(Purpose::AddFd, add);
    }

    fn save_state(&mut self, fdset_id: u64) {
        let mut arguments = json!({ "filename": format!("/dev/fdset/{fdset_id}") });
        if let Some(live) = self.live {
            arguments["live"] = live.into();
        }
        let save = QmpCommand::new("xen-save-devices-state").arguments(arguments);
        self.requests.request(Purpose::SaveState { fdset_id }, save);
    }

    /// Removes the fd set while the connection lasts; otherwise finishes at once.
    fn remove_fd(&mut self, fdset_id: u64) {
        if self.closed {
            let failure = self.failure.take();
            self.finish(Err(failure.unwrap_or(SaveError::Failed {
                step: SaveStep::SaveState,
                source: OpError::new(OpErrorKind::Connection, "the QMP connection ended"),
            })));
            return;
        }
        let remove = QmpCommand::new("remove-fd").arguments(json!({ "fdset-id": fdset_id }));
        self.requests
            .request(Purpose::RemoveFd { fdset_id }, remove);
    }

    /// A step failed before any fd set exists: complete now (a connection error whose
    /// cause is the exit is reported as the exit, when that came first).
    fn fail(&mut self, step: SaveStep, source: OpError) {
        if source.kind == OpErrorKind::Connection {
            self.closed = true;
        }
        let failure = self.failure.take();
        self.finish(Err(failure.unwrap_or(SaveError::Failed { step, source })));
    }

    fn finish(&mut self, result: Result<Saved, SaveError>) {
        self.requests.complete(result);
    }
}

crate::operation!(Save, Result<Saved, SaveError>);
