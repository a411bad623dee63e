//! The operations against what real QEMU 7.2 said: `testdata/qmp/dm-*.txt` were recorded by
//! `crates/io-std/tests/peer_dm.rs` running these same operations through the blocking
//! driver. Replayed here with virtual time, each command an operation sends must be the
//! next one recorded (name, arguments and number of descriptors), and it gets the recorded
//! reply, with the events recorded before it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};
use xsio_core::{FdLedger, TrackedFd};
use xsio_dm::{
    Action, Control, ControlConfig, Ready, Save, SaveConfig, Saved, Shutdown, ShutdownConfig,
    StartConfig, StartUp, Stopped,
};
use xsio_harness::dm::{Dm, DmEvent};
use xsio_harness::{Actor, Conn, Harness, HarnessError, Owner, Record, Store};
use xsio_ops::{
    FdHandle, FileOp, Op, OpError, OpErrorKind, PeerEvent, ProcessExit, QemuVersion, QmpCommand,
    QmpErrorClass, QmpEvent, QmpOp, QmpSession, Reply,
};

/// One recorded line.
#[derive(Clone, Debug)]
enum Line {
    /// `> [fds=N] {...}`: a command we sent.
    Sent { message: Value, fds: usize },
    /// `< {...}`: a message QEMU sent.
    Received(Value),
    /// `# closed`: QEMU closed the connection.
    Closed,
}

fn parse(text: &str) -> VecDeque<Line> {
    let mut lines = VecDeque::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("> ") {
            let (fds, json) = match rest.strip_prefix("[fds=") {
                Some(tail) => {
                    let (n, json) = tail.split_once("] ").unwrap();
                    (n.parse().unwrap(), json)
                }
                None => (0, rest),
            };
            lines.push_back(Line::Sent {
                message: serde_json::from_str(json).unwrap(),
                fds,
            });
        } else if let Some(rest) = line.strip_prefix("< ") {
            lines.push_back(Line::Received(serde_json::from_str(rest).unwrap()));
        } else if line == "# closed" {
            lines.push_back(Line::Closed);
        }
    }
    lines
}

/// QEMU as recorded: answers each command with what QEMU answered to the same command.
struct Replay {
    conn: Conn,
    lines: VecDeque<Line>,
    session: Option<QmpSession>,
    ledger: FdLedger,
    handles: BTreeMap<FdHandle, TrackedFd>,
    next_handle: u64,
    last_command: String,
}

impl Replay {
    fn new(conn: Conn, text: &str) -> Replay {
        Replay {
            conn,
            lines: parse(text),
            session: None,
            ledger: FdLedger::default(),
            handles: BTreeMap::new(),
            next_handle: 0,
            last_command: String::new(),
        }
    }

    /// The greeting and the capability negotiation, as recorded.
    fn connect(&mut self) -> Result<Reply, OpError> {
        if let Some(session) = &self.session {
            return Ok(Reply::QmpConnected(session.clone()));
        }
        let Some(Line::Received(greeting)) = self.lines.pop_front() else {
            panic!("the transcript starts with the greeting");
        };
        let version = &greeting["QMP"]["version"];
        let session = QmpSession {
            version: QemuVersion {
                major: version["qemu"]["major"].as_u64().unwrap() as u32,
                minor: version["qemu"]["minor"].as_u64().unwrap() as u32,
                micro: version["qemu"]["micro"].as_u64().unwrap() as u32,
            },
            package: version["package"].as_str().unwrap().to_owned(),
        };
        let Some(Line::Sent { message, .. }) = self.lines.pop_front() else {
            panic!("then qmp_capabilities");
        };
        assert_eq!(message["execute"], "qmp_capabilities");
        assert!(matches!(self.lines.pop_front(), Some(Line::Received(_))));
        self.session = Some(session.clone());
        Ok(Reply::QmpConnected(session))
    }

    /// The recorded answer to `command`, after the events recorded before it.
    fn command<A: Actor>(
        &mut self,
        harness: &mut Harness<A>,
        command: QmpCommand,
    ) -> Result<Reply, OpError> {
        let Some(Line::Sent { message, fds }) = self.lines.pop_front() else {
            panic!("{} was not recorded next", command.command);
        };
        assert_eq!(
            message["execute"],
            command.command.as_str(),
            "the next command"
        );
        assert_eq!(
            message.get("arguments"),
            command.arguments.as_ref(),
            "{}'s arguments",
            command.command
        );
        assert_eq!(fds, command.fds.len(), "{}'s descriptors", command.command);
        for fd in &command.fds {
            assert!(self.handles.remove(fd).is_some(), "{fd} was handed out");
        }
        self.last_command = command.command.clone();
        loop {
            match self.lines.pop_front() {
                Some(Line::Received(reply)) if reply.get("event").is_some() => {
                    let event = QmpEvent {
                        name: reply["event"].as_str().unwrap().to_owned(),
                        data: reply.get("data").cloned().unwrap_or(Value::Null),
                    };
                    harness.peer_event(self.conn, PeerEvent::Qmp(event));
                }
                Some(Line::Received(reply)) => {
                    assert_eq!(reply["id"], message["id"], "replies come in order");
                    return match (reply.get("return"), reply.get("error")) {
                        (Some(value), _) => Ok(Reply::Qmp(value.clone())),
                        (None, Some(error)) => Err(OpError::new(
                            OpErrorKind::Qmp(QmpErrorClass::from_name(
                                error["class"].as_str().unwrap(),
                            )),
                            error["desc"].as_str().unwrap_or_default(),
                        )),
                        _ => panic!("neither return nor error: {reply}"),
                    };
                }
                other => panic!("{other:?} where the reply to {} was", command.command),
            }
        }
    }

