//! Every operation completes exactly once (D1), consumes every descriptor handle it is
//! given (D2), removes every fd set it created while the connection lasts (D3), and keeps
//! its deadline (D4), under random answers, delays, refusals, hangs, dropped connections,
//! QEMU dying at any step (its exit before or after the connection's end), timeouts from a
//! few milliseconds to `Duration::MAX`, and a clock near the end of `Instant`'s range.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use xsio_core::{deadline, last_instant};
use xsio_dm::{
    Action, Control, ControlConfig, ControlError, Ready, Save, SaveConfig, SaveError, Saved,
    Shutdown, ShutdownConfig, ShutdownError, StartConfig, StartError, StartUp, Stopped,
};
use xsio_harness::qemu::{Fate, Seen};
use xsio_harness::{ActorId, Harness};
use xsio_harness::{SimQemu, Timed};
use xsio_ops::{ProcessExit, QemuVersion};

xsio_harness::actors! {
    #[derive(Debug)]
    enum Operation / OperationEvent {
        Start(Timed<StartUp>, Result<Ready, StartError>),
        Save(Timed<Save>, Result<Saved, SaveError>),
        Control(Timed<Control>, Result<(), ControlError>),
        Shutdown(Timed<Shutdown>, Result<Stopped, ShutdownError>),
    }
}

impl Operation {
    fn completions(&self) -> &[Instant] {
        match self {
            Operation::Start(m) => &m.completions,
            Operation::Save(m) => &m.completions,
            Operation::Control(m) => &m.completions,
            Operation::Shutdown(m) => &m.completions,
        }
    }

    fn is_settled(&self) -> bool {
        match self {
            Operation::Start(m) => m.machine.is_settled(),
            Operation::Save(m) => m.machine.is_settled(),
            Operation::Control(m) => m.machine.is_settled(),
            Operation::Shutdown(m) => m.machine.is_settled(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Start { restore: bool },
    Save { live: bool },
    Control(Action),
    Shutdown,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        any::<bool>().prop_map(|restore| Kind::Start { restore }),
        any::<bool>().prop_map(|live| Kind::Save { live }),
        Just(Kind::Control(Action::Resume)),
        Just(Kind::Control(Action::Pause)),
        Just(Kind::Shutdown),
    ]
}

fn fate() -> impl Strategy<Value = Fate> {
    let delay = prop_oneof![
        Just(Duration::ZERO),
        (0u64..20_000).prop_map(Duration::from_millis),
    ];
    prop_oneof![
        6 => delay.clone().prop_map(Fate::Answer),
        1 => delay.prop_map(Fate::Refuse),
        1 => Just(Fate::Hang),
        1 => Just(Fate::Drop),
        1 => Just(Fate::Die),
    ]
}

fn timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::from_millis(1)),
        Just(Duration::from_millis(500)),
        Just(Duration::from_secs(10)),
        Just(Duration::from_secs(60)),
        Just(Duration::MAX),
    ]
}

fn status() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("prelaunch"),
        Just("inmigrate"),
        Just("paused"),
        Just("running")
    ]
}

#[derive(Debug)]
struct Case {
    kind: Kind,
    fates: Vec<Fate>,
    exit_first: bool,
    timeout: Duration,
    status: &'static str,
    old_qemu: bool,
    end_of_time: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        kind(),
        prop::collection::vec(fate(), 0..10),
        any::<bool>(),
        timeout(),
        status(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(kind, fates, exit_first, timeout, status, old_qemu, end_of_time)| Case {
                kind,
                fates,
                exit_first,
                timeout,
                status,
                old_qemu,
                end_of_time,
            },
        )
}

