//! The 16-byte header and the message type numbers of `xs_wire.h`.

use std::fmt;

/// Bytes in a header: four little-endian `u32`s.
pub const HEADER_LEN: usize = 16;

/// Every message type of Xen's `xs_wire.h`, with its wire number.
///
/// A [`Header`] keeps the raw number so that frames of unknown types still pass through the
/// framing layer (a daemon must answer them with `ENOSYS`); [`MsgType::from_u32`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MsgType {
    /// 0, `XS_CONTROL` (alias `XS_DEBUG`): implementation-defined commands.
    Control,
    /// 1, `XS_DIRECTORY`: the child names of a node.
    Directory,
    /// 2, `XS_READ`: a node's value.
    Read,
    /// 3, `XS_GET_PERMS`: a node's permission list.
    GetPerms,
    /// 4, `XS_WATCH`: register a watch.
    Watch,
    /// 5, `XS_UNWATCH`: remove a watch.
    Unwatch,
    /// 6, `XS_TRANSACTION_START`.
    TransactionStart,
    /// 7, `XS_TRANSACTION_END`: commit or abort.
    TransactionEnd,
    /// 8, `XS_INTRODUCE`: a new domain's ring (privileged).
    Introduce,
    /// 9, `XS_RELEASE`: forget a domain (privileged).
    Release,
    /// 10, `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    GetDomainPath,
    /// 11, `XS_WRITE`.
    Write,
    /// 12, `XS_MKDIR`.
    Mkdir,
    /// 13, `XS_RM`: remove a subtree.
    Rm,
    /// 14, `XS_SET_PERMS`.
    SetPerms,
    /// 15, `XS_WATCH_EVENT`: sent by the daemon only.
    WatchEvent,
    /// 16, `XS_ERROR`: sent by the daemon only, in place of a reply.
    Error,
    /// 17, `XS_IS_DOMAIN_INTRODUCED` (privileged).
    IsDomainIntroduced,
    /// 18, `XS_RESUME` (privileged).
    Resume,
    /// 19, `XS_SET_TARGET` (privileged).
    SetTarget,
    /// 20, `XS_RESTRICT`: removed from Xen; daemons answer `ENOSYS`.
    Restrict,
    /// 21, `XS_RESET_WATCHES`: drop all of the caller's watches and transactions.
    ResetWatches,
    /// 22, `XS_DIRECTORY_PART`: a directory listing in chunks.
    DirectoryPart,
    /// 23, `XS_GET_FEATURE` (Xen 4.19+).
    GetFeature,
    /// 24, `XS_SET_FEATURE` (Xen 4.19+).
    SetFeature,
    /// 25, `XS_GET_QUOTA` (Xen 4.19+).
    GetQuota,
    /// 26, `XS_SET_QUOTA` (Xen 4.19+).
    SetQuota,
    /// 65535, `XS_INVALID`: guaranteed to remain an invalid type.
    Invalid,
}

/// Every message type, in wire-number order.
pub const ALL_MSG_TYPES: [MsgType; 28] = [
    MsgType::Control,
    MsgType::Directory,
    MsgType::Read,
    MsgType::GetPerms,
    MsgType::Watch,
    MsgType::Unwatch,
    MsgType::TransactionStart,
    MsgType::TransactionEnd,
    MsgType::Introduce,
    MsgType::Release,
    MsgType::GetDomainPath,
    MsgType::Write,
    MsgType::Mkdir,
    MsgType::Rm,
    MsgType::SetPerms,
    MsgType::WatchEvent,
    MsgType::Error,
    MsgType::IsDomainIntroduced,
    MsgType::Resume,
    MsgType::SetTarget,
    MsgType::Restrict,
    MsgType::ResetWatches,
    MsgType::DirectoryPart,
    MsgType::GetFeature,
    MsgType::SetFeature,
    MsgType::GetQuota,
    MsgType::SetQuota,
    MsgType::Invalid,
];

