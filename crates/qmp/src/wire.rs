//! The QMP codec: framing by the end of each JSON value, message decoding, command encoding.
//!
//! QEMU ends every message with CR LF, but a monitor started with `pretty=on` sends JSON that
//! spans many lines, so line framing is wrong. [`Framer`] scans for the end of each top-level
//! JSON value instead (a depth counter that knows strings and escapes) and skips the
//! whitespace between values. It accepts any split of the byte stream: one byte at a time,
//! or many messages in one read, with the same result (invariant I7).
//!
//! ```
//! use xsio_qmp::wire::{Framer, Message, decode};
//!
//! let mut framer = Framer::new(1 << 20);
//! let mut input: &[u8] = b"{\"return\": {},\r\n \"id\": 7}\r\n{\"timestamp\": {\"seconds\": 1, ";
//! let frame = framer.next_frame(&mut input)?.expect("one whole message");
//! match decode(&frame)? {
//!     Message::Return { id, value } => {
//!         assert_eq!(id.and_then(|id| id.as_u64()), Some(7));
//!         assert_eq!(value.get(), "{}");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! // The rest of the input is an incomplete event: kept for the next read.
//! assert!(framer.next_frame(&mut input)?.is_none());
//! assert!(input.is_empty());
//! # Ok::<(), xsio_qmp::wire::WireError>(())
//! ```

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::QmpError;

/// Why bytes from the peer could not be turned into a QMP message.
///
/// Any of these ends the connection: after it the stream cannot be resynchronised safely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// One message was longer than the configured bound.
    #[error("a QMP message exceeds the limit of {limit} bytes")]
    Oversize {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A byte that cannot start a JSON object appeared between messages.
    #[error("unexpected byte 0x{byte:02x} between QMP messages")]
    UnexpectedByte {
        /// The offending byte.
        byte: u8,
    },
    /// The message is not valid JSON (or not UTF-8).
    #[error("malformed JSON in a QMP message: {reason}")]
    Malformed {
        /// What `serde_json` said.
        reason: String,
    },
    /// Valid JSON, but none of the shapes QMP defines (greeting, return, error, event).
    #[error("a JSON value that is not a QMP message")]
    NotAMessage,
}

/// Splits a byte stream into whole top-level JSON values.
///
/// Memory use is bounded: a partial message is kept only up to `max_message` bytes.
///
/// After an error the framer is poisoned: every later call discards its input and returns the
/// same error, because the stream has no point to resynchronise at (bytes after a stray
/// byte or inside an oversize message could be taken for the start of a message).
///
/// ```
/// use xsio_qmp::wire::{Framer, WireError};
///
/// let mut framer = Framer::new(1024);
/// let mut input: &[u8] = b"x{\"return\": {}}";
/// let refused = WireError::UnexpectedByte { byte: b'x' };
/// assert_eq!(framer.next_frame(&mut input), Err(refused.clone()));
/// // The message after the stray byte is not framed: the stream is over.
/// assert_eq!(framer.next_frame(&mut input), Err(refused.clone()));
/// assert!(input.is_empty());
/// assert_eq!(framer.next_frame(&mut &b"{}"[..]), Err(refused));
/// ```
#[derive(Debug)]
pub struct Framer {
    /// Bytes of the message in progress that arrived in earlier reads.
    carry: Vec<u8>,
    max_message: usize,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// The error that ended the stream, returned again by every later call.
    failed: Option<WireError>,
}

/// One whole JSON value from the stream, borrowed from the input when it arrived in one piece.
pub type Frame<'a> = Cow<'a, [u8]>;

