//! A blocking xenstore client: the [`xsio_xs_client::Client`] machine driven over a Unix
//! socket, one call at a time.
//!
//! ```no_run
//! use xsio_io_std::xenstore::XsConn;
//!
//! let mut xs = XsConn::open()?; // $XENSTORED_PATH, else the usual socket paths
//! let domid: u32 = xs.get("/local/domain/0/domid")?;
//! let count = xs.transaction(|tx| {
//!     let n: u32 = tx.get("/vm/count").unwrap_or(0);
//!     tx.set("/vm/count", &(n + 1))?;
//!     Ok(n + 1)
//! })?; // started again on EAGAIN, up to Config::transact_attempts
//! println!("dom{domid}: count is now {count}");
//! # Ok::<(), xsio_io_std::xenstore::XsError>(())
//! ```

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use xsio_core::{Input, OpId};
use xsio_xs_client::{
    Client, Config, DeviceArea, Error, Output, Response, TxId, TxOp, ValueError, WatchItem,
    WatchQueues, XsValue,
};
use xsio_xs_wire::{ErrorKind, Perm};

use crate::unix::{Outgoing, UnixConn, now};

/// The project README's examples, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use xsio_xs_client::location::{DEFAULT_SOCKET_PATHS, socket_paths};

/// Why a blocking xenstore call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XsError {
    /// No socket could be connected.
    #[error("cannot connect to xenstored at {path}: {source}")]
    Connect {
        /// The last path tried.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing the socket failed (the connection is then closed).
    #[error("xenstored connection: {0}")]
    Io(#[from] io::Error),
    /// The operation failed (an error reply, a conflict, a timeout, ...).
    #[error(transparent)]
    Op(#[from] Error),
    /// A stored value is not of the type asked for.
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl XsError {
    /// The daemon's error name, if the daemon answered with one (`ENOENT`, `EACCES`...).
    pub fn xs_kind(&self) -> Option<ErrorKind> {
        match self {
            XsError::Op(err) => err.xs_kind(),
            _ => None,
        }
    }
}

/// A blocking connection to xenstored.
///
/// Each call sends its request and steps the [`Client`] machine (reading the socket,
/// feeding the real clock to its timers) until that operation completes. Watch events that
/// arrive meanwhile are queued for [`XsConn::next_event`], per watch, at most
/// [`Config::max_queued_events`] of them: past that a watch's queued events are replaced by
/// one [`WatchItem::Overflow`] (re-read what the watch covers), so a watch nobody reads
/// cannot grow memory and never loses events without saying so.
pub struct XsConn {
    conn: UnixConn,
    /// Requests not yet written: a daemon that stops reading must not block us past the
    /// machine's deadlines, so writes only go as far as the socket takes them.
    outgoing: Outgoing,
    client: Client,
    done: BTreeMap<OpId, Result<Response, Error>>,
    events: WatchQueues,
    buf: Box<[u8]>,
    attempts: u32,
}

impl std::fmt::Debug for XsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the 64 KiB receive buffer.
        f.debug_struct("XsConn")
            .field("conn", &self.conn)
            .field("client", &self.client)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl XsConn {
    /// Connects where libxenstore would (see [`socket_paths`]), with the default
    /// [`Config`].
    pub fn open() -> Result<XsConn, XsError> {
        XsConn::open_with(Config::default())
    }

    /// Like [`XsConn::open`], with a configuration.
    pub fn open_with(config: Config) -> Result<XsConn, XsError> {
        let mut last = None;
        for path in socket_paths(|name| std::env::var_os(name)) {
            match XsConn::connect_with(&path, config.clone()) {
                Ok(conn) => return Ok(conn),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| XsError::Connect {
            path: PathBuf::new(),
            source: io::ErrorKind::NotFound.into(),
        }))
    }

    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<XsConn, XsError> {
        XsConn::connect_with(path, Config::default())
    }

    /// Connects to the socket at `path` with a configuration.
    pub fn connect_with(path: impl AsRef<Path>, config: Config) -> Result<XsConn, XsError> {
        let path = path.as_ref();
        let conn = UnixConn::connect(path).map_err(|source| XsError::Connect {
            path: path.to_owned(),
            source,
        })?;
        Ok(XsConn::from_conn(conn, config))
    }

    /// Drives an already connected socket.
    pub fn from_conn(conn: UnixConn, config: Config) -> XsConn {
        let attempts = config.transact_attempts;
        XsConn {
            conn,
            outgoing: Outgoing::default(),
            events: WatchQueues::new(config.max_queued_events),
            client: Client::new(config, now()),
            done: BTreeMap::new(),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            attempts,
        }
    }

    /// The machine, for commands this facade does not wrap. Start an operation on it, then
    /// call [`XsConn::wait`] with its id.
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Reads a value.
    pub fn read(&mut self, path: &str) -> Result<Bytes, XsError> {
        self.read_in(None, path)
    }

    fn read_in(&mut self, tx: Option<TxId>, path: &str) -> Result<Bytes, XsError> {
        let op = self.client.read(now(), tx, path);
        Ok(self.wait(op)?.into_value().unwrap_or_default())
    }

    /// Reads a typed value (`u32`, `i64`, `bool` as `0`/`1`, `String`).
    pub fn get<V: XsValue>(&mut self, path: &str) -> Result<V, XsError> {
        Ok(V::from_xs(&self.read(path)?)?)
    }

    /// Writes a value.
    pub fn write(&mut self, path: &str, value: impl Into<Bytes>) -> Result<(), XsError> {
        let op = self.client.write(now(), None, path, value);
        self.wait(op).map(drop)
    }

    /// Writes a typed value.
    pub fn set<V: XsValue>(&mut self, path: &str, value: &V) -> Result<(), XsError> {
        self.write(path, value.to_xs())
    }

    /// Creates a node (no-op if it exists).
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        let op = self.client.mkdir(now(), None, path);
        self.wait(op).map(drop)
    }

    /// Removes a subtree (`ENOENT` if the parent is missing too).
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let op = self.client.rm(now(), None, path);
        self.wait(op).map(drop)
    }

    /// Removes a subtree; already gone is fine.
    pub fn rm_tree(&mut self, path: &str) -> Result<(), XsError> {
        let op = self.client.rm_tree(now(), None, path);
        self.wait(op).map(drop)
    }

    /// Whether a node exists.
    pub fn exists(&mut self, path: &str) -> Result<bool, XsError> {
        let op = self.client.exists(now(), None, path);
        Ok(matches!(self.wait(op)?, Response::Bool(true)))
    }

    /// A node's child names.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        let op = self.client.directory(now(), None, path);
        Ok(self.wait(op)?.into_names().unwrap_or_default())
    }

    /// A node's permissions, owner first.
    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, XsError> {
        let op = self.client.get_perms(now(), None, path);
        match self.wait(op)? {
            Response::Perms(perms) => Ok(perms),
            other => Err(unexpected(other)),
        }
    }

    /// Sets a node's permissions, owner first.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let op = self.client.set_perms(now(), None, path, perms);
        self.wait(op).map(drop)
    }

    /// `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: u32) -> Result<String, XsError> {
        let op = self.client.get_domain_path(now(), domid);
        match self.wait(op)? {
            Response::Path(path) => Ok(path),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `ops` in one transaction, retried on conflict (see
    /// [`Client::transact`]); one result per op.
    pub fn transact(&mut self, ops: Vec<TxOp>) -> Result<Vec<Response>, XsError> {
        let op = self.client.transact(now(), ops);
        match self.wait(op)? {
            Response::List(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Writes every `(key, value)` under `dir` in one transaction, retried on conflict.
    pub fn write_all(&mut self, dir: &str, kvs: &[(&str, Bytes)]) -> Result<(), XsError> {
        let op = self.client.write_all(now(), dir, kvs);
        self.wait(op).map(drop)
    }

    /// Creates a frontend/backend device area in one transaction (see [`DeviceArea`]).
    pub fn create_device_area(&mut self, area: &DeviceArea) -> Result<(), XsError> {
        let op = self.client.create_device_area(now(), area);
        self.wait(op).map(drop)
    }

    /// Runs `body` inside a transaction and commits it; on `EAGAIN` (from the commit or
    /// from an operation inside) starts again, up to [`Config::transact_attempts`] times,
    /// then fails with [`Error::Conflict`]. If `body` fails, the transaction is aborted and
    /// its error returned.
    pub fn transaction<T>(
        &mut self,
        mut body: impl FnMut(&mut Tx<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        for _ in 0..self.attempts {
            let op = self.client.transaction_start(now());
            let Response::Tx(id) = self.wait(op)? else {
                return Err(XsError::Op(Error::Protocol("no transaction id".into())));
            };
            let mut tx = Tx { conn: self, id };
            match body(&mut tx) {
                Ok(value) => {
                    let op = self.client.transaction_end(now(), id, true);
                    match self.wait(op) {
                        Ok(_) => return Ok(value),
                        Err(err) if err.xs_kind() == Some(ErrorKind::Eagain) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => {
                    let op = self.client.transaction_end(now(), id, false);
                    // The abort's own result does not matter: the body's error does.
                    let _ = self.wait(op);
                    if err.xs_kind() == Some(ErrorKind::Eagain) {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(XsError::Op(Error::Conflict {
            attempts: self.attempts,
        }))
    }

    /// Registers a watch; its events (the first one at once) come from
    /// [`XsConn::next_event`]. Returns the watch's id.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<OpId, XsError> {
        let op = self.client.watch(now(), path, token);
        self.wait(op).map(|_| op)
    }

    /// Removes a watch; its events still queued are forgotten.
    pub fn unwatch(&mut self, watch: OpId) -> Result<(), XsError> {
        let op = self.client.unwatch(now(), watch);
        self.events.forget(watch);
        self.wait(op).map(drop)
    }

    /// The next watch item, waiting until `deadline` (`None`: for ever): an event, or the
    /// overflow marker of a watch whose events were more than
    /// [`Config::max_queued_events`] (re-read what that watch covers). `Ok(None)` when
    /// the deadline passed first.
    pub fn next_event(&mut self, deadline: Option<Instant>) -> Result<Option<WatchItem>, XsError> {
        loop {
            self.drain()?;
            if let Some(event) = self.events.pop() {
                return Ok(Some(event));
            }
            if self.client.is_closed() {
                return Err(XsError::Op(Error::ConnectionLost));
            }
            let wake = earliest(deadline, self.client.poll_timeout());
            if !self.step(wake)? && deadline.is_some_and(|d| now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Watch events replaced by overflow markers so far (each marker says how many it
    /// stands for).
    pub fn lost_events(&self) -> u64 {
        self.events.lost()
    }

    /// Steps the machine until operation `op` (started on [`XsConn::client_mut`])
    /// completes, and returns its result.
    pub fn wait(&mut self, op: OpId) -> Result<Response, XsError> {
        loop {
            self.drain()?;
            if let Some(result) = self.done.remove(&op) {
                return result.map_err(XsError::Op);
            }
            self.step(self.client.poll_timeout())?;
        }
    }

    /// Waits for the socket (readable, or writable while requests wait to be written) until
    /// `wake`, feeds what came (or the time) to the machine. Returns whether the socket was
    /// readable.
    fn step(&mut self, wake: Option<Instant>) -> Result<bool, XsError> {
        let ready = self.conn.wait(wake, !self.outgoing.is_empty())?;
        if ready.writable {
            self.write_ready()?;
        }
        let readable = ready.readable;
        if readable {
            let mut fds: Vec<OwnedFd> = Vec::new();
            let result = self.conn.recv(&mut self.buf, &mut fds);
            drop(fds); // xenstore passes no descriptors: close any that came
            let at = now();
            let input = match result {
                Ok(0) => Input::<OwnedFd>::Closed,
                Ok(n) => Input::Bytes(&self.buf[..n]),
                Err(err) => {
                    self.client.handle_input(at, Input::<OwnedFd>::Closed);
                    return Err(err.into());
                }
            };
            // A framing error has failed every op; they come out of drain as results.
            self.client.handle_input(at, input);
        }
        self.client.handle_timeout(now());
        Ok(readable)
    }

    fn drain(&mut self) -> Result<(), XsError> {
        while let Some(output) = self.client.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Err(err) = self.outgoing.push(transmit) {
                        return Err(self.broken(err));
                    }
                }
                Output::Done { id, result } => {
                    self.done.insert(id, result);
                }
                Output::Event(event) => {
                    // An event of a watch removed meanwhile is not wanted any more.
                    if let Some(watched) = self.client.watched_path(event.watch) {
                        self.events.push(watched, event);
                    }
                }
                _ => {}
            }
        }
        self.write_ready()
    }

    /// Writes what the socket takes now, without blocking.
    fn write_ready(&mut self) -> Result<(), XsError> {
        self.outgoing
            .write_ready(&self.conn)
            .map_err(|err| self.broken(err))
    }

    /// The socket failed: the machine fails every operation, and nothing more is written.
    fn broken(&mut self, err: io::Error) -> XsError {
        self.outgoing.clear();
        self.client.handle_input(now(), Input::<OwnedFd>::Closed);
        self.collect_rest();
        err.into()
    }

    fn collect_rest(&mut self) {
        while let Some(output) = self.client.poll_output() {
            if let Output::Done { id, result } = output {
                self.done.insert(id, result);
            }
        }
    }
}

/// A transaction in progress, inside [`XsConn::transaction`].
#[derive(Debug)]
pub struct Tx<'a> {
    conn: &'a mut XsConn,
    id: TxId,
}

impl Tx<'_> {
    /// The transaction's id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// Reads a value as the transaction sees it.
    pub fn read(&mut self, path: &str) -> Result<Bytes, XsError> {
        self.conn.read_in(Some(self.id), path)
    }

    /// Reads a typed value.
    pub fn get<V: XsValue>(&mut self, path: &str) -> Result<V, XsError> {
        Ok(V::from_xs(&self.read(path)?)?)
    }

    /// Writes a value.
    pub fn write(&mut self, path: &str, value: impl Into<Bytes>) -> Result<(), XsError> {
        let op = self.conn.client.write(now(), Some(self.id), path, value);
        self.conn.wait(op).map(drop)
    }

    /// Writes a typed value.
    pub fn set<V: XsValue>(&mut self, path: &str, value: &V) -> Result<(), XsError> {
        self.write(path, value.to_xs())
    }

    /// Creates a node.
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        let op = self.conn.client.mkdir(now(), Some(self.id), path);
        self.conn.wait(op).map(drop)
    }

    /// Removes a subtree.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let op = self.conn.client.rm(now(), Some(self.id), path);
        self.conn.wait(op).map(drop)
    }

    /// Whether a node exists, as the transaction sees it.
    pub fn exists(&mut self, path: &str) -> Result<bool, XsError> {
        let op = self.conn.client.exists(now(), Some(self.id), path);
        Ok(matches!(self.conn.wait(op)?, Response::Bool(true)))
    }

    /// A node's child names.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        let op = self.conn.client.directory(now(), Some(self.id), path);
        Ok(self.conn.wait(op)?.into_names().unwrap_or_default())
    }

    /// Sets a node's permissions.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let op = self
            .conn
            .client
            .set_perms(now(), Some(self.id), path, perms);
        self.conn.wait(op).map(drop)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn unexpected(response: Response) -> XsError {
    XsError::Op(Error::Protocol(format!("unexpected result {response:?}")))
}

/// The socket, for a driver that waits on several connections at once (`poll(2)`).
impl std::os::fd::AsFd for XsConn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.conn.stream().as_fd()
    }
}
