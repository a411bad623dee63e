//! `--state`: a damaged file is refused with its path, the path is checked at start, and a
//! crash loses at most the save interval.

use std::path::Path;
use std::time::Duration;

use xsio_xs_wire::Reply;

use crate::support::{Client, Launch, Xenstored, spawn, wait_exit};

/// A state file with 100 nodes, saved by a clean stop.
fn saved_state(dir: &Path) -> std::path::PathBuf {
    let state = dir.join("state");
    let d = Xenstored::start(dir, Launch::new().arg("--state").arg(&state));
    let mut client = Client::connect(&d.socket);
    for i in 0..100 {
        client.write(&format!("/data/node-{i:03}"), &format!("value {i}"));
    }
    assert!(d.stop().success());
    state
}

/// Starts the daemon on `state` and expects it to refuse: the exit status and its stderr.
fn refused(dir: &Path, state: &Path) -> String {
    let launch = Launch::new().arg("--state").arg(state);
    let (mut child, stderr) = spawn(dir, &launch, "refused.stderr");
    let status = wait_exit(&mut child);
    let log = std::fs::read_to_string(stderr).unwrap();
    assert!(
        !status.success(),
        "the daemon started on {}: {log}",
        state.display()
    );
    assert!(
        log.contains(&state.display().to_string()),
        "the error names {}: {log}",
        state.display()
    );
    log
}

/// The daemon's refusal (its stderr, see [`refused`]) of a [`saved_state`] whose file
/// `damage` rewrote (from the file's text to the new bytes).
fn refused_after(damage: impl FnOnce(&str) -> Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let state = saved_state(dir.path());
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, damage(&text)).unwrap();
    refused(dir.path(), &state)
}

/// Where the line of `key` (the node's path and a space) ends in a state file's `text`.
fn end_of_line(text: &str, key: &str) -> usize {
    let at = text.find(key).unwrap();
    at + text[at..].find('\n').unwrap()
}

#[test]
fn a_state_file_missing_its_last_lines_is_refused() {
    let log = refused_after(|text| {
        let lines: Vec<&str> = text.lines().collect();
        (lines[..lines.len() - 10].join("\n") + "\n").into_bytes()
    });
    assert!(log.contains("truncated"), "{log}");
}

#[test]
fn a_value_cut_inside_its_hex_is_refused() {
    let log = refused_after(|text| {
        let line_end = end_of_line(text, "/data/node-099 ");
        // Two hex digits (one byte) short, the rest of the file as it was.
        format!("{}{}", &text[..line_end - 2], &text[line_end..]).into_bytes()
    });
    assert!(log.contains("checksum"), "{log}");
}

#[test]
fn a_corrupted_byte_is_refused() {
    let log = refused_after(|text| {
        let line_end = end_of_line(text, "/data/node-050 ");
        let mut bytes = text.as_bytes().to_vec();
        // The last hex digit of that value: still valid hex, another byte.
        bytes[line_end - 1] = if bytes[line_end - 1] == b'0' {
            b'1'
        } else {
            b'0'
        };
        bytes
    });
    assert!(log.contains("corrupted"), "{log}");
}

#[test]
fn a_state_path_in_a_missing_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = refused(dir.path(), &dir.path().join("missing").join("state"));
    assert!(log.contains("No such file or directory"), "{log}");
}

#[test]
fn a_state_path_under_a_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let log = refused(dir.path(), &file.join("state"));
    assert!(log.contains("not a directory"), "{log}");
}

#[test]
fn a_crash_in_the_middle_of_a_save_keeps_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = saved_state(dir.path());
    // A save writes `state.tmp` whole before renaming it: a crash before the rename leaves
    // a partial temporary file beside the previous, good, state.
    std::fs::write(
        dir.path().join("state.tmp"),
        "xsio-xenstored-state 2\n/data",
    )
    .unwrap();
    let d = Xenstored::start(dir.path(), Launch::new().arg("--state").arg(&state));
    let mut client = Client::connect(&d.socket);
    assert_eq!(
        client.read("/data/node-099"),
        Reply::Read("value 99".into())
    );
}

#[test]
fn a_crash_loses_at_most_the_save_interval() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let launch = Launch::new()
        .arg("--state")
        .arg(&state)
        .arg("--save-interval")
        .arg("1");
    let d = Xenstored::start(dir.path(), launch.clone());
    let mut client = Client::connect(&d.socket);
    client.write("/kept", "yes");
    std::thread::sleep(Duration::from_millis(2500));
    d.crash();
    let d = Xenstored::start(dir.path(), launch);
    let mut client = Client::connect(&d.socket);
    assert_eq!(client.read("/kept"), Reply::Read("yes".into()));
}
