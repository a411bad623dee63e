//! xl's disk specification (`vdev=xvda,format=raw,access=rw,devtype=disk,target=PATH`)
//! and the keys libxl writes for such a disk.

use std::fmt;

use thiserror::Error;
use xsio_vbd::Vbd;

use crate::device::Device;
use crate::op::AddSpec;

/// The image format (`format=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// `raw` (the default).
    #[default]
    Raw,
    /// `qcow`.
    Qcow,
    /// `qcow2`.
    Qcow2,
    /// `vhd`.
    Vhd,
    /// `qed`.
    Qed,
}

impl Format {
    /// The prefix of a QEMU backend's `params` (libxl names raw `aio`).
    ///
    /// ```
    /// use xsio_device::disk::Format;
    ///
    /// assert_eq!(Format::Raw.params_prefix(), "aio");
    /// assert_eq!(Format::Vhd.params_prefix(), "vhd");
    /// ```
    pub fn params_prefix(self) -> &'static str {
        match self {
            Format::Raw => "aio",
            Format::Qcow => "qcow",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Qed => "qed",
        }
    }

    /// QEMU's name of the format's block driver (`blockdev-change-medium`'s `format`):
    /// QEMU calls VHD `vpc`.
    ///
    /// ```
    /// use xsio_device::disk::Format;
    ///
    /// assert_eq!(Format::Vhd.qemu_driver(), "vpc");
    /// assert_eq!(Format::Raw.qemu_driver(), "raw");
    /// ```
    pub fn qemu_driver(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow => "qcow",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vpc",
            Format::Qed => "qed",
        }
    }
}

/// Which backend serves the disk (`backendtype=`, or the CLI's `--backend-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DiskBackend {
    /// A kernel block backend (blkback, backend kind `vbd`, `type` = `phy`), with the
    /// `block` hotplug script.
    #[default]
    Phy,
    /// QEMU (backend kind `qdisk`), no script.
    Qdisk,
}

impl DiskBackend {
    /// The backend kind in the backend path.
    pub fn backend_kind(self) -> &'static str {
        match self {
            DiskBackend::Phy => "vbd",
            DiskBackend::Qdisk => "qdisk",
        }
    }
}

/// An xl disk specification: the `key=value` form, `target=` last (it may contain
/// commas).
///
/// ```
/// use xsio_device::disk::{DiskBackend, DiskSpec};
///
/// let spec = DiskSpec::parse("vdev=xvda,format=raw,access=rw,devtype=disk,target=/srv/a,b.img")?;
/// assert_eq!(spec.target, "/srv/a,b.img");
/// assert_eq!(spec.devid(), 51712);
/// let add = spec.add_spec(5, 0, DiskBackend::Phy, "/etc/xen/scripts/block");
/// assert!(add.backend_keys.contains(&("params".into(), "/srv/a,b.img".into())));
/// assert!(add.backend_keys.contains(&("mode".into(), "w".into())));
/// assert!(add.frontend_keys.contains(&("virtual-device".into(), "51712".into())));
/// # Ok::<(), xsio_device::disk::DiskSpecError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiskSpec {
    /// The guest's name for it (`vdev=`).
    pub vdev: Vbd,
    /// The image or device (`target=`; may be empty for a CD-ROM drive).
    pub target: String,
    /// `format=` (default raw).
    pub format: Format,
    /// `access=`: `rw`/`w` (the default) or `ro`/`r`.
    pub writable: bool,
    /// `devtype=cdrom` (default: disk).
    pub cdrom: bool,
    /// `backendtype=` (`phy` or `qdisk`), if given.
    pub backend: Option<DiskBackend>,
    /// `script=`, if given.
    pub script: Option<String>,
}

/// Why a disk specification was refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum DiskSpecError {
    /// An item is not `key=value`.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    /// A key this parser does not know.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// A value the key does not take.
    #[error("{key}: {value:?} is not one of {allowed}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it takes.
        allowed: &'static str,
    },
    /// `vdev=` is not a VBD name.
    #[error("vdev: {0}")]
    Vdev(String),
    /// A key that must be given is missing.
    #[error("missing {0}=")]
    Missing(&'static str),
}

