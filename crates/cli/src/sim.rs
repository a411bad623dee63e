//! `xsio sim`: whole Xen hosts in one deterministic process (the `xsio-sim` crate), one
//! seed with its trace, or many seeds in parallel with a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use xsio_sim::{DEFAULT_SCENARIO, Report, Scenario};

/// Arguments of `xsio sim`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// A scenario file (TOML, see `testdata/scenarios/`); the built-in two-guest scenario
    /// when absent.
    scenario: Option<PathBuf>,
    /// The seed of the (first) run: it decides the faults and the order of events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many runs, with seeds `seed`, `seed + 1`, ...: all on every core, a summary at
    /// the end, and the command that reproduces each failing seed.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Write the (first) run's trace as JSON lines.
    #[arg(long, value_name = "FILE.jsonl")]
    trace: Option<PathBuf>,
    /// Draw the (first) run as a sequence diagram.
    #[arg(long, value_name = "FILE.svg")]
    svg: Option<PathBuf>,
    /// Print only the totals and the invariants' verdict: no trace, no per-device table
    /// (a host of thousands of domains). Without `--trace` or `--svg` the run keeps no
    /// trace at all, only its line count.
    #[arg(long)]
    summary_only: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (text, name) = match &args.scenario {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_SCENARIO.to_owned(), "(built-in)".to_owned()),
    };
    let scenario = Scenario::parse(&text).with_context(|| format!("scenario {name}"))?;
    let keep_trace = !args.summary_only || args.trace.is_some() || args.svg.is_some();
    let first = if keep_trace {
        xsio_sim::run(&scenario, args.seed)
    } else {
        xsio_sim::run_without_trace(&scenario, args.seed)
    }
    .with_context(|| format!("seed {} did not run to its end", args.seed))?;
    if let Some(path) = &args.trace {
        std::fs::write(path, first.trace.to_jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let title = format!("{} (seed {})", scenario.name, args.seed);
        std::fs::write(path, xsio_sim::svg::render(&title, &first.trace, 400))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.runs <= 1 {
        if args.summary_only {
            print_totals(&scenario, &first);
        } else {
            print_one(&scenario, &first);
        }
        return Ok(verdict(&first, &args.scenario));
    }
    many(&scenario, args)
}

fn print_one(scenario: &Scenario, report: &Report) {
    println!("== xsio sim: {} (seed {})", scenario.name, report.seed);
    if !scenario.description.is_empty() {
        println!("   {}", scenario.description);
    }
    println!("   (virtual time; each line: time, who, what it wrote, read or saw)\n");
    print!("{}", report.trace.to_text());
    println!(
        "\n== summary: {} ms of virtual time, {} trace lines, {} world steps\n",
        report.end_ms,
        report.trace.len(),
        report.steps
    );
    print!("{}", report.summary());
}

fn print_totals(scenario: &Scenario, report: &Report) {
    println!("== xsio sim: {} (seed {})", scenario.name, report.seed);
    if !scenario.description.is_empty() {
        println!("   {}", scenario.description);
    }
    println!(
        "== summary: {} ms of virtual time, {} trace lines, {} world steps, at most {} xenstore nodes",
        report.end_ms,
        report.trace.len(),
        report.steps,
        report.peak_nodes
    );
    println!("   {}", report.totals());
}

fn verdict(report: &Report, scenario: &Option<PathBuf>) -> ExitCode {
    if report.violations.is_empty() {
        println!("\nall invariants hold");
        return ExitCode::SUCCESS;
    }
    println!("\nbroken invariants ({}):", report.violations.len());
    for v in report.violations.iter().take(50) {
        println!("  - {v}");
    }
    if report.violations.len() > 50 {
        println!("  ... and {} more", report.violations.len() - 50);
    }
    println!("reproduce with: {}", reproduce(report.seed, scenario));
    ExitCode::FAILURE
}

fn reproduce(seed: u64, scenario: &Option<PathBuf>) -> String {
    match scenario {
        Some(path) => format!("xsio sim {} --seed {seed}", path.display()),
        None => format!("xsio sim --seed {seed}"),
    }
}

fn many(scenario: &Scenario, args: &Args) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(args.runs);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let failed = AtomicUsize::new(0);
    let mut failures: Vec<(u64, String)> = (0..args.runs)
        .into_par_iter()
        .filter_map(|i| {
            let seed = args.seed.wrapping_add(i);
            let outcome = match xsio_sim::run(scenario, seed) {
                Ok(report) if report.violations.is_empty() => None,
                Ok(report) => Some((seed, report.violations.join("; "))),
                Err(err) => Some((seed, err.to_string())),
            };
            if outcome.is_some() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            bar.inc(1);
            outcome
        })
        .collect();
    bar.finish_and_clear();
    failures.sort();
    println!(
        "== xsio sim: {} runs of {} (seeds {}..={}): {} passed, {} failed",
        args.runs,
        scenario.name,
        args.seed,
        args.seed.wrapping_add(args.runs - 1),
        args.runs as usize - failures.len(),
        failures.len()
    );
    for (seed, why) in failures.iter().take(20) {
        println!("  seed {seed}: {why}");
        println!("    reproduce with: {}", reproduce(*seed, &args.scenario));
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
