//! Device ⇄ xenstore `virtual-device` number.

use crate::{Style, Vbd};

/// Major numbers of the encodings (the number's bits 8 and up, below bit 28).
const XEN_MAJOR: u32 = 202;
const SCSI_MAJOR: u32 = 8;
const IDE0_MAJOR: u32 = 3;
const IDE1_MAJOR: u32 = 22;
/// Bit 28 marks the extended Xen encoding; 2<<28 and above are reserved.
const EXTENDED: u32 = 1 << 28;
const RESERVED_FROM: u32 = 2 << 28;

/// Why a `virtual-device` number does not name a device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    /// Numbers from 2<<28 up are reserved by the spec.
    #[error("reserved number (2<<28 and above)")]
    Reserved,
    /// An extended-form number whose disk and partition fit the small form; the spec uses the
    /// extended form only when the small one cannot hold the device.
    #[error("non-canonical extended number: this device is {canonical}")]
    NonCanonical {
        /// The number the same device is written as.
        canonical: u32,
    },
    /// An IDE number for `hde` or beyond (major 22, minor 128 and up), which Xen's
    /// encoding does not cover.
    #[error("IDE disk {disk} out of range: hd disks are hda to hdd")]
    IdeDiskOutOfRange {
        /// The disk index the number would mean.
        disk: u32,
    },
    /// The major is not one of 202 (xvd), 8 (sd), 3 or 22 (hd): an unknown or deprecated
    /// encoding (old Linux SCSI and IDE majors included).
    #[error("unknown or deprecated major {major}")]
    UnknownMajor {
        /// The major number (bits 8 to 27).
        major: u32,
    },
}

pub(crate) fn encode(vbd: &Vbd) -> u32 {
    let (disk, part) = (vbd.disk, vbd.partition);
    match vbd.style {
        Style::Xvd | Style::D if disk <= 15 && part <= 15 => XEN_MAJOR << 8 | disk << 4 | part,
        Style::Xvd | Style::D => EXTENDED | disk << 8 | part,
        Style::Sd => SCSI_MAJOR << 8 | disk << 4 | part,
        Style::Hd if disk < 2 => IDE0_MAJOR << 8 | disk << 6 | part,
        Style::Hd => IDE1_MAJOR << 8 | (disk - 2) << 6 | part,
    }
}

pub(crate) fn decode(number: u32) -> Result<Vbd, NumberError> {
    if number >= RESERVED_FROM {
        return Err(NumberError::Reserved);
    }
    let vbd = |style, disk, partition| Vbd {
        disk,
        partition,
        style,
    };
    if number & EXTENDED != 0 {
        let disk = (number >> 8) & 0xf_ffff;
        let partition = number & 0xff;
        if disk <= 15 && partition <= 15 {
            return Err(NumberError::NonCanonical {
                canonical: XEN_MAJOR << 8 | disk << 4 | partition,
            });
        }
        return Ok(vbd(Style::Xvd, disk, partition));
    }
    let minor = number & 0xff;
    match number >> 8 {
        XEN_MAJOR => Ok(vbd(Style::Xvd, minor >> 4, minor & 0xf)),
        SCSI_MAJOR => Ok(vbd(Style::Sd, minor >> 4, minor & 0xf)),
        // Each IDE major holds two disks of 64 minors; the upper half of the minors would be
        // the next major's disks (3:128 is hdc, written 22:0) or beyond hdd.
        IDE0_MAJOR | IDE1_MAJOR => {
            let first = if number >> 8 == IDE0_MAJOR { 0 } else { 2 };
            let hd = vbd(Style::Hd, first + (minor >> 6), minor & 0x3f);
            match minor >> 6 {
                0 | 1 => Ok(hd),
                _ if first == 0 => Err(NumberError::NonCanonical {
                    canonical: encode(&hd),
                }),
                _ => Err(NumberError::IdeDiskOutOfRange { disk: hd.disk }),
            }
        }
        major => Err(NumberError::UnknownMajor { major }),
    }
}
