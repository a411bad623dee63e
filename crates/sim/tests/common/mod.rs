//! What the simulator's test binaries share: a scenario from its domains and steps, runs
//! that must keep every invariant, and the rows and trace lines the tests look at.
#![allow(dead_code)] // each test binary uses its own part

use xsio_sim::{DeviceRow, Report, Scenario, run};

/// A scenario's text: `domains` (`[[domain]]` tables), everything created at 0 ms, then
/// `steps`; guests that never ignore a device, and the `faults` keys given.
pub(crate) fn scenario_text(domains: &str, steps: &str, faults: &str) -> String {
    format!(
        "name = \"test\"\n{domains}\n[[step]]\nat_ms = 0\naction = \"create\"\n{steps}\n\
         [faults]\nsilent_frontend = 0.0\n{faults}\n"
    )
}

/// The scenario of [`scenario_text`].
pub(crate) fn scenario(domains: &str, steps: &str, faults: &str) -> Scenario {
    Scenario::parse(&scenario_text(domains, steps, faults)).expect("the test's scenario parses")
}

/// Runs `scenario` under `seed`: every invariant must hold.
pub(crate) fn clean_run(scenario: &Scenario, seed: u64) -> Report {
    let report = run(scenario, seed).expect("the world runs");
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {:?}",
        report.violations
    );
    report
}

/// The row of device `vdev` of guest `domid`.
pub(crate) fn row<'r>(report: &'r Report, domid: u32, vdev: &str) -> &'r DeviceRow {
    report
        .devices
        .iter()
        .find(|d| d.domid == domid && d.vdev == vdev)
        .unwrap_or_else(|| panic!("no device {vdev} of domain {domid}"))
}

/// What `who` did, in order.
pub(crate) fn lines_of(report: &Report, who: &str) -> Vec<String> {
    report
        .trace
        .lines()
        .iter()
        .filter(|l| l.who == who)
        .map(|l| l.what.clone())
        .collect()
}
