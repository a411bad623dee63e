//! What the xenstore benches share: `xsio xenstored`'s real poll loop
//! (`xsio_io_std::xenstored::run`) on a thread of this process, on a socket in a temp dir.
#![allow(unreachable_pub)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use xsio_io_std::xenstore::XsConn;
use xsio_io_std::xenstored::{DaemonConfig, run};

/// The daemon on its thread, holding `/bench/key` = `value`; stopped and joined on drop.
pub struct Daemon {
    _dir: tempfile::TempDir,
    /// Its control socket.
    pub socket: PathBuf,
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts the daemon, waits until it accepts, and writes `/bench/key` = `value`.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let (stop_rx, stop) = UnixStream::pair().unwrap();
        let config = DaemonConfig::new(&socket);
        let thread = std::thread::spawn(move || run(config, stop_rx).unwrap());
        drop(connect(&socket));
        let mut xs = XsConn::connect(&socket).unwrap();
        xs.write("/bench/key", "value").unwrap();
        Daemon {
            _dir: dir,
            socket,
            stop,
            thread: Some(thread),
        }
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

/// Connects to `socket`, retrying for up to 5 s while its server starts.
pub fn connect(socket: &Path) -> UnixStream {
    for _ in 0..500 {
        if let Ok(stream) = UnixStream::connect(socket) {
            return stream;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("daemon did not start");
}
