//! Arbitrary watch events, replies and values into the backend, the frontend and the
//! toolstack waiter: no panic, every request id fresh, every write in the machine's own
//! directory, every unknown or repeated reply refused. Timeouts and clock jumps come from the
//! whole range of `Duration`, `Duration::MAX` and the end of `Instant`'s range included.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xsio_core::OpId;
use xsio_fuzz::{advance, any_duration};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode};
use xsio_ops::{Op, OpError, OpErrorKind, Output, Reply, Request, TxnOp, XsOp};
use xsio_xenbus::{Backend, Frontend, StateWaiter, WaiterConfig, XenbusState};

/// Values a state or key read may return: real states, garbage, big numbers.
const VALUES: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "", "04", "-1", "x", "4294967296",
    "99999999999999999999999", "512", "2048", "x86_64-abi",
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
}

/// Keeps a machine's pending requests and checks what it emits.
#[derive(Default)]
struct Pending {
    requests: Vec<Request>,
    tokens: Vec<String>,
    last_id: Option<u64>,
}

impl Pending {
    fn take<E>(&mut self, output: Option<Output<E>>, own_dir: &str) -> bool {
        let Some(output) = output else {
            return false;
        };
        if let Output::Request(request) = output {
            let id = request.id.get();
            assert!(self.last_id.is_none_or(|last| id > last), "op ids must be fresh");
            self.last_id = Some(id);
            match &request.op {
                Op::Xs(XsOp::Watch { token, .. }) => self.tokens.push(token.clone()),
                Op::Xs(XsOp::Transaction(txn)) => {
                    for op in &txn.ops {
                        if let TxnOp::Write { path, .. } = op {
                            assert!(path.starts_with(own_dir), "{path} outside {own_dir}");
                        }
                    }
                }
                _ => {}
            }
            self.requests.push(request);
        }
        true
    }

    fn reply(&mut self, data: &mut Bytes<'_>) -> Option<(OpId, Result<Reply, OpError>)> {
        if self.requests.is_empty() {
            return None;
        }
        let pick = usize::from(data.next()?) % self.requests.len();
        let request = self.requests.remove(pick);
        let kind = data.next()?;
        let value = VALUES[usize::from(data.next()?) % VALUES.len()];
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
        Some((request.id, result))
    }

    fn token(&self, data: &mut Bytes<'_>) -> String {
        match data.next() {
            Some(n) if !self.tokens.is_empty() => self.tokens[usize::from(n) % self.tokens.len()].clone(),
            _ => "stray".to_owned(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the fuzz run's epoch
    let epoch = Instant::now();
    let mut data = Bytes(data);
    let dev = BlockDevice::new(BlockKind::Cdrom, Vbd::parse("hdc").unwrap(), "/cd.iso", Mode::ReadOnly);
    let areas = dev.areas(0, 1);
    let be_dir = areas.backend_path();
    let fe_dir = areas.frontend_path();
    let transport = BlockTransport { ring_ref: 8, event_channel: 5, protocol: None };
    let mut frontend_config = dev.frontend_config(areas.clone(), &transport);
    let mut wait_timeout = Duration::from_secs(10);
    // An input that starts with 0xff sets the two timeouts from the bytes that follow.
    if data.0.first() == Some(&0xff) {
        data.next();
        frontend_config.close_timeout = any_duration(|| data.next().unwrap_or(0));
        wait_timeout = any_duration(|| data.next().unwrap_or(0));
    }
    let mut backend = Backend::new(dev.backend_config(areas.clone()), epoch);
    let mut frontend = Frontend::new(frontend_config, epoch);
    let mut waiter = StateWaiter::new(
        WaiterConfig {
            path: areas.backend_key("state"),
            wanted: vec![XenbusState::Closed],
            timeout: wait_timeout,
            token: "wait".into(),
        },
        epoch,
    );
    let (mut be, mut fe, mut wt) = (Pending::default(), Pending::default(), Pending::default());
    let mut now = epoch;
    let mut answered: Vec<OpId> = Vec::new();

    loop {
        while be.take(backend.poll_output(), &be_dir) {}
        while fe.take(frontend.poll_output(), &fe_dir) {}
        while wt.take(waiter.poll_output(), "/nothing-written") {}
        let Some(choice) = data.next() else { break };
        match choice % 13 {
            0 => {
                let token = be.token(&mut data);
                backend.handle_watch(now, "/p", &token);
            }
            1 => {
                let token = fe.token(&mut data);
                frontend.handle_watch(now, "/p", &token);
            }
            2 => {
                let token = wt.token(&mut data);
                waiter.handle_watch(now, "/p", &token);
            }
            3 | 4 => {
                if let Some((id, result)) = be.reply(&mut data) {
                    let _ = backend.handle_reply(now, id, result);
                    answered.push(id);
                }
            }
            5 | 6 => {
                if let Some((id, result)) = fe.reply(&mut data) {
                    let _ = frontend.handle_reply(now, id, result);
                }
            }
            7 => {
                if let Some((id, result)) = wt.reply(&mut data) {
                    let _ = waiter.handle_reply(now, id, result);
                }
            }
            8 => frontend.close(now),
            12 => backend.close(now),
            9 => {
                let _ = frontend.restart(now);
            }
            10 => {
                let by = match data.next().unwrap_or(0) {
                    n if n & 1 == 1 => any_duration(|| data.next().unwrap_or(0)),
                    n => Duration::from_millis(u64::from(n) * 100),
                };
                now = advance(now, by);
                frontend.handle_timeout(now);
                waiter.handle_timeout(now);
                backend.handle_timeout(now);
            }
            _ => {
                // A reply for an id already answered is refused, whatever it carries.
                if let Some(id) = answered.first() {
                    assert!(backend.handle_reply(now, *id, Ok(Reply::Done)).is_err());
                }
            }
        }
    }
});
