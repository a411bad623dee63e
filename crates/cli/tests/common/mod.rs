//! Shared harness of the `xsio xenstored` peer tests: start the daemon on temp sockets, run
//! Xen's clients against it, skip loudly (or fail under CI) when a peer is missing.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// Whether the peer at `path` is installed. Missing: fails under CI, else prints SKIPPED.
pub fn peer(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "peer {path} is missing (install with `cargo xtask test`)"
    );
    eprintln!("SKIPPED: peer {path} is not installed; `cargo xtask test` installs it");
    false
}

/// A running `xsio xenstored` on sockets in its own temp directory; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    domains: Vec<u32>,
}

impl Daemon {
    /// Starts the daemon with a domain socket per entry of `domains` and `extra` arguments.
    pub fn start(domains: &[u32], extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Self::start_in(dir, state, domains, extra)
    }

    fn start_in(dir: tempfile::TempDir, state: PathBuf, domains: &[u32], extra: &[&str]) -> Daemon {
        let socket = dir.path().join("socket");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xsio"));
        cmd.arg("xenstored").arg("--socket").arg(&socket);
        for domid in domains {
            cmd.arg("--domain-socket").arg(format!(
                "{domid}={}",
                dir.path().join(format!("dom{domid}")).display()
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
        for _ in 0..400 {
            if paths
                .iter()
                .all(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("xsio xenstored did not come up within 10 s");
    }

    /// The socket of guest `domid`.
    pub fn domain_socket(&self, domid: u32) -> PathBuf {
        self.dir.path().join(format!("dom{domid}"))
    }

    /// Sends SIGTERM and waits (10 s at most) for a clean exit; returns the exit status and
    /// the temp directory (with the state file) for a restart.
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..400 {
            if let Some(status) = child.try_wait().unwrap() {
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
                return (status, dir);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        panic!("xsio xenstored did not stop within 10 s of SIGTERM");
    }

    /// Starts a new daemon on the state left in `dir` by [`Daemon::stop`].
    pub fn restart(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let state = dir.path().join("state");
        Self::start_in(dir, state, &[], extra)
    }

    /// Runs Xen client `tool` (e.g. `xenstore-read`) against `socket`.
    pub fn run_on(socket: &Path, tool: &str, args: &[&str]) -> Output {
        let mut child = Command::new(format!("/usr/bin/{tool}"))
            .args(args)
            .env("XENSTORED_PATH", socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {tool}: {e}"));
        wait_with_timeout(&mut child, Duration::from_secs(20), tool);
        child.wait_with_output().unwrap()
    }

    /// Runs `tool` as dom0 (on the control socket).
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        Self::run_on(&self.socket, tool, args)
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

    /// Starts `xenstore-watch -n count path` on `socket` and waits for its initial event line.
    pub fn watch_on(socket: &Path, path: &str, count: usize) -> Watcher {
        let mut child = Command::new("/usr/bin/xenstore-watch")
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `xenstore-watch`.
pub struct Watcher {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
    /// The initial event's line.
    pub first: String,
}

impl Watcher {
    /// The remaining event lines, once the watcher has printed its `-n` events and exited.
    pub fn finish(mut self) -> Vec<String> {
        wait_with_timeout(&mut self.child, Duration::from_secs(20), "xenstore-watch");
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

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration, what: &str) {
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited >= limit {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(step);
        waited += step;
    }
}
