//! The error names xenstored puts on the wire.

use std::fmt;

/// An error a request can fail with, sent to the client as its name (`ENOENT\0`).
///
/// The set is the one clients know how to map back to an errno; xenstored never sends any
/// other name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Errno {
    /// Malformed request: bad path, missing argument, bad number.
    Einval,
    /// The caller lacks the permission.
    Eacces,
    /// A watch with this path and token already exists.
    Eexist,
    /// Not used by this daemon; kept so every wire name has a variant.
    Eisdir,
    /// No such node, transaction, watch or domain.
    Enoent,
    /// The transaction could not be committed for an internal reason.
    Enomem,
    /// A quota (nodes, node size, transactions, permissions) is exhausted.
    Enospc,
    /// Not used by this daemon; kept so every wire name has a variant.
    Eio,
    /// Not used by this daemon; kept so every wire name has a variant.
    Enotempty,
    /// Unknown or unsupported request type.
    Enosys,
    /// Not used by this daemon; kept so every wire name has a variant.
    Erofs,
    /// A transaction start arrived inside a transaction.
    Ebusy,
    /// The transaction conflicted with a concurrent change; retry it.
    Eagain,
    /// Not used by this daemon; kept so every wire name has a variant.
    Eisconn,
    /// The reply would not fit in one message, or the watch quota is exhausted.
    E2big,
    /// An unprivileged domain tried to change a node's owner.
    Eperm,
}

impl Errno {
    /// The name sent on the wire, without its NUL.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Einval => "EINVAL",
            Errno::Eacces => "EACCES",
            Errno::Eexist => "EEXIST",
            Errno::Eisdir => "EISDIR",
            Errno::Enoent => "ENOENT",
            Errno::Enomem => "ENOMEM",
            Errno::Enospc => "ENOSPC",
            Errno::Eio => "EIO",
            Errno::Enotempty => "ENOTEMPTY",
            Errno::Enosys => "ENOSYS",
            Errno::Erofs => "EROFS",
            Errno::Ebusy => "EBUSY",
            Errno::Eagain => "EAGAIN",
            Errno::Eisconn => "EISCONN",
            Errno::E2big => "E2BIG",
            Errno::Eperm => "EPERM",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
