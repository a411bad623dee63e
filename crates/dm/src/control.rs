//! Resume (`cont`) and pause (`stop`): one command on the QMP connection.

use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;
use xsio_core::{OpId, deadline};
use xsio_ops::{
    InputError, OpError, Output, PeerEvent, ProcessExit, QmpCommand, QmpOp, Reply, expect_qmp,
    expect_session,
};

use crate::requests::{Requests, checked};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Connect,
    Command,
}

/// Resumes or pauses the guest's vCPUs: [`QmpOp::Connect`], then `cont` or `stop`, within a
/// deadline; completes with `Ok(())` or a [`ControlError`].
///
/// ```
/// use std::time::Instant;
/// use xsio_dm::{Action, Control, ControlConfig};
/// use xsio_ops::{Op, Output, QemuVersion, QmpOp, QmpSession, Reply};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut resume = Control::new(ControlConfig::new(Action::Resume), now);
/// let Some(Output::Request(connect)) = resume.poll_output() else { unreachable!() };
/// let version = QemuVersion { major: 7, minor: 2, micro: 22 };
/// resume.handle_reply(now, connect.id, Ok(Reply::QmpConnected(QmpSession { version, package: String::new() })))?;
/// let Some(Output::Request(cont)) = resume.poll_output() else { unreachable!() };
/// let Op::Qmp(QmpOp::Command(command)) = &cont.op else { unreachable!() };
/// assert_eq!(command.command, "cont");
/// resume.handle_reply(now, cont.id, Ok(Reply::Qmp(serde_json::json!({}))))?;
/// assert_eq!(resume.poll_output(), Some(Output::Event(Ok(()))));
/// # Ok::<(), xsio_ops::InputError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Control {
    config: ControlConfig,
    requests: Requests<Purpose, Result<(), ControlError>>,
    deadline: Option<Instant>,
}

impl Control {
    /// Starts at `now`: asks for the QMP connection.
    pub fn new(config: ControlConfig, now: Instant) -> Control {
        let mut control = Control {
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::new(),
        };
        control.requests.request(Purpose::Connect, QmpOp::Connect);
        control
    }

    /// The result, once complete.
    pub fn result(&self) -> Option<&Result<(), ControlError>> {
        self.requests.completed()
    }

    /// Complete, with every request answered: nothing more will come out.
    pub fn is_settled(&self) -> bool {
        self.requests.is_settled()
    }

    /// How many requests await an answer.
    pub fn in_flight(&self) -> usize {
        self.requests.in_flight()
    }

    /// The answer to a request.
    pub fn handle_reply(
        &mut self,
        _now: Instant,
        id: OpId,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let action = self.config.action;
        match self.requests.finish(id)? {
            Purpose::Connect => {
                let (session, refused) = checked(expect_session(id, result));
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
                let (done, refused) = checked(expect_qmp(id, result));
                let result = done
                    .map(|_| ())
                    .map_err(|source| ControlError::Failed { action, source });
                self.requests.complete(result);
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

    /// The next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output<Result<(), ControlError>>> {
        self.requests.poll_output()
    }

    /// The deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.requests.is_complete() {
            None
        } else {
            self.deadline
        }
    }
}

crate::impl_machine!(Control, Result<(), ControlError>);
