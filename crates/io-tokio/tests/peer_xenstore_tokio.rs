//! The async xenstore client and the L2 driver on tokio against Xen's own daemons (C
//! xenstored, oxenstored), run without a hypervisor by `xsio_testkit::xen`: transactions
//! that really conflict, watch streams, a stalled watch that overflows explicitly while
//! another task's reads complete, the xenbus handshake with the frontend as guest 1
//! talking over a real ring, and `xsio-device`'s removal running a real hotplug script
//! through `xsio_io_tokio::host::Host`.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use xsio_device::{BackendEnd, Device, DeviceOp, Force};
use xsio_harness::{Conn, FixedHost, Harness};
use xsio_io_tokio::host::Host;
use xsio_io_tokio::l2::{XsLinks, now, run_until};
use xsio_io_tokio::xenstore::{self, ClientError, Config, Error, Transport, WatchItem};
use xsio_ops::{DomainState, Op, OpError, Reply, XsOp};
use xsio_testkit::block;
use xsio_testkit::hotplug::Hotplug;
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{Flavour, World, XenStored};
use xsio_testkit::xenbus::{
    Machine as End, add_ends, assert_removed_cleanly, both_in, closed_device_keys, completion_of,
    pruned_paths, removal_of, start_removal, take_answer,
};
use xsio_xenbus::XenbusState;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(flavour: Flavour) -> Option<XenStored> {
    let world = World::new()?;
    XenStored::start(&world, flavour, &[])
}

/// A read, then someone else's write of what was read: the daemon's own conflict rule
/// refuses the commit, the body runs again; conflicting every time ends in the typed
/// error after the configured attempts.
fn transactions_conflict_and_are_retried(flavour: Flavour) {
    let Some(daemon) = start(flavour) else { return };
    runtime().block_on(async {
        let xs = xenstore::connect(daemon.socket(), Config::default())
            .await
            .unwrap();
        let other = xenstore::connect(daemon.socket(), Config::default())
            .await
            .unwrap();
        xs.set("/tool/c", &1u32).await.unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let value = xs
            .transaction(|tx| {
                let (runs, other) = (runs.clone(), other.clone());
                async move {
                    let n: u32 = tx.get("/tool/c").await?;
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        other.set("/tool/c", &10u32).await?;
                    }
                    tx.set("/tool/c", &(n + 1)).await?;
                    Ok(n + 1)
                }
            })
            .await
            .unwrap();
        assert_eq!((runs.load(Ordering::SeqCst), value), (2, 11));
        assert_eq!(xs.get::<u32>("/tool/c").await.unwrap(), 11);

        let mut config = Config::default();
        config.transact_attempts = 3;
        let limited = xenstore::connect(daemon.socket(), config).await.unwrap();
        let err = limited
            .transaction(|tx| {
                let other = other.clone();
                async move {
                    let n: u32 = tx.get("/tool/c").await?;
                    other.set("/tool/c", &(n + 1)).await?;
                    tx.set("/tool/d", &n).await
                }
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Op(ClientError::Conflict { attempts: 3 })),
            "{err}"
        );
        assert!(!xs.exists("/tool/d").await.unwrap());
    });
}

