//! Arbitrary daemon output (any frames, any cuts, interleaved with commands) never makes the
//! client panic, and every operation completes exactly once by the time the connection
//! closes. The request timeout and the clock jumps come from the whole range of `Duration`,
//! `Duration::MAX` and the end of `Instant`'s range included.
#![no_main]

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xsio_core::{Input, OpId};
use xsio_fuzz::{advance, any_duration, take};
use xsio_xs_client::{Client, Config, Output, TxOp};

fn command(client: &mut Client, now: Instant, selector: u8, watches: &[OpId]) -> OpId {
    match selector % 10 {
        0 => client.read(now, None, "/a"),
        1 => client.write(now, None, "/a", "v"),
        2 => client.directory(now, None, "/a"),
        3 => client.watch(now, "/a", &format!("t{selector}")),
        4 => client.unwatch(now, watches.first().copied().unwrap_or(OpId::from_raw(0))),
        5 => client.transact(now, vec![TxOp::Read("/a".into()), TxOp::Write("/b".into(), "x".into())]),
        6 => client.exists(now, None, "/a"),
        7 => client.transaction_start(now),
        8 => client.get_perms(now, None, "/a"),
        _ => client.get_domain_path(now, u32::from(selector)),
    }
}

fn drain(client: &mut Client, done: &mut BTreeMap<OpId, usize>) {
    while let Some(output) = client.poll_output() {
        if let Output::Done { id, .. } = output {
            *done.entry(id).or_default() += 1;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut rest = data;
    let mut config = Config::default();
    // An input that starts with 0xff sets the request timeout from the bytes that follow.
    if let Some((&0xff, tail)) = rest.split_first() {
        rest = tail;
        config.request_timeout = Some(any_duration(|| take(&mut rest)));
    }
    let mut client = Client::new(config, now);
    let mut issued = Vec::new();
    let mut watches = Vec::new();
    let mut done = BTreeMap::new();
    // The input is a sequence of records: a control byte, then (for byte chunks) a length
    // byte and that many bytes of daemon output.
    let mut t = now;
    while let Some((&control, tail)) = rest.split_first() {
        rest = tail;
        match control % 4 {
            0 | 1 => {
                let op = command(&mut client, t, control / 4, &watches);
                if control / 4 % 10 == 3 {
                    watches.push(op);
                }
                issued.push(op);
            }
            2 => {
                let len = rest.first().copied().unwrap_or(0) as usize;
                let chunk = rest.get(1..1 + len).unwrap_or(rest.get(1..).unwrap_or(&[]));
                rest = &rest[(1 + chunk.len()).min(rest.len())..];
                client.handle_input(t, Input::<OwnedFd>::Bytes(chunk));
            }
            _ => {
                let by = if control & 4 == 4 {
                    any_duration(|| take(&mut rest))
                } else {
                    Duration::from_secs(u64::from(control / 8))
                };
                t = advance(t, by);
                client.handle_timeout(t);
            }
        }
        drain(&mut client, &mut done);
    }
    client.handle_input(t, Input::<OwnedFd>::Closed);
    drain(&mut client, &mut done);
    for id in &issued {
        assert_eq!(done.remove(id), Some(1), "{id} completes exactly once");
    }
    assert!(done.is_empty());
    assert_eq!(client.ops_in_flight(), 0);
});
