//! The blocking QMP driver against a scripted QEMU on a socket pair: a QEMU that stops
//! reading cannot hold a command past its deadline, and `cancel` reaches the machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use xsio_io_std::qmp::{QmpConn, QmpIoError};
use xsio_io_std::{UnixConn, now};
use xsio_qmp::{Command, CommandError, Config};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;

/// A negotiated connection, and QEMU's end of the socket (greeting and the answer to
/// `qmp_capabilities` already written, nothing read yet).
fn negotiated(config: Config) -> (QmpConn, UnixStream) {
    let (ours, mut qemu) = UnixStream::pair().unwrap();
    write!(qemu, "{GREETING}\r\n{{\"return\": {{}}, \"id\": 0}}\r\n").unwrap();
    let qmp = QmpConn::with_conn(UnixConn::from_stream(ours), config).unwrap();
    (qmp, qemu)
}

/// A descriptor to hand to a command, and a probe that reads EOF once every copy of that
/// descriptor is closed.
fn probe() -> (OwnedFd, UnixStream) {
    let (probe, fd) = UnixStream::pair().unwrap();
    (OwnedFd::from(fd), probe)
}

fn is_closed(probe: &UnixStream) -> bool {
    probe.set_nonblocking(true).unwrap();
    matches!((&*probe).read(&mut [0u8; 1]), Ok(0))
}

#[test]
fn a_command_to_a_qemu_that_stops_reading_times_out_at_its_deadline_and_the_connection_goes_on() {
    let (mut qmp, qemu) = negotiated(Config::default());
    // Far more than a socket buffer holds; QEMU does not read it.
    let blob = "x".repeat(8 << 20);
    let timeout = Duration::from_millis(300);
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let started = now();
        let big = Command::new("big")
            .arguments(json!({ "blob": blob }))
            .timeout(timeout);
        let result = qmp.execute(big);
        tx.send((result, now() - started)).unwrap();
        // The same connection still serves the next command.
        let next = qmp.execute(Command::new("query-status"));
        (next, qmp)
    });
    let (result, waited) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the command must not block past its deadline");
    assert!(
        matches!(result, Err(QmpIoError::Command(CommandError::Timeout))),
        "{result:?}"
    );
    assert!(waited >= timeout, "timed out early: {waited:?}");

    // QEMU wakes up: it reads the rest of the big command (the driver kept writing it, so
    // the stream stays whole), answers it late, then answers the next one.
    let mut reader = BufReader::new(qemu.try_clone().unwrap());
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        lines.push(line);
    }
    assert_eq!(lines[0], "{\"execute\":\"qmp_capabilities\",\"id\":0}\n");
    let big: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!((&big["execute"], &big["id"]), (&json!("big"), &json!(1)));
    assert_eq!(
        big["arguments"]["blob"].as_str().map(str::len),
        Some(8 << 20)
    );
    assert_eq!(lines[2], "{\"execute\":\"query-status\",\"id\":2}\n");
    (&qemu)
        .write_all(
            b"{\"return\": {}, \"id\": 1}\r\n{\"return\": {\"running\": true}, \"id\": 2}\r\n",
        )
        .unwrap();
    let (next, qmp) = client.join().unwrap();
    assert_eq!(next.unwrap().as_str(), r#"{"running": true}"#);
    assert!(qmp.closed().is_none());
}

#[test]
fn cancel_completes_a_queued_command_at_once_closes_its_fd_and_it_never_goes_out() {
    let config = Config {
        max_in_flight: 1,
        ..Config::default()
    };
    let (mut qmp, qemu) = negotiated(config);
    let mut reader = BufReader::new(qemu.try_clone().unwrap());
    let mut next_line = move || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(next_line(), "{\"execute\":\"qmp_capabilities\",\"id\":0}\n");

    let sent = qmp.submit(Command::new("slow"));
    let (fd, probe) = probe();
    let queued = qmp.submit(Command::new("getfd").fd(fd));
    assert!(!is_closed(&probe), "the queued command still holds its fd");
    assert!(qmp.cancel(queued));
    assert!(is_closed(&probe), "cancelling closed the fd");
    assert!(
        matches!(
            qmp.wait(queued),
            Err(QmpIoError::Command(CommandError::Cancelled))
        ),
        "a queued command completes as cancelled"
    );
    assert!(
        !qmp.cancel(queued),
        "it completed once; there is nothing left to cancel"
    );

    // A command on the wire: cancelled at once, and QEMU's late reply is ignored.
    assert!(qmp.cancel(sent));
    assert!(matches!(
        qmp.wait(sent),
        Err(QmpIoError::Command(CommandError::Cancelled))
    ));
    assert!(matches!(qmp.wait(sent), Err(QmpIoError::UnknownOp(_))));
    assert_eq!(next_line(), "{\"execute\":\"slow\",\"id\":1}\n");
    (&qemu)
        .write_all(b"{\"return\": {}, \"id\": 1}\r\n")
        .unwrap();

    // The cancelled command never reached QEMU: the next line on the wire is the next
    // command (sent once QEMU's late reply has freed the window).
    let answering = std::thread::spawn(move || {
        let line = next_line();
        (&qemu)
            .write_all(b"{\"return\": {\"running\": false}, \"id\": 3}\r\n")
            .unwrap();
        line
    });
    let later = qmp.submit(Command::new("query-status"));
    assert_eq!(qmp.wait(later).unwrap().as_str(), r#"{"running": false}"#);
    assert_eq!(
        answering.join().unwrap(),
        "{\"execute\":\"query-status\",\"id\":3}\n"
    );
}
