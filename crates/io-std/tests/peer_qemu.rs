//! The QMP client against a real QEMU (Debian's qemu-system-x86_64).
//!
//! Each test starts its own QEMU on a socket in a fresh temp dir and kills it on drop. With
//! `XSIO_RECORD_TRANSCRIPTS=1` the exchanges are written to `testdata/qmp/` (replayed by
//! `crates/qmp/tests/transcripts.rs`).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::process::Signal;
use xsio_io_std::qmp::{QmpConn, QmpIoError};
use xsio_io_std::{UnixConn, now};
use xsio_qmp::typed;
use xsio_qmp::{Command, CommandError, Config, ErrorClass};
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self, QEMU, Qemu};
use xsio_testkit::qmp_peer::{self, open_fds};

// The tests `main` runs, each against QEMU.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    negotiation_reads_the_greeting_and_enables_oob_only_when_asked,
    pipelined_commands_all_complete_in_order,
    unknown_command_and_unknown_device_get_their_classes,
    events_arrive_as_they_happen,
    cdrom_media_change_through_an_fd_passed_with_add_fd,
    qemu_killed_with_commands_in_flight_fails_each_once_and_closes_every_fd,
    device_state_is_saved_into_an_fd_passed_with_add_fd,
    getfd_stores_a_named_fd_and_closefd_releases_it,
    device_add_and_del_of_a_pci_nic,
    a_pretty_printing_monitor_works_because_framing_is_by_json_value,
    a_second_client_gets_no_greeting_and_negotiation_times_out
];

/// Connects (retrying while QEMU starts) and negotiates, recording the exchange.
fn connect(qemu: &Qemu, config: Config) -> QmpConn {
    let stream = qmp_peer::connect(qemu.socket());
    QmpConn::with_conn_recorded(UnixConn::from_stream(stream), config).unwrap()
}

/// Saves the transcript under testdata/qmp/ when asked to.
fn keep_transcript(name: &str, qmp: &QmpConn) {
    let header = format!(
        "Recorded from {QEMU} {} by crates/io-std/tests/peer_qemu.rs ({name}).",
        qmp.session().greeting.version.package
    );
    qmp_peer::keep_transcript(name, &header, qmp.transcript().unwrap());
}

fn qmp_class(result: Result<xsio_qmp::Return, QmpIoError>) -> ErrorClass {
    match result {
        Err(QmpIoError::Command(CommandError::Qmp(e))) => e.class,
        other => panic!("expected a QMP error, got {other:?}"),
    }
}

fn negotiation_reads_the_greeting_and_enables_oob_only_when_asked() {
    let Some(qemu) = Qemu::bare() else { return };
    let mut qmp = connect(&qemu, Config::default());
    let session = qmp.session().clone();
    assert!(session.greeting.version.qemu.major >= 7, "{session:?}");
    assert!(session.greeting.offers("oob"));
    assert!(!session.oob);
    let status: typed::StatusInfo = qmp.execute(typed::query_status()).unwrap().parse().unwrap();
    assert_eq!((status.status.as_str(), status.running), ("running", true));
    keep_transcript("negotiation", &qmp);
    drop(qmp);

    // QEMU keeps listening after a client leaves: a second connection asks for oob.
    let qmp = connect(
        &qemu,
        Config {
            enable_oob: true,
            ..Config::default()
        },
    );
    assert!(qmp.session().oob);
}

fn pipelined_commands_all_complete_in_order() {
    let Some(qemu) = Qemu::bare() else { return };
    let mut qmp = connect(&qemu, Config::default());
    let ops: Vec<_> = (0..200)
        .map(|_| qmp.submit(typed::query_status()))
        .collect();
    let mid = qmp.submit(Command::new("no-such-command"));
    let last = qmp.submit(typed::query_status());
    for op in ops {
        let status: typed::StatusInfo = qmp.wait(op).unwrap().parse().unwrap();
        assert!(status.running);
    }
    assert_eq!(qmp_class(qmp.wait(mid)), ErrorClass::CommandNotFound);
    qmp.wait(last).unwrap();
}

fn unknown_command_and_unknown_device_get_their_classes() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let mut qmp = connect(&qemu, Config::default());
    assert_eq!(
        qmp_class(qmp.execute(Command::new("no-such-command"))),
        ErrorClass::CommandNotFound
    );
    assert_eq!(
        qmp_class(qmp.execute(typed::device_del("nosuch"))),
        ErrorClass::DeviceNotFound
    );
    assert_eq!(
        qmp_class(qmp.execute(typed::device_del("cd0"))),
        ErrorClass::GenericError,
        "an IDE bus cannot hot-unplug"
    );
    keep_transcript("errors", &qmp);
}

