//! Block device keys (blkif), for QEMU's two xen-block device types: `xen-disk` and
//! `xen-cdrom`.
//!
//! [`BlockDevice`] says what the toolstack writes when it creates the device, what the
//! backend publishes with InitWait and with Connected, and what each end reads from the
//! other on connect. The VBD name becomes the device id and `virtual-device` through
//! [`xsio_vbd`].
//!
//! ```
//! use xsio_vbd::Vbd;
//! use xsio_xenbus::block::{BlockDevice, BlockKind, Mode};
//!
//! let cdrom = BlockDevice::new(BlockKind::Cdrom, Vbd::parse("hdc")?, "/srv/install.iso", Mode::ReadOnly);
//! assert_eq!(cdrom.devid(), 5632);
//! assert_eq!(cdrom.info(), 1 | 2 | 4); // cdrom, removable, read-only
//! let keys = cdrom.toolstack_backend_keys();
//! assert!(keys.contains(&("device-type".to_owned(), "cdrom".to_owned())));
//! assert!(keys.contains(&("removable".to_owned(), "1".to_owned())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use xsio_vbd::Vbd;

use crate::areas::DeviceAreas;
use crate::backend::BackendConfig;
use crate::frontend::FrontendConfig;
use crate::keys::{KeyCheck, KeyError, KeySpec, lookup};

/// `info` bit: the device is a CD-ROM.
pub const VDISK_CDROM: u32 = 1;
/// `info` bit: the medium is removable.
pub const VDISK_REMOVABLE: u32 = 2;
/// `info` bit: the device is read-only.
pub const VDISK_READONLY: u32 = 4;

/// Which of QEMU's xen-block devices this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// `xen-disk`: a disk (`device-type` = `disk`).
    Disk,
    /// `xen-cdrom`: a removable CD-ROM (`device-type` = `cdrom`).
    Cdrom,
}

impl BlockKind {
    /// QEMU's device type name (`xen-disk`, `xen-cdrom`).
    pub const fn qemu_driver(self) -> &'static str {
        match self {
            BlockKind::Disk => "xen-disk",
            BlockKind::Cdrom => "xen-cdrom",
        }
    }

    /// The kind QEMU's device type name stands for.
    pub fn from_qemu_driver(name: &str) -> Option<BlockKind> {
        match name {
            "xen-disk" => Some(BlockKind::Disk),
            "xen-cdrom" => Some(BlockKind::Cdrom),
            _ => None,
        }
    }

    /// The `device-type` value (`disk`, `cdrom`).
    pub const fn device_type(self) -> &'static str {
        match self {
            BlockKind::Disk => "disk",
            BlockKind::Cdrom => "cdrom",
        }
    }
}

/// `mode`: how the guest may use the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `r`.
    ReadOnly,
    /// `w`.
    ReadWrite,
}

impl Mode {
    /// The `mode` value.
    pub const fn wire(self) -> &'static str {
        match self {
            Mode::ReadOnly => "r",
            Mode::ReadWrite => "w",
        }
    }
}

/// One block device as the toolstack configures it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockDevice {
    /// Disk or CD-ROM.
    pub kind: BlockKind,
    /// The guest's name for it (`xvda`, `hdc`); the device id is its number.
    pub vdev: Vbd,
    /// `params`: the image the backend opens (empty for an empty CD-ROM drive).
    pub params: String,
    /// `mode`.
    pub mode: Mode,
    /// `type`: the backend's image kind (`qdisk` for QEMU, `phy`, `file`).
    pub backend_type: String,
    /// `sectors`, in 512-byte units, written by the backend on connect.
    pub sectors: u64,
    /// `sector-size`, written by the backend on connect.
    pub sector_size: u32,
}

impl BlockDevice {
    /// A device backed by QEMU (`type` = `qdisk`), size not yet known (0 sectors of 512 bytes).
    pub fn new(kind: BlockKind, vdev: Vbd, params: impl Into<String>, mode: Mode) -> BlockDevice {
        BlockDevice {
            kind,
            vdev,
            params: params.into(),
            mode,
            backend_type: "qdisk".to_owned(),
            sectors: 0,
            sector_size: 512,
        }
    }

    /// The device id: the `virtual-device` number.
    pub fn devid(&self) -> u32 {
        self.vdev.number()
    }

    /// Whether the medium is removable (CD-ROMs are).
    pub fn removable(&self) -> bool {
        self.kind == BlockKind::Cdrom
    }

    /// The `info` bits (`VDISK_*`).
    pub fn info(&self) -> u32 {
        let mut info = 0;
        if self.kind == BlockKind::Cdrom {
            info |= VDISK_CDROM;
        }
        if self.removable() {
            info |= VDISK_REMOVABLE;
        }
        if self.mode == Mode::ReadOnly {
            info |= VDISK_READONLY;
        }
        info
    }

