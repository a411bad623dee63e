//! `--state`: a damaged file is refused with its path, the path is checked at start, and a
//! crash loses at most the save interval.

use std::path::Path;
use std::time::Duration;

use xsio_xs_wire::{Reply, Request};

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

#[test]
fn a_state_file_missing_its_last_lines_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = saved_state(dir.path());
    let text = std::fs::read_to_string(&state).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[..lines.len() - 10].join("\n") + "\n";
    std::fs::write(&state, kept).unwrap();
    let log = refused(dir.path(), &state);
    assert!(log.contains("truncated"), "{log}");
}

#[test]
fn a_value_cut_inside_its_hex_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = saved_state(dir.path());
    let text = std::fs::read_to_string(&state).unwrap();
    let at = text.find("/data/node-099 ").unwrap();
    let line_end = at + text[at..].find('\n').unwrap();
    // Two hex digits (one byte) short, the rest of the file as it was.
    let cut = format!("{}{}", &text[..line_end - 2], &text[line_end..]);
    std::fs::write(&state, cut).unwrap();
    let log = refused(dir.path(), &state);
    assert!(log.contains("checksum"), "{log}");
}

#[test]
fn a_corrupted_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = saved_state(dir.path());
    let mut bytes = std::fs::read(&state).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("/data/node-050 ").unwrap();
    let line_end = at + text[at..].find('\n').unwrap();
    // The last hex digit of that value: still valid hex, another byte.
    bytes[line_end - 1] = if bytes[line_end - 1] == b'0' {
        b'1'
    } else {
        b'0'
    };
    std::fs::write(&state, bytes).unwrap();
    let log = refused(dir.path(), &state);
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
        client.call(
            0,
            Request::Read {
                path: "/data/node-099".into()
            }
        ),
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
    assert_eq!(
        client.call(
            0,
            Request::Read {
                path: "/kept".into()
            }
        ),
        Reply::Read("yes".into())
    );
}
