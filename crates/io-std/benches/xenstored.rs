//! Round trips per second from one client to `xsio xenstored` over a Unix socket, against the
//! floor of the same transport: a tiny echo server answering every request at once.
//!
//! Each benchmark times one round trip: write a request, read its whole reply. The daemon
//! runs its real poll loop (`xsio_io_std::xenstored::run`) on a thread of this process; the
//! echo server is a thread reading and writing back the same bytes. Compare the medians: the
//! ratio says what xenstored's work adds to the cost of the socket itself.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use common::{Daemon, connect};
use divan::Bencher;
use xsio_xs_wire::{Packet, Request};

fn main() {
    divan::main();
}

/// A READ of a 5-byte value: the request is 16 + 11 bytes, the reply 16 + 5.
fn read_request() -> Vec<u8> {
    let read = Request::Read {
        path: "/bench/key".into(),
    };
    Packet::new(0, 0, read).to_bytes().unwrap().to_vec()
}

fn write_request() -> Vec<u8> {
    let write = Request::Write {
        path: "/bench/key".into(),
        value: "value".into(),
    };
    Packet::new(0, 0, write).to_bytes().unwrap().to_vec()
}

/// Writes `request` and reads one whole reply; returns its payload length.
fn round_trip(
    stream: &mut UnixStream,
    request: &[u8],
    head: &mut [u8; 16],
    body: &mut Vec<u8>,
) -> usize {
    stream.write_all(request).unwrap();
    stream.read_exact(head).unwrap();
    let len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    body.resize(len, 0);
    stream.read_exact(body).unwrap();
    len
}

/// The floor: a thread that writes back whatever it reads.
fn echo_server() -> (tempfile::TempDir, UnixStream) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("echo");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let client = connect(&socket);
    (dir, client)
}

/// Ping-pong of a READ-sized message (27 bytes each way) through an echo server.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn floor_echo_round_trip(bencher: Bencher) {
    let (_dir, mut client) = echo_server();
    let request = read_request();
    let mut reply = vec![0u8; request.len()];
    bencher.bench_local(|| {
        client.write_all(&request).unwrap();
        client.read_exact(&mut reply).unwrap();
    });
}

/// READ of a 5-byte value, reply read whole.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn xenstored_read_round_trip(bencher: Bencher) {
    bench_round_trips(bencher, &read_request(), 5);
}

/// WRITE of a 5-byte value (which also fires watch matching), reply read whole.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn xenstored_write_round_trip(bencher: Bencher) {
    bench_round_trips(bencher, &write_request(), 3);
}

/// `request` sent to a fresh daemon and its reply (of `reply_len` payload bytes) read
/// whole, once per iteration.
fn bench_round_trips(bencher: Bencher, request: &[u8], reply_len: usize) {
    let daemon = Daemon::start();
    let mut client = connect(&daemon.socket);
    let (mut head, mut body) = ([0u8; 16], Vec::new());
    bencher.bench_local(|| {
        let len = round_trip(&mut client, request, &mut head, &mut body);
        assert_eq!(len, reply_len);
    });
}
