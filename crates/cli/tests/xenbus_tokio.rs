//! The xenbus handshake and the toolstack's device removal on tokio, end to end: the
//! xenbus machines and `xsio-device`'s removal on `xsio-io-tokio`'s L2 driver (async
//! clients, `run_until`) against the `xsio xenstored` daemon, the toolstack and the backend
//! on the control socket, the frontend on guest 1's socket (the device transport, as a
//! guest's `/dev/xen/xenbus`). The host operations are answered by a fixed host (a
//! running guest, a live device model) in the handshake test, and by
//! `xsio_io_tokio::host::Host` in the others: hotplug scripts (`testdata/hotplug/record.sh`)
//! as real child processes, run on an add and a removal, killed when they hang, killed and
//! reaped when the links are dropped.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Daemon;
use xsio_device::disk::{DiskBackend, DiskSpec};
use xsio_device::{
    Added, BackendEnd, Completion, Config as DeviceConfig, Device, DeviceEvent, DeviceOp, Force,
    RemoveError,
};
use xsio_harness::{ActorId, Conn, FixedHost, Harness, Record, Store};
use xsio_io_tokio::host::Host;
use xsio_io_tokio::l2::{Arrivals, XsLinks, now, run_until, run_until_with};
use xsio_io_tokio::xenstore::{self, Config, Transport};
use xsio_ops::{DomainState, HostOp, Op, OpError, ProcessExit, Reply, Txn, XsOp};
use xsio_testkit::block;
use xsio_testkit::hotplug::Hotplug;
use xsio_testkit::xenbus::{
    Event, Machine, add_ends, assert_nothing_failed, assert_removed_cleanly, both_in,
    closed_device_keys, completion_of, pruned_paths, removal_of, start_removal, state_of,
    take_answer,
};
use xsio_xenbus::XenbusState;

/// The store of the test: a fixed host in front of the xenstore connections.
type Stores = (FixedHost, XsLinks);

/// Runs the world until `done` (10 s at most), failing on any machine's failure event.
async fn drive(
    world: &mut Harness<Machine>,
    links: &mut (impl Store<Machine> + Arrivals),
    done: impl Fn(&Harness<Machine>) -> bool,
) {
    run_until(world, links, Duration::from_secs(10), done)
        .await
        .expect("the machines get there");
    assert_nothing_failed(world);
}

/// A transaction of the toolstack's own on its connection, through the same driver.
async fn toolstack(
    world: &mut Harness<Machine>,
    links: &mut Stores,
    conn: Conn,
    txn: Txn,
) -> Result<Reply, OpError> {
    let id = world.submit(conn, Op::Xs(XsOp::Transaction(txn)));
    run_until(world, links, Duration::from_secs(10), |_| true)
        .await
        .expect("answered");
    take_answer(world, id).expect("the toolstack's transaction was answered")
}

#[test]
fn disk_connects_and_is_removed_on_tokio() {
    let d = Daemon::start(&[1], &[]);
    runtime().block_on(async {
        let start = now();
        let mut world: Harness<Machine> = Harness::new(start);
        let mut links: Stores = (FixedHost::default(), XsLinks::default());
        let socket = || xenstore::connect(&d.socket, Config::default());
        let tool = links.1.add(&mut world, socket().await.unwrap());
        let back = links.1.add(&mut world, socket().await.unwrap());
        // The guest reads and writes its connection as a file, as on /dev/xen/xenbus.
        let guest = OwnedFd::from(UnixStream::connect(d.domain_socket(1)).unwrap());
        let guest = xenstore::from_fd(guest, Transport::Device, Config::default()).unwrap();
        let front = links.1.add(&mut world, guest);

        let disk = block::disk();
        let (areas, create) = block::create(&disk);
        assert_eq!(
            toolstack(&mut world, &mut links, tool, create).await,
            Ok(Reply::Committed)
        );
        let (b, f) = add_ends(
            &mut world,
            back,
            front,
            block::ends(&disk, &areas, 0, start),
        );
        drive(&mut world, &mut links, |w| {
            both_in(w, (b, f), XenbusState::Connected)
        })
        .await;

        // What the daemon holds, read by a client of the test's own.
        let xs = links.1.handle(tool).unwrap().clone();
        let be = areas.backend_path();
        let fe = areas.frontend_path();
        assert_eq!(xs.get::<u32>(&format!("{be}/state")).await.unwrap(), 4);
        assert_eq!(xs.get::<u32>(&format!("{be}/sectors")).await.unwrap(), 2048);
        assert_eq!(xs.get::<u32>(&format!("{fe}/state")).await.unwrap(), 4);
        assert_eq!(&xs.read(&format!("{fe}/ring-ref")).await.unwrap()[..], b"8");

        // Removal: xsio-device's (online=0 and Closing in one transaction, the waits for
        // the backend's and the live frontend's Closed, the prune of the areas and of the
        // parents they alone kept).
        let r = start_removal(&mut world, tool, disk.devid());
        drive(&mut world, &mut links, |w| completion_of(w, r).is_some()).await;
        let removal = removal_of(&world, r);
        assert_eq!(removal.result.map(|r| r.backend), Ok(BackendEnd::Closed));
        assert!(removal.pruned);
        assert_eq!(state_of(&world, b), XenbusState::Closed);
        assert_eq!(state_of(&world, f), XenbusState::Closed);
        // The frontend notices its backend is gone and stops watching.
        drive(
            &mut world,
            &mut links,
            |world| matches!(world.actor(f), Machine::Frontend(m) if m.is_stopped()),
        )
        .await;
        assert!(!xs.exists(&be).await.unwrap());
        assert!(!xs.exists(&fe).await.unwrap());
        // Pruned up to the domains' homes: no empty `backend` or `device` left behind.
        assert!(!xs.exists("/local/domain/0/backend").await.unwrap());
        assert!(!xs.exists("/local/domain/1/device").await.unwrap());
    });
}

