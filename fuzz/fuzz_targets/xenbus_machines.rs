//! The backend, the frontend and the toolstack waiter on `xsio-harness`, against a store that
//! answers with whatever the input says, when it says: arbitrary replies (of the right kind
//! or not), watch events, deliveries in any order, closes, restarts, and timeouts and clock
//! jumps from the whole range of `Duration` (`Duration::MAX` and the end of `Instant`'s
//! range included). Asserts: no panic, every request id fresh, every write in the
//! machine's own directory, every answer to a request not in flight refused by the harness
//! and every repeated reply refused by the machine itself.
#![no_main]

use std::time::Duration;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use xsio_core::{Machine as _, OpId};
use xsio_fuzz::{Bytes, advance};
use xsio_harness::{ActorId, Conn, Harness, HarnessError, Owner, Record};
use xsio_ops::{Input, Op, OpError, OpErrorKind, Reply, Request, TxnOp, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode};
use xsio_xenbus::{Backend, Frontend, StateWaiter, WaiterConfig, XenbusMachine, XenbusState};

/// Values a state or key read may return besides the shared ones: odd numbers, key values.
const EXTRA: &[&str] = &[
    "04",
    "-1",
    "4294967296",
    "99999999999999999999999",
    "512",
    "2048",
    "x86_64-abi",
];

/// One machine, on a connection of its own, as the store sees it.
struct Party {
    actor: ActorId,
    conn: Conn,
    /// Where it may write.
    own_dir: String,
    last_id: Option<u64>,
    /// The watch tokens it registered.
    tokens: Vec<String>,
    /// Its requests taken from the harness and not answered yet.
    pending: Vec<Request>,
    /// Its requests whose answer it was handed.
    delivered: Vec<OpId>,
}

/// The store of the run: takes every request the machines issue, checks it, and answers
/// it with whatever the input says, when the input says.
struct FuzzStore {
    parties: Vec<Party>,
}

impl FuzzStore {
    /// Takes the requests waiting in the harness and checks them.
    fn take_requests(&mut self, harness: &mut Harness<XenbusMachine>) {
        for party in &mut self.parties {
            while let Some((owner, request)) = harness.take_request(party.conn) {
                assert_eq!(owner, Owner::Actor(party.actor));
                let id = request.id.get();
                assert!(
                    party.last_id.is_none_or(|last| id > last),
                    "op ids must be fresh"
                );
                party.last_id = Some(id);
                match &request.op {
                    Op::Xs(XsOp::Watch { token, .. }) => party.tokens.push(token.clone()),
                    Op::Xs(XsOp::Transaction(txn)) => {
                        for op in &txn.ops {
                            if let TxnOp::Write { path, .. } = op {
                                let dir = &party.own_dir;
                                assert!(path.starts_with(dir), "{path} outside {dir}");
                            }
                        }
                    }
                    _ => {}
                }
                party.pending.push(request);
            }
        }
    }

    /// Answers one of party `p`'s pending requests, chosen by the input, with a result
    /// chosen by the input.
    fn reply(&mut self, harness: &mut Harness<XenbusMachine>, p: usize, data: &mut Bytes<'_>) {
        let party = &mut self.parties[p];
        if party.pending.is_empty() {
            return;
        }
        let (Some(pick), Some(kind), Some(value)) = (data.next(), data.next(), data.next()) else {
            return;
        };
        let request = party
            .pending
            .remove(usize::from(pick) % party.pending.len());
        let value = xsio_fuzz::value(value, EXTRA);
        let result = match kind % 8 {
            0 => Ok(Reply::Value(Some(value.to_owned()))),
            1 => Ok(Reply::Value(None)),
            2 => Ok(Reply::Done),
            3 => Ok(Reply::Committed),
            4 => Ok(Reply::Skipped),
            5 => Err(OpError::new(OpErrorKind::Access, "EACCES")),
            // The reply that fits the request, so that long runs make progress.
            _ => Ok(match request.op {
                Op::Xs(XsOp::Read { .. }) => Reply::Value(Some(value.to_owned())),
                Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
                _ => Reply::Done,
            }),
        };
        harness
            .reply(Owner::Actor(party.actor), request.id, result)
            .expect("a pending request is in flight");
    }

    /// A watch event for party `p`: one of its tokens, routed by the harness, or a stray
    /// token handed to the machine itself (the harness routes only registered tokens).
    fn watch(&self, harness: &mut Harness<XenbusMachine>, p: usize, data: &mut Bytes<'_>) {
        let party = &self.parties[p];
        match data.next() {
            Some(n) if !party.tokens.is_empty() => {
                let token = &party.tokens[usize::from(n) % party.tokens.len()];
                harness.watch_event(party.conn, "/p", token);
            }
            _ => {
                let now = harness.now();
                let stray = Input::Watch {
                    path: "/p",
                    token: "stray",
                };
                let _ = harness.actor_mut(party.actor).handle_input(now, stray);
                harness.drain(party.actor);
            }
        }
    }

