//! `xsio device add|remove|destroy-all` through `xsio-io-std` against `xsio xenstored`, with
//! a real hotplug script (`testdata/hotplug/record.sh`: records its argv and env, writes
//! `hotplug-status`), a backend and frontend played by a script with Xen's xenstore tools
//! (`testdata/hotplug/backend.sh`), and every result read back with Xen's `xenstore-ls`.
//! The four scenarios: a normal removal, a paused guest with a QEMU backend (the
//! bodge), a dead frontend (AUTO escalates, then a typed timeout, the areas pruned), a
//! vanished backend; and a domain's devices destroyed at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, assert_fails_with, assert_succeeded, logged_output_within};
use xsio_testkit::peer::Tests;
use xsio_testkit::process::Group;
use xsio_testkit::xenstored::xenstore_utils;

// The tests `main` runs, each checked through xenstore-utils.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    normal_removal,
    paused_guest_with_a_qemu_backend_is_bodged,
    paused_guest_with_a_live_qemu_is_not_closed_blind,
    dead_frontend_escalates_then_times_out_typed_and_prunes,
    vanished_backend_is_a_clean_end,
    destroy_all_removes_every_device_of_the_domain,
    a_missing_device_and_bad_arguments_fail_with_the_error
];

const DISK: &str = "vdev=xvda,format=raw,access=rw,devtype=disk,target=/srv/guest3.img";
const BE: &str = "/local/domain/0/backend/vbd/3/51712";
const QBE: &str = "/local/domain/0/backend/qdisk/3/51712";
const FE: &str = "/local/domain/3/device/vbd/51712";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hotplug")
        .join(name)
}

