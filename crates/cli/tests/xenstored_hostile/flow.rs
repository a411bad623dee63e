//! Watch-event flow control: a client that reads is never disconnected for a burst; a
//! guest that does not read loses events after the timeout, counted.

use std::time::Duration;

use xsio_xs_wire::{Reply, Request};

use crate::support::{Client, Launch, Xenstored, quota_value};

#[test]
fn a_guest_transaction_burst_never_cuts_off_a_reading_dom0() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _dom0) = Xenstored::start_with_guests(dir.path(), Launch::new(), &[3]);
    let mut guest = Client::connect(&d.domain_socket(3));
    let nodes = 900;
    // Nine directories of a hundred: a guest node may list only 2048 bytes of children.
    let node = |i: usize| format!("d{}/k{}", i / 100, i % 100);
    for i in 0..nodes {
        guest.write(&node(i), "1");
    }
    // A toolstack watching the whole store and this guest's home: two events per node.
    let mut watcher = Client::connect(&d.socket);
    watcher.watch("/", "all");
    watcher.watch("/local/domain/3", "home");
    watcher.wait_events(2);
    // One commit rewriting every node: its events reach the watcher all at once.
    let tx = match guest.call(0, Request::TransactionStart) {
        Reply::TransactionStart(tx) => tx,
        other => panic!("{other:?}"),
    };
    guest.pipelined_writes(tx, (0..nodes).map(node), "2");
    assert_eq!(
        guest.call(tx, Request::TransactionEnd { commit: true }),
        Reply::TransactionEnd
    );
    watcher.wait_events(2 + 2 * nodes);
    assert_eq!(
        watcher.read("/local/domain/3/d0/k0"),
        Reply::Read("2".into()),
        "the watcher is still connected"
    );
}

#[test]
fn a_guest_watching_with_many_watches_is_not_cut_by_its_own_pipelined_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _dom0) = Xenstored::start_with_guests(dir.path(), Launch::new(), &[3]);
    let mut watcher = Client::connect(&d.domain_socket(3));
    for i in 0..128 {
        watcher.watch("data", &format!("t{i}"));
    }
    watcher.wait_events(128);
    let mut writer = Client::connect(&d.domain_socket(3));
    let writes = 16;
    writer.pipelined_writes(0, (0..writes).map(|i| format!("data/k{i}")), "v");
    watcher.wait_events(128 + 128 * writes);
    assert_eq!(watcher.read("data/k0"), Reply::Read("v".into()));
}

#[test]
fn unread_guest_events_are_dropped_after_the_timeout_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new().arg("--watch-event-timeout").arg("1");
    let (d, mut dom0) = Xenstored::start_with_guests(dir.path(), launch, &[3]);
    let mut guest = Client::connect(&d.domain_socket(3));
    guest.watch("x", "tok");
    guest.wait_events(1);
    // dom0 writes far more than the guest's socket holds; the guest reads nothing.
    let writes = 20_000;
    dom0.flood("/local/domain/3/x", writes);
    std::thread::sleep(Duration::from_millis(2500));
    let quota = dom0.control(&["quota", "3"]);
    let dropped = quota_value(&quota, "dropped events") as usize;
    assert!(dropped > 0, "nothing dropped: {quota}");
    // The guest is still connected and gets exactly what was not dropped.
    let marker = Request::Read { path: "x".into() };
    let req = guest.send(0, marker);
    let reply = guest.reply().unwrap();
    assert_eq!(reply.req_id, req);
    assert_eq!(guest.events.len() - 1, writes - dropped, "{quota}");
    assert!(
        d.log().contains("dropped"),
        "the drop is logged: {}",
        d.log()
    );
}
