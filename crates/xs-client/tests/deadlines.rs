//! Deadlines over the whole range of `Duration` and `Instant`: a request timeout too large to
//! represent means "no deadline" (never a panic), and every deadline that can be represented
//! fires exactly when it has passed, not before.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Harness;
use proptest::prelude::*;
use xsio_core::{OpId, deadline, last_instant};
use xsio_xs_client::{Config, Error, Response};
use xsio_xs_wire::Reply;

fn config(request_timeout: Option<Duration>) -> Config {
    let mut config = Config::default();
    config.request_timeout = request_timeout;
    config
}

#[test]
fn ops_with_a_huge_request_timeout_have_no_deadline_and_still_complete() {
    for huge in [Duration::MAX, Duration::from_secs(u64::MAX)] {
        let mut h = Harness::new(config(Some(huge)));
        let read = h.client.read(h.now, None, "/a");
        let txn = h.client.transact(h.now, Vec::new());
        let request = h.next_request();
        assert_eq!(h.client.poll_timeout(), None, "no deadline to wait for");
        // Even at the end of time nothing times out.
        h.now = last_instant(h.now);
        h.client.handle_timeout(h.now);
        h.drain();
        assert!(h.seen.done.is_empty(), "{:?}", h.seen.done);
        h.reply(&request, Reply::Read("v".into()));
        assert!(matches!(h.result_of(read), Ok(Response::Value(v)) if v == "v"));
        assert_eq!(h.client.ops_in_flight(), 1, "{txn} still waits");
    }
}

#[test]
fn near_the_end_of_time_a_small_timeout_overflows_to_no_deadline_and_others_still_fire() {
    let mut h = Harness::new(config(Some(Duration::from_secs(5))));
    let end = last_instant(h.now);
    h.now = end - Duration::from_secs(5);
    let fits = h.client.read(h.now, None, "/a");
    h.now = end - Duration::from_secs(4);
    let overflows = h.client.read(h.now, None, "/b");
    h.drain();
    assert_eq!(h.client.poll_timeout(), Some(end));
    h.now = end;
    h.client.handle_timeout(end);
    h.drain();
    assert!(matches!(h.result_of(fits), Err(Error::Timeout)));
    assert_eq!(h.client.poll_timeout(), None);
    h.close();
    assert!(matches!(h.result_of(overflows), Err(Error::ConnectionLost)));
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

#[derive(Clone, Debug)]
enum Step {
    Read,
    /// The clock moves on by this much (up to the end of time).
    AdvanceBy(Duration),
    /// The clock jumps to just before the end of time.
    ToEndMinus(Duration),
    /// The clock moves exactly to the client's next deadline, as a driver does.
    ToNextDeadline,
    /// The daemon answers the n-th request still unanswered.
    Reply(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Read),
        2 => (0u64..3_000).prop_map(|ms| Step::AdvanceBy(Duration::from_millis(ms))),
        1 => any_timeout().prop_map(Step::AdvanceBy),
        1 => (0u64..10_000).prop_map(|ms| Step::ToEndMinus(Duration::from_millis(ms))),
        2 => Just(Step::ToNextDeadline),
        2 => (0usize..8).prop_map(Step::Reply),
    ]
}

/// Runs `steps` against a model: an op's deadline is `deadline(started_at, request_timeout)`
/// (`None` when that overflows), and it times out exactly once the clock has reached it.
fn check_against_model(
    request_timeout: Option<Duration>,
    start_before_end: Option<Duration>,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let mut h = Harness::new(config(request_timeout));
    if let Some(before) = start_before_end {
        h.now = last_instant(h.now) - before;
    }
    let mut open: BTreeMap<OpId, Option<Instant>> = BTreeMap::new();
    let mut seen_done = 0;
    for step in steps {
        let moved = match step {
            Step::Read => {
                let op = h.client.read(h.now, None, "/a");
                open.insert(op, request_timeout.and_then(|t| deadline(h.now, t)));
                h.drain();
                false
            }
            Step::AdvanceBy(by) => {
                h.now = deadline(h.now, *by).unwrap_or_else(|| last_instant(h.now));
                true
            }
            Step::ToEndMinus(before) => {
                h.now = (last_instant(h.now) - *before).max(h.now);
                true
            }
            Step::ToNextDeadline => {
                h.now = h.client.poll_timeout().unwrap_or(h.now);
                true
            }
            Step::Reply(n) => {
                if !h.inbox.is_empty() {
                    let request = h.inbox.remove(n % h.inbox.len()).expect("in range");
                    h.reply(&request, Reply::Read("v".into()));
                }
                false
            }
        };
        if moved {
            h.client.handle_timeout(h.now);
            h.drain();
        }
        for (id, result) in &h.seen.done[seen_done..] {
            let expected = open.remove(id);
            prop_assert!(expected.is_some(), "{} completed twice, or is unknown", id);
            if matches!(result, Err(Error::Timeout)) {
                let due = expected.flatten();
                prop_assert!(
                    due.is_some_and(|d| d <= h.now),
                    "{} timed out at {:?}, its deadline is {:?}",
                    id,
                    h.now,
                    due
                );
            }
        }
        seen_done = h.seen.done.len();
        if moved {
            let overdue: Vec<_> = open
                .iter()
                .filter(|(_, d)| d.is_some_and(|d| d <= h.now))
                .collect();
            prop_assert!(
                overdue.is_empty(),
                "past their deadline at {:?}: {:?}",
                h.now,
                overdue
            );
        }
        prop_assert_eq!(
            h.client.poll_timeout(),
            open.values().flatten().min().copied()
        );
    }
    h.close();
    for (id, _) in &h.seen.done[seen_done..] {
        prop_assert!(
            open.remove(id).is_some(),
            "{} completed twice, or is unknown",
            id
        );
    }
    prop_assert!(open.is_empty(), "never completed: {:?}", open);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn request_timeouts_and_clock_jumps_from_the_whole_range_match_the_deadline_model(
        request_timeout in proptest::option::of(any_timeout()),
        start_before_end in proptest::option::of((0u64..20_000).prop_map(Duration::from_millis)),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        check_against_model(request_timeout, start_before_end, &steps)?;
    }
}
