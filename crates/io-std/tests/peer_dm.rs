//! The device-model operations (`xsio-dm`) through the blocking driver against real QEMU
//! (Debian's qemu-system-x86_64 7.2): start-up on a pre-opened socket, a save into a
//! passed fd, QEMU killed mid-save, QEMU exiting at start-up, `quit`, a kill when `quit`
//! is ignored. With `XSIO_RECORD_TRANSCRIPTS=1` the exchanges are written to
//! `testdata/qmp/dm-*.txt` (replayed by `crates/dm/tests/transcripts.rs`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use xsio_dm::{
    Action, Control, ControlConfig, Ready, Save, SaveConfig, SaveError, Shutdown, ShutdownConfig,
    StartConfig, StartError, StartUp, Stopped,
};
use xsio_harness::dm::{Dm, DmEvent};
use xsio_harness::{ActorId, Conn, Harness, Owner, Record};
use xsio_io_std::dm::QemuLinks;
use xsio_io_std::l2::run_until;
use xsio_ops::{FileOp, Op, ProcessExit, QmpCommand, QmpOp, Reply};
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self, QEMU, Qemu};
use xsio_testkit::qmp_peer::{self, fds_on, open_fds};

// The tests `main` runs, each against QEMU.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    start_up_on_a_pre_opened_socket_gives_prelaunch,
    a_save_writes_qemus_device_state_and_removes_the_fd_set,
    qemu_killed_during_the_save_fails_once_and_closes_the_fd,
    qemu_exiting_at_start_up_is_a_typed_error_with_its_status,
    quit_ends_with_the_connection_closed_and_exit_status_0,
    a_qemu_that_ignores_quit_is_killed,
    an_attached_qemu_shuts_down_and_is_seen_to_exit
];

/// A paused PC guest (TCG, `-S`) and a temp dir for its socket and files.
struct World {
    world: Harness<Dm>,
    links: QemuLinks,
    qemu: Conn,
    dir: tempfile::TempDir,
}

