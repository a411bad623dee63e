//! Arbitrary answers in any order, peer events (tray events, the connection's end, QEMU's
//! exit) and clock jumps into a CD-ROM media change (insert or eject, through QMP or
//! xenstore): no panic, request ids fresh, every unknown or repeated answer refused,
//! completed at most once (and exactly once in the end, once everything was answered and
//! time ran out), every descriptor handle passed on or closed, every lock granted given
//! back, every transaction opened ended. Timeouts and clock jumps come from the whole range
//! of `Duration`.
#![no_main]

use std::collections::BTreeSet;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use xsio_cdrom::{Config, DeviceModel, Format, MediaChange, Medium};
use xsio_core::{Machine, OpId};
use xsio_fuzz::{advance, answer_to_anything, any_duration, check_stray_answer, take};
use xsio_ops::{
    DomainState, FdHandle, FileOp, HostOp, Input, Op, OpError, OpErrorKind, Output,
    PeerEvent, ProcessExit, QemuVersion, QmpEvent, QmpOp, QmpSession, Reply,
    Request, TxnId, XsOp,
};

/// QMP return values: the real shapes of the change's commands and odd ones.
fn value(selector: u8) -> Value {
    match selector % 10 {
        0 => json!({}),
        1 => json!({"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": ""}),
        2 => json!({"qemu": {"major": 2, "minor": 7, "micro": 0}}),
        3 => json!({"qemu": {"major": -1}}),
        4 => json!({"fdset-id": u64::from(selector), "fd": 12}),
        5 => json!({"fdset-id": "x"}),
        6 => json!([{"device": "", "qdev": "ide-5632", "tray_open": true}]),
        7 => json!([{"qdev": "/machine/peripheral/ide-5632", "inserted": {"file": format!("/dev/fdset/{selector}")}}]),
        8 => json!([{"qdev": "ide-5632", "inserted": {"file": 5}}, "x"]),
        _ => Value::Null,
    }
}

/// A xenstore value for a read of `path`: mostly what a cdrom drive has, sometimes not.
fn read(path: &str, selector: u8) -> Option<String> {
    if selector % 7 == 0 {
        return None;
    }
    if selector % 7 == 1 {
        return Some(format!("odd{selector}"));
    }
    Some(
        match path.rsplit('/').next().unwrap_or_default() {
            "type" if path.starts_with("/libxl/5/type") => "hvm",
            "type" => ["qdisk", "phy"][usize::from(selector & 1)],
            "dm-version" => ["qemu_xen", "qemu_xen_traditional"][usize::from(selector & 1)],
            "device-model-domid" => "0",
            "backend" => "/local/domain/0/backend/qdisk/5/5632",
            "device-type" => "cdrom",
            _ => "x",
        }
        .to_owned(),
    )
}

/// An answer for `request`: mostly one that fits, sometimes anything.
fn answer(request: &Request, data: &mut &[u8], handles: &mut u64) -> Result<Reply, OpError> {
    let kind = take(data) % 14;
    if let Some(any) = answer_to_anything(kind, OpErrorKind::Conflict, || value(take(data))) {
        return any;
    }
    Ok(match &request.op {
        Op::Xs(XsOp::Read { path } | XsOp::TxnRead { path, .. }) => {
            Reply::Value(read(path, take(data)))
        }
        Op::Xs(XsOp::TxnStart) => Reply::TxnStarted(TxnId(u32::from(take(data)))),
        Op::Xs(XsOp::TxnEnd { commit: true, .. }) => Reply::Committed,
        Op::Host(HostOp::DomainInfo { .. }) => Reply::Domain(match take(data) % 3 {
            0 => DomainState::Running,
            1 => DomainState::Absent,
            _ => DomainState::Paused,
        }),
        Op::Qmp(QmpOp::Connect) => Reply::QmpConnected(QmpSession {
            version: QemuVersion {
                major: u32::from(take(data) % 10),
                minor: u32::from(take(data) % 15),
                micro: 0,
            },
            package: String::new(),
        }),
        Op::File(FileOp::Open(_)) => {
            *handles += 1;
            Reply::Fd(FdHandle::from_raw(*handles))
        }
        Op::Qmp(QmpOp::Command(_)) => Reply::Qmp(value(take(data))),
        _ => Reply::Done,
    })
}

fn peer_event(selector: u8) -> PeerEvent {
    match selector % 4 {
        0 => PeerEvent::QmpClosed,
        1 => PeerEvent::Exited(None),
        2 => PeerEvent::Exited(Some(ProcessExit::Signalled(9))),
        _ => PeerEvent::Qmp(QmpEvent {
            name: "DEVICE_TRAY_MOVED".into(),
            data: json!({"id": "ide-5632", "tray-open": selector & 1 == 1}),
        }),
    }
}

/// What the machine asked that must be balanced by the end.
#[derive(Default)]
struct Books {
    seen_ids: BTreeSet<OpId>,
    completions: usize,
    handles_consumed: BTreeSet<FdHandle>,
    unlocked: BTreeSet<OpId>,
    ended: BTreeSet<TxnId>,
}

