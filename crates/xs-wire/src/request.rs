//! Client → daemon messages.

use bytes::{BufMut, Bytes, BytesMut};

use crate::c_number::{Radix, c_u32, c_u64};
use crate::frame::FrameRef;
use crate::header::MsgType;
use crate::packet::{Body, Packet};
use crate::payload::{
    EncodeError, PayloadError, at_least, exactly, flag, head_and_rest, number, perm, put_field,
    put_flag, put_number, text,
};
use crate::perm::Perm;

/// A request, as a client sends it and a daemon receives it.
///
/// Paths and tokens are kept as given; the codec checks framing and field rules, not path
/// syntax (see [`path::check`](crate::path::check)): a daemon answers a bad path with an
/// `EINVAL` reply, which needs the request decoded first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `CONTROL`: `cmd\0[arg\0]*`.
    Control {
        /// The command then its arguments; at least one entry.
        args: Vec<String>,
    },
    /// `DIRECTORY`: `path\0`.
    Directory {
        /// The node.
        path: String,
    },
    /// `READ`: `path\0`.
    Read {
        /// The node.
        path: String,
    },
    /// `GET_PERMS`: `path\0`.
    GetPerms {
        /// The node.
        path: String,
    },
    /// `WATCH`: `path\0token\0`.
    Watch {
        /// The watched path (may be relative or `@special`).
        path: String,
        /// Echoed in every event of this watch.
        token: String,
    },
    /// `UNWATCH`: `path\0token\0`.
    Unwatch {
        /// The path given to `WATCH`.
        path: String,
        /// The token given to `WATCH`.
        token: String,
    },
    /// `TRANSACTION_START`: encoded as `\0`, as libxenstore sends it. Daemons ignore the
    /// payload, so any payload decodes to this.
    TransactionStart,
    /// `TRANSACTION_END`: `T\0` to commit, `F\0` to abort. The transaction is the header's
    /// `tx_id`.
    TransactionEnd {
        /// Commit (`T`) or abort (`F`).
        commit: bool,
    },
    /// `INTRODUCE`: `domid\0gfn\0evtchn\0`.
    Introduce {
        /// The new domain.
        domid: u32,
        /// Guest frame of its xenstore ring.
        gfn: u64,
        /// Its event channel port.
        evtchn: u32,
    },
    /// `RELEASE`: `domid\0`.
    Release {
        /// The domain.
        domid: u32,
    },
    /// `GET_DOMAIN_PATH`: `domid\0`.
    GetDomainPath {
        /// The domain.
        domid: u32,
    },
    /// `WRITE`: `path\0` then the raw value, with no NUL after it (the value may hold NULs).
    Write {
        /// The node; missing ancestors are created.
        path: String,
        /// The value bytes.
        value: Bytes,
    },
    /// `MKDIR`: `path\0`.
    Mkdir {
        /// The node.
        path: String,
    },
    /// `RM`: `path\0`.
    Rm {
        /// The root of the subtree to remove.
        path: String,
    },
    /// `SET_PERMS`: `path\0perm\0`+.
    SetPerms {
        /// The node.
        path: String,
        /// Owner first; at least one entry.
        perms: Vec<Perm>,
    },
    /// `IS_DOMAIN_INTRODUCED`: `domid\0`.
    IsDomainIntroduced {
        /// The domain.
        domid: u32,
    },
    /// `RESUME`: `domid\0`.
    Resume {
        /// The domain.
        domid: u32,
    },
    /// `SET_TARGET`: `domid\0target\0`.
    SetTarget {
        /// The domain given rights.
        domid: u32,
        /// The domain it may act on.
        target: u32,
    },
    /// `RESET_WATCHES`: encoded as `\0`; any payload decodes to this.
    ResetWatches,
    /// `DIRECTORY_PART`: `path\0offset\0`.
    DirectoryPart {
        /// The node.
        path: String,
        /// Byte offset into the NUL-separated child list.
        offset: u32,
    },
}

impl Body for Request {
    fn msg_type(&self) -> MsgType {
        /// Every request is sent as the message type of the same name.
        macro_rules! same_name {
            ($($name:ident)*) => {
                match self {
                    $(Request::$name { .. } => MsgType::$name,)*
                }
            };
        }
        same_name! {
            Control Directory Read GetPerms Watch Unwatch TransactionStart TransactionEnd
            Introduce Release GetDomainPath Write Mkdir Rm SetPerms IsDomainIntroduced Resume
            SetTarget ResetWatches DirectoryPart
        }
    }

