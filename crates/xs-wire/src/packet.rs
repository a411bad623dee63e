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
    /// Reads a payload as Xen's C daemon reads it (see
    /// [`Packet::decode_lenient`]); the same as [`Body::decode_payload`] unless a body type
    /// says otherwise.
    fn decode_payload_lenient(msg_type: u32, payload: &Bytes) -> Result<Self, PayloadError> {
        Self::decode_payload(msg_type, payload)
    }
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

    /// Decodes a frame's payload as Xen's C daemon (4.17) reads it, which is what a daemon
    /// must do to accept whatever Xen's clients send. It differs from [`Packet::decode`]
    /// only in numbers and argument counts, for [`Request`](crate::Request) bodies:
    /// - domids, event channels and offsets follow C's `atoi`/`strtoul(.., 10)` where that
    ///   reads the whole field: leading white space, a sign (`-1` wraps to 4294967295), and
    ///   leading zeros that stay decimal (`+7`, `007` and ` 7` are all 7);
    /// - permission domids follow `strtol(.., 0)` ([`Perm::parse_lenient`](crate::Perm::parse_lenient));
    /// - `INTRODUCE` and `SET_TARGET` ignore arguments after the ones they use.
    ///
    /// Fields C would turn into a number by reading a prefix or nothing (`abc`, `7abc`, a
    /// value beyond 32 bits) are refused: a daemon answers them with `EINVAL`.
    ///
    /// ```
    /// use xsio_xs_wire::{Frame, Header, MsgType, Packet, Request};
    ///
    /// let frame = |payload: &'static [u8]| Frame {
    ///     header: Header {
    ///         msg_type: MsgType::GetDomainPath.as_u32(),
    ///         req_id: 0,
    ///         tx_id: 0,
    ///         len: payload.len() as u32,
    ///     },
    ///     payload: payload.into(),
    /// };
    /// let lenient = Packet::<Request>::decode_lenient(&frame(b"+7\0"))?;
    /// assert_eq!(lenient.body, Request::GetDomainPath { domid: 7 });
    /// assert!(Packet::<Request>::decode(&frame(b"+7\0")).is_err());
    /// assert!(Packet::<Request>::decode_lenient(&frame(b"7abc\0")).is_err());
    /// # Ok::<(), xsio_xs_wire::PayloadError>(())
    /// ```
    pub fn decode_lenient(frame: &Frame) -> Result<Self, PayloadError> {
        Ok(Packet {
            req_id: frame.header.req_id,
            tx_id: frame.header.tx_id,
            body: B::decode_payload_lenient(frame.header.msg_type, &frame.payload)?,
        })
    }

    /// Appends header and payload to `out`. On error `out` is left as it was.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_message(out, self.body.msg_type(), self.req_id, self.tx_id, |out| {
            self.body.encode_payload(out)
        })
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

/// Appends one whole message to `out`: a header with `msg_type`, `req_id`, `tx_id` and the
/// length of what `payload` writes after it. On error (a payload over the limit included)
/// `out` is left as it was.
pub(crate) fn encode_message(
    out: &mut BytesMut,
    msg_type: MsgType,
    req_id: u32,
    tx_id: u32,
    payload: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    let result = payload(out).and_then(|()| {
        let len = out.len() - start - HEADER_LEN;
        check_len(len)?;
        Ok(len)
    });
    match result {
        Ok(len) => {
            let header = Header {
                msg_type: msg_type.as_u32(),
                req_id,
                tx_id,
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
