//! An async xenstore client: one task owns the [`xsio_xs_client::Client`] machine and the
//! connection; callers hold a cloneable [`XsHandle`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), xsio_io_tokio::xenstore::Error> {
//! use xsio_io_tokio::xenstore::{self, WatchItem};
//!
//! let xs = xenstore::open(Default::default()).await?; // as libxenstore finds the daemon
//! xs.write("/vm/1/name", "guest").await?;
//! let count = xs
//!     .transaction(|tx| async move {
//!         let n: u32 = tx.get("/vm/count").await.unwrap_or(0);
//!         tx.set("/vm/count", &(n + 1)).await?;
//!         Ok(n + 1)
//!     })
//!     .await?; // started again on EAGAIN, up to Config::transact_attempts
//! let mut watch = xs.watch("/vm", "vms").await?;
//! while let Some(item) = watch.next().await {
//!     match item {
//!         WatchItem::Event(event) => println!("{} changed", event.path),
//!         // The consumer fell behind: events were dropped, explicitly. Re-read /vm.
//!         WatchItem::Overflow(overflow) => println!("re-read {}", overflow.path),
//!     }
//! }
//! # let _ = count; Ok(()) }
//! ```
//!
//! # The connection
//!
//! The Unix socket of xenstored, or the xenbus device (`/dev/xen/xenbus`, the only way in
//! for a guest or a driver domain): the same wire, so the same machine. [`connect`] looks at
//! what the path is, as libxenstore does: a socket is connected, anything else is opened as
//! the device. [`open`] tries where libxenstore looks ([`xsio_xs_client::location`]).
//!
//! # Watches never stall replies and never lose events silently
//!
//! The task hands every watch event to the watch's own bounded queue at once
//! ([`xsio_xs_client::WatchQueue`], [`Config::max_queued_events`] events per watch), so a
//! consumer that stops reading never holds up the replies of other callers on the same
//! connection. When a watch's consumer falls that far behind, its queued events are
//! replaced by one [`WatchItem::Overflow`]: how many were lost and the watched path to
//! re-read. Nothing is dropped without the consumer being told.
//!
//! # Lifetimes
//!
//! The connection closes when every [`XsHandle`], [`Watch`] and [`Tx`] is dropped, or on
//! [`XsHandle::close`]; pending operations then fail once with
//! [`ClientError::ConnectionLost`] and watch streams end. Dropping a [`Watch`] removes the
//! watch on the daemon; dropping a transaction's future before it ends aborts the
//! transaction on the daemon.

mod task;
mod watch;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::sync::{mpsc, oneshot};
use xsio_core::OpId;
pub use xsio_xs_client::Error as ClientError;
use xsio_xs_client::location::{XENBUS_DEVICE, socket_paths};
use xsio_xs_client::{Client, DeviceArea, Response, TxId, TxOp, ValueError, XsValue};
pub use xsio_xs_client::{Config, Overflow, WatchEvent, WatchItem};
use xsio_xs_wire::{ErrorKind, Perm};

pub(crate) use task::{Control, L2Submit, connection_gone};
pub use watch::Watch;

/// Why an async xenstore call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon (or the device) could not be reached.
    #[error("cannot connect to xenstored at {path}: {source}")]
    Connect {
        /// The last path tried.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The operation failed: an error reply, a conflict past the retry limit
    /// ([`ClientError::Conflict`]), a timeout, the connection's end
    /// ([`ClientError::ConnectionLost`]), ...
    #[error(transparent)]
    Op(#[from] ClientError),
    /// A stored value is not of the type asked for.
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl Error {
    /// The daemon's error name, if the daemon answered with one (`ENOENT`, `EAGAIN`...).
    pub fn xs_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Op(err) => err.xs_kind(),
            _ => None,
        }
    }
}

