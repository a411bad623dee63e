//! The shim and launchers of `xsio_testkit::xen` against Xen's real daemons: dom0 on the
//! socket, guests over real rings, a dying domain released.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{Flavour, World, XenStored};

// The tests with Xen's C xenstored.
const ON_C: &[(&str, fn())] = xsio_testkit::tests![
    c_xenstored_guests_talk_over_rings,
    c_xenstored_releases_a_dying_domain
];

// The same tests with oxenstored.
const ON_OCAML: &[(&str, fn())] = xsio_testkit::tests![
    oxenstored_guests_talk_over_rings,
    oxenstored_releases_a_dying_domain
];

const WRITE: u32 = 11;
const READ: u32 = 2;
const WATCH: u32 = 4;
const GET_PERMS: u32 = 3;
const SET_PERMS: u32 = 14;
const WATCH_EVENT: u32 = 15;
const ERROR: u32 = 16;

fn send(stream: &mut UnixStream, kind: u32, req_id: u32, payload: &[u8]) {
    let mut frame = Vec::new();
    for word in [kind, req_id, 0, payload.len() as u32] {
        frame.extend_from_slice(&word.to_le_bytes());
    }
    frame.extend_from_slice(payload);
    stream.write_all(&frame).unwrap();
}

fn recv(stream: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).unwrap();
    let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let mut payload = vec![0; word(3) as usize];
    stream.read_exact(&mut payload).unwrap();
    (word(0), word(1), payload)
}

fn call(stream: &mut UnixStream, kind: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    send(stream, kind, 7, payload);
    let (kind, req_id, payload) = recv(stream);
    assert_eq!(req_id, 7);
    (kind, payload)
}

/// Dom0 writes a guest's home, the guest reads and writes through its ring (values larger
/// than the 1 KiB ring included), and permissions are the daemon's own.
fn guests_talk_over_rings(flavour: Flavour) {
    let Some(world) = World::new() else { return };
    let Some(daemon) = XenStored::start(&world, flavour, &[]) else {
        return;
    };
    let mut dom0 = UnixStream::connect(daemon.socket()).unwrap();
    for domid in [1, 2] {
        let home = format!("/local/domain/{domid}\0");
        assert_eq!(call(&mut dom0, WRITE, home.as_bytes()).0, WRITE);
        let perms = format!("/local/domain/{domid}\0n{domid}\0");
        assert_eq!(
            call(&mut dom0, SET_PERMS, perms.as_bytes()),
            (SET_PERMS, b"OK\0".to_vec())
        );
    }
    let mut guest1 = daemon.introduce(1).unwrap();
    let mut guest2 = daemon.introduce(2).unwrap();

    let big: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut write = b"data/big\0".to_vec();
    write.extend_from_slice(&big);
    for _ in 0..3 {
        // Several times round the ring, so its indexes wrap.
        assert_eq!(call(&mut guest1, WRITE, &write), (WRITE, b"OK\0".to_vec()));
        assert_eq!(call(&mut guest1, READ, b"data/big\0"), (READ, big.clone()));
    }
    assert_eq!(
        call(&mut guest1, GET_PERMS, b"data/big\0"),
        (GET_PERMS, b"n1\0".to_vec())
    );
    // The other guest may not look: the daemon's own permission check.
    assert_eq!(
        call(&mut guest2, READ, b"/local/domain/1/data/big\0"),
        (ERROR, b"EACCES\0".to_vec())
    );
    assert_eq!(
        call(&mut dom0, READ, b"/local/domain/1/data/big\0"),
        (READ, big)
    );
}

fn c_xenstored_guests_talk_over_rings() {
    guests_talk_over_rings(Flavour::C);
}

fn oxenstored_guests_talk_over_rings() {
    guests_talk_over_rings(Flavour::OCaml);
}

/// A domain the hypervisor reports dying is released by the daemon: dom0's
/// `@releaseDomain` watch fires, and the guest's connection is gone.
fn dying_domain_is_released(flavour: Flavour) {
    let Some(world) = World::new() else { return };
    let Some(daemon) = XenStored::start(&world, flavour, &[]) else {
        return;
    };
    let mut dom0 = UnixStream::connect(daemon.socket()).unwrap();
    let _guest = daemon.introduce(3).unwrap();
    send(&mut dom0, WATCH, 1, b"@releaseDomain\0rel\0");
    let mut initial = 0;
    for _ in 0..2 {
        let (kind, _, payload) = recv(&mut dom0);
        if kind == WATCH_EVENT {
            assert_eq!(payload, b"@releaseDomain\0rel\0");
            initial += 1;
        }
    }
    assert_eq!(initial, 1);
    world.kill_domain(3).unwrap();
    let (kind, _, payload) = recv(&mut dom0);
    assert_eq!(
        (kind, payload),
        (WATCH_EVENT, b"@releaseDomain\0rel\0".to_vec())
    );
    let (kind, payload) = call(&mut dom0, 17, b"3\0"); // IS_DOMAIN_INTRODUCED
    assert_eq!((kind, payload), (17, b"F\0".to_vec()));
}

fn c_xenstored_releases_a_dying_domain() {
    dying_domain_is_released(Flavour::C);
}

fn oxenstored_releases_a_dying_domain() {
    dying_domain_is_released(Flavour::OCaml);
}

fn main() -> std::process::ExitCode {
    // The shim is C compiled at test time; each test then runs one of Xen's daemons.
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let c = Peer::file(Flavour::C.program());
    let ocaml = Peer::file(Flavour::OCaml.program());
    Tests::new()
        .each(&[&cc, &c], ON_C)
        .each(&[&cc, &ocaml], ON_OCAML)
        .run()
}
