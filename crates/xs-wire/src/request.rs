//! Client → daemon messages.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::MsgType;
use crate::packet::Body;
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
        match self {
            Request::Control { .. } => MsgType::Control,
            Request::Directory { .. } => MsgType::Directory,
            Request::Read { .. } => MsgType::Read,
            Request::GetPerms { .. } => MsgType::GetPerms,
            Request::Watch { .. } => MsgType::Watch,
            Request::Unwatch { .. } => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd { .. } => MsgType::TransactionEnd,
            Request::Introduce { .. } => MsgType::Introduce,
            Request::Release { .. } => MsgType::Release,
            Request::GetDomainPath { .. } => MsgType::GetDomainPath,
            Request::Write { .. } => MsgType::Write,
            Request::Mkdir { .. } => MsgType::Mkdir,
            Request::Rm { .. } => MsgType::Rm,
            Request::SetPerms { .. } => MsgType::SetPerms,
            Request::IsDomainIntroduced { .. } => MsgType::IsDomainIntroduced,
            Request::Resume { .. } => MsgType::Resume,
            Request::SetTarget { .. } => MsgType::SetTarget,
            Request::ResetWatches => MsgType::ResetWatches,
            Request::DirectoryPart { .. } => MsgType::DirectoryPart,
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
        let kind = MsgType::from_u32(msg_type).ok_or(PayloadError::UnsupportedType(msg_type))?;
        let p = &payload[..];
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
                let [domid, gfn, evtchn] = exactly(p)?;
                Request::Introduce {
                    domid: number(domid)?,
                    gfn: number(gfn)?,
                    evtchn: number(evtchn)?,
                }
            }
            MsgType::Release => Request::Release {
                domid: one_number(p)?,
            },
            MsgType::GetDomainPath => Request::GetDomainPath {
                domid: one_number(p)?,
            },
            MsgType::IsDomainIntroduced => Request::IsDomainIntroduced {
                domid: one_number(p)?,
            },
            MsgType::Resume => Request::Resume {
                domid: one_number(p)?,
            },
            MsgType::Write => {
                let (path, _value) = head_and_rest(p)?;
                let value_at = path.len() + 1;
                Request::Write {
                    path: text(path)?,
                    value: payload.slice(value_at..),
                }
            }
            MsgType::SetPerms => {
                let fields = at_least(p, 2)?;
                Request::SetPerms {
                    path: text(fields[0])?,
                    perms: fields[1..]
                        .iter()
                        .map(|f| perm(f))
                        .collect::<Result<_, _>>()?,
                }
            }
            MsgType::SetTarget => {
                let [domid, target] = exactly(p)?;
                Request::SetTarget {
                    domid: number(domid)?,
                    target: number(target)?,
                }
            }
            MsgType::DirectoryPart => {
                let [path, offset] = exactly(p)?;
                Request::DirectoryPart {
                    path: text(path)?,
                    offset: number(offset)?,
                }
            }
            _ => return Err(PayloadError::UnsupportedType(msg_type)),
        })
    }
}

fn one_text(p: &[u8]) -> Result<String, PayloadError> {
    let [field] = exactly(p)?;
    text(field)
}

fn one_number<T: std::str::FromStr>(p: &[u8]) -> Result<T, PayloadError> {
    let [field] = exactly(p)?;
    number(field)
}
