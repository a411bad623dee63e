//! Multidev: every device of a domain removed in parallel, one completion with each
//! device's result.

mod common;

use std::time::Duration;

use common::*;
use xsio_device::{
    BackendEnd, Completion, Config, Device, DeviceEvent, Force, MultiDev, MultiDone, MultiError,
    MultiEvent, Removal, RemoveError,
};
use xsio_harness::ActorId;
use xsio_ops::{DomainState, OpErrorKind, ProcessExit};

type Multi = World<MultiDev>;

fn result(w: &Multi, id: ActorId) -> MultiDone {
    match w.h.actor(id).result() {
        Some(Ok(done)) => done.clone(),
        other => panic!("not done: {other:?}"),
    }
}

fn removal(done: &MultiDone, device: &Device) -> Removal {
    match done.devices.iter().find(|(d, _)| d == device) {
        Some((_, Completion::Removed(r))) => r.clone(),
        other => panic!("{device}: {other:?}"),
    }
}

fn dones(w: &Multi) -> usize {
    w.saw(|e| matches!(e, MultiEvent::Done(_)))
}

/// Domain destruction: the guest is dying and its QEMU gone; every device at once with
/// force ON. The QEMU disk is bodged at once, the blkback disk waits for its backend, the
/// console is only pruned; an entry without a backend is reported and left.
#[test]
fn destroy_all_removes_every_device_in_parallel_and_completes_once() {
    let mut w: Multi = World::with();
    let (vbd, qdisk) = (vbd(), Device::new("vbd", 1, 51728).with_backend(0, "qdisk"));
    let console = Device::new("console", 1, 0).with_backend(0, "console");
    w.seed(&vbd, "4", "4", None);
    w.seed(&qdisk, "4", "4", None);
    w.write(&console.backend_key("state"), "4");
    w.write("/local/domain/1/console/state", "4");
    w.write(
        &format!("{}/backend", console.toolstack_path()),
        &console.backend_path(),
    );
    w.write(
        "/libxl/1/device/vkbd/0/frontend",
        "/local/domain/1/device/vkbd/0",
    );
    w.host().guest = Some(DomainState::Dying);
    w.host().dm_alive = Some(false);

    let id = w.start(MultiDev::remove_all(
        Config::default(),
        1,
        Force::On,
        w.h.now(),
    ));
    let found = w
        .events
        .iter()
        .find_map(|(_, e)| match e {
            MultiEvent::Found { devices, bad } => Some((devices.clone(), bad.len())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        found,
        (vec![console.clone(), vbd.clone(), qdisk.clone()], 1)
    );
    // In parallel: the QEMU disk and the console are done while blkback still closes.
    assert!(w.h.actor(id).ops()[2].is_done());
    assert!(!w.h.actor(id).ops()[1].is_done());
    assert_eq!(dones(&w), 0);
    w.advance(Duration::from_millis(200));
    w.write(&vbd.backend_key("state"), "6");
    w.drive();

    assert_eq!(dones(&w), 1);
    let done = result(&w, id);
    assert!(!done.is_ok(), "the bad entry is reported");
    assert_eq!(done.bad_entries.len(), 1);
    assert_eq!(
        removal(&done, &vbd).result.unwrap().backend,
        BackendEnd::Closed
    );
    assert_eq!(
        removal(&done, &qdisk).result.unwrap().backend,
        BackendEnd::Bodged
    );
    assert_eq!(
        removal(&done, &console).result.unwrap().backend,
        BackendEnd::NotNegotiated
    );
    assert_eq!(
        w.tree("/libxl/1"),
        [
            "/libxl/1",
            "/libxl/1/device",
            "/libxl/1/device/vkbd",
            "/libxl/1/device/vkbd/0",
            "/libxl/1/device/vkbd/0/frontend"
        ]
    );
    assert_eq!(w.tree("/local/domain/1"), ["/local/domain/1"]);
    assert_eq!(w.read("/local/domain/0/backend"), None);
}

#[test]
fn a_domain_without_devices_completes_at_once() {
    let mut w: Multi = World::with();
    let id = w.start(MultiDev::remove_all(
        Config::default(),
        9,
        Force::On,
        w.h.now(),
    ));
    assert_eq!(
        w.h.actor(id).result(),
        Some(&Ok(MultiDone {
            devices: vec![],
            bad_entries: vec![]
        }))
    );
    assert_eq!(dones(&w), 1);
}

#[test]
fn a_listing_error_completes_with_it() {
    let mut w: Multi = World::with();
    w.seed(&vbd(), "4", "4", None);
    w.faults().add(1, OpErrorKind::Access, |op| {
        matches!(op, xsio_ops::Op::Xs(xsio_ops::XsOp::Directory { path }) if path == "/libxl/1/device/vbd")
    });
    let id = w.start(MultiDev::remove_all(
        Config::default(),
        1,
        Force::On,
        w.h.now(),
    ));
    assert!(matches!(
        w.h.actor(id).result(),
        Some(Err(MultiError::Enumerate { path, .. })) if path == "/libxl/1/device/vbd"
    ));
}

/// Each device's script is killed by its own Spawn's id: the ids of the operations are
/// mapped to the multi's own.
#[test]
fn hanging_scripts_of_several_devices_are_each_killed() {
    let mut w: Multi = World::with();
    let devices = [
        vbd(),
        Device::new("vbd", 1, 51728),
        Device::new("vbd", 1, 51744),
    ];
    for d in &devices {
        w.seed(d, "6", "6", Some("/etc/xen/scripts/block"));
    }
    for _ in &devices {
        w.host().scripts.push_back(Script::Hang);
    }
    let id = w.start(MultiDev::remove_all(
        Config::default(),
        1,
        Force::On,
        w.h.now(),
    ));
    assert_eq!(w.host().spawned.len(), 3, "all at once");
    w.advance(Duration::from_secs(41));
    assert_eq!(w.host().kills, 3);
    let done = result(&w, id);
    for d in &devices {
        let Err(RemoveError::Scripts(f)) = removal(&done, d).result else {
            panic!("{d}");
        };
        assert_eq!(
            f[0].exit,
            ProcessExit::Signalled(9),
            "{d}: its own script was killed"
        );
    }
    assert_eq!(w.host().still_running(), 0);
}

#[test]
fn add_all_adds_in_parallel() {
    use xsio_device::disk::{DiskBackend, DiskSpec};
    let mut w: Multi = World::with();
    let specs: Vec<_> = ["xvda", "xvdb"]
        .iter()
        .map(|vdev| {
            DiskSpec::parse(&format!("vdev={vdev},target=/srv/{vdev}.img"))
                .unwrap()
                .add_spec(1, 0, DiskBackend::Qdisk, "")
        })
        .collect();
    let id = w.start(MultiDev::add_all(Config::default(), specs, w.h.now()));
    let done = result(&w, id);
    assert!(done.is_ok());
    assert_eq!(done.devices.len(), 2);
    assert_eq!(
        w.saw(|e| matches!(
            e,
            MultiEvent::Device {
                event: DeviceEvent::Created,
                ..
            }
        )),
        2
    );
}
