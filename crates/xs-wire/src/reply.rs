//! Daemon → client messages: replies, errors and watch events.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error_kind::ErrorKind;
use crate::header::MsgType;
use crate::packet::{Body, encode_message};
use crate::payload::{
    EncodeError, PayloadError, at_least, exactly, fields, flag, number, perm, put_field, put_flag,
    put_number, text,
};
use crate::perm::Perm;

/// What a daemon sends: the success reply of each request type, an `ERROR`, or a
/// `WATCH_EVENT`.
///
/// A reply has its request's type (and echoes its `req_id` and `tx_id`), except an error,
/// which has type `ERROR`. The unit variants are the plain `OK\0` replies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `CONTROL`: implementation-defined bytes (text plus NUL from xenstored).
    Control(Bytes),
    /// `DIRECTORY`: the child names, each followed by a NUL; none for a leaf.
    Directory(Vec<String>),
    /// `READ`: the raw value, no NUL added.
    Read(Bytes),
    /// `GET_PERMS`: `perm\0`+, owner first.
    GetPerms(Vec<Perm>),
    /// `WATCH`: `OK\0`. The watch's first event follows (or, with some daemons, precedes).
    Watch,
    /// `UNWATCH`: `OK\0`.
    Unwatch,
    /// `TRANSACTION_START`: the new id in decimal, NUL.
    TransactionStart(u32),
    /// `TRANSACTION_END`: `OK\0`.
    TransactionEnd,
    /// `INTRODUCE`: `OK\0`.
    Introduce,
    /// `RELEASE`: `OK\0`.
    Release,
    /// `GET_DOMAIN_PATH`: the path, NUL.
    GetDomainPath(String),
    /// `WRITE`: `OK\0`.
    Write,
    /// `MKDIR`: `OK\0`.
    Mkdir,
    /// `RM`: `OK\0`.
    Rm,
    /// `SET_PERMS`: `OK\0`.
    SetPerms,
    /// `WATCH_EVENT`: `path\0token\0`, with `req_id` and `tx_id` 0.
    WatchEvent {
        /// The path that changed (or the watch's own path for the first event).
        path: String,
        /// The token given when the watch was registered.
        token: String,
    },
    /// `ERROR`: the error name, NUL.
    Error(ErrorKind),
    /// `IS_DOMAIN_INTRODUCED`: `T\0` or `F\0`.
    IsDomainIntroduced(bool),
    /// `RESUME`: `OK\0`.
    Resume,
    /// `SET_TARGET`: `OK\0`.
    SetTarget,
    /// `RESET_WATCHES`: `OK\0`.
    ResetWatches,
    /// `DIRECTORY_PART`: `gen\0` then whole child names from the requested offset, each with
    /// its NUL; the last chunk ends with one more NUL.
    DirectoryPart {
        /// The node's generation: if it changes between chunks, start again from offset 0.
        generation: u64,
        /// The names in this chunk (none is empty).
        children: Vec<String>,
        /// Whether this is the last chunk.
        complete: bool,
    },
}

const OK: &[u8] = b"OK\0";

impl Reply {
    /// Appends a whole `READ` reply to `out` from a borrowed value: the bytes of
    /// `Packet::new(req_id, tx_id, Reply::Read(value))`, without a copy of the value first
    /// (a daemon answers READs from its store). A value too large for one message is an
    /// error and leaves `out` as it was.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use xsio_xs_wire::{Packet, Reply};
    ///
    /// let mut out = BytesMut::new();
    /// Reply::encode_read(7, 0, b"xvda", &mut out)?;
    /// assert_eq!(&out[..], &Packet::new(7, 0, Reply::Read("xvda".into())).to_bytes()?[..]);
    /// # Ok::<(), xsio_xs_wire::EncodeError>(())
    /// ```
    pub fn encode_read(
        req_id: u32,
        tx_id: u32,
        value: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_message(out, MsgType::Read, req_id, tx_id, |out| {
            out.put_slice(value);
            Ok(())
        })
    }

    /// Appends a whole `WATCH_EVENT` message to `out` from borrowed strings: the bytes of
    /// `Packet::new(0, 0, Reply::WatchEvent { path, token })`, without owning them (a daemon
    /// sends one per matching watch per change). An event that would exceed the payload
    /// limit is an error and leaves `out` as it was: xenstored drops such an event.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use xsio_xs_wire::{Packet, Reply};
    ///
    /// let mut out = BytesMut::new();
    /// Reply::encode_watch_event("/a", "tok", &mut out)?;
    /// let owned = Reply::WatchEvent { path: "/a".into(), token: "tok".into() };
    /// assert_eq!(&out[..], &Packet::new(0, 0, owned).to_bytes()?[..]);
    /// # Ok::<(), xsio_xs_wire::EncodeError>(())
    /// ```
    pub fn encode_watch_event(
        path: &str,
        token: &str,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_message(out, MsgType::WatchEvent, 0, 0, |out| {
            put_field(out, path.as_bytes())?;
            put_field(out, token.as_bytes())
        })
    }
}

