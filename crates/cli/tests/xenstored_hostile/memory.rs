//! A guest's memory is bounded across all of its connections: many connections that send
//! requests and never read the replies pin little, and other domains are served as before.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use xsio_xs_wire::{Packet, Reply, Request};

use crate::support::{Client, Launch, Xenstored, guest_home, quota_value};

#[test]
fn non_reading_connections_of_one_guest_stay_within_its_memory_quota() {
    let dir = tempfile::tempdir().unwrap();
    let (d, mut dom0) = Xenstored::start_with_guests(dir.path(), Launch::new().domain(4), &[3]);
    dom0.write("/local/domain/3/big", &"x".repeat(2000));
    let before = d.rss_kib();
    let read = Packet::new(1, 0, Request::Read { path: "big".into() })
        .to_bytes()
        .unwrap();
    let batch: Vec<u8> = read
        .iter()
        .copied()
        .cycle()
        .take(read.len() * 2000)
        .collect();
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut conn = Client::connect(&d.domain_socket(3));
        conn.stream.set_nonblocking(true).unwrap();
        let mut sent = 0;
        // Whatever the sockets take; the guest never reads a reply.
        while sent < batch.len() {
            match conn.stream.write(&batch[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        conns.push(conn);
    }
    std::thread::sleep(Duration::from_secs(2));
    let grown_kib = d.rss_kib().saturating_sub(before);
    assert!(
        grown_kib < 16 * 1024,
        "50 non-reading connections grew the daemon by {grown_kib} KiB"
    );
    let quota = dom0.control(&["quota", "3"]);
    let memory = quota_value(&quota, "memory");
    // The quota, plus at most one read (64 KiB) that took it over.
    assert!(
        memory <= 2_621_440 + 65_536 + 4096,
        "domain 3 holds {memory} bytes: {quota}"
    );
    // dom0 and another guest are served as before.
    assert_eq!(dom0.read("/tool"), Reply::Read("".into()));
    guest_home(&mut dom0, 4);
    let mut other = Client::connect(&d.domain_socket(4));
    other.write("fine", "1");
    drop(conns);
}

#[test]
fn a_guest_past_its_memory_quota_is_not_read_until_it_drops_below() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new().arg("--quota-memory").arg("100000");
    let (d, mut dom0) = Xenstored::start_with_guests(dir.path(), launch, &[3, 4]);
    // Nodes dom0 owns and the guest may read: their events, not the nodes, are the guest's.
    dom0.write("/public", "");
    dom0.chmod("/public", "n0 r3");
    let mut watcher = Client::connect(&d.domain_socket(3));
    watcher.watch("/public", "tok");
    watcher.wait_events(1);
    // dom0's writes queue events for the guest, which reads nothing: far more than its
    // socket holds, so its memory passes the quota.
    let writes = 20_000;
    dom0.flood("/public", writes);
    let memory = quota_value(&dom0.control(&["quota", "3"]), "memory");
    assert!(memory > 100_000, "domain 3 holds only {memory} bytes");
    assert!(d.log().contains("soft memory quota"), "{}", d.log());
    // Its other connection is not read; another guest is served.
    let mut asker = Client::connect(&d.domain_socket(3));
    asker
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    asker.send(
        0,
        Request::Read {
            path: "/public".into(),
        },
    );
    let mut byte = [0u8; 1];
    let waited = std::io::Read::read(&mut asker.stream, &mut byte);
    assert!(waited.is_err(), "a guest past its quota was answered");
    let mut other = Client::connect(&d.domain_socket(4));
    other.write("fine", "1");
    // Once the watcher reads its events, the guest is below the quota and answered.
    watcher.wait_events(1 + writes);
    asker
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(asker.reply().unwrap().body, Reply::Read("".into()));
}
