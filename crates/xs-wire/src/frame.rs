//! Framing: cutting a byte stream into header + payload frames, whatever the read sizes.

use bytes::{Buf, Bytes, BytesMut};

use crate::XENSTORE_PAYLOAD_MAX;
use crate::header::{HEADER_LEN, Header, MsgType};

/// One message as framed on the wire: its header and `header.len` payload bytes.
///
/// Turn it into a typed [`Packet`](crate::Packet) with
/// [`Packet::<Request>::decode`](crate::Packet::decode) (daemon side) or
/// [`Packet::<Reply>::decode`](crate::Packet::decode) (client side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: Bytes,
}

impl Frame {
    /// The named message type, if the number is one of `xs_wire.h`.
    pub fn kind(&self) -> Option<MsgType> {
        self.header.kind()
    }

    /// The wire bytes: header then payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.payload);
        out.freeze()
    }
}

/// The stream cannot be framed any further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A header announced more payload than the limit. xenstored treats this as a protocol
    /// violation and drops the connection; so must the caller, since the stream has no
    /// resynchronisation point.
    #[error("frame announces {len} payload bytes, more than the limit of {max}")]
    Oversize {
        /// The announced length.
        len: u32,
        /// The configured limit.
        max: usize,
    },
}

/// Takes one complete frame off the front of `buf`, tokio-codec style: `Ok(None)` means
/// "need more bytes" and leaves `buf` untouched; `Ok(Some(_))` removes the frame's bytes.
///
/// A header whose `len` exceeds `max_payload` is an error as soon as the header is complete,
/// before any payload is buffered, so a peer cannot make us allocate more than
/// `HEADER_LEN + max_payload` bytes per frame.
pub fn decode_frame(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let Some(header) = parse_header(buf) else {
        return Ok(None);
    };
    let len = header.len as usize;
    if len > max_payload {
        return Err(FrameError::Oversize {
            len: header.len,
            max: max_payload,
        });
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    // A copy of the payload (at most 4 KiB by default) rather than a shared slice of the
    // buffer: the buffer stays uniquely owned, so it is reused for the next bytes instead of
    // a new one being allocated each time a frame is still alive.
    let payload = Bytes::copy_from_slice(&buf[HEADER_LEN..HEADER_LEN + len]);
    buf.advance(HEADER_LEN + len);
    Ok(Some(Frame { header, payload }))
}

/// The header at the front of `input`, or `None` if fewer than 16 bytes are there.
pub fn parse_header(input: &[u8]) -> Option<Header> {
    let header: &[u8; HEADER_LEN] = input.get(..HEADER_LEN)?.try_into().ok()?;
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Some(Header {
        msg_type: word(0),
        req_id: word(4),
        tx_id: word(8),
        len: word(12),
    })
}

/// A streaming decoder that owns its buffer: feed it bytes as they arrive, in any split, and
/// drain frames with [`FrameDecoder::next_frame`] until it returns `Ok(None)`.
///
/// ```
/// use xsio_xs_wire::{FrameDecoder, MsgType};
///
/// let wire = b"\x02\0\0\0\x07\0\0\0\0\0\0\0\x03\0\0\0/a\0";
/// let mut decoder = FrameDecoder::default();
/// decoder.feed(&wire[..5]); // a partial header
/// assert_eq!(decoder.next_frame(), Ok(None));
/// decoder.feed(&wire[5..]);
/// let frame = decoder.next_frame()?.expect("one whole frame");
/// assert_eq!((frame.kind(), frame.header.req_id), (Some(MsgType::Read), 7));
/// assert_eq!(&frame.payload[..], b"/a\0");
/// assert_eq!(decoder.next_frame(), Ok(None));
/// # Ok::<(), xsio_xs_wire::FrameError>(())
/// ```
///
/// After an error the decoder is poisoned: every later call returns the same error, because
/// the stream has no point to resynchronise at.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_payload: usize,
    failed: Option<FrameError>,
    /// Bytes of the frame last lent by [`FrameDecoder::next_frame_ref`], dropped from the
    /// buffer at the next call.
    lent: usize,
}