/// A watch stream in order; a second watch whose consumer stalls through 300 changes
/// while another task's 300 reads on the same connection complete, then finds one
/// overflow marker standing for exactly the events no longer queued.
fn watches_stream_and_overflow_explicitly(flavour: Flavour) {
    const WRITES: u32 = 300;
    const BOUND: usize = 16;
    let Some(daemon) = start(flavour) else { return };
    runtime().block_on(async {
        let mut config = Config::default();
        config.max_queued_events = BOUND;
        let xs = xenstore::connect(daemon.socket(), config).await.unwrap();
        let writer = xenstore::connect(daemon.socket(), Config::default())
            .await
            .unwrap();
        let mut watch = xs.watch("/tool/w", "w").await.unwrap();
        let path = |item: Option<WatchItem>| match item {
            Some(WatchItem::Event(event)) => event.path,
            other => panic!("not an event: {other:?}"),
        };
        assert_eq!(path(watch.next().await), "/tool/w");
        for child in ["a", "b"] {
            writer
                .write(&format!("/tool/w/{child}"), "1")
                .await
                .unwrap();
            assert_eq!(path(watch.next().await), format!("/tool/w/{child}"));
        }

        xs.write("/tool/other", "o").await.unwrap();
        let mut stalled = xs.watch("/tool/flood", "flood").await.unwrap();
        let flood = tokio::spawn(async move {
            for i in 0..WRITES {
                writer
                    .write(&format!("/tool/flood/{i}"), "x")
                    .await
                    .unwrap();
            }
        });
        let reader = xs.clone();
        let reads = tokio::spawn(async move {
            for _ in 0..WRITES {
                assert_eq!(&reader.read("/tool/other").await.unwrap()[..], b"o");
            }
        });
        reads.await.unwrap();
        flood.await.unwrap();
        assert_eq!(&xs.read("/tool/other").await.unwrap()[..], b"o");
        xs.close().await;
        let WatchItem::Overflow(overflow) = stalled.next().await.unwrap() else {
            panic!("the stalled watch starts with its overflow marker")
        };
        assert_eq!(overflow.path, "/tool/flood");
        let mut rest = 0u64;
        while let Some(item) = stalled.next().await {
            assert!(matches!(item, WatchItem::Event(_)), "{item:?}");
            rest += 1;
        }
        assert!(rest <= BOUND as u64);
        assert_eq!(overflow.lost + rest, 1 + u64::from(WRITES));
    });
}

/// The store of the handshake: a fixed host (a running guest, a live device model) in
/// front of the xenstore connections.
type Stores = (FixedHost, XsLinks);

/// The answer to an operation of the toolstack's own on `conn`, run by the same driver.
async fn toolstack(
    world: &mut Harness<End>,
    links: &mut Stores,
    conn: Conn,
    op: XsOp,
) -> Option<Result<Reply, OpError>> {
    let id = world.submit(conn, Op::Xs(op));
    run_until(world, links, Duration::from_secs(10), |_| true)
        .await
        .unwrap();
    take_answer(world, id)
}

/// The disk handshake on tokio: the toolstack and the backend as dom0 on the daemon's
/// socket, the frontend as guest 1 over its ring; Connected, then removed by the toolstack
/// (`xsio-device`'s removal: both ends Closed, the areas pruned).
fn xenbus_handshake_with_a_guest_on_a_ring(flavour: Flavour) {
    let Some(daemon) = start(flavour) else { return };
    let guest = daemon.introduce(1).unwrap();
    runtime().block_on(async {
        let begin = now();
        let mut world: Harness<End> = Harness::new(begin);
        let mut links: Stores = (FixedHost::default(), XsLinks::default());
        let dom0 = || xenstore::connect(daemon.socket(), Config::default());
        let tool = links.1.add(&mut world, dom0().await.unwrap());
        let back = links.1.add(&mut world, dom0().await.unwrap());
        let guest = xenstore::from_fd(OwnedFd::from(guest), Transport::Socket, Config::default());
        let front = links.1.add(&mut world, guest.unwrap());

        let disk = block::disk();
        let (areas, create) = block::create(&disk);
        let created = toolstack(&mut world, &mut links, tool, XsOp::Transaction(create)).await;
        assert_eq!(created, Some(Ok(Reply::Committed)));
        let (b, f) = add_ends(
            &mut world,
            back,
            front,
            block::ends(&disk, &areas, 0, begin),
        );
        run_until(&mut world, &mut links, Duration::from_secs(10), |w| {
            both_in(w, (b, f), XenbusState::Connected)
        })
        .await
        .expect("both ends Connected");
        let xs = links.1.handle(tool).unwrap().clone();
        let fe = areas.frontend_path();
        assert_eq!(&xs.read(&format!("{fe}/ring-ref")).await.unwrap()[..], b"8");
        // The guest's own entries are its own: the daemon's permissions at work.
        let owner = xs.get_perms(&format!("{fe}/ring-ref")).await.unwrap()[0];
        assert_eq!(owner.domid, 1);

        let r = start_removal(&mut world, tool, disk.devid());
        run_until(&mut world, &mut links, Duration::from_secs(10), |w| {
            completion_of(w, r).is_some()
        })
        .await
        .expect("the removal completes");
        let removal = removal_of(&world, r);
        assert_eq!(removal.result.map(|r| r.backend), Ok(BackendEnd::Closed));
        assert!(removal.pruned);
        assert!(both_in(&world, (b, f), XenbusState::Closed));
        assert!(!xs.exists(&areas.backend_path()).await.unwrap());
        assert!(!xs.exists(&fe).await.unwrap());
        assert!(!xs.exists("/local/domain/0/backend").await.unwrap());
        for record in world.take_log() {
            let text = format!("{record:?}");
            assert!(!text.contains("Failed"), "{text}");
        }
    });
}