fn events_arrive_as_they_happen() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let mut qmp = connect(&qemu, Config::default());
    let status: typed::StatusInfo = qmp.execute(typed::query_status()).unwrap().parse().unwrap();
    assert_eq!(
        (status.status.as_str(), status.running),
        ("prelaunch", false)
    );
    qmp.execute(typed::cont()).unwrap();
    let deadline = now() + Duration::from_secs(10);
    let event = qmp.next_event(Some(deadline)).unwrap().expect("RESUME");
    assert_eq!(event.name, "RESUME");
    qmp.execute(typed::stop()).unwrap();
    let event = qmp.next_event(Some(deadline)).unwrap().expect("STOP");
    assert_eq!(event.name, "STOP");
    assert!(event.timestamp.seconds > 0);
    keep_transcript("events", &qmp);
}

fn cdrom_media_change_through_an_fd_passed_with_add_fd() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let image = qmp_peer::cd_image(qemu.dir(), 64 << 10);
    let mut qmp = connect(&qemu, Config::default());
    let before = open_fds();

    // The image is opened here and passed to QEMU, which has no access to the path itself.
    let fd: OwnedFd = File::open(&image).unwrap().into();
    let added: typed::AddFdInfo = qmp
        .execute(typed::add_fd(fd, None, Some("cdrom")))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        open_fds(),
        before,
        "our copy of the fd was closed after sending"
    );
    let path = typed::fdset_path(added.fdset_id);

    qmp.execute(qmp_peer::cd0_medium(added.fdset_id)).unwrap();
    let mut trays = Vec::new();
    while let Some(event) = qmp.next_event(Some(now())).unwrap() {
        if event.name == typed::DEVICE_TRAY_MOVED {
            let moved: typed::DeviceTrayMoved = event.parse_data().unwrap();
            assert_eq!(moved.id.as_deref(), Some("cd0"));
            trays.push(moved.tray_open);
        }
    }
    assert_eq!(
        trays,
        vec![true, false],
        "the tray opened and closed before the reply"
    );

    let blocks: Vec<typed::BlockInfo> = qmp.execute(typed::query_block()).unwrap().parse().unwrap();
    let cd = blocks
        .iter()
        .find(|b| b.qdev.as_deref() == Some("cd0"))
        .expect("cd0 in query-block");
    assert_eq!(cd.tray_open, Some(false));
    let inserted = cd.inserted.as_ref().expect("a medium is inserted");
    assert_eq!((inserted.file.as_str(), inserted.ro), (path.as_str(), true));

    qmp.execute(typed::eject("cd0")).unwrap();
    let blocks: Vec<typed::BlockInfo> = qmp.execute(typed::query_block()).unwrap().parse().unwrap();
    let cd = blocks
        .iter()
        .find(|b| b.qdev.as_deref() == Some("cd0"))
        .unwrap();
    assert!(cd.inserted.is_none(), "ejected: {cd:?}");

    // The fd set outlives the eject; cleaning it up is our job. QEMU 7.2 defers removing it
    // while the guest is paused, so let the guest run first.
    let sets: Vec<typed::FdsetInfo> = qmp.execute(typed::query_fdsets()).unwrap().parse().unwrap();
    assert!(sets.iter().any(|s| s.fdset_id == added.fdset_id));
    qmp.execute(typed::cont()).unwrap();
    qmp.execute(typed::remove_fd(added.fdset_id, None)).unwrap();
    let sets: Vec<typed::FdsetInfo> = qmp.execute(typed::query_fdsets()).unwrap().parse().unwrap();
    assert!(
        !sets.iter().any(|s| s.fdset_id == added.fdset_id),
        "{sets:?}"
    );
    keep_transcript("cdrom-fd", &qmp);
}

