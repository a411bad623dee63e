//! Arbitrary answers, watch events and clock jumps into a device add, a removal (each
//! force, each kind of backend, dom0 or a driver domain) and a whole domain's removal: no
//! panic, request ids fresh, every unknown or repeated answer refused, the operation
//! completed at most once (and, once time has run out and everything was answered, at
//! least once). Timeouts and clock jumps come from the whole range of `Duration`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xsio_core::OpId;
use xsio_device::{AddSpec, Config, Device, DeviceEvent, DeviceOp, Force, MultiDev, MultiEvent};
use xsio_fuzz::{Bytes, advance, value};
use xsio_ops::{
    Answer, DomainState, HostOp, Op, OpError, OpErrorKind, Output, ProcessExit, Reply, Request,
    TxnId, XsOp,
};

/// Values a read may return besides the shared ones: a number too big, paths, a script name.
const EXTRA: &[&str] = &[
    "99999999999999999999999",
    "/etc/xen/scripts/block",
    "/local/domain/0/backend/vbd/1/51712",
    "/local/domain/7/backend/qdisk/1/768",
    "vif_ioemu",
];

/// An answer for `request`: mostly one that fits, sometimes anything.
fn answer(request: &Request, data: &mut Bytes<'_>) -> Result<Reply, OpError> {
    let kind = data.byte();
    let value = value(data.byte(), EXTRA).to_owned();
    let error = |k| Err(OpError::new(k, "fuzz"));
    match kind % 16 {
        0 => error(OpErrorKind::Access),
        1 => error(OpErrorKind::Conflict),
        2 => error(OpErrorKind::Unsupported),
        3 => Ok(Reply::Value(None)),
        4 => Ok(Reply::Done),
        5 => Ok(Reply::Children(Some(vec![value]))),
        _ => Ok(match &request.op {
            Op::Xs(XsOp::Read { .. } | XsOp::TxnRead { .. }) => {
                if kind & 0x40 == 0 {
                    Reply::Value(Some(value))
                } else {
                    Reply::Value(None)
                }
            }
            Op::Xs(XsOp::Directory { .. } | XsOp::TxnDirectory { .. }) => {
                Reply::Children((kind & 0x40 == 0).then(|| vec![value, "768".into()]))
            }
            Op::Xs(XsOp::TxnStart) => Reply::TxnStarted(TxnId(u32::from(kind))),
            Op::Xs(XsOp::TxnEnd { commit: true, .. } | XsOp::Transaction(_)) => Reply::Committed,
            Op::Host(HostOp::DomainInfo { .. }) => Reply::Domain(match kind % 6 {
                0 => DomainState::Running,
                1 => DomainState::Paused,
                2 => DomainState::Dying,
                3 => DomainState::Shutdown,
                4 => DomainState::Dead,
                _ => DomainState::Absent,
            }),
            Op::Host(HostOp::DeviceModelAlive { .. }) => Reply::DeviceModel {
                alive: kind & 0x40 == 0,
            },
            Op::Host(HostOp::Spawn { .. }) => Reply::Exited(match kind % 3 {
                0 => ProcessExit::Exited(i32::from(kind & 3)),
                1 => ProcessExit::Signalled(9),
                _ => ProcessExit::FailedToStart("fuzz".into()),
            }),
            _ => Reply::Done,
        }),
    }
}

/// One machine of the run, behind the same surface.
enum Under {
    One(DeviceOp),
    Many(MultiDev),
}

impl Under {
    fn poll(&mut self) -> Option<Output<bool>> {
        // `true` for the operation's (or the domain's) completion.
        match self {
            Under::One(op) => op.poll_output().map(|o| match o {
                Output::Request(r) => Output::Request(r),
                Output::Event(e) => Output::Event(matches!(e, DeviceEvent::Done(_))),
            }),
            Under::Many(all) => all.poll_output().map(|o| match o {
                Output::Request(r) => Output::Request(r),
                Output::Event(e) => Output::Event(matches!(e, MultiEvent::Done(_))),
            }),
        }
    }

    fn reply(&mut self, now: Instant, id: OpId, result: Result<Reply, OpError>) -> bool {
        match self {
            Under::One(op) => op.handle_reply(now, Answer::new(id, result)).is_ok(),
            Under::Many(all) => all.handle_reply(now, Answer::new(id, result)).is_ok(),
        }
    }

    fn watch(&mut self, now: Instant, token: &str) {
        match self {
            Under::One(op) => op.handle_watch(now, "/p", token),
            Under::Many(all) => all.handle_watch(now, "/p", token),
        }
    }

    fn timeout(&mut self, now: Instant) {
        match self {
            Under::One(op) => op.handle_timeout(now),
            Under::Many(all) => all.handle_timeout(now),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Under::One(op) => op.poll_timeout(),
            Under::Many(all) => all.poll_timeout(),
        }
    }