    /// The areas of this device between a backend domain and a guest (`qdisk` / `vbd`).
    pub fn areas(&self, backend_domid: u32, frontend_domid: u32) -> DeviceAreas {
        DeviceAreas::new(backend_domid, "qdisk", frontend_domid, "vbd", self.devid())
    }

    /// Backend keys the toolstack writes at creation: `params`, `mode`, `type`,
    /// `device-type`, `removable`, `dev`.
    pub fn toolstack_backend_keys(&self) -> Vec<(String, String)> {
        vec![
            ("params".to_owned(), self.params.clone()),
            ("mode".to_owned(), self.mode.wire().to_owned()),
            ("type".to_owned(), self.backend_type.clone()),
            ("device-type".to_owned(), self.kind.device_type().to_owned()),
            (
                "removable".to_owned(),
                u8::from(self.removable()).to_string(),
            ),
            ("dev".to_owned(), self.vdev.to_string()),
        ]
    }

    /// Frontend keys the toolstack writes at creation: `virtual-device`, `device-type`.
    pub fn toolstack_frontend_keys(&self) -> Vec<(String, String)> {
        vec![
            ("virtual-device".to_owned(), self.devid().to_string()),
            ("device-type".to_owned(), self.kind.device_type().to_owned()),
        ]
    }

    /// Keys the backend publishes with InitWait.
    pub fn backend_features(&self) -> Vec<(String, String)> {
        vec![
            ("feature-flush-cache".to_owned(), "1".to_owned()),
            ("feature-discard".to_owned(), "0".to_owned()),
            ("max-ring-page-order".to_owned(), "0".to_owned()),
        ]
    }

    /// What the backend writes with Connected.
    pub fn disk_info(&self) -> DiskInfo {
        DiskInfo {
            sectors: self.sectors,
            sector_size: self.sector_size,
            info: self.info(),
        }
    }

    /// The backend machine's configuration for this device.
    pub fn backend_config(&self, areas: DeviceAreas) -> BackendConfig {
        BackendConfig {
            areas,
            features: self.backend_features(),
            connect_keys: self.disk_info().to_keys(),
            frontend_keys: BlockTransport::key_specs(),
            check: KeyCheck::BlockTransport,
        }
    }

    /// The frontend machine's configuration for this device, publishing `transport`.
    pub fn frontend_config(
        &self,
        areas: DeviceAreas,
        transport: &BlockTransport,
    ) -> FrontendConfig {
        FrontendConfig {
            areas,
            transport: transport.to_keys(),
            backend_keys: DiskInfo::key_specs(),
            check: KeyCheck::BlockDiskInfo,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// The ring ABI a frontend announces in `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `x86_32-abi`.
    X86_32,
    /// `x86_64-abi`.
    X86_64,
    /// `arm-abi`.
    Arm,
}

impl Protocol {
    /// The `protocol` value.
    pub const fn wire(self) -> &'static str {
        match self {
            Protocol::X86_32 => "x86_32-abi",
            Protocol::X86_64 => "x86_64-abi",
            Protocol::Arm => "arm-abi",
        }
    }

    /// The protocol a `protocol` value names.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "x86_32-abi" => Some(Protocol::X86_32),
            "x86_64-abi" => Some(Protocol::X86_64),
            "arm-abi" => Some(Protocol::Arm),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire())
    }
}

/// What a block frontend publishes with Initialised and the backend reads on connect:
/// `ring-ref`, `event-channel`, `protocol` (absent means the backend's native ABI).
///
/// ```
/// use xsio_xenbus::block::{BlockTransport, Protocol};
///
/// let t = BlockTransport { ring_ref: 8, event_channel: 5, protocol: Some(Protocol::X86_64) };
/// assert_eq!(BlockTransport::from_keys(&t.to_keys()), Ok(t));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockTransport {
    /// Grant reference of the (single-page) shared ring.
    pub ring_ref: u32,
    /// Event channel port.
    pub event_channel: u32,
    /// Ring ABI; `None` when the frontend did not say.
    pub protocol: Option<Protocol>,
}

impl BlockTransport {
    /// The keys, as the backend reads them.
    pub fn key_specs() -> Vec<KeySpec> {
        vec![
            KeySpec::required("ring-ref"),
            KeySpec::required("event-channel"),
            KeySpec::optional("protocol"),
        ]
    }

