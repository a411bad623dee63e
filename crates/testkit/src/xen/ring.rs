//! A guest's xenstore ring, bridged to a Unix socket.
//!
//! The page is Xen's `xenstore_domain_interface`: a 1 KiB request ring, a 1 KiB response
//! ring, then four u32 indexes (free-running, taken modulo the ring size). The guest
//! produces requests and consumes responses; the daemon does the reverse and notifies the
//! guest's event channel after each step, as the guest kicks it after each of its own.
//!
//! A test rarely wants to speak the ring itself: [`bridge`] moves bytes between the ring
//! and one end of a socket pair, and the test (or `xsio-xs-client` through `xsio-io-std`,
//! unchanged) talks xenstore over the other end, as over the daemon's Unix socket.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use super::{EventChannel, GuestMemory};

/// The grant reference of a guest's xenstore ring (Xen's `GNTTAB_RESERVED_XENSTORE`).
pub const RING_REF: u32 = 1;

/// Offsets in the xenstore ring page.
#[derive(Clone, Copy, Debug)]
pub struct RingLayout;

impl RingLayout {
    /// Size of each of the two rings.
    pub const SIZE: u32 = 1024;
    /// The request ring (guest to daemon).
    pub const REQ: usize = 0;
    /// The response ring (daemon to guest).
    pub const RSP: usize = 1024;
    /// Requests consumed by the daemon.
    pub const REQ_CONS: usize = 2048;
    /// Requests produced by the guest.
    pub const REQ_PROD: usize = 2052;
    /// Responses consumed by the guest.
    pub const RSP_CONS: usize = 2056;
    /// Responses produced by the daemon.
    pub const RSP_PROD: usize = 2060;
}

/// How long the bridge sleeps at most between looks at the ring, should a notify be lost.
const IDLE_LOOK: Duration = Duration::from_millis(20);
/// Bytes the bridge holds from the socket before it stops reading it (the ring is full).
const HOLD_MAX: usize = 64 * 1024;

/// Starts a thread moving bytes between the ring in `memory` (page [`RING_REF`]) and a
/// new socket, kicking and waiting on `channel`; returns the test's end. The thread ends
/// when the test closes its end (or the ring is found corrupt).
pub(super) fn bridge(memory: GuestMemory, channel: EventChannel) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(format!("xen-ring-dom{}", memory.domid()))
        .spawn(move || {
            let mut ring = Ring {
                memory,
                channel,
                socket: ours,
                to_ring: Vec::new(),
                to_socket: Vec::new(),
            };
            // An error here means the test is gone or the daemon broke the ring; either
            // way the test sees its socket close.
            let _ = ring.run();
        })?;
    Ok(theirs)
}

struct Ring {
    memory: GuestMemory,
    channel: EventChannel,
    socket: UnixStream,
    /// Requests read from the socket, not yet in the ring.
    to_ring: Vec<u8>,
    /// Responses taken from the ring, not yet written to the socket.
    to_socket: Vec<u8>,
}

impl Ring {
    fn run(&mut self) -> io::Result<()> {
        loop {
            let mut moved = self.take_responses()?;
            moved |= self.put_requests()?;
            moved |= self.flush_socket()?;
            if self.to_ring.len() < HOLD_MAX {
                let mut buf = [0u8; 8192];
                match self.socket.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        self.to_ring.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if !moved {
                self.sleep()?;
            }
        }
    }

    /// Waits for the daemon's notify or the socket, at most [`IDLE_LOOK`].
    fn sleep(&mut self) -> io::Result<()> {
        let mut socket_flags = PollFlags::empty();
        if self.to_ring.len() < HOLD_MAX {
            socket_flags |= PollFlags::IN;
        }
        if !self.to_socket.is_empty() {
            socket_flags |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(self.channel.notify_fd(), PollFlags::IN),
            PollFd::new(&self.socket, socket_flags),
        ];
        let spec = Timespec {
            tv_sec: 0,
            tv_nsec: IDLE_LOOK.as_nanos() as i64,
        };
        match poll(&mut fds, Some(&spec)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.channel.drain().map(drop)
    }

    /// The consumer and producer indexes of the `which` ring (at `cons_at` and `prod_at` of
    /// the shared page); a producer more than a ring ahead of its consumer is a corrupt
    /// ring, an error.
    fn indexes(&self, cons_at: usize, prod_at: usize, which: &str) -> io::Result<(u32, u32)> {
        let cons = self.memory.load_u32(RING_REF, cons_at);
        let prod = self.memory.load_u32(RING_REF, prod_at);
        if prod.wrapping_sub(cons) > RingLayout::SIZE {
            return Err(io::Error::other(format!(
                "{which} ring corrupt: prod {prod} cons {cons}"
            )));
        }
        Ok((cons, prod))
    }

    /// Moves every response the daemon produced into `to_socket`; kicks it if it freed
    /// space (the daemon may be waiting for room to answer).
    fn take_responses(&mut self) -> io::Result<bool> {
        let (cons, prod) = self.indexes(RingLayout::RSP_CONS, RingLayout::RSP_PROD, "response")?;
        let avail = prod.wrapping_sub(cons);
        if avail == 0 {
            return Ok(false);
        }
        self.to_socket
            .extend(copy_out(&self.memory, RingLayout::RSP, cons, avail));
        self.advance(RingLayout::RSP_CONS, cons, avail)
    }

    /// Moves as much of `to_ring` as fits into the request ring, then kicks.
    fn put_requests(&mut self) -> io::Result<bool> {
        if self.to_ring.is_empty() {
            return Ok(false);
        }
        let (cons, prod) = self.indexes(RingLayout::REQ_CONS, RingLayout::REQ_PROD, "request")?;
        let used = prod.wrapping_sub(cons);
        let room = (RingLayout::SIZE - used).min(self.to_ring.len() as u32);
        if room == 0 {
            return Ok(false);
        }
        let chunk: Vec<u8> = self.to_ring.drain(..room as usize).collect();
        copy_in(&self.memory, RingLayout::REQ, prod, &chunk);
        self.advance(RingLayout::REQ_PROD, prod, room)
    }

    /// Moves our index at `at` of the shared page from `from` on by `by` (what we took or
    /// gave), and kicks the daemon; `Ok(true)`: something moved.
    fn advance(&self, at: usize, from: u32, by: u32) -> io::Result<bool> {
        self.memory.store_u32(RING_REF, at, from.wrapping_add(by));
        self.channel.kick()?;
        Ok(true)
    }

    fn flush_socket(&mut self) -> io::Result<bool> {
        if self.to_socket.is_empty() {
            return Ok(false);
        }
        match self.socket.write(&self.to_socket) {
            Ok(n) => {
                self.to_socket.drain(..n);
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reads `len` bytes of the ring at `base`, starting at free-running index `from`.
fn copy_out(memory: &GuestMemory, base: usize, from: u32, len: u32) -> Vec<u8> {
    let start = (from % RingLayout::SIZE) as usize;
    let first = (RingLayout::SIZE as usize - start).min(len as usize);
    let mut out = memory.read(RING_REF, base + start, first);
    out.extend(memory.read(RING_REF, base, len as usize - first));
    out
}

/// Writes `bytes` into the ring at `base`, starting at free-running index `at`.
fn copy_in(memory: &GuestMemory, base: usize, at: u32, bytes: &[u8]) {
    let start = (at % RingLayout::SIZE) as usize;
    let first = (RingLayout::SIZE as usize - start).min(bytes.len());
    memory.write(RING_REF, base + start, &bytes[..first]);
    memory.write(RING_REF, base, &bytes[first..]);
}
