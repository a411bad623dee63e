//! Any byte stream, cut anywhere: framing and typed decoding never panic, frames do not
//! depend on the cut, and whatever decodes re-encodes to a frame that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsio_xs_wire::{Frame, FrameDecoder, Packet, Reply, Request};

fn frames(chunks: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut decoder = FrameDecoder::default();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fn check<B: xsio_xs_wire::Body + PartialEq + std::fmt::Debug>(frame: &Frame) {
    if let Ok(packet) = Packet::<B>::decode(frame) {
        let bytes = packet.to_bytes().expect("a decoded packet re-encodes");
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes);
        let again = decoder.next_frame().unwrap().unwrap();
        assert_eq!(Packet::<B>::decode(&again).unwrap(), packet);
    }
}

fuzz_target!(|data: &[u8]| {
    let (whole, failed) = frames(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    let (split, split_failed) = frames(&[a, b]);
    assert_eq!(whole, split);
    assert_eq!(failed, split_failed);
    for frame in &whole {
        check::<Request>(frame);
        check::<Reply>(frame);
    }
});
