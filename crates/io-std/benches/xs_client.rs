//! What our xenstore client adds to a round trip: the blocking `XsConn` against
//! `xsio xenstored`'s real poll loop (on a thread of this process), next to a hand-written
//! client sending the same READ bytes to the same daemon in the same run, plus reads
//! pipelined through the machine (many requests in flight on one connection).
//! Run with `cargo bench -p xsio-io-std --bench xs_client`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::Daemon;
use divan::Bencher;
use xsio_io_std::now;
use xsio_io_std::xenstore::XsConn;
use xsio_xs_wire::{Packet, Request};

fn main() {
    divan::main();
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
