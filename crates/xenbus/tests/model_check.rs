//! Every interleaving of backend, frontend and toolstack steps and watch deliveries, for one
//! device and for two devices sharing connections, explored exhaustively.
//!
//! The world (`model/world.rs`) is the machines in one `xsio_harness::Harness` with its tiny
//! xenstore `MemStore`; each action is one of the harness's model-checker moves. The
//! explorer is a depth-first search over whole-world states (the harness hashes its world,
//! not its log), deduplicated by a 128-bit fingerprint. It fails on the first violated property and prints the path that led there.
//! A back edge (a state reachable from itself) would be a livelock, so the search also
//! proves that every run ends, and reports the longest one.

mod model;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::time::Instant;

use model::world::{Action, Budget, World};

struct Report {
    /// Fingerprints of the quiet states reached.
    quiet: HashSet<u128>,
    states: usize,
    quiet_states: usize,
    longest_run: u32,
}

/// Two independent 64-bit multiply-rotate lanes: a 128-bit fingerprint in one pass, several
/// times faster than two SipHash passes. A collision (probability about n^2 / 2^129 for n
/// states) could only hide states, never report a false violation.
struct Fingerprint {
    a: u64,
    b: u64,
}

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        self.a
    }
}

impl Fingerprint {
    fn mix(&mut self, word: u64) {
        self.a = (self.a ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
        self.b = (self.b.rotate_left(17) ^ word).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    }

    fn finish128(&self) -> u128 {
        let a = self.a ^ (self.a >> 31);
        let b = (self.b ^ (self.b >> 29)).wrapping_mul(0x1656_67b1_9e37_79f9);
        (u128::from(a) << 64) | u128::from(b)
    }
}

fn fingerprint(world: &World) -> u128 {
    let mut hasher = Fingerprint {
        a: 0x243f_6a88_85a3_08d3,
        b: 0x1319_8a2e_0370_7344,
    };
    world.hash(&mut hasher);
    hasher.finish128()
}

struct Frame {
    fp: u128,
    successors: Vec<(Action, World)>,
    next: usize,
    longest: u32,
    via: Option<Action>,
}

/// Explores every run from `root`; `Err` carries the violated property and the path.
fn explore(root: World, reduce: bool) -> Result<Report, String> {
    let mut done: HashMap<u128, u32> = HashMap::new();
    let mut on_path: HashSet<u128> = HashSet::new();
    let mut quiet_states = 0usize;
    let mut stack: Vec<Frame> = Vec::new();

    let mut quiet: HashSet<u128> = HashSet::new();
    let mut expand =
        |world: &World, quiet_states: &mut usize| -> Result<Vec<(Action, World)>, String> {
            if world.is_quiet() {
                *quiet_states += 1;
                quiet.insert(fingerprint(world));
                world.check_quiet()?;
            }
            let actions = if reduce {
                world.reduced_actions()
            } else {
                world.actions()
            };
            let mut successors = Vec::new();
            for action in actions {
                let mut next = world.clone();
                next.step(action).map_err(|e| format!("{action:?}: {e}"))?;
                successors.push((action, next));
            }
            Ok(successors)
        };
    let path_of = |stack: &[Frame]| -> String {
        stack
            .iter()
            .filter_map(|f| f.via)
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };

    let root_fp = fingerprint(&root);
    let successors = expand(&root, &mut quiet_states)?;
    on_path.insert(root_fp);
    stack.push(Frame {
        fp: root_fp,
        successors,
        next: 0,
        longest: 0,
        via: None,
    });

    while let Some(top) = stack.last_mut() {
        if top.next < top.successors.len() {
            let (action, child) = top.successors[top.next].clone();
            top.next += 1;
            let fp = fingerprint(&child);
            if on_path.contains(&fp) {
                return Err(format!(
                    "livelock: a state repeats on the path {} {action:?}",
                    path_of(&stack)
                ));
            }
            if let Some(longest) = done.get(&fp) {
                top.longest = top.longest.max(longest + 1);
                continue;
            }
            let successors = expand(&child, &mut quiet_states)
                .map_err(|e| format!("{e}\n  after: {} {action:?}", path_of(&stack)))?;
            on_path.insert(fp);
            if done.len() % 500_000 == 0 && !done.is_empty() {
                println!("  ... {} states so far, depth {}", done.len(), stack.len());
            }
            stack.push(Frame {
                fp,
                successors,
                next: 0,
                longest: 0,
                via: Some(action),
            });
        } else {
            let frame = stack.pop().unwrap(); // the loop condition saw it
            on_path.remove(&frame.fp);
            done.insert(frame.fp, frame.longest);
            if let Some(parent) = stack.last_mut() {
                parent.longest = parent.longest.max(frame.longest + 1);
            }
        }
    }
    Ok(Report {
        quiet,
        states: done.len(),
        quiet_states,
        longest_run: done.get(&root_fp).copied().unwrap_or(0),
    })
}

/// One epoch for the whole test binary, so that runs of the same world fingerprint alike.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the test's epoch; all later times derive from it
    *EPOCH.get_or_init(Instant::now)
}

