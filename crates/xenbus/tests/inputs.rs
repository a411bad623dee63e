//! Single-machine behaviours the model checker does not reach: bad replies, garbage values,
//! timeouts, a missing node.

use std::time::{Duration, Instant};

use xsio_core::OpId;
use xsio_ops::{Answer, InputError, Op, Output, Reply, Request, XsOp};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode};
use xsio_xenbus::{
    Backend, BackendEvent, Frontend, FrontendEvent, StateWaiter, WaitError, WaitEvent,
    WaiterConfig, XenbusState,
};

#[allow(clippy::disallowed_methods)] // the test's epoch; later times derive from it
fn epoch() -> Instant {
    Instant::now()
}

fn disk() -> BlockDevice {
    BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        "/img",
        Mode::ReadWrite,
    )
}

fn drain<E>(next: impl FnMut() -> Option<Output<E>>) -> (Vec<Request>, Vec<E>) {
    let mut requests = Vec::new();
    let mut events = Vec::new();
    let mut next = next;
    while let Some(out) = next() {
        match out {
            Output::Request(r) => requests.push(r),
            Output::Event(e) => events.push(e),
        }
    }
    (requests, events)
}

/// Starts a backend and answers its start-up requests; returns the frontend-state watch token.
fn started_backend(now: Instant) -> (Backend, String) {
    let dev = disk();
    let mut backend = Backend::new(dev.backend_config(dev.areas(0, 1)), now);
    let (requests, _) = drain(|| backend.poll_output());
    let mut token = String::new();
    for r in requests {
        let reply = match &r.op {
            Op::Xs(XsOp::Watch { token: t, path }) => {
                if path.ends_with("device/vbd/51712/state") {
                    token = t.clone();
                }
                Reply::Done
            }
            Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
            other => panic!("unexpected start-up request {other:?}"),
        };
        backend
            .handle_reply(now, Answer::new(r.id, Ok(reply)))
            .unwrap();
    }
    (backend, token)
}

#[test]
fn unknown_and_wrong_replies_are_typed_errors() {
    let now = epoch();
    let (mut backend, token) = started_backend(now);
    assert_eq!(
        backend.handle_reply(now, Answer::new(OpId::from_raw(999), Ok(Reply::Done))),
        Err(InputError::UnknownOp(OpId::from_raw(999)))
    );
    backend.handle_watch(now, "/x", &token);
    let (requests, _) = drain(|| backend.poll_output());
    let read = &requests[0];
    assert!(matches!(
        backend.handle_reply(now, Answer::new(read.id, Ok(Reply::Committed))),
        Err(InputError::WrongReply { .. })
    ));
    let (_, events) = drain(|| backend.poll_output());
    assert!(matches!(events[0], BackendEvent::Failed(_)));
    assert!(backend.is_stopped());
}

#[test]
fn garbage_frontend_state_changes_nothing() {
    let now = epoch();
    let (mut backend, token) = started_backend(now);
    for garbage in ["", "9", "connected", "-1"] {
        backend.handle_watch(now, "/x", &token);
        let (requests, _) = drain(|| backend.poll_output());
        backend
            .handle_reply(
                now,
                Answer::new(requests[0].id, Ok(Reply::Value(Some(garbage.into())))),
            )
            .unwrap();
        let (requests, events) = drain(|| backend.poll_output());
        assert!(requests.is_empty(), "{garbage:?}");
        assert!(
            matches!(events[..], [BackendEvent::BadFrontendState(_)]),
            "{garbage:?}"
        );
        assert_eq!(backend.state(), XenbusState::InitWait);
    }
}

#[test]
fn frontend_close_gives_up_on_a_silent_backend() {
    let now = epoch();
    let dev = disk();
    let transport = BlockTransport {
        ring_ref: 8,
        event_channel: 5,
        protocol: None,
    };
    let mut frontend = Frontend::new(dev.frontend_config(dev.areas(0, 1), &transport), now);
    let (requests, _) = drain(|| frontend.poll_output());
    let Op::Xs(XsOp::Watch { token, .. }) = &requests[0].op else {
        panic!()
    };
    let token = token.clone();
    frontend
        .handle_reply(now, Answer::new(requests[0].id, Ok(Reply::Done)))
        .unwrap();
    // Backend Connected: the frontend publishes, reads the disk info, connects.
    frontend.handle_watch(now, "/x", &token);
    let (requests, _) = drain(|| frontend.poll_output());
    frontend
        .handle_reply(
            now,
            Answer::new(requests[0].id, Ok(Reply::Value(Some("4".into())))),
        )
        .unwrap();
    let (requests, _) = drain(|| frontend.poll_output());
    let values = ["ignored", "2048", "0", "512"];
    for (r, value) in requests.iter().zip(values) {
        let reply = match r.op {
            Op::Xs(XsOp::Transaction(_)) => Reply::Committed,
            _ => Reply::Value(Some(value.into())),
        };
        frontend
            .handle_reply(now, Answer::new(r.id, Ok(reply)))
            .unwrap();
    }
    let (_, events) = drain(|| frontend.poll_output());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, FrontendEvent::Connected { .. }))
    );
    assert_eq!(frontend.state(), XenbusState::Connected);

    frontend.close(now);
    assert_eq!(frontend.state(), XenbusState::Closing);
    let deadline = frontend.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(5));
    frontend.handle_timeout(now + Duration::from_secs(4));
    assert_eq!(frontend.state(), XenbusState::Closing);
    frontend.handle_timeout(deadline);
    assert_eq!(frontend.state(), XenbusState::Closed);
    assert_eq!(frontend.poll_timeout(), None);
}

