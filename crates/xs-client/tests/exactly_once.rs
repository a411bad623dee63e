//! Property: whatever the order of replies, lost replies, conflicts and connection loss,
//! every operation started completes exactly once, and nothing else completes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, Store, wire};
use proptest::prelude::*;
use xsio_core::OpId;
use xsio_xs_client::{Config, TxOp};
use xsio_xs_wire::Packet;

#[derive(Clone, Debug)]
enum Cmd {
    Read(u8),
    Write(u8),
    Rm(u8),
    Exists(u8),
    Directory,
    Watch(u8),
    Unwatch(usize),
    Transact(Vec<u8>),
    TxStart,
    DomainPath(u32),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        (0u8..4).prop_map(Cmd::Read),
        (0u8..4).prop_map(Cmd::Write),
        (0u8..4).prop_map(Cmd::Rm),
        (0u8..4).prop_map(Cmd::Exists),
        Just(Cmd::Directory),
        (0u8..4).prop_map(Cmd::Watch),
        (0usize..8).prop_map(Cmd::Unwatch),
        proptest::collection::vec(0u8..4, 0..4).prop_map(Cmd::Transact),
        Just(Cmd::TxStart),
        (0u32..10).prop_map(Cmd::DomainPath),
    ]
}

/// A small deterministic PRNG for the schedule (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn issue(h: &mut Harness, cmd: &Cmd, watches: &mut Vec<OpId>) -> OpId {
    let now = h.now;
    let key = |k: &u8| format!("/k/{k}");
    match cmd {
        Cmd::Read(k) => h.client.read(now, None, &key(k)),
        Cmd::Write(k) => h.client.write(now, None, &key(k), "v"),
        Cmd::Rm(k) => h.client.rm(now, None, &key(k)),
        Cmd::Exists(k) => h.client.exists(now, None, &key(k)),
        Cmd::Directory => h.client.directory(now, None, "/k"),
        Cmd::Watch(k) => {
            let id = h
                .client
                .watch(now, &key(k), &format!("tok{}", watches.len()));
            watches.push(id);
            id
        }
        Cmd::Unwatch(i) => {
            let target = watches.get(*i).copied().unwrap_or(OpId::from_raw(9999));
            h.client.unwatch(now, target)
        }
        Cmd::Transact(keys) => h.client.transact(
            now,
            keys.iter()
                .map(|k| TxOp::Write(key(k), "t".into()))
                .collect(),
        ),
        Cmd::TxStart => h.client.transaction_start(now),
        Cmd::DomainPath(d) => h.client.get_domain_path(now, *d),
    }
}

fn run(cmds: Vec<Cmd>, seed: u64, close_after: Option<usize>, drop_one_in: usize) {
    let mut config = Config::default();
    config.transact_attempts = 3;
    config.request_timeout = Some(Duration::from_secs(10));
    let mut h = Harness::new(config);
    let mut rng = Rng(seed | 1);
    let mut store = Store::default();
    let mut issued = Vec::new();
    let mut watches = Vec::new();
    let mut pool: Vec<Packet<xsio_xs_wire::Reply>> = Vec::new();
    let mut pending_cmds = cmds.into_iter();
    let mut steps = 0;
    loop {
        // Start a command now and then, so that commands and replies interleave.
        if rng.below(3) == 0 {
            if let Some(c) = pending_cmds.next() {
                issued.push(issue(&mut h, &c, &mut watches));
            }
        }
        h.drain();
        while let Some(req) = h.inbox.pop_front() {
            let conflict = rng.below(3) == 0;
            for reply in store.answer(&req, conflict) {
                if drop_one_in == 0 || rng.below(drop_one_in) != 0 {
                    pool.push(reply);
                }
            }
        }
        if close_after == Some(steps) {
            h.close();
        }
        if pool.is_empty() {
            match pending_cmds.next() {
                Some(c) => issued.push(issue(&mut h, &c, &mut watches)),
                None => break,
            }
            continue;
        }
        // Deliver a random reply, its bytes cut at a random point.
        let reply = pool.swap_remove(rng.below(pool.len()));
        let bytes = wire(&[reply]);
        let cut = rng.below(bytes.len() + 1);
        h.feed(&bytes[..cut]);
        h.feed(&bytes[cut..]);
        steps += 1;
    }
    if h.client.is_closed() {
        // Connection loss completes everything at once, with no help from the clock.
        assert_eq!(h.client.ops_in_flight(), 0);
    }
    // Replies that were dropped end in timeouts.
    h.advance(Duration::from_secs(11));
    let mut counts: BTreeMap<OpId, usize> = BTreeMap::new();
    for (id, _) in &h.seen.done {
        *counts.entry(*id).or_default() += 1;
    }
    for id in &issued {
        assert_eq!(
            counts.remove(id),
            Some(1),
            "{id} must complete exactly once"
        );
    }
    assert!(
        counts.is_empty(),
        "completions of ops never started: {counts:?}"
    );
    assert_eq!(h.client.ops_in_flight(), 0);
    assert_eq!(h.client.poll_timeout(), None);
    for event in &h.seen.events {
        assert!(watches.contains(&event.watch));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_op_completes_exactly_once(
        cmds in proptest::collection::vec(cmd(), 1..24),
        seed: u64,
        close_after in proptest::option::of(0usize..40),
        drop_one_in in prop_oneof![Just(0usize), 2usize..12],
    ) {
        run(cmds, seed, close_after, drop_one_in);
    }
}
