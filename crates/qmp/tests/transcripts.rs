//! Replays exchanges recorded against a real QEMU 7.2 (`testdata/qmp/*.txt`, written by
//! `crates/io-std/tests/peer_qemu.rs`) through the `Client` machine with deterministic time.
//!
//! Format, one message per line: `< JSON` QEMU sent; `> JSON` we sent (`> [fds=N] JSON` when
//! N fds rode along); `# closed` QEMU closed the socket; other `#` lines are comments.
//!
//! The replay feeds QEMU's lines to the client (whole, byte by byte, and in 7-byte pieces)
//! and submits each command at its `>` line. It checks the client's two kinds of output
//! against the transcript, never against the client itself:
//! - what it sends: exactly the recorded `>` bytes, with the recorded number of fds;
//! - what it reports, in order: the [`Seen`] list that [`implied_by`] derives from the `<`
//!   lines alone (negotiation done after the reply with id 0; each reply completes the
//!   command with that wire id, with that value or error; each event as sent; on `# closed`
//!   every unanswered command fails with `Disconnected`, in send order, then `Closed`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::Value;
use xsio_core::{FdLedger, Input, OpId, TrackedFd};
use xsio_qmp::{Client, CloseReason, Command, CommandError, Config, Output};

/// One thing the client reports, in a form a transcript can imply.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// Negotiation finished: QEMU's version and capabilities, and whether oob is on.
    Connected {
        version: (u64, u64, u64),
        package: String,
        capabilities: Vec<String>,
        oob: bool,
    },
    /// The command with this wire id succeeded with this `return` value.
    Returned { id: u64, value: Value },
    /// The command with this wire id got an error reply.
    Failed {
        id: u64,
        class: String,
        desc: String,
    },
    /// The command with this wire id failed because the connection ended.
    Disconnected { id: u64 },
    /// An event with its data and timestamp.
    Event {
        name: String,
        data: Value,
        seconds: i64,
        microseconds: i64,
    },
    /// The connection is over because QEMU closed it.
    PeerClosed,
}

/// The reports a correct client makes for this transcript, derived from its lines alone.
fn implied_by(text: &str) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut greeting = None;
    let mut oob = false;
    let mut unanswered: Vec<u64> = Vec::new();
    for line in text.lines() {
        if let Some(json) = line.strip_prefix("< ") {
            let v: Value = serde_json::from_str(json).unwrap();
            if let Some(qmp) = v.get("QMP") {
                greeting = Some(qmp.clone());
            } else if let Some(name) = v["event"].as_str() {
                out.push(Seen::Event {
                    name: name.to_owned(),
                    data: v
                        .get("data")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Default::default())),
                    seconds: v["timestamp"]["seconds"].as_i64().unwrap(),
                    microseconds: v["timestamp"]["microseconds"].as_i64().unwrap(),
                });
            } else {
                let id = v["id"].as_u64().unwrap();
                unanswered.retain(|&u| u != id);
                if id == 0 {
                    assert!(v.get("return").is_some(), "negotiation failed: {line}");
                    let g = greeting
                        .take()
                        .expect("greeting before the negotiation reply");
                    let q = &g["version"]["qemu"];
                    out.push(Seen::Connected {
                        version: (
                            q["major"].as_u64().unwrap(),
                            q["minor"].as_u64().unwrap(),
                            q["micro"].as_u64().unwrap(),
                        ),
                        package: g["version"]["package"].as_str().unwrap().to_owned(),
                        capabilities: g["capabilities"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c.as_str().unwrap().to_owned())
                            .collect(),
                        oob,
                    });
                } else if let Some(value) = v.get("return") {
                    out.push(Seen::Returned {
                        id,
                        value: value.clone(),
                    });
                } else {
                    out.push(Seen::Failed {
                        id,
                        class: v["error"]["class"].as_str().unwrap().to_owned(),
                        desc: v["error"]["desc"].as_str().unwrap().to_owned(),
                    });
                }
            }
        } else if let Some(rest) = line.strip_prefix("> ") {
            let json = rest.split_once("] ").map_or(rest, |(_, json)| json);
            let v: Value = serde_json::from_str(json).unwrap();
            let id = v["id"].as_u64().unwrap();
            if id == 0 {
                oob = v["arguments"]["enable"]
                    .as_array()
                    .is_some_and(|caps| caps.iter().any(|c| c == "oob"));
            } else {
                unanswered.push(id);
            }
        } else if line == "# closed" {
            out.extend(unanswered.drain(..).map(|id| Seen::Disconnected { id }));
            out.push(Seen::PeerClosed);
        }
    }
    out
}

