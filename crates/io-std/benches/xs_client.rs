//! What our xenstore client adds to a round trip: the blocking `XsConn` against
//! `xsio xenstored`'s real poll loop (on a thread of this process), next to a hand-written
//! client sending the same READ bytes to the same daemon in the same run, plus reads
//! pipelined through the machine (many requests in flight on one connection).
//! Run with `cargo bench -p xsio-io-std --bench xs_client`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use divan::Bencher;
use xsio_io_std::now;
use xsio_io_std::xenstore::XsConn;
use xsio_io_std::xenstored::{DaemonConfig, run};
use xsio_xs_wire::{Packet, Request};

fn main() {
    divan::main();
}

struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let (stop_rx, stop) = UnixStream::pair().unwrap();
        let config = DaemonConfig::new(&socket);
        let thread = std::thread::spawn(move || run(config, stop_rx).unwrap());
        wait_for(&socket);
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

fn wait_for(socket: &Path) {
    for _ in 0..500 {
        if UnixStream::connect(socket).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("daemon did not start");
}

/// The baseline: the READ's bytes written by hand, the reply read whole.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn raw_read_round_trip(bencher: Bencher) {
    let daemon = Daemon::start();
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    let request = Packet::new(
        0,
        0,
        Request::Read {
            path: "/bench/key".into(),
        },
    )
    .to_bytes()
    .unwrap();
    let (mut head, mut body) = ([0u8; 16], vec![0u8; 5]);
    bencher.bench_local(|| {
        stream.write_all(&request).unwrap();
        stream.read_exact(&mut head).unwrap();
        stream.read_exact(&mut body).unwrap();
    });
}

/// `XsConn::read`: encode, send, poll, receive, frame, decode, route, complete.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn xsconn_read_round_trip(bencher: Bencher) {
    let daemon = Daemon::start();
    let mut xs = XsConn::connect(&daemon.socket).unwrap();
    bencher.bench_local(|| {
        let value = xs.read("/bench/key").unwrap();
        assert_eq!(value.len(), 5);
    });
}

/// 100 reads started at once on one connection, then all awaited (per batch of 100).
#[divan::bench(sample_count = 100, sample_size = 1)]
fn xsconn_100_pipelined_reads(bencher: Bencher) {
    let daemon = Daemon::start();
    let mut xs = XsConn::connect(&daemon.socket).unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(100usize))
        .bench_local(|| {
            let at = now();
            let ops: Vec<_> = (0..100)
                .map(|_| xs.client_mut().read(at, None, "/bench/key"))
                .collect();
            for op in ops {
                xs.wait(op).unwrap();
            }
        });
}
