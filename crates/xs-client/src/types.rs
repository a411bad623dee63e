//! The values that go in and out of the client: outputs, results, errors, typed values.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use xsio_core::{OpId, Transmit};
use xsio_xs_wire::path::PathError;
use xsio_xs_wire::{EncodeError, ErrorKind, Perm, XENSTORE_PAYLOAD_MAX};

/// Limits and policies of a [`Client`](crate::Client).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// How long an operation may wait for its replies before it fails with
    /// [`Error::Timeout`]; `None` waits for ever (libxenstore's behaviour), and so does a
    /// timeout too large to represent (`Duration::MAX`). Default 60 s.
    pub request_timeout: Option<Duration>,
    /// Requests on the wire at once; more fail at once with [`Error::TooManyInFlight`].
    /// Default 1024.
    pub max_in_flight: usize,
    /// Attempts [`Client::transact`](crate::Client::transact) makes before it gives up with
    /// [`Error::Conflict`] (the first try counts). Default 16.
    pub transact_attempts: u32,
    /// Times a chunked directory listing starts again because the node changed between
    /// chunks, before it fails with `EAGAIN`. Default 8.
    pub directory_part_restarts: u32,
    /// Bytes of child names a chunked directory listing may collect. Default 1 MiB.
    pub max_directory_bytes: usize,
    /// The largest reply payload accepted; a bigger frame breaks the connection.
    /// Default [`XENSTORE_PAYLOAD_MAX`].
    pub max_payload: usize,
    /// Watch events a driver keeps per watch for a consumer that has not taken them yet;
    /// one more replaces them by an explicit overflow marker ([`WatchQueue`]). The machine
    /// itself queues nothing: it hands every event out at once. Default 1024.
    ///
    /// [`WatchQueue`]: crate::WatchQueue
    pub max_queued_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Some(Duration::from_secs(60)),
            max_in_flight: 1024,
            transact_attempts: 16,
            directory_part_restarts: 8,
            max_directory_bytes: 1 << 20,
            max_payload: XENSTORE_PAYLOAD_MAX,
            max_queued_events: 1024,
        }
    }
}

/// A transaction id, as the daemon gave it. Pass it to operations that belong to the
/// transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u32);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx#{}", self.0)
    }
}

/// What the client asks its driver to do or tells it. Drain with
/// [`Client::poll_output`](crate::Client::poll_output) until `None` after every call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Write these bytes to the daemon, in order, before any later transmit. (They never
    /// carry descriptors.)
    Transmit(Transmit),
    /// The operation `id` has finished. Every id a command returned comes back here exactly
    /// once.
    Done {
        /// The operation.
        id: OpId,
        /// Its result.
        result: Result<Response, Error>,
    },
    /// A watch fired.
    Event(WatchEvent),
    /// The connection is over; close the socket. Comes once, after the `Done` of every
    /// operation that was pending.
    Closed(crate::CloseReason),
}

/// A watch event, routed to the watch that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The id [`Client::watch`](crate::Client::watch) returned.
    pub watch: OpId,
    /// The path that changed (relative if the watch was).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// The success value of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The operation succeeded and returns nothing (write, mkdir, rm, watch, commit...).
    Unit,
    /// A node's value (read), or a control command's answer.
    Value(Bytes),
    /// Child names (directory).
    Names(Vec<String>),
    /// A permission list, owner first.
    Perms(Vec<Perm>),
    /// A new transaction.
    Tx(TxId),
    /// A path (get_domain_path).
    Path(String),
    /// A yes/no answer (is_domain_introduced, exists).
    Bool(bool),
    /// The results of a transaction's operations, in order (transact and its helpers).
    List(Vec<Response>),
}

impl Response {
    /// The value of a read.
    pub fn into_value(self) -> Option<Bytes> {
        match self {
            Response::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The names of a directory listing.
    pub fn into_names(self) -> Option<Vec<String>> {
        match self {
            Response::Names(n) => Some(n),
            _ => None,
        }
    }

    /// A read's value parsed as `V`.
    pub fn parse<V: XsValue>(&self) -> Result<V, ValueError> {
        match self {
            Response::Value(v) => V::from_xs(v),
            _ => Err(ValueError {
                expected: std::any::type_name::<V>(),
                found: format!("{self:?}"),
            }),
        }
    }
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon answered with this error.
    #[error("xenstore error {0}")]
    Xs(ErrorKind),
    /// [`Client::transact`](crate::Client::transact) hit `EAGAIN` on every attempt.
    #[error("transaction conflicted {attempts} times; giving up")]
    Conflict {
        /// Attempts made.
        attempts: u32,
    },
    /// The connection closed or broke while the operation was pending.
    #[error("connection to xenstored lost")]
    ConnectionLost,
    /// The operation was started after the connection had closed.
    #[error("not connected to xenstored")]
    NotConnected,
    /// No reply within [`Config::request_timeout`].
    #[error("no reply from xenstored in time")]
    Timeout,
    /// The daemon's reply did not make sense for the request.
    #[error("bad reply from xenstored: {0}")]
    Protocol(String),
    /// The request cannot be encoded (too large, a NUL in a path).
    #[error("request cannot be sent: {0}")]
    Encode(#[from] EncodeError),
    /// The path is not a valid xenstore path.
    #[error("invalid path {path:?}: {source}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        source: PathError,
    },
    /// A watch with this token is already registered on this client.
    #[error("a watch with token {0:?} is already registered")]
    DuplicateToken(String),
    /// The watch id is not a registered watch.
    #[error("no such watch {0}")]
    UnknownWatch(OpId),
    /// [`Config::max_in_flight`] requests are already waiting.
    #[error("too many requests in flight")]
    TooManyInFlight,
}

impl Error {
    /// The daemon's error name, if the daemon answered with one.
    pub fn xs_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Xs(kind) => Some(*kind),
            _ => None,
        }
    }
}