/// What the client did during one replay.
#[derive(Default)]
struct Replay {
    /// Lines it sent that the transcript has not matched yet, with the fds on each.
    sent: VecDeque<(usize, String)>,
    /// Everything it reported, in order.
    seen: Vec<Seen>,
    /// The wire id of each command the replay submitted.
    wire_id_of: BTreeMap<OpId, u64>,
    completions: BTreeMap<OpId, usize>,
}

impl Replay {
    fn drain(&mut self, name: &str, qmp: &mut Client<TrackedFd>) {
        while let Some(out) = qmp.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let text = String::from_utf8(t.bytes.to_vec()).unwrap();
                    assert!(text.ends_with('\n'), "{name}: a transmit ends a line");
                    for (i, line) in text.lines().enumerate() {
                        let fds = if i == 0 { t.fds.len() } else { 0 };
                        self.sent.push_back((fds, line.to_owned()));
                    }
                }
                Output::Connected(session) => {
                    let v = &session.greeting.version;
                    self.seen.push(Seen::Connected {
                        version: (
                            v.qemu.major.into(),
                            v.qemu.minor.into(),
                            v.qemu.micro.into(),
                        ),
                        package: v.package.clone(),
                        capabilities: session.greeting.capabilities.clone(),
                        oob: session.oob,
                    });
                }
                Output::Done { id, result } => {
                    *self.completions.entry(id).or_default() += 1;
                    let wire = *self
                        .wire_id_of
                        .get(&id)
                        .unwrap_or_else(|| panic!("{name}: completion of unknown {id:?}"));
                    self.seen.push(match result {
                        Ok(ret) => Seen::Returned {
                            id: wire,
                            value: ret.parse::<Value>().unwrap(),
                        },
                        Err(CommandError::Qmp(e)) => Seen::Failed {
                            id: wire,
                            class: e.class.as_str().to_owned(),
                            desc: e.desc,
                        },
                        Err(CommandError::Disconnected) => Seen::Disconnected { id: wire },
                        Err(other) => panic!("{name}: command {wire}: {other:?}"),
                    });
                }
                Output::Event(e) => self.seen.push(Seen::Event {
                    name: e.name,
                    data: e.data,
                    seconds: e.timestamp.seconds,
                    microseconds: e.timestamp.microseconds,
                }),
                Output::Closed(CloseReason::PeerClosed) => self.seen.push(Seen::PeerClosed),
                other => panic!("{name}: unexpected output {other:?}"),
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // tidy:allow: the epoch of virtual time
fn epoch() -> Instant {
    Instant::now()
}

/// Replays one transcript, feeding QEMU's bytes in pieces of `chunk` bytes; returns what the
/// client reported.
fn replay(name: &str, text: &str, chunk: usize) -> Vec<Seen> {
    let now = epoch();
    let ledger = FdLedger::default();
    let mut qmp: Client<TrackedFd> = Client::new(Config::default(), now);
    let mut r = Replay::default();
    for line in text.lines() {
        if line == "# closed" {
            qmp.handle_input(now, Input::Closed);
        } else if let Some(json) = line.strip_prefix("< ") {
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
            r.drain(name, &mut qmp);
            if r.sent.is_empty() {
                // Not sent by the machine on its own: the caller submits it here.
                let value: Value = serde_json::from_str(json).unwrap();
                let command = value["execute"].as_str().unwrap().to_owned();
                assert_ne!(command, "qmp_capabilities", "{name}: the machine sends it");
                let mut cmd: Command<TrackedFd> = Command::new(command);
                if let Some(args) = value.get("arguments") {
                    cmd = cmd.arguments(args.clone());
                }
                for _ in 0..fds {
                    cmd = cmd.fd(ledger.open());
                }
                let op = qmp.execute(now, cmd);
                r.wire_id_of.insert(op, value["id"].as_u64().unwrap());
                r.drain(name, &mut qmp);
            }
            assert_eq!(
                r.sent.pop_front(),
                Some((fds, json.to_owned())),
                "{name}: the client sends the recorded bytes"
            );
            continue;
        } else {
            assert!(line.starts_with('#'), "{name}: bad line {line:?}");
        }
        r.drain(name, &mut qmp);
    }
    r.drain(name, &mut qmp);
    assert!(
        r.sent.is_empty(),
        "{name}: sent more than recorded: {:?}",
        r.sent
    );
    assert_eq!(ledger.open_count(), 0, "{name}: I2 every fd sent or closed");
    for (op, wire) in &r.wire_id_of {
        assert_eq!(
            r.completions.get(op).copied(),
            Some(1),
            "{name}: I1 command {wire} completes exactly once"
        );
    }
    assert_eq!(
        qmp.poll_timeout(),
        None,
        "{name}: no deadline is left once every command completed"
    );
    let stats = qmp.stats();
    assert_eq!(
        (stats.unknown_replies, stats.events_dropped),
        (0, 0),
        "{name}"
    );
    r.seen
}

/// Where the recorded sessions are.
const TRANSCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/qmp");

/// [`replay`] of the transcript `name`, fed in pieces of `chunk` bytes.
fn replay_file(name: &str, chunk: usize) -> Vec<Seen> {
    let text = std::fs::read_to_string(format!("{TRANSCRIPTS}/{name}")).unwrap();
    replay(name, &text, chunk)
}

fn transcripts() -> Vec<(String, String)> {
    let dir = TRANSCRIPTS;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "transcripts missing in {dir}");
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, text)
        })
        .collect()
}

