//! The harness's own promises, under random interleavings of requests, answers, watch events
//! and deliveries through a tiny scripted machine: every request is answered exactly once (a
//! second answer is refused as not in flight), deliveries keep each connection's order,
//! `deliver()` keeps the global order, and two worlds that differ only in their log and
//! their sequence numbers are equal and hash alike.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use proptest::prelude::*;
use xsio_core::{Machine, OpId};
use xsio_harness::{Conn, Harness, HarnessError, Owner, Record};
use xsio_ops::{Input, InputError, Op, Output, Reply, Request, XsOp};

/// What a scripted machine was handed, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seen {
    Reply(OpId),
    Watch(String),
}

/// Issues a watch and `reads` reads when it starts, and one more read after each answer
/// while its `follow_ups` last; remembers everything it is handed and refuses an answer it
/// is not waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Scripted {
    token: String,
    next_id: u64,
    follow_ups: u8,
    waiting: BTreeSet<OpId>,
    issued: Vec<OpId>,
    seen: Vec<Seen>,
    out: VecDeque<Output<Seen>>,
}

impl Scripted {
    fn new(token: String, reads: u8, follow_ups: u8) -> Scripted {
        let mut machine = Scripted {
            token: token.clone(),
            next_id: 0,
            follow_ups,
            waiting: BTreeSet::new(),
            issued: Vec::new(),
            seen: Vec::new(),
            out: VecDeque::new(),
        };
        machine.issue(XsOp::Watch {
            path: "/w".into(),
            token,
        });
        for _ in 0..reads {
            machine.issue(XsOp::Read { path: "/r".into() });
        }
        machine
    }

    fn issue(&mut self, op: XsOp) {
        let id = OpId::from_raw(self.next_id);
        self.next_id += 1;
        self.waiting.insert(id);
        self.issued.push(id);
        self.out
            .push_back(Output::Request(Request { id, op: Op::Xs(op) }));
    }
}

impl Machine for Scripted {
    type Input<'a> = Input<'a>;
    type Output = Output<Seen>;
    type Error = InputError;

    fn handle_input(&mut self, _now: Instant, input: Input<'_>) -> Result<(), InputError> {
        let seen = match input {
            Input::Reply { id, .. } => {
                if !self.waiting.remove(&id) {
                    return Err(InputError::UnknownOp(id));
                }
                if self.follow_ups > 0 {
                    self.follow_ups -= 1;
                    self.issue(XsOp::Read { path: "/r".into() });
                }
                Seen::Reply(id)
            }
            Input::Watch { token, .. } => Seen::Watch(token.to_owned()),
            // Peer events: this test's store reports none.
            _ => return Ok(()),
        };
        self.seen.push(seen.clone());
        self.out.push_back(Output::Event(seen));
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<Seen>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// A harness with `machines[c]` scripted machines on connection `c`: (reads, follow-ups)
/// each.
fn world(epoch: Instant, machines: &[Vec<(u8, u8)>]) -> Harness<Scripted> {
    let mut harness = Harness::new(epoch);
    for (c, on_conn) in machines.iter().enumerate() {
        let conn = harness.connect();
        for (m, &(reads, follow_ups)) in on_conn.iter().enumerate() {
            let machine = Scripted::new(format!("c{c}m{m}"), reads, follow_ups);
            let id = harness.add(conn, machine);
            harness.drain(id);
        }
    }
    harness
}

/// An answer or event on its way, as the test expects it to arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sent {
    Reply(Owner, OpId),
    Watch(Owner, String),
}

/// What the log says was handed over.
fn handed(log: Vec<Record<Seen>>) -> Vec<Sent> {
    log.into_iter()
        .filter_map(|record| match record {
            Record::Reply { owner, id, .. } => Some(Sent::Reply(owner, id)),
            Record::Watch { owner, token, .. } => Some(Sent::Watch(owner, token)),
            _ => None,
        })
        .collect()
}

/// The test's model of the harness's queues.
struct Expected {
    /// Per connection, in the order the store sent them.
    per_conn: Vec<VecDeque<Sent>>,
    /// Everything, in the order the store sent it, with its connection.
    global: VecDeque<(usize, Sent)>,
}

impl Expected {
    fn sent(&mut self, conn: usize, sent: Sent) {
        self.per_conn[conn].push_back(sent.clone());
        self.global.push_back((conn, sent));
    }

