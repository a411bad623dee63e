//! A guest with an emulated CD-ROM drive `hdc` (device id 5632) in a world with virtual
//! time: xenstore (`MemStore`, xenstored's conflict rule), the in-process host
//! (`FixedHost`: domain info, the per-domain lock) and a QEMU in a box (`SimQemu`) whose
//! drive `ide-5632` holds `/srv/old.iso`.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::time::{Duration, Instant};

use xsio_cdrom::{CdromError, Changed, Config, DeviceModel, Format, MediaChange, Medium};
use xsio_harness::qemu::Fate;
use xsio_harness::{
    ActorId, Conn, FixedHost, Harness, HarnessError, MemStore, Record, SimQemu, Timed,
};
use xsio_ops::{Op, OpErrorKind, Reply, Txn, TxnOp, XsOp};

pub const DOMID: u32 = 5;
pub const BACKEND: &str = "/local/domain/0/backend/qdisk/5/5632";
pub const ENTRY: &str = "/libxl/5/device/vbd/5632";
pub const OLD_ISO: &str = "/srv/old.iso";
pub const NEW_ISO: &str = "/srv/new.iso";

pub type Stores = (SimQemu, (FixedHost, MemStore));
pub type Result_ = Result<Changed, CdromError>;

/// The world of one guest.
pub struct World {
    pub harness: Harness<Timed<MediaChange>>,
    pub stores: Stores,
    pub conn: Conn,
    pub epoch: Instant,
}

#[allow(clippy::disallowed_methods)] // the tests' epoch; every later time is virtual
pub fn real_now() -> Instant {
    Instant::now()
}

impl World {
    /// Domain 5 with `hdc`, a cdrom on a `qdisk` backend holding the old image (xenstore and
    /// QEMU 7.2 agree), `dm-version` `qemu_xen`.
    pub fn new() -> World {
        World::at(real_now())
    }

    pub fn at(epoch: Instant) -> World {
        let mut harness = Harness::new(epoch);
        let conn = harness.connect();
        let mut qemu = SimQemu::qemu_7_2(conn, "running").with_cdrom("ide-5632");
        if let Some(drive) = qemu.drives.get_mut("ide-5632") {
            drive.medium = Some((OLD_ISO.to_owned(), "raw".to_owned()));
        }
        let mut world = World {
            harness,
            stores: (qemu, (FixedHost::default(), MemStore::new())),
            conn,
            epoch,
        };
        world.write_all(&[
            (format!("{BACKEND}/device-type"), "cdrom".to_owned()),
            (format!("{BACKEND}/type"), "qdisk".to_owned()),
            (format!("{BACKEND}/params"), format!("aio:{OLD_ISO}")),
            (format!("{BACKEND}/dev"), "hdc".to_owned()),
            (format!("{ENTRY}/backend"), BACKEND.to_owned()),
            (
                format!("{ENTRY}/frontend"),
                "/local/domain/5/device/vbd/5632".to_owned(),
            ),
            (format!("{ENTRY}/type"), "qdisk".to_owned()),
            (format!("{ENTRY}/params"), format!("aio:{OLD_ISO}")),
            ("/libxl/5/dm-version".to_owned(), "qemu_xen".to_owned()),
            ("/libxl/5/type".to_owned(), "hvm".to_owned()),
        ]);
        world
    }

    pub fn qemu(&self) -> &SimQemu {
        &self.stores.0
    }

    pub fn qemu_mut(&mut self) -> &mut SimQemu {
        &mut self.stores.0
    }

    pub fn host(&mut self) -> &mut FixedHost {
        &mut self.stores.1.0
    }

    pub fn xenstore(&self) -> &MemStore {
        &self.stores.1.1
    }

    pub fn with_fates(mut self, fates: Vec<Fate>) -> World {
        let qemu = std::mem::replace(&mut self.stores.0, SimQemu::qemu_7_2(self.conn, "running"));
        self.stores.0 = qemu.with_fates(fates);
        self
    }

    /// Writes keys from outside (one transaction).
    pub fn write_all(&mut self, keys: &[(String, String)]) {
        let ops = keys
            .iter()
            .map(|(k, v)| TxnOp::write(k.as_str(), v.as_str()))
            .collect();
        self.transact(ops);
    }

