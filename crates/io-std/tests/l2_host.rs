//! The blocking L2 driver with a host: a device removal through `run_until` against the
//! in-process daemon loop on a real socket, its hotplug script a real child process (the
//! test script in `testdata/hotplug`), the guest's state from a closure.

mod common;

use std::path::Path;
use std::time::Duration;

use xsio_device::{Completion, Config, Device, DeviceOp, Force, Removal, RemoveError};
use xsio_harness::Harness;
use xsio_io_std::host::Host;
use xsio_io_std::l2::{XsLinks, run_until, run_until_with};
use xsio_io_std::xenstore::XsConn;
use xsio_ops::{DomainState, ProcessExit};
use xsio_testkit::hotplug::Hotplug;
use xsio_testkit::xenbus::{assert_removed_cleanly, closed_device_keys};

use common::Daemon;

/// A closed blkback disk of guest 1 with `script` as its hotplug script.
fn seed(xs: &mut XsConn, device: &Device, script: &Path) {
    for (path, value) in closed_device_keys(device, script) {
        xs.write(&path, value).unwrap();
    }
}

/// The daemon, and guest 1's closed disk 51712 seeded with the script in `mode`.
fn seeded(mode: &str) -> (Daemon, Hotplug, Device) {
    let daemon = Daemon::start();
    let hotplug = Hotplug::new(daemon.dir(), mode);
    let device = Device::new("vbd", 1, 51712);
    seed(
        &mut XsConn::connect(daemon.socket()).unwrap(),
        &device,
        &hotplug.wrapper,
    );
    (daemon, hotplug, device)
}

fn remove(daemon: &Daemon, host: Host, config: Config, device: &Device) -> (Removal, XsLinks) {
    let now = xsio_io_std::now();
    let mut world: Harness<DeviceOp> = Harness::new(now);
    let mut links = XsLinks::default().with_host(host);
    let conn = links.add(&mut world, XsConn::connect(daemon.socket()).unwrap());
    let op = world.add(
        conn,
        DeviceOp::remove(config, device.clone(), Force::Auto, now),
    );
    world.drain(op);
    run_until(&mut world, &mut links, Duration::from_secs(30), |w| {
        w.actor(op).is_done()
    })
    .unwrap();
    match world.actor(op).completion() {
        Some(Completion::Removed(removal)) => (removal.clone(), links),
        other => panic!("{other:?}"),
    }
}

fn running_guest() -> Host {
    Host::new().domain_info(|domid| {
        assert_eq!(domid, 1);
        Ok(DomainState::Running)
    })
}

#[test]
fn the_script_runs_as_a_child_with_libxl_s_argv_and_env() {
    let (daemon, hotplug, device) = seeded("ok");
    let (removal, links) = remove(&daemon, running_guest(), Config::default(), &device);
    assert_removed_cleanly(&removal, 1);
    assert_eq!(links.host().unwrap().running(), 0);
    assert_eq!(
        std::fs::read_to_string(&hotplug.record).unwrap(),
        hotplug.record_of("remove")
    );
    let mut xs = XsConn::connect(daemon.socket()).unwrap();
    assert!(!xs.exists(&device.backend_path()).unwrap());
    assert!(!xs.exists("/libxl/1").unwrap());
}

#[test]
fn a_hanging_script_is_killed_and_reported() {
    let (daemon, _, device) = seeded("hang");
    let fast = Config::default().scaled(0.01).unwrap(); // 0.4 s hotplug timeout

    let (removal, links) = remove(&daemon, running_guest(), fast, &device);
    let Err(RemoveError::Scripts(failures)) = &removal.result else {
        panic!("{removal:?}");
    };
    assert_eq!(failures[0].exit, ProcessExit::Signalled(9));
    assert!(failures[0].timed_out);
    assert_eq!(links.host().unwrap().running(), 0, "reaped");
}

#[test]
fn a_failing_script_and_a_missing_one_are_reported() {
    let (daemon, _, device) = seeded("fail");
    let (removal, _) = remove(&daemon, running_guest(), Config::default(), &device);
    assert!(
        matches!(&removal.result, Err(RemoveError::Scripts(f)) if f[0].exit == ProcessExit::Exited(1)),
        "{removal:?}"
    );
    assert!(
        !removal.pruned,
        "AUTO leaves the areas after a failed script"
    );

    let other = Device::new("vbd", 1, 51728);
    let missing = daemon.dir().join("no-such-script");
    seed(
        &mut XsConn::connect(daemon.socket()).unwrap(),
        &other,
        &missing,
    );
    let (removal, _) = remove(&daemon, running_guest(), Config::default(), &other);
    assert!(
        matches!(&removal.result, Err(RemoveError::Scripts(f)) if matches!(f[0].exit, ProcessExit::FailedToStart(_))),
        "{removal:?}"
    );
}

#[test]
fn without_a_domain_info_provider_the_removal_fails_typed() {
    let (daemon, _, device) = seeded("ok");
    let (removal, _) = remove(&daemon, Host::new(), Config::default(), &device);
    assert!(
        matches!(&removal.result, Err(RemoveError::DomainInfo(e)) if e.kind == xsio_ops::OpErrorKind::Unsupported),
        "{removal:?}"
    );
}

#[test]
fn a_removal_started_by_the_stop_condition_runs_at_once() {
    let (daemon, hotplug, first) = seeded("ok");
    let second = Device::new("vbd", 1, 51728);
    let mut xs = XsConn::connect(daemon.socket()).unwrap();
    seed(&mut xs, &second, &hotplug.wrapper);

    let now = xsio_io_std::now();
    let mut world: Harness<DeviceOp> = Harness::new(now);
    let mut links = XsLinks::default().with_host(running_guest());
    let conn = links.add(&mut world, XsConn::connect(daemon.socket()).unwrap());
    let op = world.add(
        conn,
        DeviceOp::remove(Config::default(), first.clone(), Force::Auto, now),
    );
    world.drain(op);
    let mut next = None;
    // The second removal is added by the condition itself, as a toolstack's loop would
    // start the next job; nothing else would wake the driver for it within the limit.
    let limit = Duration::from_secs(30);
    run_until_with(&mut world, &mut links, limit, |w| match next {
        None if w.actor(op).is_done() => {
            let later = w.add(
                conn,
                DeviceOp::remove(Config::default(), second.clone(), Force::Auto, w.now()),
            );
            w.drain(later);
            next = Some(later);
            false
        }
        None => false,
        Some(later) => w.actor(later).is_done(),
    })
    .unwrap();
    // Without a wake-up it slept until the limit (30 s: the new operation waits for an
    // answer, with no deadline of its own); the removal itself takes milliseconds.
    let took = xsio_io_std::now() - now;
    assert!(took < Duration::from_secs(2), "stalled for {took:?}");
    let later = next.unwrap();
    assert!(
        matches!(world.actor(later).completion(), Some(Completion::Removed(r)) if r.result.is_ok() && r.pruned),
        "{:?}",
        world.actor(later).completion()
    );
    assert!(!xs.exists(&second.backend_path()).unwrap());
}