impl Framer {
    /// A framer refusing messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Framer {
            carry: Vec::new(),
            max_message,
            depth: 0,
            in_string: false,
            escape: false,
            failed: None,
        }
    }

    /// Consumes bytes from the front of `input` until one message is complete, and returns it.
    ///
    /// Returns `Ok(None)` once `input` is used up without completing a message; the partial
    /// message is kept for the next call. Call again while it returns `Some`. After an error,
    /// every call discards `input` and returns that error again.
    pub fn next_frame<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Frame<'a>>, WireError> {
        if let Some(error) = &self.failed {
            *input = &[];
            return Err(error.clone());
        }
        let result = self.frame(input);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.carry = Vec::new();
        }
        result
    }

    /// Whether an error has ended the stream (see [`next_frame`](Framer::next_frame)).
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    fn frame<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Frame<'a>>, WireError> {
        let data: &'a [u8] = input;
        let mut start = 0;
        let mut i = 0;
        if self.depth == 0 {
            // Between messages: skip whitespace, then expect the start of an object or array.
            while i < data.len() {
                match data[i] {
                    b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                    b'{' | b'[' => break,
                    byte => {
                        *input = &data[i + 1..];
                        return Err(WireError::UnexpectedByte { byte });
                    }
                }
            }
            if i == data.len() {
                *input = &[];
                return Ok(None);
            }
            start = i;
        }
        while i < data.len() {
            let byte = data[i];
            i += 1;
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if byte == b'\\' {
                    self.escape = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        *input = &data[i..];
                        let len = self.carry.len() + (i - start);
                        if len > self.max_message {
                            self.carry.clear();
                            return Err(WireError::Oversize {
                                limit: self.max_message,
                            });
                        }
                        if self.carry.is_empty() {
                            return Ok(Some(Cow::Borrowed(&data[start..i])));
                        }
                        self.carry.extend_from_slice(&data[start..i]);
                        return Ok(Some(Cow::Owned(std::mem::take(&mut self.carry))));
                    }
                }
                _ => {}
            }
        }
        *input = &[];
        if self.carry.len() + (data.len() - start) > self.max_message {
            self.carry.clear();
            return Err(WireError::Oversize {
                limit: self.max_message,
            });
        }
        self.carry.extend_from_slice(&data[start..]);
        Ok(None)
    }

    /// Bytes of an incomplete message currently held.
    pub fn pending_len(&self) -> usize {
        self.carry.len()
    }
}

/// A decoded message from QEMU.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message {
    /// The greeting QEMU sends once, right after the connection is accepted.
    Greeting(Greeting),
    /// A success reply.
    Return {
        /// The `id` echoed from the command, if it had one.
        id: Option<MessageId>,
        /// The `return` member, as JSON text.
        value: Box<RawValue>,
    },
    /// An error reply.
    Error {
        /// The `id` echoed from the command; absent when QEMU failed before reading it.
        id: Option<MessageId>,
        /// Class and description.
        error: QmpError,
    },
    /// An asynchronous event.
    Event(Event),
}

/// The `id` member of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageId {
    /// A non-negative integer, the kind this crate sends.
    Number(u64),
    /// Any other JSON value, as its text.
    Other(String),
}

impl MessageId {
    /// The id as an integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MessageId::Number(n) => Some(*n),
            MessageId::Other(_) => None,
        }
    }

    fn from_raw(raw: &RawValue) -> Self {
        match raw.get().parse::<u64>() {
            Ok(n) => MessageId::Number(n),
            Err(_) => MessageId::Other(raw.get().to_owned()),
        }
    }
}

/// QEMU's greeting: its version and the capabilities it offers.
///
/// Lenient: unknown members are ignored, a missing `capabilities` means none, a missing
/// `package` is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Greeting {
    /// QEMU's version.
    #[serde(default)]
    pub version: Version,
    /// Capabilities QEMU offers (today only `oob` exists).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Greeting {
    /// Whether QEMU offers the capability `name` (for example `"oob"`).
    pub fn offers(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }
}

/// The `version` member of the greeting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Version {
    /// Upstream version numbers.
    #[serde(default)]
    pub qemu: QemuVersion,
    /// The distributor's package string (`Debian 1:7.2+dfsg-7+deb12u18+b3`).
    #[serde(default)]
    pub package: String,
}

/// QEMU's upstream version, comparable (`7.2.22 < 8.0.0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    #[serde(default)]
    pub major: u32,
    /// Minor version.
    #[serde(default)]
    pub minor: u32,
    /// Micro version.
    #[serde(default)]
    pub micro: u32,
}

/// An asynchronous event such as `DEVICE_TRAY_MOVED` or `DEVICE_DELETED`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The `data` member (an empty object when absent).
    pub data: Value,
    /// When QEMU emitted it.
    pub timestamp: Timestamp,
}