impl World {
    /// Spawns QEMU (`command`) on a pre-opened socket.
    fn spawn(command: Command) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut world = Harness::new(xsio_io_std::now());
        let mut links = QemuLinks::default().recording();
        let qemu = links
            .spawn(&mut world, command, &dir.path().join("qmp.sock"))
            .unwrap();
        World {
            world,
            links,
            qemu,
            dir,
        }
    }

    fn paused_pc() -> World {
        World::spawn(qmp_peer::bare_paused_pc())
    }

    /// Adds `operation` and runs until it has settled (60 s at most).
    fn run(&mut self, operation: Dm) -> DmEvent {
        let id = self.world.add(self.qemu, operation);
        self.world.drain(id);
        run_until(
            &mut self.world,
            &mut self.links,
            Duration::from_secs(90),
            |w| w.actor(id).is_settled(),
        )
        .unwrap();
        self.completion(id)
    }

    /// The completion of `id`, from the log (which it empties).
    fn completion(&mut self, id: ActorId) -> DmEvent {
        let mut events = self.world.take_log().into_iter().filter_map(|r| match r {
            Record::Event { actor, event } if actor == id => Some(event),
            _ => None,
        });
        let event = events.next().expect("a completion");
        assert!(events.next().is_none(), "one completion only");
        event
    }

    fn start(&mut self) -> Ready {
        let now = self.world.now();
        match self.run(Dm::Start(StartUp::new(StartConfig::fresh(), now))) {
            DmEvent::Start(result) => result.unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// One command of the caller's own, outside the machines.
    fn command(&mut self, command: QmpCommand) -> Value {
        let id = self
            .world
            .submit(self.qemu, Op::Qmp(QmpOp::Command(command)));
        let mut answer = None;
        run_until(
            &mut self.world,
            &mut self.links,
            Duration::from_secs(30),
            |w| w.is_idle(),
        )
        .unwrap();
        for record in self.world.take_log() {
            if let Record::Reply {
                owner: Owner::Caller,
                id: done,
                result,
                ..
            } = record
            {
                if done == id {
                    answer = Some(result);
                }
            }
        }
        match answer.expect("answered") {
            Ok(Reply::Qmp(value)) => value,
            other => panic!("{other:?}"),
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.links.pid(self.qemu).expect("a pid");
        kill_process(Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
    }

    fn keep_transcript(&self, name: &str) {
        let header = format!(
            "Recorded from {QEMU} 7.2 by crates/io-std/tests/peer_dm.rs ({name}): the dm operations through xsio_io_std::dm."
        );
        let transcript = self.links.transcript(self.qemu).unwrap();
        qmp_peer::keep_transcript(name, &header, &transcript);
    }

    /// Runs a shutdown with `config` to its end and checks how QEMU ended: `exit`, after a
    /// kill or not.
    fn shutdown_ends(&mut self, config: ShutdownConfig, exit: ProcessExit, killed: bool) {
        let now = self.world.now();
        match self.run(Dm::Shutdown(Shutdown::new(config, now))) {
            DmEvent::Shutdown(result) => assert_eq!(
                result.unwrap(),
                Stopped {
                    exit: Some(exit),
                    killed
                }
            ),
            other => panic!("{other:?}"),
        }
    }
}

fn start_up_on_a_pre_opened_socket_gives_prelaunch() {
    let mut dm = World::paused_pc();
    let started = xsio_io_std::now();
    let ready = dm.start();
    let took = xsio_io_std::now() - started;
    assert_eq!(ready.status, "prelaunch");
    assert_eq!(ready.session.version.major, 7);
    assert!(took < Duration::from_secs(30), "{took:?}");
    dm.keep_transcript("dm-startup");
}

fn a_save_writes_qemus_device_state_and_removes_the_fd_set() {
    let mut dm = World::paused_pc();
    dm.start();
    let path: PathBuf = dm.dir.path().join("saved-state");
    // An older, longer file: the save truncates it.
    std::fs::write(&path, vec![b'x'; 4 << 20]).unwrap();
    let before = open_fds();
    let now = dm.world.now();
    let config = SaveConfig::to(path.to_str().unwrap());
    let saved = match dm.run(Dm::Save(Save::new(config, now))) {
        DmEvent::Save(result) => result.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(saved.live, Some(false), "QEMU 7.2 takes `live`");
    assert_eq!(
        open_fds(),
        before,
        "the file's descriptor went to QEMU and ours is closed"
    );
    assert_eq!(fds_on(&path), 0);
    let state = std::fs::read(&path).unwrap();
    assert_eq!(&state[..4], b"QEVM", "QEMU's migration stream magic");
    assert!(state.len() < 4 << 20, "truncated: {} bytes", state.len());

    // remove-fd was sent, but QEMU 7.2 frees a removed set only while the guest runs.
    let transcript = dm.links.transcript(dm.qemu).unwrap();
    assert!(
        transcript.contains(&format!(
            r#"{{"execute":"remove-fd","arguments":{{"fdset-id":{}}}"#,
            saved.fdset_id
        )),
        "{transcript}"
    );
    let now = dm.world.now();
    match dm.run(Dm::Control(Control::new(
        ControlConfig::new(Action::Resume),
        now,
    ))) {
        DmEvent::Control(result) => result.unwrap(),
        other => panic!("{other:?}"),
    }
    let sets = dm.command(QmpCommand::new("query-fdsets"));
    assert_eq!(sets, json!([]), "no fd set left once the guest runs");
    dm.keep_transcript("dm-save");
}

fn qemu_killed_during_the_save_fails_once_and_closes_the_fd() {
    let mut dm = World::paused_pc();
    dm.start();
    let path = dm.dir.path().join("saved-state");
    let now = dm.world.now();
    let id = dm.world.add(
        dm.qemu,
        Dm::Save(Save::new(SaveConfig::to(path.to_str().unwrap()), now)),
    );
    dm.world.drain(id);
    // Step until the file is open and add-fd is on its way with it, then kill QEMU.
    let mut log = Vec::new();
    let mut opened = false;
    for _ in 0..10_000 {
        dm.world.step(&mut dm.links).unwrap();
        log.extend(dm.world.take_log());
        opened |= log.iter().any(|r| {
            matches!(
                r,
                Record::Reply {
                    result: Ok(Reply::Fd(_)),
                    ..
                }
            )
        });
        let add_fd_sent = log.iter().any(|r| {
            matches!(r, Record::Request { request, .. }
                if matches!(&request.op, Op::Qmp(QmpOp::Command(c)) if c.command == "add-fd"))
        });
        if opened && add_fd_sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(opened, "the driver opened the file: {log:?}");
    dm.signal(Signal::KILL);
    run_until(&mut dm.world, &mut dm.links, Duration::from_secs(30), |w| {
        w.actor(id).is_settled()
    })
    .unwrap();
    log.extend(dm.world.take_log());
    let completions: Vec<&DmEvent> = log
        .iter()
        .filter_map(|r| match r {
            Record::Event { actor, event } if *actor == id => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(completions.len(), 1, "{log:?}");
    match completions[0] {
        DmEvent::Save(Err(SaveError::Exited(Some(ProcessExit::Signalled(9)))))
        | DmEvent::Save(Err(SaveError::Failed { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fds_on(&path),
        0,
        "no descriptor of ours is left on the file"
    );
    assert_eq!(dm.links.open_handles(dm.qemu), 0);
    let closes = log
        .iter()
        .filter(|r| matches!(r, Record::Request { request, .. } if matches!(request.op, Op::File(FileOp::Close(_)))))
        .count();
    assert_eq!(
        closes, 0,
        "the fd went with add-fd; nothing was left to close"
    );
}

fn qemu_exiting_at_start_up_is_a_typed_error_with_its_status() {
    let mut qemu = Command::new(QEMU);
    qemu.args(["-machine", "pc", "-no-such-option"]);
    let mut dm = World::spawn(qemu);
    let now = dm.world.now();
    match dm.run(Dm::Start(StartUp::new(StartConfig::fresh(), now))) {
        DmEvent::Start(Err(StartError::Exited(Some(ProcessExit::Exited(1))))) => {}
        other => panic!("{other:?}"),
    }
}

fn quit_ends_with_the_connection_closed_and_exit_status_0() {
    let mut dm = World::paused_pc();
    dm.start();
    dm.shutdown_ends(ShutdownConfig::default(), ProcessExit::Exited(0), false);
    dm.keep_transcript("dm-quit");
}

fn a_qemu_that_ignores_quit_is_killed() {
    let mut dm = World::paused_pc();
    dm.start();
    dm.signal(Signal::STOP);
    let config = ShutdownConfig {
        timeout: Duration::from_millis(500),
        kill_timeout: Duration::from_secs(5),
    };
    dm.shutdown_ends(config, ProcessExit::Signalled(9), true);
}

fn an_attached_qemu_shuts_down_and_is_seen_to_exit() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let mut world: Harness<Dm> = Harness::new(xsio_io_std::now());
    let mut links = QemuLinks::default();
    let conn = links.attach(&mut world, qemu.socket());
    let id = world.add(
        conn,
        Dm::Shutdown(Shutdown::new(ShutdownConfig::default(), world.now())),
    );
    world.drain(id);
    run_until(&mut world, &mut links, Duration::from_secs(30), |w| {
        w.actor(id).is_settled()
    })
    .unwrap();
    let Dm::Shutdown(shutdown) = world.actor(id) else {
        unreachable!()
    };
    // Not our child: gone, status unknown.
    assert_eq!(
        shutdown.result(),
        Some(&Ok(Stopped {
            exit: None,
            killed: false
        }))
    );
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    Tests::new().each(&[&qemu], TESTS).run()
}
