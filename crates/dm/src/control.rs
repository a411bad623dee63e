//! Resume (`cont`, then the fd sets a save or restore left behind) and pause (`stop`).

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;
use xsio_core::deadline;
use xsio_ops::{
    Answer, InputError, OpError, PeerEvent, ProcessExit, QmpCommand, expect_qmp, expect_session,
};

use crate::requests::Requests;

/// What to do with the guest's vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `cont`: run them (after a fresh `-S` start, a restore, or a pause).
    Resume,
    /// `stop`: pause them.
    Pause,
}

impl Action {
    /// The QMP command.
    pub fn command(self) -> &'static str {
        match self {
            Action::Resume => "cont",
            Action::Pause => "stop",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())
    }
}

/// A [`Control`]'s action and deadline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControlConfig {
    /// What to do.
    pub action: Action,
    /// The deadline, from [`Control::new`] (libxl's `LIBXL_QMP_CMD_TIMEOUT`, 10 s, by
    /// default). One too large to represent (`Duration::MAX`) means none.
    pub timeout: Duration,
}

impl ControlConfig {
    /// `action` within 10 s.
    pub fn new(action: Action) -> ControlConfig {
        ControlConfig {
            action,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a resume or pause failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No answer in time.
    #[error("{action} did not complete within {timeout:?}")]
    TimedOut {
        /// What was asked.
        action: Action,
        /// The deadline.
        timeout: Duration,
    },
    /// QEMU exited first.
    #[error("QEMU exited: {}", crate::exit_text(.0))]
    Exited(Option<ProcessExit>),
    /// Opening the QMP connection failed.
    #[error("connecting failed: {0}")]
    Connect(OpError),
    /// The command failed.
    #[error("{action} failed: {source}")]
    Failed {
        /// What was asked.
        action: Action,
        /// Why.
        source: OpError,
    },
    /// The guest runs, but the fd sets a save or restore left could not be listed or
    /// removed.
    #[error("the guest runs, but removing the saved-state fd sets failed: {0}")]
    Cleanup(OpError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Connect,
    Command,
    ListFdSets,
    RemoveFdSet,
}

/// Resumes or pauses the guest's vCPUs: [`QmpOp::Connect`](xsio_ops::QmpOp::Connect), then `cont`
/// or `stop`, within a deadline; completes with `Ok(())` or a [`ControlError`].
///
/// A resume also removes the fd sets labelled [`SAVE_OPAQUE`](crate::SAVE_OPAQUE) (found
/// with `query-fdsets`, removed with `remove-fd`): a [`Save`](crate::Save) on a paused guest
/// removed its set, but QEMU before 9.1 frees a removed set only while the guest runs
/// (and only when told again, or when a monitor disconnects), and the set of a restore
/// (`-add-fd ...,opaque=saved_state`) is the toolstack's to remove once the guest runs, as
/// libxl does after a restore.
///
/// ```
/// use std::time::Instant;
/// use xsio_dm::{Action, Control, ControlConfig};
/// use xsio_ops::{Answer, Op, Output, QemuVersion, QmpOp, QmpSession, Reply};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut resume = Control::new(ControlConfig::new(Action::Resume), now);
/// let Some(Output::Request(connect)) = resume.poll_output() else { unreachable!() };
/// let version = QemuVersion { major: 7, minor: 2, micro: 22 };
/// resume.handle_reply(now, Answer::new(connect.id, Ok(Reply::QmpConnected(QmpSession { version, package: String::new() }))))?;
/// let Some(Output::Request(cont)) = resume.poll_output() else { unreachable!() };
/// let Op::Qmp(QmpOp::Command(command)) = &cont.op else { unreachable!() };
/// assert_eq!(command.command, "cont");
/// resume.handle_reply(now, Answer::new(cont.id, Ok(Reply::Qmp(serde_json::json!({})))))?;
/// // Then the fd sets a save or restore left: here, none.
/// let Some(Output::Request(list)) = resume.poll_output() else { unreachable!() };
/// resume.handle_reply(now, Answer::new(list.id, Ok(Reply::Qmp(serde_json::json!([])))))?;
/// assert_eq!(resume.poll_output(), Some(Output::Event(Ok(()))));
/// # Ok::<(), xsio_ops::InputError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Control {
    config: ControlConfig,
    requests: Requests<Purpose, Result<(), ControlError>>,
    deadline: Option<Instant>,
    /// `remove-fd` requests of the cleanup still unanswered.
    removing: usize,
    cleanup_failure: Option<OpError>,
}

impl Control {
    /// Starts at `now`: asks for the QMP connection.
    pub fn new(config: ControlConfig, now: Instant) -> Control {
        Control {
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::connecting(Purpose::Connect),
            removing: 0,
            cleanup_failure: None,
        }
    }

    /// The answer to a request.
    pub fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
        let action = self.config.action;
        match self.requests.finish(answer.id)? {
            Purpose::Connect => {
                let (session, refused) = answer.check(expect_session);
                match session {
                    Ok(_) if !self.requests.is_complete() => {
                        let command = QmpCommand::new(action.command());
                        self.requests.request(Purpose::Command, command);
                    }
                    Ok(_) => {}
                    Err(source) => self.requests.complete(Err(ControlError::Connect(source))),
                }
                refused
            }
            Purpose::Command => {
                let (done, refused) = answer.check(expect_qmp);
                match done {
                    Ok(_) if action == Action::Resume && !self.requests.is_complete() => {
                        let list = QmpCommand::new("query-fdsets");
                        self.requests.request(Purpose::ListFdSets, list);
                    }
                    Ok(_) => self.requests.complete(Ok(())),
                    Err(source) => self
                        .requests
                        .complete(Err(ControlError::Failed { action, source })),
                }
                refused
            }
            Purpose::ListFdSets => {
                let (sets, refused) = answer.check(expect_qmp);
                match sets {
                    Ok(sets) if !self.requests.is_complete() => self.remove_saved_state(&sets),
                    Ok(_) => {}
                    Err(source) => self.requests.complete(Err(ControlError::Cleanup(source))),
                }
                refused
            }
            Purpose::RemoveFdSet => {
                let (removed, refused) = answer.check(expect_qmp);
                self.removing = self.removing.saturating_sub(1);
                if let Err(source) = removed {
                    self.cleanup_failure.get_or_insert(source);
                }
                if self.removing == 0 {
                    self.finish_cleanup();
                }
                refused
            }
        }
    }

    /// What QEMU reported on its own: its exit ends the operation.
    pub fn handle_peer(&mut self, _now: Instant, event: &PeerEvent) {
        if let PeerEvent::Exited(exit) = event {
            self.requests
                .complete(Err(ControlError::Exited(exit.clone())));
        }
    }

    /// Time passed: after the deadline the operation fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.requests.is_complete() && self.deadline.is_some_and(|d| now >= d) {
            self.requests.complete(Err(ControlError::TimedOut {
                action: self.config.action,
                timeout: self.config.timeout,
            }));
        }
    }

    /// The deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests.until_complete(self.deadline)
    }
}

impl Control {
    /// Removes every fd set holding a descriptor labelled `saved_state`.
    fn remove_saved_state(&mut self, sets: &Value) {
        let saved_state = |set: &&Value| {
            set["fds"].as_array().is_some_and(|fds| {
                fds.iter()
                    .any(|fd| fd["opaque"].as_str() == Some(crate::SAVE_OPAQUE))
            })
        };
        let ids: Vec<u64> = sets
            .as_array()
            .into_iter()
            .flatten()
            .filter(saved_state)
            .filter_map(|set| set["fdset-id"].as_u64())
            .collect();
        for fdset_id in ids {
            self.removing += 1;
            let remove = QmpCommand::new("remove-fd").arguments(json!({ "fdset-id": fdset_id }));
            self.requests.request(Purpose::RemoveFdSet, remove);
        }
        if self.removing == 0 {
            self.finish_cleanup();
        }
    }

    fn finish_cleanup(&mut self) {
        let result = match self.cleanup_failure.take() {
            Some(source) => Err(ControlError::Cleanup(source)),
            None => Ok(()),
        };
        self.requests.complete(result);
    }
}

crate::operation!(Control, Result<(), ControlError>);
