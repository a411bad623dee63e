//! QEMU's Xen PV backend (`qemu-system-xen`: `-machine xenpv`, `xen-disk`) under the
//! shim, talking to any xenstored through `XENSTORED_PATH`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use super::World;

/// Debian's `qemu-system-xen` binary (QEMU 7.2 with Xen 4.17's libraries).
pub const XEN_QEMU: &str = "/usr/libexec/xen-qemu-system-i386";

/// How long QEMU gets to open its QMP socket.
const START_WAIT: Duration = Duration::from_secs(30);

/// How to start QEMU as the device model (backend) of one guest domain.
#[derive(Clone, Debug)]
pub struct XenQemuBuilder {
    world: World,
    xenstore: PathBuf,
    domid: u32,
    args: Vec<String>,
}

impl XenQemuBuilder {
    /// Exports `image` (a raw file) to the guest as `xen-disk` `vdev` (e.g. `xvda`):
    /// QEMU then creates the device's frontend and backend areas itself.
    pub fn disk(mut self, image: &Path, vdev: &str) -> XenQemuBuilder {
        let id = format!("drive-{vdev}");
        self.args.extend([
            "-drive".to_owned(),
            format!("if=none,file={},id={id},format=raw", image.display()),
            "-device".to_owned(),
            format!("xen-disk,vdev={vdev},drive={id}"),
        ]);
        self
    }

    /// More QEMU arguments.
    pub fn args(mut self, args: &[&str]) -> XenQemuBuilder {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts QEMU under the missing-peer rule (`None` after SKIPPED, or a panic under CI,
    /// when `qemu-system-xen` is not installed); waits until its QMP socket exists.
    pub fn start(self) -> Option<XenQemu> {
        if !crate::peer::path(XEN_QEMU) {
            return None;
        }
        let qmp = self.world.path(&format!("qmp-dom{}.sock", self.domid));
        let log_path = self.world.path(&format!("qemu-dom{}.log", self.domid));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(XEN_QEMU);
        self.world.preload(&mut command);
        command
            .args(["-machine", "xenpv", "-xen-domid"])
            .arg(self.domid.to_string())
            .args(["-xen-attach", "-nographic", "-display", "none"])
            .args(["-monitor", "none", "-serial", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args(&self.args)
            .env("XENSTORED_PATH", &self.xenstore)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {XEN_QEMU}: {e}"));
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while !qmp.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{XEN_QEMU} exited ({status}) before listening: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                waited < START_WAIT,
                "{XEN_QEMU} did not listen within {START_WAIT:?}"
            );
            std::thread::sleep(step);
            waited += step;
        }
        Some(XenQemu {
            child,
            qmp,
            log: log_path,
            world: self.world,
        })
    }
}

/// A running QEMU Xen backend (killed on drop).
#[derive(Debug)]
pub struct XenQemu {
    child: Child,
    qmp: PathBuf,
    log: PathBuf,
    world: World,
}

impl XenQemu {
    /// A builder for QEMU serving guest `domid` in `world`, with dom0's xenstore at
    /// `xenstore` (any daemon's socket: ours, or Xen's).
    pub fn builder(world: &World, xenstore: &Path, domid: u32) -> XenQemuBuilder {
        XenQemuBuilder {
            world: world.clone(),
            xenstore: xenstore.to_owned(),
            domid,
            args: Vec::new(),
        }
    }

    /// The QMP socket.
    pub fn qmp_socket(&self) -> &Path {
        &self.qmp
    }

    /// The world QEMU runs in.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// What QEMU printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to QEMU.
    pub fn signal(&self, signal: Signal) {
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), signal).unwrap();
    }

    /// SIGTERM: QEMU's clean exit (the same as QMP `quit`: it deletes its devices'
    /// directories).
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// SIGKILL: QEMU ends without cleaning anything.
    pub fn kill(&self) {
        self.signal(Signal::KILL);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (`limit` at most, then panics) for QEMU to exit; returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        crate::process::wait_with_timeout(&mut self.child, limit, XEN_QEMU);
        self.child.wait().unwrap()
    }
}

impl Drop for XenQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
