//! `xsio qmp` through the real binary against a scripted QMP peer on a Unix socket in the
//! test (no QEMU needed): what it prints, and its exit status.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::Duration;

use xsio_testkit::process::output_within;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;

/// A fake QEMU: listens on a socket in a temp dir, accepts one connection, greets,
/// accepts `qmp_capabilities`, then runs `script` on the connection.
struct FakeQemu {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    peer: JoinHandle<Vec<String>>,
}

/// The peer's end of the connection: reads the client's lines, writes raw bytes.
struct Peer {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    received: Vec<String>,
}

impl Peer {
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        self.received.push(line.trim_end().to_owned());
        line
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }
}

impl FakeQemu {
    fn start(script: impl FnOnce(&mut Peer) + Send + 'static) -> FakeQemu {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let peer = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut peer = Peer {
                reader: BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
                received: Vec::new(),
            };
            peer.send(format!("{GREETING}\r\n").as_bytes());
            peer.read_line();
            peer.send(b"{\"return\": {}, \"id\": 0}\r\n");
            script(&mut peer);
            peer.received
        });
        FakeQemu {
            _dir: dir,
            socket,
            peer,
        }
    }

    /// Runs `xsio qmp --socket <fake> args...` and returns its output and what the fake
    /// QEMU received.
    fn run(self, args: &[&str]) -> (Output, Vec<String>) {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_xsio"))
                .arg("qmp")
                .arg("--socket")
                .arg(&self.socket)
                .args(args),
            Duration::from_secs(20),
            "xsio qmp",
        );
        (out, self.peer.join().unwrap())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_timeout_of_u64_max_seconds_runs_the_command_with_no_deadline() {
    let qemu = FakeQemu::start(|peer| {
        peer.read_line();
        // Slow enough that a zero or tiny deadline would have fired first.
        std::thread::sleep(Duration::from_millis(200));
        peer.send(b"{\"return\": {\"status\": \"running\"}, \"id\": 1}\r\n");
    });
    let (out, received) = qemu.run(&["--timeout", "18446744073709551615", "query-status"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (
            Some(0),
            "{\"status\": \"running\"}\n".to_owned(),
            String::new()
        )
    );
    assert_eq!(
        received,
        [
            r#"{"execute":"qmp_capabilities","id":0}"#,
            r#"{"execute":"query-status","id":1}"#
        ]
    );
}

#[test]
fn a_short_timeout_still_fails_the_command_with_its_reason() {
    let qemu = FakeQemu::start(|peer| {
        peer.read_line();
        // Never answers; waits for the client to go away.
        peer.read_line();
    });
    let (out, _) = qemu.run(&["--timeout", "1", "query-status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("no reply before the command's deadline"),
        "{}",
        text(&out.stderr)
    );
}

const STOP: &str = r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#;

/// `xsio qmp --events` against a QEMU that sends `bytes` after negotiation, then waits for
/// the client to hang up.
fn events_after(bytes: &'static [u8]) -> Output {
    let qemu = FakeQemu::start(move |peer| {
        peer.send(bytes);
        peer.read_line();
    });
    qemu.run(&["--events"]).0
}

#[test]
fn events_end_with_status_0_when_qemu_closes_the_connection() {
    let qemu = FakeQemu::start(|peer| peer.send(format!("{STOP}\r\n").as_bytes()));
    let (out, _) = qemu.run(&["--events"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(0), String::new())
    );
    assert_eq!(
        text(&out.stdout),
        "{\"data\":{},\"event\":\"STOP\",\"timestamp\":{\"microseconds\":2,\"seconds\":1}}\n"
    );
}

#[test]
fn events_ending_on_a_protocol_error_exit_non_zero_with_the_reason() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"{\"event\": \"\xff\xfe\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n",
            "malformed JSON in a QMP message",
        ),
        (
            b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\ngarbage",
            "unexpected byte 0x67 between QMP messages",
        ),
        (
            b"{\"event\": 7, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n",
            "malformed JSON in a QMP message",
        ),
    ];
    for (bytes, reason) in cases {
        let out = events_after(bytes);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("xsio: the QMP connection failed: ") && stderr.contains(reason),
            "{stderr}"
        );
    }
    // Events before the error are still printed.
    let out = events_after(
        b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\ngarbage",
    );
    assert!(text(&out.stdout).contains("\"event\":\"STOP\""));
}
