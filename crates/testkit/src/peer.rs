//! The real peers a test needs, and the project's rule for a missing one.
//!
//! A peer test that finds its peer missing must FAIL when env `CI` is set (so a broken
//! install is never mistaken for a pass) and be SKIPPED, visibly, otherwise (so a developer
//! without QEMU or Xen's tools can still run the rest).
//!
//! "Visibly" means in the test runner's summary, not on stderr (nextest hides the stderr of
//! passing tests). So every `peer_*` test binary is a `harness = false` target whose `main`
//! lists its tests with [`Tests`], each with the [`Peer`]s it needs. The peers are checked
//! when the binary starts, which is also when a runner lists its tests: a test whose peer is
//! missing is listed as *ignored* when `CI` is unset, and nextest counts it in the summary
//! (`N tests run: N passed, M skipped`); under `CI` it is listed as a normal test that fails
//! with the name of the missing peer.
//!
//! ```no_run
//! // tests/peer_example.rs, with `[[test]] name = "peer_example" harness = false`.
//! use xsio_testkit::peer::{Peer, Tests};
//!
//! fn reads_through_xenstore_read() { /* ... */ }
//! fn lists_through_xenstore_read() { /* ... */ }
//! fn needs_nothing_but_our_daemon() { /* ... */ }
//!
//! fn main() -> std::process::ExitCode {
//!     let read = Peer::on_path("xenstore-read");
//!     Tests::new()
//!         // Tests named after their functions, all needing the same peers.
//!         .each(
//!             &[&read],
//!             xsio_testkit::tests![reads_through_xenstore_read, lists_through_xenstore_read],
//!         )
//!         .test("needs_nothing_but_our_daemon", &[], needs_nothing_but_our_daemon)
//!         .run()
//! }
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};

/// One real peer, checked once, when it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    name: String,
    present: bool,
}

impl Peer {
    /// A peer named `name` whose presence the caller decided.
    ///
    /// ```
    /// use xsio_testkit::peer::Peer;
    ///
    /// assert!(Peer::new("always here", true).is_present());
    /// ```
    pub fn new(name: impl Into<String>, present: bool) -> Peer {
        Peer {
            name: name.into(),
            present,
        }
    }

    /// A file installed at `path` (a Python module, a tool outside `PATH`).
    ///
    /// ```
    /// use xsio_testkit::peer::Peer;
    ///
    /// assert!(!Peer::file("/nonexistent/peer").is_present());
    /// ```
    pub fn file(path: &str) -> Peer {
        Peer::new(path, Path::new(path).exists())
    }

    /// A program found on `PATH` (an executable file in one of its directories): the way
    /// the tests run Xen's tools, so a `PATH` without them hides them.
    ///
    /// ```
    /// use xsio_testkit::peer::Peer;
    ///
    /// assert!(Peer::on_path("sh").is_present());
    /// assert!(!Peer::on_path("no-such-program-xsio").is_present());
    /// ```
    pub fn on_path(program: &str) -> Peer {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(program))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        });
        Peer::new(program, found)
    }

    /// A program that runs with `args` and exits successfully (`qemu-system-x86_64
    /// --version`, `python3 -c 'import pyxs'`); `name` names it in reports.
    ///
    /// ```
    /// use xsio_testkit::peer::Peer;
    ///
    /// assert!(Peer::runs("true", "true", &[]).is_present());
    /// assert!(!Peer::runs("false", "false", &[]).is_present());
    /// ```
    pub fn runs(name: &str, program: &str, args: &[&str]) -> Peer {
        Peer::new(name, runs(program, args))
    }

    /// Whether the peer was found.
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// The peer's name as reports show it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether env `CI` is set: missing peers then fail instead of being skipped.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The tests of one `peer_*` binary, each with the peers it needs, run under the
/// missing-peer rule (see the [module docs](self)).
#[must_use = "the tests only run through `Tests::run`"]
pub struct Tests {
    trials: Vec<Trial>,
    ci: bool,
}

impl Default for Tests {
    fn default() -> Tests {
        Tests::new()
    }
}

impl Tests {
    /// No tests yet; the rule follows env `CI`.
    pub fn new() -> Tests {
        Tests {
            trials: Vec::new(),
            ci: in_ci(),
        }
    }

    /// Adds test `name` running `body` (a panic fails it) when every one of `needs` is
    /// present. Otherwise `body` never runs: the test fails under `CI`, and is listed as
    /// ignored (so reported as skipped) without it.
    pub fn test(
        mut self,
        name: &str,
        needs: &[&Peer],
        body: impl FnOnce() + Send + 'static,
    ) -> Tests {
        let missing: Vec<String> = needs
            .iter()
            .filter(|p| !p.is_present())
            .map(|p| p.name().to_owned())
            .collect();
        let trial = if missing.is_empty() {
            Trial::test(name, move || {
                body();
                Ok(())
            })
        } else {
            let missing = missing.join(", ");
            if self.ci {
                Trial::test(name, move || {
                    Err(Failed::from(format!(
                        "peer {missing} is missing and CI is set (`cargo xtask test` installs it)"
                    )))
                })
            } else {
                // Run anyway only when asked for ignored tests: then say why nothing ran.
                Trial::test(name, move || {
                    eprintln!(
                        "SKIPPED: peer {missing} is not installed; this peer test did not run \
                         (`cargo xtask test` installs it)"
                    );
                    Ok(())
                })
                .with_ignored_flag(true)
            }
        };
        self.trials.push(trial);
        self
    }

