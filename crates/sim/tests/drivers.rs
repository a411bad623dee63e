//! Backend domain death: a driver domain (a domain other than dom0 that runs backends for
//! the guests' `phy` disks and vifs) dies; its backends stop answering, and the
//! toolstack's removals still complete exactly once with a definite result, leaving
//! nothing behind.

mod common;

use common::{clean_run, lines_of, row, scenario, scenario_text};
use xsio_sim::{Phase, Scenario};

/// Driver domain 9.
const DRIVER: &str = "[[domain]]\ndomid = 9\ndriver = true\n";

/// Guests 1 and 2, each with a QEMU disk, a `phy` disk and a vif served by driver
/// domain 9.
const TWO_GUESTS: &str = r#"
[[domain]]
domid = 1
count = 2
devices = [
  { vdev = "xvda", kind = "disk", params = "/srv/disk.img" },
  { vdev = "xvdb", kind = "phy", params = "/dev/vg0/data", backend = 9 },
]
vifs = [{ backend = 9 }]
"#;

/// Guest 1 with one `phy` disk served by driver domain 9.
const ONE_GUEST: &str = r#"
[[domain]]
domid = 1
devices = [{ vdev = "xvdb", kind = "phy", params = "/dev/vg0/data", backend = 9 }]
"#;

/// The two guests and the driver domain, `steps` after their creation.
fn served_by_driver(steps: &str) -> Scenario {
    scenario(&format!("{TWO_GUESTS}{DRIVER}"), steps, "")
}

/// Guest 1's devices are removed at 1 s, guest 2 is destroyed at 60 s.
const REMOVE_ONE: &str = r#"
[[step]]
at_ms = 1000
action = "remove"
domain = 1
[[step]]
at_ms = 60000
action = "destroy"
domain = 2
"#;

#[test]
fn a_live_driver_domain_removes_its_backends_and_the_removals_complete() {
    let report = clean_run(&served_by_driver(REMOVE_ONE), 1);
    for domid in [1, 2] {
        for vdev in ["xvdb", "vif0"] {
            let d = row(&report, domid, vdev);
            assert_eq!(d.phase, Phase::Removed, "{d:?}");
            assert!(d.connected_ms.is_some(), "{d:?}");
            assert!(d.notes.is_empty(), "{d:?}");
        }
    }
    // The driver domain's own toolstack removed what it served; dom0 waited for that and
    // ran no hotplug script for them.
    let driver = lines_of(&report, "driver d9");
    for name in ["d1 xvdb", "d1 vif0", "d2 xvdb", "d2 vif0"] {
        let said = format!("{name} closed: its hotplug script runs, its backend directory goes");
        assert!(driver.contains(&said), "{name}: {driver:?}");
    }
    let text = report.trace.to_text();
    assert!(!text.contains("running /etc/xen/scripts/block"), "{text}");
}

#[test]
fn when_the_driver_domain_dies_every_removal_still_completes_once() {
    let steps =
        format!("[[step]]\nat_ms = 500\naction = \"crash-domain\"\ndomain = 9\n{REMOVE_ONE}");
    for seed in 0..4 {
        // Exactly once, nothing left behind (the checks), whatever the seed.
        let report = clean_run(&served_by_driver(&steps), seed);
        let driver = lines_of(&report, "driver d9");
        let died = "(fault) the driver domain dies: its backends stop answering";
        assert!(driver.iter().any(|l| l == died), "{driver:?}");
        for domid in [1, 2] {
            // The backends never answered: each removal timed out, went on with force,
            // timed out again, and pruned what the dead domain left (a definite error).
            for vdev in ["xvdb", "vif0"] {
                let d = row(&report, domid, vdev);
                assert_eq!(d.phase, Phase::Removed, "seed {seed}: {d:?}");
                assert!(
                    d.notes
                        .iter()
                        .any(|n| n.starts_with("removed despite: timed out")),
                    "seed {seed}: {d:?}"
                );
            }
            // The QEMU disk did not depend on the driver domain.
            let xvda = row(&report, domid, "xvda");
            assert_eq!(xvda.phase, Phase::Removed);
            assert!(xvda.notes.is_empty(), "seed {seed}: {xvda:?}");
        }
    }
}

#[test]
fn a_device_added_after_its_driver_domain_died_is_undone() {
    // The driver domain dies before the creation at 0 ms (a stable sort keeps this order).
    let domains = format!("{ONE_GUEST}{DRIVER}");
    let text = scenario_text(&domains, "", "").replace(
        "[[step]]\nat_ms = 0\naction = \"create\"",
        "[[step]]\nat_ms = 0\naction = \"crash-domain\"\ndomain = 9\n\
         [[step]]\nat_ms = 0\naction = \"create\"",
    );
    let report = clean_run(&Scenario::parse(&text).unwrap(), 3);
    let d = row(&report, 1, "xvdb");
    assert_eq!(d.phase, Phase::Removed, "{d:?}");
    assert!(d.connected_ms.is_none());
    assert!(d.notes.iter().any(|n| n.starts_with("add failed")), "{d:?}");
}

#[test]
fn the_seeded_death_strikes_some_seeds_and_not_others() {
    let destroy = "[[step]]\nat_ms = 3000\naction = \"destroy\"";
    let death = "driver_domain_death = 0.5";
    let scenario = scenario(&format!("{ONE_GUEST}{DRIVER}"), destroy, death);
    let mut died = 0;
    for seed in 0..12 {
        let report = clean_run(&scenario, seed);
        assert_eq!(report.devices[0].phase, Phase::Removed);
        let driver = lines_of(&report, "driver d9");
        died += usize::from(
            driver
                .iter()
                .any(|l| l.starts_with("(fault) the driver domain dies")),
        );
    }
    assert!((1..12).contains(&died), "{died} of 12 seeds");
}

#[test]
fn driver_domains_are_checked() {
    let base = format!("{ONE_GUEST}{DRIVER}");
    let step = |action: &str, domid: u32| {
        format!("[[step]]\nat_ms = 5\naction = \"{action}\"\ndomain = {domid}")
    };
    let bad = [
        (
            base.replace("domid = 9", "domid = 8"),
            String::new(),
            "not a driver domain",
        ),
        (
            base.replace("kind = \"phy\"", "kind = \"disk\""),
            String::new(),
            "served by its QEMU",
        ),
        (base.clone(), step("remove", 9), "only crash-domain"),
        (
            base.clone(),
            step("crash-domain", 1),
            "names no driver domain",
        ),
        (
            base.replace("driver = true", "driver = true\nvfb = true"),
            String::new(),
            "has none of its own",
        ),
    ];
    for (domains, steps, needle) in bad {
        let err = Scenario::parse(&scenario_text(&domains, &steps, ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}
