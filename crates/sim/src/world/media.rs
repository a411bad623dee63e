//! The toolstack's media changes: `xsio-cdrom`'s `MediaChange` on a guest's CD-ROM, over
//! the QMP connection of the guest's QEMU (the per-domain lock from the host, the image
//! opened by the driver and passed to QEMU with `add-fd`, xenstore written around it).

use xsio_cdrom::{CdromError, Changed, Config, DeviceModel, Format, MediaChange, Medium};

use super::{Phase, Role, Sim, SimActor};
use crate::trace::Lane;

impl Sim {
    /// Starts a change of device `i`'s medium: `Some(path)` inserts that image (raw),
    /// `None` ejects. A drive that is not running, or whose domain is destroyed, is left
    /// alone.
    pub(super) fn change_medium(&mut self, i: usize, medium: Option<String>) {
        let d = &self.devices[i];
        let (domid, name) = (d.domid, self.device_name(i));
        let who = format!("toolstack {name}");
        let Some(dom) = self.domains.get(&domid) else {
            return;
        };
        if d.phase != Phase::Running || dom.destroyed {
            let what = format!("media change: device is {:?}, skipped", d.phase);
            self.say(Lane::Toolstack, who, what);
            return;
        }
        let qmp = dom.qmp;
        let config = Config::new(domid, d.name.clone(), DeviceModel::Qmp);
        let now = self.harness.now();
        let change = match medium {
            Some(path) => {
                self.say(Lane::Toolstack, who, format!("insert {path}"));
                let medium = Medium {
                    path,
                    format: Format::Raw,
                };
                MediaChange::insert(config, medium, now)
            }
            None => {
                self.say(Lane::Toolstack, who, "eject".into());
                MediaChange::eject(config, now)
            }
        };
        self.add_op(
            Role::Device(i, Lane::Toolstack),
            qmp,
            SimActor::Media(change),
        );
    }

    /// A media change of device `i` completed: its outcome goes in the trace and the
    /// device's notes (a failure is a note: under faults QEMU may die during a change).
    pub(super) fn medium_changed(
        &mut self,
        i: usize,
        lane: Lane,
        who: String,
        result: &Result<Changed, CdromError>,
    ) {
        let note = match result {
            Ok(changed) if changed.params.is_empty() => "ejected".to_owned(),
            Ok(changed) => format!("medium {}", changed.params),
            Err(err) => format!("media change failed: {err}"),
        };
        self.say(lane, who, note.clone());
        self.devices[i].notes.push(note);
    }
}