/// libxl's devstate wait fails when the node it waits on is removed; so does the waiter
/// (it used to wait on to its timeout): a node seen and then gone ends the wait, typed.
#[test]
fn waiter_ends_when_the_node_goes_away() {
    let now = epoch();
    let config = |wanted| WaiterConfig {
        path: "/be/state".into(),
        wanted,
        timeout: Duration::from_secs(10),
        token: "t".into(),
    };
    for (wanted, expected) in [
        (
            vec![XenbusState::Closed],
            Err(WaitError::Vanished {
                last: Some(XenbusState::Closing),
            }),
        ),
        (
            vec![XenbusState::Closed, XenbusState::Unknown],
            Ok(XenbusState::Unknown),
        ),
    ] {
        let mut waiter = StateWaiter::new(config(wanted), now);
        let (requests, _) = drain(|| waiter.poll_output());
        waiter
            .handle_reply(now, Answer::new(requests[0].id, Ok(Reply::Done)))
            .unwrap();
        for value in [Some("5"), None] {
            waiter.handle_watch(now, "/be/state", "t");
            let (reads, _) = drain(|| waiter.poll_output());
            let answer = Ok(Reply::Value(value.map(str::to_owned)));
            waiter
                .handle_reply(now, Answer::new(reads[0].id, answer))
                .unwrap();
        }
        assert_eq!(waiter.result(), Some(&expected));
        assert_eq!(waiter.poll_timeout(), None);
    }
}

#[test]
fn waiter_waits_through_a_missing_node_and_times_out() {
    let now = epoch();
    let mut waiter = StateWaiter::new(
        WaiterConfig {
            path: "/be/state".into(),
            wanted: vec![XenbusState::Closed],
            timeout: Duration::from_secs(10),
            token: "t".into(),
        },
        now,
    );
    let (requests, _) = drain(|| waiter.poll_output());
    waiter
        .handle_reply(now, Answer::new(requests[0].id, Ok(Reply::Done)))
        .unwrap();
    let mut events = Vec::new();
    for value in [None, Some("5"), Some("bogus"), Some("5")] {
        waiter.handle_watch(now, "/be/state", "t");
        waiter.handle_watch(now, "/be/state", "other-token");
        let (requests, seen) = drain(|| waiter.poll_output());
        events.extend(seen);
        assert_eq!(requests.len(), 1);
        waiter
            .handle_reply(
                now,
                Answer::new(requests[0].id, Ok(Reply::Value(value.map(Into::into)))),
            )
            .unwrap();
    }
    events.extend(drain(|| waiter.poll_output()).1);
    assert!(matches!(
        events[0],
        WaitEvent::StillWaiting(XenbusState::Unknown)
    ));
    assert!(matches!(events[2], WaitEvent::Garbage(_)));
    assert!(!waiter.is_done());
    waiter.handle_timeout(now + Duration::from_secs(10));
    let (requests, events) = drain(|| waiter.poll_output());
    assert_eq!(
        events,
        [WaitEvent::Done(Err(WaitError::TimedOut {
            last: Some(XenbusState::Closing)
        }))]
    );
    assert!(matches!(requests[0].op, Op::Xs(XsOp::Unwatch { .. })));
    // Done exactly once: a late value changes nothing.
    waiter.handle_timeout(now + Duration::from_secs(20));
    assert_eq!(waiter.poll_output(), None);
}

#[test]
fn an_unreadable_other_end_counts_as_gone() {
    // A guest reading a destroyed backend directory gets EACCES, not ENOENT.
    let now = epoch();
    let (mut backend, token) = started_backend(now);
    backend.handle_watch(now, "/x", &token);
    let (requests, _) = drain(|| backend.poll_output());
    let denied = xsio_ops::OpError::new(xsio_ops::OpErrorKind::Access, "EACCES");
    backend
        .handle_reply(now, Answer::new(requests[0].id, Err(denied)))
        .unwrap();
    let (_, events) = drain(|| backend.poll_output());
    assert!(
        events.contains(&BackendEvent::FrontendState(XenbusState::Unknown)),
        "{events:?}"
    );
    assert!(events.contains(&BackendEvent::Finished));
    assert_eq!(backend.state(), XenbusState::Closed);
}
