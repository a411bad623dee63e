//! A whole device lifetime through the machines, next to its floor. Run with
//! `cargo xtask bench -p xsio-xenbus`.
//!
//! `lifetime`: the toolstack creates a xen-disk, backend and frontend connect, the toolstack
//! removes it (removal request, waiter, destroy): the machines on `xsio-harness` (log off),
//! against its `MemStore`, which answers at once and fires watches. `floor`: the same store
//! operations, recorded from one lifetime, replayed on a `MemStore` without the machines or
//! the harness. The ratio is what the machines and the harness cost on top of the store.

#[path = "../tests/model/removal.rs"]
mod removal;

use std::hint::black_box;
use std::time::{Duration, Instant};

use xsio_harness::{Conn, Harness, MemStore, Owner, Record};
use xsio_ops::{Op, XsOp};

use removal::{destroy, removal_request};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode};
use xsio_xenbus::{
    Backend, DeviceAreas, Frontend, StateWaiter, WaiterConfig, XenbusMachine, XenbusState,
};

fn main() {
    divan::main();
}

fn device() -> (BlockDevice, DeviceAreas) {
    let disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        "/img",
        Mode::ReadWrite,
    );
    let areas = disk.areas(0, 1);
    (disk, areas)
}

/// One lifetime; with `record`, returns the store operations it made (the creation first),
/// in order, with their connection.
fn lifetime(epoch: Instant, record: bool) -> Vec<(Conn, Op)> {
    let (disk, areas) = device();
    let mut store = MemStore::new();
    let mut world: Harness<XenbusMachine> = Harness::new(epoch);
    world.set_log(record);
    let [tool, back, front] = [world.connect(), world.connect(), world.connect()];
    let create = Op::Xs(XsOp::Transaction(areas.create(
        &disk.toolstack_backend_keys(),
        &disk.toolstack_frontend_keys(),
    )));
    store.execute(tool, &create);
    let transport = BlockTransport {
        ring_ref: 8,
        event_channel: 5,
        protocol: None,
    };
    let backend = Backend::new(disk.backend_config(areas.clone()), epoch);
    let frontend = Frontend::new(disk.frontend_config(areas.clone(), &transport), epoch);
    let backend = world.add(back, backend.into());
    let frontend = world.add(front, frontend.into());
    world.drain(backend);
    world.drain(frontend);
    world.drive(&mut store).unwrap();
    assert_eq!(world.actor(backend).state(), Some(XenbusState::Connected));
    assert_eq!(world.actor(frontend).state(), Some(XenbusState::Connected));

    world.submit(tool, Op::Xs(XsOp::Transaction(removal_request(&areas))));
    let waiter = StateWaiter::new(
        WaiterConfig {
            path: areas.backend_key("state"),
            wanted: vec![XenbusState::Closed],
            timeout: Duration::from_secs(10),
            token: "wait".into(),
        },
        world.now(),
    );
    let waiter = world.add(tool, waiter.into());
    world.drain(waiter);
    world.drive(&mut store).unwrap();
    let done = world.actor(waiter).waiter().and_then(StateWaiter::result);
    assert_eq!(done, Some(&Ok(XenbusState::Closed)));
    world.submit(tool, Op::Xs(XsOp::Transaction(destroy(&areas))));
    world.drive(&mut store).unwrap();

    let mut made = vec![(tool, create)];
    for record in world.take_log() {
        if let Record::Request { owner, request } = record {
            let conn = match owner {
                Owner::Actor(actor) => world.conn_of(actor).unwrap(),
                Owner::Caller => tool,
            };
            made.push((conn, request.op));
        }
    }
    made
}

#[allow(clippy::disallowed_methods)] // the bench's epoch
fn epoch() -> Instant {
    Instant::now()
}

#[divan::bench(name = "lifetime: create, connect, remove (machines + harness + store)")]
fn machines(bencher: divan::Bencher<'_, '_>) {
    let epoch = epoch();
    bencher.bench_local(|| lifetime(black_box(epoch), false).len());
}

#[divan::bench(name = "floor: the same store operations replayed")]
fn floor(bencher: divan::Bencher<'_, '_>) {
    let recorded = lifetime(epoch(), true);
    assert!(recorded.len() > 20, "a lifetime makes {}", recorded.len());
    bencher.bench_local(|| {
        let mut store = MemStore::new();
        let mut fired = 0;
        for (conn, op) in black_box(&recorded) {
            fired += store.execute(*conn, op).fired.len();
        }
        fired
    });
}