    fn encode_payload(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Request::Control { args } => {
                if args.is_empty() {
                    return Err(EncodeError::EmptyList);
                }
                for arg in args {
                    put_field(out, arg.as_bytes())?;
                }
            }
            Request::Directory { path }
            | Request::Read { path }
            | Request::GetPerms { path }
            | Request::Mkdir { path }
            | Request::Rm { path } => put_field(out, path.as_bytes())?,
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                put_field(out, path.as_bytes())?;
                put_field(out, token.as_bytes())?;
            }
            Request::TransactionStart | Request::ResetWatches => out.put_u8(0),
            Request::TransactionEnd { commit } => put_flag(out, *commit),
            Request::Introduce { domid, gfn, evtchn } => {
                put_number(out, domid);
                put_number(out, gfn);
                put_number(out, evtchn);
            }
            Request::Release { domid }
            | Request::GetDomainPath { domid }
            | Request::IsDomainIntroduced { domid }
            | Request::Resume { domid } => put_number(out, domid),
            Request::Write { path, value } => {
                put_field(out, path.as_bytes())?;
                out.put_slice(value);
            }
            Request::SetPerms { path, perms } => {
                if perms.is_empty() {
                    return Err(EncodeError::EmptyList);
                }
                put_field(out, path.as_bytes())?;
                for p in perms {
                    put_field(out, p.to_string().as_bytes())?;
                }
            }
            Request::SetTarget { domid, target } => {
                put_number(out, domid);
                put_number(out, target);
            }
            Request::DirectoryPart { path, offset } => {
                put_field(out, path.as_bytes())?;
                put_number(out, offset);
            }
        }
        Ok(())
    }

    fn decode_payload(msg_type: u32, payload: &Bytes) -> Result<Request, PayloadError> {
        decode(msg_type, payload, Grammar::Strict, |at| payload.slice(at..))
    }

    fn decode_payload_lenient(msg_type: u32, payload: &Bytes) -> Result<Request, PayloadError> {
        decode(msg_type, payload, Grammar::Lenient, |at| {
            payload.slice(at..)
        })
    }
}

impl Packet<Request> {
    /// [`Packet::decode_lenient`] of a frame still in a decoder's buffer
    /// ([`FrameDecoder::next_frame_ref`](crate::FrameDecoder::next_frame_ref)): nothing is
    /// copied but a `WRITE`'s value, the only field that is not parsed.
    ///
    /// ```
    /// use xsio_xs_wire::{FrameDecoder, Packet, Request};
    ///
    /// let mut decoder = FrameDecoder::default();
    /// decoder.feed(&Packet::new(3, 0, Request::Read { path: "+x".into() }).to_bytes()?);
    /// let frame = decoder.next_frame_ref()?.expect("a whole frame");
    /// let packet = Packet::<Request>::decode_lenient_ref(frame)?;
    /// assert_eq!(packet, Packet::new(3, 0, Request::Read { path: "+x".into() }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_lenient_ref(frame: FrameRef<'_>) -> Result<Self, PayloadError> {
        let payload = frame.payload;
        let body = decode(frame.header.msg_type, payload, Grammar::Lenient, |at| {
            Bytes::copy_from_slice(&payload[at..])
        })?;
        Ok(Packet::new(frame.header.req_id, frame.header.tx_id, body))
    }
}

/// Which of the two request grammars a decode follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grammar {
    /// Canonical: what [`Request`]'s encoder writes, so decode then encode is the identity.
    Strict,
    /// What Xen's C daemon accepts (see [`Packet::decode_lenient`](crate::Packet::decode_lenient)).
    Lenient,
}

impl Grammar {
    fn decimal(self, field: &[u8]) -> Result<u32, PayloadError> {
        match self {
            Grammar::Strict => number(field),
            Grammar::Lenient => c_u32(field, Radix::Decimal).ok_or_else(|| bad_number(field)),
        }
    }

    fn gfn(self, field: &[u8]) -> Result<u64, PayloadError> {
        match self {
            Grammar::Strict => number(field),
            Grammar::Lenient => c_u64(field, Radix::Decimal).ok_or_else(|| bad_number(field)),
        }
    }

    fn perm(self, field: &[u8]) -> Result<Perm, PayloadError> {
        match self {
            Grammar::Strict => perm(field),
            Grammar::Lenient => {
                let text = text(field)?;
                Perm::parse_lenient(&text).map_err(|source| PayloadError::BadPerm { text, source })
            }
        }
    }

