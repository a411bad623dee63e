//! Xen virtual block device (VBD) names and their xenstore `virtual-device` numbers.
//!
//! A toolstack names a guest disk `xvda`, `hdc2` or `d536p37`; xenstore, the frontend and the
//! backend know it only by the number written under `.../vbd/<devid>/virtual-device`. This
//! crate converts both ways, strictly, with a typed error for every name it refuses.
//!
//! # The naming scheme
//!
//! | form | meaning | number | limits |
//! |---|---|---|---|
//! | `xvd<letters>[<part>]` | Xen disk | `202<<8 \| disk<<4 \| part` when disk ≤ 15 and part ≤ 15, else `1<<28 \| disk<<8 \| part` | disk < 2^20, part < 256 |
//! | `d<disk>[p<part>]` | Xen disk, by number | as `xvd` | as `xvd` |
//! | `sd<letters>[<part>]` | emulated SCSI disk | `8<<8 \| disk<<4 \| part` | disk < 16 (`sda`..`sdp`), part < 16 |
//! | `hd<letters>[<part>]` | emulated IDE disk | `3<<8 \| disk<<6 \| part` for `hda`, `hdb`; `22<<8 \| (disk-2)<<6 \| part` for `hdc`, `hdd` | disk < 4, part < 64 |
//!
//! Disk letters count in bijective base 26: `a` is 0, `z` 25, `aa` 26, `az` 51, `zz` 701,
//! `aaa` 702. Partition 0 is the whole disk and is written by leaving the partition out.
//!
//! ```
//! use xsio_vbd::{Style, Vbd};
//!
//! let disk: Vbd = "xvda".parse()?;
//! assert_eq!(disk.number(), 51712);
//!
//! let part = Vbd::parse("d536p37")?;
//! assert_eq!((part.disk(), part.partition(), part.style()), (536, 37, Style::D));
//! assert_eq!(part.number(), 268572709);
//! assert_eq!(part.to_string(), "xvdtq37"); // the canonical name of the same device
//!
//! // Numbers decode to their canonical name; IDE and SCSI numbers keep their form.
//! assert_eq!(Vbd::from_number(5634)?.to_string(), "hdc2");
//! assert_eq!(Vbd::from_number(268439552)?.to_string(), "xvdq");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every refused name says why:
//!
//! ```
//! use xsio_vbd::{ParseError, Vbd};
//!
//! assert_eq!(Vbd::parse("xvda01"), Err(ParseError::LeadingZero { at: 4 }));
//! assert_eq!(Vbd::parse("hde"), Err(ParseError::DiskOutOfRange { name: "hd", limit: 4 }));
//! assert!(matches!(Vbd::parse("XVDA"), Err(ParseError::InvalidCharacter { ch: 'X', at: 0 })));
//! ```
//!
//! # Policy where libxl, QEMU and Linux disagree
//!
//! The spec (Xen's `xen-vbd-interface.7`) wins where it speaks; where it is silent we take
//! the strict choice, so that a name has exactly one spelling. Each decision has a test in
//! `tests/disagreements.rs` named after it.
//!
//! - **`d0` without `p`** is accepted as `d0p0`: the spec lists it (libxl refuses it, QEMU
//!   accepts it).
//! - **An explicit partition 0 in letter forms** (`xvda0`, `sda0`, `hda0`) is refused with
//!   [`ParseError::ExplicitPartitionZero`]: the whole disk is written `xvda`, as libxl requires
//!   and as libxl and Linux print it. QEMU accepts it, and its `vdev` property prints the
//!   partition always (`xvda0`), so strip a trailing `0` after letters before parsing QEMU's
//!   output. `d0p0` is in the spec and stays valid.
//! - **Leading zeros** (`xvda01`, `d010p1`, `d0p00`) are refused: libxl reads `d010` as octal 8
//!   and QEMU as decimal 10, so any reading would silently disagree with one of them.
//! - **Signs, spaces, hex, upper case** (`xvda+1`, `d 1p2`, `d0x1p0`, `XVDA`) are refused: both
//!   C parsers accept some of these through `strtoul`/`sscanf` by accident.
//! - **Bare numbers** (`51712`, `0xca00`) are not names. libxl accepts them for old configs;
//!   that path is [`parse_raw`], a separate function the caller must choose.
//! - **Empty and truncated names** (`""`, `xvd`, `hd1`, `d-1p0`) are errors. libxl returns 0 or
//!   a negative number that its callers take for a device id.
//! - **Letter overflow** (`xvdmwlqkww`, 2^32 + 1) is refused with
//!   [`ParseError::DiskOutOfRange`]; QEMU wraps it to 51712 (`xvda`). Decoding stops as soon as
//!   the value passes the limit, so no length of letters can overflow.
//! - **Disks 4096 to 2^20 − 1** (`xvdfao`) are accepted, as libxl and QEMU do, though a Linux
//!   guest refuses them (its minor numbers have 20 bits). [`Vbd::linux_can_name`] tells.
//! - **Number to name for IDE numbers** keeps the IDE name: 832 is `hdb` and 5632 `hdc`
//!   (Linux agrees on the disk). libxl ignores the major and prints `xvde` and `xvda`.
//! - **Partition 0 is omitted when printing** (`xvda`, not QEMU's `xvda0`), as libxl and Linux.
//! - **Deprecated majors** (old SCSI 65..71, 128..135; `sdq` and beyond; `hde` and beyond) are
//!   refused both ways, as libxl and QEMU do; only Linux still decodes them.
//! - **Non-canonical extended numbers** (bit 28 set but the disk and partition fit the small
//!   form, like `1<<28`) are refused by [`Vbd::from_number`] with
//!   [`NumberError::NonCanonical`] naming the canonical number, so that number → name →
//!   number is the identity on every number we accept.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod letters;
mod name;
mod number;
mod raw;

