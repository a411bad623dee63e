//! CD-ROM media change (insert, eject) as a sans-IO machine: libxl's `libxl_cdrom_insert`,
//! with its flaws fixed.
//!
//! [`MediaChange`] changes the medium of a guest's emulated CD-ROM drive. It finds the
//! drive by the guest's name for it (`hdc`, through `xsio-vbd`: device id 5632) in the
//! toolstack entry `/libxl/<domid>/device/vbd/<devid>`, checks that it is a cdrom
//! (`device-type`) served by `qdisk` or `phy`, takes the per-domain lock on device changes
//! (a [`HostOp::Lock`](xsio_ops::HostOp::Lock) the driver implements: in process for a
//! simulator, a lock file on a host), and then, by [`DeviceModel`]:
//!
//! | device model | steps |
//! |---|---|
//! | [`DeviceModel::Xenstore`] (qemu-traditional, PV) | one transaction writes `type` and `params` (`<fmt>:<path>`, the bare path for `phy`, `""` to eject) into the backend directory and the toolstack entry; a conflicting commit is retried, [`Config::transaction_attempts`] times at most |
//! | [`DeviceModel::Qmp`] (upstream QEMU) | `query-version`; `eject` of drive `ide-<devid>` (`id`, or `device` before QEMU 2.8; `force` on by default); a transaction saying the drive is empty; the driver opens the image read-only; `add-fd` with it and an `opaque` label; `blockdev-change-medium` on `/dev/fdset/N` with QEMU's format name (`vpc` for vhd; `change` before 2.8); `remove-fd` of the set (QEMU holds its own duplicate); the final transaction. An eject stops after the eject with the final transaction. |
//!
//! A domain whose device model runs in a stub domain is refused with
//! [`CdromError::StubDomain`] (libxl before Xen 4.20). Everything runs within
//! [`Config::timeout`] (libxl's 40 s; `Duration::MAX` means none).
//!
//! # What it fixes
//!
//! - `remove-fd` on every path once QEMU no longer needs the set (libxl never sends it:
//!   sets pile up in QEMU).
//! - `eject` with `force` (libxl ejects without it, so a guest-locked tray fails).
//! - After a failure xenstore agrees with what QEMU holds: once the eject was sent, the
//!   cleanup asks QEMU (`query-block`, on a new connection if the old one ended) and writes
//!   that (`""` for an empty drive, the new medium if it went in); when QEMU is gone, its
//!   drive is empty and xenstore says so. libxl can leave the intermediate state, or the
//!   old medium, in xenstore while QEMU holds something else.
//! - Bounded transaction retries; a missing drive and a drive that is not a cdrom are two
//!   errors ([`CdromError::NoSuchDevice`], [`CdromError::NotCdrom`]), not one.
//!
//! # Run loop
//!
//! As every L2 machine ([`xsio_core::Machine`] over [`xsio_ops`]): drain
//! [`poll_output`](MediaChange::poll_output), execute the requests (xenstore, host, QMP,
//! files) and answer each once, hand QEMU's events to it, call
//! [`handle_timeout`](MediaChange::handle_timeout) at [`poll_timeout`](MediaChange::poll_timeout);
//! it completes with its only event. `xsio-harness` is that loop; here with its in-process
//! xenstore and host, ejecting through xenstore:
//!
//! ```
//! use std::time::Instant;
//! use xsio_cdrom::{Config, DeviceModel, MediaChange};
//! use xsio_harness::{FixedHost, Harness, MemStore};
//! use xsio_ops::{Op, Txn, TxnOp, XsOp};
//!
//! # #[allow(clippy::disallowed_methods)] // a doc example's epoch; later times are virtual
//! let now = Instant::now();
//! let mut world: Harness<MediaChange> = Harness::new(now);
//! let mut stores = (FixedHost::default(), MemStore::new());
//! let dom0 = world.connect();
//! let be = "/local/domain/0/backend/qdisk/5/5632";
//! let entry = "/libxl/5/device/vbd/5632";
//! let drive = [
//!     (format!("{be}/device-type"), "cdrom"),
//!     (format!("{be}/type"), "qdisk"),
//!     (format!("{be}/params"), "aio:/srv/old.iso"),
//!     (format!("{entry}/backend"), be),
//!     (format!("{entry}/frontend"), "/local/domain/5/device/vbd/5632"),
//! ];
//! let ops = drive.iter().map(|(k, v)| TxnOp::write(k.as_str(), *v)).collect();
//! world.submit(dom0, Op::Xs(XsOp::Transaction(Txn { only_if_exists: None, ops })));
//! world.drive(&mut stores)?;
//!
//! let config = Config::new(5, "hdc", DeviceModel::Xenstore);
//! let eject = world.add(dom0, MediaChange::eject(config, world.now()));
//! world.drain(eject);
//! world.drive(&mut stores)?;
//! assert_eq!(world.actor(eject).result().unwrap().as_ref().unwrap().params, "");
//! assert_eq!(stores.1.read(&format!("{be}/params")), Some(""));
//! assert_eq!(stores.1.read(&format!("{entry}/params")), Some(""));
//! # Ok::<(), xsio_harness::HarnessError>(())
//! ```
//!
//! # Invariants (named in the tests)
//!
//! - **C1** every change completes exactly once, whatever the answers, their order, the
//!   faults and the time.
//! - **C2** every [`FdHandle`](xsio_ops::FdHandle) it is given is passed with `add-fd` or
//!   closed, also one that arrives after it gave up; every fd set it created is removed
//!   while the connection lasts.
//! - **C3** every lock it takes it gives back, every transaction it opens it ends.
//! - **C4** after a failure, xenstore's `params` says what QEMU holds (when QEMU can be
//!   asked, or is gone).
//! - **C5** time only comes from arguments; deadlines are computed with
//!   [`xsio_core::deadline`], never a panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod op;

pub use config::{
    CHANGE_TIMEOUT, Change, Config, DeviceModel, Format, Medium, StubDomains, TRANSACTION_ATTEMPTS,
    drive_id, fdset_label, params,
};
pub use error::{CdromError, Changed, QmpStep};
pub use op::MediaChange;