    /// Adds each of `tests` (a name and its body, as [`tests!`](crate::tests) lists them)
    /// with [`Tests::test`], every one needing the same `needs`.
    ///
    /// ```
    /// use xsio_testkit::peer::{Peer, Tests};
    ///
    /// fn writes() {}
    /// fn reads() {}
    ///
    /// let utils = Peer::new("xenstore-utils", true);
    /// let _ = Tests::new().each(&[&utils], xsio_testkit::tests![writes, reads]);
    /// ```
    pub fn each(self, needs: &[&Peer], tests: &[(&'static str, fn())]) -> Tests {
        tests
            .iter()
            .fold(self, |all, &(name, body)| all.test(name, needs, body))
    }

    /// Runs (or lists) the tests as the command-line arguments of the binary say, in the
    /// libtest interface that `cargo test` and nextest speak.
    pub fn run(self) -> ExitCode {
        libtest_mimic::run(&Arguments::from_args(), self.trials).exit_code()
    }
}

/// The test functions named, each as `(its name, its body)` for [`Tests::each`]: a test is
/// listed under its function's name, which is therefore written once. It is a constant
/// expression, so a binary can keep its list in a `const` next to the tests.
///
/// `tests![a, b]` lists functions `fn a()` and `fn b()`; `tests![block_on => a, b]` lists
/// async functions, each run as `block_on(a())` (`block_on` builds the test's runtime).
///
/// ```
/// fn plain() {}
/// async fn later() {}
/// fn block_on(test: impl std::future::Future<Output = ()>) {
///     drop(test); // a real one runs it to completion on a runtime
/// }
///
/// const TESTS: &[(&str, fn())] = xsio_testkit::tests![plain];
/// assert_eq!(TESTS[0].0, "plain");
/// let [(name, _)] = xsio_testkit::tests![block_on => later];
/// assert_eq!(*name, "later");
/// ```
#[macro_export]
macro_rules! tests {
    ($($test:ident),+ $(,)?) => {
        &[$((stringify!($test), $test as fn())),+]
    };
    ($runner:path => $($test:ident),+ $(,)?) => {
        &[$((stringify!($test), (|| $runner($test())) as fn())),+]
    };
}

/// Applies the missing-peer rule inside a test, for a peer that only some runs need:
/// returns `present`; when `what` is not present, panics if env `CI` is set and prints a
/// `SKIPPED` line to stderr otherwise. Prefer declaring the peer to [`Tests::test`], which
/// makes the skip show in the summary.
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
            !in_ci(),
            "peer {what} is missing and CI is set (`cargo xtask test` installs it)"
        );
        eprintln!(
            "SKIPPED: peer {what} is not installed; this peer test did not run \
             (`cargo xtask test` installs it)"
        );
    }
    present
}

/// [`require`] for a peer installed at `path` (a file such as `/usr/sbin/xenstored`): for
/// launchers, a second line behind the peers a test declares.
pub fn path(path: &str) -> bool {
    require(Path::new(path).exists(), path)
}

/// [`require`] for a program that must run and exit successfully with `args`
/// (e.g. `cc --version`): for launchers, a second line behind the peers a test declares.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Three tests (peer present, peer missing, no peer) under the rule with `ci`, and a
    /// counter of bodies that ran.
    fn three(ci: bool) -> (Tests, Arc<AtomicUsize>) {
        let ran = Arc::new(AtomicUsize::new(0));
        let here = Peer::new("here", true);
        let gone = Peer::new("gone", false);
        let body = |ran: &Arc<AtomicUsize>| {
            let ran = Arc::clone(ran);
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let tests = Tests {
            trials: Vec::new(),
            ci,
        }
        .test("with_peer", &[&here], body(&ran))
        .test("without_peer", &[&here, &gone], body(&ran))
        .test("no_peer_needed", &[], body(&ran));
        (tests, ran)
    }

    fn run_all(tests: Tests, include_ignored: bool) -> libtest_mimic::Conclusion {
        let args = Arguments {
            include_ignored,
            test_threads: Some(1),
            quiet: true,
            ..Arguments::default()
        };
        libtest_mimic::run(&args, tests.trials)
    }

    #[test]
    fn outside_ci_a_missing_peer_is_listed_as_ignored_and_its_body_never_runs() {
        let (tests, ran) = three(false);
        let ignored: Vec<bool> = tests.trials.iter().map(Trial::has_ignored_flag).collect();
        assert_eq!(ignored, [false, true, false]);
        let done = run_all(tests, false);
        assert_eq!(
            (done.num_passed, done.num_ignored, done.num_failed),
            (2, 1, 0)
        );
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        // Asked to run ignored tests too, it still does not run the body without its peer.
        let (tests, ran) = three(false);
        let done = run_all(tests, true);
        assert_eq!((done.num_passed, done.num_failed), (3, 0));
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn each_lists_every_named_function_under_its_name_with_the_same_needs() {
        fn first() {}
        fn second() {}
        let gone = Peer::new("gone", false);
        let tests = Tests {
            trials: Vec::new(),
            ci: false,
        }
        .each(&[&gone], crate::tests![first, second])
        .each(&[], crate::tests![first]);
        let listed: Vec<(&str, bool)> = tests
            .trials
            .iter()
            .map(|t| (t.name(), t.has_ignored_flag()))
            .collect();
        assert_eq!(
            listed,
            [("first", true), ("second", true), ("first", false)]
        );
    }

    #[test]
    fn under_ci_a_missing_peer_fails_its_test() {
        let (tests, ran) = three(true);
        assert!(!tests.trials.iter().any(Trial::has_ignored_flag));
        let done = run_all(tests, false);
        assert_eq!(
            (done.num_passed, done.num_ignored, done.num_failed),
            (2, 0, 1)
        );
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }
}
