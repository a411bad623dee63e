//! The daemon loop (`xsio_io_std::xenstored::run`) in a thread of the test, on a socket in
//! a temp dir with its `--state` file beside it, stopped through its stop socket.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use xsio_io_std::xenstored::{DaemonConfig, run};

/// A running daemon loop; stopped (and joined) on drop.
pub struct Daemon {
    dir: tempfile::TempDir,
    stop: UnixStream,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Daemon {
    /// Starts the loop and waits until it accepts connections.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DaemonConfig::new(dir.path().join("socket"));
        config.state = Some(dir.path().join("state"));
        let (stop_rx, stop) = UnixStream::pair().unwrap();
        let thread = std::thread::spawn(move || run(config, stop_rx));
        let daemon = Daemon {
            dir,
            stop,
            thread: Some(thread),
        };
        daemon.connect();
        daemon
    }

    /// The temp dir holding the socket and the state file, free for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// A raw connection (reads time out after 10 s), retried while the daemon starts
    /// (5 s at most).
    pub fn connect(&self) -> UnixStream {
        for _ in 0..500 {
            if let Ok(stream) = UnixStream::connect(self.socket()) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                return stream;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("daemon did not start");
    }

    /// Stops the daemon through its stop socket; returns its result and the state file.
    pub fn stop(mut self) -> (std::io::Result<()>, Vec<u8>) {
        self.stop.write_all(b"x").unwrap();
        let result = self.thread.take().unwrap().join().unwrap();
        let state = std::fs::read(self.dir.path().join("state")).unwrap_or_default();
        (result, state)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.write_all(b"x");
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
