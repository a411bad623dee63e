//! The add table (design note, section 5), one test per row, through the harness with the
//! real xenstored core, a simulated host and deterministic time.

mod common;

use std::time::Duration;

use common::*;
use xsio_device::disk::{DiskBackend, DiskSpec};
use xsio_device::{
    AddError, AddSpec, Added, Completion, Config, Device, DeviceEvent, DeviceOp, TxnKind, WaitFor,
};
use xsio_ops::{OpErrorKind, ProcessExit};
use xsio_xenbus::XenbusState;

const SCRIPT: &str = "/etc/xen/scripts/block";

fn disk(backend: DiskBackend) -> AddSpec {
    DiskSpec::parse("vdev=xvda,format=raw,access=rw,devtype=disk,target=/srv/disk.img")
        .unwrap()
        .add_spec(1, 0, backend, SCRIPT)
}

fn add(world: &mut World, spec: AddSpec) -> xsio_harness::ActorId {
    add_with(world, Config::default(), spec)
}

fn add_with(world: &mut World, config: Config, spec: AddSpec) -> xsio_harness::ActorId {
    let op = DeviceOp::add(config, spec, world.h.now());
    world.start(op)
}

fn added(world: &World, id: xsio_harness::ActorId) -> Result<Added, AddError> {
    match world.completion(id) {
        Some(Completion::Added(result)) => result,
        other => panic!("not a completed add: {other:?}"),
    }
}

#[test]
fn a_txn_writes_the_entry_and_both_directories_as_libxl() {
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    add(&mut w, spec);
    let be = |k: &str| d.backend_key(k);
    let expect = [
        (be("frontend"), d.frontend_path()),
        (be("frontend-id"), "1".to_owned()),
        (be("online"), "1".to_owned()),
        (be("state"), "1".to_owned()),
        (be("params"), "/srv/disk.img".to_owned()),
        (be("script"), SCRIPT.to_owned()),
        (be("mode"), "w".to_owned()),
        (be("dev"), "xvda".to_owned()),
        (be("device-type"), "disk".to_owned()),
        (be("type"), "phy".to_owned()),
        (d.frontend_key("backend"), d.backend_path()),
        (d.frontend_key("backend-id"), "0".to_owned()),
        (d.frontend_key("state"), "1".to_owned()),
        (d.frontend_key("virtual-device"), "51712".to_owned()),
        (
            format!("{}/frontend", d.toolstack_path()),
            d.frontend_path(),
        ),
        (format!("{}/backend", d.toolstack_path()), d.backend_path()),
        (
            format!("{}/params", d.toolstack_path()),
            "/srv/disk.img".to_owned(),
        ),
    ];
    for (path, value) in expect {
        assert_eq!(w.read(&path).as_deref(), Some(value.as_str()), "{path}");
    }
    assert_eq!(w.saw(|e| *e == DeviceEvent::Created), 1);
    assert_eq!(w.asked(is_commit), 1);
}

#[test]
fn a_txn2_an_existing_entry_is_refused_without_writing() {
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    w.write(&format!("{}/backend", d.toolstack_path()), "old");
    let id = add(&mut w, spec);
    assert_eq!(added(&w, id), Err(AddError::Exists(d.toolstack_path())));
    assert_eq!(w.read(&d.backend_path()), None, "nothing written");
    assert_eq!(w.asked(is_commit), 0, "aborted");
}

#[test]
fn a_commit_conflict_is_retried_and_bounded_and_an_error_fails() {
    let mut w = World::new();
    w.faults().add(2, OpErrorKind::Conflict, is_commit);
    let id = add(&mut w, disk(DiskBackend::Qdisk));
    assert_eq!(
        w.saw(|e| matches!(
            e,
            DeviceEvent::Conflict {
                txn: TxnKind::Create,
                ..
            }
        )),
        2
    );
    assert_eq!(added(&w, id), Ok(Added { scripts: 0 }));

    let mut w = World::new();
    w.faults().add(usize::MAX, OpErrorKind::Conflict, is_commit);
    let config = Config {
        transaction_attempts: 3,
        ..Config::default()
    };
    let id = add_with(&mut w, config, disk(DiskBackend::Qdisk));
    assert_eq!(
        added(&w, id),
        Err(AddError::Conflicts {
            txn: TxnKind::Create,
            attempts: 3
        })
    );

    let mut w = World::new();
    w.faults().add(1, OpErrorKind::Quota, is_commit);
    let id = add(&mut w, disk(DiskBackend::Qdisk));
    assert!(matches!(added(&w, id), Err(AddError::Xenstore { .. })));
}

#[test]
fn a_connect_qemu_backend_needs_no_wait_and_no_script() {
    let mut w = World::new();
    let id = add(&mut w, disk(DiskBackend::Qdisk));
    assert_eq!(added(&w, id), Ok(Added { scripts: 0 }));
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Waiting(_))), 0);
    assert!(w.host().spawned.is_empty());
}

