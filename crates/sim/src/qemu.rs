//! A simulated QEMU process, as its QMP monitor shows it: bytes in (commands, with the
//! descriptors that rode on them), bytes out (the greeting, replies, events).
//!
//! It answers as QEMU 7.2 answered in the transcripts under `testdata/qmp/` (`dm-*.txt`,
//! `cdrom-fd.txt`, `errors.txt`; `tests/qemu_transcripts.rs` replays them against it): the
//! greeting, capability negotiation, run states (`query-status`, `stop`, `cont`, `quit`),
//! fd sets (`add-fd`, `remove-fd`, `query-fdsets`: a set that a saved state still uses
//! stays while the guest is paused, as QEMU before 9.1 keeps it), `xen-save-devices-state`,
//! `query-version`, and the CD-ROM drives' trays and media (`eject`,
//! `blockdev-change-medium`, `query-block`, `DEVICE_TRAY_MOVED`). Descriptors are
//! [`TrackedFd`]s, so a descriptor QEMU still holds when the run ends is counted.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use xsio_core::{FdLedger, TrackedFd};
use xsio_qmp::wire::Framer;

/// The version the transcripts were recorded from.
pub(crate) const VERSION: (u32, u32, u32) = (7, 2, 22);
/// Its package string.
pub(crate) const PACKAGE: &str = "Debian 1:7.2+dfsg-7+deb12u18+b3";

/// One fd set: its descriptors (number, opaque, the descriptor), and the duplicates a
/// saved state opened from it.
#[derive(Debug, Default)]
struct FdSet {
    fds: Vec<(u64, String, TrackedFd)>,
    dups: Vec<TrackedFd>,
}

/// One removable drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tray {
    /// Whether the tray is open.
    pub(crate) open: bool,
    /// The medium's file, when one is inserted (`/dev/fdset/N` for one passed as a
    /// descriptor).
    pub(crate) medium: Option<String>,
    /// For a medium opened from an fd set: the [`TrackedFd::id`] of the set's descriptor
    /// (whose file the driver opened), and the format `blockdev-change-medium` named.
    pub(crate) from_fd: Option<(u64, String)>,
}

/// What a command did besides its reply, for the host that runs the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing else.
    None,
    /// `quit`: the process exits cleanly after its reply.
    Quit,
}

/// The QMP side of one simulated QEMU.
#[derive(Debug)]
pub(crate) struct SimQemu {
    framer: Framer,
    negotiated: bool,
    /// `prelaunch`, `running`, `paused`, `inmigrate`, ...
    pub(crate) status: String,
    /// Descriptors of the latest message that carried any (QEMU keeps only those).
    received: Vec<TrackedFd>,
    fdsets: BTreeMap<u64, FdSet>,
    next_fd: u64,
    /// Drives by qdev id.
    pub(crate) trays: BTreeMap<String, Tray>,
    /// What QEMU opens itself (the saved state's duplicate, a medium's file).
    ledger: FdLedger,
    /// Media opened from fd sets, held while inserted: drive → descriptor.
    media: BTreeMap<String, TrackedFd>,
    out: Vec<Vec<u8>>,
    /// Virtual milliseconds, for event timestamps.
    now_ms: u64,
}

impl SimQemu {
    /// A QEMU just started in run state `status` (`prelaunch` for `-S`), its drives with
    /// their trays, opening its own descriptors from `ledger`.
    pub(crate) fn new(status: &str, trays: BTreeMap<String, Tray>, ledger: FdLedger) -> SimQemu {
        SimQemu {
            framer: Framer::new(1 << 20),
            negotiated: false,
            status: status.to_owned(),
            received: Vec::new(),
            fdsets: BTreeMap::new(),
            next_fd: 11,
            trays,
            ledger,
            media: BTreeMap::new(),
            out: Vec::new(),
            now_ms: 0,
        }
    }

    /// The greeting a new connection gets (negotiation starts again).
    pub(crate) fn greet(&mut self) -> Vec<u8> {
        self.negotiated = false;
        self.framer = Framer::new(1 << 20);
        let (major, minor, micro) = VERSION;
        line(&json!({"QMP": {
            "version": {"qemu": {"micro": micro, "minor": minor, "major": major}, "package": PACKAGE},
            "capabilities": ["oob"],
        }}))
    }

    /// Bytes from the client, with the descriptors that came with their first byte; the
    /// messages to send back are taken with [`take_output`](SimQemu::take_output).
    pub(crate) fn receive(&mut self, now_ms: u64, mut bytes: &[u8], fds: Vec<TrackedFd>) -> Effect {
        self.now_ms = now_ms;
        if !fds.is_empty() {
            // QEMU keeps the descriptors of the latest message that carried any.
            self.received = fds;
        }
        let mut effect = Effect::None;
        loop {
            let frame = match self.framer.next_frame(&mut bytes) {
                Ok(Some(frame)) => frame.into_owned(),
                Ok(None) => break,
                Err(_) => {
                    self.reply_error(None, "GenericError", "JSON parse error");
                    break;
                }
            };
            if self.command(&frame) == Effect::Quit {
                effect = Effect::Quit;
            }
        }
        effect
    }

