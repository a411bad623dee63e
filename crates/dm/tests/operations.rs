//! Each operation's paths, one test each, against the QEMU in a box with virtual time.

use std::time::{Duration, Instant};

use serde_json::json;
use xsio_core::Machine;
use xsio_dm::{
    Action, Control, ControlConfig, ControlError, Ready, Save, SaveConfig, SaveError, SaveStep,
    Saved, Shutdown, ShutdownConfig, ShutdownError, StartConfig, StartError, StartUp, Stopped,
};
use xsio_harness::qemu::{Fate, FdSet, Seen};
use xsio_harness::{Actor, ActorId, Harness};
use xsio_harness::{SimQemu, Timed};
use xsio_ops::{
    Answer, FileAccess, FileOp, Input, InputError, Op, OpErrorKind, OpenFile, Output, PeerEvent,
    ProcessExit, QemuVersion, QmpOp, QmpSession, Reply, Request,
};

const SECOND: Duration = Duration::from_secs(1);

#[allow(clippy::disallowed_methods)] // the tests' epoch; later times are virtual
fn epoch() -> Instant {
    Instant::now()
}

/// Runs `machine` against `qemu` until nothing moves; returns its completion, when it
/// came (counted from the start), and the harness's log.
fn run<M, T>(
    qemu: &mut SimQemu,
    make: impl FnOnce(Instant) -> M,
) -> (T, Duration, Vec<xsio_harness::Record<T>>)
where
    M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<T>, Error = InputError>,
    T: Clone + std::fmt::Debug,
    Timed<M>: Actor<Event = T>,
{
    let start = epoch();
    let mut world: Harness<Timed<M>> = Harness::new(start);
    let conn = world.connect();
    assert_eq!(conn, qemu.conn);
    let id: ActorId = world.add(conn, Timed::new(make(start), start));
    world.drain(id);
    world.drive(qemu).unwrap();
    let log = world.take_log();
    let mut completion = None;
    for record in &log {
        if let xsio_harness::Record::Event { event, .. } = record {
            assert!(completion.is_none(), "a second completion: {event:?}");
            completion = Some(event.clone());
        }
    }
    assert!(world.is_idle(), "every request answered");
    let at = world.actor(id).completions[0].duration_since(start);
    (completion.expect("a completion"), at, log)
}

/// The log [`run`] returns.
type Log<T> = Vec<xsio_harness::Record<T>>;

/// A save into `/srv/save.1` against `qemu` ([`run`]).
fn save(
    qemu: &mut SimQemu,
) -> (
    Result<Saved, SaveError>,
    Duration,
    Log<Result<Saved, SaveError>>,
) {
    run(qemu, |now| Save::new(SaveConfig::to("/srv/save.1"), now))
}

/// A resume or pause against `qemu` ([`run`]); its result.
fn control(qemu: &mut SimQemu, action: Action) -> Result<(), ControlError> {
    run(qemu, |now| Control::new(ControlConfig::new(action), now)).0
}

/// A shutdown with the default deadlines against `qemu` ([`run`]); its result and when.
fn shutdown(qemu: &mut SimQemu) -> (Result<Stopped, ShutdownError>, Duration) {
    let (result, at, _) = run(qemu, |now| Shutdown::new(ShutdownConfig::default(), now));
    (result, at)
}

/// `output`, which must be a request.
fn request<T: std::fmt::Debug>(output: Option<Output<T>>) -> Request {
    match output {
        Some(Output::Request(request)) => request,
        other => panic!("not a request: {other:?}"),
    }
}

/// How many requests of one kind the log shows.
fn requests<T>(log: &[xsio_harness::Record<T>], wanted: impl Fn(&Op) -> bool) -> usize {
    log.iter()
        .filter(
            |r| matches!(r, xsio_harness::Record::Request { request, .. } if wanted(&request.op)),
        )
        .count()
}

/// A QEMU 7.2 in `status` on the first connection of the harness `run` makes.
fn qemu(status: &str) -> SimQemu {
    let mut world: Harness<Timed<StartUp>> = Harness::new(epoch());
    SimQemu::qemu_7_2(world.connect(), status)
}

fn version_7_2() -> QemuVersion {
    QemuVersion {
        major: 7,
        minor: 2,
        micro: 22,
    }
}

// ---- start-up -------------------------------------------------------------------------

