//! Payload field rules shared by requests and replies: NUL-terminated fields, numbers, flags.

use bytes::{BufMut, BytesMut};
use nom::Parser;
use nom::bytes::complete::{tag, take_till};
use nom::combinator::{all_consuming, opt};
use nom::multi::many0;
use nom::sequence::terminated;

use crate::XENSTORE_PAYLOAD_MAX;
use crate::error_kind::ErrorKind;
use crate::perm::{Perm, PermError};

/// Why a frame's payload is not a valid message of its type.
///
/// A daemon answers these with `EINVAL` (or `ENOSYS` for
/// [`PayloadError::UnsupportedType`]); a client fails the matching request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The type number is unknown, or not valid in this direction (a client sending
    /// `WATCH_EVENT`, a daemon replying with `RESTRICT`).
    #[error("message type {0} is not supported in this direction")]
    UnsupportedType(u32),
    /// Bytes after the last NUL where every field must end with a NUL.
    #[error("payload does not end with a NUL")]
    MissingNul,
    /// Not the number of NUL-terminated fields the type needs.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// What the type needs (a minimum for list types).
        expected: usize,
        /// What was there.
        found: usize,
    },
    /// A text field (path, token, name) is not UTF-8.
    #[error("field is not UTF-8")]
    NotUtf8,
    /// A number field is not a canonical decimal that fits.
    #[error("bad decimal number {0:?}")]
    BadNumber(String),
    /// A flag field is neither `T` nor `F`.
    #[error("expected T or F, found {0:?}")]
    BadFlag(String),
    /// A success reply whose payload is not `OK\0`.
    #[error("expected OK")]
    NotOk,
    /// A permission entry is malformed.
    #[error("bad permission {text:?}: {source}")]
    BadPerm {
        /// The entry.
        text: String,
        /// Why.
        source: PermError,
    },
    /// An `ERROR` reply with a name outside the table.
    #[error("unknown error name {0:?}")]
    UnknownErrorName(String),
    /// A `DIRECTORY_PART` reply with data after its end marker.
    #[error("data after the end of a directory listing")]
    DataAfterEnd,
}

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload would exceed the limit. A daemon answers `E2BIG` instead.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The payload length.
        len: usize,
        /// The limit ([`XENSTORE_PAYLOAD_MAX`]).
        max: usize,
    },
    /// A NUL-terminated field (path, token, name) contains a NUL.
    #[error("a NUL-terminated field contains a NUL byte")]
    NulInField,
    /// A list that must have at least one entry (permissions, control arguments) is empty.
    #[error("a list that needs at least one entry is empty")]
    EmptyList,
    /// An empty child name in a `DIRECTORY_PART` reply, where it would read as the end marker.
    #[error("empty child name in a directory chunk")]
    EmptyName,
}

/// Splits a payload into its NUL-terminated fields; every byte must belong to one.
pub(crate) fn fields(payload: &[u8]) -> Result<Vec<&[u8]>, PayloadError> {
    let field = terminated(
        take_till::<_, _, nom::error::Error<&[u8]>>(|b| b == 0),
        tag(&b"\0"[..]),
    );
    let mut all = all_consuming(many0(field));
    match all.parse(payload) {
        Ok((_, fields)) => Ok(fields),
        Err(_) => Err(PayloadError::MissingNul),
    }
}

/// The field before the first NUL and everything after it (WRITE's `path\0value`).
pub(crate) fn head_and_rest(payload: &[u8]) -> Result<(&[u8], &[u8]), PayloadError> {
    let mut head = opt(terminated(
        take_till::<_, _, nom::error::Error<&[u8]>>(|b| b == 0),
        tag(&b"\0"[..]),
    ));
    match head.parse(payload) {
        Ok((rest, Some(head))) => Ok((head, rest)),
        _ => Err(PayloadError::MissingNul),
    }
}

pub(crate) fn exactly<const N: usize>(payload: &[u8]) -> Result<[&[u8]; N], PayloadError> {
    // Every request has a fixed field count: split without collecting (no allocation per
    // message), with `fields`' errors in its order (a missing NUL first, then the count).
    let mut out = [&payload[..0]; N];
    let mut found = 0;
    let mut rest = payload;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PayloadError::MissingNul)?;
        if let Some(slot) = out.get_mut(found) {
            *slot = &rest[..end];
        }
        found += 1;
        rest = &rest[end + 1..];
    }
    if found != N {
        return Err(PayloadError::FieldCount { expected: N, found });
    }
    Ok(out)
}

