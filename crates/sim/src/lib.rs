//! Whole Xen hosts in one deterministic process.
//!
//! A [`Scenario`] lists guests, their devices and what the toolstack does to them over time
//! (`testdata/scenarios/*.toml`); [`run`] plays it on a simulated host under a seed and
//! returns a [`Report`]: the trace (who did what, at which virtual millisecond), one summary
//! row per device, and every broken invariant. The host is the real machines, nothing
//! mocked: the xenbus backends and frontends and the toolstack's waiter on
//! `xsio-harness`, the in-process `xsio-xenstored` core as the store, each party on its own
//! `xsio-xs-client` connection, bytes and all. The seed decides the faults (guests that
//! ignore a device, the order in which connections are served, processing jitter); the
//! same seed always gives the same trace, byte for byte.
//!
//! Invariants checked after every run: every operation completed exactly once; xenstored's
//! tree is consistent; every state change was a legal transition; a running device has
//! both ends Connected (a device whose guest ignores it: the backend waits in InitWait);
//! a removed device left no node and no empty directory behind.
//!
//! ```
//! use xsio_sim::{Scenario, run};
//!
//! let scenario = Scenario::parse(xsio_sim::DEFAULT_SCENARIO)?;
//! let report = run(&scenario, 7)?;
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert_eq!(report.trace.to_text(), run(&scenario, 7)?.trace.to_text());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod describe;
mod gate;
mod host;
mod qemu;
mod scenario;
pub mod svg;
mod trace;
mod world;

use std::time::Instant;

pub use describe::{
    backend_event, device_event, frontend_event, peer_event, reply as describe_reply,
    request as describe_request, wait_event,
};
pub use scenario::{
    Action, Device, DeviceKind, Domain, Faults, Scenario, ScenarioError, Step, Vif,
};
pub use trace::{Lane, Line, Trace};
pub use world::Phase;
pub use xsio_harness::HarnessError;

/// The built-in scenario `xsio sim` runs when given none.
pub const DEFAULT_SCENARIO: &str = include_str!("../../../testdata/scenarios/default.toml");

/// How one device fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// The guest.
    pub domid: u32,
    /// The device.
    pub vdev: String,
    /// Where it ended.
    pub phase: Phase,
    /// Whether the guest ignored it (a seeded fault).
    pub silent: bool,
    /// Whether its removal was forced after the wait for Closed timed out.
    pub forced: bool,
    /// When both ends were first Connected (virtual ms).
    pub connected_ms: Option<u64>,
    /// When its areas were removed (virtual ms).
    pub removed_ms: Option<u64>,
    /// The states each end went through, as `backend Connected`, in order.
    pub history: Vec<String>,
    /// What the toolstack noted (a failed add undone, a removal that went on past an error).
    pub notes: Vec<String>,
}

/// How one guest's device model fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRow {
    /// The guest.
    pub domid: u32,
    /// Its QEMU at the end: `not started`, `running`, or how it ended.
    pub qemu: String,
    /// Whether the domain was destroyed.
    pub destroyed: bool,
    /// The results of its device model operations and its destruction, in order.
    pub outcomes: Vec<String>,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// What happened.
    pub trace: Trace,
    /// One row per device.
    pub devices: Vec<DeviceRow>,
    /// One row per guest.
    pub domains: Vec<DomainRow>,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<String>,
    /// Virtual time at the end.
    pub end_ms: u64,
    /// World steps taken.
    pub steps: usize,
    /// The most nodes xenstored's tree held (at the end of a world step): the host's
    /// largest xenstore.
    pub peak_nodes: usize,
}

impl Report {
    /// The devices counted by where they ended, with the faults they met: one line, for
    /// runs too large for a table (`40000 devices: 40000 Removed; 2000 ignored by their
    /// guest, 0 removals forced after 10 s`).
    pub fn totals(&self) -> String {
        let mut phases: Vec<(Phase, usize)> = Vec::new();
        for d in &self.devices {
            match phases.iter_mut().find(|(p, _)| *p == d.phase) {
                Some((_, n)) => *n += 1,
                None => phases.push((d.phase, 1)),
            }
        }
        let phases: Vec<String> = phases.iter().map(|(p, n)| format!("{n} {p:?}")).collect();
        let silent = self.devices.iter().filter(|d| d.silent).count();
        let forced = self.devices.iter().filter(|d| d.forced).count();
        format!(
            "{} devices: {}; {silent} ignored by their guest, {forced} removals forced after 10 s",
            self.devices.len(),
            phases.join(", ")
        )
    }