#[test]
fn a_fresh_start_is_ready_when_qemu_reports_prelaunch() {
    let mut qemu = qemu("prelaunch");
    let (result, at, _) = run(&mut qemu, |now| StartUp::new(StartConfig::fresh(), now));
    let ready: Ready = result.unwrap();
    assert_eq!(ready.status, "prelaunch");
    assert_eq!(ready.session.version, version_7_2());
    assert_eq!(at, Duration::ZERO);
    assert_eq!(qemu.commands(), ["query-status"]);
}

#[test]
fn a_restore_accepts_inmigrate_and_paused_but_not_prelaunch() {
    for (status, ok) in [
        ("inmigrate", true),
        ("paused", true),
        ("prelaunch", false),
        ("running", false),
    ] {
        let mut qemu = qemu(status);
        let (result, _, _) = run(&mut qemu, |now| StartUp::new(StartConfig::restore(), now));
        match result {
            Ok(ready) => assert!(ok && ready.status == status, "{status}"),
            Err(StartError::UnexpectedStatus {
                status: seen,
                expected,
            }) => {
                assert!(!ok, "{status}");
                assert_eq!(
                    (seen.as_str(), expected),
                    (status, vec!["inmigrate".to_owned(), "paused".to_owned()])
                );
            }
            Err(other) => panic!("{status}: {other}"),
        }
    }
}

#[test]
fn qemu_exiting_during_start_up_is_an_error_with_its_status() {
    // QEMU dies as the connection is asked for; its exit is reported after the connection
    // failed (the order a driver may see), within the grace period.
    let mut qemu = qemu("prelaunch").with_fates(vec![Fate::Die]);
    qemu.exit_first = false;
    let (result, at, _) = run(&mut qemu, |now| StartUp::new(StartConfig::fresh(), now));
    assert_eq!(
        result,
        Err(StartError::Exited(Some(ProcessExit::Signalled(9))))
    );
    assert_eq!(at, Duration::ZERO);
}

#[test]
fn a_lost_connection_without_an_exit_fails_after_the_grace_period() {
    let mut qemu = qemu("prelaunch").with_fates(vec![Fate::Refuse(Duration::ZERO)]);
    let (result, at, _) = run(&mut qemu, |now| StartUp::new(StartConfig::fresh(), now));
    match result {
        Err(StartError::Connection(err)) => assert_eq!(err.kind, OpErrorKind::Connection),
        other => panic!("{other:?}"),
    }
    assert_eq!(at, SECOND, "StartConfig's exit_grace");
}

#[test]
fn a_monitor_that_never_answers_times_out_at_60_seconds() {
    let mut qemu = qemu("prelaunch").with_fates(vec![Fate::Hang]);
    let start = epoch();
    let mut world: Harness<Timed<StartUp>> = Harness::new(start);
    let conn = world.connect();
    qemu.conn = conn;
    let id = world.add(
        conn,
        Timed::new(StartUp::new(StartConfig::fresh(), start), start),
    );
    world.drain(id);
    world.drive(&mut qemu).unwrap();
    assert_eq!(
        world.actor(id).machine.result(),
        Some(&Err(StartError::TimedOut(Duration::from_secs(60))))
    );
    assert_eq!(
        world.actor(id).completions,
        [start + Duration::from_secs(60)]
    );
    // The connect is still in flight: the operation is complete but not settled until
    // it is answered (here: QEMU is killed).
    assert!(!world.actor(id).machine.is_settled());
    qemu.die(&mut world, ProcessExit::Signalled(9)).unwrap();
    world.drive(&mut qemu).unwrap();
    assert!(world.actor(id).machine.is_settled());
    assert_eq!(world.actor(id).completions.len(), 1);
}

#[test]
fn no_deadline_at_all_with_duration_max() {
    let start = epoch();
    let config = StartConfig {
        timeout: Duration::MAX,
        exit_grace: Duration::MAX,
        ..StartConfig::fresh()
    };
    let start_up = StartUp::new(config, start);
    assert_eq!(start_up.poll_timeout(), None);
    // At the very end of time too.
    let end = xsio_core::last_instant(start);
    let mut late = StartUp::new(StartConfig::fresh(), end);
    assert_eq!(
        late.poll_timeout(),
        None,
        "60 s past the end of time: no deadline"
    );
    late.handle_timeout(end);
    assert!(late.result().is_none());
}

