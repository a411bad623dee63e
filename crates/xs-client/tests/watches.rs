//! Watches: the initial fire in either order around the ack, events between a request and
//! its reply, routing by token, and unwatch filtering.

mod common;

use common::Harness;
use xsio_xs_client::{Error, Response, WatchEvent};
use xsio_xs_wire::{ErrorKind, Reply, Request};

#[test]
fn initial_fire_after_the_ack_and_before_it() {
    let mut h = Harness::default();
    let a = h.client.watch(h.now, "/a", "ta");
    let b = h.client.watch(h.now, "/b", "tb");
    let wa = h.expect_request(Request::Watch {
        path: "/a".into(),
        token: "ta".into(),
    });
    let wb = h.next_request();
    // xenstored: ack then event.
    h.reply(&wa, Reply::Watch);
    h.event("/a", "ta");
    // Another daemon: event then ack.
    h.event("/b", "tb");
    h.reply(&wb, Reply::Watch);
    assert_eq!(h.result_of(a), &Ok(Response::Unit));
    assert_eq!(h.result_of(b), &Ok(Response::Unit));
    assert_eq!(
        h.seen.events,
        vec![
            WatchEvent {
                watch: a,
                path: "/a".into(),
                token: "ta".into()
            },
            WatchEvent {
                watch: b,
                path: "/b".into(),
                token: "tb".into()
            },
        ]
    );
}

#[test]
fn events_between_a_request_and_its_reply_go_to_their_watch() {
    let mut h = Harness::default();
    let w = h.acked_watch("/be", "be");
    let read = h.client.read(h.now, None, "/x");
    let req = h.next_request();
    // req_id 0 is also the id of a request: events are told apart by type, not id.
    h.event("/be/state", "be");
    h.reply(&req, Reply::Read("v".into()));
    assert_eq!(h.result_of(read), &Ok(Response::Value("v".into())));
    assert_eq!(
        h.seen.events,
        vec![WatchEvent {
            watch: w,
            path: "/be/state".into(),
            token: "be".into()
        }]
    );
    // An event for a token nobody registered is dropped.
    h.event("/other", "nobody");
    assert_eq!(h.seen.events.len(), 1);
}

#[test]
fn unwatch_stops_events_at_once() {
    let mut h = Harness::default();
    let w = h.acked_watch("/a", "t");
    let u = h.client.unwatch(h.now, w);
    let req = h.expect_request(Request::Unwatch {
        path: "/a".into(),
        token: "t".into(),
    });
    h.event("/a", "t"); // queued by the daemon before it saw the unwatch
    h.reply(&req, Reply::Unwatch);
    assert_eq!(h.result_of(u), &Ok(Response::Unit));
    assert!(h.seen.events.is_empty());
    let again = h.client.unwatch(h.now, w);
    h.drain();
    assert_eq!(h.result_of(again), &Err(Error::UnknownWatch(w)));
    // The token is free again.
    h.acked_watch("/a", "t");
}

#[test]
fn refused_and_duplicate_watches() {
    let mut h = Harness::default();
    let w = h.client.watch(h.now, "/a", "t");
    let dup = h.client.watch(h.now, "/b", "t");
    h.drain();
    assert_eq!(h.result_of(dup), &Err(Error::DuplicateToken("t".into())));
    h.answer(Reply::Error(ErrorKind::Eacces));
    assert_eq!(h.result_of(w), &Err(Error::Xs(ErrorKind::Eacces)));
    h.event("/a", "t");
    assert!(h.seen.events.is_empty(), "a refused watch gets no events");
    let bad = h.client.watch(h.now, "/a b", "x");
    h.drain();
    assert!(matches!(h.result_of(bad), Err(Error::InvalidPath { .. })));
    let special = h.client.watch(h.now, "@releaseDomain", "r");
    let req = h.expect_request(Request::Watch {
        path: "@releaseDomain".into(),
        token: "r".into(),
    });
    h.reply(&req, Reply::Watch);
    assert!(h.result_of(special).is_ok());
}

#[test]
fn reset_watches_forgets_them_all() {
    let mut h = Harness::default();
    let w = h.acked_watch("/a", "t");
    let r = h.client.reset_watches(h.now);
    let req = h.expect_request(Request::ResetWatches);
    h.reply(&req, Reply::ResetWatches);
    assert_eq!(h.result_of(r), &Ok(Response::Unit));
    h.event("/a", "t");
    assert!(h.seen.events.is_empty());
    let u = h.client.unwatch(h.now, w);
    h.drain();
    assert_eq!(h.result_of(u), &Err(Error::UnknownWatch(w)));
}
