//! `xsio demo` runs the disk and the CD-ROM through the handshake to Connected and back to
//! Closed, and prints the same trace every time.

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
            &["toolstack", dev, "wait for backend Closed: Ok(Closed)"],
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

#[test]
fn the_trace_is_the_same_every_run() {
    assert_eq!(demo(), demo());
}
