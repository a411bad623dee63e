//! A whole device lifetime through the machines, next to its floor. Run with
//! `cargo xtask bench -p xsio-xenbus`.
//!
//! `lifetime`: the toolstack creates a xen-disk, backend and frontend connect, the toolstack
//! removes it (removal request, waiter, destroy), against a tiny in-memory store that answers
//! at once and fires watches. `floor`: the same store operations, recorded from one lifetime,
//! replayed without the machines. The ratio is what the machines cost on top of the store.

use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use xsio_ops::{Op, Output, Reply, Txn, TxnOp, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode};
use xsio_xenbus::{
    Backend, DeviceAreas, Frontend, StateWaiter, WaitEvent, WaiterConfig, XenbusState,
};

fn main() {
    divan::main();
}

/// Nodes and watches; every write fires the watches on its path.
#[derive(Default)]
struct Store {
    nodes: BTreeMap<String, String>,
    watches: Vec<(usize, String, String)>,
}

impl Store {
    /// Executes `op` for party `who`; queues watch events in `events`.
    fn execute(&mut self, who: usize, op: &Op, events: &mut VecDeque<(usize, String)>) -> Reply {
        let Op::Xs(op) = op else {
            unreachable!("xenbus machines only ask xenstore operations")
        };
        match op {
            XsOp::Read { path } => Reply::Value(self.nodes.get(path).cloned()),
            XsOp::Watch { path, token } => {
                self.watches.push((who, path.clone(), token.clone()));
                events.push_back((who, token.clone()));
                Reply::Done
            }
            XsOp::Unwatch { token, .. } => {
                self.watches.retain(|(w, _, t)| !(*w == who && t == token));
                Reply::Done
            }
            XsOp::Transaction(txn) => self.apply(txn, events),
            other => unreachable!("xenbus machines never ask {other:?}"),
        }
    }

    fn apply(&mut self, txn: &Txn, events: &mut VecDeque<(usize, String)>) -> Reply {
        if let Some(guard) = &txn.only_if_exists {
            if !self.nodes.contains_key(guard) {
                return Reply::Skipped;
            }
        }
        for op in &txn.ops {
            let path = op.path();
            match op {
                TxnOp::Write { value, .. } => {
                    self.nodes.insert(path.to_owned(), value.clone());
                }
                TxnOp::Mkdir { .. } => {
                    self.nodes.entry(path.to_owned()).or_default();
                }
                TxnOp::Rm { .. } => {
                    let prefix = format!("{path}/");
                    self.nodes
                        .retain(|k, _| k != path && !k.starts_with(&prefix));
                }
                TxnOp::SetPerms { .. } => {}
            }
            for (who, watched, token) in &self.watches {
                if path == watched || watched.starts_with(path) {
                    events.push_back((*who, token.clone()));
                }
            }
        }
        Reply::Committed
    }
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

/// One lifetime; returns the store operations it made, in order, with their party.
fn lifetime(epoch: Instant, record: bool) -> Vec<(usize, Op)> {
    let (disk, areas) = device();
    let mut store = Store::default();
    let mut events = VecDeque::new();
    let mut log = Vec::new();
    let create = Op::Xs(XsOp::Transaction(areas.create(
        &disk.toolstack_backend_keys(),
        &disk.toolstack_frontend_keys(),
    )));
    store.execute(0, &create, &mut events);
    let transport = BlockTransport {
        ring_ref: 8,
        event_channel: 5,
        protocol: None,
    };
    let mut backend = Backend::new(disk.backend_config(areas.clone()), epoch);
    let mut frontend = Frontend::new(disk.frontend_config(areas.clone(), &transport), epoch);
    let mut waiter: Option<StateWaiter> = None;
    let mut removed = false;
    loop {
        let mut moved = false;
        while let Some(out) = backend.poll_output() {
            moved = true;
            if let Output::Request(r) = out {
                if record {
                    log.push((1, r.op.clone()));
                }
                let reply = store.execute(1, &r.op, &mut events);
                backend.handle_reply(epoch, r.id, Ok(reply)).unwrap();
            }
        }
        while let Some(out) = frontend.poll_output() {
            moved = true;
            if let Output::Request(r) = out {
                if record {
                    log.push((2, r.op.clone()));
                }
                let reply = store.execute(2, &r.op, &mut events);
                frontend.handle_reply(epoch, r.id, Ok(reply)).unwrap();
            }
        }
        while let Some(out) = waiter.as_mut().and_then(StateWaiter::poll_output) {
            moved = true;
            match out {
                Output::Request(r) => {
                    if record {
                        log.push((0, r.op.clone()));
                    }
                    let reply = store.execute(0, &r.op, &mut events);
                    waiter
                        .as_mut()
                        .unwrap()
                        .handle_reply(epoch, r.id, Ok(reply))
                        .unwrap();
                }
                Output::Event(WaitEvent::Done(result)) => {
                    assert_eq!(result, Ok(XenbusState::Closed));
                    store.execute(0, &Op::Xs(XsOp::Transaction(areas.destroy())), &mut events);
                    return log;
                }
                Output::Event(_) => {}
            }
        }
        if let Some((who, token)) = events.pop_front() {
            moved = true;
            match who {
                1 => backend.handle_watch(epoch, "", &token),
                2 => frontend.handle_watch(epoch, "", &token),
                _ => {
                    if let Some(w) = waiter.as_mut() {
                        w.handle_watch(epoch, "", &token);
                    }
                }
            }
        }
        if !moved && !removed {
            assert_eq!(backend.state(), XenbusState::Connected);
            assert_eq!(frontend.state(), XenbusState::Connected);
            removed = true;
            store.execute(
                0,
                &Op::Xs(XsOp::Transaction(areas.request_removal())),
                &mut events,
            );
            waiter = Some(StateWaiter::new(
                WaiterConfig {
                    path: areas.backend_key("state"),
                    wanted: vec![XenbusState::Closed],
                    timeout: Duration::from_secs(10),
                    token: "wait".into(),
                },
                epoch,
            ));
        } else if !moved {
            panic!("the lifetime stalled");
        }
    }
}

#[allow(clippy::disallowed_methods)] // the bench's epoch
fn epoch() -> Instant {
    Instant::now()
}

#[divan::bench(name = "lifetime: create, connect, remove (machines + store)")]
fn machines(bencher: divan::Bencher<'_, '_>) {
    let epoch = epoch();
    bencher.bench_local(|| lifetime(black_box(epoch), false).len());
}

#[divan::bench(name = "floor: the same store operations replayed")]
fn floor(bencher: divan::Bencher<'_, '_>) {
    let epoch = epoch();
    let (disk, areas) = device();
    let recorded = lifetime(epoch, true);
    bencher.bench_local(|| {
        let mut store = Store::default();
        let mut events = VecDeque::new();
        let create = Op::Xs(XsOp::Transaction(areas.create(
            &disk.toolstack_backend_keys(),
            &disk.toolstack_frontend_keys(),
        )));
        store.execute(0, &create, &mut events);
        for (who, op) in black_box(&recorded) {
            store.execute(*who, op, &mut events);
        }
        store.execute(
            0,
            &Op::Xs(XsOp::Transaction(areas.request_removal())),
            &mut events,
        );
        store.execute(0, &Op::Xs(XsOp::Transaction(areas.destroy())), &mut events);
        events.len()
    });
}
