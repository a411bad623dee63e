//! Unit tests of the client machine, with deterministic time and counted fds.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use xsio_core::{FdLedger, Input, OpId, TrackedFd};

use crate::typed;
use crate::{
    Client, CloseReason, Command, CommandError, Config, ErrorClass, Output, ProtocolError,
    WireError,
};

pub(crate) const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;

#[allow(clippy::disallowed_methods)] // tidy:allow
fn epoch() -> Instant {
    Instant::now() // tidy:allow: the one clock read, an epoch for virtual time
}

/// A client plus a ledger and a virtual clock; renders outputs as lines for assertions.
struct Harness {
    qmp: Client<TrackedFd>,
    ledger: FdLedger,
    start: Instant,
    now: Instant,
}

impl Harness {
    fn new(config: Config) -> Self {
        let start = epoch();
        Harness {
            qmp: Client::new(config, start),
            ledger: FdLedger::default(),
            start,
            now: start,
        }
    }

    /// A client already in command mode.
    fn ready(config: Config) -> Self {
        let mut h = Harness::new(config);
        h.feed(GREETING);
        h.drain();
        h.feed(r#"{"return": {}, "id": 0}"#);
        assert_eq!(h.drain(), vec!["connected oob=false"]);
        h
    }

    /// A client in command mode that has at most one command in flight.
    fn ready_with_window_of_one() -> Self {
        Harness::ready(Config {
            max_in_flight: 1,
            ..Config::default()
        })
    }

    fn feed(&mut self, text: &str) {
        self.qmp
            .handle_input(self.now, Input::Bytes(text.as_bytes()));
        self.qmp.handle_input(self.now, Input::Bytes(b"\r\n"));
    }

    fn exec(&mut self, cmd: Command<TrackedFd>) -> OpId {
        self.qmp.execute(self.now, cmd)
    }

    /// Executes `commands` and takes what the client sends for them.
    fn sent<const N: usize>(&mut self, commands: [Command<TrackedFd>; N]) -> [OpId; N] {
        let ids = commands.map(|cmd| self.exec(cmd));
        self.drain();
        ids
    }

    fn with_fd(&self, name: &'static str) -> Command<TrackedFd> {
        Command::new(name).fd(self.ledger.open())
    }

    fn advance(&mut self, by: Duration) {
        self.now =
            xsio_core::deadline(self.now, by).expect("a test clock far from the end of time");
        if self.qmp.poll_timeout().is_some_and(|t| t <= self.now) {
            self.qmp.handle_timeout(self.now);
        }
    }

    /// Drains outputs; transmitted fds are dropped here, as a driver does after sendmsg.
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(out) = self.qmp.poll_output() {
            lines.push(render(out));
        }
        lines
    }
}

fn render(out: Output<TrackedFd>) -> String {
    match out {
        Output::Transmit(t) => {
            let text = String::from_utf8_lossy(&t.bytes)
                .trim_end()
                .replace('\n', " | ");
            if t.fds.is_empty() {
                format!("tx {text}")
            } else {
                format!("tx[fds={}] {text}", t.fds.len())
            }
        }
        Output::Connected(s) => format!("connected oob={}", s.oob),
        Output::Done { id, result: Ok(r) } => format!("done {id} ok {}", r.as_str()),
        Output::Done { id, result: Err(e) } => format!("done {id} err {e:?}"),
        Output::Event(e) => format!("event {} {}", e.name, e.data),
        Output::Closed(r) => format!("closed {r:?}"),
    }
}

fn op(n: u64) -> OpId {
    OpId::from_raw(n)
}

