//! The client machine fed an arbitrary script of inputs, commands and time: it never panics,
//! every command completes exactly once (I1) and every fd is handed out or closed (I2).
//! Timeouts (configured and per command) and clock jumps come from the whole range of
//! `Duration`, `Duration::MAX` and the end of `Instant`'s range included.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xsio_core::{FdLedger, Input, OpId, TrackedFd};
use xsio_fuzz::{advance, any_duration, take};
use xsio_qmp::{Client, Command, Config, Output};

const CANNED: &[&str] = &[
    r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#,
    r#"{"return": {}, "id": 0}"#,
    r#"{"return": {}, "id": 1}"#,
    r#"{"return": {"fd": 13, "fdset-id": 0}, "id": 2}"#,
    r#"{"id": 3, "error": {"class": "DeviceNotFound", "desc": "x"}}"#,
    r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_TRAY_MOVED", "data": {"tray-open": true}}"#,
    r#"{"error": {"class": "GenericError", "desc": "no id"}}"#,
    "\r\n",
];

struct Session {
    qmp: Client<TrackedFd>,
    ledger: FdLedger,
    now: Instant,
    submitted: Vec<OpId>,
    done: BTreeMap<OpId, u32>,
}

impl Session {
    fn drain(&mut self) {
        while let Some(out) = self.qmp.poll_output() {
            match out {
                Output::Done { id, .. } => *self.done.entry(id).or_default() += 1,
                // The driver would send and close them; here they are just dropped.
                Output::Transmit(t) => drop(t),
                _ => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut rest = data;
    // Bit 2 of the first byte: configured timeouts come from the input too.
    let (negotiation_timeout, command_timeout) = if data.first().is_some_and(|b| b & 4 == 4) {
        rest = &rest[1..];
        let negotiation = any_duration(|| take(&mut rest));
        (negotiation, any_duration(|| take(&mut rest)))
    } else {
        let defaults = Config::default();
        (defaults.negotiation_timeout, defaults.command_timeout)
    };
    let config = Config {
        negotiation_timeout,
        command_timeout,
        max_in_flight: 3,
        max_queued: 16,
        max_events: 4,
        max_message: 512,
        enable_oob: data.first().is_some_and(|b| b & 1 == 1),
        match_by_order: data.first().is_some_and(|b| b & 2 == 2),
        ..Config::default()
    };
    let mut s = Session {
        qmp: Client::new(config, now),
        ledger: FdLedger::default(),
        now,
        submitted: Vec::new(),
        done: BTreeMap::new(),
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let arg = rest.first().copied().unwrap_or(0);
        match op % 9 {
            0 => {
                let mut cmd = Command::new("query-status");
                if arg & 1 == 1 {
                    cmd = cmd.fd(s.ledger.open());
                }
                if arg & 2 == 2 {
                    cmd = cmd.chained();
                }
                if arg & 4 == 4 {
                    cmd = cmd.out_of_band();
                }
                if arg & 8 == 8 {
                    cmd = cmd.eof_is_success();
                }
                if arg & 16 == 16 {
                    cmd = cmd.timeout(any_duration(|| take(&mut rest)));
                }
                let id = s.qmp.execute(s.now, cmd);
                s.submitted.push(id);
            }
            1 => {
                let n = usize::from(arg).min(rest.len());
                let (bytes, tail) = rest.split_at(n);
                rest = tail;
                s.qmp.handle_input(s.now, Input::Bytes(bytes));
            }
            2 => {
                let by = if arg & 1 == 1 {
                    any_duration(|| take(&mut rest))
                } else {
                    Duration::from_millis(u64::from(arg) * 50)
                };
                s.now = advance(s.now, by);
                if s.qmp.poll_timeout().is_some_and(|t| t <= s.now) {
                    s.qmp.handle_timeout(s.now);
                }
            }
            3 => {
                if let Some(&id) = s.submitted.get(usize::from(arg)) {
                    s.qmp.cancel(s.now, id);
                }
            }
            4 | 5 | 6 => {
                let text = CANNED[usize::from(arg) % CANNED.len()];
                s.qmp.handle_input(s.now, Input::Bytes(text.as_bytes()));
            }
            7 => {
                let fds = vec![s.ledger.open()];
                s.qmp.handle_input(s.now, Input::Fds(fds));
            }
            _ => {
                if arg % 4 == 0 {
                    s.qmp.handle_input(s.now, Input::Closed);
                } else if arg % 4 == 1 {
                    s.qmp.close(s.now);
                }
            }
        }
        s.drain();
        assert!(s.done.values().all(|&n| n == 1), "I1: completed more than once");
    }
    s.qmp.close(s.now);
    s.drain();
    assert_eq!(s.done.len(), s.submitted.len(), "I1: every command completed");
    assert!(s.done.values().all(|&n| n == 1), "I1: exactly once");
    assert_eq!(s.ledger.open_count(), 0, "I2: every fd handed out or closed");
    assert!(s.qmp.poll_output().is_none());
});
