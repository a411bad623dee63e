//! The host operations of the toolstack machines ([`xsio_ops::HostOp`]) on a real host
//! without a hypervisor library: programs are real child processes; the guest's state
//! and the device model's liveness come from the caller (closures), who knows them from
//! its hypervisor binding, its QMP connection, or a command-line flag; the per-domain lock
//! on device changes is an exclusive `flock(2)` on a lock file per domain in the caller's
//! lock directory ([`Host::lock_dir`]), so it serialises processes as well as machines.
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
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;

use rustix::fs::{FlockOperation, flock};
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use xsio_core::OpId;
use xsio_harness::host_answers::no_provider;
use xsio_harness::{Actor, Harness, HarnessError, HostAnswers, Owner};
use xsio_io_unix::{exit_of, script_command, start_failure};
use xsio_ops::{DomainState, HostOp, OpError, OpErrorKind, ProcessExit, Reply};

/// The caller's answers to `DomainInfo` and `DeviceModelAlive`.
type Answers = HostAnswers<
    Box<dyn FnMut(u32) -> Result<DomainState, String>>,
    Box<dyn FnMut(u32) -> Option<bool>>,
>;

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
    answers: Answers,
    running: Vec<Running>,
    lock_dir: Option<PathBuf>,
    /// `Lock` requests: held (`held`) or still trying.
    locks: Vec<FileLock>,
    /// `Lock` requests withdrawn while waiting, to be answered `Cancelled`.
    cancelled: Vec<(Owner, OpId)>,
}

/// A `Lock` request: its lock file, open; `held` once `flock` succeeded (closing the file
/// releases it).
struct FileLock {
    owner: Owner,
    id: OpId,
    file: File,
    held: bool,
}

/// The lock file of domain `domid` in `dir`.
///
/// ```
/// let path = xsio_io_std::host::lock_file("/run/xen".as_ref(), 7);
/// assert_eq!(path.to_str(), Some("/run/xen/xsio-device-changes-7.lock"));
/// ```
pub fn lock_file(dir: &Path, domid: u32) -> PathBuf {
    dir.join(format!("xsio-device-changes-{domid}.lock"))
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("answers", &self.answers)
            .field("running", &self.running.len())
            .field("lock_dir", &self.lock_dir)
            .field("locks", &self.locks.len())
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
        self.answers.domain_info = Some(Box::new(info));
        self
    }

    /// Answers `DeviceModelAlive` with `alive(domid)`; `None` means the host cannot tell.
    pub fn device_model(mut self, alive: impl FnMut(u32) -> Option<bool> + 'static) -> Host {
        self.answers.device_model = Some(Box::new(alive));
        self
    }

    /// Takes the per-domain locks ([`HostOp::Lock`]) on lock files in `dir` (created when
    /// missing); without a lock directory they are answered [`OpErrorKind::Unsupported`].
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Host {
        self.lock_dir = Some(dir.into());
        self
    }

    /// How many locks are held for the machines.
    pub fn locks_held(&self) -> usize {
        self.locks.iter().filter(|l| l.held).count()
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
        Some(match op {
            HostOp::DomainInfo { domid } => self.answers.answer_domain_info(domid),
            HostOp::DeviceModelAlive { domid } => self.answers.answer_device_model(domid),
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
            HostOp::Lock { domid } => {
                let Some(dir) = &self.lock_dir else {
                    return Some(Err(no_provider("lock directory")));
                };
                let path = lock_file(dir, domid);
                let opened = std::fs::create_dir_all(dir).and_then(|()| {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                });
                match opened {
                    Ok(file) => {
                        let mut lock = FileLock {
                            owner,
                            id,
                            file,
                            held: false,
                        };
                        match lock.try_take() {
                            Ok(true) => {
                                self.locks.push(lock);
                                Ok(Reply::Done)
                            }
                            Ok(false) => {
                                self.locks.push(lock);
                                return None;
                            }
                            Err(err) => Err(OpError::new(
                                OpErrorKind::File,
                                format!("{}: {err}", path.display()),
                            )),
                        }
                    }
                    Err(err) => Err(OpError::new(
                        OpErrorKind::File,
                        format!("{}: {err}", path.display()),
                    )),
                }
            }
            HostOp::Unlock { lock } => {
                if let Some(at) = self
                    .locks
                    .iter()
                    .position(|l| l.owner == owner && l.id == lock)
                {
                    let lock = self.locks.remove(at);
                    if !lock.held {
                        self.cancelled.push((lock.owner, lock.id));
                    }
                    // Closing the file releases the lock.
                    drop(lock.file);
                }
                Ok(Reply::Done)
            }
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

    /// Answers the `Spawn` of every program that has ended, and the `Lock` requests now
    /// held or withdrawn. `Ok(true)` when any was.
    pub(crate) fn reap<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
    ) -> Result<bool, HarnessError> {
        let mut moved = false;
        for (owner, id) in self.cancelled.drain(..) {
            moved = true;
            let cancelled = OpError::new(OpErrorKind::Cancelled, "unlocked while waiting");
            harness.reply(owner, id, Err(cancelled))?;
        }
        let mut index = 0;
        while index < self.locks.len() {
            let lock = &mut self.locks[index];
            if lock.held {
                index += 1;
                continue;
            }
            match lock.try_take() {
                Ok(true) => {
                    moved = true;
                    harness.reply(lock.owner, lock.id, Ok(Reply::Done))?;
                    index += 1;
                }
                Ok(false) => index += 1,
                Err(err) => {
                    moved = true;
                    let lock = self.locks.remove(index);
                    let failed = OpError::new(OpErrorKind::File, format!("flock: {err}"));
                    harness.reply(lock.owner, lock.id, Err(failed))?;
                }
            }
        }
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

    /// Whether a child has no pidfd or a lock is awaited, so the driver must check on them
    /// by time.
    pub(crate) fn needs_polling(&self) -> bool {
        self.running.iter().any(|r| r.pidfd.is_none())
            || self.locks.iter().any(|l| !l.held)
            || !self.cancelled.is_empty()
    }
}

impl FileLock {
    /// One non-blocking try: `Ok(true)` once held.
    fn try_take(&mut self) -> std::io::Result<bool> {
        match flock(&self.file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                self.held = true;
                Ok(true)
            }
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => Ok(false),
            Err(err) => Err(err.into()),
        }
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

/// Starts a `Spawn`'s program.
fn spawn(argv: &[String], env: &[(String, String)]) -> Result<Child, String> {
    let mut command = script_command(argv, env)?;
    command.spawn().map_err(|e| start_failure(&command, &e))
}
