//! Output flow control (C xenstored 4.17's XSA-326 rules): nobody is disconnected for
//! events; a guest's request stays outstanding until the events it caused were taken, so a
//! guest that writes faster than its watchers read is throttled by its quota; events for a
//! guest that does not take them expire, counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use xsio_xenstored::{Config, ConnId, Origin, Output, Server};
use xsio_xs_wire::{FrameDecoder, MsgType};

/// `count` WRITEs of `path<i>` back to back, req_ids from 0.
fn writes(path: &str, count: u32) -> Vec<u8> {
    frames(WRITE, count, |i| format!("{path}{i}\0v").into_bytes())
}

/// Per connection, the (type, req_id) of each message received.
type Received = BTreeMap<ConnId, Vec<(u32, u32)>>;

/// Takes every output into `got`.
fn drain(server: &mut Server, got: &mut Received) {
    let mut decoders: BTreeMap<ConnId, FrameDecoder> = Default::default();
    while let Some(out) = server.poll_output() {
        match out {
            Output::Transmit { conn, bytes } => {
                let decoder = decoders.entry(conn).or_default();
                decoder.feed(&bytes);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    let entry = got.entry(conn).or_default();
                    entry.push((frame.header.msg_type, frame.header.req_id));
                }
                assert!(decoder.is_at_boundary());
            }
            Output::Close { conn, reason } => panic!("{conn:?} closed: {reason:?}"),
            _ => {}
        }
    }
}

fn replies(got: &[(u32, u32)]) -> usize {
    got.iter().filter(|(t, _)| *t != 15).count()
}

fn events(got: &[(u32, u32)]) -> usize {
    got.iter().filter(|(t, _)| *t == 15).count()
}

/// A dom0 connection watching `path` (token "t"), its output paused.
fn paused_dom0_watcher(h: &mut Harness, path: &str) -> ConnId {
    let watcher = h.dom0();
    h.watch(watcher, path, "t");
    h.server.pause_output(h.now, watcher);
    watcher
}

/// Domain 3 gets its home (through `dom0`) and two connections: a watcher of `data` whose
/// output is paused, and a writer that sends `count` WRITEs under `data` at once, held
/// after 20. Returns (watcher, writer).
fn flood_past_a_paused_watcher(
    h: &mut Harness,
    dom0: ConnId,
    count: u32,
    got: &mut Received,
) -> (ConnId, ConnId) {
    h.give_home(dom0, 3);
    let watcher = h.domain(3);
    let writer = h.server.connect(h.now, Origin::Domain(3));
    h.watch(watcher, "data", "t");
    h.server.pause_output(h.now, watcher);
    h.server
        .handle_input(h.now, writer, &writes("data/k", count));
    drain(&mut h.server, got);
    // The quota (20) counts requests whose events wait at the paused watcher.
    assert_eq!(replies(&got[&writer]), 20);
    (watcher, writer)
}

#[test]
fn a_paused_dom0_watcher_is_never_closed_and_gets_every_event() {
    let (mut h, writer) = Harness::with_dom0();
    let watcher = paused_dom0_watcher(&mut h, "/");
    let mut got = Default::default();
    h.server.handle_input(h.now, writer, &writes("/n", 5000));
    drain(&mut h.server, &mut got);
    assert_eq!(
        replies(&got[&writer]),
        5000,
        "dom0 writers are not held by events"
    );
    assert!(
        !got.contains_key(&watcher),
        "nothing reaches a paused connection"
    );
    assert_eq!(
        h.server.poll_timeout(),
        None,
        "events for dom0 never expire"
    );
    h.server.resume_output(h.now, watcher);
    drain(&mut h.server, &mut got);
    assert_eq!(events(&got[&watcher]), 5000);
    assert!(h.server.is_connected(watcher));
}

#[test]
fn a_guest_writer_is_throttled_while_the_events_it_caused_wait() {
    let (mut h, c) = Harness::with_dom0();
    let mut got = Default::default();
    let (watcher, writer) = flood_past_a_paused_watcher(&mut h, c, 100, &mut got);
    assert!(
        !h.server.wants_input(writer),
        "the driver stops reading the writer"
    );
    // Another guest is not held.
    let other = h.domain(4);
    assert_eq!(
        h.op(other, GET_DOMAIN_PATH, 0, &["4"]),
        Ok(b"/local/domain/4\0".to_vec())
    );
    h.server.resume_output(h.now, watcher);
    drain(&mut h.server, &mut got);
    assert_eq!(replies(&got[&writer]), 100);
    assert_eq!(events(&got[&watcher]), 100);
    assert!(h.server.wants_input(writer));
}