    /// Notes which replies reached their machine.
    fn delivered(&mut self, harness: &mut Harness<XenbusMachine>) {
        for record in harness.take_log() {
            if let Record::Reply {
                owner: Owner::Actor(actor),
                id,
                ..
            } = record
            {
                if let Some(party) = self.parties.iter_mut().find(|p| p.actor == actor) {
                    party.delivered.push(id);
                }
            }
        }
    }
}

/// Hands over one answer or event (from `conn`, or the oldest anywhere); a machine may
/// refuse a reply of the wrong kind, and then has its failure to report.
fn deliver(harness: &mut Harness<XenbusMachine>, conn: Option<Conn>) -> bool {
    let delivered = match conn {
        Some(conn) => harness.deliver_from(conn),
        None => harness.deliver(),
    };
    match delivered {
        Ok(moved) => moved,
        Err(HarnessError::Refused { actor, .. }) => {
            harness.drain(actor);
            true
        }
        Err(other) => panic!("{other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the fuzz run's epoch
    let epoch = Instant::now();
    let mut data = Bytes(data);
    let dev = BlockDevice::new(
        BlockKind::Cdrom,
        Vbd::parse("hdc").unwrap(),
        "/cd.iso",
        Mode::ReadOnly,
    );
    let areas = dev.areas(0, 1);
    let transport = BlockTransport {
        ring_ref: 8,
        event_channel: 5,
        protocol: None,
    };
    let mut frontend_config = dev.frontend_config(areas.clone(), &transport);
    let mut wait_timeout = Duration::from_secs(10);
    // An input that starts with 0xff sets the two timeouts from the bytes that follow.
    if data.0.first() == Some(&0xff) {
        data.next();
        frontend_config.close_timeout = data.duration();
        wait_timeout = data.duration();
    }
    let waiter = StateWaiter::new(
        WaiterConfig {
            path: areas.backend_key("state"),
            wanted: vec![XenbusState::Closed],
            timeout: wait_timeout,
            token: "wait".into(),
        },
        epoch,
    );
    let mut harness: Harness<XenbusMachine> = Harness::new(epoch);
    let machines = [
        (
            Backend::new(dev.backend_config(areas.clone()), epoch).into(),
            areas.backend_path(),
        ),
        (
            Frontend::new(frontend_config, epoch).into(),
            areas.frontend_path(),
        ),
        (XenbusMachine::from(waiter), "/nothing-written".to_owned()),
    ];
    let mut store = FuzzStore {
        parties: Vec::new(),
    };
    for (machine, own_dir) in machines {
        let conn = harness.connect();
        let actor = harness.add(conn, machine);
        harness.drain(actor);
        store.parties.push(Party {
            actor,
            conn,
            own_dir,
            last_id: None,
            tokens: Vec::new(),
            pending: Vec::new(),
            delivered: Vec::new(),
        });
    }
    let [backend, frontend, _] = [0, 1, 2].map(|p| store.parties[p].actor);

    loop {
        store.take_requests(&mut harness);
        store.delivered(&mut harness);
        let Some(choice) = data.next() else { break };
        let now = harness.now();
        match choice % 16 {
            p @ 0..=2 => store.watch(&mut harness, usize::from(p), &mut data),
            3 | 4 => store.reply(&mut harness, 0, &mut data),
            5 | 6 => store.reply(&mut harness, 1, &mut data),
            7 => store.reply(&mut harness, 2, &mut data),
            8 => {
                if let Some(f) = harness.actor_mut(frontend).frontend_mut() {
                    f.close(now);
                }
                harness.drain(frontend);
            }
            9 => {
                if let Some(f) = harness.actor_mut(frontend).frontend_mut() {
                    let _ = f.restart(now);
                }
                harness.drain(frontend);
            }
            10 => {
                harness.advance_to(advance(now, data.jump(Duration::from_millis(100))));
                harness.fire_due_timers();
            }
            11 => {
                // A reply for an id already answered: the harness refuses it (not in
                // flight), and so does the machine when handed it directly.
                let p = usize::from(data.byte()) % store.parties.len();
                let party = &store.parties[p];
                if let Some(&id) = party.delivered.first() {
                    let owner = Owner::Actor(party.actor);
                    assert_eq!(
                        harness.reply(owner, id, Ok(Reply::Done)),
                        Err(HarnessError::NotInFlight { owner, id })
                    );
                    let again = Input::Reply {
                        id,
                        result: Ok(Reply::Done),
                    };
                    assert!(
                        harness
                            .actor_mut(party.actor)
                            .handle_input(now, again)
                            .is_err()
                    );
                }
            }
            12 => {
                if let Some(b) = harness.actor_mut(backend).backend_mut() {
                    b.close(now);
                }
                harness.drain(backend);
            }
            13 => {
                // A timeout handed early, or late, whatever the deadline says.
                let p = usize::from(data.byte()) % store.parties.len();
                let actor = store.parties[p].actor;
                harness.actor_mut(actor).handle_timeout(now);
                harness.drain(actor);
            }
            14 => {
                let p = usize::from(data.byte()) % store.parties.len();
                deliver(&mut harness, Some(store.parties[p].conn));
            }
            _ => while deliver(&mut harness, None) {},
        }
    }
});
