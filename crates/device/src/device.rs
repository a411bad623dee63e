//! What a device is, for add and removal: its kinds, its ends, and where it lives.

use std::fmt;

use xsio_xenbus::DeviceAreas;

/// The backend kinds QEMU provides (libxl's `QEMU_BACKEND`): nothing else closes them when
/// the device model is gone, hence the bodge.
pub const QEMU_BACKEND_KINDS: &[&str] = &["qdisk", "vfb", "vkbd", "qusb", "9pfs"];

/// How hard a removal tries (libxl's `force`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Force {
    /// Ask the backend to close; if it does not within the destroy timeout, start again
    /// with [`Force::On`] (libxl's `_remove`).
    #[default]
    Auto,
    /// Remove the frontend directory in the same transaction as the close request, so a
    /// dead guest cannot block the removal, and remove the areas even after an error
    /// (libxl's `_destroy`, domain destruction).
    On,
    /// Ask the backend to close; on any error stop and leave xenstore as it is (libxl's
    /// `disk_safe_remove`).
    Off,
}

impl fmt::Display for Force {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Force::Auto => "auto",
            Force::On => "on",
            Force::Off => "off",
        })
    }
}

/// One split device: its frontend kind and domain, its backend kind and domain, its id.
///
/// ```
/// use xsio_device::Device;
///
/// let disk = Device::new("vbd", 5, 51712).with_backend(0, "qdisk");
/// assert!(disk.qemu_backed());
/// assert_eq!(disk.backend_path(), "/local/domain/0/backend/qdisk/5/51712");
/// assert_eq!(disk.frontend_path(), "/local/domain/5/device/vbd/51712");
/// assert_eq!(disk.toolstack_path(), "/libxl/5/device/vbd/51712");
/// assert_eq!(Device::new("console", 5, 0).frontend_path(), "/local/domain/5/console");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    /// The frontend (libxl device) kind: `vbd`, `vif`, `vkbd`, `vfb`, `console`, ...
    pub kind: String,
    /// The guest.
    pub frontend_domid: u32,
    /// The device id (for disks, the `virtual-device` number).
    pub devid: u32,
    /// The domain running the backend (0 for dom0).
    pub backend_domid: u32,
    /// The backend kind in the backend path (`vbd`, `vbd3`, `qdisk`, `vif`, ...).
    pub backend_kind: String,
}

impl Device {
    /// A device whose backend runs in dom0 with the same kind as the frontend (`vbd` served
    /// by blkback, `vif` by netback).
    pub fn new(kind: impl Into<String>, frontend_domid: u32, devid: u32) -> Device {
        let kind = kind.into();
        Device {
            backend_kind: kind.clone(),
            kind,
            frontend_domid,
            devid,
            backend_domid: 0,
        }
    }

    /// The same device with its backend in `domid`, of `kind`.
    pub fn with_backend(mut self, domid: u32, kind: impl Into<String>) -> Device {
        self.backend_domid = domid;
        self.backend_kind = kind.into();
        self
    }

    /// Whether QEMU provides the backend (libxl's `QEMU_BACKEND`).
    pub fn qemu_backed(&self) -> bool {
        QEMU_BACKEND_KINDS.contains(&self.backend_kind.as_str())
    }

    /// Whether the device is only removed from xenstore, without a state machine (libxl
    /// nukes consoles and vuarts directly).
    pub fn nuke_only(&self) -> bool {
        matches!(self.kind.as_str(), "console" | "vuart")
    }

    /// `/local/domain/<backend>/backend/<backend-kind>/<guest>/<devid>`.
    pub fn backend_path(&self) -> String {
        format!(
            "{}/backend/{}/{}/{}",
            domain_home(self.backend_domid),
            self.backend_kind,
            self.frontend_domid,
            self.devid
        )
    }

    /// The frontend directory: `/local/domain/<guest>/device/<kind>/<devid>`, except
    /// console 0 (`/local/domain/<guest>/console`) and vuarts
    /// (`/local/domain/<guest>/vuart/<devid>`).
    pub fn frontend_path(&self) -> String {
        let home = domain_home(self.frontend_domid);
        match (self.kind.as_str(), self.devid) {
            ("console", 0) => format!("{home}/console"),
            ("vuart", devid) => format!("{home}/vuart/{devid}"),
            (kind, devid) => format!("{home}/device/{kind}/{devid}"),
        }
    }