// ---- save ------------------------------------------------------------------------------

#[test]
fn a_save_stops_opens_truncated_adds_the_fd_saves_and_removes_the_fd_set() {
    let mut qemu = qemu("running");
    let (result, _, _) = save(&mut qemu);
    let saved: Saved = result.unwrap();
    assert_eq!(
        saved,
        Saved {
            fdset_id: 0,
            live: Some(false)
        }
    );
    assert_eq!(
        qemu.seen,
        [
            Seen::Command("stop".into(), None, 0),
            Seen::Command("add-fd".into(), Some(json!({"opaque": "saved_state"})), 1),
            Seen::FdSetAdded(0),
            Seen::Command(
                "xen-save-devices-state".into(),
                Some(json!({"filename": "/dev/fdset/0", "live": false})),
                0
            ),
            Seen::Command("remove-fd".into(), Some(json!({"fdset-id": 0})), 0),
            Seen::FdSetRemoved(0),
        ]
    );
    assert_eq!(qemu.ledger.open_count(), 0);
    assert_eq!(qemu.ledger.opened_total(), 1);
}

#[test]
fn the_file_is_opened_write_only_created_and_truncated() {
    let now = epoch();
    let mut save = Save::new(SaveConfig::to("state"), now);
    let answer = |save: &mut Save, reply: Reply| {
        let request = request(save.poll_output());
        let op = request.op.clone();
        save.handle_reply(now, Answer::new(request.id, Ok(reply)))
            .unwrap();
        op
    };
    let session = QmpSession {
        version: version_7_2(),
        package: String::new(),
    };
    answer(&mut save, Reply::QmpConnected(session));
    answer(&mut save, Reply::Qmp(json!({})));
    let open = answer(&mut save, Reply::Fd(xsio_ops::FdHandle::from_raw(7)));
    assert_eq!(
        open,
        Op::File(FileOp::Open(OpenFile {
            path: "state".into(),
            access: FileAccess::WriteOnly,
            create: true,
            truncate: true,
        }))
    );
    let add = request(save.poll_output());
    let Op::Qmp(QmpOp::Command(add)) = add.op else {
        panic!()
    };
    assert_eq!(add.fds, [xsio_ops::FdHandle::from_raw(7)]);
}

#[test]
fn qemu_older_than_2_11_gets_no_live_argument() {
    let mut world: Harness<Timed<Save>> = Harness::new(epoch());
    let old = QemuVersion {
        major: 2,
        minor: 10,
        micro: 1,
    };
    let mut qemu = SimQemu::new(world.connect(), old, "running");
    let (result, _, _) = save(&mut qemu);
    assert_eq!(result.unwrap().live, None);
    let save = qemu.seen.iter().find_map(|s| match s {
        Seen::Command(name, args, _) if name == "xen-save-devices-state" => args.clone(),
        _ => None,
    });
    assert_eq!(save, Some(json!({"filename": "/dev/fdset/0"})));
}

#[test]
fn a_failed_save_still_removes_the_fd_set_then_reports_the_failure() {
    let fates = Fate::after_answers(4, Fate::Refuse(Duration::ZERO));
    let mut qemu = qemu("running").with_fates(fates);
    let (result, _, _) = save(&mut qemu);
    match result {
        Err(SaveError::Failed {
            step: SaveStep::SaveState,
            source,
        }) => {
            assert!(matches!(source.kind, OpErrorKind::Qmp(_)), "{source}")
        }
        other => panic!("{other:?}"),
    }
    assert!(qemu.seen.contains(&Seen::FdSetRemoved(0)));
    assert!(qemu.fdsets.is_empty());
}

#[test]
fn qemu_dying_mid_save_fails_once_and_leaves_no_handle_open() {
    // Connect, stop, open, add-fd answered; QEMU dies on xen-save-devices-state.
    let fates: Vec<Fate> = Fate::after_answers(4, Fate::Die);
    for exit_first in [true, false] {
        let mut qemu = qemu("running").with_fates(fates.clone());
        qemu.exit_first = exit_first;
        let (result, _, _) = save(&mut qemu);
        match (exit_first, result) {
            (true, Err(SaveError::Exited(Some(ProcessExit::Signalled(9))))) => {}
            (
                false,
                Err(SaveError::Failed {
                    step: SaveStep::SaveState,
                    source,
                }),
            ) => {
                assert_eq!(source.kind, OpErrorKind::Connection)
            }
            (_, other) => panic!("exit first {exit_first}: {other:?}"),
        }
        assert_eq!(qemu.ledger.open_count(), 0);
        assert!(
            !qemu.commands().contains(&"remove-fd".to_owned()),
            "nobody to send it to"
        );
    }
}

