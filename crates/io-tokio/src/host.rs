//! The host operations of the toolstack machines ([`xsio_ops::HostOp`]) on tokio, the async
//! twin of `xsio_io_std::host`: programs (hotplug scripts) are tokio child processes,
//! answered with their exit when they end; the guest's state and the device model's
//! liveness come from the caller (closures), who knows them from its hypervisor binding,
//! its QMP connection, or a command-line flag. [`l2::XsLinks::with_host`](crate::l2::XsLinks::with_host)
//! runs it beside the xenstore connections.
//!
//! ```no_run
//! use xsio_io_tokio::host::Host;
//! use xsio_io_tokio::l2::XsLinks;
//! use xsio_ops::DomainState;
//!
//! let host = Host::new()
//!     .domain_info(|_domid| Ok(DomainState::Running))
//!     .device_model(|_domid| Some(true));
//! let links = XsLinks::default().with_host(host);
//! # let _ = links;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::process::{Child, Command};
use xsio_core::OpId;
use xsio_harness::host_answers::no_provider;
use xsio_harness::{Actor, Harness, HarnessError, HostAnswers, Owner};
use xsio_ops::{DomainState, HostOp, OpError, ProcessExit, Reply};

use xsio_io_unix::{exit_of, script_command, start_failure};

/// The caller's answers to `DomainInfo` and `DeviceModelAlive` (`Send`: the host lives in
/// the driver's future).
type Answers = HostAnswers<
    Box<dyn FnMut(u32) -> Result<DomainState, String> + Send>,
    Box<dyn FnMut(u32) -> Option<bool> + Send>,
>;

/// How many times, a millisecond apart, dropping a [`Host`] looks whether its killed
/// children can be reaped; one still there after that is left to tokio's reaper of
/// orphaned children.
const REAP_ON_DROP_CHECKS: u32 = 1000;

/// A program started for a machine's `Spawn`, answered when it ends.
struct Running {
    owner: Owner,
    id: OpId,
    child: Child,
}

/// Executes host operations: `DomainInfo` and `DeviceModelAlive` through the caller's
/// closures (without one: [`xsio_ops::OpErrorKind::Unsupported`]), `Spawn` and `Kill`
/// with tokio child processes (stdin `/dev/null`, stdout to this process's stderr, as libxl
/// runs hotplug scripts; `Kill` is SIGKILL). Children still running when the host is dropped
/// are killed and reaped. Spawning needs a tokio runtime with I/O enabled (the driver's).
#[derive(Default)]
pub struct Host {
    answers: Answers,
    running: Vec<Running>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("answers", &self.answers)
            .field("running", &self.running.len())
            .finish()
    }
}

impl Host {
    /// A host that runs programs and knows nothing of domains or device models yet.
    pub fn new() -> Host {
        Host::default()
    }

    /// Answers `DomainInfo` with `info(domid)`; an `Err` text fails the operation.
    pub fn domain_info(
        mut self,
        info: impl FnMut(u32) -> Result<DomainState, String> + Send + 'static,
    ) -> Host {
        self.answers.domain_info = Some(Box::new(info));
        self
    }

    /// Answers `DeviceModelAlive` with `alive(domid)`; `None` means the host cannot tell.
    pub fn device_model(mut self, alive: impl FnMut(u32) -> Option<bool> + Send + 'static) -> Host {
        self.answers.device_model = Some(Box::new(alive));
        self
    }

    /// Programs started and not yet reaped.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The process ids of the programs started and not yet reaped.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().filter_map(|r| r.child.id()).collect()
    }

    /// Executes `op` for request `id` of `owner`: `Some(answer)` at once, or `None` for a
    /// program, answered by [`reap`](Host::reap) when it ends.
    pub(crate) fn execute(
        &mut self,
        owner: Owner,
        id: OpId,
        op: HostOp,
    ) -> Option<Result<Reply, OpError>> {
        Some(match op {
            HostOp::DomainInfo { domid } => self.answers.answer_domain_info(domid),
            HostOp::DeviceModelAlive { domid } => self.answers.answer_device_model(domid),
            HostOp::Spawn { argv, env } => match spawn(&argv, &env) {
                Ok(child) => {
                    self.running.push(Running { owner, id, child });
                    return None;
                }
                Err(why) => Ok(Reply::Exited(ProcessExit::FailedToStart(why))),
            },
            HostOp::Kill { spawn } => {
                if let Some(running) = self
                    .running
                    .iter_mut()
                    .find(|r| r.owner == owner && r.id == spawn)
                {
                    // Already exited but not reaped: the kill fails harmlessly, and the
                    // exit is answered by the next reap.
                    let _ = running.child.start_kill();
                }
                Ok(Reply::Done)
            }
            // The per-domain lock files are io-std's `Host` for now (the CD-ROM change runs
            // there); a machine that needs the lock fails here with a clear error.
            HostOp::Lock { .. } | HostOp::Unlock { .. } => Err(no_provider("per-domain lock")),
        })
    }

    /// Answers the `Spawn` of every program that has ended. `Ok(true)` when any did.
    pub(crate) fn reap<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
    ) -> Result<bool, HarnessError> {
        let mut moved = false;
        let mut index = 0;
        while index < self.running.len() {
            let exit = match self.running[index].child.try_wait() {
                Ok(Some(status)) => exit_of(status),
                Ok(None) => {
                    index += 1;
                    continue;
                }
                Err(err) => ProcessExit::FailedToStart(format!("wait: {err}")),
            };
            let running = self.running.remove(index);
            harness.reply(running.owner, running.id, Ok(Reply::Exited(exit)))?;
            moved = true;
        }
        Ok(moved)
    }

    /// Resolves when a running program has ended (to be reaped); never while none runs.
    pub(crate) fn exited(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            for running in &mut self.running {
                // `Child::wait` is cancel safe and keeps its wake-up registration in the
                // child, so a fresh wait per poll is as good as one kept.
                if pin!(running.child.wait()).poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for running in &mut self.running {
            let _ = running.child.start_kill();
        }
        // SIGKILL ends a process at once; reaping it here leaves no zombie behind the
        // host. A drop cannot await: it looks every millisecond, a bounded number of
        // times. Any still there are left to tokio's reaper (`kill_on_drop`).
        for _ in 0..REAP_ON_DROP_CHECKS {
            self.running
                .retain_mut(|running| matches!(running.child.try_wait(), Ok(None)));
            if self.running.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Starts a `Spawn`'s program (killed if the host drops it).
fn spawn(argv: &[String], env: &[(String, String)]) -> Result<Child, String> {
    let mut command = Command::from(script_command(argv, env)?);
    command
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| start_failure(command.as_std(), &e))
}