/// A frame borrowed from a [`FrameDecoder`]'s buffer (see
/// [`FrameDecoder::next_frame_ref`]): decode it where it lies, with no copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl Default for FrameDecoder {
    /// A decoder with the protocol's limit, [`XENSTORE_PAYLOAD_MAX`].
    fn default() -> Self {
        FrameDecoder::new(XENSTORE_PAYLOAD_MAX)
    }
}

impl FrameDecoder {
    /// A decoder refusing payloads longer than `max_payload`.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_payload,
            failed: None,
            lent: 0,
        }
    }

    /// Appends received bytes. Drain with [`FrameDecoder::next_frame`] after every feed: the
    /// buffer holds what was fed and not yet framed.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.return_lent();
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        self.return_lent();
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        decode_frame(&mut self.buf, self.max_payload).inspect_err(|err| {
            self.failed = Some(err.clone());
            self.buf = BytesMut::new();
        })
    }

    /// The next complete frame, borrowed from the buffer (no copy of its payload), or
    /// `Ok(None)` if more bytes are needed. The frame stays in the buffer until the next call
    /// of any method that takes `&mut self`, which drops it. Errors as
    /// [`FrameDecoder::next_frame`].
    ///
    /// ```
    /// use xsio_xs_wire::FrameDecoder;
    ///
    /// let mut decoder = FrameDecoder::default();
    /// decoder.feed(b"\x02\0\0\0\x07\0\0\0\0\0\0\0\x03\0\0\0/a\0");
    /// let frame = decoder.next_frame_ref()?.expect("one whole frame");
    /// assert_eq!((frame.header.req_id, frame.payload), (7, &b"/a\0"[..]));
    /// assert_eq!(decoder.next_frame_ref()?, None);
    /// assert!(decoder.is_at_boundary());
    /// # Ok::<(), xsio_xs_wire::FrameError>(())
    /// ```
    pub fn next_frame_ref(&mut self) -> Result<Option<FrameRef<'_>>, FrameError> {
        self.return_lent();
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(header) = parse_header(&self.buf) else {
            return Ok(None);
        };
        let len = header.len as usize;
        if len > self.max_payload {
            let err = FrameError::Oversize {
                len: header.len,
                max: self.max_payload,
            };
            self.failed = Some(err.clone());
            self.buf = BytesMut::new();
            return Err(err);
        }
        if self.buf.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.lent = HEADER_LEN + len;
        Ok(Some(FrameRef {
            header,
            payload: &self.buf[HEADER_LEN..HEADER_LEN + len],
        }))
    }

    fn return_lent(&mut self) {
        if self.lent > 0 {
            self.buf.advance(self.lent);
            self.lent = 0;
        }
    }

    /// Bytes buffered that do not yet make a whole frame (after draining).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.lent
    }

    /// Whether the stream ended cleanly here: nothing partial is buffered and no error.
    pub fn is_at_boundary(&self) -> bool {
        self.failed.is_none() && self.buffered() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(msg_type: u32, req_id: u32, tx_id: u32, len: u32) -> Header {
        Header {
            msg_type,
            req_id,
            tx_id,
            len,
        }
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone_and_poisons() {
        let mut decoder = FrameDecoder::default();
        decoder.feed(&header(11, 0, 0, 4097).to_bytes());
        let err = FrameError::Oversize {
            len: 4097,
            max: 4096,
        };
        assert_eq!(decoder.next_frame(), Err(err.clone()));
        decoder.feed(b"more");
        assert_eq!(decoder.next_frame(), Err(err));
        assert!(!decoder.is_at_boundary());
    }

    #[test]
    fn exactly_the_limit_passes() {
        let mut decoder = FrameDecoder::new(3);
        let header = header(2, 1, 2, 3);
        decoder.feed(&header.to_bytes());
        decoder.feed(b"/a");
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), 18);
        decoder.feed(b"\0");
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.header, header);
        assert_eq!(frame.to_bytes().len(), 19);
        assert!(decoder.is_at_boundary());
    }
}
