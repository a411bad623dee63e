//! How a media change ends.

use std::fmt;
use std::time::Duration;

use thiserror::Error;
use xsio_device::Device;
use xsio_ops::{OpError, ProcessExit, QemuVersion};

/// The medium is changed, and xenstore says so.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Changed {
    /// The drive's device.
    pub device: Device,
    /// What `params` says now (`""`: empty).
    pub params: String,
    /// QEMU's version (the QMP path).
    pub qemu: Option<QemuVersion>,
    /// The fd set the image went through (an insert on the QMP path): its descriptor was
    /// removed again, and QEMU frees the set when the medium leaves.
    pub fdset: Option<u64>,
}

/// A QMP step of the change, to say which one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QmpStep {
    /// Opening the QMP connection.
    Connect,
    /// `query-version`.
    QueryVersion,
    /// `eject`.
    Eject,
    /// `add-fd`.
    AddFd,
    /// `blockdev-change-medium` (`change` before QEMU 2.8).
    ChangeMedium,
    /// `remove-fd`.
    RemoveFd,
}

impl fmt::Display for QmpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QmpStep::Connect => "connect",
            QmpStep::QueryVersion => "query-version",
            QmpStep::Eject => "eject",
            QmpStep::AddFd => "add-fd",
            QmpStep::ChangeMedium => "blockdev-change-medium",
            QmpStep::RemoveFd => "remove-fd",
        })
    }
}

/// Why a media change failed: one variant per row of libxl's error table (design note
/// `cdrom.md`, section 5), told apart where libxl lumps them together (a missing drive
/// and a drive that is not a CD-ROM).
///
/// libxl's "EMPTY format with an image path" cannot be asked for here (an eject has no
/// medium); its neighbour, an insert of an empty path, is [`CdromError::EmptyImagePath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum CdromError {
    /// The vdev is not a VBD name.
    #[error("{vdev:?} is not a virtual block device name: {reason}")]
    BadVdev {
        /// The name given.
        vdev: String,
        /// Why not.
        reason: String,
    },
    /// An insert with an empty image path.
    #[error("an insert needs an image path")]
    EmptyImagePath,
    /// The hypervisor knows no such domain (libxl: ERROR_FAIL).
    #[error("domain {0} does not exist")]
    NoSuchDomain(u32),
    /// The domain's host query failed.
    #[error("asking for domain {domid}: {source}")]
    DomainInfo {
        /// The domain.
        domid: u32,
        /// Why.
        source: OpError,
    },
    /// The domain is not HVM (`/libxl/<domid>/type`), so it has no emulated drive (libxl:
    /// ERROR_INVAL).
    #[error("domain {domid} is {kind}, not HVM: it has no emulated CD-ROM drive")]
    NotHvm {
        /// The domain.
        domid: u32,
        /// Its type.
        kind: String,
    },
    /// `/libxl/<domid>/dm-version` names no device model libxl knows (libxl: ERROR_FAIL).
    #[error("unknown device model version {0:?}")]
    DmVersion(String),
    /// The domain's device model is not served the way the change was asked to go (Xen
    /// 4.2's "does not work with qemu-xen": a xenstore rewrite does not reach upstream
    /// QEMU; qemu-traditional has no QMP).
    #[error("the device model is {dm_version}: a change by {asked} does not reach it")]
    WrongDeviceModel {
        /// `/libxl/<domid>/dm-version`.
        dm_version: String,
        /// The way asked for.
        asked: &'static str,
    },
    /// A stub domain runs the device model (libxl before 4.20: ERROR_INVAL).
    #[error("domain {domid}'s device model runs in stub domain {stubdom}: not supported")]
    StubDomain {
        /// The guest.
        domid: u32,
        /// The stub domain.
        stubdom: u32,
    },
    /// The guest has no device with this vdev (libxl: ERROR_FAIL, "Virtual device not
    /// found").
    #[error("domain {domid} has no virtual device {vdev}")]
    NoSuchDevice {
        /// The guest.
        domid: u32,
        /// The drive asked for.
        vdev: String,
    },
    /// The device exists but is not a CD-ROM (libxl: the same ERROR_FAIL).
    #[error("{vdev} is a {device_type:?}, not a cdrom")]
    NotCdrom {
        /// The drive asked for.
        vdev: String,
        /// Its `device-type` (empty when missing).
        device_type: String,
    },
    /// The drive's backend is neither `qdisk` nor `phy` (libxl: ERROR_FAIL).
    #[error("the drive's backend type is {0:?}, not qdisk or phy")]
    UnsupportedBackend(String),
    /// A xenstore value is not what it should be.
    #[error("{path} holds {value:?}, {why}")]
    BadValue {
        /// The node.
        path: String,
        /// Its value.
        value: String,
        /// What was expected.
        why: &'static str,
    },
    /// The per-domain lock could not be taken (libxl: the lock's rc).
    #[error("the device-change lock of domain {domid}: {source}")]
    Lock {
        /// The domain.
        domid: u32,
        /// Why.
        source: OpError,
    },
    /// A xenstore operation failed.
    #[error("xenstore, {step}: {source}")]
    Xenstore {
        /// What was being done.
        step: &'static str,
        /// Why.
        source: OpError,
    },
    /// Every commit of a transaction conflicted.
    #[error("{0} conflicting commits in a row")]
    Conflicts(u32),
    /// The toolstack entry's `frontend` vanished inside the transaction: the device is
    /// being removed (libxl: ERROR_FAIL).
    #[error("the device vanished: {0} is missing")]
    DeviceVanished(String),
    /// The image could not be opened (libxl: ERROR_FAIL).
    #[error("opening {path}: {source}")]
    OpenImage {
        /// The image.
        path: String,
        /// Why.
        source: OpError,
    },
    /// A QMP step failed: QEMU's error reply, or the connection's end (libxl: the QMP rc).
    #[error("{step} failed: {source}")]
    Qmp {
        /// Which.
        step: QmpStep,
        /// Why.
        source: OpError,
    },
    /// QMP answered something that is not what the command returns (`add-fd` without an
    /// `fdset-id`: libxl's ERROR_FAIL; a malformed `query-version`: ERROR_QEMU_API).
    #[error("{step} answered {reply}")]
    BadReply {
        /// Which.
        step: QmpStep,
        /// The answer.
        reply: String,
    },
    /// QEMU exited during the change.
    #[error("QEMU exited during the change ({})", exit_text(.0))]
    Exited(Option<ProcessExit>),
    /// The change did not finish within its deadline (libxl: ERROR_TIMEDOUT).
    #[error("the change did not finish within {0:?}")]
    TimedOut(Duration),
    /// The medium is in and xenstore says so, but `remove-fd` failed: QEMU still holds the
    /// image's descriptor in the set.
    #[error("the medium is in, but remove-fd of fd set {fdset_id} failed: {source}")]
    Cleanup {
        /// The set.
        fdset_id: u64,
        /// Why.
        source: OpError,
    },
}

fn exit_text(exit: &Option<ProcessExit>) -> String {
    match exit {
        Some(exit) => exit.to_string(),
        None => "status unknown".to_owned(),
    }
}
