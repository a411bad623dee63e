//! Xen 4.17's C xenstored, oxenstored and `xsio xenstored`, side by side in one run, with
//! the floor of the transport: a ping-pong echo server on the same kind of socket.
//!
//! Every daemon is a separate process (Xen's under the testkit's shim, `xsio xenstored` as
//! the `xsio` binary), reached by dom0 over its Unix socket; the client is the same code
//! for all. Each bench is run for every daemon (`args`):
//!
//! - `sequential_read` / `sequential_write`: one request, wait for the reply, repeat;
//! - `pipelined_read` / `pipelined_write`: 64 requests written at once, then 64 replies
//!   read (divan counts 64 items per iteration);
//! - `many_connections_read`: 32 connections each send one READ, then each reply is read;
//! - before the timed benches, with `cargo bench` only: resident memory per node, the
//!   daemon's resident set (`VmRSS`) before and after filling 200 000 nodes
//!   (`/local/domain/<d>/device/vbd/<n>/key-<k>`, 8-byte values, dom0 writes pipelined 64
//!   at a time), printed as a table.
//!
//! The floor (`floor`) answers every message by echoing it: what the socket and the client
//! cost without any daemon (a thread per connection in this process: with many
//! connections on few cores it is no floor, and the daemons are compared with each other). A daemon that is not installed is skipped with a line saying
//! so (under `CI`, the missing-peer rule makes it fail).
//!
//! ```text
//! cargo bench -p xsio-cli --bench xenstored_side_by_side
//! ```

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use xsio_io_std::xenstore::XsConn;
use xsio_testkit::xen::{Flavour, World, XenStored};
use xsio_testkit::xenstored::Daemon;
use xsio_xs_wire::{Packet, Request};

/// Every target of every bench, the floor first.
const TARGETS: &[&str] = &["floor", "xen-c", "oxenstored", "xsio"];
/// Requests in flight in the pipelined benches.
const PIPELINE: usize = 64;
/// Connections of the many-connections bench.
const CONNECTIONS: usize = 32;
/// Nodes written for the memory figure.
const FILL_NODES: usize = 200_000;

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        memory_per_node();
    }
    divan::main();
}

/// A daemon (or the echo floor) on a socket, stopped on drop.
struct Target {
    socket: PathBuf,
    /// The daemon's process (none for the floor, a thread of this process).
    pid: Option<u32>,
    /// What keeps it running (the daemon's handle, its temp directory).
    _running: Box<dyn std::any::Any>,
}

impl Target {
    /// Starts `name`, with `/bench/key` = `value` written; `None` when its peer is missing.
    fn start(name: &str) -> Option<Target> {
        let target = match name {
            "floor" => {
                let dir = tempfile::tempdir().unwrap();
                let socket = dir.path().join("echo");
                echo_server(&socket);
                return Some(Target {
                    socket,
                    pid: None,
                    _running: Box::new(dir),
                });
            }
            "xen-c" | "oxenstored" => {
                let flavour = if name == "xen-c" {
                    Flavour::C
                } else {
                    Flavour::OCaml
                };
                let world = World::new()?;
                let daemon = XenStored::start(&world, flavour, &[])?;
                Target {
                    socket: daemon.socket().to_owned(),
                    pid: Some(daemon.pid()),
                    _running: Box::new((daemon, world)),
                }
            }
            "xsio" => {
                let daemon = Daemon::start(Path::new(env!("CARGO_BIN_EXE_xsio")), &[], &[]);
                Target {
                    socket: daemon.socket.clone(),
                    pid: daemon.pid(),
                    _running: Box::new(daemon),
                }
            }
            other => panic!("no target {other}"),
        };
        let mut xs = XsConn::connect(&target.socket).unwrap();
        xs.write("/bench/key", "value").unwrap();
        Some(target)
    }

    fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).unwrap()
    }
}

/// The floor: a thread per connection writing back whatever it reads.
fn echo_server(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
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
        }
    });
}

fn read_request() -> Vec<u8> {
    let read = Request::Read {
        path: "/bench/key".into(),
    };
    Packet::new(0, 0, read).to_bytes().unwrap().to_vec()
}

fn write_request(path: &str, value: &str) -> Vec<u8> {
    let write = Request::Write {
        path: path.into(),
        value: value.to_owned().into(),
    };
    Packet::new(0, 0, write).to_bytes().unwrap().to_vec()
}

/// Reads one whole message (header and payload); returns its payload length.
fn read_message(stream: &mut UnixStream, body: &mut Vec<u8>) -> usize {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).unwrap();
    let len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    body.resize(len, 0);
    stream.read_exact(body).unwrap();
    len
}

