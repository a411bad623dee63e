//! Xen's own client test suite, `test-xenstore` (4.17), against `xsio xenstored`.
//!
//! The suite exits 0 even when a test fails, so its output is judged: every test it lists
//! must report a time, none may report `failed`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Daemon, output_within, wait_with_timeout};
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xenstored::xenstore_utils;

// The runs checked afterwards with xenstore-utils.
const WITH_UTILS: &[(&str, fn())] = xsio_testkit::tests![
    every_test_of_the_suite_passes,
    a_random_run_passes,
    the_suite_passes_as_an_unprivileged_guest,
    four_concurrent_runs_pass
];

// The runs of each test alone.
const SUITE_ONLY: &[(&str, fn())] = xsio_testkit::tests![each_test_alone_passes];

const SUITE: &str = "/usr/lib/xen-4.17/bin/test-xenstore";

fn suite(daemon: &Daemon, args: &[&str], limit: Duration) -> String {
    let out = output_within(
        Command::new(SUITE)
            .args(args)
            .env("XENSTORED_PATH", &daemon.socket),
        limit,
        "test-xenstore",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "test-xenstore {args:?} exited with {}:\n{text}",
        out.status
    );
    text
}

/// The test names `-l` lists (the part before the colon, trimmed).
fn listed_tests(daemon: &Daemon) -> Vec<String> {
    suite(daemon, &["-l"], Duration::from_secs(10))
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

fn every_test_of_the_suite_passes() {
    let daemon = Daemon::start(&[], &[]);
    let names = listed_tests(&daemon);
    assert_eq!(
        names.len(),
        12,
        "test-xenstore 4.17 lists 12 tests: {names:?}"
    );
    let output = suite(&daemon, &["-i", "20"], Duration::from_secs(60));
    assert!(!output.contains("failed"), "a test failed:\n{output}");
    for name in &names {
        let line = output
            .lines()
            .find(|l| l.split_once(':').is_some_and(|(n, _)| n.trim() == name))
            .unwrap_or_else(|| panic!("no result line for {name:?} in:\n{output}"));
        assert!(line.contains(" ns"), "{name}: {line}");
    }
    assert_cleaned_up(&daemon);
}

/// After a successful run the suite removes its nodes, the last step in a transaction.
fn assert_cleaned_up(daemon: &Daemon) {
    let left = daemon.run("xenstore-exists", &["/local/domain/0/xenstore-test"]);
    assert!(
        !left.status.success(),
        "test-xenstore left its nodes behind"
    );
}

fn each_test_alone_passes() {
    let daemon = Daemon::start(&[], &[]);
    for name in listed_tests(&daemon) {
        let output = suite(&daemon, &["-t", &name], Duration::from_secs(30));
        assert!(!output.contains("failed"), "{name}:\n{output}");
        assert!(output.contains(&name), "{name} did not run:\n{output}");
    }
}

fn a_random_run_passes() {
    let daemon = Daemon::start(&[], &[]);
    let output = suite(&daemon, &["-r", "5"], Duration::from_secs(60));
    // Silent on success; a failing test prints `failed` and ends the run early.
    assert!(!output.contains("failed"), "random run failed:\n{output}");
    assert_cleaned_up(&daemon);
    // The daemon is still healthy and its tree consistent afterwards.
    assert_eq!(control(&daemon, "check"), "OK");
}

/// Sends a CONTROL request (xenstore-control needs a hypervisor, so we speak the wire).
fn control(daemon: &Daemon, command: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let payload = format!("{command}\0");
    let header = xsio_xs_wire::Header {
        msg_type: 0,
        req_id: 1,
        tx_id: 0,
        len: payload.len() as u32,
    };
    stream.write_all(&header.to_bytes()).unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).unwrap();
    let reply = xsio_xs_wire::parse_header(&head).unwrap();
    assert_eq!(reply.msg_type, 0, "CONTROL reply, not an error");
    let mut body = vec![0u8; reply.len as usize];
    stream.read_exact(&mut body).unwrap();
    String::from_utf8(body)
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

fn the_suite_passes_as_an_unprivileged_guest() {
    // Guest 3 owns its home; the suite's relative paths land there, under its quotas.
    let daemon = Daemon::start(&[3], &[]);
    daemon.ok("xenstore-write", &["/local/domain/3", ""]);
    daemon.ok("xenstore-chmod", &["/local/domain/3", "n3"]);
    let guest = daemon.domain_socket(3);
    let out = output_within(
        Command::new(SUITE)
            .args(["-i", "5"])
            .env("XENSTORED_PATH", &guest),
        Duration::from_secs(60),
        "test-xenstore",
    );
    assert_all_twelve_passed(&out);
    let left = daemon.run("xenstore-exists", &["/local/domain/3/xenstore-test"]);
    assert!(!left.status.success(), "the guest's run left nodes behind");
}

fn four_concurrent_runs_pass() {
    // Four clients at once, each in its own subtree, sharing the parent their final cleanup
    // transactions list and remove: conflicts there must end in EAGAIN and a retry, not in
    // a failure or a livelock.
    let daemon = Daemon::start(&[], &[]);
    let mut runs: Vec<_> = (0..4)
        .map(|_| {
            Command::new(SUITE)
                .args(["-i", "30"])
                .env("XENSTORED_PATH", &daemon.socket)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in &mut runs {
        wait_with_timeout(run, Duration::from_secs(60), "test-xenstore");
    }
    for run in runs {
        assert_all_twelve_passed(&run.wait_with_output().unwrap());
    }
    assert_cleaned_up(&daemon);
}

/// A run of the whole suite succeeded: exit 0, no test reported "failed", and each of the
/// twelve tests printed its timing line.
fn assert_all_twelve_passed(out: &Output) {
    let output = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !output.contains("failed"),
        "{output}"
    );
    assert_eq!(
        output.lines().filter(|l| l.contains(" ns")).count(),
        12,
        "{output}"
    );
}

fn main() -> std::process::ExitCode {
    let suite = Peer::file(SUITE);
    // The checks after a run (nothing left behind, the guest's home) use xenstore-utils.
    let utils = xenstore_utils();
    Tests::new()
        .each(&[&suite, &utils], WITH_UTILS)
        .each(&[&suite], SUITE_ONLY)
        .run()
}