/// A runtime for one test, as `#[tokio::test]` would make it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Guest 1 running, its device model alive; any other domain is unknown to the host.
fn host() -> Host {
    Host::new()
        .domain_info(|domid| match domid {
            1 => Ok(DomainState::Running),
            other => Err(format!("no domain {other}")),
        })
        .device_model(|_| Some(true))
}

/// xsio-device's add and removal of a kernel-backed disk (backend kind `vbd`) on tokio,
/// with its hotplug script a real child process (run with `add`, then `remove`), and the
/// xenbus backend and frontend machines on the same harness: the add writes the areas,
/// the ends start, the add waits for the backend's InitWait and runs the script, both
/// ends reach Connected; the removal closes them, runs the script and prunes the areas.
/// The driver wakes on the script's exit: it is not polled, and every timeout of the
/// device machine (scaled by 10: the hotplug timeout is 400 s) is far past the run's
/// limit (10 s).
#[test]
fn a_disk_is_added_and_removed_with_its_hotplug_script_on_tokio() {
    let d = Daemon::start(&[1], &[]);
    let hotplug = Hotplug::new(d.dir.path(), "ok");
    let (wrapper, record) = (&hotplug.wrapper, &hotplug.record);
    runtime().block_on(async {
        let start = now();
        let mut world: Harness<Machine> = Harness::new(start);
        let mut links = XsLinks::default().with_host(host());
        let socket = || xenstore::connect(&d.socket, Config::default());
        let tool = links.add(&mut world, socket().await.unwrap());
        let back = links.add(&mut world, socket().await.unwrap());
        let guest = OwnedFd::from(UnixStream::connect(d.domain_socket(1)).unwrap());
        let guest = xenstore::from_fd(guest, Transport::Device, Config::default()).unwrap();
        let front = links.add(&mut world, guest);
        let xs = links.handle(tool).unwrap().clone();

        let spec = DiskSpec::parse("vdev=xvda,format=raw,access=rw,devtype=disk,target=/img/disk")
            .unwrap();
        let add = spec.add_spec(1, 0, DiskBackend::Phy, wrapper.to_str().unwrap());
        let slow = DeviceConfig::default().scaled(10.0).unwrap();
        let device = add.device.clone();
        assert_eq!(device.backend_path(), "/local/domain/0/backend/vbd/1/51712");
        let op = world.add(
            tool,
            Machine::Device(DeviceOp::add(slow.clone(), add, start)),
        );
        world.drain(op);
        let disk = block::disk();
        // The ends start once the add has written their directories (each writes its
        // state guarded by the existence of its `state` node).
        let mut ends: Option<(ActorId, ActorId)> = None;
        run_until_with(&mut world, &mut links, Duration::from_secs(10), |w| {
            for record in w.take_log() {
                let text = format!("{record:?}");
                assert!(!text.contains("Failed"), "{text}");
                let created = matches!(
                    record,
                    Record::Event { actor, event: Event::Device(DeviceEvent::Created) }
                        if actor == op
                );
                if created {
                    let now = w.now();
                    let device_ends = block::ends(&disk, &device.areas(), 0, now);
                    ends = Some(add_ends(w, back, front, device_ends));
                }
            }
            ends.is_some_and(|ends| both_in(w, ends, XenbusState::Connected))
                && completion_of(w, op).is_some()
        })
        .await
        .unwrap_or_else(|e| {
            let states = ends.map(|(b, f)| (state_of(&world, b), state_of(&world, f)));
            panic!(
                "{e}: ends {states:?}, add {:?}, in flight {}",
                completion_of(&world, op),
                world.in_flight()
            )
        });
        let (b, f) = ends.unwrap();
        assert_eq!(
            completion_of(&world, op),
            Some(Completion::Added(Ok(Added { scripts: 1 })))
        );
        assert_eq!(
            std::fs::read_to_string(record).unwrap(),
            hotplug.record_of("add")
        );
        let be = device.backend_path();
        assert_eq!(
            &xs.read(&format!("{be}/script")).await.unwrap()[..],
            wrapper.to_str().unwrap().as_bytes()
        );
        assert_eq!(xs.get::<u32>(&format!("{be}/state")).await.unwrap(), 4);
        assert_eq!(
            xs.get::<u32>(&device.frontend_key("state")).await.unwrap(),
            4
        );
        assert!(xs.exists(&device.toolstack_path()).await.unwrap());

        let removal = DeviceOp::remove(slow, device.clone(), Force::Auto, world.now());
        let r = world.add(tool, Machine::Device(removal));
        world.drain(r);
        drive(&mut world, &mut links, |w| {
            completion_of(w, r).is_some()
                && matches!(w.actor(f), Machine::Frontend(m) if m.is_stopped())
        })
        .await;
        let removal = removal_of(&world, r);
        assert_removed_cleanly(&removal, 1);
        assert_eq!(state_of(&world, b), XenbusState::Closed);
        assert_eq!(links.host().unwrap().running(), 0);
        assert_eq!(
            std::fs::read_to_string(record).unwrap(),
            hotplug.record_of("add") + &hotplug.record_of("remove")
        );
        for gone in pruned_paths(&device) {
            assert!(!xs.exists(&gone).await.unwrap(), "{gone} is left");
        }
    });
}

