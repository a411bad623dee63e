//! `xsio dm` against a real QEMU 7.2, through the real binary: `run` in the background and
//! in the foreground, `save`, `cont`, `stop`, `quit`, and a QEMU that cannot start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use xsio_testkit::peer::Tests;
use xsio_testkit::process::{assert_fails_with, output_within, wait_with_timeout};
use xsio_testkit::qemu::{self, BARE_PAUSED_PC, QEMU};

// The tests that run QEMU.
const WITH_QEMU: &[(&str, fn())] = xsio_testkit::tests![
    run_in_the_background_then_save_cont_stop_and_quit,
    run_in_the_foreground_waits_for_qemu_and_exits_with_its_status,
    a_qemu_that_cannot_start_is_reported_with_its_status_and_message
];

// The test that needs no QEMU.
const NO_QEMU: &[(&str, fn())] = xsio_testkit::tests![commands_on_a_socket_nobody_listens_on_fail];

const LIMIT: Duration = Duration::from_secs(60);

fn xsio(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xsio"));
    command.args(args);
    output_within(&mut command, LIMIT, "xsio")
}

fn dm(command: &str, socket: &Path, rest: &[&str]) -> Output {
    let socket = socket.to_str().unwrap();
    let mut args = vec!["dm", command, "--qmp", socket];
    args.extend_from_slice(rest);
    xsio(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `xsio qmp --socket SOCKET COMMAND`'s reply.
fn qmp(socket: &Path, command: &str) -> Value {
    let out = xsio(&["qmp", "--socket", socket.to_str().unwrap(), command]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The pid in `ready: ... (QEMU 7.2.22, pid N)`.
fn pid_of(ready: &str) -> u32 {
    let tail = ready.rsplit("pid ").next().unwrap();
    tail.trim_end_matches([')', '\n']).parse().unwrap()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
    }
}

fn run_in_the_background_then_save_cont_stop_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let mut args = vec!["dm", "run", "--qmp", socket.to_str().unwrap(), "--", QEMU];
    args.extend_from_slice(BARE_PAUSED_PC);
    let out = xsio(&args);
    let ready = stdout(&out);
    assert!(out.status.success(), "{ready}{}", stderr(&out));
    assert!(ready.starts_with("ready: prelaunch in "), "{ready}");
    assert!(ready.contains("(QEMU 7."), "{ready}");
    let pid = pid_of(&ready);
    assert!(!is_gone(pid), "QEMU runs on in the background");

    let state = dir.path().join("state");
    let out = dm("save", &socket, &["--to", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("saved: "), "{}", stdout(&out));
    assert_eq!(&std::fs::read(&state).unwrap()[..4], b"QEVM");
    // A fresh `-S` guest stays `prelaunch` when stopped; it does not run.
    let status = qmp(&socket, "query-status");
    assert_eq!(status["running"], false, "the save stopped it: {status}");

    let out = dm("cont", &socket, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "running\n");
    assert_eq!(qmp(&socket, "query-status")["status"], "running");
    assert_eq!(qmp(&socket, "query-fdsets"), Value::Array(Vec::new()));

    let out = dm("stop", &socket, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "paused\n");
    assert_eq!(qmp(&socket, "query-status")["status"], "paused");

    let out = dm("quit", &socket, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "exited after quit: status unknown (not our child)\n"
    );
    assert!(is_gone(pid));
}

fn run_in_the_foreground_waits_for_qemu_and_exits_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .args([
            "dm",
            "run",
            "--wait",
            "--qmp",
            socket.to_str().unwrap(),
            "--",
            QEMU,
        ])
        .args(BARE_PAUSED_PC)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready: prelaunch in "), "{ready}");

    let out = dm("quit", &socket, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exited = lines.next().unwrap().unwrap();
    assert_eq!(exited, "exited: exit status 0");
    wait_with_timeout(&mut child, LIMIT, "xsio dm run --wait");
    assert!(child.wait().unwrap().success());
}

fn a_qemu_that_cannot_start_is_reported_with_its_status_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let out = xsio(&[
        "dm",
        "run",
        "--qmp",
        socket.to_str().unwrap(),
        "--",
        QEMU,
        "-machine",
        "pc",
        "-no-such-option",
    ]);
    let err = assert_fails_with(&out, "QEMU exited during start-up: exit status 1");
    assert!(
        err.contains("-no-such-option"),
        "QEMU's own message is shown: {err}"
    );
    assert!(stdout(&out).is_empty());
}

fn commands_on_a_socket_nobody_listens_on_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = dm("cont", &dir.path().join("nothing.sock"), &[]);
    assert_fails_with(&out, "connecting failed");
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    Tests::new()
        .each(&[&qemu], WITH_QEMU)
        .each(&[], NO_QEMU)
        .run()
}