fn qemu_killed_with_commands_in_flight_fails_each_once_and_closes_every_fd() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let image = qmp_peer::cd_image(qemu.dir(), 4096);
    let mut qmp = connect(&qemu, Config::default());
    let before = open_fds();

    // Frozen, QEMU reads nothing more: what we send stays unanswered.
    qemu.signal(Signal::STOP);
    let first: OwnedFd = File::open(&image).unwrap().into();
    let second: OwnedFd = File::open(&image).unwrap().into();
    let mut ops = vec![qmp.submit(typed::add_fd(first, None, Some("a")))];
    ops.extend((0..3).map(|_| qmp.submit(typed::query_status())));
    // Held back by the one-fd-command-in-flight rule, so never sent.
    ops.push(qmp.submit(typed::add_fd(second, None, Some("b"))));
    assert_eq!(open_fds(), before + 1, "only the unsent fd is still ours");
    qemu.signal(Signal::KILL);

    for op in ops {
        match qmp.wait(op) {
            Err(QmpIoError::Command(CommandError::Disconnected)) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    assert!(qmp.closed().is_some());
    assert_eq!(open_fds(), before, "the unsent fd was closed");
    keep_transcript("killed", &qmp);
}

fn device_state_is_saved_into_an_fd_passed_with_add_fd() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let mut qmp = connect(&qemu, Config::default());
    let path = qemu.dir().join("saved-state");
    // Write-only: QEMU picks an fd from the set whose access mode matches its open (O_WRONLY).
    let file = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    qmp.execute(typed::stop()).unwrap();
    let added: typed::AddFdInfo = qmp
        .execute(typed::add_fd(
            OwnedFd::from(file),
            None,
            Some("saved_state"),
        ))
        .unwrap()
        .parse()
        .unwrap();
    qmp.execute(typed::xen_save_devices_state(
        &typed::fdset_path(added.fdset_id),
        Some(false),
    ))
    .unwrap();
    let saved = std::fs::read(&path).unwrap();
    assert!(
        saved.len() > 16,
        "QEMU wrote the device state: {} bytes",
        saved.len()
    );
    // QEMU's migration stream starts with the magic "QEVM".
    assert_eq!(&saved[..4], b"QEVM");
    keep_transcript("save-devices-state", &qmp);
}

fn getfd_stores_a_named_fd_and_closefd_releases_it() {
    let Some(qemu) = Qemu::bare() else { return };
    let mut qmp = connect(&qemu, Config::default());
    let image = qmp_peer::cd_image(qemu.dir(), 4096);
    let fd: OwnedFd = File::open(&image).unwrap().into();
    qmp.execute(typed::getfd(fd, "image")).unwrap();
    qmp.execute(typed::closefd("image")).unwrap();
    assert_eq!(
        qmp_class(qmp.execute(typed::closefd("image"))),
        ErrorClass::GenericError,
        "already released"
    );
}

fn device_add_and_del_of_a_pci_nic() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let mut qmp = connect(&qemu, Config::default());
    let mut props = serde_json::Map::new();
    props.insert("bus".into(), "pci.0".into());
    qmp.execute(typed::device_add("virtio-net-pci", "nic1", props))
        .unwrap();
    // On a paused guest the unplug request is accepted but never completes (peers.md): the
    // reply comes, DEVICE_DELETED does not, and a second request is refused.
    qmp.execute(typed::device_del("nic1")).unwrap();
    assert_eq!(
        qmp_class(qmp.execute(typed::device_del("nic1"))),
        ErrorClass::GenericError
    );
    let deleted = qmp
        .next_event(Some(now() + Duration::from_millis(300)))
        .unwrap();
    assert!(
        deleted
            .as_ref()
            .is_none_or(|e| e.name != typed::DEVICE_DELETED),
        "{deleted:?}"
    );
}

fn a_pretty_printing_monitor_works_because_framing_is_by_json_value() {
    let Some(qemu) = Qemu::builder(&["-machine", "none"]).pretty().start() else {
        return;
    };
    let mut qmp = connect(&qemu, Config::default());
    let ops: Vec<_> = (0..20).map(|_| qmp.submit(typed::query_status())).collect();
    for op in ops {
        let status: typed::StatusInfo = qmp.wait(op).unwrap().parse().unwrap();
        assert!(status.running);
    }
    // The transcript shows QEMU really sent multi-line JSON.
    let transcript = qmp.transcript().unwrap();
    assert!(transcript.contains("\n    \"return\": {"), "{transcript}");
    assert_eq!(
        qmp_class(qmp.execute(Command::new("no-such-command"))),
        ErrorClass::CommandNotFound
    );
}

fn a_second_client_gets_no_greeting_and_negotiation_times_out() {
    let Some(qemu) = Qemu::bare() else { return };
    let first = connect(&qemu, Config::default());
    // QEMU serves one client per monitor: the kernel queues the second connection, but no
    // greeting comes until the first leaves (kata-containers #12236 hung here forever).
    let conn = UnixConn::connect(qemu.socket()).unwrap();
    let started = now();
    let config = Config {
        negotiation_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    match QmpConn::with_conn(conn, config) {
        Err(QmpIoError::Closed(xsio_qmp::CloseReason::Protocol(
            xsio_qmp::ProtocolError::NegotiationTimeout,
        ))) => {}
        other => panic!("expected a negotiation timeout, got {other:?}"),
    }
    assert!(now() - started >= Duration::from_millis(500));
    drop(first);
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    Tests::new().each(&[&qemu], TESTS).run()
}