/// A removal whose hotplug script hangs: past the hotplug timeout (0.4 s here) the driver
/// kills it (SIGKILL) and reaps it, and the removal reports the killed script.
#[test]
fn a_hanging_hotplug_script_is_killed_and_reported_on_tokio() {
    let d = Daemon::start(&[1], &[]);
    let wrapper = Hotplug::new(d.dir.path(), "hang").wrapper;
    runtime().block_on(async {
        let start = now();
        let mut world: Harness<Machine> = Harness::new(start);
        let mut links = XsLinks::default().with_host(host());
        let tool = links.add(
            &mut world,
            xenstore::connect(&d.socket, Config::default())
                .await
                .unwrap(),
        );
        let xs = links.handle(tool).unwrap().clone();
        let device = Device::new("vbd", 1, 51712);
        for (path, value) in closed_device_keys(&device, &wrapper) {
            xs.write(&path, value).await.unwrap();
        }
        let fast = DeviceConfig::default().scaled(0.01).unwrap();
        let r = world.add(
            tool,
            Machine::Device(DeviceOp::remove(fast, device.clone(), Force::Auto, start)),
        );
        world.drain(r);
        run_until(&mut world, &mut links, Duration::from_secs(10), |w| {
            completion_of(w, r).is_some()
        })
        .await
        .expect("the removal completes");
        let removal = removal_of(&world, r);
        let Err(RemoveError::Scripts(failures)) = &removal.result else {
            panic!("{removal:?}");
        };
        assert_eq!(failures[0].exit, ProcessExit::Signalled(9));
        assert!(failures[0].timed_out);
        assert!(
            !removal.pruned,
            "AUTO leaves the areas after a failed script"
        );
        assert!(xs.exists(&device.backend_path()).await.unwrap());
        assert_eq!(links.host().unwrap().running(), 0, "reaped");
        let pid = std::fs::read_to_string(d.dir.path().join("pid-hang")).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the killed script is gone, no zombie left"
        );
    });
}

/// Links dropped while a script runs: the script is killed and reaped with them.
#[test]
fn dropping_the_links_kills_and_reaps_a_running_script() {
    let d = Daemon::start(&[], &[]);
    let Hotplug {
        wrapper,
        pid: pidfile,
        ..
    } = Hotplug::new(d.dir.path(), "hang");
    runtime().block_on(async {
        let mut world: Harness<Machine> = Harness::new(now());
        let mut links = XsLinks::default().with_host(Host::new());
        let tool = links.add(
            &mut world,
            xenstore::connect(&d.socket, Config::default())
                .await
                .unwrap(),
        );
        let argv = vec![wrapper.to_str().unwrap().to_owned(), "remove".to_owned()];
        world.submit(tool, Op::Host(HostOp::Spawn { argv, env: vec![] }));
        world.step(&mut links).unwrap();
        assert_eq!(links.host().unwrap().running(), 1);
        let mut pid = String::new();
        for _ in 0..500 {
            pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
            if pid.ends_with('\n') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        assert!(proc.exists(), "the script runs");
        drop(links);
        assert!(!proc.exists(), "killed and reaped on drop");
    });
}