/// What the connection's file descriptor is: both carry the same frames, but a socket is
/// written with `send` (no `SIGPIPE` when the daemon is gone) and the device with `write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A connected Unix stream socket (xenstored's).
    Socket,
    /// The xenbus device (`/dev/xen/xenbus`), or anything else read and written as a file.
    Device,
}

/// A cloneable handle to one xenstore connection; any number of tasks may use it at once
/// (their requests are pipelined on the connection).
#[derive(Clone, Debug)]
pub struct XsHandle {
    requests: mpsc::Sender<task::Request>,
    control: mpsc::UnboundedSender<Control>,
    config: Arc<Config>,
}

/// Connects to xenstored where libxenstore would: `$XENSTORED_PATH`, else
/// `$XENSTORED_RUNDIR/socket`, else the usual socket paths, then the xenbus device.
pub async fn open(config: Config) -> Result<XsHandle, Error> {
    let mut paths = socket_paths(|name| std::env::var_os(name));
    paths.push(PathBuf::from(XENBUS_DEVICE));
    let mut last = None;
    for path in paths {
        match connect(&path, config.clone()).await {
            Ok(handle) => return Ok(handle),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| Error::Connect {
        path: PathBuf::from(XENBUS_DEVICE),
        source: io::ErrorKind::NotFound.into(),
    }))
}

/// Connects to `path`: a Unix socket is connected, anything else (the xenbus device) is
/// opened for reading and writing. Spawns the connection's task on the current runtime.
pub async fn connect(path: impl AsRef<Path>, config: Config) -> Result<XsHandle, Error> {
    let path = path.as_ref();
    let failed = |source: io::Error| Error::Connect {
        path: path.to_owned(),
        source,
    };
    let is_socket = std::fs::metadata(path)
        .map_err(failed)?
        .file_type()
        .is_socket();
    let (fd, transport) = if is_socket {
        // A blocking connect, off the runtime's threads, as libxenstore connects: a
        // non-blocking one fails with EAGAIN while the daemon's listen queue is full
        // (C xenstored accepts one connection per turn of its loop).
        let owned = path.to_owned();
        let stream = tokio::task::spawn_blocking(move || UnixStream::connect(owned))
            .await
            .map_err(|join| failed(io::Error::other(join)))?
            .map_err(failed)?;
        (OwnedFd::from(stream), Transport::Socket)
    } else {
        let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| failed(e.into()))?;
        (fd, Transport::Device)
    };
    from_fd(fd, transport, config).map_err(failed)
}

/// Drives a descriptor that is already connected (a socket from a socketpair, a guest's
/// ring bridge, the xenbus device opened by the caller): sets it non-blocking and spawns
/// the connection's task on the current runtime.
pub fn from_fd(fd: OwnedFd, transport: Transport, config: Config) -> io::Result<XsHandle> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    let io = register(fd)?;
    let (requests, request_rx) = mpsc::channel(64);
    let (control, control_rx) = mpsc::unbounded_channel();
    let config = Arc::new(config);
    let client = Client::new((*config).clone(), now());
    let task = task::Task::new(
        io,
        transport,
        client,
        request_rx,
        control.clone(),
        control_rx,
    );
    tokio::spawn(task.run());
    Ok(XsHandle {
        requests,
        control,
        config,
    })
}

/// Registers `fd` with tokio's reactor.
///
/// Tokio deprecated the safe constructor because an arbitrary `AsRawFd` inner value could
/// close or swap its descriptor while registered; an `OwnedFd` owned by the `AsyncFd`
/// cannot, which is the contract its `unsafe` replacement asks the caller to uphold. The
/// safe call keeps this crate free of `unsafe`.
#[allow(deprecated)]
fn register(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    tokio::io::unix::AsyncFd::new(fd)
}

/// The clock the machine is fed: tokio's, so a test with a paused clock drives the
/// machine's deadlines too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A command started on the machine inside the connection's task.
type Start = Box<dyn FnOnce(&mut Client, Instant) -> OpId + Send>;

