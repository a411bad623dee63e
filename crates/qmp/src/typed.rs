//! Typed commands a toolstack uses, their replies and events.
//!
//! Each function builds a [`Command`] for [`Client::execute`](crate::Client::execute); the
//! reply is decoded with [`Return::parse`](crate::Return::parse) into the type named in the
//! function's doc. Reply and event types ignore members they do not know, so a newer QEMU
//! does not break them.
//!
//! ```
//! use xsio_qmp::typed::{self, ChangeMedium, ReadOnlyMode};
//!
//! // An image opened by the toolstack, passed to QEMU with add-fd (here a stand-in fd type).
//! let add = typed::add_fd(7u32, None, Some("cdrom"));
//! assert_eq!(add.name(), "add-fd");
//! // Its reply names the fd set, used by the next command on the same connection.
//! let change = typed::blockdev_change_medium::<u32>(&ChangeMedium {
//!     id: "cd0".into(),
//!     filename: typed::fdset_path(0),
//!     format: Some("raw".into()),
//!     read_only_mode: Some(ReadOnlyMode::ReadOnly),
//! });
//! assert_eq!(change.name(), "blockdev-change-medium");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::command::Command;

/// `query-status`; reply [`StatusInfo`].
pub fn query_status<F>() -> Command<F> {
    Command::new("query-status")
}

/// `stop`: pause the guest's vCPUs.
pub fn stop<F>() -> Command<F> {
    Command::new("stop")
}

/// `cont`: resume the guest's vCPUs.
pub fn cont<F>() -> Command<F> {
    Command::new("cont")
}

/// `quit`: QEMU exits. QEMU closing the socket before replying counts as success.
pub fn quit<F>() -> Command<F> {
    Command::new("quit").eof_is_success()
}

/// `query-block`; reply `Vec<`[`BlockInfo`]`>`.
pub fn query_block<F>() -> Command<F> {
    Command::new("query-block")
}

/// `query-fdsets`; reply `Vec<`[`FdsetInfo`]`>`.
pub fn query_fdsets<F>() -> Command<F> {
    Command::new("query-fdsets")
}

/// `add-fd` with `fd` attached: puts it in fd set `fdset_id` (a new set when `None`),
/// labelled `opaque`. Reply [`AddFdInfo`]; open it as [`fdset_path`]`(fdset_id)`.
pub fn add_fd<F>(fd: F, fdset_id: Option<u64>, opaque: Option<&str>) -> Command<F> {
    let mut args = Map::new();
    if let Some(id) = fdset_id {
        args.insert("fdset-id".into(), id.into());
    }
    if let Some(opaque) = opaque {
        args.insert("opaque".into(), opaque.into());
    }
    Command::new("add-fd").arguments(Value::Object(args)).fd(fd)
}

/// `remove-fd`: removes descriptor `fd` (QEMU's number) or, when `None`, the whole set.
pub fn remove_fd<F>(fdset_id: u64, fd: Option<i64>) -> Command<F> {
    let mut args = Map::new();
    args.insert("fdset-id".into(), fdset_id.into());
    if let Some(fd) = fd {
        args.insert("fd".into(), fd.into());
    }
    Command::new("remove-fd").arguments(Value::Object(args))
}

/// `getfd` with `fd` attached: stores it in this monitor under `fdname`.
pub fn getfd<F>(fd: F, fdname: &str) -> Command<F> {
    Command::new("getfd")
        .arguments(json!({ "fdname": fdname }))
        .fd(fd)
}

/// `closefd`: releases the descriptor stored under `fdname`.
pub fn closefd<F>(fdname: &str) -> Command<F> {
    Command::new("closefd").arguments(json!({ "fdname": fdname }))
}

/// The path QEMU opens for fd set `fdset_id`: `/dev/fdset/N`.
pub fn fdset_path(fdset_id: u64) -> String {
    format!("/dev/fdset/{fdset_id}")
}

/// Arguments of `blockdev-change-medium`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChangeMedium {
    /// The qdev id of the drive (`cd0`).
    pub id: String,
    /// The image to insert, often [`fdset_path`].
    pub filename: String,
    /// Image format (`raw`); probed when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// How to open the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_mode: Option<ReadOnlyMode>,
}