use std::fmt;

pub use name::ParseError;
pub use number::NumberError;
pub use raw::{RawError, parse_raw};

/// The largest Xen disk index plus one: `xvd` and `d` disks are below 2^20.
pub const XEN_DISK_LIMIT: u32 = 1 << 20;
/// Xen partitions are below 256.
pub const XEN_PARTITION_LIMIT: u32 = 256;
/// SCSI disks are `sda` to `sdp`.
pub const SCSI_DISK_LIMIT: u32 = 16;
/// SCSI partitions are below 16.
pub const SCSI_PARTITION_LIMIT: u32 = 16;
/// IDE disks are `hda` to `hdd`.
pub const IDE_DISK_LIMIT: u32 = 4;
/// IDE partitions are below 64.
pub const IDE_PARTITION_LIMIT: u32 = 64;

/// The form a VBD name was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// `xvd<letters>[<part>]`: a Xen PV disk.
    Xvd,
    /// `d<disk>[p<part>]`: a Xen PV disk by number; encodes like [`Style::Xvd`].
    D,
    /// `sd<letters>[<part>]`: an emulated SCSI disk.
    Sd,
    /// `hd<letters>[<part>]`: an emulated IDE disk.
    Hd,
}

impl Style {
    /// The exclusive upper bounds of disk and partition in this form.
    pub const fn limits(self) -> (u32, u32) {
        match self {
            Style::Xvd | Style::D => (XEN_DISK_LIMIT, XEN_PARTITION_LIMIT),
            Style::Sd => (SCSI_DISK_LIMIT, SCSI_PARTITION_LIMIT),
            Style::Hd => (IDE_DISK_LIMIT, IDE_PARTITION_LIMIT),
        }
    }

    /// The letters a name of this form starts with.
    pub const fn prefix(self) -> &'static str {
        match self {
            Style::Xvd => "xvd",
            Style::D => "d",
            Style::Sd => "sd",
            Style::Hd => "hd",
        }
    }
}

/// A valid virtual block device: a disk, a partition (0 = whole disk), and a naming form.
///
/// Values are always within the limits of their [`Style`], so [`Vbd::number`] cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vbd {
    disk: u32,
    partition: u32,
    style: Style,
}

impl Vbd {
    /// A device from its parts, checked against the limits of `style`.
    ///
    /// ```
    /// use xsio_vbd::{Style, Vbd};
    /// assert_eq!(Vbd::new(Style::Hd, 2, 2).unwrap().to_string(), "hdc2");
    /// assert!(Vbd::new(Style::Sd, 16, 0).is_err());
    /// ```
    pub fn new(style: Style, disk: u32, partition: u32) -> Result<Vbd, ParseError> {
        let (disk_limit, partition_limit) = style.limits();
        if disk >= disk_limit {
            return Err(ParseError::DiskOutOfRange {
                name: style.prefix(),
                limit: disk_limit,
            });
        }
        if partition >= partition_limit {
            return Err(ParseError::PartitionOutOfRange {
                name: style.prefix(),
                limit: partition_limit,
            });
        }
        Ok(Vbd {
            disk,
            partition,
            style,
        })
    }

    /// Parses a VBD name strictly (see the crate docs for the policy).
    pub fn parse(name: &str) -> Result<Vbd, ParseError> {
        name::parse(name)
    }

    /// Decodes a xenstore `virtual-device` number.
    pub fn from_number(number: u32) -> Result<Vbd, NumberError> {
        number::decode(number)
    }

    /// The xenstore `virtual-device` number of this device.
    pub fn number(&self) -> u32 {
        number::encode(self)
    }

    /// The disk index: 0 for `xvda`, `hda`, `sda`, `d0`.
    pub fn disk(&self) -> u32 {
        self.disk
    }

    /// The partition: 0 for the whole disk.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The form the device was named in.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Whether a Linux guest's blkfront can name this device. Linux gives each Xen disk 256
    /// minors out of 20 bits, so it refuses disks from 4096 on even though the spec allows
    /// them.
    pub fn linux_can_name(&self) -> bool {
        match self.style {
            Style::Xvd | Style::D => self.disk < 4096,
            Style::Sd | Style::Hd => true,
        }
    }
}

/// Prints the canonical name: `xvd` form for [`Style::Xvd`] and [`Style::D`], `sd` and `hd`
/// forms kept, partition left out when 0.
impl fmt::Display for Vbd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.style {
            Style::Xvd | Style::D => "xvd",
            Style::Sd => "sd",
            Style::Hd => "hd",
        };
        f.write_str(prefix)?;
        letters::write(f, self.disk)?;
        if self.partition != 0 {
            write!(f, "{}", self.partition)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Vbd {
    type Err = ParseError;

    fn from_str(name: &str) -> Result<Vbd, ParseError> {
        Vbd::parse(name)
    }
}