/// A save whose request after the first `answered` is answered `late` seconds late, past
/// its 30 s deadline: the timeout it fails with at 30 s, QEMU, and the log.
fn late_save(answered: usize, late: u64) -> (SimQemu, Log<Result<Saved, SaveError>>) {
    let late = Fate::Answer(Duration::from_secs(late));
    let mut qemu = qemu("running").with_fates(Fate::after_answers(answered, late));
    let (result, at, log) = save(&mut qemu);
    assert_eq!(result, Err(SaveError::TimedOut(Duration::from_secs(30))));
    assert_eq!(at, Duration::from_secs(30));
    (qemu, log)
}

#[test]
fn a_handle_that_arrives_after_the_deadline_is_closed() {
    // The open is answered 40 s late: the save has failed at 30 s, and gives it back.
    let (qemu, log) = late_save(2, 40);
    assert_eq!(qemu.ledger.opened_total(), 1);
    assert_eq!(qemu.ledger.open_count(), 0, "closed when it came");
    assert!(!qemu.commands().contains(&"add-fd".to_owned()));
    assert_eq!(
        requests(&log, |op| matches!(op, Op::File(FileOp::Close(_)))),
        1
    );
}

#[test]
fn an_fd_set_created_after_the_deadline_is_removed() {
    // add-fd is answered 45 s late: the set is created after the save failed.
    let (qemu, _) = late_save(3, 45);
    assert_eq!(
        qemu.commands(),
        ["stop", "add-fd", "remove-fd"],
        "no save after the deadline, but the set is removed"
    );
    assert!(qemu.fdsets.is_empty());
}