    /// The messages produced since the last call.
    pub(crate) fn take_output(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out)
    }

    /// Descriptors QEMU holds (fd sets, saved-state duplicates, media).
    pub(crate) fn held(&self) -> u64 {
        let sets: usize = self
            .fdsets
            .values()
            .map(|s| s.fds.len() + s.dups.len())
            .sum();
        (sets + self.media.len()) as u64
    }

    /// The fd sets and their descriptors' opaque strings (for checks).
    pub(crate) fn fdsets(&self) -> Vec<(u64, Vec<String>)> {
        self.fdsets
            .iter()
            .map(|(id, set)| (*id, set.fds.iter().map(|(_, o, _)| o.clone()).collect()))
            .collect()
    }

    fn command(&mut self, frame: &[u8]) -> Effect {
        let Ok(message) = serde_json::from_slice::<Value>(frame) else {
            self.reply_error(None, "GenericError", "JSON parse error");
            return Effect::None;
        };
        let id = message.get("id").cloned();
        let Some(name) = message.get("execute").and_then(Value::as_str) else {
            self.reply_error(id, "GenericError", "QMP input must be a JSON object");
            return Effect::None;
        };
        let args = message.get("arguments").cloned().unwrap_or(json!({}));
        if !self.negotiated {
            if name == "qmp_capabilities" {
                self.negotiated = true;
                self.reply(id, json!({}));
            } else {
                self.reply_error(
                    id,
                    "CommandNotFound",
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                );
            }
            return Effect::None;
        }
        let answer = match name {
            "qmp_capabilities" => Err((
                "CommandNotFound",
                "Capabilities negotiation is already complete, command ignored".to_owned(),
            )),
            "query-status" => Ok(json!({
                "status": self.status,
                "singlestep": false,
                "running": self.status == "running",
            })),
            "query-version" => {
                let (major, minor, micro) = VERSION;
                Ok(
                    json!({"qemu": {"micro": micro, "minor": minor, "major": major}, "package": PACKAGE}),
                )
            }
            "stop" => {
                if self.status == "running" {
                    self.event("STOP", None);
                }
                if self.status != "prelaunch" && self.status != "inmigrate" {
                    self.status = "paused".into();
                }
                Ok(json!({}))
            }
            "cont" => {
                self.status = "running".into();
                // A saved state's duplicates go once the guest runs again.
                for set in self.fdsets.values_mut() {
                    set.dups.clear();
                }
                self.event("RESUME", None);
                Ok(json!({}))
            }
            "quit" => {
                self.event(
                    "SHUTDOWN",
                    Some(json!({"guest": false, "reason": "host-qmp-quit"})),
                );
                self.reply(id, json!({}));
                return Effect::Quit;
            }
            "add-fd" => self.add_fd(&args),
            "remove-fd" => self.remove_fd(&args),
            "query-fdsets" => Ok(Value::Array(
                self.fdsets
                    .iter()
                    .map(|(id, set)| {
                        let fds: Vec<Value> = set
                            .fds
                            .iter()
                            .map(|(fd, opaque, _)| json!({"fd": fd, "opaque": opaque}))
                            .collect();
                        json!({"fds": fds, "fdset-id": id})
                    })
                    .collect(),
            )),
            "xen-save-devices-state" => self.save_devices_state(&args),
            "eject" => self.eject(&args),
            "blockdev-change-medium" => self.change_medium(&args),
            "query-block" => Ok(self.query_block()),
            other => Err((
                "CommandNotFound",
                format!("The command {other} has not been found"),
            )),
        };
        match answer {
            Ok(value) => self.reply(id, value),
            Err((class, desc)) => self.reply_error(id, class, &desc),
        }
        Effect::None
    }

    fn add_fd(&mut self, args: &Value) -> Result<Value, (&'static str, String)> {
        let Some(fd) = (!self.received.is_empty()).then(|| self.received.remove(0)) else {
            return Err((
                "GenericError",
                "No file descriptor supplied via SCM_RIGHTS".into(),
            ));
        };
        // The rest of that message's descriptors are not QEMU's to keep.
        self.received.clear();
        let set_id = match args.get("fdset-id").and_then(Value::as_u64) {
            Some(id) => id,
            None => (0..).find(|id| !self.fdsets.contains_key(id)).unwrap_or(0),
        };
        let number = self.next_fd;
        self.next_fd += 1;
        let opaque = args
            .get("opaque")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.fdsets
            .entry(set_id)
            .or_default()
            .fds
            .push((number, opaque, fd));
        Ok(json!({"fd": number, "fdset-id": set_id}))
    }

    fn remove_fd(&mut self, args: &Value) -> Result<Value, (&'static str, String)> {
        let set_id = args.get("fdset-id").and_then(Value::as_u64);
        let fd = args.get("fd").and_then(Value::as_u64);
        let not_found = || {
            let name = match (set_id, fd) {
                (Some(s), Some(f)) => format!("fdset-id:{s}, fd:{f}"),
                (Some(s), None) => format!("fdset-id:{s}"),
                _ => "fdset-id".to_owned(),
            };
            Err((
                "GenericError",
                format!("File descriptor named '{name}' not found"),
            ))
        };
        let Some(set_id) = set_id else {
            return not_found();
        };
        let Some(set) = self.fdsets.get_mut(&set_id) else {
            return not_found();
        };
        if let Some(fd) = fd
            && !set.fds.iter().any(|(n, ..)| *n == fd)
        {
            return not_found();
        }
        // A set a saved state still uses stays while the guest is paused (QEMU < 9.1).
        if !set.dups.is_empty() {
            return Ok(json!({}));
        }
        set.fds.retain(|(n, ..)| fd.is_some_and(|fd| *n != fd));
        if set.fds.is_empty() {
            self.fdsets.remove(&set_id);
        }
        Ok(json!({}))
    }

    /// Opens a descriptor from the fd set `/dev/fdset/N` names, as QEMU's `qemu_open` does;
    /// also says which of the set's descriptors it duplicated (its [`TrackedFd::id`]).
    fn open_fdset(&mut self, filename: &str) -> Option<(u64, TrackedFd, u64)> {
        let id = filename.strip_prefix("/dev/fdset/")?.parse::<u64>().ok()?;
        let source = self.fdsets.get(&id)?.fds.first()?.2.id();
        Some((id, self.ledger.open(), source))
    }

    fn save_devices_state(&mut self, args: &Value) -> Result<Value, (&'static str, String)> {
        let filename = args
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((id, dup, _)) = self.open_fdset(filename) else {
            return Err((
                "GenericError",
                format!("Could not open '{filename}': No such file or directory"),
            ));
        };
        if let Some(set) = self.fdsets.get_mut(&id) {
            set.dups.push(dup);
        }
        Ok(json!({}))
    }

    fn drive(&self, args: &Value) -> Result<String, (&'static str, String)> {
        let id = args
            .get("id")
            .or_else(|| args.get("device"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.trays.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(("GenericError", format!("Device '{id}' not found")))
        }
    }

    fn eject(&mut self, args: &Value) -> Result<Value, (&'static str, String)> {
        let id = self.drive(args)?;
        self.set_tray(&id, true);
        if let Some(tray) = self.trays.get_mut(&id) {
            tray.medium = None;
            tray.from_fd = None;
        }
        self.media.remove(&id);
        Ok(json!({}))
    }

    fn change_medium(&mut self, args: &Value) -> Result<Value, (&'static str, String)> {
        let id = self.drive(args)?;
        let filename = args
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let opened = if filename.starts_with("/dev/fdset/") {
            match self.open_fdset(&filename) {
                Some((_, fd, source)) => Some((fd, source)),
                None => {
                    return Err((
                        "GenericError",
                        format!("Could not open '{filename}': No such file or directory"),
                    ));
                }
            }
        } else {
            None
        };
        let format = args
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("raw")
            .to_owned();
        self.set_tray(&id, true);
        self.media.remove(&id);
        let mut from_fd = None;
        if let Some((fd, source)) = opened {
            self.media.insert(id.clone(), fd);
            from_fd = Some((source, format));
        }
        if let Some(tray) = self.trays.get_mut(&id) {
            tray.medium = Some(filename);
            tray.from_fd = from_fd;
        }
        self.set_tray(&id, false);
        Ok(json!({}))
    }

    fn set_tray(&mut self, id: &str, open: bool) {
        let Some(tray) = self.trays.get_mut(id) else {
            return;
        };
        if tray.open != open {
            tray.open = open;
            self.event(
                "DEVICE_TRAY_MOVED",
                Some(json!({"device": "", "tray-open": open, "id": id})),
            );
        }
    }

    fn query_block(&self) -> Value {
        Value::Array(
            self.trays
                .iter()
                .map(|(id, tray)| {
                    let mut info = json!({
                        "io-status": "ok", "device": "", "locked": false, "removable": true,
                        "qdev": id, "tray_open": tray.open, "type": "unknown",
                    });
                    if let Some(file) = &tray.medium {
                        info["inserted"] = json!({
                            "ro": true, "drv": "raw", "file": file,
                            "image": {"filename": file, "format": "raw"},
                        });
                    }
                    info
                })
                .collect(),
        )
    }

    fn reply(&mut self, id: Option<Value>, value: Value) {
        let mut message = json!({"return": value});
        if let Some(id) = id {
            message["id"] = id;
        }
        self.out.push(line(&message));
    }

    fn reply_error(&mut self, id: Option<Value>, class: &str, desc: &str) {
        let mut message = json!({"error": {"class": class, "desc": desc}});
        if let Some(id) = id {
            message["id"] = id;
        }
        self.out.push(line(&message));
    }

    fn event(&mut self, name: &str, data: Option<Value>) {
        let mut message = json!({
            "timestamp": {"seconds": self.now_ms / 1000, "microseconds": (self.now_ms % 1000) * 1000},
            "event": name,
        });
        if let Some(data) = data {
            message["data"] = data;
        }
        self.out.push(line(&message));
    }
}