impl XsHandle {
    /// The configuration the connection runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs any command of the machine (`start` is called inside the connection's task
    /// with the machine and the time, and returns the command's id) and waits for its
    /// result: the way to the commands this facade does not wrap (`INTRODUCE`, `CONTROL`,
    /// `reset_watches`, ...).
    pub async fn call(
        &self,
        start: impl FnOnce(&mut Client, Instant) -> OpId + Send + 'static,
    ) -> Result<Response, Error> {
        let (done, result) = oneshot::channel();
        let request = task::Request::Call(Box::new(start) as Start, done);
        if self.requests.send(request).await.is_err() {
            return Err(ClientError::NotConnected.into());
        }
        match result.await {
            Ok(result) => result.map_err(Error::Op),
            // The task ended without answering: only once the connection is gone.
            Err(_) => Err(ClientError::ConnectionLost.into()),
        }
    }

    /// Reads a value.
    pub async fn read(&self, path: &str) -> Result<Bytes, Error> {
        self.read_in(None, path).await
    }

    async fn read_in(&self, tx: Option<TxId>, path: &str) -> Result<Bytes, Error> {
        let path = path.to_owned();
        let response = self.call(move |c, now| c.read(now, tx, &path)).await?;
        Ok(response.into_value().unwrap_or_default())
    }

    /// Reads a typed value (`u32`, `i64`, `bool` as `0`/`1`, `String`).
    pub async fn get<V: XsValue>(&self, path: &str) -> Result<V, Error> {
        Ok(V::from_xs(&self.read(path).await?)?)
    }

    /// Writes a value.
    pub async fn write(&self, path: &str, value: impl Into<Bytes>) -> Result<(), Error> {
        self.write_in(None, path, value.into()).await
    }

    async fn write_in(&self, tx: Option<TxId>, path: &str, value: Bytes) -> Result<(), Error> {
        let path = path.to_owned();
        self.call(move |c, now| c.write(now, tx, &path, value))
            .await
            .map(drop)
    }

    /// Writes a typed value.
    pub async fn set<V: XsValue>(&self, path: &str, value: &V) -> Result<(), Error> {
        self.write(path, value.to_xs()).await
    }

    /// Creates a node (no-op if it exists).
    pub async fn mkdir(&self, path: &str) -> Result<(), Error> {
        self.unit(None, path, |c, now, tx, path| c.mkdir(now, tx, path))
            .await
    }

    /// Removes a subtree (`ENOENT` if the parent is missing too).
    pub async fn rm(&self, path: &str) -> Result<(), Error> {
        self.unit(None, path, |c, now, tx, path| c.rm(now, tx, path))
            .await
    }

    /// Removes a subtree; already gone is fine.
    pub async fn rm_tree(&self, path: &str) -> Result<(), Error> {
        self.unit(None, path, |c, now, tx, path| c.rm_tree(now, tx, path))
            .await
    }

    async fn unit(
        &self,
        tx: Option<TxId>,
        path: &str,
        command: fn(&mut Client, Instant, Option<TxId>, &str) -> OpId,
    ) -> Result<(), Error> {
        let path = path.to_owned();
        self.call(move |c, now| command(c, now, tx, &path))
            .await
            .map(drop)
    }

    /// Whether a node exists.
    pub async fn exists(&self, path: &str) -> Result<bool, Error> {
        self.exists_in(None, path).await
    }

    async fn exists_in(&self, tx: Option<TxId>, path: &str) -> Result<bool, Error> {
        let path = path.to_owned();
        let response = self.call(move |c, now| c.exists(now, tx, &path)).await?;
        Ok(matches!(response, Response::Bool(true)))
    }

