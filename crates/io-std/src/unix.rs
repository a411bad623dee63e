//! A Unix stream socket that sends and receives file descriptors with its bytes.

use std::io::{self, IoSlice, IoSliceMut, Write};
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

    /// Writes all of `transmit.bytes`, with its descriptors attached to the first write, then
    /// closes our copies of the descriptors. On error they are closed as well: a transmit
    /// never leaks a descriptor.
    pub fn send(&self, transmit: Transmit) -> io::Result<()> {
        let Transmit { bytes, fds } = transmit;
        if fds.len() > MAX_SEND_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one transmit; at most {MAX_SEND_FDS}",
                    fds.len()
                ),
            ));
        }
        let mut written = 0;
        if !fds.is_empty() {
            if bytes.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "descriptors need at least one byte to travel with",
                ));
            }
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SEND_FDS))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            written = loop {
                match sendmsg(
                    &self.stream,
                    &[IoSlice::new(&bytes)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                ) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
        }
        // The descriptors went with the first write (or there were none): the rest is plain.
        drop(fds);
        (&self.stream).write_all(&bytes[written..])
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
    use std::io::{Read, Seek, SeekFrom};

    use super::*;

    #[test]
    fn descriptors_travel_with_the_bytes_and_arrive_usable() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (UnixConn::from_stream(a), UnixConn::from_stream(b));
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"passed through SCM_RIGHTS").unwrap();
        let fd: OwnedFd = file.try_clone().unwrap().into();
        a.send(Transmit::with_fds(&b"hello"[..], vec![fd])).unwrap();

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
        let writer = std::thread::spawn(move || a.send(Transmit::bytes(payload)).unwrap());
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
            !b.wait_readable(Some(start + Duration::from_millis(20)))
                .unwrap()
        );
        assert!(now() >= start + Duration::from_millis(20));
        (&a).write_all(b"x").unwrap();
        assert!(
            b.wait_readable(Some(now() + Duration::from_secs(5)))
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
    fn descriptors_without_bytes_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = UnixConn::from_stream(a);
        let fd: OwnedFd = tempfile::tempfile().unwrap().into();
        let err = a.send(Transmit::with_fds(&b""[..], vec![fd])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
