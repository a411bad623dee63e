//! What the two tests of QEMU's Xen block backend share (`peer_xen_qemu_backend`: the
//! device's life with our frontend; `peer_xen_qemu_removal`: `xsio-device`'s removal): the
//! device (guest 1's `xvda`, backend in dom0), its ring, QEMU's backend state as dom0
//! reads it, and QEMU's requests in a recording.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use xsio_io_std::unix::now;
use xsio_io_std::xenstore::XsConn;
use xsio_testkit::xen::{Direction, Record, XenQemu};
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{FrontendConfig, XenbusState};

/// The grant reference of the blkif ring, in guest 1's memory.
pub(crate) const RING_REF: u32 = 8;
/// The event channel port of the blkif ring.
pub(crate) const PORT: u32 = 5;
/// QEMU's backend directory.
pub(crate) const BACKEND: &str = "/local/domain/0/backend/qdisk/1/51712";
/// The guest's frontend directory.
pub(crate) const FRONTEND: &str = "/local/domain/1/device/vbd/51712";

/// The backend's state as dom0 reads it (Unknown when gone).
pub(crate) fn backend_state(dom0: &mut XsConn) -> XenbusState {
    dom0.read(&format!("{BACKEND}/state"))
        .ok()
        .and_then(|v| XenbusState::parse(std::str::from_utf8(&v).ok()?).ok())
        .unwrap_or(XenbusState::Unknown)
}

/// Waits (20 s at most, failing with QEMU's log) until QEMU's backend is in InitWait.
pub(crate) fn wait_backend_init_wait(dom0: &mut XsConn, qemu: &XenQemu) {
    let waited = now() + Duration::from_secs(20);
    while backend_state(dom0) != XenbusState::InitWait {
        assert!(
            now() < waited,
            "QEMU's backend never reached InitWait: {}",
            qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Our frontend's configuration for guest 1's `xvda` on `image`, offering the ring
/// ([`RING_REF`], [`PORT`], the x86_64 ABI).
pub(crate) fn frontend_config(image: &Path) -> FrontendConfig {
    let disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        image.to_str().unwrap(),
        Mode::ReadWrite,
    );
    let transport = BlockTransport {
        ring_ref: RING_REF,
        event_channel: PORT,
        protocol: Some(Protocol::X86_64),
    };
    disk.frontend_config(disk.areas(0, 1), &transport)
}

/// QEMU's requests (client to daemon) in `records`, from the first note starting with
/// `after` on.
pub(crate) fn qemu_requests_after(records: &[Record], after: &str) -> Vec<Record> {
    let start = records
        .iter()
        .position(|r| matches!(r, Record::Note { text, .. } if text.starts_with(after)))
        .unwrap_or_else(|| panic!("no note {after:?}"));
    records[start..]
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Message {
                    direction: Direction::ToDaemon,
                    ..
                }
            )
        })
        .cloned()
        .collect()
}