#[test]
fn the_client_reports_what_each_recorded_session_implies_under_any_chunking() {
    for (name, text) in transcripts() {
        let expected = implied_by(&text);
        assert!(
            matches!(expected.first(), Some(Seen::Connected { .. })),
            "{name}: every transcript negotiates"
        );
        // I7: whole lines, byte by byte, and in odd-sized pieces.
        for chunk in [usize::MAX, 1, 7] {
            assert_eq!(
                replay(&name, &text, chunk),
                expected,
                "{name}, chunk {chunk}"
            );
        }
    }
}

/// The derivation itself, on one transcript, spelled out: a wrong `implied_by` cannot make
/// the replay pass for the wrong reason.
#[test]
fn the_cdrom_session_reports_tray_events_before_the_change_completes() {
    let seen = replay_file("cdrom-fd.txt", 5);
    let tray = |open: bool| Seen::Event {
        name: "DEVICE_TRAY_MOVED".into(),
        data: serde_json::json!({"device": "", "tray-open": open, "id": "cd0"}),
        seconds: 1_795_374_432,
        microseconds: if open { 306_246 } else { 306_317 },
    };
    assert_eq!(
        seen[..5],
        [
            Seen::Connected {
                version: (7, 2, 22),
                package: "Debian 1:7.2+dfsg-7+deb12u18+b3".into(),
                capabilities: vec!["oob".into()],
                oob: false,
            },
            Seen::Returned {
                id: 1,
                value: serde_json::json!({"fd": 12, "fdset-id": 0}),
            },
            tray(true),
            tray(false),
            Seen::Returned {
                id: 2,
                value: serde_json::json!({}),
            },
        ]
    );
    assert_eq!(
        seen.last(),
        Some(&Seen::Returned {
            id: 9,
            value: serde_json::json!([]),
        })
    );
}

#[test]
fn the_killed_session_fails_every_unanswered_command_once_then_closes() {
    let seen = replay_file("killed.txt", usize::MAX);
    assert_eq!(
        seen[1..],
        [
            Seen::Disconnected { id: 1 },
            Seen::Disconnected { id: 2 },
            Seen::Disconnected { id: 3 },
            Seen::Disconnected { id: 4 },
            Seen::PeerClosed,
        ]
    );
}

#[test]
fn error_replies_keep_their_class_and_description() {
    let seen = replay_file("errors.txt", usize::MAX);
    assert_eq!(
        seen[1..],
        [
            Seen::Failed {
                id: 1,
                class: "CommandNotFound".into(),
                desc: "The command no-such-command has not been found".into(),
            },
            Seen::Failed {
                id: 2,
                class: "DeviceNotFound".into(),
                desc: "Device 'nosuch' not found".into(),
            },
            Seen::Failed {
                id: 3,
                class: "GenericError".into(),
                desc: "Bus 'ide.1' does not support hotplugging".into(),
            },
        ]
    );
}