pub(crate) fn at_least(payload: &[u8], min: usize) -> Result<Vec<&[u8]>, PayloadError> {
    let fields = fields(payload)?;
    if fields.len() < min {
        return Err(PayloadError::FieldCount {
            expected: min,
            found: fields.len(),
        });
    }
    Ok(fields)
}

pub(crate) fn text(field: &[u8]) -> Result<String, PayloadError> {
    std::str::from_utf8(field)
        .map(str::to_owned)
        .map_err(|_| PayloadError::NotUtf8)
}

/// A canonical decimal: digits only, no sign, no leading zero (except `0` itself), so that
/// decoding then encoding gives back the same bytes.
pub(crate) fn number<T: std::str::FromStr>(field: &[u8]) -> Result<T, PayloadError> {
    let bad = || PayloadError::BadNumber(String::from_utf8_lossy(field).into_owned());
    let canonical = !field.is_empty()
        && field.iter().all(u8::is_ascii_digit)
        && (field.len() == 1 || field[0] != b'0');
    if !canonical {
        return Err(bad());
    }
    std::str::from_utf8(field)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())
}

pub(crate) fn flag(field: &[u8]) -> Result<bool, PayloadError> {
    match field {
        b"T" => Ok(true),
        b"F" => Ok(false),
        other => Err(PayloadError::BadFlag(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

pub(crate) fn perm(field: &[u8]) -> Result<Perm, PayloadError> {
    let text = text(field)?;
    text.parse()
        .map_err(|source| PayloadError::BadPerm { text, source })
}

pub(crate) fn error_name(field: &[u8]) -> Result<ErrorKind, PayloadError> {
    let name = text(field)?;
    ErrorKind::from_name(&name).ok_or(PayloadError::UnknownErrorName(name))
}

/// Appends `field` and its NUL, refusing a NUL inside.
pub(crate) fn put_field(out: &mut BytesMut, field: &[u8]) -> Result<(), EncodeError> {
    if field.contains(&0) {
        return Err(EncodeError::NulInField);
    }
    out.put_slice(field);
    out.put_u8(0);
    Ok(())
}

pub(crate) fn put_number(out: &mut BytesMut, n: impl std::fmt::Display) {
    out.put_slice(n.to_string().as_bytes());
    out.put_u8(0);
}

pub(crate) fn put_flag(out: &mut BytesMut, flag: bool) {
    out.put_slice(if flag { b"T\0" } else { b"F\0" });
}

pub(crate) fn check_len(len: usize) -> Result<(), EncodeError> {
    if len > XENSTORE_PAYLOAD_MAX {
        return Err(EncodeError::TooLarge {
            len,
            max: XENSTORE_PAYLOAD_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules() {
        assert_eq!(fields(b""), Ok(vec![]));
        assert_eq!(fields(b"\0"), Ok(vec![&b""[..]]));
        assert_eq!(fields(b"a\0bc\0"), Ok(vec![&b"a"[..], &b"bc"[..]]));
        assert_eq!(fields(b"a\0bc"), Err(PayloadError::MissingNul));
        assert_eq!(head_and_rest(b"/a\0b\0c"), Ok((&b"/a"[..], &b"b\0c"[..])));
        assert_eq!(head_and_rest(b"/a"), Err(PayloadError::MissingNul));
        assert_eq!(exactly::<2>(b"a\0bc\0"), Ok([&b"a"[..], &b"bc"[..]]));
        assert_eq!(exactly::<1>(b"\0"), Ok([&b""[..]]));
        assert_eq!(
            exactly::<1>(b"a\0b\0"),
            Err(PayloadError::FieldCount {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(exactly::<2>(b"a\0b\0c"), Err(PayloadError::MissingNul));
        assert_eq!(
            exactly::<1>(b""),
            Err(PayloadError::FieldCount {
                expected: 1,
                found: 0
            })
        );
        assert_eq!(number::<u32>(b"0"), Ok(0));
        assert_eq!(number::<u32>(b"4294967295"), Ok(u32::MAX));
        assert!(number::<u32>(b"4294967296").is_err());
        assert!(number::<u32>(b"01").is_err());
        assert!(number::<u32>(b"+1").is_err());
        assert!(number::<u32>(b"").is_err());
        assert_eq!(flag(b"T"), Ok(true));
        assert!(flag(b"t").is_err());
    }
}