    fn done(&self) -> bool {
        match self {
            Under::One(op) => op.is_done(),
            Under::Many(all) => all.is_done(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the fuzz run's epoch
    let epoch = Instant::now();
    let mut data = Bytes(data);
    let setup = data.byte();
    let mut config = Config {
        my_domid: if setup & 0x80 == 0 { 0 } else { 7 },
        transaction_attempts: u32::from(data.byte() % 5),
        ..Config::default()
    };
    if setup & 0x40 != 0 {
        config.destroy_timeout = data.duration();
        config.hotplug_timeout = data.duration();
        config.qemu_bodge_timeout = data.duration();
        config.kill_grace = data.duration();
    }
    let device = match setup % 5 {
        0 => Device::new("vbd", 1, 51712),
        1 => Device::new("vbd", 1, 768).with_backend(0, "qdisk"),
        2 => Device::new("vbd", 1, 768).with_backend(7, "qdisk"),
        3 => Device::new("vif", 1, 0),
        _ => Device::new("console", 1, 0).with_backend(0, "console"),
    };
    let force = [Force::Auto, Force::On, Force::Off][usize::from(setup >> 3) % 3];
    let mut under = match (setup >> 5) % 3 {
        0 => Under::One(DeviceOp::remove(config, device, force, epoch)),
        1 => {
            let spec = AddSpec {
                device,
                backend_keys: vec![("script".into(), "/s".into())],
                frontend_keys: vec![],
            };
            Under::One(DeviceOp::add(config, spec, epoch))
        }
        _ => Under::Many(MultiDev::remove_all(config, 1, force, epoch)),
    };

    let mut pending: Vec<Request> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut answered: Vec<OpId> = Vec::new();
    let mut last_id: Option<u64> = None;
    let mut dones = 0;
    let mut now = epoch;
    let mut drain = |under: &mut Under,
                     pending: &mut Vec<Request>,
                     tokens: &mut Vec<String>,
                     dones: &mut u32| {
        while let Some(output) = under.poll() {
            match output {
                Output::Request(request) => {
                    let id = request.id.get();
                    assert!(last_id.is_none_or(|last| id > last), "op ids must be fresh");
                    last_id = Some(id);
                    if let Op::Xs(XsOp::Watch { token, .. }) = &request.op {
                        tokens.push(token.clone());
                    }
                    pending.push(request);
                }
                Output::Event(done) => *dones += u32::from(done),
            }
        }
    };
    drain(&mut under, &mut pending, &mut tokens, &mut dones);
    while let Some(choice) = data.next() {
        match choice % 8 {
            0..=3 if !pending.is_empty() => {
                let pick = usize::from(data.byte()) % pending.len();
                let request = pending.remove(pick);
                let result = answer(&request, &mut data);
                under.reply(now, request.id, result);
                answered.push(request.id);
            }
            4 => {
                let token = match data.next() {
                    Some(n) if !tokens.is_empty() => tokens[usize::from(n) % tokens.len()].clone(),
                    _ => "stray".to_owned(),
                };
                under.watch(now, &token);
            }
            5 => {
                now = advance(now, data.jump(Duration::from_millis(200)));
                under.timeout(now);
            }
            6 => {
                // An answer for an id already answered, or never issued, is refused.
                if let Some(id) = answered.first() {
                    assert!(!under.reply(now, *id, Ok(Reply::Done)));
                }
                assert!(!under.reply(now, OpId::from_raw(u64::MAX), Ok(Reply::Done)));
            }
            _ => {}
        }
        drain(&mut under, &mut pending, &mut tokens, &mut dones);
        assert!(dones <= 1, "completed twice");
    }
    // Then every request answered as it asks, and time run to each deadline: it ends.
    for _ in 0..10_000 {
        if let Some(request) = pending.first().cloned() {
            pending.remove(0);
            let result = answer(&request, &mut Bytes(&[6, 1]));
            under.reply(now, request.id, result);
        } else if let Some(at) = under.deadline() {
            now = now.max(at);
            under.timeout(now);
        } else {
            break;
        }
        drain(&mut under, &mut pending, &mut tokens, &mut dones);
    }
    assert!(dones <= 1, "completed twice");
    // A deadline past the end of time is no deadline (a timeout of `Duration::MAX`, or a
    // wait that starts within its timeout of the end of `Instant`'s range): such a run may
    // rightly wait for ever.
    let end_of_time = xsio_core::deadline(now, Duration::from_secs(86_400)).is_none();
    let endless = under.deadline().is_none() && (setup & 0x40 != 0 || end_of_time);
    assert!(under.done() || endless, "never completed");
});
