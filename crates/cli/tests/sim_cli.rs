//! `xsio sim`: the built-in scenario prints its trace and summary, the same seed prints the
//! same bytes, many seeds run with a verdict, files are written, mistakes are named.

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xsio"))
        .arg("sim")
        .args(args)
        .output()
        .expect("run xsio sim")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn the_default_scenario_runs_with_trace_and_summary() {
    let out = sim(&["--seed", "5"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("== xsio sim: two-guests (seed 5)"),
        "{text}"
    );
    for needle in [
        "toolstack d1 xvda",
        "state InitWait -> Connected",
        "state Closing -> Closed",
        "domain device phase",
        "all invariants hold",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // One summary row per device, each removed.
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(" Removed ")).collect();
    assert_eq!(rows.len(), 8, "{text}");
}

#[test]
fn the_same_seed_prints_the_same_bytes() {
    let a = sim(&["--seed", "11"]);
    let b = sim(&["--seed", "11"]);
    assert_eq!(stdout(&a), stdout(&b));
    let c = sim(&["--seed", "12"]);
    assert_ne!(stdout(&a), stdout(&c), "another seed, another run");
}

#[test]
fn many_runs_give_a_verdict() {
    let out = sim(&["--runs", "40", "--seed", "100"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("40 runs of two-guests (seeds 100..=139): 40 passed, 0 failed"),
        "{text}"
    );
}

#[test]
fn trace_and_svg_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("t.jsonl");
    let svg = dir.path().join("t.svg");
    let out = sim(&[
        "--trace",
        jsonl.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let printed = stdout(&out);
    let mut count = 0;
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["t_ms"].is_u64() && v["lane"].is_string() && v["what"].is_string());
        // Every JSON line is also a line of the printed trace.
        let what = v["what"].as_str().unwrap();
        assert!(printed.contains(what), "{what}");
        count += 1;
    }
    assert!(count > 100, "{count} lines");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.trim_end().ends_with("</svg>"));
    assert!(picture.contains(">toolstack<") && picture.contains(">frontend<"));
}

#[test]
fn a_bad_scenario_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"x\"\n[[domain]]\ndomid = 0\n").unwrap();
    let out = sim(&[path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("domain 0"),
        "{err}"
    );
    let missing = sim(&["/nonexistent/scenario.toml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/scenario.toml"));
}
