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
const FRONTEND: &str = "/local/domain/1/device/vbd/51712";

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

/// A guest's disk served by QEMU on our daemon, its frontend ours, Connected on both ends.
struct Setup {
    d: Daemon,
    qemu: XenQemu,
    dom0: XsConn,
    harness: Harness<Machine>,
    links: XsLinks,
    id: xsio_harness::ActorId,
    _world: World,
    _memory: GuestMemory,
    _channel: EventChannel,
}

/// QEMU's backend reaches InitWait by itself; our frontend publishes its ring and event
/// channel and QEMU connects.
fn connected() -> Setup {
    let d = Daemon::start(&[1], &[]);
    let world = World::new().expect("cc is there: the harness checked");
    let memory = GuestMemory::create(&world, 1, 16).unwrap();
    let channel = EventChannel::open(&world, 1, PORT).unwrap();
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
    Setup {
        d,
        qemu,
        dom0,
        harness,
        links,
        id,
        _world: world,
        _memory: memory,
        _channel: channel,
    }
}

/// Connected, then the frontend closes and QEMU follows to Closed.
fn frontend_connects_and_closes_with_qemu() {
    let mut s = connected();
    let at = s.harness.now();
    let Machine::Frontend(f) = s.harness.actor_mut(s.id);
    f.close(at);
    s.harness.drain(s.id);
    let id = s.id;
    run_until(&mut s.harness, &mut s.links, Duration::from_secs(20), |w| {
        frontend_state(w, id) == XenbusState::Closed
    })
    .unwrap_or_else(|e| panic!("not closed ({e:?}): {}", s.qemu.log()));
    let waited = now() + Duration::from_secs(10);
    while backend_state(&mut s.dom0) != XenbusState::Closed {
        assert!(
            now() < waited,
            "QEMU's backend never reached Closed: {}",
            s.qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The toolstack's unplug as libxl does it (backend `online=0` and `state=5` in one
/// transaction): QEMU writes Closed and at once deletes both directories. Our frontend,
/// which only sees watch events, follows: it ends stopped, and nothing of the device is
/// left in the store.
fn toolstack_unplug_ends_the_frontend() {
    let mut s = connected();
    s.dom0
        .transaction(|tx| {
            tx.write(&format!("{BACKEND}/online"), "0")?;
            tx.write(&format!("{BACKEND}/state"), "5")
        })
        .unwrap();
    let id = s.id;
    run_until(&mut s.harness, &mut s.links, Duration::from_secs(20), |w| {
        let Machine::Frontend(f) = w.actor(id);
        f.is_stopped()
    })
    .unwrap_or_else(|e| panic!("frontend not stopped ({e:?}): {}", s.qemu.log()));
    let waited = now() + Duration::from_secs(10);
    while s.dom0.exists(BACKEND).unwrap() || s.dom0.exists(FRONTEND).unwrap() {
        assert!(
            now() < waited,
            "QEMU left the directories: {}",
            s.qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s.d);
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
        .test(
            "toolstack_unplug_ends_the_frontend",
            &[&cc, &qemu],
            toolstack_unplug_ends_the_frontend,
        )
        .run()
}
