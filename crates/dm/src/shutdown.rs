//! Shutdown: `quit`, then the connection's end and the process's exit, else a kill.

use std::time::{Duration, Instant};

use thiserror::Error;
use xsio_core::deadline;
use xsio_ops::{
    Answer, InputError, OpError, OpErrorKind, PeerEvent, ProcessExit, ProcessOp, QmpCommand,
    expect_done, expect_qmp, expect_session,
};

use crate::requests::Requests;

/// A [`Shutdown`]'s deadlines.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShutdownConfig {
    /// How long QEMU has, from [`Shutdown::new`], to close the connection and exit after
    /// `quit`; then it is killed. One too large to represent (`Duration::MAX`) means it is
    /// never killed.
    pub timeout: Duration,
    /// How long the kill may take to show as an exit before the shutdown fails.
    pub kill_timeout: Duration,
}

impl Default for ShutdownConfig {
    /// 10 s for `quit` (libxl's `LIBXL_QMP_CMD_TIMEOUT`), 5 s for the kill.
    fn default() -> ShutdownConfig {
        ShutdownConfig {
            timeout: Duration::from_secs(10),
            kill_timeout: Duration::from_secs(5),
        }
    }
}

/// QEMU is gone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stopped {
    /// How it ended (`None`: not the driver's child, status unknown).
    pub exit: Option<ProcessExit>,
    /// Whether it had to be killed (`quit` failed or took too long).
    pub killed: bool,
}

/// Why a shutdown failed: QEMU may still run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The driver could not kill it.
    #[error("killing QEMU failed: {0}")]
    Kill(OpError),
    /// Killed, but no exit was seen within the kill timeout.
    #[error("QEMU was killed but did not exit within {0:?}")]
    NotExited(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Connect,
    Quit,
    Kill,
}

/// Shuts QEMU down: [`QmpOp::Connect`](xsio_ops::QmpOp::Connect), `quit`, then waits for the QMP
/// connection to end and the process to exit. When `quit` fails or QEMU is still there at
/// [`ShutdownConfig::timeout`], it asks the driver to kill it ([`ProcessOp::Kill`]) and waits
/// [`ShutdownConfig::kill_timeout`] for the exit. Completes with [`Stopped`] (how QEMU ended,
/// whether it was killed) or a [`ShutdownError`].
///
/// QEMU may close the connection before it answers `quit`; that counts as the answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shutdown {
    config: ShutdownConfig,
    requests: Requests<Purpose, Result<Stopped, ShutdownError>>,
    deadline: Option<Instant>,
    /// The connection is open (from the Connect answer to its end).
    connected: bool,
    exit: Option<Option<ProcessExit>>,
    killed: bool,
}

impl Shutdown {
    /// Starts at `now`: asks for the QMP connection.
    pub fn new(config: ShutdownConfig, now: Instant) -> Shutdown {
        Shutdown {
            deadline: deadline(now, config.timeout),
            config,
            requests: Requests::connecting(Purpose::Connect),
            connected: false,
            exit: None,
            killed: false,
        }
    }

    /// The answer to a request.
    pub fn handle_reply(&mut self, now: Instant, answer: Answer) -> Result<(), InputError> {
        match self.requests.finish(answer.id)? {
            Purpose::Connect => {
                let (session, refused) = answer.check(expect_session);
                match session {
                    Ok(_) if self.exit.is_none() => {
                        self.connected = true;
                        self.requests
                            .request(Purpose::Quit, QmpCommand::new("quit"));
                    }
                    Ok(_) => {}
                    // Nothing to say `quit` to (QEMU may be gone already): make sure.
                    Err(_) => self.kill(now),
                }
                refused
            }
            Purpose::Quit => {
                let (quit, refused) = answer.check(expect_qmp);
                match quit {
                    // QEMU may close the connection instead of answering: the same thing.
                    Ok(_) => {}
                    Err(err) if err.kind == OpErrorKind::Connection => {}
                    Err(_) => self.kill(now),
                }
                refused
            }
            Purpose::Kill => {
                let (killed, refused) = answer.check(expect_done);
                if let Err(err) = killed {
                    if self.exit.is_none() {
                        self.requests.complete(Err(ShutdownError::Kill(err)));
                    }
                }
                refused
            }
        }
    }

    /// The connection's end and the process's exit, which together end the shutdown.
    pub fn handle_peer(&mut self, _now: Instant, event: &PeerEvent) {
        match event {
            PeerEvent::QmpClosed => self.connected = false,
            PeerEvent::Exited(exit) => {
                self.exit.get_or_insert(exit.clone());
            }
            _ => return,
        }
        self.finish_if_gone();
    }

    /// Time passed: at the deadline QEMU is killed; at the kill's deadline the shutdown
    /// fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.requests.is_complete() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        if let Some(exit) = self.exit.clone() {
            // Exited, but the connection never reported its end: the process is what
            // matters, and it is gone.
            self.requests.complete(Ok(Stopped {
                exit,
                killed: self.killed,
            }));
        } else if self.killed {
            self.requests
                .complete(Err(ShutdownError::NotExited(self.config.kill_timeout)));
        } else {
            self.kill(now);
        }
    }

    /// The deadline while not complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests.until_complete(self.deadline)
    }

    /// Asks for the kill (once) and arms the kill's deadline.
    fn kill(&mut self, now: Instant) {
        if self.killed || self.exit.is_some() || self.requests.is_complete() {
            return;
        }
        self.killed = true;
        self.deadline = deadline(now, self.config.kill_timeout);
        self.requests.request(Purpose::Kill, ProcessOp::Kill);
    }

    fn finish_if_gone(&mut self) {
        if let (Some(exit), false) = (&self.exit, self.connected) {
            let exit = exit.clone();
            self.requests.complete(Ok(Stopped {
                exit,
                killed: self.killed,
            }));
        }
    }
}

crate::operation!(Shutdown, Result<Stopped, ShutdownError>);
