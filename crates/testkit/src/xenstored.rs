//! `xsio xenstored` on sockets in its own temp directory, and Xen's xenstore-utils run
//! against it.
//!
//! The daemon binary is a parameter: only the `xsio-cli` integration tests know its path
//! (`env!("CARGO_BIN_EXE_xsio")`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use crate::peer::Peer;
use crate::process::{output_within, wait_with_timeout};

/// The tools of Debian's `xenstore-utils` that the peer tests run.
const XENSTORE_UTILS: &[&str] = &[
    "xenstore-read",
    "xenstore-write",
    "xenstore-ls",
    "xenstore-list",
    "xenstore-exists",
    "xenstore-rm",
    "xenstore-chmod",
    "xenstore-watch",
    "xenstore-control",
];

/// Xen's `xenstore-utils` as a peer a test declares to [`crate::peer::Tests::test`]: every
/// tool the tests run is on `PATH` (where [`run_on`] and [`watch_on`] find them).
pub fn xenstore_utils() -> Peer {
    Peer::new(
        "xenstore-utils",
        XENSTORE_UTILS
            .iter()
            .all(|tool| Peer::on_path(tool).is_present()),
    )
}

/// How long the daemon gets to come up, and to exit after SIGTERM.
const DAEMON_WAIT: Duration = Duration::from_secs(10);
/// How long one run of a xenstore-utils tool may take.
const TOOL_WAIT: Duration = Duration::from_secs(20);

/// A running `xsio xenstored` on sockets in its own temp directory; killed on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// The temp directory with the sockets and the state file.
    pub dir: tempfile::TempDir,
    /// The control (dom0) socket.
    pub socket: PathBuf,
    /// Where `--state` would keep the tree (inside `dir`).
    pub state: PathBuf,
    domains: Vec<u32>,
}

impl Daemon {
    /// Starts `xsio` (the binary's path) as `xsio xenstored` with a domain socket per entry
    /// of `domains` and `extra` arguments; waits (10 s at most) until every socket accepts.
    pub fn start(xsio: &Path, domains: &[u32], extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(xsio, dir, domains, extra)
    }

    /// Starts a new daemon on the state left in `dir` by [`Daemon::stop`].
    pub fn restart(xsio: &Path, dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Self::start_in(xsio, dir, &[], extra)
    }

    fn start_in(xsio: &Path, dir: tempfile::TempDir, domains: &[u32], extra: &[&str]) -> Daemon {
        let socket = dir.path().join("socket");
        let state = dir.path().join("state");
        let mut cmd = Command::new(xsio);
        cmd.arg("xenstored").arg("--socket").arg(&socket);
        for domid in domains {
            cmd.arg("--domain-socket").arg(format!(
                "{domid}={}",
                domain_socket(dir.path(), *domid).display()
            ));
        }
        cmd.args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = cmd.spawn().expect("spawn xsio xenstored");
        let daemon = Daemon {
            child: Some(child),
            dir,
            socket,
            state,
            domains: domains.to_vec(),
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        let mut paths = vec![self.socket.clone()];
        paths.extend(self.domains.iter().map(|d| self.domain_socket(*d)));
        let step = Duration::from_millis(25);
        let mut waited = Duration::ZERO;
        while waited < DAEMON_WAIT {
            if paths
                .iter()
                .all(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
            {
                return;
            }
            std::thread::sleep(step);
            waited += step;
        }
        panic!("xsio xenstored did not come up within {DAEMON_WAIT:?}");
    }

    /// The daemon's process id (`None` once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The socket of guest `domid`.
    pub fn domain_socket(&self, domid: u32) -> PathBuf {
        domain_socket(self.dir.path(), domid)
    }

    /// Sends SIGTERM and waits (10 s at most) for a clean exit; returns the exit status and
    /// the temp directory (with the state file) for [`Daemon::restart`].
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir) {
        let mut child = self.child.take().unwrap();
        kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
        let step = Duration::from_millis(25);
        let mut waited = Duration::ZERO;
        while waited < DAEMON_WAIT {
            if let Some(status) = child.try_wait().unwrap() {
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
                return (status, dir);
            }
            std::thread::sleep(step);
            waited += step;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("xsio xenstored did not stop within {DAEMON_WAIT:?} of SIGTERM");
    }

    /// Runs `tool` as dom0 (on the control socket); see [`run_on`].
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        run_on(&self.socket, tool, args)
    }

    /// Runs `tool` as dom0 and returns its stdout; panics if it fails.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn domain_socket(dir: &Path, domid: u32) -> PathBuf {
    dir.join(format!("dom{domid}"))
}

/// Runs Xen client `tool` (e.g. `xenstore-read`, found on `PATH`) against `socket`
/// (through `XENSTORED_PATH`), failing if it takes more than 20 s.
pub fn run_on(socket: &Path, tool: &str, args: &[&str]) -> Output {
    output_within(
        Command::new(tool).args(args).env("XENSTORED_PATH", socket),
        TOOL_WAIT,
        tool,
    )
}

/// Starts `xenstore-watch -n count path` on `socket` and waits for its initial event line.
pub fn watch_on(socket: &Path, path: &str, count: usize) -> Watcher {
    let mut child = Command::new("xenstore-watch")
        .args(["-n", &count.to_string(), path])
        .env("XENSTORED_PATH", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    Watcher {
        child,
        lines,
        first: first.trim_end().to_owned(),
    }
}

/// A running `xenstore-watch`; killed on drop.
#[derive(Debug)]
pub struct Watcher {
    child: Child,
    lines: BufReader<ChildStdout>,
    /// The initial event's line.
    pub first: String,
}

impl Watcher {
    /// The remaining event lines, once the watcher has printed its `-n` events and exited
    /// (20 s at most).
    pub fn finish(mut self) -> Vec<String> {
        wait_with_timeout(&mut self.child, TOOL_WAIT, "xenstore-watch");
        let mut rest = Vec::new();
        let mut line = String::new();
        while self.lines.read_line(&mut line).unwrap() > 0 {
            rest.push(line.trim_end().to_owned());
            line.clear();
        }
        rest
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