/// A message as QEMU writes it: the JSON, then CR LF.
fn line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.extend_from_slice(b"\r\n");
    bytes
}

#[cfg(test)]
mod tests {
    //! The simulated QEMU against what QEMU 7.2 said in the recorded transcripts: each
    //! client line is fed to it, and each of its answers must be contained in the recorded
    //! one (every member it writes is there with the same value; QEMU writes more, such
    //! as block statistics; event timestamps are virtual, descriptor numbers its own).

    use super::*;

    fn contained(ours: &Value, theirs: &Value) -> bool {
        match (ours, theirs) {
            // A descriptor's number depends on what else QEMU has open.
            (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| {
                k == "timestamp"
                    || (k == "fd" && b.get(k).is_some_and(Value::is_u64))
                    || b.get(k).is_some_and(|w| contained(v, w))
            }),
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| contained(x, y))
            }
            (a, b) => a == b,
        }
    }

    /// Replays `name` (client lines `>`, QEMU lines `<`); returns the answers compared.
    fn replay(name: &str, trays: BTreeMap<String, Tray>) -> usize {
        let path = format!("{}/../../testdata/qmp/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let ledger = FdLedger::default();
        let mut qemu = SimQemu::new("prelaunch", trays, ledger.clone());
        let mut expected: std::collections::VecDeque<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("< "))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let greeting: Value = serde_json::from_slice(&qemu.greet()).unwrap();
        let first = expected.pop_front().unwrap();
        assert!(contained(&greeting, &first), "{greeting} vs {first}");
        let mut compared = 1;
        for line in text.lines().filter_map(|l| l.strip_prefix("> ")) {
            let (fds, command) = match line.strip_prefix("[fds=1] ") {
                Some(rest) => (vec![ledger.open()], rest),
                None => (Vec::new(), line),
            };
            qemu.receive(0, command.as_bytes(), fds);
            for answer in qemu.take_output() {
                let ours: Value = serde_json::from_slice(&answer).unwrap();
                let theirs = expected.pop_front().unwrap_or(Value::Null);
                assert!(
                    contained(&ours, &theirs),
                    "{name}: after {line}\n ours:   {ours}\n theirs: {theirs}"
                );
                compared += 1;
            }
        }
        assert!(expected.is_empty(), "{name}: QEMU said more: {expected:?}");
        compared
    }

    #[test]
    fn it_answers_as_qemu_7_2_did_in_the_transcripts() {
        assert_eq!(replay("dm-startup.txt", BTreeMap::new()), 3);
        assert_eq!(replay("dm-quit.txt", BTreeMap::new()), 5);
        // The save, and QEMU < 9.1 keeping the saved state's fd set until `cont`.
        assert_eq!(replay("dm-save.txt", BTreeMap::new()), 12);
        let cd0 = BTreeMap::from([(
            "cd0".to_owned(),
            Tray {
                open: false,
                medium: None,
                from_fd: None,
            },
        )]);
        // Media by fd set, tray events, query-block, eject.
        assert_eq!(replay("cdrom-fd.txt", cd0), 15);
    }

    #[test]
    fn what_qemu_holds_is_counted_and_goes_with_it() {
        let ledger = FdLedger::default();
        let mut qemu = SimQemu::new("running", BTreeMap::new(), ledger.clone());
        qemu.greet();
        qemu.receive(0, br#"{"execute":"qmp_capabilities","id":0}"#, Vec::new());
        let add = br#"{"execute":"add-fd","arguments":{"opaque":"saved_state"},"id":1}"#;
        qemu.receive(0, add, vec![ledger.open()]);
        let save = br#"{"execute":"xen-save-devices-state","arguments":{"filename":"/dev/fdset/0"},"id":2}"#;
        qemu.receive(0, save, Vec::new());
        assert_eq!((qemu.held(), ledger.open_count()), (2, 2));
        assert_eq!(qemu.fdsets(), [(0, vec!["saved_state".to_owned()])]);
        drop(qemu);
        assert_eq!(ledger.open_count(), 0);
    }
}