#[test]
fn negotiation_sends_capabilities_after_the_greeting_and_holds_commands_until_done() {
    let mut h = Harness::new(Config::default());
    let a = h.exec(typed::query_status());
    assert_eq!(h.drain(), Vec::<String>::new());
    h.feed(GREETING);
    assert_eq!(
        h.drain(),
        vec![r#"tx {"execute":"qmp_capabilities","id":0}"#]
    );
    h.feed(r#"{"return": {}, "id": 0}"#);
    assert_eq!(
        h.drain(),
        vec![
            "connected oob=false",
            r#"tx {"execute":"query-status","id":1}"#
        ]
    );
    h.feed(r#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": 1}"#);
    assert_eq!(
        h.drain(),
        vec![format!(
            r#"done {a} ok {{"status": "running", "singlestep": false, "running": true}}"#
        )]
    );
    assert_eq!(h.qmp.session().unwrap().greeting.version.qemu.minor, 2);
}

#[test]
fn oob_is_enabled_only_when_asked_and_offered() {
    let config = Config {
        enable_oob: true,
        ..Config::default()
    };
    let mut h = Harness::new(config.clone());
    h.feed(GREETING);
    assert_eq!(
        h.drain(),
        vec![r#"tx {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":0}"#]
    );
    h.feed(r#"{"return": {}, "id": 0}"#);
    assert_eq!(h.drain(), vec!["connected oob=true"]);
    h.exec(Command::new("x-oob-test").out_of_band());
    assert_eq!(h.drain(), vec![r#"tx {"exec-oob":"x-oob-test","id":1}"#]);

    let mut not_offered = Harness::new(config);
    not_offered.feed(r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 2}}, "capabilities": []}}"#);
    assert_eq!(
        not_offered.drain(),
        vec![r#"tx {"execute":"qmp_capabilities","id":0}"#]
    );
}

#[test]
fn i1_negotiation_timeout_fails_queued_commands_once_and_closes() {
    let mut h = Harness::new(Config::default());
    let fd_cmd = h.with_fd("add-fd");
    let a = h.exec(fd_cmd);
    assert_eq!(h.ledger.open_count(), 1);
    h.advance(Duration::from_secs(9));
    assert_eq!(h.drain(), Vec::<String>::new());
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.drain(),
        vec![
            format!("done {a} err Protocol(NegotiationTimeout)"),
            "closed Protocol(NegotiationTimeout)".to_owned()
        ]
    );
    assert_eq!(h.ledger.open_count(), 0, "I2: the unsent fd was closed");
    assert_eq!(h.qmp.poll_timeout(), None);
    // Later commands fail at once, exactly once.
    let b = h.exec(typed::query_status());
    assert_eq!(h.drain(), vec![format!("done {b} err Disconnected")]);
}

#[test]
fn refused_or_out_of_order_negotiation_ends_the_connection() {
    let mut h = Harness::new(Config::default());
    h.feed(r#"{"return": {}, "id": 0}"#);
    assert_eq!(h.drain(), vec!["closed Protocol(ExpectedGreeting)"]);

    let mut h = Harness::new(Config::default());
    h.feed(GREETING);
    h.drain();
    h.feed(r#"{"id": 0, "error": {"class": "GenericError", "desc": "no"}}"#);
    let lines = h.drain();
    assert!(
        lines[0].starts_with("closed Protocol(NegotiationRefused"),
        "{lines:?}"
    );

    let mut h = Harness::ready(Config::default());
    h.feed(GREETING);
    assert_eq!(h.drain(), vec!["closed Protocol(UnexpectedGreeting)"]);
}

#[test]
fn pipelined_commands_respect_the_window_and_go_out_in_one_transmit() {
    let mut h = Harness::ready(Config {
        max_in_flight: 3,
        ..Config::default()
    });
    let ids: Vec<OpId> = (0..5).map(|_| h.exec(typed::query_status())).collect();
    assert_eq!(
        h.drain(),
        vec![
            r#"tx {"execute":"query-status","id":1} | {"execute":"query-status","id":2} | {"execute":"query-status","id":3}"#
        ]
    );
    h.feed(r#"{"return": {}, "id": 1}"#);
    h.feed(r#"{"return": {}, "id": 2}"#);
    assert_eq!(
        h.drain(),
        vec![
            format!("done {} ok {{}}", ids[0]),
            format!("done {} ok {{}}", ids[1]),
            r#"tx {"execute":"query-status","id":4} | {"execute":"query-status","id":5}"#
                .to_owned()
        ]
    );
}

#[test]
fn events_are_delivered_where_they_arrive_even_between_command_and_reply() {
    let mut h = Harness::ready(Config::default());
    let a = h.exec(typed::eject("cd0"));
    h.drain();
    h.feed(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_TRAY_MOVED", "data": {"device": "", "tray-open": true, "id": "cd0"}}"#);
    h.feed(r#"{"return": {}, "id": 1}"#);
    h.feed(r#"{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "STOP"}"#);
    assert_eq!(
        h.drain(),
        vec![
            r#"event DEVICE_TRAY_MOVED {"device":"","id":"cd0","tray-open":true}"#.to_owned(),
            format!("done {a} ok {{}}"),
            "event STOP {}".to_owned(),
        ]
    );
}

#[test]
fn i4_events_beyond_the_bound_are_dropped_and_counted() {
    let mut h = Harness::ready(Config {
        max_events: 2,
        ..Config::default()
    });
    for _ in 0..5 {
        h.feed(r#"{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 1}}"#);
    }
    assert_eq!(h.drain().len(), 2);
    assert_eq!(h.qmp.stats().events_dropped, 3);
    h.feed(r#"{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 1}}"#);
    assert_eq!(h.drain().len(), 1, "draining made room again");
}

#[test]
fn error_replies_map_to_typed_classes() {
    let mut h = Harness::ready(Config::default());
    let classes = [
        ("GenericError", ErrorClass::GenericError),
        ("CommandNotFound", ErrorClass::CommandNotFound),
        ("DeviceNotActive", ErrorClass::DeviceNotActive),
        ("DeviceNotFound", ErrorClass::DeviceNotFound),
        ("KVMMissingCap", ErrorClass::Unknown("KVMMissingCap".into())),
    ];
    for (n, (name, class)) in classes.into_iter().enumerate() {
        let id = h.exec(Command::new("device_del"));
        h.drain();
        h.feed(&format!(
            r#"{{"id": {}, "error": {{"class": "{name}", "desc": "d"}}}}"#,
            n + 1
        ));
        let out = h.qmp.poll_output();
        let Some(Output::Done {
            id: got,
            result: Err(CommandError::Qmp(e)),
        }) = out
        else {
            panic!("{out:?}")
        };
        assert_eq!((got, &e.class, e.desc.as_str()), (id, &class, "d"));
        assert_eq!(e.class.as_str(), name);
    }
}

#[test]
fn i1_timeout_completes_once_and_a_late_reply_is_ignored_but_keeps_its_slot() {
    let mut h = Harness::ready_with_window_of_one();
    let a = h.exec(Command::new("slow").timeout(Duration::from_secs(2)));
    let b = h.exec(typed::query_status());
    assert_eq!(h.drain(), vec![r#"tx {"execute":"slow","id":1}"#]);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.drain(), vec![format!("done {a} err Timeout")]);
    // QEMU may still be running it: the window stays full until it answers.
    assert_eq!(h.qmp.queued(), 1);
    h.feed(r#"{"return": {}, "id": 1}"#);
    assert_eq!(h.drain(), vec![r#"tx {"execute":"query-status","id":2}"#]);
    assert_eq!(h.qmp.stats().unknown_replies, 0);
    h.feed(r#"{"return": {}, "id": 2}"#);
    assert_eq!(h.drain(), vec![format!("done {b} ok {{}}")]);
    // A reply nobody asked for is dropped and counted.
    h.feed(r#"{"return": {}, "id": 99}"#);
    h.feed(r#"{"return": {}, "id": "foreign"}"#);
    assert_eq!(h.drain(), Vec::<String>::new());
    assert_eq!(h.qmp.stats().unknown_replies, 2);
}

#[test]
fn unsent_command_times_out_and_its_fd_is_closed() {
    let mut h = Harness::ready_with_window_of_one();
    h.exec(Command::new("first"));
    let cmd = h.with_fd("getfd").timeout(Duration::from_secs(1));
    let b = h.exec(cmd);
    h.drain();
    assert_eq!(h.ledger.open_count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.drain(), vec![format!("done {b} err Timeout")]);
    assert_eq!(h.ledger.open_count(), 0);
}

#[test]
fn i6_one_fd_command_unanswered_at_a_time_others_pipeline_around_it() {
    let mut h = Harness::ready(Config::default());
    let first = h.with_fd("add-fd");
    h.exec(first);
    h.exec(Command::new("query-status"));
    let second = h.with_fd("add-fd");
    h.exec(second);
    h.exec(Command::new("query-block"));
    assert_eq!(h.ledger.open_count(), 2);
    // The first fd rides with its own command's first byte; the plain command follows it.
    assert_eq!(
        h.drain(),
        vec![r#"tx[fds=1] {"execute":"add-fd","id":1} | {"execute":"query-status","id":2}"#]
    );
    assert_eq!(
        h.ledger.open_count(),
        1,
        "the transmitted fd was handed out"
    );
    h.feed(r#"{"return": {}, "id": 2}"#);
    let lines = h.drain();
    assert_eq!(
        lines.len(),
        1,
        "still blocked by the unanswered add-fd: {lines:?}"
    );
    h.feed(r#"{"return": {"fd": 13, "fdset-id": 0}, "id": 1}"#);
    let lines = h.drain();
    assert_eq!(
        lines[1],
        r#"tx[fds=1] {"execute":"add-fd","id":3} | {"execute":"query-block","id":4}"#
    );
    assert_eq!(h.ledger.open_count(), 0);
}

#[test]
fn a_command_after_a_plain_one_starts_its_own_transmit_when_it_carries_fds() {
    let mut h = Harness::ready(Config::default());
    h.exec(Command::new("stop"));
    let c = h.with_fd("getfd");
    h.exec(c);
    assert_eq!(
        h.drain(),
        vec![
            r#"tx {"execute":"stop","id":1}"#,
            r#"tx[fds=1] {"execute":"getfd","id":2}"#
        ]
    );
}

#[test]
fn chained_command_goes_before_commands_queued_earlier_but_unsent() {
    let mut h = Harness::ready_with_window_of_one();
    let add = h.with_fd("add-fd");
    let a = h.exec(add);
    h.exec(Command::new("later-1"));
    h.exec(Command::new("later-2"));
    assert_eq!(h.drain(), vec![r#"tx[fds=1] {"execute":"add-fd","id":1}"#]);
    h.feed(r#"{"return": {"fd": 13, "fdset-id": 0}, "id": 1}"#);
    let Some(Output::Done { id, result: Ok(r) }) = h.qmp.poll_output() else {
        panic!()
    };
    assert_eq!(id, a);
    // Issued from the completion, before draining on.
    let info: typed::AddFdInfo = r.parse().unwrap();
    h.exec(typed::eject(&typed::fdset_path(info.fdset_id)).chained());
    assert_eq!(
        h.drain(),
        vec![r#"tx {"execute":"eject","arguments":{"id":"/dev/fdset/0"},"id":4}"#]
    );
}

#[test]
fn i1_i2_close_fails_every_pending_command_once_and_drops_unsent_fds() {
    let mut h = Harness::ready(Config::default());
    let c1 = h.with_fd("add-fd");
    let a = h.exec(c1);
    let c2 = h.with_fd("add-fd");
    let b = h.exec(c2);
    h.drain();
    assert_eq!(h.ledger.open_count(), 1);
    h.qmp.close(h.now);
    assert_eq!(
        h.drain(),
        vec![
            format!("done {a} err Disconnected"),
            format!("done {b} err Disconnected"),
            "closed ClosedByCaller".to_owned()
        ]
    );
    assert_eq!(h.ledger.open_count(), 0);
    h.qmp.close(h.now);
    h.qmp.handle_input(h.now, Input::Closed);
    assert_eq!(h.drain(), Vec::<String>::new(), "closed is reported once");
}

#[test]
fn peer_close_counts_as_success_for_quit_only() {
    let mut h = Harness::ready(Config::default());
    let [q, s] = h.sent([typed::quit(), typed::query_status()]);
    h.qmp.handle_input(h.now, Input::Closed);
    assert_eq!(
        h.drain(),
        vec![
            format!("done {q} ok {{}}"),
            format!("done {s} err Disconnected"),
            "closed PeerClosed".to_owned()
        ]
    );
}

#[test]
fn an_error_without_id_is_fatal() {
    let mut h = Harness::ready(Config::default());
    let a = h.exec(typed::query_status());
    h.drain();
    h.feed(r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#);
    let lines = h.drain();
    assert!(lines[0].starts_with(&format!("done {a} err Protocol(UnattributedError")));
    assert!(lines[1].starts_with("closed Protocol(UnattributedError"));
}

#[test]
fn i4_oversize_reply_closes_with_a_typed_error() {
    let mut h = Harness::ready(Config {
        max_message: 200,
        ..Config::default()
    });
    let a = h.exec(typed::query_block());
    h.drain();
    h.feed(&format!(r#"{{"return": "{}", "id": 1}}"#, "x".repeat(300)));
    let reason = CloseReason::Protocol(ProtocolError::Wire(WireError::Oversize { limit: 200 }));
    let err = CommandError::Protocol(ProtocolError::Wire(WireError::Oversize { limit: 200 }));
    assert_eq!(
        h.drain(),
        vec![
            format!("done {a} err {err:?}"),
            format!("closed {reason:?}")
        ]
    );
}

#[test]
fn cancel_completes_once_whether_sent_or_not() {
    let mut h = Harness::ready_with_window_of_one();
    let a = h.exec(Command::new("a"));
    let fd_cmd = h.with_fd("b");
    let b = h.exec(fd_cmd);
    h.drain();
    assert!(h.qmp.cancel(h.now, b));
    assert!(h.qmp.cancel(h.now, a));
    assert!(!h.qmp.cancel(h.now, a));
    assert_eq!(
        h.drain(),
        vec![
            format!("done {b} err Cancelled"),
            format!("done {a} err Cancelled")
        ]
    );
    assert_eq!(h.ledger.open_count(), 0);
    h.feed(r#"{"return": {}, "id": 1}"#);
    assert_eq!(h.drain(), Vec::<String>::new());
}

#[test]
fn fds_received_from_qemu_are_closed() {
    let mut h = Harness::ready(Config::default());
    let fds = vec![h.ledger.open(), h.ledger.open()];
    h.qmp.handle_input(h.now, Input::Fds(fds));
    assert_eq!(h.ledger.open_count(), 0);
    assert_eq!(h.qmp.stats().fds_received, 2);
}

#[test]
fn overload_is_a_typed_failure() {
    let mut h = Harness::new(Config {
        max_queued: 1,
        ..Config::default()
    });
    h.exec(Command::new("a"));
    let b = h.exec(Command::new("b"));
    assert_eq!(h.drain(), vec![format!("done {b} err Overloaded")]);
    assert_eq!(op(1), b);
    let _ = h.start;
}

/// What QEMU sends after three commands: events between replies, one reply pretty-printed.
const SESSION: &str = concat!(
    "{\n    \"return\": {\n    },\n    \"id\": 1\n}\r\n",
    r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "X", "data": {"s": "}{\"\\"}}"#,
    "\r\n",
    r#"{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}"#,
    "\r\n",
    r#"{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}"#,
    "\r\n",
);

fn run_session(chunks: &[&[u8]]) -> Vec<String> {
    let mut h = Harness::ready(Config::default());
    h.exec(typed::stop());
    h.exec(typed::query_status());
    h.exec(Command::new("no-such-command"));
    assert_eq!(h.drain().len(), 1);
    let mut lines = Vec::new();
    for chunk in chunks {
        h.qmp.handle_input(h.now, Input::Bytes(chunk));
        lines.extend(h.drain());
    }
    lines
}

proptest! {
    #[test]
    fn i7_i5_any_split_of_the_stream_gives_identical_outputs(
        cuts in proptest::collection::btree_set(0..SESSION.len(), 0..20)
    ) {
        let whole = run_session(&[SESSION.as_bytes()]);
        prop_assert_eq!(whole.len(), 4);
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in cuts {
            chunks.push(&SESSION.as_bytes()[last..cut]);
            last = cut;
        }
        chunks.push(&SESSION.as_bytes()[last..]);
        prop_assert_eq!(run_session(&chunks), whole);
    }
}

#[test]
fn match_by_order_sends_in_band_commands_without_id_and_pairs_replies_in_order() {
    let mut h = Harness::new(Config {
        match_by_order: true,
        enable_oob: true,
        ..Config::default()
    });
    h.feed(GREETING);
    assert_eq!(
        h.drain(),
        vec![r#"tx {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":0}"#]
    );
    h.feed(r#"{"return": {}, "id": 0}"#);
    h.drain();
    let a = h.exec(typed::query_status());
    let b = h.exec(Command::new("nope"));
    let c = h.exec(Command::new("x-oob").out_of_band());
    assert_eq!(
        h.drain(),
        vec![r#"tx {"exec-oob":"x-oob","id":3} | {"execute":"query-status"} | {"execute":"nope"}"#]
    );
    h.feed(r#"{"return": {}, "id": 3}"#);
    h.feed(r#"{"return": {"running": true}}"#);
    h.feed(r#"{"error": {"class": "CommandNotFound", "desc": "x"}}"#);
    let lines = h.drain();
    assert_eq!(lines[0], format!("done {c} ok {{}}"));
    assert_eq!(lines[1], format!(r#"done {a} ok {{"running": true}}"#));
    assert!(
        lines[2].starts_with(&format!("done {b} err Qmp")),
        "{lines:?}"
    );
    // With nothing in flight an id-less reply belongs to nobody: fatal.
    h.feed(r#"{"return": {}}"#);
    assert_eq!(h.drain(), vec!["closed Protocol(UnattributedReturn)"]);
}

#[test]
fn i3_nothing_is_delivered_from_inside_a_call_outputs_wait_to_be_drained() {
    let mut h = Harness::ready(Config::default());
    let a = h.exec(typed::query_status());
    // Inputs and commands only queue; the order of the queue is the order of events.
    h.feed(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 1}}"#);
    let b = h.exec(typed::cont());
    h.qmp.close(h.now);
    let c = h.exec(typed::stop());
    assert_eq!(
        h.drain(),
        vec![
            "event STOP {}".to_owned(),
            format!("done {a} err Disconnected"),
            format!("done {b} err Disconnected"),
            "closed ClosedByCaller".to_owned(),
            format!("done {c} err Disconnected"),
        ]
    );
}

/// One scripted session with deadlines; returns everything the client output, with times.
fn scripted_session() -> Vec<String> {
    let mut h = Harness::ready(Config {
        command_timeout: Duration::from_secs(3),
        ..Config::default()
    });
    let mut lines = Vec::new();
    h.exec(typed::query_status());
    h.exec(Command::new("slow").timeout(Duration::from_secs(1)));
    lines.extend(h.drain());
    for step in 0..5 {
        h.advance(Duration::from_millis(700));
        if step == 2 {
            h.feed(r#"{"return": {}, "id": 2}"#);
        }
        let at = (h.now - h.start).as_millis();
        lines.extend(h.drain().into_iter().map(|l| format!("+{at}ms {l}")));
        lines.push(format!(
            "next {:?}",
            h.qmp.poll_timeout().map(|t| t - h.start)
        ));
    }
    lines
}

#[test]
fn i5_time_comes_only_from_arguments_so_a_rerun_is_identical() {
    let first = scripted_session();
    assert_eq!(scripted_session(), first);
    // And the deadlines did fire at the virtual times they were set for.
    assert!(
        first.contains(&"+1400ms done op#1 err Timeout".to_owned()),
        "{first:#?}"
    );
    assert!(
        first.contains(&"+3500ms done op#0 err Timeout".to_owned()),
        "{first:#?}"
    );
}

#[test]
fn replies_are_matched_by_id_even_when_they_overtake() {
    let mut h = Harness::ready(Config::default());
    let [a, b] = h.sent([typed::query_status(), typed::query_block()]);
    h.feed(r#"{"return": [], "id": 2}"#);
    h.feed(r#"{"return": {}, "id": 1}"#);
    assert_eq!(
        h.drain(),
        vec![format!("done {b} ok []"), format!("done {a} ok {{}}")]
    );
}