/// `read-only-mode` of `blockdev-change-medium`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadOnlyMode {
    /// Keep the previous medium's mode.
    Retain,
    /// Open read-only.
    ReadOnly,
    /// Open read-write.
    ReadWrite,
}

/// `blockdev-change-medium`: opens the tray, swaps the medium, closes the tray.
pub fn blockdev_change_medium<F>(args: &ChangeMedium) -> Command<F> {
    Command::new("blockdev-change-medium").arguments(to_value(args))
}

/// `eject` of the medium in the drive with qdev id `id`.
pub fn eject<F>(id: &str) -> Command<F> {
    Command::new("eject").arguments(json!({ "id": id }))
}

/// `device_add` of a device of type `driver` with qdev id `id` and further properties.
pub fn device_add<F>(driver: &str, id: &str, properties: Map<String, Value>) -> Command<F> {
    let mut args = properties;
    args.insert("driver".into(), driver.into());
    args.insert("id".into(), id.into());
    Command::new("device_add").arguments(Value::Object(args))
}

/// `device_del`: asks the guest to release device `id`. The reply only says the request was
/// made; the removal is done when [`DeviceDeleted`] arrives (it may never, on a paused guest).
pub fn device_del<F>(id: &str) -> Command<F> {
    Command::new("device_del").arguments(json!({ "id": id }))
}

/// `xen-save-devices-state` into `filename` (often [`fdset_path`]); `live` only exists since
/// QEMU 2.11.
pub fn xen_save_devices_state<F>(filename: &str, live: Option<bool>) -> Command<F> {
    let mut args = Map::new();
    args.insert("filename".into(), filename.into());
    if let Some(live) = live {
        args.insert("live".into(), live.into());
    }
    Command::new("xen-save-devices-state").arguments(Value::Object(args))
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Our argument structs have string keys and plain fields; serialising them cannot fail.
    serde_json::to_value(value).expect("argument structs serialise")
}

/// Reply of `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// The run state (`running`, `paused`, `prelaunch`, `inmigrate`, ...).
    pub status: String,
    /// Whether the vCPUs run.
    pub running: bool,
}

/// One entry of the `query-block` reply.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockInfo {
    /// The legacy drive name (empty with `-nodefaults` and no `-drive`).
    #[serde(default)]
    pub device: String,
    /// The qdev id of the device using the drive.
    #[serde(default)]
    pub qdev: Option<String>,
    /// Whether the medium can be changed.
    pub removable: bool,
    /// Whether the guest locked the tray.
    #[serde(default)]
    pub locked: bool,
    /// Whether the tray is open (removable drives only).
    #[serde(default, rename = "tray_open")]
    pub tray_open: Option<bool>,
    /// The medium, when one is inserted.
    #[serde(default)]
    pub inserted: Option<InsertedMedium>,
}

/// The `inserted` member of a [`BlockInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct InsertedMedium {
    /// The file QEMU opened (`/dev/fdset/0`).
    pub file: String,
    /// Whether it is read-only.
    pub ro: bool,
    /// The block driver (`raw`, `qcow2`).
    pub drv: String,
}

/// Reply of `add-fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AddFdInfo {
    /// The fd set the descriptor went into.
    pub fdset_id: u64,
    /// QEMU's own number for the descriptor (not stable; for `remove-fd`).
    pub fd: i64,
}

/// One entry of the `query-fdsets` reply.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FdsetInfo {
    /// The set's id.
    pub fdset_id: u64,
    /// Its descriptors.
    pub fds: Vec<FdsetFd>,
}

/// A descriptor in a [`FdsetInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FdsetFd {
    /// QEMU's number for it.
    pub fd: i64,
    /// The label given to `add-fd`.
    #[serde(default)]
    pub opaque: Option<String>,
}

/// Name of the event [`DeviceTrayMoved`].
pub const DEVICE_TRAY_MOVED: &str = "DEVICE_TRAY_MOVED";
/// Name of the event [`DeviceDeleted`].
pub const DEVICE_DELETED: &str = "DEVICE_DELETED";