#[test]
fn a_wait2_initwait_then_the_add_script() {
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    let id = add(&mut w, spec);
    assert_eq!(w.saw(|e| *e == DeviceEvent::Waiting(WaitFor::BackendUp)), 1);
    w.advance(Duration::from_secs(1));
    w.write(&d.backend_key("state"), "1"); // other values keep it waiting
    assert!(w.completion(id).is_none());
    w.write(&d.backend_key("state"), "2");
    w.drive();
    assert_eq!(added(&w, id), Ok(Added { scripts: 1 }));
    let (argv, env) = &w.host().spawned[0];
    assert_eq!(argv, &[SCRIPT, "add"]);
    assert!(env.contains(&("XENBUS_TYPE".into(), "vbd".into())));
    assert!(
        w.saw(|e| matches!(
            e,
            DeviceEvent::StillWaiting {
                state: XenbusState::Initialising,
                ..
            }
        )) >= 1
    );
}

#[test]
fn a_wait2_absent_error_and_timeout_fail_without_cleanup() {
    // The state node goes away during the add.
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    let id = add(&mut w, spec.clone());
    w.rm(&d.backend_key("state"));
    assert_eq!(added(&w, id), Err(AddError::BackendGone));

    // A read error.
    let mut w = World::new();
    w.faults().add(1, OpErrorKind::Other, |op| {
        is_read_of(op, "/local/domain/0/backend/vbd/1/51712/state")
    });
    let id = add(&mut w, spec.clone());
    assert!(matches!(added(&w, id), Err(AddError::Xenstore { .. })));

    // No InitWait within the init timeout: no force path for an add; nothing removed.
    let mut w = World::new();
    let id = add(&mut w, spec);
    w.advance(Duration::from_secs(11));
    assert_eq!(
        added(&w, id),
        Err(AddError::TimedOut {
            wait: WaitFor::BackendUp,
            last: Some(XenbusState::Initialising)
        })
    );
    assert_eq!(w.areas_left(&d).len(), 3, "A_DONE: no cleanup");
    assert!(w.host().spawned.is_empty());
}

#[test]
fn a_hotplug_backend_in_a_driver_domain_is_done_there() {
    let mut w = World::new();
    let mut spec = disk(DiskBackend::Phy);
    spec.device = Device::new("vbd", 1, 51712).with_backend(3, "vbd");
    let d = spec.device.clone();
    let id = add(&mut w, spec);
    w.write(&d.backend_key("state"), "2");
    assert_eq!(added(&w, id), Ok(Added { scripts: 0 }));
    assert!(w.host().spawned.is_empty());
}

#[test]
fn a_hotplug_no_script_key_is_success() {
    let mut w = World::new();
    let mut spec = disk(DiskBackend::Phy);
    spec.backend_keys.retain(|(k, _)| k != "script");
    let d = spec.device.clone();
    let id = add(&mut w, spec);
    w.write(&d.backend_key("state"), "2");
    w.drive();
    assert_eq!(added(&w, id), Ok(Added { scripts: 0 }));
}

#[test]
fn a_script_failure_reads_hotplug_error_and_fails() {
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    w.host().scripts.push_back(Script::Exit {
        after: Duration::from_millis(50),
        code: 1,
    });
    let id = add(&mut w, spec);
    w.write(
        &d.backend_key("hotplug-error"),
        "/srv/disk.img does not exist",
    );
    w.write(&d.backend_key("state"), "2");
    w.drive();
    let Err(AddError::Script(failure)) = added(&w, id) else {
        panic!("{:?}", w.completion(id));
    };
    assert_eq!(failure.exit, ProcessExit::Exited(1));
    assert_eq!(
        failure.hotplug_error.as_deref(),
        Some("/srv/disk.img does not exist")
    );
    assert!(!failure.timed_out);
    assert_eq!(w.areas_left(&d).len(), 3, "no cleanup");
}

#[test]
fn a_script_killed_by_the_timeout_fails_with_the_timeout() {
    let mut w = World::new();
    let spec = disk(DiskBackend::Phy);
    let d = spec.device.clone();
    w.host().scripts.push_back(Script::Hang);
    let id = add(&mut w, spec);
    w.write(&d.backend_key("state"), "2");
    w.advance(Duration::from_secs(39));
    assert!(w.completion(id).is_none());
    w.advance(Duration::from_secs(2));
    let Err(AddError::Script(failure)) = added(&w, id) else {
        panic!("{:?}", w.completion(id));
    };
    assert!(failure.timed_out);
    assert_eq!(failure.exit, ProcessExit::Signalled(9));
    assert_eq!(w.host().kills, 1);
}

#[test]
fn a_vif_runs_its_scripts_in_turn() {
    let mut w = World::new();
    let nic = Device::new("vif", 1, 0);
    let spec = AddSpec {
        device: nic.clone(),
        backend_keys: vec![
            ("script".into(), "/etc/xen/scripts/vif-bridge".into()),
            ("type".into(), "vif_ioemu".into()),
        ],
        frontend_keys: vec![],
    };
    let id = add(&mut w, spec);
    w.write(&nic.backend_key("state"), "2");
    w.drive();
    assert_eq!(added(&w, id), Ok(Added { scripts: 2 }));
    let argvs: Vec<Vec<String>> = w.host().spawned.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        argvs,
        [
            vec!["/etc/xen/scripts/vif-bridge", "online", "type_if=vif"],
            vec!["/etc/xen/scripts/vif-bridge", "add", "type_if=tap"],
        ]
    );
}