impl Body for Reply {
    fn msg_type(&self) -> MsgType {
        match self {
            Reply::Control(_) => MsgType::Control,
            Reply::Directory(_) => MsgType::Directory,
            Reply::Read(_) => MsgType::Read,
            Reply::GetPerms(_) => MsgType::GetPerms,
            Reply::Watch => MsgType::Watch,
            Reply::Unwatch => MsgType::Unwatch,
            Reply::TransactionStart(_) => MsgType::TransactionStart,
            Reply::TransactionEnd => MsgType::TransactionEnd,
            Reply::Introduce => MsgType::Introduce,
            Reply::Release => MsgType::Release,
            Reply::GetDomainPath(_) => MsgType::GetDomainPath,
            Reply::Write => MsgType::Write,
            Reply::Mkdir => MsgType::Mkdir,
            Reply::Rm => MsgType::Rm,
            Reply::SetPerms => MsgType::SetPerms,
            Reply::WatchEvent { .. } => MsgType::WatchEvent,
            Reply::Error(_) => MsgType::Error,
            Reply::IsDomainIntroduced(_) => MsgType::IsDomainIntroduced,
            Reply::Resume => MsgType::Resume,
            Reply::SetTarget => MsgType::SetTarget,
            Reply::ResetWatches => MsgType::ResetWatches,
            Reply::DirectoryPart { .. } => MsgType::DirectoryPart,
        }
    }

    fn encode_payload(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Reply::Control(bytes) | Reply::Read(bytes) => out.put_slice(bytes),
            Reply::Directory(names) => {
                for name in names {
                    put_field(out, name.as_bytes())?;
                }
            }
            Reply::GetPerms(perms) => {
                if perms.is_empty() {
                    return Err(EncodeError::EmptyList);
                }
                for p in perms {
                    put_field(out, p.to_string().as_bytes())?;
                }
            }
            Reply::Watch
            | Reply::Unwatch
            | Reply::TransactionEnd
            | Reply::Introduce
            | Reply::Release
            | Reply::Write
            | Reply::Mkdir
            | Reply::Rm
            | Reply::SetPerms
            | Reply::Resume
            | Reply::SetTarget
            | Reply::ResetWatches => out.put_slice(OK),
            Reply::TransactionStart(id) => put_number(out, id),
            Reply::GetDomainPath(path) => put_field(out, path.as_bytes())?,
            Reply::WatchEvent { path, token } => {
                put_field(out, path.as_bytes())?;
                put_field(out, token.as_bytes())?;
            }
            Reply::Error(kind) => put_field(out, kind.name().as_bytes())?,
            Reply::IsDomainIntroduced(yes) => put_flag(out, *yes),
            Reply::DirectoryPart {
                generation,
                children,
                complete,
            } => {
                put_number(out, generation);
                for name in children {
                    if name.is_empty() {
                        return Err(EncodeError::EmptyName);
                    }
                    put_field(out, name.as_bytes())?;
                }
                if *complete {
                    out.put_u8(0);
                }
            }
        }
        Ok(())
    }

    fn decode_payload(msg_type: u32, payload: &Bytes) -> Result<Reply, PayloadError> {
        let kind = MsgType::from_u32(msg_type).ok_or(PayloadError::UnsupportedType(msg_type))?;
        let p = &payload[..];
        let ok = |reply: Reply| {
            if p == OK {
                Ok(reply)
            } else {
                Err(PayloadError::NotOk)
            }
        };
        match kind {
            MsgType::Control => Ok(Reply::Control(payload.clone())),
            MsgType::Read => Ok(Reply::Read(payload.clone())),
            MsgType::Directory => Ok(Reply::Directory(
                fields(p)?.into_iter().map(text).collect::<Result<_, _>>()?,
            )),
            MsgType::GetPerms => Ok(Reply::GetPerms(
                at_least(p, 1)?
                    .into_iter()
                    .map(perm)
                    .collect::<Result<_, _>>()?,
            )),
            MsgType::Watch => ok(Reply::Watch),
            MsgType::Unwatch => ok(Reply::Unwatch),
            MsgType::TransactionEnd => ok(Reply::TransactionEnd),
            MsgType::Introduce => ok(Reply::Introduce),
            MsgType::Release => ok(Reply::Release),
            MsgType::Write => ok(Reply::Write),
            MsgType::Mkdir => ok(Reply::Mkdir),
            MsgType::Rm => ok(Reply::Rm),
            MsgType::SetPerms => ok(Reply::SetPerms),
            MsgType::Resume => ok(Reply::Resume),
            MsgType::SetTarget => ok(Reply::SetTarget),
            MsgType::ResetWatches => ok(Reply::ResetWatches),
            MsgType::TransactionStart => {
                let [id] = exactly(p)?;
                Ok(Reply::TransactionStart(number(id)?))
            }
            MsgType::GetDomainPath => {
                let [path] = exactly(p)?;
                Ok(Reply::GetDomainPath(text(path)?))
            }
            MsgType::WatchEvent => {
                let [path, token] = exactly(p)?;
                Ok(Reply::WatchEvent {
                    path: text(path)?,
                    token: text(token)?,
                })
            }
            MsgType::Error => {
                let [name] = exactly(p)?;
                Ok(Reply::Error(crate::payload::error_name(name)?))
            }
            MsgType::IsDomainIntroduced => {
                let [f] = exactly(p)?;
                Ok(Reply::IsDomainIntroduced(flag(f)?))
            }
            MsgType::DirectoryPart => decode_directory_part(p),
            _ => Err(PayloadError::UnsupportedType(msg_type)),
        }
    }
}

fn decode_directory_part(p: &[u8]) -> Result<Reply, PayloadError> {
    let fields = at_least(p, 1)?;
    let generation = number(fields[0])?;
    let mut children = Vec::with_capacity(fields.len() - 1);
    let mut complete = false;
    for field in &fields[1..] {
        if complete {
            return Err(PayloadError::DataAfterEnd);
        }
        if field.is_empty() {
            complete = true;
        } else {
            children.push(text(field)?);
        }
    }
    Ok(Reply::DirectoryPart {
        generation,
        children,
        complete,
    })
}