    /// What is left of the transcript.
    fn rest(&self) -> usize {
        self.lines.len()
    }
}

impl<A: Actor> Store<A> for Replay {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        while let Some((owner, request)) = harness.take_request(self.conn) {
            moved = true;
            let answer = match request.op {
                Op::Qmp(QmpOp::Connect) => self.connect(),
                Op::Qmp(QmpOp::Command(command)) => self.command(harness, command),
                Op::File(FileOp::Open(_)) => {
                    let handle = FdHandle::from_raw(self.next_handle);
                    self.next_handle += 1;
                    self.handles.insert(handle, self.ledger.open());
                    Ok(Reply::Fd(handle))
                }
                Op::File(FileOp::Close(fd)) => {
                    assert!(self.handles.remove(&fd).is_some());
                    Ok(Reply::Done)
                }
                other => panic!("not recorded: {other:?}"),
            };
            harness.reply(owner, request.id, answer)?;
        }
        // QEMU closed the connection after its last reply: after `quit`, it exited with 0
        // (the peer test checks the status).
        if matches!(self.lines.front(), Some(Line::Closed)) {
            self.lines.pop_front();
            moved = true;
            harness.peer_event(self.conn, PeerEvent::QmpClosed);
            assert_eq!(self.last_command, "quit");
            harness.peer_event(self.conn, PeerEvent::Exited(Some(ProcessExit::Exited(0))));
        }
        Ok(moved)
    }
}

struct Run {
    world: Harness<Dm>,
    qemu: Replay,
}

impl Run {
    fn new(text: &str) -> Run {
        #[allow(clippy::disallowed_methods)] // the test's epoch; later times are virtual
        let mut world = Harness::new(Instant::now());
        let conn = world.connect();
        Run {
            world,
            qemu: Replay::new(conn, text),
        }
    }

    /// Runs one operation to its end; its completion.
    fn run(&mut self, make: impl FnOnce(Instant) -> Dm) -> DmEvent {
        let id = self.world.add(self.qemu.conn, make(self.world.now()));
        self.world.drain(id);
        self.world.drive(&mut self.qemu).unwrap();
        let completions: Vec<DmEvent> = self
            .world
            .take_log()
            .into_iter()
            .filter_map(|r| match r {
                Record::Event { actor, event } if actor == id => Some(event),
                _ => None,
            })
            .collect();
        assert_eq!(completions.len(), 1);
        completions.into_iter().next().unwrap()
    }

    fn start(&mut self) -> Ready {
        match self.run(|now| Dm::Start(StartUp::new(StartConfig::fresh(), now))) {
            DmEvent::Start(result) => result.unwrap(),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn start_up_reads_prelaunch_and_the_version_from_qemu_7_2() {
    let mut run = Run::new(include_str!("../../../testdata/qmp/dm-startup.txt"));
    let ready = run.start();
    assert_eq!(ready.status, "prelaunch");
    assert_eq!(
        ready.session.version,
        QemuVersion {
            major: 7,
            minor: 2,
            micro: 22
        }
    );
    assert_eq!(ready.session.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
    assert_eq!(run.qemu.rest(), 0);
}

#[test]
fn the_save_and_resume_send_what_qemu_7_2_answered() {
    let mut run = Run::new(include_str!("../../../testdata/qmp/dm-save.txt"));
    run.start();
    let saved = match run.run(|now| Dm::Save(Save::new(SaveConfig::to("/tmp/saved-state"), now))) {
        DmEvent::Save(result) => result.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        saved,
        Saved {
            fdset_id: 0,
            live: Some(false)
        }
    );
    assert_eq!(run.qemu.ledger.opened_total(), 1);
    assert_eq!(
        run.qemu.ledger.open_count(),
        0,
        "the handle went with add-fd"
    );
    // The resume: `cont` (QEMU says RESUME first), then the set QEMU 7.2 kept because the
    // guest was paused when remove-fd came, removed again.
    match run.run(|now| Dm::Control(Control::new(ControlConfig::new(Action::Resume), now))) {
        DmEvent::Control(result) => result.unwrap(),
        other => panic!("{other:?}"),
    }
    // The peer test's own check, replayed: no fd set left.
    let check = run.world.submit(
        run.qemu.conn,
        Op::Qmp(QmpOp::Command(QmpCommand::new("query-fdsets"))),
    );
    run.world.drive(&mut run.qemu).unwrap();
    let answer = run.world.take_log().into_iter().find_map(|r| match r {
        Record::Reply {
            owner: Owner::Caller,
            id,
            result,
            ..
        } if id == check => Some(result),
        _ => None,
    });
    assert_eq!(answer, Some(Ok(Reply::Qmp(json!([])))));
    assert_eq!(run.qemu.rest(), 0, "every recorded command was sent");
}

#[test]
fn quit_ends_with_qemus_reply_its_close_and_exit() {
    let mut run = Run::new(include_str!("../../../testdata/qmp/dm-quit.txt"));
    run.start();
    match run.run(|now| Dm::Shutdown(Shutdown::new(ShutdownConfig::default(), now))) {
        DmEvent::Shutdown(result) => assert_eq!(
            result,
            Ok(Stopped {
                exit: Some(ProcessExit::Exited(0)),
                killed: false
            })
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(run.qemu.rest(), 0);
}
