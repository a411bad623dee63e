//! The error-name table: `XS_ERROR` replies carry an errno *name*, never a number.

use std::fmt;

/// An error a daemon can answer with, in the order of `xs_wire.h`'s table.
///
/// On the wire an `ERROR` reply carries the name plus a NUL (`ENOENT\0`). The errno numbers
/// are Linux's, for callers that want to hand them to C code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `EINVAL`: malformed request; also what unknown errnos and names map to.
    Einval,
    /// `EACCES`: permission denied.
    Eacces,
    /// `EEXIST`: already exists (a duplicate watch).
    Eexist,
    /// `EISDIR`.
    Eisdir,
    /// `ENOENT`: no such node, transaction or watch.
    Enoent,
    /// `ENOMEM`.
    Enomem,
    /// `ENOSPC`: a quota is exhausted.
    Enospc,
    /// `EIO`.
    Eio,
    /// `ENOTEMPTY`.
    Enotempty,
    /// `ENOSYS`: unknown or unsupported message type.
    Enosys,
    /// `EROFS`.
    Erofs,
    /// `EBUSY`.
    Ebusy,
    /// `EAGAIN`: the transaction conflicted; start it again.
    Eagain,
    /// `EISCONN`.
    Eisconn,
    /// `E2BIG`: the reply would exceed the payload limit, or too many watches.
    E2big,
    /// `EPERM`.
    Eperm,
}

/// The table, in `xs_wire.h` order.
pub const ALL_ERROR_KINDS: [ErrorKind; 16] = [
    ErrorKind::Einval,
    ErrorKind::Eacces,
    ErrorKind::Eexist,
    ErrorKind::Eisdir,
    ErrorKind::Enoent,
    ErrorKind::Enomem,
    ErrorKind::Enospc,
    ErrorKind::Eio,
    ErrorKind::Enotempty,
    ErrorKind::Enosys,
    ErrorKind::Erofs,
    ErrorKind::Ebusy,
    ErrorKind::Eagain,
    ErrorKind::Eisconn,
    ErrorKind::E2big,
    ErrorKind::Eperm,
];

impl ErrorKind {
    /// The name as sent on the wire (without the NUL).
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Einval => "EINVAL",
            ErrorKind::Eacces => "EACCES",
            ErrorKind::Eexist => "EEXIST",
            ErrorKind::Eisdir => "EISDIR",
            ErrorKind::Enoent => "ENOENT",
            ErrorKind::Enomem => "ENOMEM",
            ErrorKind::Enospc => "ENOSPC",
            ErrorKind::Eio => "EIO",
            ErrorKind::Enotempty => "ENOTEMPTY",
            ErrorKind::Enosys => "ENOSYS",
            ErrorKind::Erofs => "EROFS",
            ErrorKind::Ebusy => "EBUSY",
            ErrorKind::Eagain => "EAGAIN",
            ErrorKind::Eisconn => "EISCONN",
            ErrorKind::E2big => "E2BIG",
            ErrorKind::Eperm => "EPERM",
        }
    }

    /// The Linux errno number.
    pub const fn errno(self) -> i32 {
        match self {
            ErrorKind::Einval => 22,
            ErrorKind::Eacces => 13,
            ErrorKind::Eexist => 17,
            ErrorKind::Eisdir => 21,
            ErrorKind::Enoent => 2,
            ErrorKind::Enomem => 12,
            ErrorKind::Enospc => 28,
            ErrorKind::Eio => 5,
            ErrorKind::Enotempty => 39,
            ErrorKind::Enosys => 38,
            ErrorKind::Erofs => 30,
            ErrorKind::Ebusy => 16,
            ErrorKind::Eagain => 11,
            ErrorKind::Eisconn => 106,
            ErrorKind::E2big => 7,
            ErrorKind::Eperm => 1,
        }
    }

    /// The kind with this wire name; `None` for a name outside the table (libxenstore reads
    /// such a name as `EINVAL`; [`ErrorKind::from_name_or_einval`] does the same).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ALL_ERROR_KINDS.iter().copied().find(|k| k.name() == name)
    }

    /// As libxenstore: any name outside the table is `EINVAL`.
    pub fn from_name_or_einval(name: &str) -> ErrorKind {
        ErrorKind::from_name(name).unwrap_or(ErrorKind::Einval)
    }

    /// As a daemon: an errno outside the table is sent as `EINVAL`.
    pub fn from_errno(errno: i32) -> ErrorKind {
        ALL_ERROR_KINDS
            .iter()
            .copied()
            .find(|k| k.errno() == errno)
            .unwrap_or(ErrorKind::Einval)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
