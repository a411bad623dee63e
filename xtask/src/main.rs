//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask test`: install the real peers and cargo tools the tests need, then run
//!   fmt, clippy, every test (nextest), doc tests, docs, and a short fuzz smoke run.
//! - `cargo xtask bench`: run the benchmarks.
//! - `cargo xtask fuzz TARGET [SECONDS]`: a longer fuzz run of one target.

mod setup;
mod tidy;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xshell::{Shell, cmd};

#[derive(Parser)]
#[command(about = "xen-sansio project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install test peers and tools, then run every check and test.
    Test {
        /// Seconds each fuzz target runs in the smoke run.
        #[arg(long, default_value_t = 10)]
        fuzz_seconds: u32,
        /// Skip installing Debian packages and cargo tools.
        #[arg(long)]
        no_install: bool,
    },
    /// Run the benchmarks (`cargo bench`).
    Bench {
        /// Extra arguments for `cargo bench`, e.g. `-p xsio-vbd`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz one target for a while.
    Fuzz {
        /// The target name (see `fuzz/fuzz_targets/`).
        target: String,
        /// How long to run, in seconds.
        #[arg(default_value_t = 60)]
        seconds: u32,
    },
    /// Check the architecture invariants (also run as a test).
    Tidy,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.task {
        Task::Test {
            fuzz_seconds,
            no_install,
        } => test(&sh, fuzz_seconds, no_install),
        Task::Bench { args } => {
            let scope: Vec<&str> = if args.iter().any(|a| a == "-p" || a.starts_with("--package")) {
                vec![]
            } else {
                vec!["--workspace"]
            };
            cmd!(sh, "cargo bench --locked {scope...} {args...}").run()?;
            Ok(())
        }
        Task::Fuzz { target, seconds } => {
            setup::ensure_cargo_fuzz(&sh)?;
            fuzz_run(&sh, &target, seconds)
        }
        Task::Tidy => {
            let problems = tidy::check(&project_root())?;
            for p in &problems {
                eprintln!("tidy: {p}");
            }
            anyhow::ensure!(problems.is_empty(), "{} tidy problem(s)", problems.len());
            println!("tidy: ok");
            Ok(())
        }
    }
}

fn test(sh: &Shell, fuzz_seconds: u32, no_install: bool) -> Result<()> {
    if std::env::var_os("CI").is_some() {
        // A CI build runs once from a clean clone: incremental state would only take disk.
        sh.set_var("CARGO_INCREMENTAL", "0");
    }
    if !no_install {
        step("install peers and tools", || {
            setup::ensure_peers(sh)?;
            setup::ensure_cargo_tools(sh)
        })?;
    }
    step("fmt", || {
        cmd!(sh, "cargo fmt --all -- --check").run()?;
        Ok(())
    })?;
    step("clippy", || {
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()?;
        Ok(())
    })?;
    step("tests (nextest)", || {
        cmd!(sh, "cargo nextest run --workspace --locked --no-tests=fail").run()?;
        Ok(())
    })?;
    step("doc tests", || {
        cmd!(sh, "cargo test --doc --workspace --locked").run()?;
        Ok(())
    })?;
    step("docs", || {
        cmd!(sh, "cargo doc --workspace --no-deps --locked")
            .env("RUSTDOCFLAGS", "-D warnings")
            .run()?;
        Ok(())
    })?;
    step("fuzz smoke", || fuzz_smoke(sh, fuzz_seconds))?;
    println!("xtask test: all steps passed");
    Ok(())
}

/// Runs `body` under a banner with its wall time, so CI logs show where time goes.
fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n==> {name}");
    #[allow(clippy::disallowed_methods)] // xtask is a driver: it may read the clock.
    let start = Instant::now();
    let res = body().with_context(|| format!("step `{name}` failed"));
    println!(
        "<== {name}: {:.1?}",
        Duration::from_secs_f64(start.elapsed().as_secs_f64())
    );
    res
}

fn fuzz_targets(sh: &Shell) -> Result<Vec<String>> {
    let dir = project_root().join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in sh.read_dir(dir)? {
        if entry.extension().is_some_and(|e| e == "rs") {
            if let Some(stem) = entry.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn fuzz_smoke(sh: &Shell, seconds: u32) -> Result<()> {
    let targets = fuzz_targets(sh)?;
    anyhow::ensure!(!targets.is_empty(), "no fuzz targets in fuzz/fuzz_targets");
    {
        let _dir = sh.push_dir(project_root().join("fuzz"));
        let _env = sh.push_env("RUSTC_BOOTSTRAP", "1");
        cmd!(sh, "cargo fuzz build").run()?;
    }
    for target in &targets {
        fuzz_run(sh, target, seconds)?;
    }
    Ok(())
}

fn fuzz_run(sh: &Shell, target: &str, seconds: u32) -> Result<()> {
    let _dir = sh.push_dir(project_root().join("fuzz"));
    let _env = sh.push_env("RUSTC_BOOTSTRAP", "1");
    let corpus = format!("corpus/{target}");
    sh.create_dir(&corpus)?;
    let time = format!("-max_total_time={seconds}");
    cmd!(
        sh,
        "cargo fuzz run {target} {corpus} -- {time} -print_final_stats=1"
    )
    .run()?;
    Ok(())
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}
