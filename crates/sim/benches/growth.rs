//! How a simulated host grows with its guests: `testdata/scenarios/scale-10000.toml` (four
//! devices a guest, each created, connected and removed) at 100, 1 000 and 10 000 guests,
//! without a trace (`xsio_sim::run_without_trace`). Time is divan's; memory is printed per
//! size: the most nodes xenstored held, and the growth of the process's peak resident
//! memory (sizes run smallest first, so each peak is that size's own).
//!
//! Linear growth means time / guests (and memory / guests) stays flat from 100 to 10 000.

use xsio_sim::{Scenario, run_without_trace};

/// The allocator of the `xsio` binary, so that the bench measures what `xsio sim` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const SCALE: &str = include_str!("../../../testdata/scenarios/scale-10000.toml");

fn scenario(guests: u32) -> Scenario {
    let text = SCALE.replace("count = 10000", &format!("count = {guests}"));
    Scenario::parse(&text).expect("the scale scenario parses")
}

/// The process's peak resident memory in bytes (Linux's `VmHWM`; 0 elsewhere).
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[divan::bench(args = [100, 1_000, 10_000], sample_count = 1, sample_size = 1)]
fn scale_scenario(bencher: divan::Bencher, guests: u32) {
    let scenario = scenario(guests);
    let before = peak_resident();
    bencher.bench_local(|| {
        let report = run_without_trace(&scenario, 1).expect("the run ends");
        assert!(
            report.violations.is_empty(),
            "{} guests: {:?}",
            guests,
            &report.violations[..report.violations.len().min(5)]
        );
        let grown = peak_resident().saturating_sub(before);
        eprintln!(
            "scale_scenario {guests}: {} xenstore nodes at most ({} a guest), peak resident \
             memory grew {:.1} MiB ({} KiB a guest), {} world steps, {} trace lines",
            report.peak_nodes,
            report.peak_nodes / guests as usize,
            grown as f64 / (1024.0 * 1024.0),
            grown / 1024 / u64::from(guests),
            report.steps,
            report.trace.len(),
        );
        report.steps
    });
}