/// Data of `DEVICE_TRAY_MOVED`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceTrayMoved {
    /// The legacy drive name (often empty).
    #[serde(default)]
    pub device: String,
    /// The qdev id.
    #[serde(default)]
    pub id: Option<String>,
    /// Whether the tray is now open.
    pub tray_open: bool,
}

/// Data of `DEVICE_DELETED`: the guest released a device and QEMU removed it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DeviceDeleted {
    /// The qdev id, when the device had one.
    #[serde(default)]
    pub device: Option<String>,
    /// The QOM path.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Return;

    fn args<F>(cmd: &Command<F>) -> Value {
        cmd.arguments.clone().unwrap_or(Value::Null)
    }

    #[test]
    fn arguments_use_qmp_member_names() {
        let c = blockdev_change_medium::<u32>(&ChangeMedium {
            id: "cd0".into(),
            filename: fdset_path(3),
            format: Some("raw".into()),
            read_only_mode: Some(ReadOnlyMode::ReadOnly),
        });
        assert_eq!(
            args(&c),
            json!({"id": "cd0", "filename": "/dev/fdset/3", "format": "raw", "read-only-mode": "read-only"})
        );
        assert_eq!(
            args(&add_fd(1u32, None, Some("cdrom"))),
            json!({"opaque": "cdrom"})
        );
        assert_eq!(add_fd(1u32, Some(2), None).fds, vec![1]);
        assert_eq!(
            args(&remove_fd::<u32>(0, Some(13))),
            json!({"fdset-id": 0, "fd": 13})
        );
        assert_eq!(
            args(&xen_save_devices_state::<u32>("/dev/fdset/1", Some(false))),
            json!({"filename": "/dev/fdset/1", "live": false})
        );
        let mut props = Map::new();
        props.insert("bus".into(), "pci.0".into());
        assert_eq!(
            args(&device_add::<u32>("virtio-net-pci", "nic1", props)),
            json!({"driver": "virtio-net-pci", "id": "nic1", "bus": "pci.0"})
        );
        assert!(quit::<u32>().eof_is_success);
    }

    fn ret(text: &str) -> Return {
        Return::new(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn replies_seen_from_qemu_7_2_decode_and_unknown_members_are_ignored() {
        let status: StatusInfo =
            ret(r#"{"status": "running", "singlestep": false, "running": true}"#)
                .parse()
                .unwrap();
        assert_eq!((status.status.as_str(), status.running), ("running", true));

        let blocks: Vec<BlockInfo> = ret(r#"[{"io-status": "ok", "device": "", "locked": false, "removable": true, "inserted": {"iops_rd": 0, "ro": true, "drv": "raw", "file": "/dev/fdset/0", "image": {"filename": "/dev/fdset/0"}}, "qdev": "cd0", "tray_open": false, "type": "unknown"}]"#).parse().unwrap();
        assert_eq!(blocks[0].qdev.as_deref(), Some("cd0"));
        assert_eq!(blocks[0].tray_open, Some(false));
        assert_eq!(blocks[0].inserted.as_ref().unwrap().file, "/dev/fdset/0");

        let add: AddFdInfo = ret(r#"{"fd": 13, "fdset-id": 0}"#).parse().unwrap();
        assert_eq!(
            add,
            AddFdInfo {
                fdset_id: 0,
                fd: 13
            }
        );

        let event = crate::wire::decode(br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/nic1", "device": "nic1", "new": 1}}"#).unwrap();
        let crate::wire::Message::Event(event) = event else {
            panic!("not an event")
        };
        let deleted: DeviceDeleted = event.parse_data().unwrap();
        assert_eq!(deleted.device.as_deref(), Some("nic1"));
        assert_eq!(deleted.path, "/machine/peripheral/nic1");

        let bad = ret(r#"{"fd": "x"}"#).parse::<AddFdInfo>();
        assert!(matches!(bad, Err(crate::CommandError::BadReply { .. })));
    }
}
