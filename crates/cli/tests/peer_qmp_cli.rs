//! `xsio qmp` against a real QEMU, through the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self, PAUSED_PC, Qemu};

// The tests `main` runs, each against QEMU.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    a_command_prints_its_reply_and_an_error_its_class,
    events_print_as_json_lines
];

/// A paused PC guest with two QMP monitors (one listens for events while the other acts);
/// killed when dropped.
fn paused_pc() -> Option<Qemu> {
    Qemu::builder(PAUSED_PC).monitors(2).start()
}

fn xsio(socket: &Path, args: &[&str]) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .arg("qmp")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout:?} {}", String::from_utf8_lossy(&out.stderr)));
    (value, out.status.code().unwrap())
}

fn a_command_prints_its_reply_and_an_error_its_class() {
    let Some(qemu) = paused_pc() else { return };
    let (reply, code) = xsio(&qemu.sockets()[0], &["query-status"]);
    assert_eq!((reply["status"].as_str(), code), (Some("prelaunch"), 0));
    let (reply, code) = xsio(&qemu.sockets()[0], &["device_del", r#"{"id": "nosuch"}"#]);
    assert_eq!(reply["error"]["class"], "DeviceNotFound");
    assert_eq!(code, 1);
}

fn events_print_as_json_lines() {
    let Some(qemu) = paused_pc() else { return };
    let mut events = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .arg("qmp")
        .arg("--socket")
        .arg(&qemu.sockets()[0])
        .arg("--events")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    // Until the listener has negotiated, QEMU does not send it events: retry the trigger.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next());
    });
    let mut got = None;
    for _ in 0..50 {
        let (_, code) = xsio(&qemu.sockets()[1], &["cont"]);
        assert_eq!(code, 0);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            got = line;
            break;
        }
        let (_, code) = xsio(&qemu.sockets()[1], &["stop"]);
        assert_eq!(code, 0);
    }
    let _ = events.kill();
    let _ = events.wait();
    let line = got.expect("an event line").unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert!(
        ["RESUME", "STOP"].contains(&event["event"].as_str().unwrap()),
        "{line}"
    );
    assert!(event["timestamp"]["seconds"].as_i64().unwrap() > 0);
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    Tests::new().each(&[&qemu], TESTS).run()
}