/// Runs one case to the end and checks D1–D4; returns what QEMU saw.
fn run(case: &Case) -> Result<(), TestCaseError> {
    #[allow(clippy::disallowed_methods)] // the test's epoch; later times are virtual
    let real = Instant::now();
    let epoch = if case.end_of_time {
        last_instant(real)
            .checked_sub(Duration::from_secs(30))
            .unwrap_or(real)
    } else {
        real
    };
    let mut world: Harness<Operation> = Harness::new(epoch);
    let conn = world.connect();
    let version = if case.old_qemu {
        QemuVersion {
            major: 2,
            minor: 10,
            micro: 0,
        }
    } else {
        QemuVersion {
            major: 7,
            minor: 2,
            micro: 22,
        }
    };
    let mut qemu = SimQemu::new(conn, version, case.status).with_fates(case.fates.clone());
    qemu.exit_first = case.exit_first;

    let now = world.now();
    // The latest the completion may come: the deadline (none when it cannot be represented).
    let (operation, latest) = match case.kind {
        Kind::Start { restore } => {
            let mut config = if restore {
                StartConfig::restore()
            } else {
                StartConfig::fresh()
            };
            config.timeout = case.timeout;
            let latest = deadline(now, case.timeout);
            (
                Operation::Start(Timed::new(StartUp::new(config, now), now)),
                latest,
            )
        }
        Kind::Save { live } => {
            let mut config = SaveConfig::to("/var/lib/xen/qemu-save.1");
            config.live = live;
            config.timeout = case.timeout;
            let latest = deadline(now, case.timeout);
            (
                Operation::Save(Timed::new(Save::new(config, now), now)),
                latest,
            )
        }
        Kind::Control(action) => {
            let config = ControlConfig {
                action,
                timeout: case.timeout,
            };
            let latest = deadline(now, case.timeout);
            (
                Operation::Control(Timed::new(Control::new(config, now), now)),
                latest,
            )
        }
        Kind::Shutdown => {
            let config = ShutdownConfig {
                timeout: case.timeout,
                kill_timeout: Duration::from_secs(5),
            };
            // The kill is asked at the deadline at the latest; its own deadline follows.
            let latest =
                deadline(now, case.timeout).and_then(|t| deadline(t, Duration::from_secs(5)));
            (
                Operation::Shutdown(Timed::new(Shutdown::new(config, now), now)),
                latest,
            )
        }
    };
    let id: ActorId = world.add(conn, operation);
    world.drain(id);
    world
        .drive_bounded(&mut qemu, 100_000)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if !world.is_idle() || !world.actor(id).is_settled() {
        // Something hangs (or waits without a deadline for QEMU to go): QEMU dies at last,
        // and every answer comes.
        qemu.die(&mut world, ProcessExit::Signalled(9))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        world
            .drive_bounded(&mut qemu, 100_000)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    // Every request answered, every output drained.
    prop_assert!(world.is_idle(), "requests left in flight");
    let operation = world.actor(id);
    prop_assert!(operation.is_settled(), "{operation:?}");
    // D1: exactly one completion.
    prop_assert_eq!(operation.completions().len(), 1, "{:?}", operation);
    // D4: no later than the deadline.
    if let Some(latest) = latest {
        prop_assert!(
            operation.completions()[0] <= latest,
            "completed {:?} after the deadline",
            operation.completions()[0].saturating_duration_since(latest)
        );
    }
    // D2: every handle consumed.
    prop_assert_eq!(qemu.open_handles(), 0);
    prop_assert_eq!(qemu.ledger.open_count(), 0);
    // D3: `remove-fd` sent for every fd set created, unless the connection ended first.
    for (at, seen) in qemu.seen.iter().enumerate() {
        if let Seen::FdSetAdded(set) = seen {
            let later = &qemu.seen[at + 1..];
            let removal = later.iter().position(|s| {
                matches!(s, Seen::Command(name, Some(args), _)
                    if name == "remove-fd" && args["fdset-id"] == *set)
            });
            let end = later
                .iter()
                .position(|s| matches!(s, Seen::Closed | Seen::Died));
            let removed_in_time = match (removal, end) {
                (Some(r), Some(e)) => r < e,
                (Some(_), None) => true,
                (None, end) => end.is_some(),
            };
            prop_assert!(removed_in_time, "fd set {set} left behind: {:?}", qemu.seen);
        }
    }
    check_result(case, world.actor(id), &qemu)
}

/// What each kind of success implies about what QEMU saw.
fn check_result(case: &Case, operation: &Operation, qemu: &SimQemu) -> Result<(), TestCaseError> {
    match operation {
        Operation::Start(m) => {
            if let Some(Ok(ready)) = m.machine.result() {
                prop_assert_eq!(ready.status.as_str(), case.status);
                prop_assert_eq!(qemu.commands(), ["query-status"]);
            }
        }
        Operation::Save(m) => {
            if let Some(Ok(saved)) = m.machine.result() {
                prop_assert_eq!(
                    qemu.commands(),
                    ["stop", "add-fd", "xen-save-devices-state", "remove-fd"]
                );
                prop_assert_eq!(saved.live.is_some(), !case.old_qemu);
                prop_assert!(!qemu.fdsets.contains_key(&saved.fdset_id));
                // The save went through the set the handle went into.
                let add = qemu.seen.iter().find_map(|s| match s {
                    Seen::Command(name, _, fds) if name == "add-fd" => Some(*fds),
                    _ => None,
                });
                prop_assert_eq!(add, Some(1));
            }
        }
        Operation::Control(m) => {
            if let Some(Ok(())) = m.machine.result() {
                let wanted: &[&str] = match case.kind {
                    // No save left a set behind here: nothing to remove.
                    Kind::Control(Action::Resume) => &["cont", "query-fdsets"],
                    Kind::Control(Action::Pause) => &["stop"],
                    _ => unreachable!(),
                };
                prop_assert_eq!(qemu.commands(), wanted);
            }
        }
        Operation::Shutdown(m) => {
            if let Some(Ok(stopped)) = m.machine.result() {
                prop_assert!(!qemu.is_alive());
                prop_assert!(stopped.exit.is_some());
            }
            if let Some(Err(err)) = m.machine.result() {
                // The fake dies when killed: only a refused kill, or a kill answered after
                // its own deadline, fails the shutdown.
                prop_assert!(
                    matches!(err, ShutdownError::Kill(_) | ShutdownError::NotExited(_)),
                    "{err}"
                );
                prop_assert!(qemu.commands().len() <= 1, "{:?}", qemu.seen);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_operation_completes_once_consumes_its_handles_and_removes_its_fd_sets(case in case()) {
        run(&case)?;
    }
}
