//! The xenbus handshake and the toolstack's device removal on tokio, end to end: the
//! xenbus machines and `xsio-device`'s removal on `xsio-io-tokio`'s L2 driver (async
//! clients, `run_until`) against the `xsio xenstored` daemon, the toolstack and the backend
//! on the control socket, the frontend on guest 1's socket (the device transport, as a
//! guest's `/dev/xen/xenbus`). The host operations of the removal are answered by a fixed
//! host (a running guest, a live device model).

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Daemon;
use xsio_device::{BackendEnd, Completion, Device, DeviceEvent, DeviceOp, Force};
use xsio_harness::{ActorId, Conn, FixedHost, Harness, Owner, Record};
use xsio_io_tokio::l2::{XsLinks, now, run_until};
use xsio_io_tokio::xenstore::{self, Config, Transport};
use xsio_ops::{Op, OpError, Reply, Txn, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent, XenbusState};

xsio_harness::actors! {
    /// The machines of the test.
    enum Machine / Event {
        Backend(Backend, BackendEvent),
        Frontend(Frontend, FrontendEvent),
        Removal(DeviceOp, DeviceEvent),
    }
}

/// The store of the test: a fixed host in front of the xenstore connections.
type Stores = (FixedHost, XsLinks);

fn state_of(world: &Harness<Machine>, id: ActorId) -> XenbusState {
    match world.actor(id) {
        Machine::Backend(m) => m.state(),
        Machine::Frontend(m) => m.state(),
        Machine::Removal(_) => XenbusState::Unknown,
    }
}

/// Runs the world until `done` (10 s at most), failing on any machine's failure event.
async fn drive(
    world: &mut Harness<Machine>,
    links: &mut Stores,
    done: impl Fn(&Harness<Machine>) -> bool,
) {
    run_until(world, links, Duration::from_secs(10), done)
        .await
        .expect("the machines get there");
    for record in world.take_log() {
        let text = format!("{record:?}");
        assert!(!text.contains("Failed"), "{text}");
    }
}

/// A transaction of the toolstack's own on its connection, through the same driver.
async fn toolstack(
    world: &mut Harness<Machine>,
    links: &mut Stores,
    conn: Conn,
    txn: Txn,
) -> Result<Reply, OpError> {
    let id = world.submit(conn, Op::Xs(XsOp::Transaction(txn)));
    let mut answer = None;
    run_until(world, links, Duration::from_secs(10), |_| true)
        .await
        .expect("answered");
    for record in world.take_log() {
        match record {
            Record::Reply {
                owner: Owner::Caller,
                id: done,
                result,
                ..
            } if done == id => answer = Some(result),
            other => assert!(!format!("{other:?}").contains("Failed"), "{other:?}"),
        }
    }
    answer.expect("the toolstack's transaction was answered")
}

#[test]
fn disk_connects_and_is_removed_on_tokio() {
    let d = Daemon::start(&[1], &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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

        let mut disk = BlockDevice::new(
            BlockKind::Disk,
            Vbd::parse("xvda").unwrap(),
            "/img/disk",
            Mode::ReadWrite,
        );
        disk.sectors = 2048;
        let areas = disk.areas(0, 1);
        let create = areas.create(
            &disk.toolstack_backend_keys(),
            &disk.toolstack_frontend_keys(),
        );
        assert_eq!(
            toolstack(&mut world, &mut links, tool, create).await,
            Ok(Reply::Committed)
        );
        let transport = BlockTransport {
            ring_ref: 8,
            event_channel: 3,
            protocol: Some(Protocol::X86_64),
        };
        let backend = Backend::new(disk.backend_config(areas.clone()), start);
        let frontend = Frontend::new(disk.frontend_config(areas.clone(), &transport), start);
        let b = world.add(back, Machine::Backend(backend));
        let f = world.add(front, Machine::Frontend(frontend));
        world.drain(b);
        world.drain(f);
        let both = |w: &Harness<Machine>, want| state_of(w, b) == want && state_of(w, f) == want;
        drive(&mut world, &mut links, |w| both(w, XenbusState::Connected)).await;

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
        let device = Device::new("vbd", 1, disk.devid()).with_backend(0, "qdisk");
        let op = DeviceOp::remove(
            xsio_device::Config::default(),
            device,
            Force::Auto,
            world.now(),
        );
        let r = world.add(tool, Machine::Removal(op));
        world.drain(r);
        let completion = |w: &Harness<Machine>| match w.actor(r) {
            Machine::Removal(op) => op.completion().cloned(),
            _ => None,
        };
        drive(&mut world, &mut links, |w| completion(w).is_some()).await;
        let Some(Completion::Removed(removal)) = completion(&world) else {
            panic!("not a removal: {:?}", completion(&world));
        };
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
