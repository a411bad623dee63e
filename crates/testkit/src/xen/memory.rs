//! A guest's side of the hypervisor: its memory (the pages it grants) and its event
//! channels, as the shim lays them out in a [`World`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{CWD, FileType, Mode, OFlags, mknodat};
use vm_memory::{Bytes as _, FileOffset, MmapRegion, VolatileMemory as _, VolatileSlice};

use super::World;

/// The size of a page (a grant).
pub const PAGE_SIZE: usize = 4096;

/// The memory a guest domain shares: `pages` pages of the file `grants-<domid>`, mapped
/// shared, so what the test writes is what the daemon or QEMU (which map the same file
/// through the shim) reads, and back. Grant reference `R` is page `R`.
#[derive(Debug)]
pub struct GuestMemory {
    region: MmapRegion<()>,
    domid: u32,
}

impl GuestMemory {
    /// Creates (or zeroes in place, never truncating: a mapped file that shrinks kills its
    /// mappers with SIGBUS) the memory of `domid`, `pages` pages long, and maps it.
    pub fn create(world: &World, domid: u32, pages: usize) -> io::Result<GuestMemory> {
        let path = world.path(&format!("grants-{domid}"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = (pages * PAGE_SIZE) as u64;
        if file.metadata()?.len() < len {
            file.set_len(len)?;
        }
        file.write_all(&vec![0u8; pages * PAGE_SIZE])?;
        let region = MmapRegion::from_file(FileOffset::new(file, 0), pages * PAGE_SIZE)
            .map_err(|e| io::Error::other(format!("mapping {}: {e:?}", path.display())))?;
        Ok(GuestMemory { region, domid })
    }

    /// The domain whose memory this is.
    pub fn domid(&self) -> u32 {
        self.domid
    }

    /// Grant reference (page) `gref`, for volatile reads and writes
    /// ([`vm_memory::Bytes`]: `read_slice`, `write_slice`, atomic `load`/`store`).
    /// Panics if `gref` is past the memory's end.
    pub fn page(&self, gref: u32) -> VolatileSlice<'_> {
        self.region
            .get_slice(gref as usize * PAGE_SIZE, PAGE_SIZE)
            .unwrap_or_else(|e| panic!("grant {gref} of domain {}: {e:?}", self.domid))
    }

    /// Reads `len` bytes of page `gref` from `offset`.
    pub fn read(&self, gref: u32, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.page(gref).read_slice(&mut out, offset).unwrap();
        out
    }

    /// Writes `bytes` into page `gref` at `offset`.
    pub fn write(&self, gref: u32, offset: usize, bytes: &[u8]) {
        self.page(gref).write_slice(bytes, offset).unwrap();
    }

    /// Loads the little-endian u32 at `offset` of page `gref` (acquire).
    pub fn load_u32(&self, gref: u32, offset: usize) -> u32 {
        self.page(gref).load(offset, Ordering::Acquire).unwrap()
    }

    /// Stores the u32 at `offset` of page `gref` (release: everything written before is
    /// visible to whoever sees this value).
    pub fn store_u32(&self, gref: u32, offset: usize, value: u32) {
        self.page(gref)
            .store(value, offset, Ordering::Release)
            .unwrap();
    }
}

/// The guest's end of event channel `port` of domain `domid`: [`kick`](EventChannel::kick)
/// is the guest's notify (the backend bound to the channel wakes up), and
/// [`wait`](EventChannel::wait) waits for the backend's notify.
#[derive(Debug)]
pub struct EventChannel {
    kick: File,
    notify: File,
    domid: u32,
    port: u32,
}

impl EventChannel {
    /// Opens (creating the FIFOs if needed) channel `port` of `domid` in `world`.
    pub fn open(world: &World, domid: u32, port: u32) -> io::Result<EventChannel> {
        Ok(EventChannel {
            kick: open_fifo(&world.path(&format!("evtchn-{domid}-{port}")))?,
            notify: open_fifo(&world.path(&format!("notify-{domid}-{port}")))?,
            domid,
            port,
        })
    }

    /// The guest's domain.
    pub fn domid(&self) -> u32 {
        self.domid
    }

    /// The guest's port number (what it writes as `event-channel`, or INTRODUCEs).
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Notifies the backend. A full FIFO already holds a pending kick, which is all a
    /// kick means, so "would block" is success.
    pub fn kick(&self) -> io::Result<()> {
        match (&self.kick).write(&[0; 4]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the backend notifies, or `timeout` passes; returns whether it did.
    /// Every notify pending is consumed.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let notified = wait_readable(&self.notify, timeout)?;
        self.drain()?;
        Ok(notified)
    }

    /// Consumes pending notifies without waiting; returns whether there were any.
    pub fn drain(&self) -> io::Result<bool> {
        let mut any = false;
        let mut sink = [0u8; 256];
        loop {
            match (&self.notify).read(&mut sink) {
                Ok(0) => return Ok(any),
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn notify_fd(&self) -> &File {
        &self.notify
    }
}

/// Opens the FIFO at `path` (creating it if missing) for reading and writing, without
/// blocking: opened that way it never blocks on open and never reads end-of-file.
pub(super) fn open_fifo(path: &Path) -> io::Result<File> {
    match mknodat(CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Waits until `file` is readable or `timeout` passes; returns whether it is.
pub(super) fn wait_readable(file: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    #[allow(clippy::disallowed_methods)] // a test-side wait
    let deadline = xsio_core::deadline(Instant::now(), timeout);
    loop {
        #[allow(clippy::disallowed_methods)]
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let spec = left.map(|left| Timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        });
        let mut fds = [PollFd::new(file, PollFlags::IN)];
        match poll(&mut fds, spec.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
