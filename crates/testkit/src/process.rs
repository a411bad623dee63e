//! Child processes with a time limit: a hung peer fails its test instead of hanging it.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Waits for `child`, killing it (and failing) after `limit`; `what` names it in the panic.
///
/// ```
/// let mut child = std::process::Command::new("true").spawn().unwrap();
/// xsio_testkit::process::wait_with_timeout(&mut child, std::time::Duration::from_secs(20), "true");
/// assert!(child.wait().unwrap().success());
/// ```
pub fn wait_with_timeout(child: &mut Child, limit: Duration, what: &str) {
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited >= limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// Runs `command` with stdin closed and stdout/stderr captured, failing if it runs longer
/// than `limit`; `what` names it in the panic.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let mut echo = Command::new("echo");
/// echo.arg("hi");
/// let out = xsio_testkit::process::output_within(&mut echo, Duration::from_secs(20), "echo");
/// assert_eq!(out.stdout, b"hi\n");
/// ```
pub fn output_within(command: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    wait_with_timeout(&mut child, limit, what);
    child.wait_with_output().unwrap()
}

/// [`output_within`] for a command that must succeed: its stdout (UTF-8), or a panic with
/// its exit status and stderr.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let mut echo = Command::new("echo");
/// echo.arg("hi");
/// assert_eq!(xsio_testkit::process::stdout_within(&mut echo, Duration::from_secs(20), "echo"), "hi\n");
/// ```
pub fn stdout_within(command: &mut Command, limit: Duration, what: &str) -> String {
    let out = output_within(command, limit, what);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed no UTF-8: {e}"))
}

/// Checks that `out` is a success (its stderr in the message otherwise); returns its
/// stdout.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let mut echo = Command::new("echo");
/// echo.arg("done");
/// let out = xsio_testkit::process::output_within(&mut echo, Duration::from_secs(20), "echo");
/// assert_eq!(xsio_testkit::process::assert_succeeded(&out), "done\n");
/// ```
pub fn assert_succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that `out` is a failure with exit status 1 whose stderr contains `message`;
/// returns its stderr.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let mut ls = Command::new("sh");
/// ls.args(["-c", "echo 'no such thing' >&2; exit 1"]);
/// let out = xsio_testkit::process::output_within(&mut ls, Duration::from_secs(20), "sh");
/// xsio_testkit::process::assert_fails_with(&out, "no such thing");
/// ```
pub fn assert_fails_with(out: &Output, message: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(message), "not saying {message:?}: {stderr}");
    stderr
}

/// [`output_within`], with the command's exit status, stdout and stderr printed to this
/// process's stderr (shown when the test fails): for a command whose output a test
/// checks piece by piece.
pub fn logged_output_within(command: &mut Command, limit: Duration, what: &str) -> Output {
    let out = output_within(command, limit, what);
    eprintln!(
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child in a process group of its own (a shell script and the tools it starts), killed
/// as a group, and reaped, on drop.
#[derive(Debug)]
pub struct Group {
    child: Child,
}

impl Group {
    /// Spawns `command` as the leader of a new process group (stdin closed).
    pub fn spawn(command: &mut Command, what: &str) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Group { child }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}