    /// The head of `conn` was handed over.
    fn handed_from(&mut self, conn: usize) -> Sent {
        let sent = self.per_conn[conn]
            .pop_front()
            .expect("something waits there");
        let at = self.global.iter().position(|(c, _)| *c == conn).unwrap();
        self.global.remove(at);
        sent
    }
}

fn owner_of(harness: &Harness<Scripted>, token: &str) -> Owner {
    let (id, _) = harness
        .actors()
        .find(|(_, m)| m.token == token)
        .expect("a token of ours");
    Owner::Actor(id)
}

fn conn_at(harness: &Harness<Scripted>, index: usize) -> Conn {
    harness.conns().nth(index).unwrap()
}

/// The machines of the test: one to three connections, one or two machines on each.
fn layouts() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
    prop::collection::vec(prop::collection::vec((0u8..4, 0u8..3), 1..3), 1..4)
}

/// Checks that what the harness just handed over is the head of connection `from`.
fn handed_over(
    harness: &mut Harness<Scripted>,
    expected: &mut Expected,
    from: usize,
) -> Result<(), TestCaseError> {
    let got = handed(harness.take_log());
    prop_assert_eq!(got, vec![expected.handed_from(from)]);
    Ok(())
}

/// The driver's move, `deliver()`: the oldest of all connections' heads goes first.
fn deliver_oldest(
    harness: &mut Harness<Scripted>,
    expected: &mut Expected,
) -> Result<bool, TestCaseError> {
    let oldest = expected.global.front().map(|(c, _)| *c);
    prop_assert_eq!(harness.deliver().unwrap(), oldest.is_some());
    if let Some(c) = oldest {
        handed_over(harness, expected, c)?;
    }
    Ok(oldest.is_some())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random moves of a store and of the caller: every request is answered exactly once,
    /// each connection's answers arrive in the order they were sent, `deliver()` hands the
    /// oldest of all first.
    #[test]
    fn answers_arrive_once_and_in_order(
        layout in layouts(),
        moves in prop::collection::vec((0u8..6, any::<u8>(), any::<u8>()), 0..200),
    ) {
        #[allow(clippy::disallowed_methods)] // the test's epoch; the harness keeps time
        let epoch = Instant::now();
        let mut harness = world(epoch, &layout);
        harness.take_log();
        let n_conns = layout.len();
        let mut taken: Vec<(usize, Owner, OpId)> = Vec::new();
        let mut answered: Vec<(Owner, OpId)> = Vec::new();
        let mut expected = Expected {
            per_conn: vec![VecDeque::new(); n_conns],
            global: VecDeque::new(),
        };
        for (kind, a, b) in moves {
            let c = usize::from(a) % n_conns;
            let conn = conn_at(&harness, c);
            match kind {
                // The store takes the oldest request of a connection.
                0 => {
                    if let Some((owner, request)) = harness.take_request(conn) {
                        taken.push((c, owner, request.id));
                    }
                }
                // The store answers a request it took.
                1 => {
                    if !taken.is_empty() {
                        let (c, owner, id) = taken.remove(usize::from(b) % taken.len());
                        harness.reply(owner, id, Ok(Reply::Done)).unwrap();
                        answered.push((owner, id));
                        expected.sent(c, Sent::Reply(owner, id));
                    }
                }
                // A second answer is refused, whatever it carries.
                2 => {
                    if !answered.is_empty() {
                        let (owner, id) = answered[usize::from(b) % answered.len()];
                        let again = harness.reply(owner, id, Ok(Reply::Value(None)));
                        prop_assert_eq!(again, Err(HarnessError::NotInFlight { owner, id }));
                    }
                }
                // A watch event for a machine of this connection.
                3 => {
                    let token = format!("c{c}m{}", usize::from(b) % layout[c].len());
                    harness.watch_event(conn, "/w", &token);
                    expected.sent(c, Sent::Watch(owner_of(&harness, &token), token));
                }
                // The model checker's move: one connection's oldest.
                4 => {
                    if harness.deliver_from(conn).unwrap() {
                        handed_over(&mut harness, &mut expected, c)?;
                    } else {
                        prop_assert!(expected.per_conn[c].is_empty());
                    }
                }
                // The driver's move: the oldest of all.
                _ => {
                    deliver_oldest(&mut harness, &mut expected)?;
                }
            }
            harness.take_log();
        }
        // Then everything left: taken, answered in order, handed over (the follow-ups too).
        loop {
            for (c, conn) in harness.conns().enumerate().collect::<Vec<_>>() {
                while let Some((owner, request)) = harness.take_request(conn) {
                    taken.push((c, owner, request.id));
                }
            }
            let moved = !taken.is_empty() || !expected.global.is_empty();
            for (c, owner, id) in taken.drain(..) {
                harness.reply(owner, id, Ok(Reply::Done)).unwrap();
                expected.sent(c, Sent::Reply(owner, id));
            }
            harness.take_log();
            while deliver_oldest(&mut harness, &mut expected)? {}
            if !moved {
                break;
            }
        }
        prop_assert!(harness.is_idle(), "everything answered and handed over");
        for (_, machine) in harness.actors() {
            let replies: Vec<OpId> = machine
                .seen
                .iter()
                .filter_map(|s| match s {
                    Seen::Reply(id) => Some(*id),
                    Seen::Watch(_) => None,
                })
                .collect();
            let mut once = replies.clone();
            once.sort();
            once.dedup();
            prop_assert_eq!(once.len(), replies.len(), "an answer handed twice");
            prop_assert_eq!(&once, &machine.issued, "every request answered");
            prop_assert!(machine.waiting.is_empty());
        }
    }

    /// Two worlds that got to the same queues by different orders across connections (so
    /// with other sequence numbers), one with a log and one without, are equal and hash
    /// alike; one delivery more tells them apart.
    #[test]
    fn equality_ignores_the_log_and_sequence_numbers(
        layout in layouts(),
        order in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        #[allow(clippy::disallowed_methods)] // the test's epoch; the harness keeps time
        let epoch = Instant::now();
        let mut logged = world(epoch, &layout);
        let mut quiet = world(epoch, &layout);
        quiet.set_log(false);
        // Every request taken, in both, in the same order.
        let mut answers = Vec::new();
        for conn in logged.conns().collect::<Vec<_>>() {
            while let Some((owner, request)) = logged.take_request(conn) {
                let same = quiet.take_request(conn);
                prop_assert_eq!(same.map(|(o, r)| (o, r.id)), Some((owner, request.id)));
                answers.push((conn, Some((owner, request.id))));
            }
            answers.push((conn, None)); // and one watch event per connection
        }
        // The same answers, each connection's in the same order, interleaved differently.
        let mut shuffled: Vec<VecDeque<_>> = logged
            .conns()
            .map(|c| answers.iter().filter(|(a, _)| *a == c).cloned().collect())
            .collect();
        let mut interleaved = Vec::new();
        let mut picks = order.iter().cycle();
        while shuffled.iter().any(|q| !q.is_empty()) {
            let nonempty: Vec<usize> = (0..shuffled.len()).filter(|&i| !shuffled[i].is_empty()).collect();
            let pick = nonempty[usize::from(*picks.next().unwrap_or(&0)) % nonempty.len()];
            interleaved.push(shuffled[pick].pop_front().unwrap());
        }
        let apply = |harness: &mut Harness<Scripted>, answers: &[(Conn, Option<(Owner, OpId)>)]| {
            for (conn, answer) in answers {
                match answer {
                    Some((owner, id)) => harness.reply(*owner, *id, Ok(Reply::Done)).unwrap(),
                    None => {
                        let token = format!("c{}m0", conn.index());
                        harness.watch_event(*conn, "/w", &token);
                    }
                }
            }
        };
        apply(&mut logged, &answers);
        apply(&mut quiet, &interleaved);
        prop_assert!(!logged.clone().take_log().is_empty(), "one keeps a log");
        prop_assert!(quiet.clone().take_log().is_empty(), "the other does not");
        prop_assert!(logged == quiet);
        prop_assert_eq!(hash(&logged), hash(&quiet));

        // One delivery in one of them: different worlds; the same in the other: equal again.
        let first = logged.conns().next().unwrap();
        prop_assert!(logged.deliver_from(first).unwrap());
        prop_assert!(logged != quiet);
        prop_assert!(quiet.deliver_from(first).unwrap());
        prop_assert!(logged == quiet);
        prop_assert_eq!(hash(&logged), hash(&quiet));
    }
}

fn hash(harness: &Harness<Scripted>) -> u64 {
    let mut hasher = DefaultHasher::new();
    harness.hash(&mut hasher);
    hasher.finish()
}

/// The scripted machine itself refuses an answer it is not waiting for, so that the
/// exactly-once check above rests on the harness, not on the machine's leniency.
#[test]
fn the_scripted_machine_refuses_what_it_did_not_ask() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut machine = Scripted::new("t".into(), 1, 0);
    let stray = Input::Reply {
        id: OpId::from_raw(9),
        result: Ok(Reply::Done),
    };
    assert_eq!(
        machine.handle_input(now, stray),
        Err(InputError::UnknownOp(OpId::from_raw(9)))
    );
    let first = Input::Reply {
        id: OpId::from_raw(0),
        result: Ok(Reply::Done),
    };
    assert_eq!(machine.handle_input(now, first.clone()), Ok(()));
    assert!(machine.handle_input(now, first).is_err());
}