/// A daemon and where the hotplug script records its runs.
struct Bed {
    daemon: Daemon,
    record: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let daemon = Daemon::start(&[], &[]);
        let record = daemon.dir.path().join("hotplug-record");
        Bed { daemon, record }
    }

    /// `xsio device COMMAND --domain 3 --disk DISK EXTRA...`: guest 3's disk.
    fn disk(&self, command: &str, extra: &[&str]) -> Output {
        let mut args = vec![command, "--domain", "3", "--disk", DISK];
        args.extend_from_slice(extra);
        self.device(&args)
    }

    /// `xsio device ARGS` against the daemon (60 s at most).
    fn device(&self, args: &[&str]) -> Output {
        logged_output_within(
            Command::new(env!("CARGO_BIN_EXE_xsio"))
                .arg("device")
                .args(args)
                .env("XENSTORED_PATH", &self.daemon.socket)
                .env("XSIO_HOTPLUG_RECORD", &self.record),
            Duration::from_secs(60),
            &format!("xsio device {args:?}"),
        )
    }

    /// The backend (and frontend) of a device, played by `backend.sh MODE`.
    fn backend(&self, mode: &str, be: &str, fe: &str) -> Group {
        let group = Group::spawn(
            Command::new(testdata("backend.sh"))
                .args([mode, be, fe])
                .env("XENSTORED_PATH", &self.daemon.socket),
            "backend.sh",
        );
        // Its watch is registered once xenstore-watch has connected; the initial event
        // makes it act on whatever it finds, so only a write after that counts.
        std::thread::sleep(Duration::from_millis(200));
        group
    }

    /// `xenstore-ls -f PATH`, empty when PATH is gone.
    fn ls(&self, path: &str) -> String {
        let out = self.daemon.run("xenstore-ls", &["-f", path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn record(&self) -> String {
        std::fs::read_to_string(&self.record).unwrap_or_default()
    }

    /// The device's three areas are gone, and so are its parents left empty.
    fn assert_pruned(&self, backend: &str) {
        let all = self.ls("/");
        for gone in [
            backend,
            FE,
            "/libxl/3",
            "/local/domain/3/device",
            "/local/domain/0/backend",
        ] {
            assert!(
                !all.lines().any(|l| l.starts_with(&format!("{gone} "))),
                "{gone} is left:\n{all}"
            );
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn normal_removal() {
    let bed = Bed::new();
    let _backend = bed.backend("close", BE, FE);
    let script = testdata("record.sh");
    let script = script.to_str().unwrap();
    let add = bed.disk("add", &["--script", script]);
    assert!(add.status.success());
    assert!(
        stdout(&add).contains("added (1 script(s) run)"),
        "{}",
        stdout(&add)
    );
    let listing = bed.ls(BE);
    for key in [
        "params = \"/srv/guest3.img\"",
        "mode = \"w\"",
        "device-type = \"disk\"",
        "dev = \"xvda\"",
        "type = \"phy\"",
        "state = \"2\"",
        "hotplug-status = \"connected\"",
    ] {
        assert!(
            listing.contains(&format!("{BE}/{key}")),
            "{key}:\n{listing}"
        );
    }
    assert!(
        bed.ls(FE)
            .contains(&format!("{FE}/virtual-device = \"51712\""))
    );

    let remove = bed.device(&[
        "remove", "--domain", "3", "--kind", "vbd", "--devid", "51712",
    ]);
    let out = assert_succeeded(&remove);
    assert!(
        out.contains("removal requested (backend was InitWait: online=0 state=5"),
        "{out}"
    );
    assert!(
        out.contains("removed (backend Closed, 1 script(s) run)"),
        "{out}"
    );
    bed.assert_pruned(BE);
    let expected = |command: &str| {
        format!(
            "argv: {script} {command}\nscript={script}\nXENBUS_TYPE=vbd\nXENBUS_PATH=backend/vbd/3/51712\nXENBUS_BASE_PATH=backend\n--\n"
        )
    };
    assert_eq!(bed.record(), expected("add") + &expected("remove"));
}

fn paused_guest_with_a_qemu_backend_is_bodged() {
    for (dm_alive, blind) in [(None, true), (Some("no"), false)] {
        let bed = Bed::new();
        let add = bed.disk("add", &["--backend-kind", "qdisk"]);
        assert!(add.status.success());
        assert!(
            bed.ls(QBE)
                .contains(&format!("{QBE}/params = \"aio:/srv/guest3.img\""))
        );
        let mut args = vec![
            "--backend-kind",
            "qdisk",
            "--guest",
            "paused",
            "--timeout-scale",
            "0.1",
        ];
        if let Some(alive) = dm_alive {
            args.extend(["--dm-alive", alive]);
        }
        let remove = bed.disk("remove", &args);
        let out = assert_succeeded(&remove);
        assert_eq!(out.contains("closing it myself in 200ms"), blind, "{out}");
        assert!(out.contains("wrote backend state=6 (bodge)"), "{out}");
        assert!(
            out.contains("removed (backend Bodged, 0 script(s) run)"),
            "{out}"
        );
        bed.assert_pruned(QBE);
    }
}

fn paused_guest_with_a_live_qemu_is_not_closed_blind() {
    let bed = Bed::new();
    let _qemu = bed.backend("close", QBE, FE);
    let add = bed.disk("add", &["--backend-kind", "qdisk"]);
    assert!(add.status.success());
    let remove = bed.disk(
        "remove",
        &[
            "--backend-kind",
            "qdisk",
            "--guest",
            "paused",
            "--dm-alive",
            "yes",
        ],
    );
    let out = assert_succeeded(&remove);
    assert!(!out.contains("bodge"), "{out}");
    assert!(out.contains("removed (backend Closed"), "{out}");
    bed.assert_pruned(QBE);
}

fn dead_frontend_escalates_then_times_out_typed_and_prunes() {
    let bed = Bed::new();
    let _backend = bed.backend("stuck", BE, FE);
    let script = testdata("record.sh");
    let add = bed.disk("add", &["--script", script.to_str().unwrap()]);
    assert!(add.status.success());
    let remove = bed.disk("remove", &["--timeout-scale", "0.1"]);
    assert_eq!(remove.status.code(), Some(1));
    let out = stdout(&remove);
    assert!(
        out.contains("timed out with force auto: again with force on"),
        "{out}"
    );
    assert!(
        stderr(&remove).contains("timed out waiting for the backend to reach Closed"),
        "{}",
        stderr(&remove)
    );
    bed.assert_pruned(BE);
    assert!(
        !bed.record().contains(" remove\n"),
        "no script after a timeout"
    );
}

fn vanished_backend_is_a_clean_end() {
    let bed = Bed::new();
    let _qemu = bed.backend("vanish", QBE, FE);
    let add = bed.disk("add", &["--backend-kind", "qdisk"]);
    assert!(add.status.success());
    let remove = bed.disk("remove", &["--backend-kind", "qdisk"]);
    let out = assert_succeeded(&remove);
    assert!(out.contains("backend state node gone"), "{out}");
    assert!(out.contains("removed (backend Gone"), "{out}");
    bed.assert_pruned(QBE);
}

fn destroy_all_removes_every_device_of_the_domain() {
    let bed = Bed::new();
    for vdev in ["xvda", "xvdb"] {
        let disk = format!("vdev={vdev},target=/srv/{vdev}.img");
        let add = bed.device(&[
            "add",
            "--domain",
            "3",
            "--disk",
            &disk,
            "--backend-kind",
            "qdisk",
        ]);
        assert!(add.status.success());
    }
    let destroy = bed.device(&[
        "destroy-all",
        "--domain",
        "3",
        "--guest",
        "dying",
        "--dm-alive",
        "no",
    ]);
    let out = assert_succeeded(&destroy);
    assert!(out.contains("found 2 device(s)"), "{out}");
    assert!(out.contains("all removed"), "{out}");
    assert_eq!(bed.ls("/libxl"), "");
    bed.assert_pruned(QBE);
}

fn a_missing_device_and_bad_arguments_fail_with_the_error() {
    let bed = Bed::new();
    let out = bed.device(&["remove", "--domain", "3"]);
    assert_fails_with(&out, "--kind is needed");
    let out = bed.device(&["add", "--domain", "3", "--disk", "vdev=xvda"]);
    assert_fails_with(&out, "missing target=");
    // Adding the same device twice: the toolstack entry exists.
    let disk = [
        "add",
        "--domain",
        "3",
        "--disk",
        DISK,
        "--backend-kind",
        "qdisk",
    ];
    assert!(bed.device(&disk).status.success());
    let again = bed.device(&disk);
    assert_fails_with(&again, "the device already exists");
}

fn main() -> std::process::ExitCode {
    let utils = xenstore_utils();
    Tests::new().each(&[&utils], TESTS).run()
}