    /// The summary table, one line per device.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:<6} {:<6} {:<10} {:>12} {:>10}  {}\n",
            "domain", "device", "phase", "connected", "removed", "notes"
        );
        for d in &self.devices {
            let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
            let mut notes = Vec::new();
            if d.silent {
                notes.push("guest ignores it".to_owned());
            }
            if d.forced {
                notes.push("removal forced after 10 s".to_owned());
            }
            notes.extend(d.notes.iter().cloned());
            out.push_str(&format!(
                "{:<6} {:<6} {:<10} {:>12} {:>10}  {}\n",
                d.domid,
                d.vdev,
                format!("{:?}", d.phase),
                ms(d.connected_ms),
                ms(d.removed_ms),
                notes.join(", ")
            ));
        }
        out.push_str(&format!(
            "\n{:<6} {:<34} {}\n",
            "domain", "qemu", "device model"
        ));
        for d in &self.domains {
            let qemu = if d.destroyed {
                format!("{} (destroyed)", d.qemu)
            } else {
                d.qemu.clone()
            };
            out.push_str(&format!(
                "{:<6} {:<34} {}\n",
                d.domid,
                qemu,
                d.outcomes.join("; ")
            ));
        }
        out
    }
}

/// Plays `scenario` under `seed` and checks the invariants. An `Err` means the world
/// itself broke (a machine refused an input, the run never settled); broken invariants are
/// in [`Report::violations`].
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, HarnessError> {
    run_keeping(scenario, seed, true)
}

/// [`run`], keeping no trace: the report's [`Trace`] counts its lines ([`Trace::len`]) but
/// holds none. Everything else (devices, invariants, virtual time) is the same as `run`'s
/// under the same seed. For hosts of thousands of domains, whose trace would take
/// gigabytes (`testdata/scenarios/scale-10000.toml`).
pub fn run_without_trace(scenario: &Scenario, seed: u64) -> Result<Report, HarnessError> {
    run_keeping(scenario, seed, false)
}

fn run_keeping(scenario: &Scenario, seed: u64, keep_trace: bool) -> Result<Report, HarnessError> {
    // The one clock read of a run: its epoch. Every later time is virtual.
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now(); // tidy:allow: the simulator's epoch
    let mut sim = world::Sim::new(scenario.clone(), seed, epoch);
    if !keep_trace {
        sim.trace = Trace::counting_only();
    }
    sim.run()?;
    let violations = check::violations(&mut sim);
    let devices = sim
        .devices
        .iter()
        .map(|d| DeviceRow {
            domid: d.domid,
            vdev: d.name.clone(),
            phase: d.phase,
            silent: d.silent,
            forced: d.forced,
            connected_ms: d.connected_ms,
            removed_ms: d.removed_ms,
            history: d
                .history
                .iter()
                .map(|(lane, state)| format!("{} {state}", lane.name()))
                .collect(),
            notes: d.notes.clone(),
        })
        .collect();
    let domains = sim
        .domains
        .values()
        .map(|d| DomainRow {
            domid: d.domid,
            qemu: match (
                &d.qemu_exit,
                d.qemu_started,
                sim.store.0.qemu_alive(d.domid),
            ) {
                (_, false, _) => "not started".to_owned(),
                (_, true, true) => "running".to_owned(),
                (Some(exit), true, false) => exit.to_string(),
                (None, true, false) => "gone".to_owned(),
            },
            destroyed: d.destroyed,
            outcomes: d.outcomes.clone(),
        })
        .collect();
    Ok(Report {
        seed: sim.seed,
        end_ms: u64::try_from(sim.harness.elapsed().as_millis()).unwrap_or(u64::MAX),
        steps: sim.steps_taken,
        peak_nodes: sim.peak_nodes,
        trace: sim.trace,
        devices,
        domains,
        violations,
    })
}
