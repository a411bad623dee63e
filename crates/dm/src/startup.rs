//! Start-up sync: QEMU is up when its monitor answers on the pre-opened socket.

use std::time::{Duration, Instant};

use thiserror::Error;
use xsio_core::deadline;
use xsio_ops::{
    Answer, InputError, OpError, OpErrorKind, PeerEvent, ProcessExit, QmpCommand, QmpSession,
    expect_qmp, expect_session,
};

use crate::requests::Requests;

/// The run state of a fresh start with `-S`: QEMU waits for `cont`.
pub const PRELAUNCH: &str = "prelaunch";
/// The run states of a restore: waiting for the incoming state (`-incoming`), or loaded and
/// paused.
pub const RESTORE: &[&str] = &["inmigrate", "paused"];

/// How long a start-up may take: libxl's `LIBXL_DEVICE_MODEL_START_TIMEOUT`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a [`StartUp`] waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StartConfig {
    /// The run states (`query-status`'s `status`) that mean "ready"; any other is an error.
    pub accept: Vec<String>,
    /// The whole start-up's deadline, from [`StartUp::new`]. One too large to represent
    /// (`Duration::MAX`) means none.
    pub timeout: Duration,
    /// After the QMP connection fails, how long to wait for the process's exit so that the
    /// error names its status rather than the connection.
    pub exit_grace: Duration,
}

impl StartConfig {
    /// A fresh start with `-S`: ready means `prelaunch`.
    ///
    /// ```
    /// let config = xsio_dm::StartConfig::fresh();
    /// assert_eq!(config.accept, ["prelaunch"]);
    /// assert_eq!(config.timeout.as_secs(), 60);
    /// ```
    pub fn fresh() -> StartConfig {
        StartConfig::accepting(&[PRELAUNCH])
    }

    /// A restore (`-incoming`): ready means `inmigrate` or `paused`.
    pub fn restore() -> StartConfig {
        StartConfig::accepting(RESTORE)
    }

    /// Ready means any of `states`; the default deadlines.
    pub fn accepting(states: &[&str]) -> StartConfig {
        StartConfig {
            accept: states.iter().map(|s| (*s).to_owned()).collect(),
            timeout: START_TIMEOUT,
            exit_grace: Duration::from_secs(1),
        }
    }
}

/// QEMU is ready.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ready {
    /// Its run state, one of [`StartConfig::accept`].
    pub status: String,
    /// What the QMP greeting said.
    pub session: QmpSession,
}

/// Why a start-up failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum StartError {
    /// QEMU's monitor did not answer in time.
    #[error("QEMU was not ready within {0:?}")]
    TimedOut(Duration),
    /// QEMU exited first.
    #[error("QEMU exited during start-up: {}", crate::exit_text(.0))]
    Exited(Option<ProcessExit>),
    /// The QMP connection failed (and no exit was seen within the grace period).
    #[error("the QMP connection failed: {0}")]
    Connection(OpError),
    /// `query-status` failed.
    #[error("query-status failed: {0}")]
    Status(OpError),
    /// QEMU runs, but not in a state this start-up accepts.
    #[error("QEMU is {status:?}; expected one of {expected:?}")]
    UnexpectedStatus {
        /// The state it reported.
        status: String,
        /// The accepted states.
        expected: Vec<String>,
    },
    /// The `query-status` reply had no `status` string.
    #[error("query-status answered without a status: {0}")]
    BadReply(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Connect,
    Status,
}

/// Waits until QEMU's monitor answers on its pre-opened QMP socket and reports a run state
/// the caller accepts, within [`StartConfig::timeout`].
///
/// The driver has bound and listened on the socket itself and handed QEMU the listening
/// descriptor (`-chardev socket,id=...,fd=N,server=on,wait=off` with
/// `-mon chardev=...,mode=control`), so the connection succeeds at once (the kernel queues
/// it) and the greeting arrives the moment QEMU's main loop runs: no connect race, no
/// polling. The machine asks [`QmpOp::Connect`](xsio_ops::QmpOp::Connect), then `query-status`, and
/// completes with [`Ready`] or a [`StartError`]: QEMU exiting first gives [`StartError::Exited`]
/// with its status.
///
/// ```
/// use std::time::Instant;
/// use xsio_dm::{StartConfig, StartUp};
/// use xsio_ops::{Answer, Op, Output, QemuVersion, QmpOp, QmpSession, Reply};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut start = StartUp::new(StartConfig::fresh(), now);
/// let Some(Output::Request(connect)) = start.poll_output() else { unreachable!() };
/// assert_eq!(connect.op, Op::Qmp(QmpOp::Connect));
/// let version = QemuVersion { major: 7, minor: 2, micro: 22 };
/// let session = QmpSession { version, package: String::new() };
/// start.handle_reply(now, Answer::new(connect.id, Ok(Reply::QmpConnected(session))))?;
/// let Some(Output::Request(status)) = start.poll_output() else { unreachable!() };
/// let prelaunch = serde_json::json!({"status": "prelaunch", "running": false});
/// start.handle_reply(now, Answer::new(status.id, Ok(Reply::Qmp(prelaunch))))?;
/// let Some(Output::Event(Ok(ready))) = start.poll_output() else { unreachable!() };
/// assert_eq!((ready.status.as_str(), ready.session.version), ("prelaunch", version));
/// # Ok::<(), xsio_ops::InputError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StartUp {
    config: StartConfig,
    requests: Requests<Purpose, Result<Ready, StartError>>,
    deadline: Option<Instant>,
    session: Option<QmpSession>,
    /// The connection failed: waiting this long for the exit, then failing with the error.
    lost: Option<(OpError, Option<Instant>)>,
}

