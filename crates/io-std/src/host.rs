//! The host operations of the toolstack machines ([`xsio_ops::HostOp`]) on a real host
//! without a hypervisor library: programs are real child processes; the guest's state
//! and the device model's liveness come from the caller (closures), who knows them from
//! its hypervisor binding, its QMP connection, or a command-line flag.
//!
//! ```no_run
//! use xsio_io_std::host::Host;
//! use xsio_io_std::l2::XsLinks;
//! use xsio_ops::DomainState;
//!
//! let host = Host::new()
//!     .domain_info(|_domid| Ok(DomainState::Running))
//!     .device_model(|_domid| Some(true));
//! let links = XsLinks::default().with_host(host);
//! # let _ = links;
//! ```

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use xsio_core::OpId;
use xsio_harness::{Actor, Harness, HarnessError, Owner};
use xsio_ops::{DomainState, HostOp, OpError, OpErrorKind, ProcessExit, Reply};

type DomainInfo = Box<dyn FnMut(u32) -> Result<DomainState, String>>;
type DeviceModel = Box<dyn FnMut(u32) -> Option<bool>>;

/// A program started for a machine's `Spawn`, answered when it ends.
struct Running {
    owner: Owner,
    id: OpId,
    child: Child,
    /// Readable once the child has exited (Linux 5.3 and later); without it the driver
    /// checks every few milliseconds.
    pidfd: Option<OwnedFd>,
}

/// Executes host operations: `DomainInfo` and `DeviceModelAlive` through the caller's
/// closures (without one: [`OpErrorKind::Unsupported`]), `Spawn` and `Kill` with real
/// child processes (stdin `/dev/null`, stdout to this process's stderr, as libxl runs
/// hotplug scripts). Children still running when the host is dropped are killed and
/// reaped.
#[derive(Default)]
pub struct Host {
    domain_info: Option<DomainInfo>,
    device_model: Option<DeviceModel>,
    running: Vec<Running>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("domain_info", &self.domain_info.is_some())
            .field("device_model", &self.device_model.is_some())
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
        info: impl FnMut(u32) -> Result<DomainState, String> + 'static,
    ) -> Host {
        self.domain_info = Some(Box::new(info));
        self
    }

    /// Answers `DeviceModelAlive` with `alive(domid)`; `None` means the host cannot tell.
    pub fn device_model(mut self, alive: impl FnMut(u32) -> Option<bool> + 'static) -> Host {
        self.device_model = Some(Box::new(alive));
        self
    }

    /// Programs started and not yet reaped.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Executes `op` for request `id` of `owner`: `Some(answer)` at once, or `None` for a
    /// program, answered by [`reap`](Host::reap) when it ends.
    pub(crate) fn execute(
        &mut self,
        owner: Owner,
        id: OpId,
        op: HostOp,
    ) -> Option<Result<Reply, OpError>> {
        let unsupported = |what: &str| {
            Err(OpError::new(
                OpErrorKind::Unsupported,
                format!("no {what} provider"),
            ))
        };
        Some(match op {
            HostOp::DomainInfo { domid } => match &mut self.domain_info {
                Some(info) => info(domid)
                    .map(Reply::Domain)
                    .map_err(|e| OpError::new(OpErrorKind::Other, e)),
                None => unsupported("domain info"),
            },
            HostOp::DeviceModelAlive { domid } => match &mut self.device_model {
                Some(alive) => match alive(domid) {
                    Some(alive) => Ok(Reply::DeviceModel { alive }),
                    None => unsupported("device-model liveness"),
                },
                None => unsupported("device-model liveness"),
            },
            HostOp::Spawn { argv, env } => match spawn(&argv, &env) {
                Ok(child) => {
                    let pidfd = pidfd_open(Pid::from_child(&child), PidfdFlags::empty()).ok();
                    tracing::debug!(?argv, pid = child.id(), "spawned");
                    self.running.push(Running {
                        owner,
                        id,
                        child,
                        pidfd,
                    });
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
                    // Already exited but not reaped: the kill fails harmlessly.
                    let _ = running.child.kill();
                }
                Ok(Reply::Done)
            }
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
            let status = match self.running[index].child.try_wait() {
                Ok(Some(status)) => Some(exit_of(status)),
                Ok(None) => None,
                Err(err) => Some(ProcessExit::FailedToStart(format!("wait: {err}"))),
            };
            let Some(exit) = status else {
                index += 1;
                continue;
            };
            let running = self.running.remove(index);
            tracing::debug!(pid = running.child.id(), %exit, "reaped");
            harness.reply(running.owner, running.id, Ok(Reply::Exited(exit)))?;
            moved = true;
        }
        Ok(moved)
    }

    /// The descriptors that become readable when a child exits.
    pub(crate) fn pidfds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.running.iter().filter_map(|r| r.pidfd.as_ref())
    }

    /// Whether a child has no pidfd, so the driver must check on it by time.
    pub(crate) fn needs_polling(&self) -> bool {
        self.running.iter().any(|r| r.pidfd.is_none())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for running in &mut self.running {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

fn spawn(argv: &[String], env: &[(String, String)]) -> Result<Child, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("stdout: {e}"))?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .spawn()
        .map_err(|e| format!("{program}: {e}"))
}

/// How a reaped child ended.
pub(crate) fn exit_of(status: ExitStatus) -> ProcessExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessExit::Exited(code),
        (None, Some(signal)) => ProcessExit::Signalled(signal),
        (None, None) => ProcessExit::FailedToStart(format!("unknown end: {status}")),
    }
}
