//! Streams of messages fed in every possible split: the frames that come out do not depend
//! on how the bytes were cut.

mod common;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use xsio_xs_wire::Body;
use xsio_xs_wire::{Frame, FrameDecoder, Packet, Reply, Request};

fn frames_of(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::default();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push(frame);
        }
    }
    assert!(decoder.is_at_boundary());
    out
}

fn wire(requests: &[Request], replies: &[Reply]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (i, r) in requests.iter().enumerate() {
        let _ = Packet::new(i as u32, 0, r.clone()).encode(&mut out);
    }
    for (i, r) in replies.iter().enumerate() {
        let _ = Packet::new(i as u32, 0, r.clone()).encode(&mut out);
    }
    out.to_vec()
}

#[test]
fn every_split_point_of_every_type() {
    // One message of each request and reply type, and the whole stream at once.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut requests: Vec<Request> = (0..400)
        .map(|_| common::request().new_tree(&mut runner).unwrap().current())
        .collect();
    requests.sort_by_key(|r| r.msg_type());
    requests.dedup_by_key(|r| r.msg_type());
    assert_eq!(requests.len(), 20, "one request of every type");
    let mut replies: Vec<Reply> = (0..400)
        .map(|_| common::reply().new_tree(&mut runner).unwrap().current())
        .collect();
    replies.sort_by_key(|r| r.msg_type());
    replies.dedup_by_key(|r| r.msg_type());
    assert_eq!(replies.len(), 22, "one reply of every type");
    let bytes = wire(&requests, &replies);
    let whole = frames_of(&[&bytes]);
    assert_eq!(whole.len(), requests.len() + replies.len());
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(frames_of(&[a, b]), whole, "split at {at}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frames_of(&singles), whole);
}

proptest! {
    #[test]
    fn random_cuts(requests in proptest::collection::vec(common::request(), 1..8),
                   replies in proptest::collection::vec(common::reply(), 0..8),
                   mut cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let bytes = wire(&requests, &replies);
        let whole = frames_of(&[&bytes]);
        let mut points: Vec<usize> = cuts.drain(..).map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        prop_assert_eq!(frames_of(&chunks), whole);
    }
}
