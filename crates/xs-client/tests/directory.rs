//! Directory listings: one DIRECTORY, or DIRECTORY_PART chunks after E2BIG.

mod common;

use common::Harness;
use xsio_core::OpId;
use xsio_xs_client::{Error, Response};
use xsio_xs_wire::{ErrorKind, Packet, Reply, Request};

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// Starts a listing of `/big` and answers its DIRECTORY with E2BIG: the client falls back to
/// chunks.
fn big_listing(h: &mut Harness) -> OpId {
    let op = h.client.directory(h.now, None, "/big");
    let req = h.next_request();
    h.reply(&req, Reply::Error(ErrorKind::E2big));
    op
}

/// The next request, checked to be a DIRECTORY_PART of `/big` at `offset`.
fn expect_part(h: &mut Harness, offset: u32) -> Packet<Request> {
    let part = h.next_request();
    assert_eq!(
        part.body,
        Request::DirectoryPart {
            path: "/big".into(),
            offset
        }
    );
    part
}

/// A DIRECTORY_PART reply.
fn chunk(generation: u64, children: &[&str], complete: bool) -> Reply {
    Reply::DirectoryPart {
        generation,
        children: names(children),
        complete,
    }
}

#[test]
fn small_listing_in_one_reply() {
    let mut h = Harness::default();
    let op = h.client.directory(h.now, None, "/a");
    let req = h.next_request();
    h.reply(&req, Reply::Directory(names(&["x", "y"])));
    assert_eq!(h.result_of(op), &Ok(Response::Names(names(&["x", "y"]))));
}

#[test]
fn e2big_falls_back_to_chunks_with_offsets() {
    let mut h = Harness::default();
    let op = big_listing(&mut h);
    let part = expect_part(&mut h, 0);
    h.reply(&part, chunk(4, &["aa", "b"], false));
    let part = expect_part(&mut h, 5);
    h.reply(&part, chunk(4, &["c"], true));
    assert_eq!(
        h.result_of(op),
        &Ok(Response::Names(names(&["aa", "b", "c"])))
    );
}

#[test]
fn a_generation_change_restarts_from_zero() {
    let mut h = Harness::default();
    let op = big_listing(&mut h);
    let part = h.next_request();
    h.reply(&part, chunk(1, &["a"], false));
    let part = h.next_request();
    h.reply(&part, chunk(2, &["z"], true));
    let part = expect_part(&mut h, 0);
    h.reply(&part, chunk(2, &["b", "z"], true));
    assert_eq!(h.result_of(op), &Ok(Response::Names(names(&["b", "z"]))));
}

#[test]
fn enosys_on_chunks_is_e2big_and_empty_chunks_are_refused() {
    let mut h = Harness::default();
    let op = big_listing(&mut h);
    let part = h.next_request();
    h.reply(&part, Reply::Error(ErrorKind::Enosys));
    assert_eq!(h.result_of(op), &Err(Error::Xs(ErrorKind::E2big)));

    let op = big_listing(&mut h);
    let part = h.next_request();
    h.reply(&part, chunk(1, &[], false));
    assert!(matches!(h.result_of(op), Err(Error::Protocol(_))));
}
