//! QEMU (`qemu-system-x86_64`) on QMP sockets in a fresh temp directory, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The QEMU binary the peer tests run (Debian's `qemu-system-x86`, 7.2 here).
pub const QEMU: &str = "qemu-system-x86_64";

/// How long [`QemuBuilder::spawn`] waits for the QMP sockets to appear: generous, for a
/// loaded 2-core machine.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// QEMU as a peer a test declares to [`crate::peer::Tests::test`]: `qemu-system-x86_64
/// --version` runs (found on `PATH`).
pub fn peer() -> crate::peer::Peer {
    crate::peer::Peer::runs(QEMU, QEMU, &["--version"])
}

/// The machine options of a paused PC guest (TCG, stopped before its first instruction).
pub const PAUSED_PC: &[&str] = &["-machine", "pc", "-accel", "tcg", "-S"];

/// Everything after the binary for a paused PC guest with no devices and no display, for a
/// QEMU that the code under test starts itself (it adds the QMP monitor): [`PAUSED_PC`],
/// `-nodefaults -display none`.
pub const BARE_PAUSED_PC: &[&str] = &[
    "-machine",
    "pc",
    "-accel",
    "tcg",
    "-S",
    "-nodefaults",
    "-display",
    "none",
];

/// How to start QEMU: machine options, how many QMP monitors, pretty or compact JSON.
#[derive(Debug, Clone)]
pub struct QemuBuilder {
    args: Vec<String>,
    monitors: usize,
    pretty: bool,
}

impl QemuBuilder {
    /// QEMU with `machine` options (e.g. `["-machine", "none"]`), `-nodefaults -display
    /// none`, and one compact QMP monitor.
    pub fn new(machine: &[&str]) -> QemuBuilder {
        QemuBuilder {
            args: machine.iter().map(|a| (*a).to_owned()).collect(),
            monitors: 1,
            pretty: false,
        }
    }

    /// Adds options after the machine ones (e.g. `["-device", "ide-cd,id=cd0,..."]`).
    pub fn args(mut self, args: &[&str]) -> QemuBuilder {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// `count` independent QMP monitors, each on its own socket (at least one).
    pub fn monitors(mut self, count: usize) -> QemuBuilder {
        self.monitors = count.max(1);
        self
    }

    /// The monitors send multi-line, indented JSON (`-mon ...,pretty=on`).
    pub fn pretty(mut self) -> QemuBuilder {
        self.pretty = true;
        self
    }

    /// Starts QEMU under the missing-peer rule ([`crate::peer::require`]): `None` (after a
    /// SKIPPED line, or a panic under CI) when QEMU is not installed.
    pub fn start(self) -> Option<Qemu> {
        if !crate::peer::program(QEMU, &["--version"]) {
            return None;
        }
        self.spawn()
    }

    /// Starts QEMU if it is installed, with no missing-peer rule (for benches, which go on
    /// without it); waits until every QMP socket exists (30 s at most).
    pub fn spawn(self) -> Option<Qemu> {
        if !crate::peer::runs(QEMU, &["--version"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let sockets: Vec<PathBuf> = (0..self.monitors)
            .map(|i| dir.path().join(format!("qmp{i}.sock")))
            .collect();
        let mut command = Command::new(QEMU);
        command
            .args(&self.args)
            .args(["-nodefaults", "-display", "none"]);
        for (i, socket) in sockets.iter().enumerate() {
            if self.pretty {
                command
                    .arg("-chardev")
                    .arg(format!(
                        "socket,id=mon{i},path={},server=on,wait=off",
                        socket.display()
                    ))
                    .arg("-mon")
                    .arg(format!("chardev=mon{i},mode=control,pretty=on"));
            } else {
                command
                    .arg("-qmp")
                    .arg(format!("unix:{},server=on,wait=off", socket.display()));
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {QEMU}: {e}"));
        #[allow(clippy::disallowed_methods)] // a test waiting for QEMU to listen
        let deadline = xsio_core::deadline(Instant::now(), LISTEN_WAIT);
        #[allow(clippy::disallowed_methods)]
        while !sockets.iter().all(|s| s.exists()) && deadline.is_none_or(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Qemu {
            child,
            sockets,
            dir,
        })
    }
}

/// A running QEMU with QMP sockets in its own temp directory; killed when dropped.
///
/// ```
/// use xsio_testkit::qemu::Qemu;
///
/// // Without QEMU this prints SKIPPED (or fails under CI) and the example does nothing.
/// if let Some(qemu) = Qemu::bare() {
///     let mut stream = std::os::unix::net::UnixStream::connect(qemu.socket()).unwrap();
///     let mut greeting = String::new();
///     std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut stream), &mut greeting)
///         .unwrap();
///     assert!(greeting.starts_with(r#"{"QMP""#), "{greeting}");
/// }
/// ```
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    sockets: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Qemu {
    /// A builder for QEMU with `machine` options.
    pub fn builder(machine: &[&str]) -> QemuBuilder {
        QemuBuilder::new(machine)
    }

    /// QEMU with `machine` options and one compact QMP monitor, under the missing-peer rule.
    pub fn start(machine: &[&str]) -> Option<Qemu> {
        QemuBuilder::new(machine).start()
    }

    /// A plain QMP server with no guest (`-machine none`), under the missing-peer rule.
    pub fn bare() -> Option<Qemu> {
        Qemu::start(&["-machine", "none"])
    }

    /// A paused PC guest ([`PAUSED_PC`]) with an empty IDE CD-ROM `cd0`, under the
    /// missing-peer rule.
    pub fn paused_pc() -> Option<Qemu> {
        QemuBuilder::new(PAUSED_PC)
            .args(&["-device", "ide-cd,id=cd0,bus=ide.1,unit=0"])
            .start()
    }

    /// The (first) QMP socket.
    pub fn socket(&self) -> &Path {
        &self.sockets[0]
    }

    /// Every QMP socket, one per monitor.
    pub fn sockets(&self) -> &[PathBuf] {
        &self.sockets
    }

    /// The temp directory holding the sockets; a place for images the guest should see.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends `signal` to QEMU (e.g. `SIGSTOP` to make it unresponsive, `SIGKILL`).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
