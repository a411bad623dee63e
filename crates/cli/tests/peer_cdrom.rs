//! CD-ROM media change against real peers: `xsio cdrom` with our `xsio xenstored` holding
//! the drive's areas, and for the QMP path a real QEMU 7.2 (`-machine pc -S`, an `ide-cd`
//! with id `ide-5632` as libxl names it, `cont` after start-up: QEMU 7.2 frees a removed fd
//! set only while the guest runs). Checked from a second QMP monitor (`query-block`,
//! `query-fdsets`, `DEVICE_TRAY_MOVED`) and with Xen's `xenstore-read`. QEMU killed between
//! `add-fd` and `blockdev-change-medium` is driven in process (the change is held back
//! until QEMU is dead), with this process's descriptors counted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Daemon, assert_fails_with, logged_output_within};
use serde_json::Value;
use xsio_cdrom::{CdromError, Config, DeviceModel, Format, MediaChange, Medium};
use xsio_harness::Harness;
use xsio_io_std::dm::QemuLinks;
use xsio_io_std::host::Host;
use xsio_io_std::l2::{XsLinks, run_until_with};
use xsio_io_std::qmp::QmpConn;
use xsio_io_std::xenstore::XsConn;
use xsio_ops::{Input, InputError, Op, Output as MachineOutput, PeerEvent, QmpOp, Request};
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self, PAUSED_PC, Qemu};
use xsio_testkit::xenstored::xenstore_utils;

// The tests that change a medium in QEMU.
const WITH_QEMU: &[(&str, fn())] = xsio_testkit::tests![
    insert_and_eject_through_qemu_with_the_image_as_an_fd,
    a_refused_change_leaves_no_fd_set_and_xenstore_agreeing_with_query_block,
    qemu_killed_between_add_fd_and_the_change_fails_once_and_leaves_nothing
];

// The tests that stop before QEMU.
const XENSTORE_ONLY: &[(&str, fn())] = xsio_testkit::tests![
    the_xenstore_path_is_read_back_by_xenstore_read,
    a_stub_domain_and_a_disk_are_refused_with_their_errors
];

// The test of the per-domain lock, held by flock(1).
const WITH_FLOCK: &[(&str, fn())] = xsio_testkit::tests![a_change_waits_for_the_domain_s_lock];

const BE: &str = "/local/domain/0/backend/qdisk/5/5632";
const ENTRY: &str = "/libxl/5/device/vbd/5632";

/// Our xenstored with domain 5's `hdc` (an empty cdrom on a qdisk backend), a lock
/// directory, and an image.
struct Bed {
    daemon: Daemon,
    locks: tempfile::TempDir,
    image: PathBuf,
}

impl Bed {
    fn new(dm_version: &str) -> Bed {
        let daemon = Daemon::start(&[], &[]);
        let locks = tempfile::tempdir().unwrap();
        let image = locks.path().join("new.iso");
        std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let bed = Bed {
            daemon,
            locks,
            image,
        };
        let keys = [
            (format!("{BE}/device-type"), "cdrom"),
            (format!("{BE}/type"), "qdisk"),
            (format!("{BE}/params"), ""),
            (format!("{BE}/dev"), "hdc"),
            (format!("{ENTRY}/backend"), BE),
            (
                format!("{ENTRY}/frontend"),
                "/local/domain/5/device/vbd/5632",
            ),
            (format!("{ENTRY}/type"), "qdisk"),
            (format!("{ENTRY}/params"), ""),
            ("/libxl/5/dm-version".to_owned(), dm_version),
            ("/libxl/5/type".to_owned(), "hvm"),
        ];
        for (key, value) in keys {
            bed.daemon.ok("xenstore-write", &[&key, value]);
        }
        bed
    }

    fn image(&self) -> &str {
        self.image.to_str().unwrap()
    }

