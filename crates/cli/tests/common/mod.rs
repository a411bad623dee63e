//! Shared harness of the `xsio xenstored` peer tests: the launcher, the missing-peer rule
//! and the xenstore-utils runners live in `xsio-testkit`; this binds them to this crate's
//! `xsio` binary (whose path only its integration tests know).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::ops::Deref;
use std::path::Path;
use std::process::{ExitStatus, Output};

pub use xsio_testkit::process::{
    assert_fails_with, assert_succeeded, logged_output_within, output_within, stdout_within,
    wait_with_timeout,
};
use xsio_testkit::xenstored;
pub use xsio_testkit::xenstored::Watcher;

/// The `xsio` binary under test.
fn xsio() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xsio"))
}

/// A running `xsio xenstored` ([`xenstored::Daemon`]) of this crate's binary.
pub struct Daemon(xenstored::Daemon);

impl Daemon {
    /// Starts the daemon with a domain socket per entry of `domains` and `extra` arguments.
    pub fn start(domains: &[u32], extra: &[&str]) -> Daemon {
        Daemon(xenstored::Daemon::start(xsio(), domains, extra))
    }

    /// Starts a new daemon on the state left in `dir` by [`Daemon::stop`].
    pub fn restart(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Daemon(xenstored::Daemon::restart(xsio(), dir, extra))
    }

    /// SIGTERM, then the exit status and the temp directory with the state file.
    pub fn stop(self) -> (ExitStatus, tempfile::TempDir) {
        self.0.stop()
    }

    /// Runs Xen client `tool` (e.g. `xenstore-read`) against `socket`.
    pub fn run_on(socket: &Path, tool: &str, args: &[&str]) -> Output {
        xenstored::run_on(socket, tool, args)
    }

    /// Starts `xenstore-watch -n count path` on `socket` and waits for its initial event line.
    pub fn watch_on(socket: &Path, path: &str, count: usize) -> Watcher {
        xenstored::watch_on(socket, path, count)
    }
}

impl Deref for Daemon {
    type Target = xenstored::Daemon;

    fn deref(&self) -> &xenstored::Daemon {
        &self.0
    }
}