/// `count` copies of `request`, sent at once, then their `count` replies read; the floor
/// echoes the requests themselves.
fn pipelined(stream: &mut UnixStream, batch: &[u8], count: usize, body: &mut Vec<u8>) {
    stream.write_all(batch).unwrap();
    for _ in 0..count {
        read_message(stream, body);
    }
}

/// Starts `name` or prints why it is skipped.
fn target_or_skip(name: &str) -> Option<Target> {
    let target = Target::start(name);
    if target.is_none() {
        eprintln!("{name}: not installed, skipped");
    }
    target
}

#[divan::bench(args = TARGETS, sample_count = 200, sample_size = 20)]
fn sequential_read(bencher: Bencher, name: &str) {
    let Some(target) = target_or_skip(name) else {
        return;
    };
    let mut stream = target.connect();
    let request = read_request();
    let mut body = Vec::new();
    bencher.bench_local(|| {
        stream.write_all(&request).unwrap();
        read_message(&mut stream, &mut body)
    });
}

#[divan::bench(args = TARGETS, sample_count = 200, sample_size = 20)]
fn sequential_write(bencher: Bencher, name: &str) {
    let Some(target) = target_or_skip(name) else {
        return;
    };
    let mut stream = target.connect();
    let request = write_request("/bench/key", "value");
    let mut body = Vec::new();
    bencher.bench_local(|| {
        stream.write_all(&request).unwrap();
        read_message(&mut stream, &mut body)
    });
}

#[divan::bench(args = TARGETS, sample_count = 100, sample_size = 5)]
fn pipelined_read(bencher: Bencher, name: &str) {
    let Some(target) = target_or_skip(name) else {
        return;
    };
    let mut stream = target.connect();
    let batch = read_request().repeat(PIPELINE);
    let mut body = Vec::new();
    bencher
        .counter(ItemsCount::new(PIPELINE))
        .bench_local(|| pipelined(&mut stream, &batch, PIPELINE, &mut body));
}

#[divan::bench(args = TARGETS, sample_count = 100, sample_size = 5)]
fn pipelined_write(bencher: Bencher, name: &str) {
    let Some(target) = target_or_skip(name) else {
        return;
    };
    let mut stream = target.connect();
    let batch = write_request("/bench/key", "value").repeat(PIPELINE);
    let mut body = Vec::new();
    bencher
        .counter(ItemsCount::new(PIPELINE))
        .bench_local(|| pipelined(&mut stream, &batch, PIPELINE, &mut body));
}

#[divan::bench(args = TARGETS, sample_count = 100, sample_size = 5)]
fn many_connections_read(bencher: Bencher, name: &str) {
    let Some(target) = target_or_skip(name) else {
        return;
    };
    let mut streams: Vec<UnixStream> = (0..CONNECTIONS).map(|_| target.connect()).collect();
    let request = read_request();
    let mut body = Vec::new();
    bencher
        .counter(ItemsCount::new(CONNECTIONS))
        .bench_local(|| {
            for stream in &mut streams {
                stream.write_all(&request).unwrap();
            }
            for stream in &mut streams {
                read_message(stream, &mut body);
            }
        });
}

/// The resident set of `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// Prints each daemon's resident memory per node after filling [`FILL_NODES`] nodes.
fn memory_per_node() {
    println!(
        "resident memory per node, {FILL_NODES} nodes written by dom0 (VmRSS after - before):"
    );
    for name in TARGETS.iter().filter(|n| **n != "floor") {
        let Some(target) = target_or_skip(name) else {
            continue;
        };
        let pid = target.pid.expect("a daemon has a process");
        let mut stream = target.connect();
        let before = resident_bytes(pid);
        let mut body = Vec::new();
        let mut batch = Vec::new();
        let mut in_batch = 0;
        for i in 0..FILL_NODES {
            let path = format!(
                "/local/domain/{}/device/vbd/{}/key-{}",
                i / 10_000,
                (i / 10) % 1000,
                i % 10
            );
            batch.extend(write_request(&path, "12345678"));
            in_batch += 1;
            if in_batch == PIPELINE || i + 1 == FILL_NODES {
                pipelined(&mut stream, &batch, in_batch, &mut body);
                batch.clear();
                in_batch = 0;
            }
        }
        // Let the daemon settle (a garbage collector, freed buffers) before measuring.
        std::thread::sleep(Duration::from_millis(500));
        let after = resident_bytes(pid);
        let per_node = after.saturating_sub(before) as f64 / FILL_NODES as f64;
        println!(
            "  {name:<11} {:>8.1} MiB -> {:>8.1} MiB: {per_node:>6.1} bytes per node",
            before as f64 / (1 << 20) as f64,
            after as f64 / (1 << 20) as f64,
        );
    }
}
