//! Media changes in scenarios: `xsio-cdrom`'s `MediaChange` driven by the simulator
//! against the simulated QEMU (its tray, its fd sets) and xenstore, with the per-domain
//! lock served by the simulated host, and QEMU dying in the middle of a change.

mod common;

use common::{clean_run, lines_of, row, scenario_text};
use xsio_sim::{Phase, Scenario};

/// Guest 1: a disk and two CD-ROMs.
const GUEST: &str = r#"
[[domain]]
domid = 1
devices = [
  { vdev = "xvda", kind = "disk", params = "/srv/disk.img" },
  { vdev = "hdc", kind = "cdrom", params = "/srv/iso/install.iso" },
  { vdev = "hdd", kind = "cdrom", params = "" },
]
"#;

/// Guest 1 with its disk and CD-ROMs, `steps` after their creation.
fn guest_with_cdroms(steps: &str) -> Scenario {
    common::scenario(GUEST, steps, "")
}

/// The scenario step inserting `medium` into `device` of guest 1 at `at_ms` (every
/// CD-ROM of the guest when `None`).
fn insert(at_ms: u64, device: Option<&str>, medium: &str) -> String {
    let device = device.map_or(String::new(), |d| format!("device = \"{d}\""));
    format!(
        "[[step]]\nat_ms = {at_ms}\naction = \"insert\"\ndomain = 1\n{device}\nmedium = \"{medium}\"\n"
    )
}

#[test]
fn an_insert_and_an_eject_are_seen_by_qemus_tray_and_by_xenstore() {
    let eject = "[[step]]\nat_ms = 900\naction = \"eject\"\ndomain = 1\ndevice = \"hdc\"";
    let steps = insert(500, Some("hdc"), "/srv/iso/drivers.iso") + eject;
    let scenario = guest_with_cdroms(&steps);
    for seed in 0..4 {
        // The invariants include: xenstore's params (backend and toolstack entry) name
        // what QEMU's drive holds, QEMU holds no fd set, no descriptor is left open.
        let report = clean_run(&scenario, seed);
        let hdc = row(&report, 1, "hdc");
        assert_eq!(hdc.phase, Phase::Running);
        assert_eq!(hdc.notes, ["medium aio:/srv/iso/drivers.iso", "ejected"]);
        let toolstack = lines_of(&report, "toolstack d1 hdc");
        let at = |needle: &str| {
            toolstack
                .iter()
                .position(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in {toolstack:#?}"))
        };
        // The image goes to QEMU as a descriptor, never as a path.
        let order = [
            at("lock domain 1"),
            at("qmp eject {\"force\":true,\"id\":\"ide-5632\"}"),
            at("open /srv/iso/drivers.iso (read-only)"),
            at("qmp add-fd {\"opaque\":\"cdrom:ide-5632:aio:/srv/iso/drivers.iso\"} (+1 fd)"),
            at("qmp blockdev-change-medium {\"filename\":\"/dev/fdset/0\""),
            at("qmp remove-fd {\"fdset-id\":0}"),
            at("unlock"),
        ];
        assert!(order.is_sorted(), "{order:?}: {toolstack:#?}");
        // QEMU's tray: opened by the eject, closed on the new medium, opened by the eject.
        let trays: Vec<String> = lines_of(&report, "qemu d1")
            .into_iter()
            .filter(|l| l.contains("DEVICE_TRAY_MOVED"))
            .collect();
        assert_eq!(trays.len(), 3, "{trays:?}");
        for (line, open) in trays.iter().zip([true, false, true]) {
            assert!(line.contains(&format!("\"tray-open\":{open}")), "{line}");
            assert!(line.contains("\"id\":\"ide-5632\""), "{line}");
        }
        // The other drive was left alone.
        assert!(row(&report, 1, "hdd").notes.is_empty());
    }
}

#[test]
fn changes_of_one_guest_wait_for_its_lock() {
    // Both drives at the same moment: the per-domain lock, served in process by the
    // simulated host, lets one change run at a time.
    let scenario = guest_with_cdroms(&insert(500, None, "/srv/iso/tools.iso"));
    let report = clean_run(&scenario, 5);
    for vdev in ["hdc", "hdd"] {
        assert_eq!(
            row(&report, 1, vdev).notes,
            ["medium aio:/srv/iso/tools.iso"]
        );
    }
    let lines = report.trace.lines();
    let first = |who: &str, what: &str| {
        lines
            .iter()
            .position(|l| l.who == who && l.what.starts_with(what))
            .unwrap_or_else(|| panic!("{who}: {what}"))
    };
    let (hdc, hdd) = ("toolstack d1 hdc", "toolstack d1 hdd");
    // Whichever got the lock first ran its QMP steps before the other started its own.
    let (a, b) = if first(hdc, "qmp connect") < first(hdd, "qmp connect") {
        (hdc, hdd)
    } else {
        (hdd, hdc)
    };
    assert!(first(a, "unlock") < first(b, "qmp connect"), "{a} then {b}");
    assert!(first(b, "lock domain 1") < first(a, "unlock"), "{b} waited");
}

#[test]
fn qemu_dying_during_a_change_fails_it_once_and_xenstore_says_empty() {
    let steps = format!(
        r#"
        [[step]]
        at_ms = 500
        action = "crash-qemu"
        domain = 1
        on_command = "add-fd"
        {}
        [[step]]
        at_ms = 1000
        action = "destroy"
        domain = 1
        "#,
        insert(500, Some("hdc"), "/srv/iso/drivers.iso")
    );
    let scenario = guest_with_cdroms(&steps);
    for seed in 0..4 {
        // Completed exactly once, the descriptor passed with add-fd closed with QEMU,
        // the areas removed by the destruction.
        let report = clean_run(&scenario, seed);
        let hdc = row(&report, 1, "hdc");
        assert_eq!(
            hdc.notes.first().map(String::as_str),
            Some("media change failed: QEMU exited during the change (killed by signal 11)"),
            "{hdc:?}"
        );
        assert_eq!(hdc.phase, Phase::Removed);
        // After the failure, xenstore says what QEMU holds: a dead QEMU's drive is empty.
        let toolstack = lines_of(&report, "toolstack d1 hdc");
        let failed = toolstack
            .iter()
            .position(|l| l.starts_with("qmp add-fd failed"))
            .unwrap();
        let emptied = toolstack
            .iter()
            .skip(failed)
            .any(|l| l == "  write params=");
        assert!(emptied, "{toolstack:#?}");
    }
}

#[test]
fn media_steps_are_checked() {
    let bad = [
        (r#"action = "insert""#, "needs a medium"),
        (
            "action = \"remove\"\nmedium = \"/x.iso\"",
            "only an insert takes",
        ),
        (
            "action = \"insert\"\ndevice = \"xvda\"\nmedium = \"/x.iso\"",
            "names device xvda",
        ),
        (
            "action = \"destroy\"\non_command = \"add-fd\"",
            "only crash-qemu takes",
        ),
    ];
    for (step, needle) in bad {
        let text = scenario_text(
            GUEST,
            &format!("[[step]]\nat_ms = 10\ndomain = 1\n{step}"),
            "",
        );
        let err = Scenario::parse(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}