#[test]
fn a_save_that_cannot_open_its_file_fails_at_the_open() {
    let fates = Fate::after_answers(2, Fate::Refuse(Duration::ZERO));
    let mut qemu = qemu("running").with_fates(fates);
    let (result, _, _) = run(&mut qemu, |now| Save::new(SaveConfig::to("/ro/save"), now));
    match result {
        Err(SaveError::Failed {
            step: SaveStep::Open,
            source,
        }) => {
            assert_eq!(source.kind, OpErrorKind::File)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(qemu.commands(), ["stop"]);
}

// ---- resume, pause ---------------------------------------------------------------------

#[test]
fn resume_and_pause_send_cont_and_stop() {
    let cases: [(Action, &[&str], &str); 2] = [
        (Action::Resume, &["cont", "query-fdsets"], "running"),
        (Action::Pause, &["stop"], "paused"),
    ];
    for (action, commands, status) in cases {
        let mut qemu = qemu("prelaunch");
        let result = control(&mut qemu, action);
        assert_eq!(result, Ok(()));
        assert_eq!(qemu.commands(), commands);
        assert_eq!(qemu.status, status);
    }
}

#[test]
fn a_resume_removes_the_saved_state_fd_sets_and_no_other() {
    let mut qemu = qemu("paused");
    qemu.fdsets.insert(3, FdSet::with_fd("saved_state"));
    qemu.fdsets.insert(4, FdSet::with_fd("cdrom"));
    qemu.fdsets.insert(7, FdSet::with_fd("saved_state"));
    let result = control(&mut qemu, Action::Resume);
    assert_eq!(result, Ok(()));
    assert_eq!(
        qemu.commands(),
        ["cont", "query-fdsets", "remove-fd", "remove-fd"]
    );
    assert_eq!(qemu.fdsets.keys().copied().collect::<Vec<_>>(), [4]);
}

#[test]
fn a_resume_whose_cleanup_fails_says_the_guest_runs() {
    let fates = Fate::after_answers(3, Fate::Refuse(Duration::ZERO));
    let mut qemu = qemu("paused").with_fates(fates);
    qemu.fdsets.insert(0, FdSet::with_fd("saved_state"));
    let result = control(&mut qemu, Action::Resume);
    let err = result.unwrap_err();
    assert!(matches!(err, ControlError::Cleanup(_)), "{err}");
    assert_eq!(qemu.status, "running");
}

#[test]
fn a_refused_resume_names_the_action() {
    let fates = Fate::after_answers(1, Fate::Refuse(Duration::ZERO));
    let mut qemu = qemu("prelaunch").with_fates(fates);
    let result = control(&mut qemu, Action::Resume);
    let err: ControlError = result.unwrap_err();
    assert!(matches!(
        err,
        ControlError::Failed {
            action: Action::Resume,
            ..
        }
    ));
    assert!(err.to_string().starts_with("cont failed"), "{err}");
}

// ---- shutdown --------------------------------------------------------------------------

#[test]
fn quit_ends_with_the_connection_closed_and_exit_status_0() {
    let mut qemu = qemu("running");
    let (result, _) = shutdown(&mut qemu);
    let stopped: Stopped = result.unwrap();
    assert_eq!(
        stopped,
        Stopped {
            exit: Some(ProcessExit::Exited(0)),
            killed: false
        }
    );
    assert_eq!(qemu.commands(), ["quit"]);
}

#[test]
fn a_qemu_that_ignores_quit_is_killed_at_the_deadline_and_a_refused_quit_at_once() {
    // What happens to `quit`, and when the kill comes.
    let cases = [
        (Fate::Hang, Duration::from_secs(10)),
        (
            Fate::Refuse(Duration::from_millis(3)),
            Duration::from_millis(3),
        ),
    ];
    for (quit, kill_at) in cases {
        let mut qemu = qemu("running").with_fates(Fate::after_answers(1, quit));
        let (result, at) = shutdown(&mut qemu);
        let killed = Stopped {
            exit: Some(ProcessExit::Signalled(9)),
            killed: true,
        };
        assert_eq!(result, Ok(killed), "{quit:?}");
        assert_eq!(at, kill_at, "{quit:?}");
    }
}

#[test]
fn a_kill_that_never_shows_as_an_exit_fails_after_the_kill_timeout() {
    let now = epoch();
    let mut shutdown = Shutdown::new(ShutdownConfig::default(), now);
    let connect = request(shutdown.poll_output());
    // QEMU is unreachable: straight to the kill.
    let refused = xsio_ops::OpError::new(OpErrorKind::Connection, "ECONNREFUSED");
    shutdown
        .handle_reply(now, Answer::new(connect.id, Err(refused)))
        .unwrap();
    let kill = request(shutdown.poll_output());
    assert_eq!(kill.op, Op::Process(xsio_ops::ProcessOp::Kill));
    shutdown
        .handle_reply(now, Answer::new(kill.id, Ok(Reply::Done)))
        .unwrap();
    assert_eq!(shutdown.poll_timeout(), Some(now + Duration::from_secs(5)));
    shutdown.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(
        shutdown.poll_output(),
        Some(Output::Event(Err(ShutdownError::NotExited(
            Duration::from_secs(5)
        ))))
    );
    // A late exit changes nothing.
    shutdown.handle_peer(now + Duration::from_secs(6), &PeerEvent::Exited(None));
    assert_eq!(shutdown.poll_output(), None);
    assert!(shutdown.is_settled());
}

// ---- refusals (D5) -------------------------------------------------------------------------

#[test]
fn an_answer_to_a_request_not_in_flight_is_refused_and_changes_nothing() {
    let now = epoch();
    let mut save = Save::new(SaveConfig::to("state"), now);
    let before = save.clone();
    let stranger = xsio_core::OpId::from_raw(99);
    assert_eq!(
        save.handle_reply(now, Answer::new(stranger, Ok(Reply::Done))),
        Err(InputError::UnknownOp(stranger))
    );
    assert_eq!(save, before);
}

#[test]
fn an_answer_of_the_wrong_kind_is_refused_and_fails_the_operation_once() {
    let now = epoch();
    let mut start = StartUp::new(StartConfig::fresh(), now);
    let connect = request(start.poll_output());
    let wrong = start.handle_reply(
        now,
        Answer::new(connect.id, Ok(Reply::Fd(xsio_ops::FdHandle::from_raw(1)))),
    );
    assert!(matches!(wrong, Err(InputError::WrongReply { .. })));
    let Some(Output::Event(Err(StartError::Connection(err)))) = start.poll_output() else {
        panic!()
    };
    assert_eq!(err.kind, OpErrorKind::Invalid);
    assert!(start.is_settled());
}
