//! Whether a real peer is installed, with the project's rule for a missing one.
//!
//! A peer test that finds its peer missing must FAIL when env `CI` is set (so a broken
//! install is never mistaken for a pass) and print a loud `SKIPPED` line otherwise (so a
//! developer without QEMU or Xen's tools can still run the rest).

use std::path::Path;
use std::process::{Command, Stdio};

/// Applies the missing-peer rule: returns `present`; when `what` is not present, panics if
/// env `CI` is set and prints a `SKIPPED` line to stderr otherwise.
///
/// ```
/// assert!(xsio_testkit::peer::require(true, "present-peer"));
/// if std::env::var_os("CI").is_none() {
///     // Prints "SKIPPED: peer absent-peer is not installed; ..." and reports it absent.
///     assert!(!xsio_testkit::peer::require(false, "absent-peer"));
/// }
/// ```
pub fn require(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "peer {what} is missing and CI is set (`cargo xtask test` installs it)"
        );
        eprintln!(
            "SKIPPED: peer {what} is not installed; this peer test did not run \
             (`cargo xtask test` installs it)"
        );
    }
    present
}

/// [`require`] for a peer installed at `path` (a file such as `/usr/bin/xenstore-read`).
pub fn path(path: &str) -> bool {
    require(Path::new(path).exists(), path)
}

/// [`require`] for a program that must run and exit successfully with `args`
/// (e.g. `qemu-system-x86_64 --version`).
pub fn program(program: &str, args: &[&str]) -> bool {
    require(runs(program, args), program)
}

/// Whether `program args` runs and exits successfully; no missing-peer rule (for benches,
/// which may go on without the peer).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`require`] for a peer known by what it prints: runs `program args` and returns its
/// stdout followed by its stderr, or `None` (under the missing-peer rule, named `what`) when
/// it does not run or its output fails `accept`.
pub fn output(
    what: &str,
    program: &str,
    args: &[&str],
    accept: impl FnOnce(&str) -> bool,
) -> Option<String> {
    let found = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        })
        .filter(|text| accept(text));
    require(found.is_some(), what);
    found
}