impl Event {
    /// Decodes `data` into a typed event body; unknown members are ignored.
    pub fn parse_data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

/// An event's host time; both members are -1 when QEMU's clock failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub seconds: i64,
    /// Microseconds within the second.
    #[serde(default)]
    pub microseconds: i64,
}

/// Every member any QEMU message can have; which ones are present says what it is.
#[derive(Deserialize)]
struct AnyMessage<'a> {
    #[serde(rename = "QMP", default)]
    greeting: Option<Greeting>,
    #[serde(rename = "return", borrow, default)]
    ret: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<QmpError>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Decodes one frame (from [`Framer::next_frame`]) into a [`Message`].
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    let any: AnyMessage<'_> = serde_json::from_slice(frame).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
    })?;
    let id = any.id.map(MessageId::from_raw);
    if let Some(ret) = any.ret {
        return Ok(Message::Return {
            id,
            value: ret.to_owned(),
        });
    }
    if let Some(error) = any.error {
        return Ok(Message::Error { id, error });
    }
    if let Some(name) = any.event {
        return Ok(Message::Event(Event {
            name,
            data: any
                .data
                .unwrap_or_else(|| Value::Object(Default::default())),
            timestamp: any.timestamp.unwrap_or_default(),
        }));
    }
    if let Some(greeting) = any.greeting {
        return Ok(Message::Greeting(greeting));
    }
    Err(WireError::NotAMessage)
}

