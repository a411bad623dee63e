//! The block devices of the xenbus tests, made once: guest 1's disk `xvda` and CD-ROM
//! `hdc` as the toolstack creates them (backend in dom0), and the two ends that connect
//! them, the frontend offering a ring of its own per device.
//!
//! ```
//! use xsio_testkit::block;
//!
//! let disk = block::disk();
//! let (areas, create) = block::create(&disk);
//! assert_eq!(areas.backend_path(), "/local/domain/0/backend/qdisk/1/51712");
//! assert!(!create.ops.is_empty());
//! let (backend, frontend) = block::ends(&disk, &areas, 0, std::time::Instant::now());
//! # let _ = (backend, frontend);
//! ```

use std::time::Instant;

use xsio_ops::Txn;
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Backend, DeviceAreas, Frontend};

/// Sectors (of 512 bytes) of [`disk`]: what its backend announces on connect.
pub const DISK_SECTORS: u64 = 2048;

/// Guest 1's disk: `xvda` (virtual-device 51712), read-write, image `/img/disk`, of
/// [`DISK_SECTORS`] sectors.
pub fn disk() -> BlockDevice {
    let mut disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").expect("xvda is a virtual device"),
        "/img/disk",
        Mode::ReadWrite,
    );
    disk.sectors = DISK_SECTORS;
    disk
}

/// Guest 1's CD-ROM: `hdc` (virtual-device 5632), read-only, image `/img/cd.iso`.
pub fn cdrom() -> BlockDevice {
    BlockDevice::new(
        BlockKind::Cdrom,
        Vbd::parse("hdc").expect("hdc is a virtual device"),
        "/img/cd.iso",
        Mode::ReadOnly,
    )
}

/// The areas of `device` between dom0's backend and guest 1, and the toolstack's
/// transaction creating them with the device's keys.
pub fn create(device: &BlockDevice) -> (DeviceAreas, Txn) {
    let areas = device.areas(0, 1);
    let create = areas.create(
        &device.toolstack_backend_keys(),
        &device.toolstack_frontend_keys(),
    );
    (areas, create)
}

/// The two ends of `device` in `areas` as of `now`: the backend, and the frontend
/// offering ring `n` (grant reference 8 + n, event channel 3 + n, the x86_64 ABI), so that
/// each device of a guest has a ring of its own.
pub fn ends(
    device: &BlockDevice,
    areas: &DeviceAreas,
    n: u32,
    now: Instant,
) -> (Backend, Frontend) {
    let ring = BlockTransport {
        ring_ref: 8 + n,
        event_channel: 3 + n,
        protocol: Some(Protocol::X86_64),
    };
    let backend = Backend::new(device.backend_config(areas.clone()), now);
    let frontend = Frontend::new(device.frontend_config(areas.clone(), &ring), now);
    (backend, frontend)
}