    /// The arguments of `xsio cdrom insert` of the image into domain 5's `hdc`, then `extra`.
    fn insert_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "insert",
            "--domain",
            "5",
            "--vdev",
            "hdc",
            "--image",
            self.image(),
        ];
        args.extend_from_slice(extra);
        args
    }

    /// The arguments of `xsio cdrom eject` of domain 5's `hdc`, then `extra`.
    fn eject_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["eject", "--domain", "5", "--vdev", "hdc"];
        args.extend_from_slice(extra);
        args
    }

    /// `xsio cdrom insert` of the image into `hdc` with `extra` arguments (see [`Bed::cdrom`]).
    fn insert(&self, extra: &[&str]) -> Output {
        self.cdrom(&self.insert_args(extra))
    }

    /// `xsio cdrom eject` of `hdc` with `extra` arguments (see [`Bed::cdrom`]).
    fn eject(&self, extra: &[&str]) -> Output {
        self.cdrom(&Bed::eject_args(extra))
    }

    /// `xsio cdrom ARGS --lock-dir ...` against the daemon (60 s at most).
    fn cdrom(&self, args: &[&str]) -> Output {
        let what = format!("xsio cdrom {args:?}");
        logged_output_within(&mut self.command(args), Duration::from_secs(60), &what)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xsio"));
        command
            .arg("cdrom")
            .args(args)
            .arg("--lock-dir")
            .arg(self.locks.path())
            .env("XENSTORED_PATH", &self.daemon.socket);
        command
    }

    /// Xen's `xenstore-read`.
    fn read(&self, path: &str) -> String {
        self.daemon
            .ok("xenstore-read", &[path])
            .trim_end()
            .to_owned()
    }

    /// `params` of the backend, checked equal to the toolstack entry's.
    fn params(&self) -> String {
        let be = self.read(&format!("{BE}/params"));
        assert_eq!(
            be,
            self.read(&format!("{ENTRY}/params")),
            "both areas agree"
        );
        be
    }
}

/// Checks that the drive is empty (`after` says why it should be) as QEMU's `query-block`
/// and xenstore both see it, with no fd set left in QEMU.
fn assert_drive_empty(bed: &Bed, guest: &mut Guest, after: &str) {
    assert_eq!(guest.medium(), None, "{after}: QEMU's drive is empty");
    assert_eq!(
        bed.params(),
        "",
        "{after}: xenstore agrees with query-block"
    );
    assert_eq!(
        guest.query("query-fdsets"),
        Value::Array(Vec::new()),
        "{after}: no fd set left"
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// QEMU 7.2 with `ide-cd` `ide-5632` and two monitors (the change's, the test's), running.
struct Guest {
    qemu: Qemu,
    monitor: QmpConn,
}

impl Guest {
    fn start() -> Guest {
        let qemu = Qemu::builder(PAUSED_PC)
            .args(&["-device", "ide-cd,id=ide-5632,bus=ide.1,unit=0"])
            .monitors(2)
            .start()
            .expect("QEMU (a declared peer)");
        let mut monitor =
            QmpConn::connect(&qemu.sockets()[1], xsio_qmp::Config::default()).unwrap();
        monitor.execute(xsio_qmp::Command::new("cont")).unwrap();
        Guest { qemu, monitor }
    }

    fn socket(&self) -> &str {
        self.qemu.sockets()[0].to_str().unwrap()
    }

    fn query(&mut self, command: &'static str) -> Value {
        self.monitor
            .execute(xsio_qmp::Command::new(command))
            .unwrap()
            .to_value()
            .unwrap()
    }

    /// The file in drive `ide-5632` (`None`: empty).
    fn medium(&mut self) -> Option<String> {
        let block = self.query("query-block");
        let drive = block
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["qdev"].as_str().is_some_and(|q| q.contains("ide-5632")))
            .unwrap_or_else(|| panic!("no ide-5632 in {block}"))
            .clone();
        drive["inserted"]["file"].as_str().map(str::to_owned)
    }

    /// The events that came so far.
    fn events(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        #[allow(clippy::disallowed_methods)] // a test's own short wait
        let soon = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(event)) = self.monitor.next_event(Some(soon)) {
            names.push(event.name);
        }
        names
    }
}