impl MsgType {
    /// The wire number.
    pub const fn as_u32(self) -> u32 {
        match self {
            MsgType::Control => 0,
            MsgType::Directory => 1,
            MsgType::Read => 2,
            MsgType::GetPerms => 3,
            MsgType::Watch => 4,
            MsgType::Unwatch => 5,
            MsgType::TransactionStart => 6,
            MsgType::TransactionEnd => 7,
            MsgType::Introduce => 8,
            MsgType::Release => 9,
            MsgType::GetDomainPath => 10,
            MsgType::Write => 11,
            MsgType::Mkdir => 12,
            MsgType::Rm => 13,
            MsgType::SetPerms => 14,
            MsgType::WatchEvent => 15,
            MsgType::Error => 16,
            MsgType::IsDomainIntroduced => 17,
            MsgType::Resume => 18,
            MsgType::SetTarget => 19,
            MsgType::Restrict => 20,
            MsgType::ResetWatches => 21,
            MsgType::DirectoryPart => 22,
            MsgType::GetFeature => 23,
            MsgType::SetFeature => 24,
            MsgType::GetQuota => 25,
            MsgType::SetQuota => 26,
            MsgType::Invalid => 0xffff,
        }
    }

    /// The type with this wire number, if `xs_wire.h` defines one.
    pub fn from_u32(raw: u32) -> Option<MsgType> {
        match raw {
            0..=26 => Some(ALL_MSG_TYPES[raw as usize]),
            0xffff => Some(MsgType::Invalid),
            _ => None,
        }
    }

    /// The C name without its `XS_` prefix, as `xs_wire.h` spells it (`DIRECTORY_PART`).
    pub const fn name(self) -> &'static str {
        match self {
            MsgType::Control => "CONTROL",
            MsgType::Directory => "DIRECTORY",
            MsgType::Read => "READ",
            MsgType::GetPerms => "GET_PERMS",
            MsgType::Watch => "WATCH",
            MsgType::Unwatch => "UNWATCH",
            MsgType::TransactionStart => "TRANSACTION_START",
            MsgType::TransactionEnd => "TRANSACTION_END",
            MsgType::Introduce => "INTRODUCE",
            MsgType::Release => "RELEASE",
            MsgType::GetDomainPath => "GET_DOMAIN_PATH",
            MsgType::Write => "WRITE",
            MsgType::Mkdir => "MKDIR",
            MsgType::Rm => "RM",
            MsgType::SetPerms => "SET_PERMS",
            MsgType::WatchEvent => "WATCH_EVENT",
            MsgType::Error => "ERROR",
            MsgType::IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            MsgType::Resume => "RESUME",
            MsgType::SetTarget => "SET_TARGET",
            MsgType::Restrict => "RESTRICT",
            MsgType::ResetWatches => "RESET_WATCHES",
            MsgType::DirectoryPart => "DIRECTORY_PART",
            MsgType::GetFeature => "GET_FEATURE",
            MsgType::SetFeature => "SET_FEATURE",
            MsgType::GetQuota => "GET_QUOTA",
            MsgType::SetQuota => "SET_QUOTA",
            MsgType::Invalid => "INVALID",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header that starts every message, in both directions.
///
/// `msg_type` stays a raw number: framing must not fail on a type this crate does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The message type number ([`MsgType::from_u32`] names it).
    pub msg_type: u32,
    /// Chosen by the client, echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// The transaction the request belongs to, 0 for none; echoed in the reply.
    pub tx_id: u32,
    /// Payload bytes after the header.
    pub len: u32,
}

impl Header {
    /// The named message type, if the number is one of `xs_wire.h`.
    pub fn kind(&self) -> Option<MsgType> {
        MsgType::from_u32(self.msg_type)
    }

    /// The 16 wire bytes (little-endian, as every Xen platform we serve).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.msg_type.to_le_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out
    }
}