#[test]
fn unread_guest_events_expire_counted_and_release_the_writer() {
    let mut config = Config::default();
    config.watch_event_timeout = Duration::from_secs(20);
    let mut h = Harness::with_config(config);
    let c = h.dom0();
    let mut got = Default::default();
    let (watcher, writer) = flood_past_a_paused_watcher(&mut h, c, 30, &mut got);
    assert_eq!(
        h.server.poll_timeout(),
        Some(h.now + Duration::from_secs(20))
    );
    h.server.handle_timeout(h.now + Duration::from_secs(19));
    drain(&mut h.server, &mut got);
    assert_eq!(replies(&got[&writer]), 20, "nothing expired yet");
    h.server.handle_timeout(h.now + Duration::from_secs(20));
    let mut dropped = Vec::new();
    let mut decoders: BTreeMap<ConnId, FrameDecoder> = Default::default();
    while let Some(out) = h.server.poll_output() {
        match out {
            Output::EventsDropped { conn, domid, count } => dropped.push((conn, domid, count)),
            Output::Transmit { conn, bytes } => {
                let decoder = decoders.entry(conn).or_default();
                decoder.feed(&bytes);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.entry(conn)
                        .or_default()
                        .push((frame.header.msg_type, 0));
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(dropped, vec![(watcher, 3, 20)]);
    // The writer's last ten were answered once the first twenty completed by the drop.
    assert_eq!(replies(&got[&writer]), 30);
    let report = h.op(c, 0, 0, &["quota", "3"]).unwrap();
    let report = String::from_utf8(report).unwrap();
    let line = report
        .lines()
        .find(|l| l.starts_with("dropped events"))
        .unwrap();
    assert!(line.ends_with(" 20"), "{report}");
    // The watcher is still there; what came after the drop reaches it.
    h.server.resume_output(h.now, watcher);
    drain(&mut h.server, &mut got);
    assert_eq!(events(&got[&watcher]), 10);
}

#[test]
fn closing_a_paused_watcher_releases_the_writer() {
    let (mut h, c) = Harness::with_dom0();
    let mut got = Default::default();
    let (watcher, writer) = flood_past_a_paused_watcher(&mut h, c, 50, &mut got);
    h.server.disconnect(h.now, watcher);
    drain(&mut h.server, &mut got);
    assert_eq!(replies(&got[&writer]), 50);
}

#[derive(Clone, Debug)]
enum Step {
    /// Guest connection `n` (of domain 3) writes `count` nodes at once.
    Write(usize, u32),
    Pause(usize),
    Resume(usize),
    /// Time passes (seconds).
    Wait(u8),
    /// The driver takes the output.
    Drain,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, 1..40u32).prop_map(|(c, n)| Step::Write(c, n)),
        2 => (0..3usize).prop_map(Step::Pause),
        2 => (0..3usize).prop_map(Step::Resume),
        1 => (0..30u8).prop_map(Step::Wait),
        3 => Just(Step::Drain),
    ]
}

proptest! {
    /// Whatever the pauses, timeouts and write bursts: no connection is ever closed, and
    /// every request is answered exactly once in the end.
    #[test]
    fn every_request_is_answered_once_and_nobody_is_closed(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let (mut h, c) = Harness::with_dom0();
        h.give_home(c, 3);
        let conns: Vec<ConnId> = (0..3)
            .map(|_| h.server.connect(h.now, Origin::Domain(3)))
            .collect();
        for (i, conn) in conns.iter().enumerate() {
            h.watch(*conn, "data", &format!("t{i}"));
        }
        let mut now = h.now;
        let mut sent = [0u32; 3];
        let mut got = Default::default();
        for step in steps {
            match step {
                Step::Write(n, count) => {
                    let wire = writes(&format!("data/c{n}-{}-", sent[n]), count);
                    sent[n] += count;
                    h.server.handle_input(now, conns[n], &wire);
                }
                Step::Pause(n) => h.server.pause_output(now, conns[n]),
                Step::Resume(n) => h.server.resume_output(now, conns[n]),
                Step::Wait(secs) => {
                    now += Duration::from_secs(u64::from(secs));
                    if h.server.poll_timeout().is_some_and(|at| at <= now) {
                        h.server.handle_timeout(now);
                    }
                }
                Step::Drain => drain(&mut h.server, &mut got),
            }
            h.server.check_invariants().unwrap();
        }
        for conn in &conns {
            h.server.resume_output(now, *conn);
        }
        drain(&mut h.server, &mut got);
        for (n, conn) in conns.iter().enumerate() {
            let answered = got.get(conn).map_or(0, |g| replies(g));
            prop_assert_eq!(answered, sent[n] as usize);
        }
    }
}

#[test]
fn a_replies_type_and_order_are_kept_behind_events() {
    // The reply to a watcher's own request comes after the events queued before it.
    let (mut h, c) = Harness::with_dom0();
    let w = paused_dom0_watcher(&mut h, "/x");
    h.write(c, 0, "/x", "1").unwrap();
    let read = frame(MsgType::Read.as_u32(), 9, 0, b"/x\0");
    h.server.handle_input(h.now, w, &read);
    h.server.resume_output(h.now, w);
    let mut got = Default::default();
    drain(&mut h.server, &mut got);
    assert_eq!(got[&w], vec![(15, 0), (2, 9)]);
}