    /// A node's child names.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>, Error> {
        self.directory_in(None, path).await
    }

    async fn directory_in(&self, tx: Option<TxId>, path: &str) -> Result<Vec<String>, Error> {
        let path = path.to_owned();
        let response = self.call(move |c, now| c.directory(now, tx, &path)).await?;
        Ok(response.into_names().unwrap_or_default())
    }

    /// A node's permissions, owner first.
    pub async fn get_perms(&self, path: &str) -> Result<Vec<Perm>, Error> {
        let path = path.to_owned();
        match self
            .call(move |c, now| c.get_perms(now, None, &path))
            .await?
        {
            Response::Perms(perms) => Ok(perms),
            other => Err(unexpected(other)),
        }
    }

    /// Sets a node's permissions, owner first.
    pub async fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), Error> {
        self.set_perms_in(None, path, perms).await
    }

    async fn set_perms_in(
        &self,
        tx: Option<TxId>,
        path: &str,
        perms: &[Perm],
    ) -> Result<(), Error> {
        let (path, perms) = (path.to_owned(), perms.to_vec());
        self.call(move |c, now| c.set_perms(now, tx, &path, &perms))
            .await
            .map(drop)
    }

    /// `/local/domain/<domid>`.
    pub async fn get_domain_path(&self, domid: u32) -> Result<String, Error> {
        match self
            .call(move |c, now| c.get_domain_path(now, domid))
            .await?
        {
            Response::Path(path) => Ok(path),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `ops` in one transaction, pipelined, retried on conflict by the machine
    /// ([`Client::transact`]); one result per op.
    pub async fn transact(&self, ops: Vec<TxOp>) -> Result<Vec<Response>, Error> {
        match self.call(move |c, now| c.transact(now, ops)).await? {
            Response::List(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Writes every `(key, value)` under `dir` in one transaction, retried on conflict.
    pub async fn write_all(&self, dir: &str, kvs: &[(&str, Bytes)]) -> Result<(), Error> {
        let dir = dir.to_owned();
        let kvs: Vec<(String, Bytes)> = kvs.iter().map(|(k, v)| ((*k).into(), v.clone())).collect();
        self.call(move |c, now| {
            let kvs: Vec<(&str, Bytes)> =
                kvs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            c.write_all(now, &dir, &kvs)
        })
        .await
        .map(drop)
    }

    /// Creates a frontend/backend device area in one transaction (see [`DeviceArea`]).
    pub async fn create_device_area(&self, area: &DeviceArea) -> Result<(), Error> {
        let area = area.clone();
        self.call(move |c, now| c.create_device_area(now, &area))
            .await
            .map(drop)
    }

    /// Runs `body` inside a transaction and commits it. On `EAGAIN`, from the commit or
    /// from an operation inside (the body returns it), the transaction is aborted and
    /// `body` runs again, up to [`Config::transact_attempts`] times in all; then it fails
    /// with [`ClientError::Conflict`]. If `body` fails otherwise, the transaction is
    /// aborted and its error returned. If this future is dropped before the end, the
    /// transaction is aborted on the daemon.
    ///
    /// `body` gets a [`Tx`] (an owned, cloneable handle on the transaction) each time.
    pub async fn transaction<T, F, Fut>(&self, mut body: F) -> Result<T, Error>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let attempts = self.config.transact_attempts;
        for _ in 0..attempts {
            let id = match self.call(|c, now| c.transaction_start(now)).await? {
                Response::Tx(id) => id,
                other => return Err(unexpected(other)),
            };
            let mut guard = TxGuard {
                id,
                control: self.control.clone(),
                armed: true,
            };
            let tx = Tx {
                handle: self.clone(),
                id,
            };
            let outcome = body(tx).await;
            let commit = outcome.is_ok();
            let end = self
                .call(move |c, now| c.transaction_end(now, id, commit))
                .await;
            guard.armed = false;
            match outcome {
                Ok(value) => match end {
                    Ok(_) => return Ok(value),
                    Err(err) if err.xs_kind() == Some(ErrorKind::Eagain) => continue,
                    Err(err) => return Err(err),
                },
                // The abort's own result does not matter: the body's error does.
                Err(err) if err.xs_kind() == Some(ErrorKind::Eagain) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(ClientError::Conflict { attempts }.into())
    }

    /// Registers a watch on `path` with `token` (unique on this connection) and returns
    /// its stream of [`WatchItem`]s, the daemon's initial event first. At most
    /// [`Config::max_queued_events`] wait unread; past that they become one
    /// [`WatchItem::Overflow`]. Dropping the stream removes the watch.
    pub async fn watch(&self, path: &str, token: &str) -> Result<Watch, Error> {
        let (done, registered) = oneshot::channel();
        let request = task::Request::Watch {
            path: path.to_owned(),
            token: token.to_owned(),
            done,
        };
        if self.requests.send(request).await.is_err() {
            return Err(ClientError::NotConnected.into());
        }
        match registered.await {
            Ok(Ok(parts)) => Ok(Watch::new(parts, self.clone())),
            Ok(Err(err)) => Err(err.into()),
            Err(_) => Err(ClientError::ConnectionLost.into()),
        }
    }

    /// Closes the connection: pending operations fail with
    /// [`ClientError::ConnectionLost`], watch streams end.
    pub async fn close(&self) {
        let _ = self.requests.send(task::Request::Close).await;
    }

    /// Hands an operation of the L2 driver to the task (never waits). False when the task
    /// is gone: then nobody else will answer it.
    pub(crate) fn submit_l2(&self, submit: L2Submit) -> bool {
        self.control.send(Control::L2(submit)).is_ok()
    }
}

/// Aborts its transaction on the daemon when dropped while armed (the transaction's future
/// was dropped before it ended).
struct TxGuard {
    id: TxId,
    control: mpsc::UnboundedSender<Control>,
    armed: bool,
}

impl Drop for TxGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.control.send(Control::Abort(self.id));
        }
    }
}

/// A transaction in progress, inside [`XsHandle::transaction`]: an owned, cloneable handle
/// whose operations carry the transaction's id.
#[derive(Clone, Debug)]
pub struct Tx {
    handle: XsHandle,
    id: TxId,
}

impl Tx {
    /// The transaction's id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// Reads a value as the transaction sees it.
    pub async fn read(&self, path: &str) -> Result<Bytes, Error> {
        self.handle.read_in(Some(self.id), path).await
    }

    /// Reads a typed value.
    pub async fn get<V: XsValue>(&self, path: &str) -> Result<V, Error> {
        Ok(V::from_xs(&self.read(path).await?)?)
    }

    /// Writes a value.
    pub async fn write(&self, path: &str, value: impl Into<Bytes>) -> Result<(), Error> {
        self.handle
            .write_in(Some(self.id), path, value.into())
            .await
    }

    /// Writes a typed value.
    pub async fn set<V: XsValue>(&self, path: &str, value: &V) -> Result<(), Error> {
        self.write(path, value.to_xs()).await
    }

    /// Creates a node.
    pub async fn mkdir(&self, path: &str) -> Result<(), Error> {
        self.handle
            .unit(Some(self.id), path, |c, now, tx, path| {
                c.mkdir(now, tx, path)
            })
            .await
    }

    /// Removes a subtree.
    pub async fn rm(&self, path: &str) -> Result<(), Error> {
        self.handle
            .unit(Some(self.id), path, |c, now, tx, path| c.rm(now, tx, path))
            .await
    }

    /// Whether a node exists, as the transaction sees it.
    pub async fn exists(&self, path: &str) -> Result<bool, Error> {
        self.handle.exists_in(Some(self.id), path).await
    }

    /// A node's child names.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>, Error> {
        self.handle.directory_in(Some(self.id), path).await
    }

    /// Sets a node's permissions.
    pub async fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), Error> {
        self.handle.set_perms_in(Some(self.id), path, perms).await
    }
}

fn unexpected(response: Response) -> Error {
    ClientError::Protocol(format!("unexpected result {response:?}")).into()
}