impl StartUp {
    /// Starts waiting at `now`: asks for the QMP connection.
    pub fn new(config: StartConfig, now: Instant) -> StartUp {
        StartUp {
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::connecting(Purpose::Connect),
            session: None,
            lost: None,
        }
    }

    /// The answer to a request.
    pub fn handle_reply(&mut self, now: Instant, answer: Answer) -> Result<(), InputError> {
        match self.requests.finish(answer.id)? {
            Purpose::Connect => {
                let (session, refused) = answer.check(expect_session);
                match session {
                    Ok(session) => {
                        if !self.requests.is_complete() {
                            self.session = Some(session);
                            self.requests
                                .request(Purpose::Status, QmpCommand::new("query-status"));
                        }
                    }
                    Err(err) if err.kind == OpErrorKind::Connection => {
                        self.connection_lost(now, err)
                    }
                    Err(err) => self.requests.complete(Err(StartError::Connection(err))),
                }
                refused
            }
            Purpose::Status => {
                let (status, refused) = answer.check(expect_qmp);
                match status {
                    Ok(value) => self.on_status(&value),
                    Err(err) if err.kind == OpErrorKind::Connection => {
                        self.connection_lost(now, err)
                    }
                    Err(err) => self.requests.complete(Err(StartError::Status(err))),
                }
                refused
            }
        }
    }

    /// What QEMU reported on its own: its exit ends the start-up.
    pub fn handle_peer(&mut self, now: Instant, event: &PeerEvent) {
        match event {
            PeerEvent::Exited(exit) => self
                .requests
                .complete(Err(StartError::Exited(exit.clone()))),
            PeerEvent::QmpClosed => self.connection_lost(
                now,
                OpError::new(OpErrorKind::Connection, "QEMU closed the QMP connection"),
            ),
            _ => {}
        }
    }

    /// Time passed: the grace period after a lost connection, then the start-up deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.requests.is_complete() {
            return;
        }
        if let Some((err, grace)) = &self.lost {
            if grace.is_some_and(|g| now >= g) {
                let err = err.clone();
                self.requests.complete(Err(StartError::Connection(err)));
                return;
            }
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.requests
                .complete(Err(StartError::TimedOut(self.config.timeout)));
        }
    }

    /// The earliest deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self.lost.as_ref().and_then(|(_, grace)| *grace);
        let first = match (grace, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.requests.until_complete(first)
    }

    fn on_status(&mut self, value: &serde_json::Value) {
        if self.requests.is_complete() {
            return;
        }
        let Some(status) = value.get("status").and_then(serde_json::Value::as_str) else {
            self.requests
                .complete(Err(StartError::BadReply(value.to_string())));
            return;
        };
        if !self.config.accept.iter().any(|s| s == status) {
            self.requests.complete(Err(StartError::UnexpectedStatus {
                status: status.to_owned(),
                expected: self.config.accept.clone(),
            }));
            return;
        }
        let Some(session) = self.session.clone() else {
            // A status is only asked for once connected.
            return;
        };
        self.requests.complete(Ok(Ready {
            status: status.to_owned(),
            session,
        }));
    }

    /// The first loss of the connection starts the grace period for the exit status.
    fn connection_lost(&mut self, now: Instant, err: OpError) {
        if self.requests.is_complete() || self.lost.is_some() {
            return;
        }
        self.lost = Some((err, deadline(now, self.config.exit_grace)));
    }
}

crate::operation!(StartUp, Result<Ready, StartError>);