/// `xsio-device`'s removal of a closed kernel-backed disk of guest 1 on tokio, its hotplug
/// script a real child process (`xsio_io_tokio::host::Host`), against Xen's daemon: the
/// script runs once with libxl's argv and environment, the areas and the parents they
/// alone kept are pruned.
fn removal_runs_a_real_hotplug_script(flavour: Flavour) {
    let Some(daemon) = start(flavour) else { return };
    let hotplug = Hotplug::new(daemon.world().dir(), "ok");
    let (wrapper, record) = (&hotplug.wrapper, &hotplug.record);
    runtime().block_on(async {
        let begin = now();
        let mut world: Harness<End> = Harness::new(begin);
        let host = Host::new().domain_info(|domid| match domid {
            1 => Ok(DomainState::Running),
            other => Err(format!("no domain {other}")),
        });
        let mut links = XsLinks::default().with_host(host);
        let tool = links.add(
            &mut world,
            xenstore::connect(daemon.socket(), Config::default())
                .await
                .unwrap(),
        );
        let xs = links.handle(tool).unwrap().clone();
        let device = Device::new("vbd", 1, 51712);
        for (path, value) in closed_device_keys(&device, wrapper) {
            xs.write(&path, value).await.unwrap();
        }

        let op = DeviceOp::remove(
            xsio_device::Config::default(),
            device.clone(),
            Force::Auto,
            begin,
        );
        let r = world.add(tool, End::Device(op));
        world.drain(r);
        run_until(&mut world, &mut links, Duration::from_secs(10), |w| {
            completion_of(w, r).is_some()
        })
        .await
        .expect("the removal completes");
        let removal = removal_of(&world, r);
        assert_removed_cleanly(&removal, 1);
        assert_eq!(links.host().unwrap().running(), 0);
        assert_eq!(
            std::fs::read_to_string(record).unwrap(),
            hotplug.record_of("remove")
        );
        for gone in pruned_paths(&device) {
            assert!(!xs.exists(&gone).await.unwrap(), "{gone} is left");
        }
    });
}

/// Each function named, as `(its name, its body)`, as `xsio_testkit::tests!` lists plain
/// ones: the tests run against each of Xen's daemons, listed as `<daemon>_<function>`.
macro_rules! per_daemon {
    ($($test:ident),+ $(,)?) => {
        &[$((stringify!($test), $test as fn(Flavour))),+]
    };
}

/// A test run against each of Xen's daemons: its name, its body.
type PerDaemon = (&'static str, fn(Flavour));

/// The tests run against each of Xen's daemons.
const PER_DAEMON: &[PerDaemon] = per_daemon![
    transactions_conflict_and_are_retried,
    watches_stream_and_overflow_explicitly,
    xenbus_handshake_with_a_guest_on_a_ring,
    removal_runs_a_real_hotplug_script,
];

fn main() -> std::process::ExitCode {
    // The shim is C compiled at test time; each test then runs one of Xen's daemons.
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let c = Peer::file(Flavour::C.program());
    let ocaml = Peer::file(Flavour::OCaml.program());
    let mut tests = Tests::new();
    for (name, daemon, flavour) in [
        ("c_xenstored", &c, Flavour::C),
        ("oxenstored", &ocaml, Flavour::OCaml),
    ] {
        for &(test, body) in PER_DAEMON {
            let name = format!("{name}_{test}");
            tests = tests.test(&name, &[&cc, daemon], move || body(flavour));
        }
    }
    tests.run()
}
