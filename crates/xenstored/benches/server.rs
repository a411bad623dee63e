//! The core alone: request handling cost without sockets, and memory per node for a tree of
//! one million nodes.

use std::time::Instant;

use divan::Bencher;
use xsio_xenstored::{Config, ConnId, Origin, Server};
use xsio_xs_wire::{Packet, Request};

fn main() {
    divan::main();
}

fn request(body: Request) -> Packet<Request> {
    Packet::new(0, 0, body)
}

fn write(path: &str, value: &str) -> Request {
    Request::Write {
        path: path.into(),
        value: value.to_owned().into(),
    }
}

#[allow(clippy::disallowed_methods)] // The bench epoch.
fn epoch() -> Instant {
    Instant::now()
}

/// A server with one dom0 connection that has sent `setup` and taken its reply.
fn server_after(setup: Request) -> (Server, ConnId, Instant) {
    let now = epoch();
    let mut server = Server::new(Config::default(), now);
    let conn = server.connect(now, Origin::Socket);
    server.handle_request(now, conn, request(setup));
    while server.poll_output().is_some() {}
    (server, conn, now)
}

/// One READ through the framing layer: bytes in, reply bytes out. A million iterations in
/// a thousand samples: with divan's default hundred of a hundred, one request is too short
/// for a stable median on a busy machine.
#[divan::bench(sample_count = 1000, sample_size = 1000)]
fn read_request_in_process(bencher: Bencher) {
    let (mut server, conn, now) = server_after(write("/bench/key", "value"));
    let mut wire = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0];
    wire.extend_from_slice(b"/bench/key\0");
    bencher.bench_local(|| {
        server.handle_input(now, conn, &wire);
        server.poll_output().unwrap()
    });
}

/// One WRITE of an existing node, with a watcher to fan out to.
#[divan::bench(sample_count = 1000, sample_size = 1000)]
fn write_request_in_process(bencher: Bencher) {
    let (mut server, conn, now) = server_after(Request::Watch {
        path: "/bench".into(),
        token: "tok".into(),
    });
    let mut wire = vec![11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0];
    wire.extend_from_slice(b"/bench/key\0value");
    bencher.bench_local(|| {
        server.handle_input(now, conn, &wire);
        server.poll_output().unwrap()
    });
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Builds one million nodes (1,000 device directories of 999 keys, realistic paths and
/// 8-byte values) and prints the resident memory they cost per node.
#[divan::bench(sample_count = 1, sample_size = 1)]
fn one_million_nodes() -> usize {
    let now = epoch();
    let before = resident_bytes();
    let mut server = Server::new(Config::default(), now);
    let conn = server.connect(now, Origin::Socket);
    let start_nodes = server.node_count();
    for dir in 0..1000 {
        for key in 0..999 {
            let path = format!("/local/domain/1/device/vbd/{dir}/key-{key}");
            let value = format!("value-{key:02}");
            server.handle_request(now, conn, request(write(&path, &value)));
            while server.poll_output().is_some() {}
        }
    }
    let nodes = server.node_count() - start_nodes;
    let after = resident_bytes();
    let per_node = after.saturating_sub(before) as f64 / nodes as f64;
    eprintln!("one_million_nodes: {nodes} nodes, {per_node:.0} bytes of resident memory per node");
    server.node_count()
}

/// One WRITE while `n` other connections each hold one watch on a path the write does not
/// touch: the cost of fanning a change out must not grow with the watches it does not
/// match (a host of thousands of guests holds thousands of such watches).
#[divan::bench(args = [100, 10_000])]
fn write_with_idle_watches(bencher: Bencher, n: usize) {
    let now = epoch();
    let mut server = Server::new(Config::default(), now);
    for i in 0..n {
        let idle = server.connect(now, Origin::Socket);
        let watch = Request::Watch {
            path: format!("/local/domain/{i}/device"),
            token: format!("idle-{i}"),
        };
        server.handle_request(now, idle, request(watch));
    }
    while server.poll_output().is_some() {}
    let conn = server.connect(now, Origin::Socket);
    let mut wire = vec![11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0];
    wire.extend_from_slice(b"/bench/key\0value");
    bencher.bench_local(|| {
        server.handle_input(now, conn, &wire);
        server.poll_output().unwrap()
    });
}

/// Drains the server's output; the last message's bytes.
fn drain(server: &mut Server) -> Vec<u8> {
    let mut last = Vec::new();
    while let Some(output) = server.poll_output() {
        if let xsio_xenstored::Output::Transmit { bytes, .. } = output {
            last = bytes.to_vec();
        }
    }
    last
}

/// A toolstack transaction on a host of `n` guests: it creates a device's `state` under a
/// new guest's directory in `/local/domain` (which lists the `n` guests), commits, and the
/// new guest's directory is removed again outside it. Its copy of the directory it passes
/// through must cost what the transaction does there, not the `n` names (the same time at
/// 100 and 10 000 guests).
#[divan::bench(args = [100, 10_000])]
fn transaction_under_a_large_directory(bencher: Bencher, n: usize) {
    let now = epoch();
    let mut server = Server::new(Config::default(), now);
    let conn = server.connect(now, Origin::Socket);
    for i in 0..n {
        let name = write(&format!("/local/domain/{}/name", i + 1), "guest");
        server.handle_request(now, conn, request(name));
        drain(&mut server);
    }
    let state = write("/local/domain/0/device/vbd/51712/state", "1");
    let guest = Request::Rm {
        path: "/local/domain/0".into(),
    };
    bencher.bench_local(|| {
        server.handle_request(now, conn, request(Request::TransactionStart));
        // The reply's payload is the transaction's id in decimal, then a NUL.
        let started = drain(&mut server);
        let id = std::str::from_utf8(&started[16..started.len() - 1]).ok();
        let tx = id.and_then(|id| id.parse().ok()).expect("a transaction id");
        server.handle_request(now, conn, Packet::new(0, tx, state.clone()));
        drain(&mut server);
        let end = Request::TransactionEnd { commit: true };
        server.handle_request(now, conn, Packet::new(0, tx, end));
        drain(&mut server);
        server.handle_request(now, conn, request(guest.clone()));
        drain(&mut server)
    });
}
