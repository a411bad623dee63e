//! Connection loss, timeouts, malformed replies: every operation still completes once.

mod common;

use std::time::Duration;

use common::Harness;
use xsio_core::Input;
use xsio_xs_client::{CloseReason, Config, Error, Response, XsValue};
use xsio_xs_wire::{ErrorKind, Header, Reply, Request};

#[test]
fn connection_loss_fails_every_pending_op_once() {
    let mut h = Harness::default();
    let ops = vec![
        h.client.read(h.now, None, "/a"),
        h.client.watch(h.now, "/w", "t"),
        h.client.transact(h.now, vec![]),
        h.client.directory(h.now, None, "/d"),
    ];
    h.drain();
    assert_eq!(h.inbox.len(), 4);
    h.close();
    for op in &ops {
        assert_eq!(h.result_of(*op), &Err(Error::ConnectionLost));
    }
    assert!(h.client.is_closed());
    assert_eq!(h.client.poll_timeout(), None);
    let late = h.client.read(h.now, None, "/a");
    h.drain();
    assert_eq!(h.result_of(late), &Err(Error::NotConnected));
    h.close(); // a second close changes nothing
    assert_eq!(h.seen.done.len(), 5);
    // The end is reported once, after every pending operation completed.
    assert_eq!(h.seen.closed, [CloseReason::PeerClosed]);
    assert_eq!(
        h.seen.done_after_close, 1,
        "only the late read, refused after the end"
    );
}

#[test]
fn the_caller_can_close() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a");
    h.drain();
    h.client.close(h.now);
    h.drain();
    assert_eq!(h.result_of(a), &Err(Error::ConnectionLost));
    assert_eq!(h.seen.closed, [CloseReason::ClosedByCaller]);
    assert_eq!(h.seen.done_after_close, 0);
    h.client.close(h.now);
    h.drain();
    assert_eq!(h.seen.closed.len(), 1, "a second close changes nothing");
}

#[test]
fn timeouts_fail_the_op_and_late_replies_are_dropped() {
    let mut config = Config::default();
    config.request_timeout = Some(Duration::from_secs(2));
    let mut h = Harness::new(config);
    let op = h.client.read(h.now, None, "/a");
    let req = h.next_request();
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(2))
    );
    h.advance(Duration::from_millis(1999));
    assert!(h.seen.done.is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.result_of(op), &Err(Error::Timeout));
    h.reply(&req, Reply::Read("late".into()));
    assert_eq!(h.seen.done.len(), 1);
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn replies_in_any_order_reach_their_ops() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a");
    let b = h.client.read(h.now, None, "/b");
    let c = h.client.get_domain_path(h.now, 7);
    let ra = h.next_request();
    let rb = h.next_request();
    let rc = h.next_request();
    assert_eq!((ra.req_id, rb.req_id, rc.req_id), (0, 1, 2));
    h.reply(&rc, Reply::GetDomainPath("/local/domain/7".into()));
    h.reply(&rb, Reply::Read("B".into()));
    h.reply(&ra, Reply::Error(ErrorKind::Enoent));
    assert_eq!(h.result_of(a), &Err(Error::Xs(ErrorKind::Enoent)));
    assert_eq!(h.result_of(b), &Ok(Response::Value("B".into())));
    assert_eq!(
        h.result_of(c),
        &Ok(Response::Path("/local/domain/7".into()))
    );
}

#[test]
fn mismatched_and_malformed_replies_fail_only_their_op() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a");
    let b = h.client.write(h.now, None, "/b", "1");
    let ra = h.next_request();
    let rb = h.next_request();
    h.reply(&ra, Reply::Write); // a WRITE reply to a READ
    assert!(matches!(h.result_of(a), Err(Error::Protocol(_))));
    // "OK" without its NUL.
    h.feed_raw(11, rb.req_id, b"OK");
    assert!(matches!(h.result_of(b), Err(Error::Protocol(_))));
    assert!(!h.client.is_closed());
}

#[test]
fn an_oversize_frame_breaks_the_connection() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a");
    h.drain();
    let header = Header {
        msg_type: 2,
        req_id: 0,
        tx_id: 0,
        len: 5000,
    }
    .to_bytes();
    h.client
        .handle_input(h.now, Input::<std::os::fd::OwnedFd>::Bytes(&header));
    h.drain();
    assert_eq!(h.result_of(a), &Err(Error::ConnectionLost));
    assert!(h.client.is_closed());
    // The end is reported once, after the failed operation, with its reason.
    assert!(
        matches!(h.seen.closed[..], [CloseReason::Protocol(_)]),
        "{:?}",
        h.seen.closed
    );
    assert_eq!(h.seen.done_after_close, 0);
    // Bytes after the end change nothing.
    h.client
        .handle_input(h.now, Input::<std::os::fd::OwnedFd>::Bytes(&header));
    h.drain();
    assert_eq!(h.seen.closed.len(), 1);
}

#[test]
fn bad_requests_fail_at_once_without_sending() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a//b");
    let b = h.client.write(h.now, None, "/a", vec![0u8; 5000]);
    h.drain();
    assert!(matches!(h.result_of(a), Err(Error::InvalidPath { .. })));
    assert!(matches!(h.result_of(b), Err(Error::Encode(_))));
    assert!(h.inbox.is_empty());
}

#[test]
fn in_flight_limit() {
    let mut config = Config::default();
    config.max_in_flight = 2;
    let mut h = Harness::new(config);
    let _a = h.client.read(h.now, None, "/a");
    let _b = h.client.read(h.now, None, "/b");
    let c = h.client.read(h.now, None, "/c");
    h.drain();
    assert_eq!(h.result_of(c), &Err(Error::TooManyInFlight));
    assert_eq!(h.inbox.len(), 2);
}

#[test]
fn helpers_exists_rm_tree_and_typed_values() {
    let mut h = Harness::default();
    let e = h.client.exists(h.now, None, "/nope");
    let req = h.next_request();
    assert_eq!(
        req.body,
        Request::Read {
            path: "/nope".into()
        }
    );
    h.reply(&req, Reply::Error(ErrorKind::Enoent));
    assert_eq!(h.result_of(e), &Ok(Response::Bool(false)));
    let r = h.client.rm_tree(h.now, None, "/gone");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::Enoent));
    assert_eq!(h.result_of(r), &Ok(Response::Unit));
    let s = h.client.set(h.now, None, "/n", &-5i64);
    let req = h.next_request();
    assert_eq!(
        req.body,
        Request::Write {
            path: "/n".into(),
            value: "-5".into()
        }
    );
    h.reply(&req, Reply::Write);
    assert!(h.result_of(s).is_ok());
    assert_eq!(Response::Value("1".into()).parse::<bool>(), Ok(true));
    assert_eq!(Response::Value("4096".into()).parse::<u32>(), Ok(4096));
    assert!(Response::Value("x".into()).parse::<u32>().is_err());
    assert!(Response::Unit.parse::<u32>().is_err());
    assert_eq!(u32::from_xs(b"4294967295"), Ok(u32::MAX));
    assert!(u32::from_xs(b"-1").is_err());
    assert!(u32::from_xs(b"").is_err());
}

#[test]
fn an_unknown_error_name_reads_as_einval_like_libxenstore() {
    let mut h = Harness::default();
    let a = h.client.read(h.now, None, "/a");
    let req = h.next_request();
    h.feed_raw(16, req.req_id, b"EWEIRD\0");
    assert_eq!(h.result_of(a), &Err(Error::Xs(ErrorKind::Einval)));
}
