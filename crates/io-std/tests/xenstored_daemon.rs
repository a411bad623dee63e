//! The daemon loop with real sockets: one slow or flooding client never blocks the others,
//! and a client that stops reading is disconnected once its unread output passes the bound.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use xsio_xs_wire::{Header, Packet, Request};

use common::Daemon;

fn send(stream: &mut UnixStream, request: Request) {
    stream
        .write_all(&Packet::new(7, 0, request).to_bytes().unwrap())
        .unwrap();
}

/// Reads one message: (type, payload).
fn recv(stream: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).unwrap();
    let header: Header = xsio_xs_wire::parse_header(&head).unwrap();
    let mut body = vec![0u8; header.len as usize];
    stream.read_exact(&mut body).unwrap();
    (header.msg_type, body)
}

fn write(stream: &mut UnixStream, path: &str, value: &str) {
    send(
        stream,
        Request::Write {
            path: path.into(),
            value: value.to_owned().into(),
        },
    );
    assert_eq!(recv(stream), (11, b"OK\0".to_vec()));
}

#[test]
fn a_client_that_stops_reading_is_kept_blocks_nobody_and_gets_every_event() {
    let daemon = Daemon::start();
    let mut slow = daemon.connect();
    send(
        &mut slow,
        Request::Watch {
            path: "/".into(),
            token: "t".into(),
        },
    );
    assert_eq!(recv(&mut slow).0, 4, "watch acknowledged");
    // From now on `slow` reads nothing while every write queues an event for it: about
    // 5 MB of events, far more than the socket buffers hold.
    let mut fast = daemon.connect();
    let value = "v".repeat(200);
    let writes = 20_000;
    for i in 0..writes {
        write(
            &mut fast,
            &format!("/flood/node-with-a-long-name-{i}"),
            &value,
        );
    }
    // The slow dom0 client was kept: it gets its first event, then every other one.
    let mut events = 0;
    while events < writes + 1 {
        assert_eq!(recv(&mut slow).0, 15);
        events += 1;
    }
    let (result, state) = daemon.stop();
    result.unwrap();
    assert!(
        String::from_utf8_lossy(&state).contains("/flood/node-with-a-long-name-19999 "),
        "state saved on stop"
    );
}

#[test]
fn a_flooding_client_does_not_delay_others() {
    let daemon = Daemon::start();
    let flooder = daemon.connect();
    let mut flood_writer = flooder.try_clone().unwrap();
    // 200 000 READs written without reading a reply: the daemon stops reading this client
    // once its replies back up, and the writer blocks in its own socket.
    let flood = std::thread::spawn(move || {
        let read = Packet::new(
            1,
            0,
            Request::Read {
                path: "/tool".into(),
            },
        )
        .to_bytes()
        .unwrap();
        let mut batch = Vec::new();
        for _ in 0..1000 {
            batch.extend_from_slice(&read);
        }
        for _ in 0..200 {
            if flood_writer.write_all(&batch).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut other = daemon.connect();
    for i in 0..200 {
        write(&mut other, &format!("/other/{i}"), "x");
    }
    // Shutting the socket down unblocks the flooding writer.
    flooder.shutdown(std::net::Shutdown::Both).unwrap();
    let _ = flood.join();
    let (result, _) = daemon.stop();
    result.unwrap();
}