    /// The keys the frontend writes.
    pub fn to_keys(&self) -> Vec<(String, String)> {
        let mut keys = vec![
            ("ring-ref".to_owned(), self.ring_ref.to_string()),
            ("event-channel".to_owned(), self.event_channel.to_string()),
        ];
        if let Some(protocol) = self.protocol {
            keys.push(("protocol".to_owned(), protocol.wire().to_owned()));
        }
        keys
    }

    /// Parses the values read from the frontend.
    pub fn from_keys(values: &[(String, String)]) -> Result<BlockTransport, KeyError> {
        let protocol = match lookup(values, "protocol") {
            None => None,
            Some(text) => Some(Protocol::parse(text).ok_or_else(|| {
                KeyError::invalid("protocol", text, "x86_32-abi, x86_64-abi or arm-abi")
            })?),
        };
        Ok(BlockTransport {
            ring_ref: number(values, "ring-ref")?,
            event_channel: number(values, "event-channel")?,
            protocol,
        })
    }
}

/// What a block backend writes with Connected and the frontend reads: `sectors`,
/// `sector-size`, `info`.
///
/// ```
/// use xsio_xenbus::block::DiskInfo;
///
/// let info = DiskInfo { sectors: 2048, sector_size: 512, info: 0 };
/// assert_eq!(DiskInfo::from_keys(&info.to_keys()), Ok(info));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DiskInfo {
    /// Size in 512-byte units, whatever the sector size.
    pub sectors: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// `VDISK_*` bits.
    pub info: u32,
}

impl DiskInfo {
    /// The keys, as the frontend reads them.
    pub fn key_specs() -> Vec<KeySpec> {
        vec![
            KeySpec::required("sectors"),
            KeySpec::required("info"),
            KeySpec::required("sector-size"),
        ]
    }

    /// The keys the backend writes.
    pub fn to_keys(&self) -> Vec<(String, String)> {
        vec![
            ("sectors".to_owned(), self.sectors.to_string()),
            ("info".to_owned(), self.info.to_string()),
            ("sector-size".to_owned(), self.sector_size.to_string()),
        ]
    }

    /// Parses the values read from the backend.
    pub fn from_keys(values: &[(String, String)]) -> Result<DiskInfo, KeyError> {
        let sector_size: u32 = number(values, "sector-size")?;
        if sector_size < 512 || !sector_size.is_power_of_two() {
            return Err(KeyError::invalid(
                "sector-size",
                &sector_size.to_string(),
                "a power of two of at least 512",
            ));
        }
        Ok(DiskInfo {
            sectors: number(values, "sectors")?,
            sector_size,
            info: number(values, "info")?,
        })
    }
}

fn number<T: std::str::FromStr>(values: &[(String, String)], key: &str) -> Result<T, KeyError> {
    let text = lookup(values, key).ok_or_else(|| KeyError::Missing {
        key: key.to_owned(),
    })?;
    // Decimal digits only: `str::parse` alone would take a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::invalid(key, text, "a decimal number"));
    }
    text.parse()
        .map_err(|_| KeyError::invalid(key, text, "a number in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn disk_keys_follow_the_device() {
        let disk = BlockDevice::new(
            BlockKind::Disk,
            Vbd::parse("xvda").unwrap(),
            "/img",
            Mode::ReadWrite,
        );
        assert_eq!(disk.info(), 0);
        assert_eq!(
            disk.toolstack_frontend_keys(),
            keys(&[("virtual-device", "51712"), ("device-type", "disk")])
        );
        assert_eq!(
            disk.areas(0, 1).frontend_path(),
            "/local/domain/1/device/vbd/51712"
        );
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert_eq!(
            BlockTransport::from_keys(&keys(&[("event-channel", "3")])),
            Err(KeyError::Missing {
                key: "ring-ref".into()
            })
        );
        // (a transport's keys or a disk's, the keys): each refused as Invalid.
        let cases: [(bool, &[(&str, &str)]); 4] = [
            (true, &[("ring-ref", "+8"), ("event-channel", "3")]),
            (
                true,
                &[
                    ("ring-ref", "8"),
                    ("event-channel", "3"),
                    ("protocol", "pdp11"),
                ],
            ),
            (
                false,
                &[("sectors", "1"), ("info", "0"), ("sector-size", "100")],
            ),
            (
                false,
                &[
                    ("sectors", "99999999999999999999999"),
                    ("info", "0"),
                    ("sector-size", "512"),
                ],
            ),
        ];
        for (transport, bad) in cases {
            let refused = if transport {
                BlockTransport::from_keys(&keys(bad)).err()
            } else {
                DiskInfo::from_keys(&keys(bad)).err()
            };
            assert!(matches!(refused, Some(KeyError::Invalid { .. })), "{bad:?}");
        }
    }
}
