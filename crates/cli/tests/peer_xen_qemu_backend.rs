//! Our xenbus `Frontend` machine (guest 1, on `xsio xenstored`'s domain socket) against
//! QEMU's real Xen PV block backend (`qemu-system-xen`, `-machine xenpv`, `xen-disk`) on
//! our daemon, QEMU running without a hypervisor under the testkit's shim: the ring page is
//! in the guest's memory file, the event channel a pair of FIFOs.

mod common;

use std::time::Duration;

use common::Daemon;
use xsio_harness::Harness;
use xsio_io_std::l2::{XsLinks, run_until};
use xsio_io_std::unix::now;
use xsio_io_std::xenstore::XsConn;
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{EventChannel, GuestMemory, World, XEN_QEMU, XenQemu};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Frontend, FrontendEvent, XenbusState};

xsio_harness::actors! {
    /// The one machine of the test.
    enum Machine / Event {
        Frontend(Frontend, FrontendEvent),
    }
}

const RING_REF: u32 = 8;
const PORT: u32 = 5;
const BACKEND: &str = "/local/domain/0/backend/qdisk/1/51712";

fn frontend_state(world: &Harness<Machine>, id: xsio_harness::ActorId) -> XenbusState {
    let Machine::Frontend(f) = world.actor(id);
    f.state()
}

/// The backend's state as dom0 reads it (Unknown when gone).
fn backend_state(dom0: &mut XsConn) -> XenbusState {
    dom0.read(&format!("{BACKEND}/state"))
        .ok()
        .and_then(|v| XenbusState::parse(std::str::from_utf8(&v).ok()?).ok())
        .unwrap_or(XenbusState::Unknown)
}

/// QEMU's backend reaches InitWait by itself; our frontend publishes its ring and event
/// channel and QEMU connects (Connected on both ends); the frontend closes and QEMU follows
/// to Closed.
fn frontend_connects_and_closes_with_qemu() {
    let d = Daemon::start(&[1], &[]);
    let world = World::new().expect("cc is there: the harness checked");
    let _memory = GuestMemory::create(&world, 1, 16).unwrap();
    let _channel = EventChannel::open(&world, 1, PORT).unwrap();
    let image = world.path("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let qemu = XenQemu::builder(&world, &d.socket, 1)
        .disk(&image, "xvda")
        .start()
        .expect("qemu-system-xen is there: the harness checked");
    let mut dom0 = XsConn::connect(&d.socket).unwrap();
    let waited = now() + Duration::from_secs(20);
    while backend_state(&mut dom0) != XenbusState::InitWait {
        assert!(
            now() < waited,
            "QEMU's backend never reached InitWait: {}",
            qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        image.to_str().unwrap(),
        Mode::ReadWrite,
    );
    let transport = BlockTransport {
        ring_ref: RING_REF,
        event_channel: PORT,
        protocol: Some(Protocol::X86_64),
    };
    let start = now();
    let mut harness: Harness<Machine> = Harness::new(start);
    let mut links = XsLinks::default();
    let front = links.add(&mut harness, XsConn::connect(d.domain_socket(1)).unwrap());
    let frontend = Frontend::new(disk.frontend_config(disk.areas(0, 1), &transport), start);
    let id = harness.add(front, Machine::Frontend(frontend));
    harness.drain(id);
    run_until(&mut harness, &mut links, Duration::from_secs(20), |w| {
        frontend_state(w, id) == XenbusState::Connected
    })
    .unwrap_or_else(|e| panic!("not connected ({e:?}): {}", qemu.log()));
    assert_eq!(backend_state(&mut dom0), XenbusState::Connected);

    let at = harness.now();
    let Machine::Frontend(f) = harness.actor_mut(id);
    f.close(at);
    harness.drain(id);
    run_until(&mut harness, &mut links, Duration::from_secs(20), |w| {
        frontend_state(w, id) == XenbusState::Closed
    })
    .unwrap_or_else(|e| panic!("not closed ({e:?}): {}", qemu.log()));
    let waited = now() + Duration::from_secs(10);
    while backend_state(&mut dom0) != XenbusState::Closed {
        assert!(
            now() < waited,
            "QEMU's backend never reached Closed: {}",
            qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(qemu);
}

fn main() -> std::process::ExitCode {
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let qemu = Peer::file(XEN_QEMU);
    Tests::new()
        .test(
            "frontend_connects_and_closes_with_qemu",
            &[&cc, &qemu],
            frontend_connects_and_closes_with_qemu,
        )
        .run()
}
