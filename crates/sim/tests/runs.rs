//! Seeded runs of the simulator: reproducible, and every invariant holds whatever the seed.

mod common;

use common::clean_run;
use proptest::prelude::*;
use xsio_sim::{DEFAULT_SCENARIO, Phase, Scenario, run};

fn default() -> Scenario {
    Scenario::parse(DEFAULT_SCENARIO).expect("the built-in scenario parses")
}

#[test]
fn the_same_seed_gives_the_same_trace_byte_for_byte() {
    let scenario = default();
    let a = run(&scenario, 42).unwrap();
    let b = run(&scenario, 42).unwrap();
    assert_eq!(a.trace.to_text(), b.trace.to_text());
    assert_eq!(a.trace.to_jsonl(), b.trace.to_jsonl());
    assert_eq!(a.summary(), b.summary());
}

#[test]
fn seeds_change_the_order_of_events() {
    let scenario = default();
    let traces: std::collections::BTreeSet<String> = (0..8)
        .map(|seed| run(&scenario, seed).unwrap().trace.to_text())
        .collect();
    assert!(
        traces.len() > 1,
        "eight seeds gave one trace: the seed does nothing"
    );
}

#[test]
fn the_default_scenario_connects_then_removes_everything() {
    let report = clean_run(&default(), 3);
    for d in &report.devices {
        assert_eq!(d.phase, Phase::Removed, "{d:?}");
        if !d.silent {
            assert!(d.connected_ms.is_some(), "{d:?}");
            assert!(
                d.history.contains(&"frontend Connected".to_owned()),
                "{d:?}"
            );
        }
    }
    let device = |domid: u32, vdev: &str| {
        report
            .devices
            .iter()
            .find(|d| d.domid == domid && d.vdev == vdev)
            .unwrap()
    };
    // The hot-unplugged CD-ROM went before the rest, its backend Closed by QEMU; so did the
    // disk removed while its guest was paused (its QEMU alive, so QEMU closed it).
    for (d, window) in [
        (device(1, "hdc"), 1000..1500),
        (device(2, "xvdb"), 2100..3000),
    ] {
        let removed = d.removed_ms.unwrap();
        assert!(window.contains(&removed), "{d:?}");
        let last_backend = d.history.iter().rev().find(|h| h.starts_with("backend"));
        assert_eq!(
            last_backend.map(String::as_str),
            Some("backend Closed"),
            "{d:?}"
        );
    }
    // The network interface and the blkback disk connected through their scripts.
    let text = report.trace.to_text();
    assert!(
        text.contains("running /etc/xen/scripts/vif-bridge online"),
        "{text}"
    );
    assert!(
        text.contains("running /etc/xen/scripts/block add"),
        "{text}"
    );
    // The rest went with their domains, after 3 s.
    for d in [
        device(1, "xvda"),
        device(1, "xvdb"),
        device(1, "vif0"),
        device(2, "xvda"),
        device(2, "vfb0"),
        device(2, "vkbd0"),
    ] {
        assert!(d.removed_ms.unwrap() >= 3000, "{d:?}");
    }
    let domain = |domid: u32| report.domains.iter().find(|d| d.domid == domid).unwrap();
    let one = domain(1);
    assert!(one.destroyed, "{one:?}");
    for wanted in [
        "start-up: ready (prelaunch)",
        "save: done (fd set 0)",
        "resume: the guest runs",
    ] {
        assert!(
            one.outcomes.iter().any(|o| o == wanted),
            "{wanted}: {one:?}"
        );
    }
    // Guest 1's QEMU crashed while its domain was being destroyed; guest 2's quit.
    assert_eq!(one.qemu, "killed by signal 11", "{one:?}");
    assert_eq!(domain(2).qemu, "exit status 0", "{:?}", domain(2));
    assert!(
        domain(2)
            .outcomes
            .iter()
            .any(|o| o == "shutdown: QEMU gone (exit status 0)"),
        "{:?}",
        domain(2)
    );
}

#[test]
fn a_guest_that_ignores_every_device_still_gets_them_removed() {
    let text = DEFAULT_SCENARIO.replace("silent_frontend = 0.1", "silent_frontend = 1.0");
    let report = clean_run(&Scenario::parse(&text).unwrap(), 9);
    for d in &report.devices {
        assert!(d.silent && d.connected_ms.is_none(), "{d:?}");
        assert_eq!(d.phase, Phase::Removed);
        assert!(
            !d.history.iter().any(|h| h.starts_with("frontend")),
            "{d:?}"
        );
    }
}