/// A value stored in xenstore as text: what printf/scanf-style helpers read and write.
///
/// ```
/// use xsio_xs_client::XsValue;
///
/// assert_eq!(&42u32.to_xs()[..], b"42");
/// assert_eq!(i64::from_xs(b"-7"), Ok(-7));
/// assert_eq!(bool::from_xs(b"1"), Ok(true));
/// assert!(bool::from_xs(b"yes").is_err());
/// assert!(u32::from_xs(b" 4").is_err());
/// ```
pub trait XsValue: Sized {
    /// The bytes to store.
    fn to_xs(&self) -> Bytes;
    /// Reads stored bytes, strictly.
    fn from_xs(bytes: &[u8]) -> Result<Self, ValueError>;
}

/// A stored value is not of the expected type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found:?}")]
pub struct ValueError {
    /// The type asked for.
    pub expected: &'static str,
    /// What was stored (lossy text).
    pub found: String,
}

fn value_error<V>(bytes: &[u8]) -> ValueError {
    ValueError {
        expected: std::any::type_name::<V>(),
        found: String::from_utf8_lossy(bytes).into_owned(),
    }
}

macro_rules! xs_number {
    ($($t:ty),*) => {$(
        impl XsValue for $t {
            fn to_xs(&self) -> Bytes {
                Bytes::from(self.to_string())
            }
            fn from_xs(bytes: &[u8]) -> Result<Self, ValueError> {
                // Digits with an optional leading '-': what printf("%d") writes. No spaces,
                // no '+', no hex, unlike scanf, so that a value has one spelling.
                let text = std::str::from_utf8(bytes).map_err(|_| value_error::<$t>(bytes))?;
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(value_error::<$t>(bytes));
                }
                text.parse().map_err(|_| value_error::<$t>(bytes))
            }
        }
    )*};
}

xs_number!(u32, u64, i32, i64);

/// `"1"` and `"0"`, as libxl writes booleans.
impl XsValue for bool {
    fn to_xs(&self) -> Bytes {
        Bytes::from_static(if *self { b"1" } else { b"0" })
    }
    fn from_xs(bytes: &[u8]) -> Result<Self, ValueError> {
        match bytes {
            b"1" => Ok(true),
            b"0" => Ok(false),
            _ => Err(value_error::<bool>(bytes)),
        }
    }
}

/// UTF-8 text.
impl XsValue for String {
    fn to_xs(&self) -> Bytes {
        Bytes::from(self.clone())
    }
    fn from_xs(bytes: &[u8]) -> Result<Self, ValueError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| value_error::<String>(bytes))
    }
}

/// One operation of a transaction run by [`Client::transact`](crate::Client::transact).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxOp {
    /// Read a value; its result is [`Response::Value`].
    Read(String),
    /// Write a value.
    Write(String, Bytes),
    /// Create a node (no-op if it exists).
    Mkdir(String),
    /// Remove a subtree.
    Rm(String),
    /// Set a node's permissions, owner first.
    SetPerms(String, Vec<Perm>),
    /// List children; its result is [`Response::Names`].
    Directory(String),
}

impl TxOp {
    pub(crate) fn path(&self) -> &str {
        match self {
            TxOp::Read(p)
            | TxOp::Write(p, _)
            | TxOp::Mkdir(p)
            | TxOp::Rm(p)
            | TxOp::SetPerms(p, _)
            | TxOp::Directory(p) => p,
        }
    }
}

/// A frontend/backend pair of device areas, as a toolstack creates them when it adds a
/// device: each directory is owned by its own domain and readable by the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceArea {
    /// `/local/domain/<frontend>/device/<kind>/<devid>`.
    pub frontend_path: String,
    /// The guest's domid.
    pub frontend_domid: u32,
    /// `/local/domain/<backend>/backend/<kind>/<frontend>/<devid>`.
    pub backend_path: String,
    /// The driver domain's domid (0 for dom0).
    pub backend_domid: u32,
    /// Keys written under the frontend directory (relative names).
    pub frontend_keys: Vec<(String, Bytes)>,
    /// Keys written under the backend directory (relative names).
    pub backend_keys: Vec<(String, Bytes)>,
}
