//! The xenbus handshake and `xsio-device`'s removal, through `xsio-io-std`'s L2 driver,
//! with Xen 4.17's own C xenstored as the store (run without a hypervisor under the
//! testkit's shim): the toolstack and our `Backend` on dom0's socket, our `Frontend` as a
//! real unprivileged guest (domain 1) over its xenstore ring. Xen's permission code, not
//! ours, decides what the guest may read and write.

mod xenbus_std;

use xenbus_std::{drive, toolstack};
use xsio_device::BackendEnd;
use xsio_harness::Harness;
use xsio_io_std::l2::XsLinks;
use xsio_io_std::unix::UnixConn;
use xsio_io_std::xenstore::{XsConn, XsError};
use xsio_ops::{Reply, XsOp};
use xsio_testkit::block;
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{Flavour, World, XenStored};
use xsio_testkit::xenbus::{Machine, add_ends, both_in, completion_of, removal_of, start_removal};
use xsio_xenbus::XenbusState;
use xsio_xs_wire::{Access, ErrorKind, Perm};

const BACKEND: &str = "/local/domain/0/backend/qdisk/1/51712";
const FRONTEND: &str = "/local/domain/1/device/vbd/51712";

/// The toolstack creates a disk, our backend (dom0) and frontend (guest 1 over its ring)
/// run the handshake to Connected; what each side wrote is read back, and the guest is
/// refused the backend's directory for writing; then `xsio-device` removes the device
/// (online=0 and Closing, the waits, the prune) and both machines stop.
fn handshake_and_removal_with_a_guest_over_its_ring() {
    let world = World::new().expect("cc is there: the harness checked");
    let daemon = XenStored::start(&world, Flavour::C, &[]).expect("checked by the harness");
    let connect = || XsConn::connect(daemon.socket()).expect("connect to Xen's xenstored");
    let mut dom0 = connect();
    // The guest's home, owned by it, as a toolstack makes it before INTRODUCE.
    dom0.write("/local/domain/1", "").unwrap();
    dom0.set_perms("/local/domain/1", &[Perm::new(Access::None, 1)])
        .unwrap();
    let ring = daemon.introduce(1).expect("introduce guest 1");
    let guest = XsConn::from_conn(
        UnixConn::from_stream(ring),
        xsio_xs_client::Config::default(),
    );

    let start = xsio_io_std::unix::now();
    let mut world_: Harness<Machine> = Harness::new(start);
    let host = xsio_io_std::host::Host::new()
        .domain_info(|_| Ok(xsio_ops::DomainState::Running))
        .device_model(|_| Some(true));
    let mut links = XsLinks::default().with_host(host);
    let tool = links.add(&mut world_, connect());
    let back = links.add(&mut world_, connect());
    let front = links.add(&mut world_, guest);
    let w = &mut world_;

    let disk = block::disk();
    let (areas, create) = block::create(&disk);
    assert_eq!(
        toolstack(&mut links, tool, XsOp::Transaction(create)),
        Ok(Reply::Committed)
    );
    let (b, f) = add_ends(w, back, front, block::ends(&disk, &areas, 0, start));
    drive(w, &mut links, |w| {
        both_in(w, (b, f), XenbusState::Connected)
    });

    // What dom0 reads: the backend's keys, and the frontend's, written by the guest.
    let read =
        |c: &mut XsConn, path: &str| String::from_utf8(c.read(path).unwrap().to_vec()).unwrap();
    assert_eq!(read(&mut dom0, &format!("{BACKEND}/state")), "4");
    assert_eq!(read(&mut dom0, &format!("{BACKEND}/sectors")), "2048");
    for (key, value) in [
        ("state", "4"),
        ("ring-ref", "8"),
        ("event-channel", "3"),
        ("protocol", "x86_64-abi"),
    ] {
        assert_eq!(
            read(&mut dom0, &format!("{FRONTEND}/{key}")),
            value,
            "{key}"
        );
    }
    // Xen's permissions, as the guest meets them over its ring: it reads the backend
    // (r1), may not write there, and owns its frontend directory.
    let guest = links.conn_mut(front).unwrap();
    assert_eq!(
        read(guest, &format!("{BACKEND}/state")),
        "4",
        "the guest reads its backend"
    );
    match guest.write(&format!("{BACKEND}/state"), "6") {
        Err(err @ XsError::Op(_)) => assert_eq!(err.xs_kind(), Some(ErrorKind::Eacces)),
        other => panic!("the guest wrote its backend: {other:?}"),
    }
    assert_eq!(
        guest.get_perms(FRONTEND).unwrap(),
        vec![Perm::new(Access::None, 1), Perm::new(Access::Read, 0)]
    );

    // The removal: xsio-device's, the guest running and its backend alive.
    let removal = start_removal(w, tool, disk.devid());
    drive(w, &mut links, |w| completion_of(w, removal).is_some());
    let removed = removal_of(w, removal);
    assert!(removed.pruned);
    assert_eq!(removed.result.map(|r| r.backend), Ok(BackendEnd::Closed));
    // Both machines see their directories go and stop; nothing of the device is left.
    drive(w, &mut links, |w| {
        [b, f].iter().all(|&id| match w.actor(id) {
            Machine::Backend(m) => m.is_stopped(),
            Machine::Frontend(m) => m.is_stopped(),
            Machine::Device(_) => true,
        })
    });
    for gone in [
        BACKEND,
        FRONTEND,
        "/local/domain/0/backend",
        "/local/domain/1/device",
        "/libxl/1",
    ] {
        assert!(!dom0.exists(gone).unwrap(), "{gone} is left");
    }
    assert!(
        dom0.exists("/local/domain/1").unwrap(),
        "the guest's home stays"
    );
}

// The test, with Xen's C xenstored under the shim.
const TESTS: &[(&str, fn())] =
    xsio_testkit::tests![handshake_and_removal_with_a_guest_over_its_ring];

fn main() -> std::process::ExitCode {
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let xen = Peer::file(Flavour::C.program());
    Tests::new().each(&[&cc, &xen], TESTS).run()
}
