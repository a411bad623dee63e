//! Errors: QEMU's error replies, command failures, and why a connection ended.

use serde::Deserialize;

use crate::wire::WireError;

/// An error reply from QEMU: `{"error": {"class": ..., "desc": ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("QEMU error {class}: {desc}")]
pub struct QmpError {
    /// The error class, the only part meant for programs.
    pub class: ErrorClass,
    /// A human-readable description; its wording is not stable.
    #[serde(default)]
    pub desc: String,
}

/// The class of a QMP error reply.
///
/// QEMU may add classes; any class not listed here arrives as [`ErrorClass::Unknown`] with
/// its name, so matching stays possible without a new release of this crate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Most errors.
    GenericError,
    /// The command does not exist (or negotiation is not done, or is already done).
    CommandNotFound,
    /// A device exists but is not active (for example a balloon without a driver).
    DeviceNotActive,
    /// No device with that name or id.
    DeviceNotFound,
    /// Any other class, with its name as QEMU sent it (for example `KVMMissingCap`).
    Unknown(String),
}

impl From<String> for ErrorClass {
    fn from(name: String) -> Self {
        match name.as_str() {
            "GenericError" => ErrorClass::GenericError,
            "CommandNotFound" => ErrorClass::CommandNotFound,
            "DeviceNotActive" => ErrorClass::DeviceNotActive,
            "DeviceNotFound" => ErrorClass::DeviceNotFound,
            _ => ErrorClass::Unknown(name),
        }
    }
}

impl ErrorClass {
    /// The class name as QEMU spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::Unknown(name) => name,
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command did not succeed. Every command ends exactly once, with a reply or one of
/// these (invariant I1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// QEMU answered with an error reply.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// No reply before the command's deadline. If the command was already sent, QEMU may
    /// still run it; its late reply is ignored.
    #[error("no reply before the command's deadline")]
    Timeout,
    /// The caller cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The connection closed (by QEMU or by the caller) before a reply came.
    #[error("the connection closed before the reply")]
    Disconnected,
    /// The connection failed because QEMU broke the protocol.
    #[error("the connection failed: {0}")]
    Protocol(ProtocolError),
    /// Too many commands were waiting to be sent (`Config::max_queued`).
    #[error("too many commands queued")]
    Overloaded,
    /// The reply came but did not have the shape the typed helper expected.
    #[error("unexpected reply shape: {reason}")]
    BadReply {
        /// What `serde_json` said.
        reason: String,
    },
}

/// A protocol violation that ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes could not be framed or decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The first message was not a greeting.
    #[error("expected the QMP greeting first")]
    ExpectedGreeting,
    /// A second greeting arrived.
    #[error("a second greeting arrived")]
    UnexpectedGreeting,
    /// No greeting, or no answer to `qmp_capabilities`, before the negotiation deadline.
    #[error("capability negotiation did not finish in time")]
    NegotiationTimeout,
    /// QEMU refused `qmp_capabilities`.
    #[error("capability negotiation refused: {0}")]
    NegotiationRefused(QmpError),
    /// An error reply without `id` while commands were in flight: it belongs to no command.
    #[error("an error reply without id: {0}")]
    UnattributedError(QmpError),
    /// A success reply without `id`.
    #[error("a success reply without id")]
    UnattributedReturn,
}

/// Why the connection ended, reported once as `Output::Closed`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// QEMU closed the stream (or the driver saw it fail).
    #[error("QEMU closed the connection")]
    PeerClosed,
    /// The caller called `Client::close`.
    #[error("closed by the caller")]
    ClosedByCaller,
    /// QEMU broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl CloseReason {
    pub(crate) fn command_error(&self) -> CommandError {
        match self {
            CloseReason::PeerClosed | CloseReason::ClosedByCaller => CommandError::Disconnected,
            CloseReason::Protocol(p) => CommandError::Protocol(p.clone()),
        }
    }
}