fn run(name: &str, budgets: &[Budget], reduce: bool) -> Report {
    let report = match explore(World::new(budgets, epoch()), reduce) {
        Ok(report) => report,
        Err(violation) => panic!("{name}: {violation}"),
    };
    println!(
        "model check {name}{}: {} states explored, {} quiet, longest run {} steps ({budgets:?})",
        if reduce { "" } else { " (no reduction)" },
        report.states,
        report.quiet_states,
        report.longest_run
    );
    report
}

const NOTHING: Budget = Budget {
    closes: 0,
    backend_closes: 0,
    removals: 0,
    restarts: 0,
    spurious: 0,
};
const CLOSE: Budget = Budget {
    closes: 1,
    ..NOTHING
};
const REMOVAL: Budget = Budget {
    removals: 1,
    ..NOTHING
};
const DUPLICATE: Budget = Budget {
    spurious: 1,
    ..NOTHING
};

/// The state counts below are the sizes of today's graphs; each test asserts a range
/// around them so that a change that silently shrinks the exploration fails.
fn assert_explored(report: &Report, range: std::ops::Range<usize>) {
    assert!(
        range.contains(&report.states),
        "{} states, expected {range:?}",
        report.states
    );
    assert!(!report.quiet.is_empty(), "no run ever ended");
}

#[test]
fn one_device_connects_when_nobody_closes() {
    let budget = [Budget {
        spurious: 2,
        ..NOTHING
    }];
    let full = run("one device, no close, 2 duplicate events", &budget, false);
    assert_explored(&full, 50_000..200_000);
    // The reduction must reach exactly the quiet states the full search reaches.
    let reduced = run("one device, no close, 2 duplicate events", &budget, true);
    assert_eq!(reduced.quiet, full.quiet);
    assert!(reduced.states < full.states);
}

#[test]
fn reduction_keeps_every_outcome_of_a_guest_close() {
    let full = run("one device, guest close", &[CLOSE], false);
    let reduced = run("one device, guest close", &[CLOSE], true);
    assert!(full.quiet.len() > 1);
    assert_eq!(reduced.quiet, full.quiet);
}

#[test]
fn one_device_guest_close_then_restart() {
    let budget = [Budget {
        closes: 1,
        restarts: 1,
        spurious: 1,
        ..NOTHING
    }];
    let report = run(
        "one device, guest close + restart, 1 duplicate event",
        &budget,
        true,
    );
    assert_explored(&report, 10_000..1_000_000);
}

#[test]
fn one_device_toolstack_removal() {
    let report = run("one device, toolstack removal", &[REMOVAL], true);
    assert_explored(&report, 30_000..1_000_000);
}

#[test]
fn one_device_guest_close_races_toolstack_removal() {
    let budget = [Budget {
        closes: 1,
        removals: 1,
        ..NOTHING
    }];
    let report = run("one device, guest close racing removal", &budget, true);
    assert_explored(&report, 300_000..3_000_000);
    assert!(
        report.longest_run < 500,
        "longest run {}",
        report.longest_run
    );
}

#[test]
fn one_device_backend_close_then_restart() {
    let budget = [Budget {
        backend_closes: 1,
        restarts: 1,
        spurious: 1,
        ..NOTHING
    }];
    let report = run(
        "one device, backend close + restart, 1 duplicate event",
        &budget,
        true,
    );
    assert_explored(&report, 10_000..1_000_000);
    let budget = [Budget {
        backend_closes: 1,
        closes: 1,
        ..NOTHING
    }];
    let report = run(
        "one device, backend close racing guest close",
        &budget,
        true,
    );
    assert_explored(&report, 1_000..1_000_000);
}

#[test]
fn two_devices_sharing_connections() {
    let report = run("two devices, no close", &[NOTHING, NOTHING], true);
    assert_explored(&report, 1_000..100_000);
    let report = run("two devices, guest closes one", &[CLOSE, NOTHING], true);
    assert_explored(&report, 10_000..1_000_000);
    let report = run("two devices, duplicate event", &[DUPLICATE, NOTHING], true);
    assert_explored(&report, 10_000..1_000_000);
}

/// The biggest graph here (about 1.6 million states, under a minute): removing one device
/// must not disturb the other on the same connections, which stays Connected.
#[test]
fn two_devices_one_removed_while_the_other_stays_connected() {
    let report = run("two devices, removal of one", &[REMOVAL, NOTHING], true);
    assert_explored(&report, 1_000_000..5_000_000);
}