fn drain(change: &mut MediaChange, pending: &mut Vec<Request>, books: &mut Books) {
    while let Some(output) = change.poll_output() {
        match output {
            Output::Request(request) => {
                assert!(books.seen_ids.insert(request.id), "request ids are fresh");
                match &request.op {
                    Op::Qmp(QmpOp::Command(command)) => {
                        books.handles_consumed.extend(&command.fds);
                    }
                    Op::File(FileOp::Close(fd)) => {
                        books.handles_consumed.insert(*fd);
                    }
                    Op::Host(HostOp::Unlock { lock }) => {
                        books.unlocked.insert(*lock);
                    }
                    Op::Xs(XsOp::TxnEnd { txn, .. }) => {
                        books.ended.insert(*txn);
                    }
                    _ => {}
                }
                pending.push(request);
            }
            Output::Event(_) => books.completions += 1,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    #[allow(clippy::disallowed_methods)] // the run's epoch; later times come from the input
    let mut now = Instant::now();
    now = advance(now, any_duration(|| take(&mut data)));
    let model = if take(&mut data) & 1 == 0 {
        DeviceModel::Qmp
    } else {
        DeviceModel::Xenstore
    };
    let mut config = Config::new(5, "hdc", model);
    config.timeout = any_duration(|| take(&mut data));
    config.force = take(&mut data) & 1 == 0;
    config.transaction_attempts = u32::from(take(&mut data) % 4);
    let mut change = if take(&mut data) & 1 == 0 {
        let medium = Medium {
            path: "/fuzz/new.iso".into(),
            format: Format::Vhd,
        };
        MediaChange::insert(config, medium, now)
    } else {
        MediaChange::eject(config, now)
    };

    let mut pending: Vec<Request> = Vec::new();
    let mut answered: BTreeSet<OpId> = BTreeSet::new();
    let mut handles_given: BTreeSet<FdHandle> = BTreeSet::new();
    let mut locks_granted: BTreeSet<OpId> = BTreeSet::new();
    let mut txns_opened: BTreeSet<TxnId> = BTreeSet::new();
    let mut last_handle = 0u64;
    let mut books = Books::default();
    drain(&mut change, &mut pending, &mut books);

    let mut settle = |change: &mut MediaChange,
                      request: Request,
                      result: Result<Reply, OpError>,
                      now: Instant| {
        match (&request.op, &result) {
            (_, Ok(Reply::Fd(fd))) => {
                handles_given.insert(*fd);
            }
            (Op::Host(HostOp::Lock { .. }), Ok(Reply::Done)) => {
                locks_granted.insert(request.id);
            }
            (Op::Xs(XsOp::TxnStart), Ok(Reply::TxnStarted(txn))) => {
                txns_opened.insert(*txn);
            }
            _ => {}
        }
        // A wrong kind of answer is refused but counts as answered.
        let _ = change.handle_input(now, Input::Reply { id: request.id, result });
    };

    while !data.is_empty() {
        match take(&mut data) % 6 {
            0..=2 if !pending.is_empty() => {
                let index = usize::from(take(&mut data)) % pending.len();
                let request = pending.remove(index);
                let result = answer(&request, &mut data, &mut last_handle);
                answered.insert(request.id);
                settle(&mut change, request, result, now);
            }
            3 => check_stray_answer(&answered, || take(&mut data), |input| {
                change.handle_input(now, input)
            }),
            4 => {
                let event = peer_event(take(&mut data));
                change.handle_input(now, Input::Peer(&event)).unwrap();
            }
            _ => {
                now = advance(now, any_duration(|| take(&mut data)));
                if change.poll_timeout().is_some_and(|d| d <= now) {
                    Machine::handle_timeout(&mut change, now);
                }
            }
        }
        drain(&mut change, &mut pending, &mut books);
        assert!(books.completions <= 1, "completed more than once");
    }

    // The end: QEMU is gone, every request is answered (fittingly, so that the cleanup
    // runs its course), time passes any deadline.
    let gone = PeerEvent::Exited(None);
    change.handle_input(now, Input::Peer(&gone)).unwrap();
    for _ in 0..1000 {
        if pending.is_empty() {
            break;
        }
        for request in std::mem::take(&mut pending) {
            let result = match &request.op {
                Op::Qmp(_) => Err(OpError::new(OpErrorKind::Connection, "fuzz: the end")),
                _ => answer(&request, &mut &[5u8, 5, 5, 5][..], &mut last_handle),
            };
            settle(&mut change, request, result, now);
        }
        if let Some(deadline) = change.poll_timeout() {
            now = now.max(deadline);
            Machine::handle_timeout(&mut change, now);
        }
        drain(&mut change, &mut pending, &mut books);
    }
    assert!(pending.is_empty(), "the cleanup ends");
    assert_eq!(books.completions, 1, "completed exactly once in the end");
    assert!(change.is_settled());
    assert!(
        handles_given.is_subset(&books.handles_consumed),
        "every handle passed on or closed: given {handles_given:?}, consumed {:?}",
        books.handles_consumed
    );
    assert!(
        locks_granted.is_subset(&books.unlocked),
        "every lock given back: granted {locks_granted:?}, unlocked {:?}",
        books.unlocked
    );
    assert!(
        txns_opened.is_subset(&books.ended),
        "every transaction ended: opened {txns_opened:?}, ended {:?}",
        books.ended
    );
});
