//! Arbitrary answers, peer events (QMP events, the connection's end, the exit) and clock
//! jumps into each device-model operation (start-up, save, resume, pause, shutdown): no
//! panic, request ids fresh, every unknown or repeated answer refused, completed at most
//! once (and, once time has run out and everything was answered, exactly once), and every
//! descriptor handle it was given passed on or closed. Timeouts and clock jumps come from
//! the whole range of `Duration`.
#![no_main]

use std::collections::BTreeSet;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use xsio_core::{Machine, OpId};
use xsio_dm::{
    Action, Control, ControlConfig, Save, SaveConfig, Shutdown, ShutdownConfig, StartConfig,
    StartUp,
};
use xsio_fuzz::{Bytes, advance, answer_to_anything, check_stray_answer};
use xsio_ops::{
    FdHandle, FileOp, Input, InputError, Op, OpError, OpErrorKind, Output, PeerEvent,
    ProcessExit, QemuVersion, QmpEvent, QmpOp, QmpSession, Reply, Request,
};

/// QMP return values a command may get: the real shapes and odd ones.
fn value(selector: u8) -> Value {
    match selector % 10 {
        0 => json!({}),
        1 => json!({"status": "prelaunch", "running": false}),
        2 => json!({"status": "paused", "running": false}),
        3 => json!({"status": "inmigrate"}),
        4 => json!({"status": 7}),
        5 => json!({"fdset-id": u64::from(selector), "fd": 12}),
        6 => json!({"fdset-id": -1}),
        7 => json!([{"fdset-id": 0, "fds": [{"fd": 11, "opaque": "saved_state"}]}]),
        8 => json!([{"fdset-id": 3, "fds": [{"opaque": 5}]}, "x"]),
        _ => Value::Null,
    }
}

/// An answer for `request`: mostly one that fits, sometimes anything.
fn answer(request: &Request, data: &mut Bytes<'_>, handles: &mut u64) -> Result<Reply, OpError> {
    let kind = data.byte() % 12;
    if let Some(any) = answer_to_anything(kind, OpErrorKind::Timeout, || value(data.byte())) {
        return any;
    }
    Ok(match &request.op {
        Op::Qmp(QmpOp::Connect) => Reply::QmpConnected(QmpSession {
            version: QemuVersion {
                major: u32::from(data.byte() % 10),
                minor: u32::from(data.byte() % 15),
                micro: 0,
            },
            package: String::new(),
        }),
        Op::File(FileOp::Open(_)) => {
            *handles += 1;
            Reply::Fd(FdHandle::from_raw(*handles))
        }
        Op::Qmp(QmpOp::Command(_)) => Reply::Qmp(value(data.byte())),
        _ => Reply::Done,
    })
}

fn peer_event(selector: u8) -> PeerEvent {
    match selector % 5 {
        0 => PeerEvent::QmpClosed,
        1 => PeerEvent::Exited(None),
        2 => PeerEvent::Exited(Some(ProcessExit::Exited(i32::from(selector)))),
        3 => PeerEvent::Exited(Some(ProcessExit::Signalled(9))),
        _ => PeerEvent::Qmp(QmpEvent {
            name: "STOP".into(),
            data: Value::Null,
        }),
    }
}

/// Every operation behind one surface; its completion as `true` for success.
enum Operation {
    Start(StartUp),
    Save(Save),
    Control(Control),
    Shutdown(Shutdown),
}