    /// The fields of a type with `N` arguments: exactly `N`, or in the lenient grammar at
    /// least `N` with the rest ignored (C's `get_strings(..) < N` check, which lets old
    /// clients append an argument, as xend's `INTRODUCE` did with a path).
    fn first<const N: usize>(self, payload: &[u8]) -> Result<[&[u8]; N], PayloadError> {
        match self {
            Grammar::Strict => exactly(payload),
            Grammar::Lenient => {
                let fields = at_least(payload, N)?;
                let found = fields.len();
                fields[..N]
                    .try_into()
                    .map_err(|_| PayloadError::FieldCount { expected: N, found })
            }
        }
    }
}

fn bad_number(field: &[u8]) -> PayloadError {
    PayloadError::BadNumber(String::from_utf8_lossy(field).into_owned())
}

/// Decodes a request payload; `value_at` gives a WRITE's value, which starts at the offset
/// it is passed.
fn decode(
    msg_type: u32,
    p: &[u8],
    grammar: Grammar,
    value_at: impl FnOnce(usize) -> Bytes,
) -> Result<Request, PayloadError> {
    let kind = MsgType::from_u32(msg_type).ok_or(PayloadError::UnsupportedType(msg_type))?;
    let one_domid = |p: &[u8]| -> Result<u32, PayloadError> {
        let [field] = exactly(p)?;
        grammar.decimal(field)
    };
    Ok(match kind {
        MsgType::Control => Request::Control {
            args: at_least(p, 1)?
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        },
        MsgType::Directory => Request::Directory { path: one_text(p)? },
        MsgType::Read => Request::Read { path: one_text(p)? },
        MsgType::GetPerms => Request::GetPerms { path: one_text(p)? },
        MsgType::Mkdir => Request::Mkdir { path: one_text(p)? },
        MsgType::Rm => Request::Rm { path: one_text(p)? },
        MsgType::Watch => {
            let [path, token] = exactly(p)?;
            Request::Watch {
                path: text(path)?,
                token: text(token)?,
            }
        }
        MsgType::Unwatch => {
            let [path, token] = exactly(p)?;
            Request::Unwatch {
                path: text(path)?,
                token: text(token)?,
            }
        }
        MsgType::TransactionStart => Request::TransactionStart,
        MsgType::ResetWatches => Request::ResetWatches,
        MsgType::TransactionEnd => {
            let [f] = exactly(p)?;
            Request::TransactionEnd { commit: flag(f)? }
        }
        MsgType::Introduce => {
            let [domid, gfn, evtchn] = grammar.first(p)?;
            Request::Introduce {
                domid: grammar.decimal(domid)?,
                gfn: grammar.gfn(gfn)?,
                evtchn: grammar.decimal(evtchn)?,
            }
        }
        MsgType::Release => Request::Release {
            domid: one_domid(p)?,
        },
        MsgType::GetDomainPath => Request::GetDomainPath {
            domid: one_domid(p)?,
        },
        MsgType::IsDomainIntroduced => Request::IsDomainIntroduced {
            domid: one_domid(p)?,
        },
        MsgType::Resume => Request::Resume {
            domid: one_domid(p)?,
        },
        MsgType::Write => {
            let (path, _value) = head_and_rest(p)?;
            Request::Write {
                path: text(path)?,
                value: value_at(path.len() + 1),
            }
        }
        MsgType::SetPerms => {
            let fields = at_least(p, 2)?;
            Request::SetPerms {
                path: text(fields[0])?,
                perms: fields[1..]
                    .iter()
                    .map(|f| grammar.perm(f))
                    .collect::<Result<_, _>>()?,
            }
        }
        MsgType::SetTarget => {
            let [domid, target] = grammar.first(p)?;
            Request::SetTarget {
                domid: grammar.decimal(domid)?,
                target: grammar.decimal(target)?,
            }
        }
        MsgType::DirectoryPart => {
            let [path, offset] = exactly(p)?;
            Request::DirectoryPart {
                path: text(path)?,
                offset: grammar.decimal(offset)?,
            }
        }
        _ => return Err(PayloadError::UnsupportedType(msg_type)),
    })
}

fn one_text(p: &[u8]) -> Result<String, PayloadError> {
    let [field] = exactly(p)?;
    text(field)
}
