//! What the QMP and device-model peer tests of both drivers (`peer_qemu`, `peer_dm` and
//! their tokio twins) do around a QEMU beyond starting it: the QEMU the code under test
//! launches itself, a connection made while QEMU may still be starting, a CD image and the
//! command that puts an fd set in the CD drive, the transcripts they record, and this
//! process's descriptors counted (nothing of ours may stay open after a command took it).
//!
//! ```
//! use xsio_testkit::qmp_peer;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let image = qmp_peer::cd_image(dir.path(), 4096);
//! assert_eq!(std::fs::metadata(&image).unwrap().len(), 4096);
//! assert_eq!(qmp_peer::fds_on(&image), 0);
//! let before = qmp_peer::open_fds();
//! let file = std::fs::File::open(&image).unwrap();
//! assert_eq!((qmp_peer::fds_on(&image), qmp_peer::open_fds()), (1, before + 1));
//! drop(file);
//! assert_eq!(qmp_peer::cd0_medium(3).name(), "blockdev-change-medium");
//! ```

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xsio_qmp::typed::{self, ChangeMedium, ReadOnlyMode};

use crate::qemu::{BARE_PAUSED_PC, QEMU};

/// How long [`connect`] retries while QEMU starts.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// QEMU with a paused PC guest and nothing else ([`BARE_PAUSED_PC`]), for the code under
/// test to start (it adds the QMP monitor itself).
pub fn bare_paused_pc() -> Command {
    let mut command = Command::new(QEMU);
    command.args(BARE_PAUSED_PC);
    command
}

/// A connection to the QMP socket at `socket`, retried every 20 ms while QEMU starts
/// (30 s at most; then it panics).
pub fn connect(socket: &Path) -> UnixStream {
    #[allow(clippy::disallowed_methods)] // a test waiting for QEMU to listen
    let deadline = xsio_core::deadline(Instant::now(), CONNECT_WAIT);
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return stream,
            #[allow(clippy::disallowed_methods)]
            Err(_) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("QEMU never listened on {}: {e}", socket.display()),
        }
    }
}

/// A CD image of `size` bytes (rounded down to 2 KiB sectors, a repeating pattern) at
/// `dir/cd.iso`.
pub fn cd_image(dir: &Path, size: usize) -> PathBuf {
    let path = dir.join("cd.iso");
    let mut file = std::fs::File::create(&path).unwrap();
    let block: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..size / 2048 {
        file.write_all(&block).unwrap();
    }
    path
}

/// The command that puts the fd set `fdset_id` (an image passed with `add-fd`) in the
/// drive `cd0`, read-only, as a raw image.
pub fn cd0_medium(fdset_id: u64) -> xsio_qmp::Command {
    typed::blockdev_change_medium(&ChangeMedium {
        id: "cd0".into(),
        filename: typed::fdset_path(fdset_id),
        format: Some("raw".into()),
        read_only_mode: Some(ReadOnlyMode::ReadOnly),
    })
}

/// With `XSIO_RECORD_TRANSCRIPTS` set, writes `testdata/qmp/<name>.txt`: the `header`
/// comment line (where it was recorded from), then the `transcript`.
pub fn keep_transcript(name: &str, header: &str, transcript: &str) {
    if std::env::var_os("XSIO_RECORD_TRANSCRIPTS").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/qmp");
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!("# {header}\n{transcript}");
    std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
}

/// How many descriptors this process has open (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// How many of this process's descriptors are open on `path`.
pub fn fds_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}
