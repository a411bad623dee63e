//! Deadlines over the whole range of `Duration` and `Instant`: a timeout too large to
//! represent means "no deadline" (never a panic), and every deadline that can be represented
//! fires exactly when it has passed, not before.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use xsio_core::{Input, OpId, deadline, last_instant};
use xsio_qmp::{Client, CloseReason, Command, CommandError, Config, Output, ProtocolError};

use common::{drain, epoch, ready};

#[test]
fn a_command_with_timeout_duration_max_has_no_deadline_and_still_gets_its_reply() {
    let now = epoch();
    let mut qmp = ready(Config::default(), now);
    let op = qmp.execute(now, Command::new("slow").timeout(Duration::MAX));
    assert_eq!(drain(&mut qmp), [r#"tx {"execute":"slow","id":1}"#]);
    assert_eq!(qmp.poll_timeout(), None, "no deadline to wait for");
    // Even at the end of time it does not time out.
    let end = last_instant(now);
    qmp.handle_timeout(end);
    assert_eq!(drain(&mut qmp), Vec::<String>::new());
    qmp.handle_input(end, Input::Bytes(br#"{"return": {"ok": 1}, "id": 1}"#));
    assert_eq!(drain(&mut qmp), [format!(r#"done {op} ok {{"ok": 1}}"#)]);
}

#[test]
fn huge_configured_timeouts_mean_no_deadline_for_negotiation_or_commands() {
    let now = epoch();
    let config = Config {
        negotiation_timeout: Duration::from_secs(u64::MAX),
        command_timeout: Duration::MAX,
        ..Config::default()
    };
    let mut qmp = Client::<u32>::new(config.clone(), now);
    assert_eq!(qmp.poll_timeout(), None, "QEMU may take for ever to greet");
    qmp.handle_timeout(last_instant(now));
    assert_eq!(drain(&mut qmp), Vec::<String>::new());
    assert!(!qmp.is_closed());

    let mut qmp = ready(config, now);
    let op = qmp.execute(now, Command::new("query-status"));
    qmp.handle_timeout(last_instant(now));
    assert_eq!(drain(&mut qmp), [r#"tx {"execute":"query-status","id":1}"#]);
    qmp.cancel(now, op);
    assert_eq!(drain(&mut qmp), [format!("done {op} err Cancelled")]);
}

#[test]
fn near_the_end_of_time_a_small_timeout_overflows_to_no_deadline_and_others_still_fire() {
    let end = last_instant(epoch());
    let now = end - Duration::from_secs(5);
    let config = Config {
        negotiation_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    // Negotiation's deadline would be past the end: none.
    let qmp = Client::<u32>::new(config.clone(), now);
    assert_eq!(qmp.poll_timeout(), None);

    let mut qmp = ready(config, now);
    let fits = qmp.execute(now, Command::new("a").timeout(Duration::from_secs(5)));
    let overflows = qmp.execute(now, Command::new("b").timeout(Duration::from_secs(6)));
    drain(&mut qmp);
    assert_eq!(qmp.poll_timeout(), Some(end));
    qmp.handle_timeout(end);
    assert_eq!(drain(&mut qmp), [format!("done {fits} err Timeout")]);
    assert_eq!(qmp.poll_timeout(), None);
    qmp.close(now);
    assert_eq!(
        drain(&mut qmp),
        [
            format!("done {overflows} err Disconnected"),
            "closed ClosedByCaller".to_owned()
        ]
    );
}

#[test]
fn a_negotiation_deadline_that_fits_still_closes_the_connection() {
    let now = epoch();
    let config = Config {
        negotiation_timeout: Duration::from_secs(3),
        command_timeout: Duration::MAX,
        ..Config::default()
    };
    let mut qmp = Client::<u32>::new(config, now);
    let op = qmp.execute(now, Command::new("query-status"));
    assert_eq!(qmp.poll_timeout(), deadline(now, Duration::from_secs(3)));
    qmp.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(
        drain(&mut qmp),
        [
            format!(
                "done {op} err {:?}",
                CommandError::Protocol(ProtocolError::NegotiationTimeout)
            ),
            format!(
                "closed {:?}",
                CloseReason::Protocol(ProtocolError::NegotiationTimeout)
            ),
        ]
    );
}

/// Timeouts from the whole range: short ones that fire, any number of seconds, at and near
/// `Duration::MAX`, and fully arbitrary values.
fn any_timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..5_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::MAX),
        any::<u64>().prop_map(|n| Duration::MAX - Duration::from_nanos(n)),
    ]
}

/// How the clock moves: a little, by any duration (up to the end of time), to just before
/// the end of time, or exactly to the client's next deadline (as a driver does).
#[derive(Clone, Debug)]
enum Jump {
    By(Duration),
    ToEndMinus(Duration),
    ToNextDeadline,
}

fn jump() -> impl Strategy<Value = Jump> {
    prop_oneof![
        3 => (0u64..3_000).prop_map(|ms| Jump::By(Duration::from_millis(ms))),
        1 => any_timeout().prop_map(Jump::By),
        1 => (0u64..10_000).prop_map(|ms| Jump::ToEndMinus(Duration::from_millis(ms))),
        2 => Just(Jump::ToNextDeadline),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// Submit a command, with its own timeout or the configured one.
    Execute(Option<Duration>),
    /// Move the clock and tell the client.
    Advance(Jump),
    /// QEMU answers the n-th command submitted (ignored if it already completed).
    Reply(usize),
    Cancel(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::option::of(any_timeout()).prop_map(Step::Execute),
        3 => jump().prop_map(Step::Advance),
        1 => (0usize..16).prop_map(Step::Reply),
        1 => (0usize..16).prop_map(Step::Cancel),
    ]
}

/// Runs `steps` against a model of deadlines: each command's deadline is
/// `deadline(submitted_at, timeout)` (`None` when that overflows), and it times out exactly
/// once the clock has reached it: not before, and not later than the next `handle_timeout`.
fn check_against_model(
    command_timeout: Duration,
    start_before_end: Option<Duration>,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let epoch = epoch();
    let mut now = match start_before_end {
        Some(before) => last_instant(epoch) - before,
        None => epoch,
    };
    let config = Config {
        command_timeout,
        // Everything goes on the wire at once, so every reply finds its command.
        max_in_flight: 64,
        max_queued: 64,
        ..Config::default()
    };
    let mut qmp = ready(config, now);
    let mut ops: Vec<OpId> = Vec::new();
    // Commands not completed yet, with the deadline the model expects.
    let mut open: BTreeMap<OpId, Option<Instant>> = BTreeMap::new();
    for step in steps {
        match step {
            Step::Execute(timeout) => {
                let mut command = Command::new("c");
                if let Some(timeout) = timeout {
                    command = command.timeout(*timeout);
                }
                let op = qmp.execute(now, command);
                ops.push(op);
                open.insert(op, deadline(now, timeout.unwrap_or(command_timeout)));
            }
            Step::Advance(jump) => {
                now = match jump {
                    Jump::By(by) => deadline(now, *by).unwrap_or_else(|| last_instant(now)),
                    Jump::ToEndMinus(before) => (last_instant(now) - *before).max(now),
                    Jump::ToNextDeadline => qmp.poll_timeout().unwrap_or(now),
                };
                qmp.handle_timeout(now);
            }
            Step::Reply(n) => {
                if let Some(op) = ops.get(*n) {
                    let reply = format!(r#"{{"return": {{}}, "id": {}}}"#, op.get() + 1);
                    qmp.handle_input(now, Input::Bytes(reply.as_bytes()));
                }
            }
            Step::Cancel(n) => {
                if let Some(op) = ops.get(*n) {
                    qmp.cancel(now, *op);
                }
            }
        }
        while let Some(output) = qmp.poll_output() {
            if let Output::Done { id, result } = output {
                let expected = open.remove(&id);
                prop_assert!(expected.is_some(), "{} completed twice, or is unknown", id);
                if result == Err(CommandError::Timeout) {
                    let due = expected.flatten();
                    prop_assert!(
                        due.is_some_and(|d| d <= now),
                        "{} timed out at {:?}, its deadline is {:?}",
                        id,
                        now,
                        due
                    );
                }
            }
        }
        if matches!(step, Step::Advance(_)) {
            let overdue: Vec<_> = open
                .iter()
                .filter(|(_, d)| d.is_some_and(|d| d <= now))
                .collect();
            prop_assert!(
                overdue.is_empty(),
                "past their deadline at {:?}: {:?}",
                now,
                overdue
            );
        }
        prop_assert_eq!(qmp.poll_timeout(), open.values().flatten().min().copied());
    }
    qmp.close(now);
    while let Some(output) = qmp.poll_output() {
        if let Output::Done { id, .. } = output {
            prop_assert!(
                open.remove(&id).is_some(),
                "{} completed twice, or is unknown",
                id
            );
        }
    }
    prop_assert!(open.is_empty(), "never completed: {:?}", open);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn timeouts_and_clock_jumps_from_the_whole_range_match_the_deadline_model(
        command_timeout in any_timeout(),
        start_before_end in proptest::option::of((0u64..20_000).prop_map(Duration::from_millis)),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        check_against_model(command_timeout, start_before_end, &steps)?;
    }
}