impl Operation {
    fn input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        match self {
            Operation::Start(m) => m.handle_input(now, input),
            Operation::Save(m) => m.handle_input(now, input),
            Operation::Control(m) => m.handle_input(now, input),
            Operation::Shutdown(m) => m.handle_input(now, input),
        }
    }

    fn poll(&mut self) -> Option<Output<bool>> {
        fn map<T, E>(output: Option<Output<Result<T, E>>>) -> Option<Output<bool>> {
            output.map(|o| match o {
                Output::Request(r) => Output::Request(r),
                Output::Event(e) => Output::Event(e.is_ok()),
            })
        }
        match self {
            Operation::Start(m) => map(m.poll_output()),
            Operation::Save(m) => map(m.poll_output()),
            Operation::Control(m) => map(m.poll_output()),
            Operation::Shutdown(m) => map(m.poll_output()),
        }
    }

    fn timeout(&mut self, now: Instant) {
        match self {
            Operation::Start(m) => m.handle_timeout(now),
            Operation::Save(m) => m.handle_timeout(now),
            Operation::Control(m) => m.handle_timeout(now),
            Operation::Shutdown(m) => m.handle_timeout(now),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Operation::Start(m) => m.poll_timeout(),
            Operation::Save(m) => m.poll_timeout(),
            Operation::Control(m) => m.poll_timeout(),
            Operation::Shutdown(m) => m.poll_timeout(),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = Bytes(input);
    #[allow(clippy::disallowed_methods)] // the run's epoch; later times come from the input
    let mut now = Instant::now();
    now = advance(now, data.duration());
    let timeout = data.duration();
    let mut operation = match data.byte() % 6 {
        0 => Operation::Start(StartUp::new(
            StartConfig {
                timeout,
                exit_grace: data.duration(),
                ..StartConfig::fresh()
            },
            now,
        )),
        1 => Operation::Save(Save::new(
            SaveConfig {
                timeout,
                live: data.byte() & 1 == 1,
                ..SaveConfig::to("/fuzz/state")
            },
            now,
        )),
        2 => Operation::Control(Control::new(
            ControlConfig {
                action: Action::Resume,
                timeout,
            },
            now,
        )),
        3 => Operation::Control(Control::new(
            ControlConfig {
                action: Action::Pause,
                timeout,
            },
            now,
        )),
        _ => Operation::Shutdown(Shutdown::new(
            ShutdownConfig {
                timeout,
                kill_timeout: data.duration(),
            },
            now,
        )),
    };

    let mut pending: Vec<Request> = Vec::new();
    let mut answered: BTreeSet<OpId> = BTreeSet::new();
    let mut seen_ids: BTreeSet<OpId> = BTreeSet::new();
    let mut completions = 0;
    let mut handles_given: BTreeSet<FdHandle> = BTreeSet::new();
    let mut handles_consumed: BTreeSet<FdHandle> = BTreeSet::new();
    let mut last_handle = 0u64;
    let mut drain = |operation: &mut Operation,
                     pending: &mut Vec<Request>,
                     completions: &mut usize,
                     consumed: &mut BTreeSet<FdHandle>| {
        while let Some(output) = operation.poll() {
            match output {
                Output::Request(request) => {
                    assert!(seen_ids.insert(request.id), "request ids are fresh");
                    match &request.op {
                        Op::Qmp(QmpOp::Command(command)) => consumed.extend(&command.fds),
                        Op::File(FileOp::Close(fd)) => {
                            consumed.insert(*fd);
                        }
                        _ => {}
                    }
                    pending.push(request);
                }
                Output::Event(_) => *completions += 1,
            }
        }
    };
    drain(&mut operation, &mut pending, &mut completions, &mut handles_consumed);

    while !data.is_empty() {
        match data.byte() % 6 {
            // Answer one request in flight (any of them: answers may come in any order).
            0..=2 if !pending.is_empty() => {
                let index = usize::from(data.byte()) % pending.len();
                let request = pending.remove(index);
                let result = answer(&request, &mut data, &mut last_handle);
                if let Ok(Reply::Fd(fd)) = &result {
                    handles_given.insert(*fd);
                }
                // A wrong kind of answer is refused but counts as answered.
                let _ = operation.input(now, Input::Reply { id: request.id, result });
                answered.insert(request.id);
            }
            // An answer to something never asked, or asked and already answered: refused.
            3 => check_stray_answer(&answered, || data.byte(), |input| operation.input(now, input)),
            4 => {
                let event = peer_event(data.byte());
                operation.input(now, Input::Peer(&event)).unwrap();
            }
            _ => {
                now = advance(now, data.duration());
                if operation.deadline().is_some_and(|d| d <= now) {
                    operation.timeout(now);
                }
            }
        }
        drain(&mut operation, &mut pending, &mut completions, &mut handles_consumed);
        assert!(completions <= 1, "completed more than once");
    }

    // The end: every request answered (with a connection error), time past any deadline.
    while !pending.is_empty() {
        for request in std::mem::take(&mut pending) {
            let result = Err(OpError::new(OpErrorKind::Connection, "fuzz: the end"));
            let _ = operation.input(now, Input::Reply { id: request.id, result });
        }
        if let Some(deadline) = operation.deadline() {
            now = now.max(deadline);
            operation.timeout(now);
        }
        drain(&mut operation, &mut pending, &mut completions, &mut handles_consumed);
    }
    let gone = PeerEvent::Exited(None);
    operation.input(now, Input::Peer(&gone)).unwrap();
    let closed = PeerEvent::QmpClosed;
    operation.input(now, Input::Peer(&closed)).unwrap();
    if let Some(deadline) = operation.deadline() {
        now = now.max(deadline);
        operation.timeout(now);
    }
    drain(&mut operation, &mut pending, &mut completions, &mut handles_consumed);
    for request in std::mem::take(&mut pending) {
        let result = Err(OpError::new(OpErrorKind::Connection, "fuzz: the end"));
        let _ = operation.input(now, Input::Reply { id: request.id, result });
    }
    drain(&mut operation, &mut pending, &mut completions, &mut handles_consumed);
    assert_eq!(completions, 1, "completed exactly once in the end");
    assert!(
        handles_given.is_subset(&handles_consumed),
        "every handle passed on or closed: given {handles_given:?}, consumed {handles_consumed:?}"
    );
});
