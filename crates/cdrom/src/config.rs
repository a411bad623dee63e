//! What a media change is asked to do, and how.

use std::time::Duration;

pub use xsio_device::disk::Format;

/// libxl's overall time limit of a media change.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(40);

/// How many conflicting commits a xenstore transaction is retried before the change
/// fails (libxl retries for ever).
pub const TRANSACTION_ATTEMPTS: u32 = 10;

/// The image to put in the drive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Medium {
    /// The image, as the driver's process sees it: the driver opens it read-only and QEMU
    /// gets the descriptor, never the path.
    pub path: String,
    /// Its format.
    pub format: Format,
}

/// Insert a medium, or eject the one in the drive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Put this medium in the drive (ejecting the one there first).
    Insert(Medium),
    /// Leave the drive empty.
    Eject,
}

impl Change {
    /// The medium an insert puts in the drive.
    pub fn medium(&self) -> Option<&Medium> {
        match self {
            Change::Insert(medium) => Some(medium),
            Change::Eject => None,
        }
    }
}

/// Who serves the drive, hence how its medium is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceModel {
    /// qemu-traditional, or a PV backend: it watches the backend's `params`, so the change
    /// is the rewrite of `type` and `params` in one transaction (Xen 4.2's path).
    Xenstore,
    /// Upstream QEMU, over the machine's QMP connection: eject, then the image passed as a
    /// descriptor (`add-fd`, `blockdev-change-medium` on `/dev/fdset/N`), xenstore written
    /// around it.
    Qmp,
}

impl DeviceModel {
    /// The name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceModel::Xenstore => "xenstore",
            DeviceModel::Qmp => "qmp",
        }
    }

    /// Whether the domain's recorded device model (`/libxl/<domid>/dm-version`; `None`:
    /// absent, which libxl reads as qemu-traditional) is served this way: `Err` with the
    /// value when it is not a device model libxl knows.
    pub(crate) fn serves(self, dm_version: Option<&str>) -> Result<bool, ()> {
        match (self, dm_version) {
            (_, Some(other)) if other != "qemu_xen" && other != "qemu_xen_traditional" => Err(()),
            (DeviceModel::Xenstore, Some("qemu_xen")) => Ok(false),
            (DeviceModel::Qmp, Some("qemu_xen_traditional")) => Ok(false),
            _ => Ok(true),
        }
    }
}

/// What a domain served by a stub device model gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StubDomains {
    /// A typed error ([`CdromError::StubDomain`](crate::CdromError::StubDomain)), as libxl
    /// before Xen 4.20 (xend silently did nothing).
    #[default]
    Refuse,
}

/// One media change: which drive, served how, within what time.
///
/// ```
/// use std::time::Duration;
/// use xsio_cdrom::{Config, DeviceModel};
///
/// let config = Config::new(5, "hdc", DeviceModel::Qmp);
/// assert_eq!(config.timeout, Duration::from_secs(40));
/// assert!(config.force, "a guest-locked tray is opened, as xenopsd does");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// The guest.
    pub domid: u32,
    /// The drive, by the guest's name for it (`hdc`, `xvdc`); its device id is the
    /// `virtual-device` number.
    pub vdev: String,
    /// How the medium is changed.
    pub device_model: DeviceModel,
    /// `force` of QMP's `eject` (on: a tray the guest locked is opened all the same).
    pub force: bool,
    /// What a stub device-model domain gets.
    pub stub_domains: StubDomains,
    /// The whole change's deadline, from its start; `Duration::MAX` means none.
    pub timeout: Duration,
    /// Conflicting commits tolerated per transaction.
    pub transaction_attempts: u32,
}

impl Config {
    /// A change of drive `vdev` of guest `domid`, with libxl's 40 s, `force` on, stub
    /// domains refused, 10 commit attempts.
    pub fn new(domid: u32, vdev: impl Into<String>, device_model: DeviceModel) -> Config {
        Config {
            domid,
            vdev: vdev.into(),
            device_model,
            force: true,
            stub_domains: StubDomains::Refuse,
            timeout: CHANGE_TIMEOUT,
            transaction_attempts: TRANSACTION_ATTEMPTS,
        }
    }
}

/// QEMU's id of the drive of device id `devid` (libxl names drive and device alike).
///
/// ```
/// assert_eq!(xsio_cdrom::drive_id(5632), "ide-5632");
/// ```
pub fn drive_id(devid: u32) -> String {
    format!("ide-{devid}")
}

/// What `params` says for `medium` on a backend of `type` `backend_type`: `<fmt>:<path>`
/// for QEMU (`qdisk`), the bare path for `phy`, `""` for an empty drive.
///
/// ```
/// use xsio_cdrom::{Format, Medium, params};
///
/// let iso = Medium { path: "/srv/a.iso".into(), format: Format::Raw };
/// assert_eq!(params("qdisk", Some(&iso)), "aio:/srv/a.iso");
/// assert_eq!(params("phy", Some(&iso)), "/srv/a.iso");
/// assert_eq!(params("qdisk", None), "");
/// ```
pub fn params(backend_type: &str, medium: Option<&Medium>) -> String {
    match medium {
        None => String::new(),
        Some(medium) if backend_type == "phy" => medium.path.clone(),
        Some(medium) => format!("{}:{}", medium.format.params_prefix(), medium.path),
    }
}

/// The `opaque` label of the fd set an insert creates (what `query-fdsets` shows).
///
/// ```
/// use xsio_cdrom::{Format, Medium, fdset_label};
///
/// let iso = Medium { path: "/srv/a.iso".into(), format: Format::Raw };
/// assert_eq!(fdset_label(5632, &iso), "cdrom:ide-5632:aio:/srv/a.iso");
/// ```
pub fn fdset_label(devid: u32, medium: &Medium) -> String {
    format!(
        "cdrom:{}:{}",
        drive_id(devid),
        params("qdisk", Some(medium))
    )
}
