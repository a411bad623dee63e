//! Replays exchanges recorded against a real QEMU 7.2 (`testdata/qmp/*.txt`, written by
//! `crates/io-std/tests/peer_qemu.rs`) through the machine with deterministic time.
//!
//! Format, one message per line: `< JSON` QEMU sent; `> JSON` we sent (`> [fds=N] JSON` when
//! N fds rode along); `# closed` QEMU closed the socket; other `#` lines are comments.
//! The replay submits each command at its `>` line and checks that the client sends exactly
//! the recorded bytes, and that every command completes once with the recorded reply.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::Value;
use xsio_core::{FdLedger, Input, OpId, TrackedFd};
use xsio_qmp::{Client, Command, CommandError, Config, Output, Return};

#[derive(Default)]
struct Replay {
    sent: VecDeque<(usize, String)>,
    done: BTreeMap<OpId, Vec<Result<Return, CommandError>>>,
    events: Vec<String>,
    connected: bool,
}

impl Replay {
    fn drain(&mut self, qmp: &mut Client<TrackedFd>) {
        while let Some(out) = qmp.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let text = String::from_utf8(t.bytes.to_vec()).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let fds = if i == 0 { t.fds.len() } else { 0 };
                        self.sent.push_back((fds, line.to_owned()));
                    }
                }
                Output::Done { id, result } => self.done.entry(id).or_default().push(result),
                Output::Event(e) => self.events.push(e.name),
                Output::Connected(_) => self.connected = true,
                Output::Closed(_) => {}
                other => panic!("unexpected output {other:?}"),
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // tidy:allow: the epoch of virtual time
fn epoch() -> Instant {
    Instant::now()
}

/// Replays one transcript, feeding QEMU's bytes in chunks of `chunk` bytes.
fn replay(name: &str, text: &str, chunk: usize) -> Vec<String> {
    let now = epoch();
    let ledger = FdLedger::default();
    let mut qmp: Client<TrackedFd> = Client::new(Config::default(), now);
    let mut r = Replay::default();
    let mut op_of_wire_id: BTreeMap<u64, OpId> = BTreeMap::new();
    let mut replies: BTreeMap<u64, Value> = BTreeMap::new();
    let mut n_events = 0;
    let mut closed = false;
    for line in text.lines() {
        if line == "# closed" {
            qmp.handle_input(now, Input::Closed);
            closed = true;
        } else if let Some(json) = line.strip_prefix("< ") {
            let value: Value = serde_json::from_str(json).unwrap();
            if value.get("event").is_some() {
                n_events += 1;
            } else if let Some(id) = value["id"].as_u64() {
                replies.insert(id, value);
            }
            let bytes = format!("{json}\r\n");
            for piece in bytes.as_bytes().chunks(chunk) {
                qmp.handle_input(now, Input::Bytes(piece));
            }
        } else if let Some(rest) = line.strip_prefix("> ") {
            let (fds, json) = match rest.strip_prefix("[fds=") {
                Some(tail) => {
                    let (n, json) = tail.split_once("] ").unwrap();
                    (n.parse::<usize>().unwrap(), json)
                }
                None => (0, rest),
            };
            if r.sent.is_empty() {
                // Not sent by the machine on its own: the caller submitted it here.
                let value: Value = serde_json::from_str(json).unwrap();
                let name = value["execute"].as_str().unwrap().to_owned();
                assert_ne!(name, "qmp_capabilities", "{name}: the machine must send it");
                let mut cmd: Command<TrackedFd> = Command::new(name);
                if let Some(args) = value.get("arguments") {
                    cmd = cmd.arguments(args.clone());
                }
                for _ in 0..fds {
                    cmd = cmd.fd(ledger.open());
                }
                let op = qmp.execute(now, cmd);
                op_of_wire_id.insert(value["id"].as_u64().unwrap(), op);
            }
            r.drain(&mut qmp);
            assert_eq!(
                r.sent.pop_front(),
                Some((fds, json.to_owned())),
                "{name}: sent bytes differ"
            );
            continue;
        } else {
            assert!(line.starts_with('#'), "{name}: bad line {line:?}");
        }
        r.drain(&mut qmp);
    }
    r.drain(&mut qmp);
    assert!(
        r.sent.is_empty(),
        "{name}: sent more than recorded: {:?}",
        r.sent
    );
    assert!(r.connected, "{name}: negotiation finished");
    assert_eq!(r.events.len(), n_events, "{name}: every event delivered");
    assert_eq!(ledger.open_count(), 0, "{name}: I2 every fd sent or closed");

    let mut summary = Vec::new();
    for (wire_id, op) in op_of_wire_id {
        let results = r.done.remove(&op).unwrap_or_default();
        assert_eq!(
            results.len(),
            1,
            "{name}: I1 command {wire_id} completes exactly once"
        );
        let result = &results[0];
        match (replies.get(&wire_id), result) {
            (Some(reply), Ok(ret)) => assert_eq!(&ret.to_value(), &reply["return"], "{name}"),
            (Some(reply), Err(CommandError::Qmp(e))) => {
                assert_eq!(
                    Some(e.class.as_str()),
                    reply["error"]["class"].as_str(),
                    "{name}"
                )
            }
            (None, Err(CommandError::Disconnected)) => assert!(closed, "{name}"),
            (reply, result) => panic!("{name}: command {wire_id}: {result:?} for {reply:?}"),
        }
        summary.push(format!("{wire_id}: {result:?}"));
    }
    assert!(
        r.done.is_empty(),
        "{name}: completions for unknown commands"
    );
    summary.extend(r.events);
    summary
}

#[test]
fn recorded_qemu_sessions_replay_identically_under_any_chunking() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/qmp");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "transcripts missing in {dir}");
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let whole = replay(&name, &text, usize::MAX);
        // I7: byte by byte, and in odd-sized pieces, the outputs are the same.
        assert_eq!(replay(&name, &text, 1), whole, "{name}");
        assert_eq!(replay(&name, &text, 7), whole, "{name}");
    }
}

#[test]
fn the_cdrom_transcript_shows_tray_events_before_the_change_reply() {
    let text = include_str!("../../../testdata/qmp/cdrom-fd.txt");
    let lines: Vec<&str> = text.lines().collect();
    let change = lines
        .iter()
        .position(|l| l.contains("\"blockdev-change-medium\""))
        .unwrap();
    assert!(lines[change + 1].contains("DEVICE_TRAY_MOVED"));
    assert!(lines[change + 2].contains("DEVICE_TRAY_MOVED"));
    assert!(lines[change + 3].starts_with("< {\"return\""));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("> [fds=1] {\"execute\":\"add-fd\""))
    );
}
