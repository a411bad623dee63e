//! Directory listings: one DIRECTORY, or DIRECTORY_PART chunks after E2BIG.

mod common;

use common::Harness;
use xsio_xs_client::{Config, Error, Response};
use xsio_xs_wire::{ErrorKind, Reply, Request};

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn small_listing_in_one_reply() {
    let mut h = Harness::new(Config::default());
    let op = h.client.directory(h.now, None, "/a");
    let req = h.next_request();
    h.reply(&req, Reply::Directory(names(&["x", "y"])));
    assert_eq!(h.result_of(op), &Ok(Response::Names(names(&["x", "y"]))));
}

#[test]
fn e2big_falls_back_to_chunks_with_offsets() {
    let mut h = Harness::new(Config::default());
    let op = h.client.directory(h.now, None, "/big");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::E2big));
    let part = h.next_request();
    assert_eq!(
        part.body,
        Request::DirectoryPart {
            path: "/big".into(),
            offset: 0
        }
    );
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 4,
            children: names(&["aa", "b"]),
            complete: false,
        },
    );
    let part = h.next_request();
    assert_eq!(
        part.body,
        Request::DirectoryPart {
            path: "/big".into(),
            offset: 5
        }
    );
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 4,
            children: names(&["c"]),
            complete: true,
        },
    );
    assert_eq!(
        h.result_of(op),
        &Ok(Response::Names(names(&["aa", "b", "c"])))
    );
}

#[test]
fn a_generation_change_restarts_from_zero() {
    let mut h = Harness::new(Config::default());
    let op = h.client.directory(h.now, None, "/big");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::E2big));
    let part = h.next_request();
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 1,
            children: names(&["a"]),
            complete: false,
        },
    );
    let part = h.next_request();
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 2,
            children: names(&["z"]),
            complete: true,
        },
    );
    let part = h.next_request();
    assert_eq!(
        part.body,
        Request::DirectoryPart {
            path: "/big".into(),
            offset: 0
        }
    );
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 2,
            children: names(&["b", "z"]),
            complete: true,
        },
    );
    assert_eq!(h.result_of(op), &Ok(Response::Names(names(&["b", "z"]))));
}

#[test]
fn enosys_on_chunks_is_e2big_and_empty_chunks_are_refused() {
    let mut h = Harness::new(Config::default());
    let op = h.client.directory(h.now, None, "/big");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::E2big));
    let part = h.next_request();
    h.reply(&part, Reply::Error(ErrorKind::Enosys));
    assert_eq!(h.result_of(op), &Err(Error::Xs(ErrorKind::E2big)));

    let op = h.client.directory(h.now, None, "/big");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::E2big));
    let part = h.next_request();
    h.reply(
        &part,
        Reply::DirectoryPart {
            generation: 1,
            children: vec![],
            complete: false,
        },
    );
    assert!(matches!(h.result_of(op), Err(Error::Protocol(_))));
}
