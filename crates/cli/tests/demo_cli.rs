//! `xsio demo` runs the disk and the CD-ROM through the handshake to Connected and back to
//! Closed, and prints the same trace every time: the committed snapshot
//! `snapshots/demo_cli__demo_trace.snap` is that trace, so a change to the machines or to the
//! demo's driver loop that alters one line of it fails here until the snapshot is reviewed
//! and updated on purpose (`INSTA_UPDATE=always cargo nextest run -p xsio-cli --test
//! demo_cli`, then read the diff).

use std::process::Command;

fn demo() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .arg("demo")
        .output()
        .expect("run xsio demo");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    assert!(
        output.status.success(),
        "xsio demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The index of the first line containing every one of `parts`.
fn line_of(out: &str, parts: &[&str]) -> usize {
    out.lines()
        .position(|line| parts.iter().all(|p| line.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{out}"))
}

#[test]
fn both_devices_connect_then_close() {
    let out = demo();
    for dev in ["xvda", "hdc"] {
        let backend = format!("backend {dev}");
        let frontend = format!("frontend {dev}");
        let be_connected = line_of(&out, &[&backend, "state InitWait -> Connected"]);
        let fe_connected = line_of(&out, &[&frontend, "state Initialised -> Connected"]);
        let fe_closed = line_of(&out, &[&frontend, "state Connected -> Closed"]);
        let be_closed = line_of(&out, &[&backend, "state Closing -> Closed"]);
        let removed = line_of(
            &out,
            &[
                "toolstack",
                dev,
                "removed (backend Closed, 0 script(s) run)",
            ],
        );
        assert!(
            be_connected < fe_connected,
            "{dev}: the frontend connects after the backend"
        );
        assert!(
            fe_connected < fe_closed && fe_closed < be_closed && be_closed < removed,
            "{dev}"
        );
    }
    // The tree while Connected has the block keys; the final one has no device left.
    assert!(out.contains("    device-type = \"cdrom\""));
    assert!(out.contains("   virtual-device = \"51712\""));
    let final_tree = &out[out.find("the final tree").expect("final tree")..];
    assert!(!final_tree.contains("51712 = "), "{final_tree}");
    assert!(!final_tree.contains("5632 = "), "{final_tree}");
    assert!(out.contains(
        "xvda: backend InitWait, frontend Initialised, backend Connected, frontend Connected"
    ));
}

/// The whole trace, line for line, against the committed expected output (virtual time makes
/// it deterministic, so there is nothing to redact).
#[test]
fn the_trace_matches_the_committed_snapshot() {
    insta::assert_snapshot!("demo_trace", demo());
}

/// Nothing in the trace depends on the run (no wall clock, no hash-map order, no pid).
#[test]
fn two_runs_print_the_same_trace() {
    assert_eq!(demo(), demo());
}