    pub fn write(&mut self, path: &str, value: &str) {
        self.write_all(&[(path.to_owned(), value.to_owned())]);
    }

    pub fn remove(&mut self, path: &str) {
        self.transact(vec![TxnOp::Rm {
            path: path.to_owned(),
        }]);
    }

    /// Runs `ops` from outside, in one transaction, to the end.
    fn transact(&mut self, ops: Vec<TxnOp>) {
        self.harness.submit(
            self.conn,
            Op::Xs(XsOp::Transaction(Txn {
                only_if_exists: None,
                ops,
            })),
        );
        self.harness.drive(&mut self.stores).expect("setup");
    }

    /// Adds a change (not started until drained).
    pub fn add(&mut self, make: impl FnOnce(Instant) -> MediaChange) -> ActorId {
        let now = self.harness.now();
        let id = self.harness.add(self.conn, Timed::new(make(now), now));
        self.harness.drain(id);
        id
    }

    /// Runs the world until nothing moves.
    pub fn drive(&mut self) -> Result<(), HarnessError> {
        self.harness.drive(&mut self.stores)
    }

    /// Runs one change to the end; its result and when it came (since the epoch).
    pub fn run(&mut self, make: impl FnOnce(Instant) -> MediaChange) -> (Result_, Duration) {
        let id = self.add(make);
        self.drive().expect("drive");
        let op = self.harness.actor(id);
        assert_eq!(op.completions.len(), 1, "C1: completed exactly once");
        let at = op.completions[0].saturating_duration_since(self.epoch);
        let result = op.machine.result().cloned().expect("complete");
        assert!(op.machine.is_settled(), "settled: every request answered");
        (result, at)
    }

    /// The `params` of the backend and of the toolstack entry (they must agree).
    pub fn params(&self) -> String {
        let be = self.xenstore().read(&format!("{BACKEND}/params"));
        let entry = self.xenstore().read(&format!("{ENTRY}/params"));
        assert_eq!(be, entry, "backend and toolstack entry agree");
        be.unwrap_or_default().to_owned()
    }

    /// What QEMU's drive holds.
    pub fn medium(&self) -> Option<String> {
        self.stores.0.drives["ide-5632"]
            .medium
            .as_ref()
            .map(|(file, _)| file.clone())
    }

    /// C4: xenstore says what QEMU holds; once QEMU is gone it holds nothing, so either
    /// empty or what its drive held when it died will do.
    pub fn assert_agree(&self) {
        let params = self.params();
        let expected = match self.medium().as_deref() {
            None => String::new(),
            Some(OLD_ISO) => format!("aio:{OLD_ISO}"),
            Some(fdset) if fdset.starts_with("/dev/fdset/") => format!("aio:{NEW_ISO}"),
            Some(other) => panic!("QEMU holds {other}"),
        };
        if self.stores.0.is_alive() || !params.is_empty() {
            assert_eq!(
                params,
                expected,
                "C4: xenstore agrees with QEMU's {:?}",
                self.medium()
            );
        }
    }

    /// The QMP commands the machines sent, with their arguments.
    pub fn commands(&self) -> Vec<String> {
        self.stores.0.commands()
    }

    /// Every request and reply so far, for the order checks.
    pub fn log(&mut self) -> Vec<Record<Result_>> {
        self.harness.take_log()
    }
}

pub fn config() -> Config {
    Config::new(DOMID, "hdc", DeviceModel::Qmp)
}

pub fn new_iso() -> Medium {
    Medium {
        path: NEW_ISO.to_owned(),
        format: Format::Raw,
    }
}

pub fn insert(config: Config) -> impl FnOnce(Instant) -> MediaChange {
    move |now| MediaChange::insert(config, new_iso(), now)
}

pub fn eject(config: Config) -> impl FnOnce(Instant) -> MediaChange {
    move |now| MediaChange::eject(config, now)
}

/// A reply that is a conflict, for a store that makes every commit conflict.
pub fn is_commit(op: &Op) -> bool {
    matches!(op, Op::Xs(XsOp::TxnEnd { commit: true, .. }))
}

pub fn conflict() -> Result<Reply, xsio_ops::OpError> {
    Err(xsio_ops::OpError::new(OpErrorKind::Conflict, "EAGAIN"))
}
