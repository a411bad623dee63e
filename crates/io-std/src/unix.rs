//! A Unix stream socket that sends and receives file descriptors with its bytes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use xsio_core::Transmit;

/// At most this many descriptors are accepted with one read; the kernel closes any extra
/// ones a peer sends, so a hostile peer cannot make us hold more.
pub const MAX_RECV_FDS: usize = 16;

/// At most this many descriptors travel with one transmit (QEMU itself accepts few per
/// message; the kernel's limit is 253).
pub const MAX_SEND_FDS: usize = 16;

/// The driver's clock. Machines never read it; drivers pass its value in as `now`.
#[allow(clippy::disallowed_methods)] // This is the one place a driver reads the clock.
pub fn now() -> Instant {
    Instant::now()
}

/// A connected Unix stream socket.
#[derive(Debug)]
pub struct UnixConn {
    stream: UnixStream,
}

impl UnixConn {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixConn> {
        UnixStream::connect(path).map(UnixConn::from_stream)
    }

    /// Wraps a stream that is already connected (an accepted one, or one half of a pair).
    pub fn from_stream(stream: UnixStream) -> UnixConn {
        UnixConn { stream }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Writes all of `transmit.bytes`, its descriptors attached to the first write, waiting
    /// for the peer to make room until `deadline` (`None`: without limit). Our copies of the
    /// descriptors are closed once they went out, and on every error: a transmit never leaks
    /// a descriptor.
    ///
    /// A peer that stops reading makes this fail with [`io::ErrorKind::TimedOut`] at the
    /// deadline; part of the transmit may have gone out, so the stream is mid-message and the
    /// connection must be closed. Drivers that keep the connection instead queue transmits
    /// in an [`Outgoing`] and write them as the socket allows.
    pub fn send(&self, transmit: Transmit, deadline: Option<Instant>) -> io::Result<()> {
        let mut outgoing = Outgoing::default();
        outgoing.push(transmit)?;
        loop {
            outgoing.write_ready(self)?;
            if outgoing.is_empty() {
                return Ok(());
            }
            if !self.wait(deadline, true)?.writable {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer did not read the transmit before the deadline",
                ));
            }
        }
    }

    /// One nonblocking write of as much of `bytes` as the socket takes now, with `fds`
    /// attached when there are any. `WouldBlock` when the socket buffer is full.
    fn send_now(&self, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        loop {
            let result = if fds.is_empty() {
                rustix::net::send(&self.stream, bytes, flags)
            } else {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                let mut space =
                    [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SEND_FDS))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                    return Err(io::Error::other("ancillary buffer too small"));
                }
                sendmsg(&self.stream, &[IoSlice::new(bytes)], &mut control, flags)
            };
            match result {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads what is available into `buf` (blocking until something is), appending any
    /// descriptors that came with it to `fds`. Returns the number of bytes read; 0 means the
    /// peer closed the connection.
    pub fn recv(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_RECV_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = loop {
            match recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(msg) => break msg,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received_fds) = message {
                fds.extend(received_fds);
            }
        }
        Ok(received.bytes)
    }

    /// Waits until the socket is readable (or closed) or `deadline` passes. Returns whether
    /// it is readable. `None` waits without limit.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> io::Result<bool> {
        wait_readable(self.stream.as_fd(), deadline)
    }

    /// Waits until the socket is readable (or closed), or writable when `want_write`, or
    /// `deadline` passes (`None`: no limit). Both flags false means the deadline passed.
    pub fn wait(&self, deadline: Option<Instant>, want_write: bool) -> io::Result<Ready> {
        let mut flags = PollFlags::IN;
        if want_write {
            flags |= PollFlags::OUT;
        }
        loop {
            let timeout = deadline.map(|d| timespec(d.saturating_duration_since(now())));
            let mut fds = [PollFd::new(&self.stream, flags)];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return Ok(Ready::default()),
                Ok(_) => {
                    let events = fds[0].revents();
                    // A hang-up or an error shows as readable: the read then says what it was.
                    let broken = PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
                    return Ok(Ready {
                        readable: events.intersects(PollFlags::IN | broken),
                        writable: events.contains(PollFlags::OUT),
                    });
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What [`UnixConn::wait`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Bytes (or the end of the stream, or an error) are waiting to be read.
    pub readable: bool,
    /// The socket has room for more bytes.
    pub writable: bool,
}

/// Transmits a machine handed out and not yet fully written, oldest first.
///
/// A driver pushes every transmit here and writes with [`write_ready`](Outgoing::write_ready)
/// whenever the socket has room, so that a peer that stops reading never blocks it past the
/// machine's deadlines: it keeps waiting for the socket *or* the next deadline. A transmit's
/// descriptors go with its first byte, and are closed right after, or when the queue is
/// dropped or cleared. The machines bound what they hand out (their in-flight windows), so
/// this queue is bounded too.
#[derive(Debug, Default)]
pub struct Outgoing {
    queue: VecDeque<Partial>,
}

/// A transmit of which `written` bytes are out; its fds were sent with the first of them.
#[derive(Debug)]
struct Partial {
    transmit: Transmit,
    written: usize,
}

impl Outgoing {
    /// Queues `transmit` behind the others. Refused (and its descriptors closed) when it
    /// carries more than [`MAX_SEND_FDS`] descriptors, or descriptors without a byte.
    pub fn push(&mut self, transmit: Transmit) -> io::Result<()> {
        if transmit.fds.len() > MAX_SEND_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one transmit; at most {MAX_SEND_FDS}",
                    transmit.fds.len()
                ),
            ));
        }
        if !transmit.fds.is_empty() && transmit.bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptors need at least one byte to travel with",
            ));
        }
        if !transmit.bytes.is_empty() {
            self.queue.push_back(Partial {
                transmit,
                written: 0,
            });
        }
        Ok(())
    }

    /// Whether everything queued has been written.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes as much as `conn` takes now, without blocking: returns once everything is out
    /// or the socket buffer is full. An error means the connection is broken.
    pub fn write_ready(&mut self, conn: &UnixConn) -> io::Result<()> {
        while let Some(partial) = self.queue.front_mut() {
            let rest = &partial.transmit.bytes[partial.written..];
            match conn.send_now(rest, &partial.transmit.fds) {
                Ok(n) => {
                    // The kernel holds its own references to the fds now; close ours so
                    // that they are never attached again.
                    partial.transmit.fds.clear();
                    partial.written += n;
                    if partial.written == partial.transmit.bytes.len() {
                        self.queue.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops everything queued, closing the descriptors not yet sent (the connection ended).
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// Waits until `fd` is readable (or hung up) or `deadline` passes; returns whether it is.
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = deadline.map(|d| timespec(d.saturating_duration_since(now())));
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(!fds[0].revents().is_empty()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn timespec(wait: Duration) -> Timespec {
    // Round up to the next millisecond so that a wait never ends just before its deadline
    // and spins. Saturating: a deadline far in the future must not overflow here either.
    let wait = wait.saturating_add(Duration::from_nanos(999_999));
    Timespec {
        tv_sec: wait.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(wait.subsec_millis()) * 1_000_000,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use xsio_core::deadline;

    use super::*;

    #[test]
    fn descriptors_travel_with_the_bytes_and_arrive_usable() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (UnixConn::from_stream(a), UnixConn::from_stream(b));
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"passed through SCM_RIGHTS").unwrap();
        let fd: OwnedFd = file.try_clone().unwrap().into();
        a.send(Transmit::with_fds(&b"hello"[..], vec![fd]), None)
            .unwrap();

        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = b.recv(&mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.pop().unwrap());
        received.seek(SeekFrom::Start(0)).unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "passed through SCM_RIGHTS");
    }

    #[test]
    fn a_large_transmit_is_written_completely() {
        let (a, b) = UnixStream::pair().unwrap();
        let a = UnixConn::from_stream(a);
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let expected = payload.clone();
        let writer = std::thread::spawn(move || a.send(Transmit::bytes(payload), None).unwrap());
        let mut got = Vec::new();
        (&b).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn wait_readable_times_out_then_sees_data_and_close() {
        let (a, b) = UnixStream::pair().unwrap();
        let b = UnixConn::from_stream(b);
        let start = now();
        assert!(
            !b.wait_readable(deadline(start, Duration::from_millis(20)))
                .unwrap()
        );
        assert!(now().duration_since(start) >= Duration::from_millis(20));
        (&a).write_all(b"x").unwrap();
        assert!(
            b.wait_readable(deadline(now(), Duration::from_secs(5)))
                .unwrap()
        );
        let mut buf = [0u8; 4];
        assert_eq!(b.recv(&mut buf, &mut Vec::new()).unwrap(), 1);
        drop(a);
        assert!(b.wait_readable(None).unwrap());
        assert_eq!(
            b.recv(&mut buf, &mut Vec::new()).unwrap(),
            0,
            "closed peer reads 0"
        );
    }

    #[test]
    fn a_send_to_a_peer_that_never_reads_gives_up_at_its_deadline_and_closes_the_fds() {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = UnixConn::from_stream(a);
        // A socket pair as a probe: `reader` reads EOF once every copy of `writer` is closed.
        let (reader, writer) = UnixStream::pair().unwrap();
        let writer = OwnedFd::from(writer);
        let big = vec![7u8; 8 << 20];
        let start = now();
        let err = a
            .send(
                Transmit::with_fds(big, vec![writer]),
                deadline(start, Duration::from_millis(100)),
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(now().duration_since(start) >= Duration::from_millis(100));
        // Our copy of the probe is closed; the only one left is in flight inside the socket
        // (the peer never received it), so once the socket is gone the probe reads EOF.
        drop((a, _b));
        assert_eq!((&reader).read(&mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn outgoing_writes_what_fits_without_blocking_and_the_rest_later_fds_on_the_first_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (UnixConn::from_stream(a), UnixConn::from_stream(b));
        let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let fd: OwnedFd = tempfile::tempfile().unwrap().into();
        let mut outgoing = Outgoing::default();
        outgoing
            .push(Transmit::with_fds(payload.clone(), vec![fd]))
            .unwrap();
        outgoing.push(Transmit::bytes(&b"second"[..])).unwrap();
        // The socket buffer is far smaller than 4 MB: this returns with bytes left over.
        outgoing.write_ready(&a).unwrap();
        assert!(!outgoing.is_empty());
        let reader = std::thread::spawn(move || {
            let (mut got, mut fds, mut fds_at) = (Vec::new(), Vec::new(), Vec::new());
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = b.recv(&mut buf, &mut fds).unwrap();
                if n == 0 {
                    return (got, fds.len(), fds_at);
                }
                if !fds.is_empty() && fds_at.is_empty() {
                    fds_at.push(got.len());
                }
                got.extend_from_slice(&buf[..n]);
            }
        });
        while !outgoing.is_empty() {
            assert!(
                a.wait(deadline(now(), Duration::from_secs(10)), true)
                    .unwrap()
                    .writable
            );
            outgoing.write_ready(&a).unwrap();
        }
        drop(a);
        let (got, n_fds, fds_at) = reader.join().unwrap();
        assert_eq!(got.len(), payload.len() + 6);
        assert!(got[..payload.len()] == payload[..] && &got[payload.len()..] == b"second");
        assert_eq!((n_fds, fds_at), (1, vec![0]), "one fd, with the first byte");
    }

    #[test]
    fn descriptors_without_bytes_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = UnixConn::from_stream(a);
        let fd: OwnedFd = tempfile::tempfile().unwrap().into();
        let err = a
            .send(Transmit::with_fds(&b""[..], vec![fd]), None)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