    /// The toolstack's private copy: `/libxl/<guest>/device/<kind>/<devid>`.
    pub fn toolstack_path(&self) -> String {
        format!(
            "{}/{}/{}",
            toolstack_devices(self.frontend_domid),
            self.kind,
            self.devid
        )
    }

    /// A key in the backend directory.
    pub fn backend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.backend_path())
    }

    /// A key in the frontend directory.
    pub fn frontend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.frontend_path())
    }

    /// The xenbus view of the same device (paths and permissions of both directories).
    pub fn areas(&self) -> DeviceAreas {
        DeviceAreas::new(
            self.backend_domid,
            self.backend_kind.clone(),
            self.frontend_domid,
            self.kind.clone(),
            self.devid,
        )
    }

    /// `XENBUS_PATH` for a hotplug script: the backend path relative to the backend
    /// domain's home (`backend/<kind>/<guest>/<devid>`).
    pub fn xenbus_path(&self) -> String {
        format!(
            "backend/{}/{}/{}",
            self.backend_kind, self.frontend_domid, self.devid
        )
    }

    /// The device a toolstack entry describes: its kind and id (the entry's last two path
    /// components, under `/libxl/<guest>/device`) and its `backend` key's value.
    ///
    /// ```
    /// use xsio_device::Device;
    ///
    /// let d = Device::from_toolstack_entry(3, "vbd", "768", "/local/domain/0/backend/qdisk/3/768")?;
    /// assert_eq!(d, Device::new("vbd", 3, 768).with_backend(0, "qdisk"));
    /// assert!(Device::from_toolstack_entry(3, "vbd", "768", "/local/domain/0/backend/qdisk/4/768").is_err());
    /// # Ok::<(), xsio_device::EntryError>(())
    /// ```
    pub fn from_toolstack_entry(
        frontend_domid: u32,
        kind: &str,
        devid: &str,
        backend_path: &str,
    ) -> Result<Device, EntryError> {
        let bad = |why: &'static str| EntryError {
            entry: format!("{}/{kind}/{devid}", toolstack_devices(frontend_domid)),
            why,
        };
        let devid: u32 = devid
            .parse()
            .map_err(|_| bad("the device id is not a number"))?;
        if kind.is_empty() || kind.contains('/') {
            return Err(bad("the kind is not a path component"));
        }
        let parts: Vec<&str> = backend_path.split('/').collect();
        let [
            "",
            "local",
            "domain",
            backend_domid,
            "backend",
            backend_kind,
            guest,
            be_devid,
        ] = parts[..]
        else {
            return Err(bad("the backend key is not a backend path"));
        };
        let backend_domid: u32 = backend_domid
            .parse()
            .map_err(|_| bad("the backend domain is not a number"))?;
        if guest.parse::<u32>() != Ok(frontend_domid) || be_devid.parse::<u32>() != Ok(devid) {
            return Err(bad("the backend path names another device"));
        }
        if backend_kind.is_empty() {
            return Err(bad("the backend kind is empty"));
        }
        Ok(Device::new(kind, frontend_domid, devid).with_backend(backend_domid, backend_kind))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of domain {} (backend {} in domain {})",
            self.kind, self.devid, self.frontend_domid, self.backend_kind, self.backend_domid
        )
    }
}

/// A toolstack entry that does not describe a device.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("toolstack entry {entry}: {why}")]
pub struct EntryError {
    /// The entry's path.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// `/local/domain/<domid>`.
pub(crate) fn domain_home(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

/// `/libxl/<domid>/device`: where the toolstack lists a domain's devices.
pub fn toolstack_devices(domid: u32) -> String {
    format!("/libxl/{domid}/device")
}

/// The root of the toolstack's private area; a prune never removes it.
pub(crate) const TOOLSTACK_ROOT: &str = "/libxl";
