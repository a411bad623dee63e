//! Async drivers for the xen-sansio machines, on tokio.
//!
//! The machines do no I/O; here one tokio task owns a machine and its socket, and callers
//! talk to it through a cloneable handle (an `mpsc` channel in, a `oneshot` per operation
//! out). The socket is a `tokio::net::UnixStream`; descriptors travel with `SCM_RIGHTS`
//! through `rustix`'s `sendmsg`/`recvmsg` inside `readable()`/`writable()` + `try_io`, and
//! the machine's deadlines become `tokio::time::sleep_until`. No `unsafe` here either.
//!
//! - [`qmp`]: a QMP connection ([`qmp::connect`], [`qmp::QmpHandle`]).
//! - [`dm`]: QEMU on a pre-opened QMP socket, and the toolstack's QMP, file and process
//!   operations (`xsio-dm`) run against it ([`dm::Qemu`]).
//! - [`xenstore`]: a xenstore connection, on the daemon's socket or the xenbus device
//!   ([`xenstore::connect`], [`xenstore::XsHandle`]): reads, writes, transactions retried on
//!   `EAGAIN`, watch streams that are bounded and never lose events silently.
//! - [`l2`]: the toolstack machines (xenbus, device) on xenstore connections, the async
//!   twin of `xsio_io_std::l2` ([`l2::XsLinks`], [`l2::run_until`]).
//! - [`host`]: the machines' host operations on a real host ([`host::Host`]: hotplug
//!   scripts as tokio child processes, domain info and device-model liveness from the
//!   caller), run by the L2 driver beside the xenstore connections.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dm;
pub mod host;
pub mod l2;
pub mod qmp;
pub mod xenstore;
