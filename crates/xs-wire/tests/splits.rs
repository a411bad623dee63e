//! Streams of messages fed in every possible split: the frames that come out do not depend
//! on how the bytes were cut.

mod common;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
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
    encode_numbered(&mut out, requests);
    encode_numbered(&mut out, replies);
    out.to_vec()
}

/// Appends `bodies` as packets with req_ids from 0; what cannot be encoded is left out.
fn encode_numbered<B: Body + Clone>(out: &mut BytesMut, bodies: &[B]) {
    for (i, body) in bodies.iter().enumerate() {
        let _ = Packet::new(i as u32, 0, body.clone()).encode(out);
    }
}

/// One value of each message type among 400 drawn from `strategy`, by type.
fn one_of_each_type<B: Body>(
    runner: &mut TestRunner,
    strategy: impl Strategy<Value = B>,
) -> Vec<B> {
    let mut bodies: Vec<B> = (0..400)
        .map(|_| strategy.new_tree(runner).unwrap().current())
        .collect();
    bodies.sort_by_key(|b| b.msg_type());
    bodies.dedup_by_key(|b| b.msg_type());
    bodies
}

#[test]
fn every_split_point_of_every_type() {
    // One message of each request and reply type, and the whole stream at once.
    let mut runner = TestRunner::deterministic();
    let requests = one_of_each_type(&mut runner, common::request());
    assert_eq!(requests.len(), 20, "one request of every type");
    let replies = one_of_each_type(&mut runner, common::reply());
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