/// Appends one command, compact and followed by a newline, to `out`.
///
/// Replies are matched by `id`; without one QEMU answers without one (the client then relies
/// on in-band replies coming in order). `oob` uses `exec-oob` instead of `execute`.
pub fn encode_command(
    out: &mut Vec<u8>,
    name: &str,
    arguments: Option<&Value>,
    id: Option<u64>,
    oob: bool,
) {
    out.extend_from_slice(if oob {
        b"{\"exec-oob\":"
    } else {
        b"{\"execute\":"
    });
    write_json(out, &name);
    if let Some(arguments) = arguments {
        out.extend_from_slice(b",\"arguments\":");
        write_json(out, arguments);
    }
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(itoa(id, &mut [0; 20]));
    }
    out.extend_from_slice(b"}\n");
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising a string or a `Value` into a Vec has no failure path: no I/O, and a `Value`
    // map always has string keys.
    serde_json::to_writer(out, value).expect("JSON into a Vec cannot fail");
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, mut input: &[u8]) -> Vec<Result<Vec<u8>, WireError>> {
        let mut out = Vec::new();
        loop {
            match framer.next_frame(&mut input) {
                Ok(Some(f)) => out.push(Ok(f.into_owned())),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    const PRETTY: &[u8] = b"{\n    \"return\": {\n        \"status\": \"running\",\n        \"singlestep\": false,\n        \"running\": true\n    },\n    \"id\": 3\n}\r\n";

    #[test]
    fn i7_pretty_multi_line_json_is_one_message_under_any_split() {
        for split in 0..PRETTY.len() {
            let mut framer = Framer::new(1024);
            let mut got = frames(&mut framer, &PRETTY[..split]);
            got.extend(frames(&mut framer, &PRETTY[split..]));
            assert_eq!(got.len(), 1, "split at {split}");
            let frame = got.pop().unwrap().unwrap();
            let Message::Return { id, value } = decode(&frame).unwrap() else {
                panic!("not a return");
            };
            assert_eq!(id, Some(MessageId::Number(3)));
            let v: Value = serde_json::from_str(value.get()).unwrap();
            assert_eq!(v["status"], "running");
        }
    }

    #[test]
    fn braces_and_escaped_quotes_inside_strings_do_not_end_a_message() {
        let text = br#"{"error": {"class": "GenericError", "desc": "odd \"}\\\" {["}, "id": 1}{"return": {}, "id": 2}"#;
        let mut framer = Framer::new(1024);
        let got = frames(&mut framer, text);
        assert_eq!(got.len(), 2);
        let Message::Error { error, .. } = decode(got[0].as_ref().unwrap()).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(error.desc, r#"odd "}\" {["#);
    }

    #[test]
    fn i4_oversize_message_is_a_typed_error_even_when_split() {
        let big = format!("{{\"return\": \"{}\"}}", "x".repeat(200));
        let mut framer = Framer::new(100);
        let mut got = frames(&mut framer, &big.as_bytes()[..50]);
        assert!(got.is_empty());
        got.extend(frames(&mut framer, &big.as_bytes()[50..]));
        assert_eq!(got, vec![Err(WireError::Oversize { limit: 100 })]);
        assert!(framer.pending_len() <= 100);
        // In one piece too.
        let mut framer = Framer::new(100);
        assert_eq!(
            frames(&mut framer, big.as_bytes()),
            vec![Err(WireError::Oversize { limit: 100 })]
        );
    }

    #[test]
    fn garbage_between_messages_is_refused() {
        let mut framer = Framer::new(100);
        assert_eq!(
            frames(&mut framer, b"  \r\nx{}"),
            vec![Err(WireError::UnexpectedByte { byte: b'x' })]
        );
    }

    #[test]
    fn after_an_error_the_framer_refuses_every_later_input_with_the_same_error() {
        let oversize = format!("{{\"return\": \"{}\"}}", "x".repeat(200));
        let cases: [(&[u8], WireError); 3] = [
            (
                b"x{\"return\": {}}",
                WireError::UnexpectedByte { byte: b'x' },
            ),
            // A stray byte in the middle of a read: the message before it still counts.
            (b"{}\r\n]{}", WireError::UnexpectedByte { byte: b']' }),
            (oversize.as_bytes(), WireError::Oversize { limit: 100 }),
        ];
        for (bad, error) in cases {
            let mut framer = Framer::new(100);
            let got = frames(&mut framer, bad);
            assert_eq!(got.last(), Some(&Err(error.clone())), "{got:?}");
            assert!(framer.is_failed());
            // Whatever comes next, whole messages included, gets the same error and is
            // consumed, so a caller looping until its input is empty ends.
            for later in [&b"{\"return\": {}}"[..], b"", b" ", b"}", b"\"}"] {
                let mut input = later;
                assert_eq!(framer.next_frame(&mut input), Err(error.clone()));
                assert!(input.is_empty());
            }
            assert_eq!(framer.pending_len(), 0, "nothing kept after an error");
        }
    }

    #[test]
    fn decode_tells_the_four_shapes_apart_and_ignores_unknown_members() {
        let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"], "future": 1}}"#;
        let Message::Greeting(g) = decode(greeting).unwrap() else {
            panic!()
        };
        assert_eq!(
            g.version.qemu,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
        assert!(g.offers("oob"));
        let Message::Greeting(bare) = decode(br#"{"QMP": {}}"#).unwrap() else {
            panic!()
        };
        assert!(bare.capabilities.is_empty());

        let event = br#"{"timestamp": {"seconds": 1763800000, "microseconds": 5}, "event": "DEVICE_TRAY_MOVED", "data": {"device": "", "tray-open": true, "id": "cd0"}}"#;
        let Message::Event(e) = decode(event).unwrap() else {
            panic!()
        };
        assert_eq!(e.name, "DEVICE_TRAY_MOVED");
        assert_eq!(e.data["tray-open"], true);
        assert_eq!(e.timestamp.microseconds, 5);

        let Message::Error { id, error } =
            decode(br#"{"error": {"class": "CommandNotFound", "desc": "x"}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(id, None);
        assert_eq!(error.class, crate::ErrorClass::CommandNotFound);

        let Message::Return { id, .. } = decode(br#"{"return": 1, "id": "abc"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(id, Some(MessageId::Other("\"abc\"".into())));

        assert_eq!(decode(br#"{"id": 1}"#).unwrap_err(), WireError::NotAMessage);
        assert!(matches!(
            decode(b"{\"return\": }"),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn encoded_commands_are_compact_single_lines() {
        let mut out = Vec::new();
        encode_command(&mut out, "query-status", None, Some(0), false);
        let args = serde_json::json!({"id": "cd0"});
        encode_command(
            &mut out,
            "eject",
            Some(&args),
            Some(18446744073709551615),
            true,
        );
        encode_command(&mut out, "stop", None, None, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"execute\":\"query-status\",\"id\":0}\n{\"exec-oob\":\"eject\",\"arguments\":{\"id\":\"cd0\"},\"id\":18446744073709551615}\n{\"execute\":\"stop\"}\n"
        );
    }
}
