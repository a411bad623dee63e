//! The QMP commands of the change, by QEMU's version.

use serde_json::{Value, json};
use xsio_ops::{FdHandle, FileAccess, FileOp, OpenFile, QmpCommand};

use super::{MediaChange, Purpose};
use crate::config::{drive_id, fdset_label, params};

impl MediaChange {
    pub(super) fn send_eject(&mut self) {
        let drive = drive_id(self.devid);
        let mut arguments = if self.new_qmp() {
            json!({ "id": drive })
        } else {
            json!({ "device": drive })
        };
        if self.config.force {
            arguments["force"] = true.into();
        }
        self.eject_sent = true;
        let eject = QmpCommand::new("eject").arguments(arguments);
        self.command(Purpose::Eject, eject);
    }

    pub(super) fn open_image(&mut self) {
        let Some(medium) = self.change.medium() else {
            return;
        };
        let open = OpenFile {
            path: medium.path.clone(),
            access: FileAccess::ReadOnly,
            create: false,
            truncate: false,
        };
        self.request(Purpose::Open, FileOp::Open(open));
    }

    pub(super) fn add_fd(&mut self, fd: FdHandle) {
        let Some(medium) = self.change.medium() else {
            // Cannot happen (only an insert opens): give it back.
            self.fd = Some(fd);
            return;
        };
        let label = fdset_label(self.devid, medium);
        let add = QmpCommand::new("add-fd")
            .arguments(json!({ "opaque": label }))
            .fd(fd);
        self.command(Purpose::AddFd, add);
    }

    pub(super) fn change_medium(&mut self, set: u64) {
        let Some(medium) = self.change.medium() else {
            return;
        };
        let drive = drive_id(self.devid);
        let filename = format!("/dev/fdset/{set}");
        let format = medium.format.qemu_driver();
        let command = if self.new_qmp() {
            QmpCommand::new("blockdev-change-medium")
                .arguments(json!({ "id": drive, "filename": filename, "format": format }))
        } else {
            QmpCommand::new("change")
                .arguments(json!({ "device": drive, "target": filename, "arg": format }))
        };
        self.command(Purpose::ChangeMedium, command);
    }

    pub(super) fn remove_fd(&mut self, set: u64) {
        let remove = QmpCommand::new("remove-fd").arguments(json!({ "fdset-id": set }));
        self.command(Purpose::RemoveFd, remove);
    }

    pub(super) fn query_block(&mut self) {
        self.command(Purpose::QueryBlock, QmpCommand::new("query-block"));
    }

    /// QEMU 2.8 and later name a drive by `id` and know `blockdev-change-medium` with it.
    pub(super) fn new_qmp(&self) -> bool {
        self.qemu.is_none_or(|v| v.at_least(2, 8))
    }

    /// What `params` should say for the drive `query-block` describes: `None` when that
    /// cannot be told (no such drive, a medium this change did not put there).
    pub(super) fn params_held(&self, block: &Value) -> Option<String> {
        let drive = drive_id(self.devid);
        let entry = block.as_array()?.iter().find(|info| {
            let named = |key: &str| {
                info.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v == drive || v.ends_with(&format!("/{drive}")))
            };
            named("qdev") || named("device")
        })?;
        let Some(inserted) = entry.get("inserted") else {
            return Some(String::new());
        };
        let file = inserted.get("file").and_then(Value::as_str)?;
        let ours = self.new_fdset.map(|set| format!("/dev/fdset/{set}"));
        if ours.as_deref() == Some(file) {
            Some(params(&self.backend_type, self.change.medium()))
        } else {
            None
        }
    }
}
