//! A typed message with its ids: the unit both sides encode and decode.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::Frame;
use crate::header::{HEADER_LEN, Header, MsgType};
use crate::payload::{EncodeError, PayloadError, check_len};

/// A message body: [`Request`](crate::Request) (client → daemon) or
/// [`Reply`](crate::Reply) (daemon → client).
///
/// The same wire type means different payloads in the two directions (a `READ` request
/// carries a path, its reply the value), so the direction is chosen by the body type.
pub trait Body: Sized {
    /// The wire type of this message.
    fn msg_type(&self) -> MsgType;
    /// Appends the payload bytes (no header).
    fn encode_payload(&self, out: &mut BytesMut) -> Result<(), EncodeError>;
    /// Reads a payload of type `msg_type`. Values are slices of `payload`, not copies.
    fn decode_payload(msg_type: u32, payload: &Bytes) -> Result<Self, PayloadError>;
}

/// A message with the ids from its header.
///
/// ```
/// use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};
///
/// // A client writes `/a = b` (exactly what Xen's xenstore-write sends, req_id aside).
/// let request = Packet::new(7, 0, Request::Write { path: "/a".into(), value: "b".into() });
/// let wire = request.to_bytes()?;
/// assert_eq!(&wire[..], b"\x0b\0\0\0\x07\0\0\0\0\0\0\0\x04\0\0\0/a\0b");
///
/// // The daemon frames and decodes it...
/// let mut decoder = FrameDecoder::default();
/// decoder.feed(&wire);
/// let frame = decoder.next_frame()?.expect("a whole frame");
/// let received = Packet::<Request>::decode(&frame)?;
/// assert_eq!(received, request);
///
/// // ...and answers with the same ids.
/// let reply = received.reply(Reply::Write).to_bytes()?;
/// assert_eq!(&reply[..], b"\x0b\0\0\0\x07\0\0\0\0\0\0\0\x03\0\0\0OK\0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<B> {
    /// The request id (chosen by the client, echoed by the daemon, 0 in watch events).
    pub req_id: u32,
    /// The transaction id (0 for none).
    pub tx_id: u32,
    /// The typed message.
    pub body: B,
}

impl<B: Body> Packet<B> {
    /// A packet.
    pub fn new(req_id: u32, tx_id: u32, body: B) -> Self {
        Packet {
            req_id,
            tx_id,
            body,
        }
    }

    /// Decodes a frame's payload according to its type.
    pub fn decode(frame: &Frame) -> Result<Self, PayloadError> {
        Ok(Packet {
            req_id: frame.header.req_id,
            tx_id: frame.header.tx_id,
            body: B::decode_payload(frame.header.msg_type, &frame.payload)?,
        })
    }

    /// Appends header and payload to `out`. On error `out` is left as it was.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_bytes(0, HEADER_LEN);
        let result = self.body.encode_payload(out).and_then(|()| {
            let len = out.len() - start - HEADER_LEN;
            check_len(len)?;
            Ok(len)
        });
        match result {
            Ok(len) => {
                let header = Header {
                    msg_type: self.body.msg_type().as_u32(),
                    req_id: self.req_id,
                    tx_id: self.tx_id,
                    // check_len bounds len by the payload limit, far below u32::MAX.
                    len: len as u32,
                };
                out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
                Ok(())
            }
            Err(err) => {
                out.truncate(start);
                Err(err)
            }
        }
    }

    /// The wire bytes of this packet.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// A packet answering this one: same `req_id` and `tx_id`, as every daemon reply.
    pub fn reply<R: Body>(&self, body: R) -> Packet<R> {
        Packet {
            req_id: self.req_id,
            tx_id: self.tx_id,
            body,
        }
    }
}
