//! Every message type, both directions: typed → bytes → typed is the identity, and the
//! header describes the payload.

mod common;

use bytes::BytesMut;
use proptest::prelude::*;
use xsio_xs_wire::{
    Body, FrameDecoder, HEADER_LEN, Packet, Reply, Request, XENSTORE_PAYLOAD_MAX, parse_header,
};

fn round_trip<B: Body + PartialEq + std::fmt::Debug + Clone>(packet: Packet<B>) {
    let Ok(bytes) = packet.to_bytes() else {
        // Only an oversize payload may fail, and then nothing is written.
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(packet.encode(&mut out).is_err());
        assert_eq!(&out[..], b"keep");
        return;
    };
    let header = parse_header(&bytes).unwrap();
    assert_eq!(header.len as usize, bytes.len() - HEADER_LEN);
    assert!(header.len as usize <= XENSTORE_PAYLOAD_MAX);
    assert_eq!(header.msg_type, packet.body.msg_type().as_u32());
    assert_eq!((header.req_id, header.tx_id), (packet.req_id, packet.tx_id));
    let mut decoder = FrameDecoder::default();
    decoder.feed(&bytes);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert!(decoder.is_at_boundary());
    let decoded = Packet::<B>::decode(&frame).unwrap();
    assert_eq!(decoded, packet);
    // And back to the same bytes.
    assert_eq!(decoded.to_bytes().unwrap(), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn requests_round_trip(req_id: u32, tx_id: u32, body in common::request()) {
        round_trip(Packet::new(req_id, tx_id, body));
    }

    #[test]
    fn replies_round_trip(req_id: u32, tx_id: u32, body in common::reply()) {
        round_trip(Packet::new(req_id, tx_id, body));
    }

    /// Any payload that decodes re-encodes to the same bytes (the decoder is canonical),
    /// except the two types whose payload daemons ignore.
    #[test]
    fn decodable_bytes_re_encode_identically(msg_type in 0u32..30, payload in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'1'), Just(b'T'), Just(b'O'), Just(b'K'), Just(b'r'), any::<u8>()], 0..24)) {
        let header = xsio_xs_wire::Header { msg_type, req_id: 9, tx_id: 1, len: payload.len() as u32 };
        let frame = xsio_xs_wire::Frame { header, payload: payload.clone().into() };
        if let Ok(request) = Packet::<Request>::decode(&frame) {
            if !matches!(request.body, Request::TransactionStart | Request::ResetWatches | Request::SetPerms { .. }) {
                prop_assert_eq!(request.to_bytes().unwrap(), frame.to_bytes());
            }
        }
        if let Ok(reply) = Packet::<Reply>::decode(&frame) {
            if !matches!(reply.body, Reply::GetPerms(_)) {
                prop_assert_eq!(reply.to_bytes().unwrap(), frame.to_bytes());
            }
        }
    }
}
