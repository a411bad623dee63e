//! Our xenstore client (`xsio-xs-client` through `xsio-io-std`'s `XsConn`) against Xen 4.17's
//! own C xenstored, run without a hypervisor under the testkit's shim: dom0 on its socket,
//! a guest over a real ring (bridged to a socket, so the client runs over it unchanged).

use std::time::Duration;

use xsio_io_std::unix::{UnixConn, now};
use xsio_io_std::xenstore::{XsConn, XsError};
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{Flavour, World, XenStored};
use xsio_xs_client::Config;
use xsio_xs_wire::{Access, ErrorKind, Perm};

// The tests `main` runs, each with Xen's C xenstored under the shim.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    transactions_retry_on_real_eagain,
    a_guest_transaction_retries_over_its_ring,
    a_guest_watch_sees_dom0_writes,
    a_large_directory_comes_in_chunks,
    a_guest_is_refused_what_it_may_not_see
];

fn daemon() -> (World, XenStored) {
    let world = World::new().expect("cc is there: the harness checked");
    let daemon = XenStored::start(&world, Flavour::C, &[]).expect("xenstored is there");
    (world, daemon)
}

fn dom0(daemon: &XenStored) -> XsConn {
    XsConn::connect(daemon.socket()).expect("connect to Xen's xenstored")
}

/// Guest `domid` with its home (owned by it, as a toolstack makes it), over its ring.
fn guest(daemon: &XenStored, domid: u32) -> XsConn {
    let mut toolstack = dom0(daemon);
    let home = format!("/local/domain/{domid}");
    toolstack.write(&home, "").unwrap();
    toolstack
        .set_perms(&home, &[Perm::new(Access::None, domid)])
        .unwrap();
    let ring = daemon.introduce(domid).expect("introduce the guest");
    XsConn::from_conn(UnixConn::from_stream(ring), Config::default())
}

/// Runs a transaction on `conn` that reads number `path` and writes `next` of it back,
/// `meddle` (someone else's write) running in its first attempt only; the attempts taken.
fn meddled_transaction(
    conn: &mut XsConn,
    path: &str,
    next: impl Fn(u32) -> u32,
    mut meddle: impl FnMut(),
) -> u32 {
    let mut attempts = 0;
    conn.transaction(|tx| {
        attempts += 1;
        let value: u32 = tx.get(path)?;
        if attempts == 1 {
            meddle();
        }
        tx.set(path, &next(value))
    })
    .unwrap();
    attempts
}

/// Guest 1 over its ring and a dom0 toolstack, on a fresh daemon (kept with its world).
fn guest_1_and_dom0() -> (World, XenStored, XsConn, XsConn) {
    let (world, d) = daemon();
    let (guest, toolstack) = (guest(&d, 1), dom0(&d));
    (world, d, guest, toolstack)
}

/// A transaction whose read an outside write invalidates gets Xen's real EAGAIN at commit;
/// `XsConn::transaction` runs the body again and the second commit succeeds.
fn transactions_retry_on_real_eagain() {
    let (_world, d) = daemon();
    let mut a = dom0(&d);
    let mut b = dom0(&d);
    a.write("/counter", "1").unwrap();
    // The write under the transaction's feet.
    let meddle = || b.write("/counter", "10").unwrap();
    let attempts = meddled_transaction(&mut a, "/counter", |value| value + 1, meddle);
    assert_eq!(attempts, 2);
    assert_eq!(a.get::<u32>("/counter").unwrap(), 11);
}

/// The same, from a guest over its ring.
fn a_guest_transaction_retries_over_its_ring() {
    let (_world, _d, mut g, mut toolstack) = guest_1_and_dom0();
    g.write("data/n", "5").unwrap();
    let meddle = || toolstack.write("/local/domain/1/data/n", "7").unwrap();
    let attempts = meddled_transaction(&mut g, "data/n", |value| value * 2, meddle);
    assert_eq!(attempts, 2);
    assert_eq!(toolstack.get::<u32>("/local/domain/1/data/n").unwrap(), 14);
}

/// A guest's watch (relative path) fires at once, then for a change dom0 makes, with the
/// path relative to its home; after the unwatch nothing more comes.
fn a_guest_watch_sees_dom0_writes() {
    let (_world, _d, mut g, mut toolstack) = guest_1_and_dom0();
    let deadline = || now().checked_add(Duration::from_secs(5));
    let watch = g.watch("device", "dev").unwrap();
    let first = g
        .next_event(deadline())
        .unwrap()
        .expect("the initial event");
    assert_eq!((first.path(), first.token()), ("device", "dev"));
    toolstack.write("/local/domain/1/device/vbd", "").unwrap();
    let event = g
        .next_event(deadline())
        .unwrap()
        .expect("an event for dom0's write");
    assert_eq!(event.path(), "device/vbd");
    g.unwatch(watch).unwrap();
    toolstack.write("/local/domain/1/device/vif", "").unwrap();
    let quiet = now().checked_add(Duration::from_millis(300));
    assert_eq!(g.next_event(quiet).unwrap(), None);
}

/// A directory whose names do not fit one reply: Xen answers DIRECTORY with E2BIG and our
/// client lists it in DIRECTORY_PART chunks, every name once, in Xen's order.
fn a_large_directory_comes_in_chunks() {
    let (_world, d) = daemon();
    let mut c = dom0(&d);
    let names: Vec<String> = (0..120)
        .map(|i| format!("{i:03}-{}", "n".repeat(56)))
        .collect();
    c.transaction(|tx| {
        for name in &names {
            tx.write(&format!("/big/{name}"), "")?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(c.directory("/big").unwrap(), names);
}

/// Xen's permission check reaches our client as a typed error.
fn a_guest_is_refused_what_it_may_not_see() {
    let (_world, d) = daemon();
    let mut toolstack = dom0(&d);
    toolstack.write("/vm/secret", "key").unwrap();
    let mut g = guest(&d, 2);
    match g.read("/vm/secret") {
        Err(err @ XsError::Op(_)) => assert_eq!(err.xs_kind(), Some(ErrorKind::Eacces)),
        other => panic!("expected EACCES, got {other:?}"),
    }
}

fn main() -> std::process::ExitCode {
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let xen = Peer::file(Flavour::C.program());
    let needs: &[&Peer] = &[&cc, &xen];
    Tests::new().each(needs, TESTS).run()
}