fn insert_and_eject_through_qemu_with_the_image_as_an_fd() {
    let bed = Bed::new("qemu_xen");
    let mut guest = Guest::start();
    let out = bed.insert(&["--qmp", guest.socket()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = guest.medium().expect("a medium");
    assert!(
        file.starts_with("/dev/fdset/"),
        "QEMU holds the fd set: {file}"
    );
    assert_eq!(bed.params(), format!("aio:{}", bed.image()));
    assert!(
        guest.events().iter().any(|e| e == "DEVICE_TRAY_MOVED"),
        "the tray moved"
    );
    // The set's own descriptor was removed; QEMU's medium holds a duplicate.
    let sets = guest.query("query-fdsets");
    assert!(
        sets.as_array()
            .unwrap()
            .iter()
            .all(|s| s["fds"].as_array().unwrap().is_empty()),
        "{sets}"
    );

    let out = bed.eject(&["--qmp", guest.socket()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_drive_empty(&bed, &mut guest, "ejected");
}

fn a_refused_change_leaves_no_fd_set_and_xenstore_agreeing_with_query_block() {
    let bed = Bed::new("qemu_xen");
    let mut guest = Guest::start();
    let out = bed.insert(&["--qmp", guest.socket()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Zeros are no qcow2 image: QEMU refuses the change after the eject.
    let out = bed.insert(&["--format", "qcow2", "--qmp", guest.socket()]);
    assert_fails_with(&out, "blockdev-change-medium failed");
    assert_drive_empty(&bed, &mut guest, "ejected, nothing inserted");
}

fn the_xenstore_path_is_read_back_by_xenstore_read() {
    let bed = Bed::new("qemu_xen_traditional");
    let out = bed.insert(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(bed.params(), format!("aio:{}", bed.image()));
    assert_eq!(bed.read(&format!("{BE}/type")), "qdisk");
    let out = bed.insert(&["--format", "vhd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(bed.params(), format!("vhd:{}", bed.image()));
    let out = bed.eject(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(bed.params(), "");
}

fn a_stub_domain_and_a_disk_are_refused_with_their_errors() {
    let bed = Bed::new("qemu_xen_traditional");
    bed.daemon.ok(
        "xenstore-write",
        &["/local/domain/5/image/device-model-domid", "6"],
    );
    let out = bed.eject(&[]);
    assert_fails_with(&out, "stub domain 6");
    bed.daemon.ok(
        "xenstore-write",
        &["/local/domain/5/image/device-model-domid", "0"],
    );
    bed.daemon
        .ok("xenstore-write", &[&format!("{BE}/device-type"), "disk"]);
    let out = bed.eject(&[]);
    assert_fails_with(&out, "not a cdrom");
    let out = bed.cdrom(&["eject", "--domain", "5", "--vdev", "hdd"]);
    assert_fails_with(&out, "no virtual device hdd");
}

/// The change, holding back `blockdev-change-medium` until the test lets it go.
#[derive(Debug)]
struct HoldChange {
    change: MediaChange,
    held: Option<Request>,
    release: bool,
}

impl xsio_core::Machine for HoldChange {
    type Input<'a> = Input<'a>;
    type Output = MachineOutput<Result<xsio_cdrom::Changed, CdromError>>;
    type Error = InputError;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        // QEMU is dead: let the change go to it.
        if let Input::Peer(PeerEvent::Exited(_)) = input {
            self.release = true;
        }
        self.change.handle_input(now, input)
    }

    fn handle_timeout(&mut self, now: Instant) {
        xsio_core::Machine::handle_timeout(&mut self.change, now);
    }

    fn poll_output(&mut self) -> Option<Self::Output> {
        if self.release {
            if let Some(request) = self.held.take() {
                return Some(MachineOutput::Request(request));
            }
        }
        let output = self.change.poll_output()?;
        match output {
            MachineOutput::Request(request)
                if matches!(&request.op, Op::Qmp(QmpOp::Command(c)) if c.command == "blockdev-change-medium")
                    && !self.release =>
            {
                self.held = Some(request);
                self.change.poll_output()
            }
            other => Some(other),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        xsio_core::Machine::poll_timeout(&self.change)
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn qemu_killed_between_add_fd_and_the_change_fails_once_and_leaves_nothing() {
    let bed = Bed::new("qemu_xen");
    let guest = Guest::start();
    let fds_before = open_fds();
    let start = xsio_io_std::now();
    let mut world: Harness<HoldChange> = Harness::new(start);
    let mut xs = XsLinks::default().with_host(Host::new().lock_dir(bed.locks.path()));
    let conn = xs.add(&mut world, XsConn::connect(&bed.daemon.socket).unwrap());
    let mut qemu_links = QemuLinks::default();
    qemu_links.attach_to(conn, Path::new(guest.socket()));
    let medium = Medium {
        path: bed.image().to_owned(),
        format: Format::Raw,
    };
    let change = MediaChange::insert(Config::new(5, "hdc", DeviceModel::Qmp), medium, start);
    let id = world.add(
        conn,
        HoldChange {
            change,
            held: None,
            release: false,
        },
    );
    world.drain(id);
    let mut links = (qemu_links, xs);
    let mut completions = 0;
    let mut killed = false;
    run_until_with(&mut world, &mut links, Duration::from_secs(30), |w| {
        completions += w
            .take_log()
            .iter()
            .filter(|r| matches!(r, xsio_harness::Record::Event { .. }))
            .count();
        if w.actor(id).held.is_some() && !killed {
            killed = true;
            guest.qemu.signal(rustix::process::Signal::KILL);
        }
        w.actor(id).change.is_settled()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed, "QEMU was killed with the change held back");
    assert_eq!(completions, 1, "completed exactly once");
    assert!(
        world.actor(id).held.is_none(),
        "the change went out after the kill"
    );
    let result = world.actor(id).change.result().cloned().unwrap();
    assert!(
        matches!(
            result,
            Err(CdromError::Exited(_)) | Err(CdromError::Qmp { .. })
        ),
        "{result:?}"
    );
    assert_eq!(
        bed.params(),
        "",
        "xenstore says the drive is empty, as it is"
    );
    drop(links);
    drop(world);
    assert_eq!(open_fds(), fds_before, "no descriptor left open");
}

fn a_change_waits_for_the_domain_s_lock() {
    let bed = Bed::new("qemu_xen_traditional");
    let lock = xsio_io_std::host::lock_file(bed.locks.path(), 5);
    // Another process holds the lock for a second.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "1"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    #[allow(clippy::disallowed_methods)] // a test timing a wait on a real lock
    let asked = Instant::now();
    let first = bed.command(&bed.insert_args(&[])).spawn().unwrap();
    let second = bed.command(&Bed::eject_args(&[])).spawn().unwrap();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let waited = asked.elapsed();
    holder.wait().unwrap();
    assert!(first.status.success() && second.status.success());
    assert!(
        waited >= Duration::from_millis(600),
        "both waited for the holder: {waited:?}"
    );
    let params = bed.params();
    assert!(
        params.is_empty() || params == format!("aio:{}", bed.image()),
        "{params}"
    );
}

fn main() -> std::process::ExitCode {
    let utils = xenstore_utils();
    let qemu = qemu::peer();
    let flock = xsio_testkit::peer::Peer::on_path("flock");
    Tests::new()
        .each(&[&utils, &qemu], WITH_QEMU)
        .each(&[&utils], XENSTORE_ONLY)
        .each(&[&utils, &flock], WITH_FLOCK)
        .run()
}