#[test]
fn devices_left_running_stay_connected() {
    let guest =
        "[[domain]]\ndomid = 3\ndevices = [{ vdev = \"xvda\", kind = \"disk\", params = \"/d\" }]";
    let report = clean_run(&common::scenario(guest, "", ""), 1);
    assert_eq!(report.devices[0].phase, Phase::Running);
    assert!(report.devices[0].connected_ms.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the seed (faults and orders), every invariant holds.
    #[test]
    fn every_seed_keeps_every_invariant(seed in any::<u64>()) {
        let report = run(&default(), seed).unwrap();
        prop_assert!(report.violations.is_empty(), "seed {seed}: {:?}", report.violations);
    }
}

/// Devices of several guests removed at once share parent directories: each removal's
/// prune must see the ones before it committed (before, a guest's prune took another
/// guest's half-removed backends and left its frontends behind, on every seed).
#[test]
fn simultaneous_removals_of_many_guests_leave_nothing_behind() {
    let text = include_str!("../../../testdata/scenarios/many-guests.toml");
    let scenario = Scenario::parse(text).unwrap();
    for seed in 0..4 {
        let report = clean_run(&scenario, seed);
        assert_eq!(report.devices.len(), 80);
        assert!(report.devices.iter().all(|d| d.phase == Phase::Removed));
    }
    let two = text.replace("count = 20", "count = 2");
    clean_run(&Scenario::parse(&two).unwrap(), 1);
}

/// The scenario of everything going wrong (QEMU crashing at any QMP message, slow,
/// failing and hanging hotplug scripts, silent guests, transactions whose reads are
/// rewritten under them, a user-paused guest with a live QEMU, a QEMU dying during a media
/// change, a driver domain dying): whatever the seed, every invariant holds. The short mode of the long run
/// documented in the README (`xsio sim testdata/scenarios/faults.toml --runs 10000`).
#[test]
fn seeded_faults_keep_every_invariant() {
    let scenario =
        Scenario::parse(include_str!("../../../testdata/scenarios/faults.toml")).unwrap();
    let mut crashed = 0;
    let mut scripts_failed = 0;
    let mut rewritten = 0;
    let mut driver_died = 0;
    let mut changes_failed = 0;
    for seed in 0..32 {
        let report = clean_run(&scenario, seed);
        let text = report.trace.to_text();
        crashed += usize::from(text.contains("(fault) QEMU crashes on"));
        scripts_failed += usize::from(text.contains("exit status 1") || text.contains("ran past"));
        rewritten += usize::from(text.contains("(fault) rewrites"));
        driver_died += usize::from(text.contains("(fault) the driver domain dies"));
        // Guest 3's QEMU dies as its media change passes the image (unless it died before).
        let hdc = report
            .devices
            .iter()
            .find(|d| d.domid == 3 && d.vdev == "hdc");
        changes_failed += usize::from(
            hdc.is_some_and(|d| d.notes.iter().any(|n| n.contains("media change failed"))),
        );
    }
    // The faults did happen.
    assert!(
        crashed > 4 && scripts_failed > 4 && rewritten > 4 && driver_died > 4,
        "{crashed} {scripts_failed} {rewritten} {driver_died}"
    );
    assert!(changes_failed > 16, "{changes_failed}");
}

/// QEMU 7.2's unplug as recorded (`testdata/xen-qemu/unplug.txt`): Closed written a second
/// time, unguarded, before QEMU deletes the device's directories. Whatever the seed the
/// toolstack's prune comes after QEMU's deletion here (its removal waits for the live
/// frontend's Closed), so no parent is recreated and left behind.
#[test]
fn qemus_late_closed_write_leaves_nothing_behind() {
    let text = DEFAULT_SCENARIO.replace(
        "max_jitter_ms = 2",
        "max_jitter_ms = 2\nqemu_late_write = true",
    );
    let scenario = Scenario::parse(&text).unwrap();
    assert!(scenario.faults.qemu_late_write);
    for seed in 0..16 {
        let report = clean_run(&scenario, seed);
        let text = report.trace.to_text();
        // The hot-unplugged CD-ROM's backend state, written by QEMU after it was Closed.
        assert!(
            text.contains("qemu d1                write: state=6 (Closed)"),
            "seed {seed}"
        );
    }
}

/// The 10 000-guest scenario at 100 guests (its full size runs with `xsio sim`, and from
/// 100 to 10 000 in `cargo bench -p xsio-sim --bench growth`): every device of every
/// guest is created, connects (or is ignored by its guest, a seeded fault) and is removed,
/// with no trace kept.
#[test]
fn the_scale_scenario_at_100_guests_removes_every_device() {
    let text = include_str!("../../../testdata/scenarios/scale-10000.toml")
        .replace("count = 10000", "count = 100");
    let scenario = Scenario::parse(&text).unwrap();
    let report = xsio_sim::run_without_trace(&scenario, 1).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.devices.len(), 400);
    assert!(report.devices.iter().all(|d| d.phase == Phase::Removed));
    assert!(report.trace.lines().is_empty(), "no trace kept");
    assert!(
        report.trace.len() > 40_000,
        "{} lines counted",
        report.trace.len()
    );
    // All 100 guests were live at once: their 400 devices' nodes were in the store together.
    assert!(
        report.peak_nodes > 400 * 20,
        "{} nodes at most",
        report.peak_nodes
    );
    assert!(
        report.totals().starts_with("400 devices: 400 Removed;"),
        "{}",
        report.totals()
    ); // Every guest's CD-ROM got its new medium while all were live.
    let changed = report
        .devices
        .iter()
        .filter(|d| d.notes.iter().any(|n| n == "medium aio:/srv/iso/tools.iso"))
        .count();
    assert_eq!(changed, 100, "{:?}", report.devices);
}

/// `testdata/scenarios/demo.toml`, the former `xsio demo`: one guest's disk and CD-ROM
/// through the xenbus handshake and back, in the protocol's order; without faults every
/// seed gives the same trace.
#[test]
fn the_demo_scenario_takes_both_devices_through_the_handshake_and_back() {
    let text = include_str!("../../../testdata/scenarios/demo.toml");
    let scenario = Scenario::parse(text).unwrap();
    let report = clean_run(&scenario, 1);
    let names: Vec<&str> = report.devices.iter().map(|d| d.vdev.as_str()).collect();
    assert_eq!(names, ["xvda", "hdc"]);
    for d in &report.devices {
        assert_eq!(d.phase, Phase::Removed, "{d:?}");
        assert_eq!(
            d.history,
            [
                "backend InitWait",
                "frontend Initialised",
                "backend Connected",
                "frontend Connected",
                "frontend Closed",
                "backend Closing",
                "backend Closed",
            ],
            "{d:?}"
        );
    }
    let again = run(&scenario, 2).unwrap();
    assert_eq!(report.trace.to_text(), again.trace.to_text());
}