impl DiskSpec {
    /// Parses the `key=value` form.
    pub fn parse(text: &str) -> Result<DiskSpec, DiskSpecError> {
        let mut vdev = None;
        let mut target = None;
        let mut format = Format::Raw;
        let mut writable = true;
        let mut cdrom = false;
        let mut backend = None;
        let mut script = None;
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(value) = rest.strip_prefix("target=") {
                target = Some(value.to_owned());
                break;
            }
            let (item, tail) = rest.split_once(',').unwrap_or((rest, ""));
            rest = tail;
            if item.is_empty() {
                continue;
            }
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| DiskSpecError::NotKeyValue(item.to_owned()))?;
            let bad = |key: &'static str, allowed: &'static str| DiskSpecError::BadValue {
                key,
                value: value.to_owned(),
                allowed,
            };
            match key {
                "vdev" => {
                    vdev = Some(Vbd::parse(value).map_err(|e| DiskSpecError::Vdev(e.to_string()))?);
                }
                "format" => {
                    format = match value {
                        "raw" => Format::Raw,
                        "qcow" => Format::Qcow,
                        "qcow2" => Format::Qcow2,
                        "vhd" => Format::Vhd,
                        "qed" => Format::Qed,
                        _ => return Err(bad("format", "raw, qcow, qcow2, vhd, qed")),
                    }
                }
                "access" => {
                    writable = match value {
                        "rw" | "w" => true,
                        "ro" | "r" => false,
                        _ => return Err(bad("access", "rw, w, ro, r")),
                    }
                }
                "devtype" => {
                    cdrom = match value {
                        "disk" => false,
                        "cdrom" => true,
                        _ => return Err(bad("devtype", "disk, cdrom")),
                    }
                }
                "backendtype" => {
                    backend = Some(match value {
                        "phy" => DiskBackend::Phy,
                        "qdisk" => DiskBackend::Qdisk,
                        _ => return Err(bad("backendtype", "phy, qdisk")),
                    })
                }
                "script" => script = Some(value.to_owned()),
                other => return Err(DiskSpecError::UnknownKey(other.to_owned())),
            }
        }
        let vdev = vdev.ok_or(DiskSpecError::Missing("vdev"))?;
        let target = match target {
            Some(target) => target,
            None if cdrom => String::new(),
            None => return Err(DiskSpecError::Missing("target")),
        };
        Ok(DiskSpec {
            vdev,
            target,
            format,
            writable,
            cdrom,
            backend,
            script,
        })
    }

    /// The device id: the `virtual-device` number.
    pub fn devid(&self) -> u32 {
        self.vdev.number()
    }

    /// The device, in guest `frontend_domid`, served from `backend_domid` by `backend`.
    pub fn device(&self, frontend_domid: u32, backend_domid: u32, backend: DiskBackend) -> Device {
        Device::new("vbd", frontend_domid, self.devid())
            .with_backend(backend_domid, backend.backend_kind())
    }

    /// What to add, with the keys libxl writes for this disk: backend `params` (the target;
    /// for QEMU `<format>:<target>`), `script` (a kernel backend's hotplug script:
    /// `script=` if given, else `default_script`), `removable`, `bootable`, `dev`, `type`,
    /// `mode`, `device-type`; frontend `virtual-device`, `device-type`.
    pub fn add_spec(
        &self,
        frontend_domid: u32,
        backend_domid: u32,
        backend: DiskBackend,
        default_script: &str,
    ) -> AddSpec {
        let device_type = if self.cdrom { "cdrom" } else { "disk" };
        let mut be = Vec::new();
        let mut push = |k: &str, v: String| be.push((k.to_owned(), v));
        match backend {
            DiskBackend::Phy => {
                push("params", self.target.clone());
                let script = self
                    .script
                    .clone()
                    .unwrap_or_else(|| default_script.to_owned());
                push("script", script);
            }
            DiskBackend::Qdisk => {
                push(
                    "params",
                    format!("{}:{}", self.format.params_prefix(), self.target),
                );
            }
        }
        push("removable", u8::from(self.cdrom).to_string());
        push("bootable", "1".to_owned());
        push("dev", self.vdev.to_string());
        let kind = match backend {
            DiskBackend::Phy => "phy",
            DiskBackend::Qdisk => "qdisk",
        };
        push("type", kind.to_owned());
        push("mode", if self.writable { "w" } else { "r" }.to_owned());
        push("device-type", device_type.to_owned());
        AddSpec {
            device: self.device(frontend_domid, backend_domid, backend),
            backend_keys: be,
            frontend_keys: vec![
                ("virtual-device".to_owned(), self.devid().to_string()),
                ("device-type".to_owned(), device_type.to_owned()),
            ],
        }
    }
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vdev={},access={},devtype={},target={}",
            self.vdev,
            if self.writable { "rw" } else { "ro" },
            if self.cdrom { "cdrom" } else { "disk" },
            self.target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xl_s_key_value_form() {
        let spec =
            DiskSpec::parse("vdev=hdc,access=ro,devtype=cdrom,format=qcow2,target=/x.iso").unwrap();
        assert_eq!(spec.devid(), 5632);
        assert!(!spec.writable && spec.cdrom);
        let add = spec.add_spec(2, 0, DiskBackend::Qdisk, "/unused");
        assert_eq!(
            add.device.backend_path(),
            "/local/domain/0/backend/qdisk/2/5632"
        );
        let keys = crate::borrowed(&add.backend_keys);
        assert_eq!(
            keys,
            [
                ("params", "qcow2:/x.iso"),
                ("removable", "1"),
                ("bootable", "1"),
                ("dev", "hdc"),
                ("type", "qdisk"),
                ("mode", "r"),
                ("device-type", "cdrom"),
            ]
        );
        let raw = DiskSpec::parse("vdev=xvdb,target=/d").unwrap();
        let add = raw.add_spec(2, 0, DiskBackend::Qdisk, "/unused");
        assert_eq!(add.backend_keys[0].1, "aio:/d", "libxl names raw aio");
        let phy = raw.add_spec(2, 0, DiskBackend::Phy, "/etc/xen/scripts/block");
        assert_eq!(
            phy.backend_keys[1],
            ("script".into(), "/etc/xen/scripts/block".into())
        );
        assert_eq!(phy.device.backend_kind, "vbd");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(
            DiskSpec::parse("target=/x"),
            Err(DiskSpecError::Missing("vdev"))
        );
        assert_eq!(
            DiskSpec::parse("vdev=xvda"),
            Err(DiskSpecError::Missing("target"))
        );
        assert!(
            DiskSpec::parse("vdev=xvda,devtype=cdrom").is_ok(),
            "an empty drive"
        );
        assert!(matches!(
            DiskSpec::parse("vdev=xvda,colour=red,target=/x"),
            Err(DiskSpecError::UnknownKey(_))
        ));
        assert!(matches!(
            DiskSpec::parse("vdev=xvda,access=maybe,target=/x"),
            Err(DiskSpecError::BadValue { .. })
        ));
        assert!(matches!(
            DiskSpec::parse("vdev=nope0,target=/x"),
            Err(DiskSpecError::Vdev(_))
        ));
        assert!(matches!(
            DiskSpec::parse("xvda,target=/x"),
            Err(DiskSpecError::NotKeyValue(_))
        ));
    }
}
